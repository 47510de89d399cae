"""What an INT8 export is asked to do: the calibration source and method and the accuracy gate's bounds.

Kept apart from ``quantize.py`` and ``accuracy.py`` and free of heavy imports, so that the CLI can show
the choices and defaults in ``--help`` without loading onnx, torch or onnxruntime.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

#: Calibration methods (``quantize.METHODS`` says what each runs); the default is measured there.
CALIBRATION_METHODS: tuple[str, ...] = ("minmax", "entropy", "percentile")
DEFAULT_METHOD = "percentile"
#: The accuracy gate's default bounds (``accuracy.py``): mean cosine to fp32, and agreement.
MIN_COSINE = 0.99
MIN_AGREEMENT = 0.95
#: Clips calibrated on, and held-out clips the gate measures on.
CALIB_CLIPS = 32
HOLDOUT_CLIPS = 64


@dataclass
class Int8Options:
    """``export_model(int8=...)``: calibrate on ``source`` and gate on clips held out from it.

    ``source``: a folder of videos (or a video file), a dataset root (with ``dataset``, e.g.
    ``"ucf101"``: calibration from its train list, the gate on its test list) or a ``.npy`` of
    preprocessed clips ``[N, 3, T, H, W]`` (see ``calibration.py``).
    """

    source: str | os.PathLike
    dataset: str | None = None
    calib_clips: int = CALIB_CLIPS
    holdout_clips: int = HOLDOUT_CLIPS
    method: str = DEFAULT_METHOD
    min_cosine: float = MIN_COSINE
    min_agreement: float = MIN_AGREEMENT

    def check(self) -> None:
        """Raise ``ValueError`` naming the first option out of range."""
        if self.method not in CALIBRATION_METHODS:
            raise ValueError(f"calibration method must be one of {', '.join(CALIBRATION_METHODS)}, got {self.method!r}")
        if self.calib_clips < 1:
            raise ValueError(f"--calib-clips must be >= 1, got {self.calib_clips}")
        if self.holdout_clips < 2:
            raise ValueError(f"--holdout-clips must be >= 2, got {self.holdout_clips}")
        for name, value in (("--min-cosine", self.min_cosine), ("--min-agreement", self.min_agreement)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")


__all__ = ["CALIBRATION_METHODS", "CALIB_CLIPS", "DEFAULT_METHOD", "HOLDOUT_CLIPS", "Int8Options", "MIN_AGREEMENT",
           "MIN_COSINE"]
