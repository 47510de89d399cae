"""Tests for tclr_zoo.data.decode on real videos encoded with PyAV.

Every frame encodes its own index (see ``_frame_image``), so a test can tell
which frame came back; exactness is checked against a plain linear decode of
the same file, which is the definition of a frame index.
"""

from __future__ import annotations

import os
import pickle
from fractions import Fraction

import av
import numpy as np
import pytest

from tclr_zoo.data import decode
from tclr_zoo.data.decode import (
    VideoDecodeError,
    VideoInfo,
    VideoTooShortError,
    decode_frames,
    probe,
)

W, H, N = 64, 48, 60  # the small videos
LONG_SIDE, LONG_N, LONG_GOP = 32, 300, 30  # the long-GOP video for the seek path
BANDS, STEP = 3, 32  # base-8 digits, 32 grey levels apart: survives lossy coding


# --------------------------------------------------------------------------- #
# Writing test videos
# --------------------------------------------------------------------------- #


def _frame_image(i: int, h: int, w: int) -> np.ndarray:
    """Three horizontal bands hold i's base-8 digits (R=G=level, B=255-level)."""
    img = np.empty((h, w, 3), np.uint8)
    for band in range(BANDS):
        level = STEP * ((i // 8**band) % 8)
        rows = slice(band * h // BANDS, (band + 1) * h // BANDS)
        img[rows, :, 0] = img[rows, :, 1] = level
        img[rows, :, 2] = 255 - level
    return img


def _index_of(rgb: np.ndarray) -> int:
    """Inverse of _frame_image, reading the red channel inside each band."""
    h, index = rgb.shape[0], 0
    for band in range(BANDS):
        top, bottom = band * h // BANDS, (band + 1) * h // BANDS
        level = np.median(rgb[top + 2 : bottom - 2, :, 0])
        index += int(round(level / STEP)) * 8**band
    return index


def _write(path, codec: str, n: int, *, w: int = W, h: int = H, gop: int | None = None,
           pts_ms: list[int] | None = None) -> str:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        if gop is not None:
            stream.codec_context.gop_size = gop
        if pts_ms is not None:  # variable frame rate: explicit millisecond timestamps
            stream.codec_context.time_base = Fraction(1, 1000)
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(_frame_image(i, h, w), format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[i], Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return str(path)


def _write_audio_only(path) -> str:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000, layout="mono")
        for k in range(4):
            silence = np.zeros((1, 800), np.int16)
            frame = av.AudioFrame.from_ndarray(silence, format="s16", layout="mono")
            frame.sample_rate, frame.pts = 8000, 800 * k
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return str(path)


def _webm_codec() -> str:
    return "libvpx-vp9" if "libvpx-vp9" in av.codecs_available else "libvpx"


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("videos")
    gaps = np.random.default_rng(0).integers(10, 90, N)
    v = {
        "mp4": _write(d / "clip.mp4", "libx264", N),
        "avi": _write(d / "clip.avi", "mpeg4", N),
        "mkv": _write(d / "clip.mkv", "libx264", N),
        "webm": _write(d / "clip.webm", _webm_codec(), 40),
        "vfr": _write(d / "vfr.mp4", "libx264", N, pts_ms=np.cumsum(gaps).tolist()),
        "long": _write(d / "long.mp4", "libx264", LONG_N, w=LONG_SIDE, h=LONG_SIDE, gop=LONG_GOP),
        "audio": _write_audio_only(d / "audio.wav"),
    }
    big = _write(d / "big.mp4", "libx264", 120)
    data = open(big, "rb").read()
    a, b = int(len(data) * 0.45), int(len(data) * 0.6)  # zero the middle of the mdat
    (d / "corrupt.mp4").write_bytes(data[:a] + bytes(b - a) + data[b:])
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])  # moov atom lost
    mkv = open(v["mkv"], "rb").read()
    (d / "truncated.mkv").write_bytes(mkv[: len(mkv) // 2])  # opens, fewer frames
    noise = np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8)
    (d / "random.mp4").write_bytes(noise.tobytes())
    (d / "empty.mp4").write_bytes(b"")
    (d / "a_dir.mp4").mkdir()
    for name in ("corrupt.mp4", "truncated.mp4", "truncated.mkv", "random.mp4", "empty.mp4",
                 "a_dir.mp4"):
        v[name] = str(d / name)
    v["missing"] = str(d / "missing.mp4")
    return v


_linear_cache: dict[tuple[str, str, tuple | None], np.ndarray] = {}


def _linear(path: str, fmt: str = "rgb24", size: tuple[int, int] | None = None) -> np.ndarray:
    """Reference: every frame of a plain forward decode, in order."""
    key = (path, fmt, size)
    if key not in _linear_cache:
        kw = {} if size is None else {"height": size[0], "width": size[1]}
        with av.open(path) as container:
            frames = [f.to_ndarray(format=fmt, **kw) for f in container.decode(video=0)]
        _linear_cache[key] = np.stack(frames)
    return _linear_cache[key]


FORMATS = ["mp4", "avi", "mkv", "webm", "vfr"]


# --------------------------------------------------------------------------- #
# Correct frames
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("fmt", FORMATS + ["long"])
def test_reference_decode_has_every_frame_in_order(videos, fmt):
    ref = _linear(videos[fmt])
    assert len(ref) == {"webm": 40, "long": LONG_N}.get(fmt, N)
    assert [_index_of(f) for f in ref] == list(range(len(ref)))


@pytest.mark.parametrize("fmt", FORMATS)
def test_decode_matches_linear_with_duplicates_and_unsorted(videos, fmt):
    ref = _linear(videos[fmt])
    idx = [7, 0, 3, 3, len(ref) - 1, 20, 7]
    out = decode_frames(videos[fmt], idx)
    assert out.dtype == np.uint8 and out.shape == (len(idx), H, W, 3)
    np.testing.assert_array_equal(out, ref[idx])
    assert [_index_of(f) for f in out] == idx


@pytest.mark.parametrize("fmt", FORMATS)
def test_sparse_far_apart_matches_linear(videos, fmt):
    ref = _linear(videos[fmt])
    idx = [len(ref) - 1, 0, len(ref) // 2]
    np.testing.assert_array_equal(decode_frames(videos[fmt], idx), ref[idx])


def _forbid_linear(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("seek path fell back to the linear decode")
    monkeypatch.setattr(decode, "_decode_linear", fail)


@pytest.mark.parametrize("idx", [
    [5, 100, 170, 290],                   # sparse, first near the start
    [299, 150, 0, 150, 61, 239],          # unsorted, duplicate, keyframe boundaries
    list(range(200, 232, 2)),             # one dense clip far from the start
    [29, 30, 31, 120, 179, 180, 181],     # around keyframes (gop 30)
])
def test_long_gop_sparse_uses_seek_and_matches_linear(videos, monkeypatch, idx):
    path = videos["long"]
    _forbid_linear(monkeypatch)
    out = decode_frames(path, idx)
    np.testing.assert_array_equal(out, _linear(path)[idx])
    assert [_index_of(f) for f in out] == idx


def test_long_gop_dense_clip_from_start(videos):
    path = videos["long"]
    idx = list(range(0, 48, 3))
    np.testing.assert_array_equal(decode_frames(path, idx), _linear(path)[idx])


def test_vfr_indexes_by_frame_count_not_time(videos):
    path = videos["vfr"]
    idx = [59, 0, 31, 12]
    out = decode_frames(path, idx)
    np.testing.assert_array_equal(out, _linear(path)[idx])
    assert [_index_of(f) for f in out] == idx


def test_bgr_is_rgb_with_channels_reversed(videos):
    idx = [1, 40, 1]  # frame 1: R=G=32, B=223 in the top band
    rgb = decode_frames(videos["mp4"], idx, channel_order="rgb")
    bgr = decode_frames(videos["mp4"], idx, channel_order="bgr")
    np.testing.assert_array_equal(bgr, rgb[..., ::-1])
    assert rgb[0, 2, 2, 2] > 200 > rgb[0, 2, 2, 0]  # blue where it belongs
    assert bgr[0, 2, 2, 0] > 200


@pytest.mark.parametrize("fmt", ["mp4", "long"])
def test_size_resizes_during_conversion(videos, fmt):
    path, size, idx = videos[fmt], (24, 40), [3, 1, 3, 250 if fmt == "long" else 50]
    out = decode_frames(path, idx, size=size, channel_order="bgr")
    assert out.shape == (4, 24, 40, 3)
    np.testing.assert_array_equal(out, _linear(path, "bgr24", size)[idx])


def test_empty_indices_give_empty_array(videos):
    assert decode_frames(videos["mp4"], []).shape == (0, H, W, 3)
    assert decode_frames(videos["mp4"], [], size=(10, 12)).shape == (0, 10, 12, 3)


def test_numpy_indices_and_info_accepted(videos):
    path = videos["long"]
    idx = np.array([280, 10, 140])
    out = decode_frames(path, idx, info=probe(path))
    np.testing.assert_array_equal(out, _linear(path)[idx])


def test_bad_channel_order_is_value_error(videos):
    with pytest.raises(ValueError, match="channel_order"):
        decode_frames(videos["mp4"], [0], channel_order="yuv")


# --------------------------------------------------------------------------- #
# probe
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("fmt, frames, side", [
    ("mp4", N, (W, H)), ("avi", N, (W, H)), ("mkv", N, (W, H)), ("webm", 40, (W, H)),
    ("long", LONG_N, (LONG_SIDE, LONG_SIDE)),
])
def test_probe_cfr(videos, fmt, frames, side):
    info = probe(videos[fmt])
    expected = VideoInfo(path=videos[fmt], num_frames=frames, fps=25.0, width=side[0], height=side[1])
    assert info == expected
    assert type(info.num_frames) is int and type(info.fps) is float


def test_probe_counts_packets_when_header_has_no_count(videos):
    with av.open(videos["mkv"]) as container:
        assert container.streams.video[0].frames == 0  # the case the packet count exists for
    assert probe(videos["mkv"]).num_frames == len(_linear(videos["mkv"]))


def test_probe_vfr(videos):
    info = probe(videos["vfr"])
    assert info.num_frames == N
    assert 10 < info.fps < 30 and info.fps != 25.0  # average of irregular 10-90 ms gaps


def test_probe_accepts_pathlike(videos):
    from pathlib import Path
    assert probe(Path(videos["mp4"])).path == videos["mp4"]


# --------------------------------------------------------------------------- #
# Errors
# --------------------------------------------------------------------------- #


BROKEN = [
    ("missing", "not found"),
    ("a_dir.mp4", "directory"),
    ("empty.mp4", "empty"),
    ("random.mp4", "cannot open"),
    ("truncated.mp4", "cannot open"),
    ("audio", "no video stream"),
]


@pytest.mark.parametrize("name, words", BROKEN)
@pytest.mark.parametrize("call", ["probe", "decode_frames"])
def test_unusable_inputs_raise_video_decode_error(videos, name, words, call):
    path = videos[name]
    with pytest.raises(VideoDecodeError) as exc_info:
        probe(path) if call == "probe" else decode_frames(path, [0])
    err = exc_info.value
    assert type(err) is VideoDecodeError
    assert err.path == path and words in err.reason
    assert str(err) == f"{path}: {err.reason}"


def test_corruption_inside_decode_loop_is_wrapped(videos):
    path = videos["corrupt.mp4"]
    assert decode_frames(path, [0]).shape == (1, H, W, 3)  # the file opens and decodes at first
    with pytest.raises(VideoDecodeError) as exc_info:
        decode_frames(path, [5, 119])
    err = exc_info.value
    assert type(err) is VideoDecodeError and err.path == path
    assert "corrupt" in err.reason
    assert isinstance(err.__cause__, av.FFmpegError)


def test_negative_index(videos):
    with pytest.raises(VideoDecodeError, match="negative frame index -1") as exc_info:
        decode_frames(videos["mp4"], [3, -1])
    assert exc_info.value.path == videos["mp4"]


@pytest.mark.parametrize("fmt, idx", [
    ("mp4", [0, N]),
    ("mkv", [N + 5]),
    ("vfr", [N]),
    ("long", [10, 200, LONG_N + 3]),  # seek path runs out, linear pass counts exactly
])
def test_too_short(videos, fmt, idx):
    path = videos[fmt]
    n = len(_linear(path))
    with pytest.raises(VideoTooShortError) as exc_info:
        decode_frames(path, idx)
    err = exc_info.value
    assert err.path == path and err.reason == f"needs frame {max(idx)} but video has {n} frames"
    assert isinstance(err, VideoDecodeError)


def test_too_short_with_info_and_truncated_mkv(videos):
    path = videos["truncated.mkv"]
    n = len(_linear(path))
    assert 0 < n < N
    with pytest.raises(VideoTooShortError, match=f"but video has {n} frames"):
        decode_frames(path, [n], info=probe(path))
    np.testing.assert_array_equal(decode_frames(path, [n - 1]), _linear(path)[[n - 1]])


def test_errors_pickle_round_trip(tmp_path):
    reason = "needs frame 9 but video has 3 frames"
    err = pickle.loads(pickle.dumps(VideoTooShortError(tmp_path / "x.mp4", reason)))
    assert type(err) is VideoTooShortError
    assert (err.path, err.reason) == (os.fspath(tmp_path / "x.mp4"), reason)
