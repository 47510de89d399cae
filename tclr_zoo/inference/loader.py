"""Windows of many videos, decoded in worker processes while the model runs (``workers=``).

``VideoModel`` turns videos into windows (``data/windows.py``: one streaming decode per video,
memory bounded by the window) and runs the model on batches of them. Decoding H.264 and cropping
the frames is CPU work that, done in the calling thread, leaves the model idle (and on a GPU, idle
almost all the time). Here a ``torch.utils.data.DataLoader`` over an :class:`IterableDataset` of the
videos does that work in ``workers`` processes:

* video ``i`` goes to worker ``i % workers``; each worker yields :class:`WindowChunk` items -- up to
  ``chunk`` consecutive windows of one video (uint8, already cropped and resized, so what crosses
  the process boundary is small) -- and one last item per video that says it is finished, or carries
  the video's :class:`~tclr_zoo.data.decode.VideoDecodeError` (the same exception, path and reason a
  decode in the calling process raises; it pickles as ``(path, reason)``);
* prefetch is bounded: at most ``prefetch`` items per worker wait in the queue, so the pixels in
  flight are bounded by windows, never by the length of a video;
* workers run at a lower CPU priority than the calling process (``WORKER_NICENESS``), with one
  torch and one FFmpeg thread each;
* the calling process batches the windows in the order they arrive and puts every video's
  outputs back in input order (:class:`ReorderBuffer`, driven by ``VideoModel.video_outputs``); a
  video that cannot be decoded comes out at its place as a :class:`Skipped` record, or raises there.

One FFmpeg thread per worker, not frame threading: with two decoders side by side on 2 cores,
frame threading cost more than it saved (BENCHMARKS.md, P7).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from ..data.decode import VideoDecodeError, set_decoder_threads
from ..data.transforms import crop_resize_frames, eval_crop_box
from ..data.windows import Window, WindowPlan, iter_video_windows

#: Prefetched items per worker (each up to ``chunk`` windows): enough to cover a batch while the
#: model runs, small enough that memory stays a few batches.
PREFETCH = 2
#: How much lower the workers' CPU priority is than the calling process's (``os.nice``).
WORKER_NICENESS = 10


class CropResize:
    """The model's per-frame centre crop and resize, uint8 ``[k, H, W, 3]`` -> ``[k, size, size, 3]``.

    A plain object (not a bound method of the model) so that it pickles into worker processes
    without the weights; ``eval_clip``'s crop and antialiased bilinear resize, frame by frame.
    """

    def __init__(self, size: int, crop_fraction: float) -> None:
        self.size, self.crop_fraction = int(size), float(crop_fraction)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        top, left, side = eval_crop_box(frames.shape[1], frames.shape[2], self.crop_fraction)
        return crop_resize_frames(frames, top, left, side, self.size)


@dataclass
class WindowChunk:
    """Consecutive windows of video ``video`` (possibly none), and whether the video is finished.

    The windows' frames travel as one uint8 array ``[k, T, size, size, 3]``; :meth:`windows` gives
    them back as :class:`Window` s. From a worker it is a numpy array, pickled through the worker's
    pipe: a tensor would travel through a shared-memory file, and when that cannot be written (a
    full ``/dev/shm``, a file-size limit) the worker's sending thread dies and the caller would
    wait for the chunk forever.
    """

    video: int
    frames: torch.Tensor | np.ndarray | None = None
    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    finished: bool = False
    error: VideoDecodeError | None = None
    cpu_seconds: float = 0.0  # the worker's CPU time for these windows (decode, crop, resize)

    @classmethod
    def of(cls, video: int, windows: list[Window], *, finished: bool = False) -> "WindowChunk":
        """A chunk to send from a worker (frames as one numpy array: see the class docstring)."""
        frames = torch.stack([w.frames for w in windows]).numpy() if windows else None
        return cls(video, frames, [w.start for w in windows], [w.end for w in windows], finished)

    def windows(self) -> list[Window]:
        if self.frames is None:
            return []
        frames = torch.as_tensor(self.frames)  # no copy of a received numpy array
        return [Window(f, s, e) for f, s, e in zip(frames, self.starts, self.ends)]


@dataclass(frozen=True)
class Skipped:
    """A video a batch job left out (``skip_bad``): its path and why, in the words of its
    :class:`~tclr_zoo.data.decode.VideoDecodeError`.

    The one record of a skipped video everywhere: ``VideoModel.video_outputs``, ``VideoIndex``,
    corpus jobs and their unit files, the embeddings file's ``failed`` list and the CLI's lines. On
    disk it is ``{"path": ..., "reason": ...}``; :meth:`of` also reads the ``[path, reason]`` pairs
    that unit files of earlier versions hold. It unpacks as ``path, reason``, as the tuples that
    ``VideoIndex.add_videos`` returned before.
    """

    path: str
    reason: str

    @classmethod
    def of(cls, item: "Skipped | Mapping[str, str] | Sequence[str]") -> "Skipped":
        """A record as written on disk (``{"path", "reason"}`` or ``[path, reason]``), or a Skipped."""
        if isinstance(item, cls):
            return item
        if isinstance(item, Mapping):
            return cls(str(item["path"]), str(item["reason"]))
        path, reason = item
        return cls(str(path), str(reason))

    @classmethod
    def from_error(cls, err: VideoDecodeError) -> "Skipped":
        return cls(err.path, err.reason)

    def to_record(self) -> dict[str, str]:
        """The JSON form: ``{"path": ..., "reason": ...}``."""
        return {"path": self.path, "reason": self.reason}

    def __iter__(self) -> Iterator[str]:
        return iter((self.path, self.reason))


class VideoWindows(IterableDataset):
    """The windows of ``paths``, video ``i`` decoded by worker ``i % num_workers`` (see the module docstring)."""

    def __init__(self, paths: Sequence[str], plan: WindowPlan, *, channel_order: str, transform: CropResize,
                 chunk: int) -> None:
        self.paths, self.plan, self.channel_order = list(paths), plan, channel_order
        self.parent = os.getpid()  # the process the workers serve (see ``_die_with_parent``)
        self.transform, self.chunk = transform, max(1, int(chunk))

    def __iter__(self) -> Iterator[WindowChunk]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for i in range(worker, len(self.paths), workers):
            yield from self._video(i)

    def _video(self, i: int) -> Iterator[WindowChunk]:
        windows: list[Window] = []
        start = time.process_time()
        try:
            for window in iter_video_windows(self.paths[i], self.plan, channel_order=self.channel_order,
                                             transform=self.transform):
                windows.append(window)
                if len(windows) == self.chunk:
                    yield self._chunk(i, windows, start)
                    windows, start = [], time.process_time()
        except VideoDecodeError as err:
            yield WindowChunk(i, finished=True, error=err)
            return
        yield self._chunk(i, windows, start, finished=True)

    @staticmethod
    def _chunk(i: int, windows: list[Window], start: float, *, finished: bool = False) -> WindowChunk:
        chunk = WindowChunk.of(i, windows, finished=finished)
        chunk.cpu_seconds = time.process_time() - start
        return chunk


def _worker_init(worker_id: int) -> None:
    # The workers are the parallelism: one torch thread (the small per-frame resize) and one FFmpeg
    # thread each (frame threading inside every worker cost more CPU than it saved). They run at a
    # lower CPU priority, so the forward gets the cores it asks for and decoding fills the rest: at
    # equal priority the forward's threads and the workers took turns on the same cores and both
    # slowed down (BENCHMARKS.md, P7).
    torch.set_num_threads(1)
    set_decoder_threads(1)
    if hasattr(os, "nice"):
        os.nice(WORKER_NICENESS)
    _die_with_parent(get_worker_info().dataset.parent)


def _die_with_parent(parent: int) -> None:
    """Linux: end this worker when the process that started it dies, even by SIGKILL (the OOM killer,
    a ``kill -9``). Left alone, a worker whose parent died waits forever to hand over its windows:
    it keeps the parent's files open -- its stdout pipe, and the output's writer lock, so the next
    run into the same output would be refused -- until someone kills it by hand."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    pr_set_pdeathsig = 1  # <linux/prctl.h>
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the request was made
        os._exit(1)


