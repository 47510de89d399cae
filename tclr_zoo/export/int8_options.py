"""What an INT8 export is asked to do: the calibration source and method and the accuracy gate's bounds.

Kept apart from ``quantize.py`` and ``accuracy.py`` and free of heavy imports, so that the CLI can show
the choices and defaults in ``--help`` without loading onnx, torch or onnxruntime. The gate's rule is
``accuracy.py``'s; its smallest held-out set is stated once, here (:data:`HELD_OUT_RULE`), and every
message about a too-small source quotes it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

#: Calibration methods (``quantize.METHODS`` says what each runs); the default is measured there.
CALIBRATION_METHODS: tuple[str, ...] = ("minmax", "entropy", "percentile")
DEFAULT_METHOD = "percentile"
#: The accuracy gate's default bounds (``accuracy.py``): mean cosine to fp32, and the share of judged
#: held-out clips whose int8 top-1 answer is fp32's, or ties with it (export/README.md: "The accuracy gate").
MIN_COSINE = 0.99
MIN_AGREEMENT = 0.95
#: Two answers tie when fp32 scores them this close: gallery videos by fp32 cosine to the query clip
#: (embedding heads), classes by fp32 softmax probability (logits). Measured in export/README.md.
TIE_COSINE = 1e-3
TIE_PROBABILITY = 1e-2
#: Clips calibrated on, and held-out clips the gate measures on.
CALIB_CLIPS = 32
HOLDOUT_CLIPS = 64
#: The smallest held-out set: each held-out clip is ranked against the *other* held-out videos, and a
#: ranking with one candidate cannot be wrong (with 2 videos the old top-1 agreement was 1.0 whatever
#: the graph did). A folder is dealt alternately to calibration and held-out, so it needs twice as many.
MIN_HELDOUT_VIDEOS = 3
MIN_FOLDER_VIDEOS = 2 * MIN_HELDOUT_VIDEOS
HELD_OUT_RULE = (f"the accuracy gate needs held-out clips of at least {MIN_HELDOUT_VIDEOS} videos (each is "
                 f"ranked against the other held-out videos, so at least 2 to choose between)")
HELD_OUT_REMEDY = (f"give a folder of at least {MIN_FOLDER_VIDEOS} videos (dealt alternately, "
                   f"{MIN_HELDOUT_VIDEOS} held out), a dataset whose test list has at least {MIN_HELDOUT_VIDEOS} "
                   f"videos (--dataset), or a .npy of at least --calib-clips + {MIN_HELDOUT_VIDEOS} clips")


@dataclass
class Int8Options:
    """``export_model(int8=...)``: calibrate on ``source`` and gate on clips held out from it.

    ``source``: a folder of videos (or a video file), a dataset root (with ``dataset``, e.g.
    ``"ucf101"``: calibration from its train list, the gate on its test list) or a ``.npy`` of
    preprocessed clips ``[N, 3, T, H, W]`` (see ``calibration.py``). ``skip_bad``: skip (and record)
    videos that cannot be decoded instead of stopping at the first.
    """

    source: str | os.PathLike
    dataset: str | None = None
    calib_clips: int = CALIB_CLIPS
    holdout_clips: int = HOLDOUT_CLIPS
    method: str = DEFAULT_METHOD
    min_cosine: float = MIN_COSINE
    min_agreement: float = MIN_AGREEMENT
    skip_bad: bool = False

    def check(self) -> None:
        """Raise ``ValueError`` naming the first option out of range."""
        if self.method not in CALIBRATION_METHODS:
            raise ValueError(f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}, got {self.method!r}")
        if self.calib_clips < 1:
            raise ValueError(f"--calib-clips must be >= 1, got {self.calib_clips}")
        if self.holdout_clips < MIN_HELDOUT_VIDEOS:
            raise ValueError(f"--holdout-clips must be >= {MIN_HELDOUT_VIDEOS}, got {self.holdout_clips}: "
                             f"{HELD_OUT_RULE}")
        for name, value in (("--min-cosine", self.min_cosine), ("--min-agreement", self.min_agreement)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")


__all__ = ["CALIBRATION_METHODS", "CALIB_CLIPS", "DEFAULT_METHOD", "HELD_OUT_REMEDY", "HELD_OUT_RULE", "HOLDOUT_CLIPS",
           "Int8Options", "MIN_AGREEMENT", "MIN_COSINE", "MIN_FOLDER_VIDEOS", "MIN_HELDOUT_VIDEOS", "TIE_COSINE",
           "TIE_PROBABILITY"]
