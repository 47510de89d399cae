"""Frame-accurate video decoding with PyAV.

A *frame index* is the position of a frame in the decoded video stream, counting
from 0: frame ``i`` is the ``i``-th frame ``container.decode(video=0)`` yields.
Indexing by count (not by time) keeps clip sampling well defined for
variable-frame-rate files, and it is what every decode path here must reproduce
exactly.

Two decode paths give identical results:

* **linear** -- one forward pass from the start, counting frames.  Always
  correct; used for dense clips, VFR files and whenever timestamps look odd.
* **seek** -- for sparse requests in constant-frame-rate files, jump with
  ``container.seek`` to the keyframe before a far-away frame and decode forward,
  recovering each frame's index from its ``pts``.  Any sign that ``pts`` does not
  map cleanly onto frame indices abandons the seek path and falls back to the
  linear one, so speed never costs correctness.

Only frames that are kept are converted to RGB/BGR (conversion can cost more
than decoding), and decoding stops at the last needed frame.
"""

from __future__ import annotations

import errno
import operator
import os
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import av
import numpy as np
from av.video.reformatter import VideoReformatter

if TYPE_CHECKING:
    from av.container import InputContainer as Container
    from av.video.stream import VideoStream as Stream

__all__ = ["VideoDecodeError", "VideoTooShortError", "VideoInfo", "probe", "decode_frames", "iter_frames"]

# A gap (in seconds) between two needed frames beyond which seeking to the
# previous keyframe is expected to beat decoding every frame in between.
_SEEK_GAP_SECONDS = 2.0
# How far (in frame durations) a pts may sit off the constant-rate grid and
# still be trusted; containers round timestamps (e.g. Matroska to 1 ms).
_GRID_TOLERANCE = Fraction(1, 4)
# Relative difference allowed between average and base frame rate for a
# stream to count as constant-frame-rate.
_CFR_RATE_TOLERANCE = 1e-3

_PIXEL_FORMATS = {"rgb": "rgb24", "bgr": "bgr24"}

# Hostile input bounds. A frame larger than this is refused before anything is decoded
# (an 8K UHD frame is 33 Mpx): a header declaring 60000x60000 would otherwise have FFmpeg and the
# RGB conversion allocate gigabytes.
MAX_FRAME_PIXELS = 8192 * 8192
# Seconds one file may take to decode (``TCLR_ZOO_DECODE_TIMEOUT``), and seconds FFmpeg may wait on
# one read or on opening (a stalled network mount); both raise VideoDecodeError instead of hanging.
DEFAULT_DECODE_TIMEOUT = 600.0
IO_TIMEOUT = 60.0

Converter = Callable[["av.VideoFrame"], np.ndarray]


class VideoDecodeError(Exception):
    """Raised for any unreadable/unusable video input.

    Callers (datasets, loaders) catch one exception type and can log or skip
    the file named in ``.path``; raw PyAV/OS errors never escape.
    """

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = os.fspath(path) if isinstance(path, os.PathLike) else str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")

    def __reduce__(self):
        # The default reduce would call cls(message) and fail on the missing
        # ``reason``; keep the error picklable for multiprocessing workers.
        return type(self), (self.path, self.reason)


class VideoTooShortError(VideoDecodeError):
    """A valid video with fewer frames than the clip needs.

    Kept distinct so samplers can tell "pick another clip" from "broken file".
    """


@dataclass(frozen=True)
class VideoInfo:
    """What clip samplers need to know about a video before decoding it."""

    path: str
    num_frames: int
    fps: float
    width: int
    height: int


# --------------------------------------------------------------------------- #
# Opening
# --------------------------------------------------------------------------- #


