"""A tiny synthetic *action* dataset of real H.264 videos, laid out like UCF101, HMDB51 or Kinetics.

It exists so that the whole TCLR pipeline (decode -> sample clips -> augment -> pretrain ->
kNN retrieval) can run on a laptop CPU in minutes and show that self-supervised pretraining
learns something.

* :mod:`.render` makes the pixels: the motion classes (the class design is described there),
  :class:`SyntheticConfig` and :func:`render_video`; no files.
* :mod:`.write` writes the dataset: H.264 encoding, the three layouts and their split files (described
  there), ``manifest.json`` and :func:`generate` (cache check, lock, staging).

``python -m tclr_zoo.data.synthetic [ROOT] [--num-classes N ...]`` generates it from a shell.
"""

from __future__ import annotations

from .render import CLASS_NAMES, LAYOUTS, Appearance, SyntheticConfig, render_video, sample_appearance
from .write import (
    GENERATOR_VERSION,
    NUM_SPLITS,
    default_cache_dir,
    generate,
    is_synthetic_root,
    layout_relpath,
    read_manifest,
    split_role,
    video_relpath,
    youtube_id,
)

__all__ = [
    "CLASS_NAMES",
    "GENERATOR_VERSION",
    "Appearance",
    "SyntheticConfig",
    "default_cache_dir",
    "generate",
    "is_synthetic_root",
    "LAYOUTS",
    "NUM_SPLITS",
    "layout_relpath",
    "read_manifest",
    "render_video",
    "sample_appearance",
    "split_role",
    "video_relpath",
    "youtube_id",
]
