"""Fuzzing: hypothesis mutates real encoded files (H.264 in MP4, MPEG-4 in AVI as UCF101
ships, FFV1 in MKV, and a real camera clip) and feeds them to what a training worker and the SDK do
with a file -- probe, TCLR clip sampling, frame-accurate decoding (seek and linear paths) and the
streaming window decoder.

The property: each input either decodes to frames of the promised shape or raises
``VideoDecodeError`` naming the file; any other exception is a finding (hypothesis shrinks it to a
minimal mutation), a crash of the interpreter kills the test run, and the decode-time bound turns
a hang into an error.

The bounded run here is derandomised (the same examples every time, so CI cannot flake on a new
find); the longer, random run is one command away:

    make fuzz                                   # TCLR_ZOO_FUZZ_EXAMPLES=20000, random seeds
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

import numpy as np
from hostile_videos import write_video
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from real_videos import real_video

from tclr_zoo.data.decode import VideoDecodeError, decode_frames, iter_frames, probe
from tclr_zoo.data.sampling import ClipSampling, sample_tclr_indices

EXAMPLES = int(os.environ.get("TCLR_ZOO_FUZZ_EXAMPLES", "120"))
LONG_RUN = "TCLR_ZOO_FUZZ_EXAMPLES" in os.environ
SAMPLING = ClipSampling(frames=4, stride=2, num_local=2, local_stride=1)
INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 0x10000)


@functools.lru_cache(maxsize=1)
def seeds() -> tuple[bytes, ...]:
    """The files mutated (not a fixture, so hypothesis does not print them with each failure)."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files = [write_video(folder / "h264.mp4", 12),
                 write_video(folder / "mpeg4.avi", 12, codec="mpeg4"),
                 write_video(folder / "ffv1.mkv", 8, codec="ffv1"),
                 real_video("carphone_pristine.mp4")]
        return tuple(Path(f).read_bytes()[:200_000] for f in files)


def mutations():
    """One edit of a file: (kind, position in [0, 1), an integer, bytes to insert)."""
    kinds = st.sampled_from(["flip", "set", "int32", "delete", "duplicate", "truncate", "insert"])
    return st.tuples(kinds, st.floats(0, 1, exclude_max=True), st.integers(0, 2**32 - 1),
                     st.binary(max_size=64))


def mutate(data: bytes, edits) -> bytes:
    buf = bytearray(data)
    for kind, where, number, blob in edits:
        if not buf:
            break
        i = int(where * len(buf))
        if kind == "flip":
            buf[i] ^= 1 << (number % 8)
        elif kind == "set":
            buf[i] = number % 256
        elif kind == "int32":
            value = INTERESTING[number % len(INTERESTING)]
            buf[i:i + 4] = value.to_bytes(4, "big" if number % 2 else "little")
        elif kind == "delete":
            del buf[i:i + 1 + number % 4096]
        elif kind == "duplicate":
            chunk = buf[i:i + 1 + number % 4096]
            buf[i:i] = chunk
        elif kind == "truncate":
            del buf[i:]
        else:
            buf[i:i] = blob
    return bytes(buf)


def decode_like_a_worker(path: str) -> None:
    """What a pretraining worker and the SDK do with one file; asserts the shapes they rely on."""
    info = probe(path)
    assert info.num_frames >= 0 and info.width > 0 and info.height > 0
    if info.num_frames >= SAMPLING.required_frames:
        picked = sample_tclr_indices(info.num_frames, SAMPLING, np.random.default_rng(0), path)
        needed = np.unique(picked.unique())
        frames = decode_frames(path, needed, info=info, size=(16, 16))
        assert frames.shape == (len(needed), 16, 16, 3) and frames.dtype == np.uint8
    for _, seconds, frame in iter_frames(path, range(min(info.num_frames, 6) or 1), size=(8, 8)):
        assert frame.shape == (8, 8, 3) and np.isfinite(seconds)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=not LONG_RUN, database=None,
          suppress_health_check=[HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(which=st.integers(0, 3), edits=st.lists(mutations(), min_size=1, max_size=6))
def test_mutated_videos_decode_or_raise_video_decode_error(which, edits):
    data = mutate(seeds()[which], edits)
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, f"fuzz{which}.bin")
        with open(path, "wb") as f:
            f.write(data)
        try:
            decode_like_a_worker(path)
        except VideoDecodeError as err:
            assert err.path == path and err.reason