def _checked_path(path: str | os.PathLike) -> str:
    """Reject paths FFmpeg would report with cryptic messages, or block on (a FIFO never reaches EOF)."""
    p = os.fspath(path)
    if not isinstance(p, str):
        p = os.fsdecode(p)
    try:
        st = os.stat(p)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise VideoDecodeError(p, "symbolic link loop") from None
        if os.path.islink(p):
            raise VideoDecodeError(p, "broken symbolic link (its target does not exist)") from None
        if err.errno == errno.ENOENT:
            raise VideoDecodeError(p, "file not found") from None
        raise VideoDecodeError(p, f"cannot access ({err.strerror or err})") from None
    if stat.S_ISDIR(st.st_mode):
        raise VideoDecodeError(p, "is a directory, not a video file")
    if not stat.S_ISREG(st.st_mode):
        raise VideoDecodeError(p, "not a regular file (a pipe, socket or device); copy the video to a file")
    if st.st_size == 0:
        raise VideoDecodeError(p, "empty file")
    return p


def decode_timeout() -> float:
    """Seconds one file may take to decode: ``TCLR_ZOO_DECODE_TIMEOUT`` or 600."""
    value = os.environ.get("TCLR_ZOO_DECODE_TIMEOUT")
    if not value:
        return DEFAULT_DECODE_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"TCLR_ZOO_DECODE_TIMEOUT must be a number of seconds, got {value!r}") from None
    if not seconds > 0:
        raise ValueError(f"TCLR_ZOO_DECODE_TIMEOUT must be positive, got {value!r}")
    return seconds


@contextmanager
def _av_open(p: str) -> Iterator[Container]:
    """``av.open`` with read timeouts, closed on exit. Through a Python file object where FFmpeg
    cannot take the name: a Linux file name that is not valid UTF-8 lives in Python as a
    surrogate-escaped ``str`` that FFmpeg's C API cannot receive."""
    try:
        p.encode("utf-8")
        source = None
    except UnicodeEncodeError:
        source = open(p, "rb")
    try:
        with av.open(source or p, timeout=(IO_TIMEOUT, IO_TIMEOUT)) as container:
            yield container
    finally:
        if source is not None:
            source.close()


