"""Sliding windows over a whole video, with memory bounded by the window (never the video).

The SDK embeds a video of any length as a sequence of clips ("windows") of ``frames`` frames taken
every ``stride`` frames, one window every ``hop`` frames (default: back to back, ``hop = span``).
The windows are planned from the frame count, then filled from one forward decoding pass that keeps
only the frames some pending window still needs, so a ten-minute video costs the same memory as a
ten-second one.

Rules (shared by file paths and in-memory frame tensors, so both give the same clips):

* starts run ``0, hop, 2*hop, ...`` while the window fits; if frames after the last full window
  would be left out, one more window ending at the last frame is added (it overlaps the previous one);
* a video shorter than one window gives one window whose indices are mirrored back into the video
  (as the evaluation sampler does), so every video yields at least one window.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .decode import VideoDecodeError, iter_frames, probe
from .sampling import mirror_indices


@dataclass(frozen=True)
class WindowPlan:
    """How a video is cut into clips: ``frames`` per clip, every ``stride`` frames, a window every ``hop``."""

    frames: int
    stride: int = 1
    hop: int | None = None  # None: back-to-back windows (hop = span)

    def __post_init__(self) -> None:
        if self.frames < 1 or self.stride < 1 or (self.hop is not None and self.hop < 1):
            raise ValueError(f"frames, stride and hop must be >= 1, got {self}")

    @property
    def span(self) -> int:
        """Frames covered by one window, first to last inclusive."""
        return (self.frames - 1) * self.stride + 1

    def indices(self, num_frames: int) -> np.ndarray:
        """``[W, frames]`` frame indices of the windows of a video of ``num_frames`` frames."""
        if num_frames < 1:
            raise ValueError("a video needs at least one frame")
        offsets = np.arange(self.frames) * self.stride
        if num_frames < self.span:
            return mirror_indices(offsets[None, :], num_frames)
        last = num_frames - self.span
        starts = list(range(0, last + 1, self.hop or self.span))
        if starts[-1] != last:
            starts.append(last)
        return np.asarray(starts)[:, None] + offsets[None, :]


@dataclass
class Window:
    """One clip: uint8 frames ``[T, H, W, 3]`` and where it lies in the video."""

    frames: torch.Tensor
    start: float  # seconds (tensor input: frame index / fps)
    end: float


def iter_video_windows(path: str | os.PathLike, plan: WindowPlan, *, channel_order: str) -> Iterator[Window]:
    """Decode ``path`` once and yield its windows in order, holding only the frames still needed."""
    info = probe(path)
    if info.num_frames < 1:
        raise VideoDecodeError(path, "has no video frames")
    windows = plan.indices(info.num_frames)
    frame_time = 1.0 / info.fps if info.fps > 0 else 0.0
    buffer: dict[int, tuple[float, np.ndarray]] = {}
    pending = 0
    for index, seconds, frame in iter_frames(path, np.unique(windows), channel_order=channel_order):
        buffer[index] = (seconds, frame)
        while pending < len(windows) and windows[pending].max() <= index:
            yield _assemble(windows[pending], buffer, frame_time)
            pending += 1
            if pending < len(windows):
                keep_from = windows[pending:].min()
                for old in [i for i in buffer if i < keep_from]:
                    del buffer[old]


def _assemble(indices: np.ndarray, buffer: dict[int, tuple[float, np.ndarray]], frame_time: float) -> Window:
    times = [buffer[int(i)][0] for i in indices]
    frames = torch.from_numpy(np.stack([buffer[int(i)][1] for i in indices]))
    return Window(frames, min(times), max(times) + frame_time)


def iter_tensor_windows(frames: torch.Tensor, plan: WindowPlan, *, fps: float = 0.0) -> Iterator[Window]:
    """The same windows over frames already in memory (``[T, H, W, 3]`` uint8)."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
        raise ValueError(f"frames must be a uint8 tensor [T, H, W, 3], got {frames.dtype} {tuple(frames.shape)}")
    scale = 1.0 / fps if fps > 0 else 1.0
    for indices in plan.indices(frames.shape[0]):
        index = torch.from_numpy(indices)
        yield Window(frames.index_select(0, index), float(indices.min()) * scale, float(indices.max() + 1) * scale)
