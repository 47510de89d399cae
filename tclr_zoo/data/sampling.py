"""Which frames a clip uses: the TCLR pretraining sampler (a sparse global clip and the dense local clips
covering its span) and evenly spaced eval clips.

Frame indices count decoded frames in presentation order (see decode.py), so sampling is uniform in
frame index, as in the reference, also for variable-frame-rate files.

Short videos, defined here because the reference's behaviour is implicit: a video with fewer than
``min_frames`` frames is rejected with ``VideoTooShortError`` (default: the reference's rule, which
skips videos of at most 56 frames when the span is 64, i.e. ``min_frames = span * 7 // 8 + 1``).
A longer video that is still shorter than the span starts at frame 0 and indices past its end are
mirrored back into it (..., n-2, n-1, n-2, ...), like the reference's padding by reversed frames.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .decode import VideoTooShortError


@dataclass(frozen=True)
class ClipSampling:
    """Geometry of one TCLR sample: a global clip and ``num_local`` local clips over the same span.

    The global clip has ``frames`` frames at ``stride`` (span ``frames * stride``); local clip k has
    ``frames`` frames at ``local_stride`` starting at ``k * span / num_local``. With the paper's
    values (16, 4, 4, 1) the local clips tile the span exactly and line up with the 4 time-steps of
    the global clip's feature map.
    """

    frames: int = 16
    stride: int = 4
    num_local: int = 4
    local_stride: int = 1
    min_frames: int | None = None

    def __post_init__(self) -> None:
        for name in ("frames", "stride", "num_local", "local_stride"):
            if getattr(self, name) < 1:
                raise ValueError(f"ClipSampling.{name} must be >= 1, got {getattr(self, name)}")

    @property
    def span(self) -> int:
        return self.frames * self.stride

    @property
    def required_frames(self) -> int:
        return self.min_frames if self.min_frames is not None else self.span * 7 // 8 + 1


@dataclass(frozen=True)
class TCLRIndices:
    global_clip: np.ndarray  # [frames]
    local_clips: np.ndarray  # [num_local, frames]

    def unique(self) -> np.ndarray:
        """Sorted distinct frames to decode for this sample (each decoded once)."""
        return np.unique(np.concatenate([self.global_clip, self.local_clips.ravel()]))


def mirror_indices(indices: np.ndarray, num_frames: int) -> np.ndarray:
    """Reflect indices past the last frame back into ``[0, num_frames)`` (period 2(n-1))."""
    if num_frames <= 1:
        return np.zeros_like(indices)
    period = 2 * (num_frames - 1)
    folded = np.mod(indices, period)
    return np.where(folded < num_frames, folded, period - folded)


def sample_tclr_indices(
    num_frames: int, sampling: ClipSampling, rng: np.random.Generator, path: str = "<video>"
) -> TCLRIndices:
    """Frame indices of one global clip and its local clips for a video of ``num_frames`` frames."""
    if num_frames < sampling.required_frames:
        raise VideoTooShortError(
            path, f"has {num_frames} frames, TCLR sampling needs at least {sampling.required_frames}"
        )
    span = sampling.span
    start = int(rng.integers(0, num_frames - span)) if num_frames > span else 0
    global_clip = start + np.arange(sampling.frames) * sampling.stride
    local_starts = start + (np.arange(sampling.num_local) * span) // sampling.num_local
    local_clips = local_starts[:, None] + np.arange(sampling.frames)[None, :] * sampling.local_stride
    return TCLRIndices(mirror_indices(global_clip, num_frames), mirror_indices(local_clips, num_frames))


def evenly_spaced_clips(num_frames: int, clips: int, frames: int, stride: int) -> np.ndarray:
    """``[clips, frames]`` indices of clips whose starts are evenly spaced over the video (eval).

    Starts run from 0 to the last start that keeps a clip inside the video; videos shorter than
    one clip repeat frame 0 as start and mirror the rest.
    """
    span = (frames - 1) * stride + 1
    last_start = max(num_frames - span, 0)
    starts = np.linspace(0, last_start, clips).round().astype(np.int64)
    indices = starts[:, None] + np.arange(frames)[None, :] * stride
    return mirror_indices(indices, num_frames)


__all__ = ["ClipSampling", "TCLRIndices", "evenly_spaced_clips", "mirror_indices", "sample_tclr_indices"]