def _check_frame_size(p: str, width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise VideoDecodeError(p, f"video stream has no valid frame size ({width}x{height})")
    if width * height > MAX_FRAME_PIXELS:
        raise VideoDecodeError(p, f"frame size {width}x{height} is larger than the {MAX_FRAME_PIXELS} pixels "
                                  "this tool decodes (8192x8192); the header is corrupt or the video is not "
                                  "meant for clip models")


def _describe(err: BaseException) -> str:
    """FFmpeg's human message without the errno noise."""
    return getattr(err, "strerror", None) or str(err) or type(err).__name__


@contextmanager
def _open_video(path: str | os.PathLike) -> Iterator[tuple[str, Container, Stream]]:
    """Open ``path`` and yield its first video stream, always closing it.

    PyAV/OS errors raised while opening *or* inside the caller's block (e.g.
    corrupt data met mid-decode) become :class:`VideoDecodeError`; so does a
    frame size beyond :data:`MAX_FRAME_PIXELS`, checked before any decoding.
    """
    p = _checked_path(path)
    with ExitStack() as stack:
        try:
            container = stack.enter_context(_av_open(p))
        except (av.FFmpegError, OSError, ValueError) as err:
            raise VideoDecodeError(p, f"cannot open as video ({_describe(err)})") from err
        if not container.streams.video:
            raise VideoDecodeError(p, "no video stream")
        stream = container.streams.video[0]
        ctx = stream.codec_context
        if ctx is None:  # found by fuzzing: a damaged header can name no codec FFmpeg knows
            raise VideoDecodeError(p, "the video stream has no usable decoder (unknown or damaged codec header)")
        _check_frame_size(p, int(ctx.width), int(ctx.height))
        try:
            yield p, container, stream
        except (av.FFmpegError, OSError) as err:
            reason = f"corrupt or unreadable video data ({_describe(err)})"
            raise VideoDecodeError(p, reason) from err


def _decoded(p: str, container: Container, stream: Stream) -> Iterator[av.VideoFrame]:
    """``container.decode(stream)`` with the hostile-input bounds: every frame's size is checked
    (the bitstream can disagree with the container header) and the whole decode must finish within
    :func:`decode_timeout` seconds."""
    deadline = time.monotonic() + decode_timeout()
    frames = container.decode(stream)
    try:
        for frame in frames:
            if frame.width * frame.height > MAX_FRAME_PIXELS:
                _check_frame_size(p, frame.width, frame.height)
            if time.monotonic() > deadline:
                raise VideoDecodeError(p, f"decoding took longer than {decode_timeout():.0f} s "
                                          "(TCLR_ZOO_DECODE_TIMEOUT)")
            yield frame
    finally:
        frames.close()


def _fps(stream: Stream) -> float:
    """Average frame rate, falling back to FFmpeg's guesses when it is unset."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    return float(rate) if rate else 0.0


def _count_packets(container: Container, stream: Stream) -> int:
    """Frame count by demuxing only: one packet per frame, no decoding cost.

    Needed for Matroska/WebM, whose headers carry no frame count.  The final
    empty flush packet PyAV yields is not a frame.
    """
    return sum(1 for packet in container.demux(stream) if packet.size > 0)


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read frame count, rate and size without decoding any frame."""
    with _open_video(path) as (p, container, stream):
        frames = stream.frames if stream.frames > 0 else _count_packets(container, stream)
        ctx = stream.codec_context
        return VideoInfo(path=p, num_frames=int(frames), fps=_fps(stream),
                         width=int(ctx.width), height=int(ctx.height))


# --------------------------------------------------------------------------- #
# Argument checking and conversion
# --------------------------------------------------------------------------- #


def _checked_indices(path: str | os.PathLike, indices: Sequence[int]) -> list[int]:
    """Plain ints (numpy ints welcome); negative indices are a caller bug worth naming."""
    out = [operator.index(i) for i in indices]
    for i in out:
        if i < 0:
            raise VideoDecodeError(path, f"negative frame index {i}")
    return out


def _converter(channel_order: str, size: tuple[int, int] | None) -> Converter:
    """Build the one reformat call per kept frame (colour + resize together)."""
    try:
        fmt = _PIXEL_FORMATS[channel_order]
    except KeyError:
        raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}") from None
    if size is None:
        height = width = None
    else:
        height, width = (int(v) for v in size)
        if height <= 0 or width <= 0:
            raise ValueError(f"size must be positive (height, width), got {size!r}")
    # One reformatter (swscale context) for all frames of a call: ``frame.to_ndarray(format=...)``
    # builds a fresh context -- and with ``threads=0`` a fresh thread pool -- for every frame, which
    # cost more than decoding the frame (BENCHMARKS.md, P2). Same pixels, bit for bit
    # (tests/data/test_fast_paths_data.py).
    reformatter = VideoReformatter()

    def convert(frame: av.VideoFrame) -> np.ndarray:
        turns = _quarter_turns(frame)
        if turns % 2:  # a quarter turn swaps the picture's sides: resize to the turned size
            out_w, out_h = height, width
        else:
            out_w, out_h = width, height
        image = reformatter.reformat(frame, width=out_w, height=out_h, format=fmt, threads=1).to_ndarray()
        return np.ascontiguousarray(np.rot90(image, turns)) if turns else image

    return convert


def _quarter_turns(frame: av.VideoFrame) -> int:
    """Counter-clockwise quarter turns that show ``frame`` upright, from its display matrix (phones
    record portrait video as landscape frames plus a rotation). Applied as the FFmpeg command line
    does by default; angles that are no multiple of 90 degrees are rounded to the nearest one."""
    try:
        angle = frame.rotation
    except (AttributeError, ValueError):
        return 0
    return round((angle or 0) / 90) % 4


# --------------------------------------------------------------------------- #
# Linear path
# --------------------------------------------------------------------------- #


def _decode_linear(
    path: str, stream: Stream, container: Container,
    wanted: set[int], convert: Converter,
) -> dict[int, np.ndarray]:
    """One forward pass; the frame count *is* the index, so this is the reference."""
    last = max(wanted)
    kept: dict[int, np.ndarray] = {}
    count = 0
    for index, frame in enumerate(_decoded(path, container, stream)):
        if index in wanted:
            kept[index] = convert(frame)
        if index == last:
            return kept
        count = index + 1
    raise _too_short(path, last, count)


def _too_short(path: str, last: int, count: int) -> VideoDecodeError:
    if count == 0:
        return VideoDecodeError(path, "has no video frames that can be decoded")
    return VideoTooShortError(path, f"needs frame {last} but video has {count} frames")


