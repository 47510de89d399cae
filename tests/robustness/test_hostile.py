"""Hostile videos: the generated corpus (tests/helpers/hostile_videos.py) through the decoder, the
SDK and the CLI. Every file gives a correct result or one ``VideoDecodeError`` naming the path and
the reason -- never another exception, a crash or a hang -- and batch commands with ``--skip-bad``
record the failures in their output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import warm_python
from hostile_videos import SIZE, build_corpus, declared_dimensions, frames

import tclr_zoo
from tclr_zoo.data.decode import MAX_FRAME_PIXELS, VideoDecodeError, decode_frames, iter_frames, probe

ROOT = Path(__file__).resolve().parents[2]
ARCH = "r3d_10_025"
SECONDS_PER_FILE = 20.0  # generous on 2 loaded cores; each file takes well under a second here


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return tclr_zoo.load_model(ARCH, pretrained=False)


def _embed_outcome(model, path: Path):
    start = time.monotonic()
    try:
        result = model.embed(path)
    except VideoDecodeError as err:
        result = err
    return result, time.monotonic() - start


def test_every_hostile_file_gives_a_result_or_a_named_decode_error(corpus, model):
    outcomes = {}
    for name, item in corpus.items():
        result, seconds = _embed_outcome(model, item.path)
        assert seconds < SECONDS_PER_FILE, f"{name}: took {seconds:.1f} s"
        outcomes[name] = result
        if isinstance(result, VideoDecodeError):
            assert item.expect in ("error", "either"), f"{name}: unexpected error {result}"
            assert str(item.path) in str(result) and result.path == str(item.path)
            if item.expect == "error":
                assert item.reason in result.reason, f"{name}: {result.reason!r} lacks {item.reason!r}"
        else:
            assert item.expect in ("ok", "either"), f"{name}: expected an error, got a result"
            assert result.shape[0] == 1 and torch.isfinite(result).all(), name
    errors = {name for name, result in outcomes.items() if isinstance(result, VideoDecodeError)}
    assert errors - {"corrupt_middle"} == {name for name, item in corpus.items() if item.expect == "error"}


def test_rotation_metadata_is_applied_like_ffmpeg(corpus):
    """A display matrix of 90 degrees (counter-clockwise) is shown turned: the 48x64 frames come out
    64x48 with the top-left marker at the bottom-left, as ``ffmpeg`` with its default autorotate."""
    path = corpus["rotation_90"].path
    frame = decode_frames(path, [0])[0]
    assert frame.shape == (SIZE[1], SIZE[0], 3)
    h, w = frame.shape[:2]
    corner = {"top_left": frame[: h // 8, : w // 8], "bottom_left": frame[-h // 8:, : w // 8],
              "top_right": frame[: h // 8, -w // 8:], "bottom_right": frame[-h // 8:, -w // 8:]}
    brightest = max(corner, key=lambda k: corner[k].mean())
    assert brightest == "bottom_left" and corner["bottom_left"].mean() > 230
    resized = decode_frames(path, [0], size=(32, 24))[0]
    assert resized.shape == (32, 24, 3)


def test_high_bit_depth_and_444_decode_to_the_pictures_written(corpus):
    source = np.stack(frames(24))
    for name, tolerance in (("yuv420p10le", 12.0), ("yuv444p", 12.0)):
        decoded = decode_frames(corpus[name].path, range(24))
        assert decoded.shape == source.shape, name
        assert np.abs(decoded.astype(np.float32) - source).mean() < tolerance, name


def test_variable_frame_rate_timestamps_and_non_utf8_names(corpus, model):
    stamps = [seconds for _, seconds, _ in iter_frames(corpus["variable_frame_rate"].path, range(30))]
    gaps = np.diff(stamps)
    assert np.allclose(gaps[::2], 0.02, atol=1e-3) and np.allclose(gaps[1::2], 0.06, atol=1e-3)
    odd, good = corpus["non_utf8_name"].path, corpus["non_utf8_name"].path.parent / "good.mp4"
    assert probe(odd).num_frames == probe(good).num_frames == 40
    torch.testing.assert_close(model.embed(odd), model.embed(good), rtol=0, atol=0)
    open_files = len(os.listdir("/proc/self/fd"))
    for _ in range(5):  # read through a Python file object, which must be closed each time
        probe(odd)
    assert len(os.listdir("/proc/self/fd")) == open_files


def test_zero_frames_and_absurd_dimensions_fail_before_decoding(corpus):
    with pytest.raises(VideoDecodeError, match="no video frames"):
        decode_frames(corpus["zero_video_frames"].path, [0])
    # Memory stays bounded: a fresh interpreter opens the 16000x16000 header and is refused before
    # any frame buffer exists (one such frame would be 384 MB in YUV and 768 MB in RGB).
    code = ("import resource, sys\nfrom tclr_zoo.data.decode import VideoDecodeError, decode_frames\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "try:\n    decode_frames(sys.argv[1], [0])\nexcept VideoDecodeError as e:\n    print(e.reason)\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(corpus["huge_dimensions"].path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    reason, growth_mb = proc.stdout.strip().splitlines()
    assert "16000x16000" in reason and int(growth_mb) < 100, proc.stdout + proc.stderr


@pytest.mark.parametrize("name", ["symlink_dangling", "symlink_loop"])
@pytest.mark.parametrize("call", ["probe", "decode_frames", "iter_frames"])
def test_broken_and_looping_symbolic_links_give_one_decode_error_naming_the_path(corpus, name, call):
    path = corpus[name].path
    with pytest.raises(VideoDecodeError) as exc_info:
        if call == "probe":
            probe(path)
        elif call == "decode_frames":
            decode_frames(path, [0])
        else:
            list(iter_frames(path, [0]))
    err = exc_info.value
    assert type(err) is VideoDecodeError and err.path == str(path)
    assert err.reason == {"symlink_dangling": "broken symbolic link (its target does not exist)",
                          "symlink_loop": "symbolic link loop"}[name]
    assert str(err) == f"{path}: {err.reason}"


@pytest.mark.parametrize("width, height, refused", [
    (8192, 8192, False), (8193, 8192, True), (8192, 8193, True),  # the limit is 8192 * 8192 pixels ...
    (16384, 4096, False), (16385, 4096, True), (4096, 16385, True),  # ... in any shape
])
def test_frame_size_limit_is_exactly_8192_by_8192_pixels(tmp_path, width, height, refused):
    """Forged YUV4MPEG2 headers (no picture data to speak of): at the limit the file opens and
    reports its size; one pixel row or column more and it is refused before anything is decoded."""
    assert MAX_FRAME_PIXELS == 8192 * 8192
    path = declared_dimensions(tmp_path / f"{width}x{height}.y4m", width, height)
    if refused:
        with pytest.raises(VideoDecodeError, match=f"frame size {width}x{height} is larger than"):
            probe(path)
        with pytest.raises(VideoDecodeError, match=f"frame size {width}x{height} is larger than"):
            decode_frames(path, [0])
    else:
        info = probe(path)
        assert (info.width, info.height) == (width, height)
        with pytest.raises(VideoDecodeError) as exc_info:  # 4 KiB of picture data: no whole frame
            decode_frames(path, [0])
        assert "larger than" not in exc_info.value.reason


def test_decode_time_is_bounded(corpus, monkeypatch):
    monkeypatch.setenv("TCLR_ZOO_DECODE_TIMEOUT", "1e-6")
    with pytest.raises(VideoDecodeError, match="TCLR_ZOO_DECODE_TIMEOUT"):
        decode_frames(corpus["variable_frame_rate"].path, range(30))
    monkeypatch.setenv("TCLR_ZOO_DECODE_TIMEOUT", "soon")
    with pytest.raises(ValueError, match="TCLR_ZOO_DECODE_TIMEOUT"):
        decode_frames(corpus["variable_frame_rate"].path, [0])


def test_a_fifo_is_refused_instead_of_blocking(tmp_path):
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    with pytest.raises(VideoDecodeError, match="not a regular file"):
        probe(fifo)


def _cli(*args, timeout=300) -> subprocess.CompletedProcess:
    return warm_python.run_cli(args, cwd=ROOT, timeout=timeout)


def test_cli_one_line_per_bad_file_and_skip_bad_records_them(corpus, model, tmp_path):
    saved = model.save_pretrained(tmp_path / "saved")
    # The CLI searches a folder argument for videos, so the folder named like a video is "empty".
    # (the dangling symbolic link goes through the --skip-bad run below: one more CLI start costs seconds)
    expected = {"random_bytes": "cannot open", "huge_dimensions": "16000x16000", "symlink_loop": "symbolic link loop",
                "directory": "no video files in"}
    for name, words in expected.items():
        proc = _cli("embed", saved, corpus[name].path, "--out", tmp_path / f"{name}.npy")
        assert proc.returncode == 2, (name, proc.stderr)
        assert proc.stderr.count("\n") == 1 and words in proc.stderr, (name, proc.stderr)
        assert not (tmp_path / f"{name}.npy").exists()
    files = [item.path for item in corpus.values()
             if (item.path.exists() or item.path.is_symlink()) and not item.path.is_dir()]
    out = tmp_path / "all.npy"
    proc = _cli("embed", saved, *files, "--out", out, "--skip-bad", "--no-progress", "--head", "backbone")
    assert proc.returncode == 0, proc.stderr
    meta = json.loads(out.with_suffix(".json").read_text())
    failed = {f["path"] for f in meta["failed"]}
    assert {str(corpus[n].path) for n in ("empty", "random_bytes", "huge_dimensions", "symlink_loop",
                                          "symlink_dangling")} <= failed
    reasons = {f["path"]: f["reason"] for f in meta["failed"]}
    for name in ("symlink_loop", "symlink_dangling"):
        assert corpus[name].reason in reasons[str(corpus[name].path)], (name, reasons)
    assert np.load(out).shape[0] == len(meta["paths"]) == len(files) - len(failed)


def test_pretraining_dataset_turns_every_hostile_file_into_a_bad_sample_or_clips(corpus):
    """A training worker never raises on a hostile file: it returns a BadSample (which the loop logs
    once and counts: tests/train/test_pretrain.py::test_bad_files_are_skipped_logged_once_and_counted)."""
    from tclr_zoo.data.datasets import BadSample, TCLRPretrainDataset
    from tclr_zoo.data.sampling import ClipSampling

    names = list(corpus)
    dataset = TCLRPretrainDataset([corpus[n].path for n in names], ClipSampling(frames=4, stride=2, num_local=2))
    for name, item in zip(names, (dataset[i] for i in range(len(names)))):
        if isinstance(item, BadSample):
            assert corpus[name].expect != "ok" or name == "single_frame", (name, item.reason)
            assert item.path == str(corpus[name].path) and item.reason
        else:
            assert corpus[name].expect in ("ok", "either"), name
            assert item["global"].shape[:2] == (2, 3) and torch.isfinite(item["global"]).all()
