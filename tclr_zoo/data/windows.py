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
from collections.abc import Callable, Iterator
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


#: Maps uint8 frames ``[k, H, W, 3]`` to uint8 frames ``[k, h, w, 3]``, each frame on its own (the
#: result for a frame must not depend on the others in the batch): e.g. the model's crop and resize.
FrameTransform = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class Window:
    """One clip: uint8 frames ``[T, H, W, 3]`` (after the frame transform, if any) and where it lies in the video."""

    frames: torch.Tensor
    start: float  # seconds (tensor input: frame index / fps)
    end: float


def iter_video_windows(path: str | os.PathLike, plan: WindowPlan, *, channel_order: str,
                       transform: FrameTransform | None = None) -> Iterator[Window]:
    """Decode ``path`` once and yield its windows in order, holding only the frames still needed.

    ``transform`` (per-frame, see :data:`FrameTransform`) is applied once to every decoded frame, in
    batches of the frames that arrived since the last finished window, and the buffer keeps its
    (smaller) output: a frame shared by overlapping windows is transformed once.
    """
    info = probe(path)
    if info.num_frames < 1:
        raise VideoDecodeError(path, "has no video frames")
    windows = plan.indices(info.num_frames)
    frame_time = 1.0 / info.fps if info.fps > 0 else 0.0
    buffer: dict[int, tuple[float, np.ndarray]] = {}
    fresh: list[int] = []  # buffered frames the transform has not seen yet
    pending = 0
    for index, seconds, frame in iter_frames(path, np.unique(windows), channel_order=channel_order):
        buffer[index] = (seconds, frame)
        fresh.append(index)
        while pending < len(windows) and windows[pending].max() <= index:
            if transform is not None and fresh:
                _transform_fresh(buffer, fresh, transform)
            yield _assemble(windows[pending], buffer, frame_time)
            pending += 1
            if pending < len(windows):
                keep_from = windows[pending:].min()
                for old in [i for i in buffer if i < keep_from]:
                    del buffer[old]


def _transform_fresh(buffer: dict[int, tuple[float, np.ndarray]], fresh: list[int], transform: FrameTransform) -> None:
    out = transform(torch.from_numpy(np.stack([buffer[i][1] for i in fresh]))).numpy()
    for i, frame in zip(fresh, out):
        buffer[i] = (buffer[i][0], frame)
    fresh.clear()


def _assemble(indices: np.ndarray, buffer: dict[int, tuple[float, np.ndarray]], frame_time: float) -> Window:
    # numpy, not torch.stack: a plain single-threaded copy. torch hands even small copies to its
    # intra-op threads, and on a busy machine waiting for them cost 100x the copy (measured).
    times = [buffer[int(i)][0] for i in indices]
    frames = torch.from_numpy(np.stack([buffer[int(i)][1] for i in indices]))
    return Window(frames, min(times), max(times) + frame_time)


def iter_tensor_windows(frames: torch.Tensor, plan: WindowPlan, *, fps: float = 0.0,
                        transform: FrameTransform | None = None) -> Iterator[Window]:
    """The same windows over frames already in memory (``[T, H, W, 3]`` uint8)."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != torch.uint8:
        raise ValueError(f"frames must be a uint8 tensor [T, H, W, 3], got {frames.dtype} {tuple(frames.shape)}")
    scale = 1.0 / fps if fps > 0 else 1.0
    for indices in plan.indices(frames.shape[0]):
        clip = frames.index_select(0, torch.from_numpy(indices))
        yield Window(transform(clip) if transform is not None else clip,
                     float(indices.min()) * scale, float(indices.max() + 1) * scale)


__all__ = ["FrameTransform", "Window", "WindowPlan", "iter_tensor_windows", "iter_video_windows"]