# --------------------------------------------------------------------------- #
# Seek path
# --------------------------------------------------------------------------- #


class _PtsMismatch(Exception):
    """Timestamps do not map onto frame indices; the caller falls back to linear."""


def _is_constant_rate(stream: Stream) -> bool:
    """Header says CFR: average rate equals the base (tick) rate.

    VFR files have a base rate far from their average (e.g. 2000 vs 20.7), and
    without pts/start times there is nothing to map from.
    """
    avg, base = stream.average_rate, stream.base_rate
    if not avg or not base or stream.start_time is None or stream.time_base is None:
        return False
    return abs(float(avg) / float(base) - 1.0) < _CFR_RATE_TOLERANCE


def _runs(targets: list[int], gap: int) -> list[list[int]]:
    """Split sorted targets where consecutive ones are more than ``gap`` apart.

    Each run is decoded forward in one go; each run but a leading one that
    starts near frame 0 begins with a seek.
    """
    runs: list[list[int]] = [[targets[0]]]
    for t in targets[1:]:
        if t - runs[-1][-1] > gap:
            runs.append([t])
        else:
            runs[-1].append(t)
    return runs


class _PtsIndexer:
    """Maps pts to frame index on a CFR stream, refusing anything off-grid."""

    def __init__(self, stream: Stream) -> None:
        self.start = stream.start_time
        self.ticks_per_frame = 1 / (Fraction(stream.average_rate) * Fraction(stream.time_base))

    def index(self, pts: int | None) -> int:
        if pts is None:
            raise _PtsMismatch("frame without pts")
        exact = (pts - self.start) / self.ticks_per_frame
        nearest = round(exact)
        if abs(exact - nearest) > _GRID_TOLERANCE or nearest < 0:
            raise _PtsMismatch(f"pts {pts} is off the frame grid")
        return nearest

    def seek_pts(self, index: int) -> int:
        """A timestamp inside frame ``index``'s interval, robust to pts rounding."""
        return int(self.start + (index + Fraction(1, 2)) * self.ticks_per_frame)


def _decode_run(
    container: Container, stream: Stream, indexer: _PtsIndexer,
    run: list[int], seek: bool, convert: Converter, kept: dict[int, np.ndarray], path: str,
) -> None:
    """Decode forward through one run of targets, checking that indices are consecutive."""
    if seek:
        container.seek(indexer.seek_pts(run[0]), stream=stream)
    wanted, last = set(run), run[-1]
    previous: int | None = None
    frames = _decoded(path, container, stream)
    try:
        for frame in frames:
            index = indexer.index(frame.pts)
            if previous is None and (index > run[0] or (not seek and index != 0)):
                raise _PtsMismatch(f"landed on frame {index}, past frame {run[0]}")
            if previous is not None and index != previous + 1:
                raise _PtsMismatch(f"frame {index} follows frame {previous}")
            previous = index
            if index in wanted:
                kept[index] = convert(frame)
            if index == last:
                return
    finally:
        frames.close()
    # Ran out of frames: the exact frame count is the linear path's job.
    raise _PtsMismatch("end of stream before the last needed frame")


def _decode_with_seeks(
    container: Container, stream: Stream,
    targets: list[int], gap: int, convert: Converter, path: str,
) -> dict[int, np.ndarray] | None:
    """The seek path; ``None`` means "not trustworthy here, decode linearly"."""
    indexer = _PtsIndexer(stream)
    kept: dict[int, np.ndarray] = {}
    try:
        for n, run in enumerate(_runs(targets, gap)):
            _decode_run(container, stream, indexer, run, n > 0 or run[0] > gap, convert, kept, path)
    except (_PtsMismatch, av.FFmpegError):
        # A genuinely corrupt file fails again on the linear pass, which reports it.
        return None
    return kept


def _seek_gap(stream: Stream, info: VideoInfo | None) -> int:
    """Frames between two targets beyond which a seek is worth it (~2 s)."""
    fps = info.fps if info is not None and info.fps > 0 else _fps(stream)
    return max(1, round(_SEEK_GAP_SECONDS * fps))


