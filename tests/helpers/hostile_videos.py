"""A corpus of hostile video files, generated with PyAV for the reliability tests.

Each entry is a file (or a path that is not a file) that users meet in scraped folders: broken
containers, streams that lie about themselves, formats outside the everyday yuv420p H.264, and
paths that are not regular files. ``build_corpus(folder)`` writes them all and returns
``{name: Hostile}``, where ``expect`` says what the SDK must do with it:

* ``"error"``: raise ``VideoDecodeError`` naming the path (never another exception, a crash or a hang);
* ``"ok"``: give a correct result;
* ``"either"``: a correct result or ``VideoDecodeError`` (FFmpeg conceals some corruption, and
  whether it can depends on where the damage falls).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

SIZE = (48, 64)  # height, width of the generated videos


@dataclass(frozen=True)
class Hostile:
    path: Path
    expect: str  # "error", "ok" or "either"
    reason: str  # words the error message must contain (for "error"), else what is special


def frames(n: int, height: int = SIZE[0], width: int = SIZE[1]) -> list[np.ndarray]:
    """RGB frames: smooth colour gradients (which 4:2:0 chroma subsampling keeps) with a dark square
    moving across, and a white marker in the top-left corner (so a rotation is visible)."""
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([40 + 150 * x / width, 40 + 150 * y / height, 120 + 0 * x], axis=-1).astype(np.uint8)
    out = []
    for i in range(n):
        img = base.copy()
        left = (4 + 2 * i) % (width - 12)
        img[height // 2:height // 2 + 12, left:left + 12] = 20
        img[: height // 4, : width // 4] = 255
        out.append(img)
    return out


def write_video(path: Path, n: int = 24, *, codec: str = "libx264", pix_fmt: str = "yuv420p", rate: int = 25,
                rotation: int | None = None, pts: list[int] | None = None, options: dict | None = None,
                container_format: str | None = None) -> Path:
    """Encode ``n`` frames of :func:`frames`; ``pts`` (in 1/1000 s) makes the frame rate variable."""
    with av.open(str(path), "w", format=container_format) as c:
        stream = c.add_stream(codec, rate=rate, options=options or {})
        stream.height, stream.width = SIZE
        stream.pix_fmt = pix_fmt
        if pts is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        video = []
        for i, img in enumerate(frames(n)):
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts[i], Fraction(1, 1000)
            video.append(frame)
        _encode_all(c, stream, video)
    return path


def _encode_all(container, stream, frames_to_encode) -> None:
    for frame in [*frames_to_encode, None]:  # None flushes the encoder
        for packet in stream.encode(frame):
            container.mux(packet)


def _audio_only(path: Path) -> Path:
    with av.open(str(path), "w") as c:
        stream = c.add_stream("aac", rate=16000)
        t = np.arange(16000, dtype=np.float32) / 16000
        samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(samples[None, :], format="fltp", layout="mono")
        frame.sample_rate = 16000
        _encode_all(c, stream, [frame])
    return path


def _zero_frames(path: Path) -> Path:
    """An AVI whose header declares a video stream that holds no frame (MP4 drops such a track)."""
    with av.open(str(path), "w") as c:
        stream = c.add_stream("mpeg4", rate=25)
        stream.height, stream.width = SIZE
        stream.pix_fmt = "yuv420p"
        c.start_encoding()
    return path


def declared_dimensions(path: Path, width: int, height: int) -> Path:
    """A YUV4MPEG2 stream whose header declares a ``width x height`` picture, followed by a few bytes
    of one frame: a decoder that trusts the header would allocate gigabytes."""
    path.write_bytes(f"YUV4MPEG2 W{width} H{height} F25:1 Ip A1:1 C420jpeg\nFRAME\n".encode() + bytes(4096))
    return path


def _truncated(path: Path, source: Path, keep: float = 0.6) -> Path:
    """The first ``keep`` of an MP4 whose index (moov) is written last: the index is lost."""
    data = source.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def _corrupt_middle(path: Path, source: Path, seed: int = 1) -> Path:
    """Random bytes over a stretch in the middle of the media data, index intact."""
    data = bytearray(source.read_bytes())
    rng = np.random.default_rng(seed)
    start, length = len(data) // 3, len(data) // 4
    data[start:start + length] = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


def build_corpus(folder: Path) -> dict[str, Hostile]:
    folder.mkdir(parents=True, exist_ok=True)
    good = write_video(folder / "good.mp4", 40)
    corpus = {
        "empty": Hostile(_touch(folder / "empty.mp4"), "error", "empty file"),
        "random_bytes": Hostile(_random(folder / "random.mp4"), "error", "cannot open"),
        "truncated_index_lost": Hostile(_truncated(folder / "truncated.mp4", good), "error", "cannot open"),
        "corrupt_middle": Hostile(_corrupt_middle(folder / "corrupt_middle.mp4", good), "either", "corrupt"),
        "audio_only": Hostile(_audio_only(folder / "audio_only.m4a"), "error", "no video stream"),
        "zero_video_frames": Hostile(_zero_frames(folder / "zero_frames.avi"), "error", "no video frames"),
        "single_frame": Hostile(write_video(folder / "single_frame.mp4", 1), "ok", "one frame"),
        # FFmpeg itself refuses 60000x60000; 16000x16000 (768 MB per RGB frame) passes FFmpeg's check
        # and must be refused by ours, before a frame is allocated.
        "absurd_dimensions": Hostile(declared_dimensions(folder / "absurd.y4m", 60000, 60000), "error",
                                     "cannot open"),
        "huge_dimensions": Hostile(declared_dimensions(folder / "huge.y4m", 16000, 16000), "error",
                                   "16000x16000"),
        "variable_frame_rate": Hostile(write_video(folder / "vfr.mp4", 30, pts=_vfr_pts(30)), "ok", "VFR"),
        "rotation_90": Hostile(write_video(folder / "rotated.mp4", 24, rotation=90), "ok", "display matrix 90"),
        "yuv420p10le": Hostile(write_video(folder / "ten_bit.mkv", 24, codec="ffv1", pix_fmt="yuv420p10le"),
                               "ok", "10-bit"),
        "yuv444p": Hostile(write_video(folder / "yuv444.mp4", 24, pix_fmt="yuv444p"), "ok", "4:4:4 H.264"),
        "directory": Hostile(_directory(folder / "folder.mp4"), "error", "is a directory"),
        "symlink_loop": Hostile(_symlink_loop(folder / "loop.mp4"), "error", "symbolic link loop"),
        "symlink_dangling": Hostile(_symlink_dangling(folder / "dangling.mp4"), "error", "broken symbolic link"),
        "missing": Hostile(folder / "missing.mp4", "error", "not found"),
        "non_utf8_name": Hostile(_non_utf8(folder, good), "ok", "file name not valid UTF-8"),
    }
    return corpus


def _touch(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _random(path: Path, size: int = 64 * 1024) -> Path:
    path.write_bytes(np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes())
    return path


def _vfr_pts(n: int) -> list[int]:
    """Milliseconds: alternating 20 ms and 60 ms gaps."""
    out, t = [], 0
    for i in range(n):
        out.append(t)
        t += 20 if i % 2 == 0 else 60
    return out


def _directory(path: Path) -> Path:
    path.mkdir(exist_ok=True)
    return path


def _symlink_loop(path: Path) -> Path:
    other = path.with_name(path.stem + "_b.mp4")
    for link, target in ((path, other), (other, path)):
        if not link.is_symlink():
            os.symlink(target.name, link)
    return path


def _symlink_dangling(path: Path) -> Path:
    """A symbolic link whose target (a video moved or deleted since) does not exist."""
    if not path.is_symlink():
        os.symlink(path.with_name("moved_away.mp4").name, path)
    return path


def _non_utf8(folder: Path, source: Path) -> Path:
    """A copy of ``source`` under a Latin-1 file name (byte 0xE9), as old archives have; on Linux
    ``Path`` holds it with a surrogate escape."""
    name = os.fsdecode(b"caf\xe9.mp4")
    path = folder / name
    path.write_bytes(source.read_bytes())
    return path