def _as_is(item: Any) -> Any:
    return item


def chunks_in_workers(paths: Sequence[str], plan: WindowPlan, *, channel_order: str, transform: CropResize,
                      workers: int, chunk: int) -> Iterator[WindowChunk]:
    """:class:`WindowChunk` items of ``paths`` decoded in ``workers`` processes (arrival order)."""
    dataset = VideoWindows(paths, plan, channel_order=channel_order, transform=transform, chunk=chunk)
    loader = DataLoader(dataset, batch_size=None, num_workers=workers, collate_fn=_as_is,
                        prefetch_factor=PREFETCH, worker_init_fn=_worker_init)
    items = iter(loader)
    try:
        yield from items
    finally:  # stopped early (an error, a caller that stops reading): end the workers now, not at GC
        shutdown = getattr(items, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()


def chunks_in_process(videos: Sequence[Any], windows_of: Callable[[Any], Iterator[Window]]) -> Iterator[WindowChunk]:
    """The same items made here, one window at a time (no copies: the window's own tensor)."""
    for i, video in enumerate(videos):
        try:
            for window in windows_of(video):
                yield WindowChunk(i, window.frames[None], [window.start], [window.end])
        except VideoDecodeError as err:
            yield WindowChunk(i, finished=True, error=err)
            continue
        yield WindowChunk(i, finished=True)


#: One video's result, in input order: ``(position, windows, head outputs [W, D])``; the windows
#: keep their times, not their pixels.
VideoOutput = tuple[int, list[Window], torch.Tensor]


class ReorderBuffer:
    """Windows of many videos, arriving in any order, batched for the forward as they come, and
    each video's outputs handed back in input order.

    Decode workers finish videos out of order (worker ``i % workers`` takes video ``i``), and a
    batch mixes windows of several videos. :meth:`add` takes one :class:`WindowChunk` at a time and
    runs ``forward`` on every ``batch_size`` windows; :meth:`ready` then yields each video whose
    windows are all out, in input order: ``(position, windows, outputs)``. A video is out once its
    last chunk arrived and none of its windows still waits in the part-filled batch.

    A video that failed to decode drops the windows it had sent and comes out at its own place:
    as a :class:`Skipped` record with ``skip_bad``, else its error is raised there -- after every
    video before it (the part-filled batch runs first), so the error is the first bad video in
    input order, as a decode in the calling process would raise it. Call :meth:`finish` after the
    last chunk: it runs the part-filled batch, and :meth:`ready` then yields the rest.
    """

    def __init__(self, videos: int, *, batch_size: int, forward: Callable[[list[torch.Tensor]], torch.Tensor],
                 skip_bad: bool) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.videos, self.batch_size, self.forward, self.skip_bad = videos, batch_size, forward, skip_bad
        self._batch: list[tuple[int, Window]] = []  # windows waiting for the forward
        self._waiting = [0] * videos  # windows of each video in ``_batch``
        self._done: dict[int, tuple[list[Window], list[torch.Tensor]]] = {}  # outputs so far, per video
        self._failed: dict[int, VideoDecodeError] = {}
        self._finished = [False] * videos
        self._frontier = 0  # first video whose last chunk has not arrived
        self._next = 0  # first video not handed back yet

    def add(self, chunk: WindowChunk) -> None:
        """Take ``chunk``'s windows (running the forward on each full batch) and note a finished or failed video."""
        video = chunk.video
        if chunk.error is not None:
            self._fail(video, chunk.error)
        for window in chunk.windows():
            self._batch.append((video, window))
            self._waiting[video] += 1
            if len(self._batch) == self.batch_size:
                self._run_batch()
        if chunk.finished:
            self._finished[video] = True
            while self._frontier < self.videos and self._finished[self._frontier]:
                self._frontier += 1

    def finish(self) -> None:
        """After the last chunk: run the part-filled batch. Every video must have sent its last chunk."""
        if self._frontier < self.videos:
            raise RuntimeError(f"the window stream ended before video {self._frontier} was finished")
        self._run_batch()

    def ready(self) -> Iterator[VideoOutput | Skipped]:
        """The videos now complete, in input order (a failed one: see the class docstring)."""
        if not self.skip_bad and any(video < self._frontier for video in self._failed):
            self._run_batch()  # the stream stops at the failure: let the videos before it out first
        while self._next < self._frontier and not self._waiting[self._next]:
            video = self._next
            self._next += 1
            if video in self._failed:
                error = self._failed.pop(video)
                if not self.skip_bad:
                    raise error
                yield Skipped.from_error(error)
                continue
            windows, rows = self._done.pop(video, ([], []))
            yield video, windows, torch.stack(rows)

    def _fail(self, video: int, error: VideoDecodeError) -> None:
        """Leave ``video`` out whole: the windows it sent before failing are dropped."""
        self._failed[video] = error
        self._batch = [(v, w) for v, w in self._batch if v != video]
        self._waiting[video] = 0
        self._done.pop(video, None)

    def _run_batch(self) -> None:
        if not self._batch:
            return
        out = self.forward([window.frames for _, window in self._batch])
        for (video, window), row in zip(self._batch, out):
            windows, rows = self._done.setdefault(video, ([], []))
            windows.append(Window(torch.empty(0), window.start, window.end))  # times, not pixels
            rows.append(row)
            self._waiting[video] -= 1
        self._batch = []


class ForwardThreads:
    """Torch threads of the forward while CPU workers decode; :meth:`close` restores them.

    Decode workers and the forward share the cores. When decoding a window costs more CPU than its
    forward (a decode-bound model: the workers need the cores), the forward runs on
    ``max(1, threads - workers)`` threads -- more would only take turns with the workers on the same
    cores; otherwise (a forward-bound model) it keeps every thread. Costs are measured as it runs:
    the workers' CPU seconds per window, the forward's seconds x threads per window. Measured on 2
    cores it helped the 32-px model and would have slowed the 112-px one (BENCHMARKS.md, P7).
    """

    def __init__(self, workers: int, enabled: bool) -> None:
        self.full = torch.get_num_threads()
        self.lean = max(1, self.full - workers)
        self.enabled = enabled and self.lean < self.full
        self.decode = [0.0, 0]  # CPU seconds, windows
        self.forward = [0.0, 0]

    def decoded(self, chunk: WindowChunk) -> None:
        self.decode[0] += chunk.cpu_seconds
        self.decode[1] += len(chunk.starts)

    def run(self, forward: Callable[[], torch.Tensor], windows: int) -> torch.Tensor:
        if not self.enabled:
            return forward()
        decode_cost = self.decode[0] / max(1, self.decode[1])
        forward_cost = self.forward[0] / max(1, self.forward[1])
        threads = self.lean if self.forward[1] and forward_cost < decode_cost else self.full
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        start = time.perf_counter()
        out = forward()
        self.forward[0] += (time.perf_counter() - start) * threads
        self.forward[1] += windows
        return out

    def close(self) -> None:
        if self.enabled and torch.get_num_threads() != self.full:
            torch.set_num_threads(self.full)


def default_workers(device: torch.device | str, videos: int) -> int:
    """Decode workers when the caller does not say: none for a single video (a worker process costs
    more to start than it overlaps); else 2 on the CPU (measured, BENCHMARKS.md P7; at most the
    CPUs) and 8 for a CUDA model (at most the CPUs less one, for the calling process); never more
    than the videos. Under torchrun the CPUs are this process's share of the node's."""
    from ..runtime import cpu_share, processes_on_this_node

    if videos < 2:
        return 0
    cpus = cpu_share(processes_on_this_node())
    if torch.device(device).type == "cuda":
        return min(8, videos, max(1, cpus - 1))
    return min(2, videos, cpus) if cpus > 1 else 0


__all__ = ["CropResize", "ForwardThreads", "ReorderBuffer", "Skipped", "VideoOutput", "VideoWindows", "WindowChunk",
           "chunks_in_process", "chunks_in_workers", "default_workers"]