def _should_seek(stream: Stream, targets: list[int], gap: int, info: VideoInfo | None) -> bool:
    """Seek only for sparse requests in CFR files that fit the known length."""
    if info is not None and targets[-1] >= info.num_frames:
        return False  # let the linear pass count frames for an exact error
    if len(_runs(targets, gap)) == 1 and targets[0] <= gap:
        return False  # dense: nothing to skip
    return _is_constant_rate(stream)


# FFmpeg threads per decoder: 0 lets FFmpeg choose (frame and slice threading over the machine's
# cores). Processes that are themselves one of several parallel decoders (the SDK's decode workers)
# set 1: there, a decoder's own threads cost more CPU than they save (BENCHMARKS.md, P7).
_decoder_threads = 0


def set_decoder_threads(count: int) -> None:
    """FFmpeg threads of every decoder this process opens from now on (0: FFmpeg's choice)."""
    global _decoder_threads
    if count < 0:
        raise ValueError(f"decoder threads must be >= 0, got {count}")
    _decoder_threads = int(count)


def _use_threads(stream: Stream) -> None:
    stream.thread_type = "AUTO"
    if _decoder_threads:
        stream.codec_context.thread_count = _decoder_threads


# --------------------------------------------------------------------------- #
# Public decoding entry point
# --------------------------------------------------------------------------- #


def decode_frames(
    path: str | os.PathLike,
    indices: Sequence[int],
    *,
    channel_order: str = "rgb",
    size: tuple[int, int] | None = None,
    info: VideoInfo | None = None,
) -> np.ndarray:
    """Decode the frames at ``indices`` into a uint8 array ``[len(indices), H, W, 3]``.

    Output follows the order of ``indices`` (duplicates and any order allowed).
    ``size=(height, width)`` resizes during colour conversion.  ``info`` (from
    :func:`probe`) spares re-reading the rate and lets out-of-range requests go
    straight to the exact linear count.
    """
    convert = _converter(channel_order, size)
    order = _checked_indices(path, indices)
    with _open_video(path) as (p, container, stream):
        _use_threads(stream)
        if not order:
            ctx = stream.codec_context
            height, width = size if size is not None else (ctx.height, ctx.width)
            return np.empty((0, int(height), int(width), 3), dtype=np.uint8)
        targets = sorted(set(order))
        gap = _seek_gap(stream, info)
        kept = None
        if _should_seek(stream, targets, gap, info):
            kept = _decode_with_seeks(container, stream, targets, gap, convert, p)
    if kept is None:
        # Fresh container: a seek back to 0 is not guaranteed to equal a clean start.
        with _open_video(path) as (p, container, stream):
            _use_threads(stream)
            kept = _decode_linear(p, stream, container, set(targets), convert)
    return np.stack([kept[i] for i in order])


def iter_frames(
    path: str | os.PathLike,
    indices: Sequence[int],
    *,
    channel_order: str = "rgb",
    size: tuple[int, int] | None = None,
) -> Iterator[tuple[int, float, np.ndarray]]:
    """Stream ``(index, seconds, frame)`` for the frames at ``indices`` in one forward pass.

    For long videos (the SDK's sliding windows): unlike :func:`decode_frames`, nothing is
    collected, so memory holds one frame whatever the video's length; the caller keeps what it
    needs.  Frames come in increasing index order (duplicates in ``indices`` are yielded once);
    ``seconds`` is the frame's presentation time (index / rate when the stream has no timestamps).
    Raises :class:`VideoTooShortError` if the video ends before the last wanted frame.
    """
    convert = _converter(channel_order, size)
    wanted = set(_checked_indices(path, indices))
    if not wanted:
        return
    last = max(wanted)
    with _open_video(path) as (p, container, stream):
        _use_threads(stream)
        rate = _fps(stream) or 1.0
        count = 0
        for index, frame in enumerate(_decoded(p, container, stream)):
            count = index + 1
            if index in wanted:
                seconds = float(frame.time) if frame.time is not None else index / rate
                yield index, seconds, convert(frame)
            if index == last:
                return
    raise _too_short(p, last, count)
