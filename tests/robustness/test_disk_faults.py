"""Disk faults: an unwritable output folder, a disk that fills up mid-write and an index build
killed half-way each give one clear line (CLI exit 2) and lose nothing that was already written.

A full disk is simulated with ``RLIMIT_FSIZE`` in the child process (with SIGXFSZ ignored, writes past
the limit fail with EFBIG, as they fail with ENOSPC on a full disk): no root, no loop device. An
unwritable folder is a ``chmod 555`` folder, or -- for root, whom permissions do not stop -- a path
under ``/sys``, which the kernel refuses to create files in.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import warm_python
from hostile_videos import write_video

import tclr_zoo
from tclr_zoo.retrieval.index import VideoIndex

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    return tclr_zoo.load_model("r3d_10_025", pretrained=False).save_pretrained(tmp_path_factory.mktemp("m") / "model")


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("videos")
    return [write_video(folder / f"v{i}.mp4", 24 + 4 * i) for i in range(4)]


def _cli(*args, limit_bytes: int | None = None, **kwargs):
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.Popen([sys.executable, "-m", "tclr_zoo.cli", *map(str, args)], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=limit if limit_bytes is not None else None, **kwargs)


def _run(*args, **kwargs) -> tuple[int, str, str]:
    """A command run to its end (warm-started: see tests/helpers/warm_python.py)."""
    done = warm_python.run_cli(args, cwd=ROOT, **kwargs)
    return done.returncode, done.stdout, done.stderr


def _finish(proc: subprocess.Popen, timeout: float = 300):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _unwritable_folder(tmp_path: Path) -> Path:
    if os.geteuid() == 0:
        return Path("/sys/tclr-zoo-test-unwritable")
    folder = tmp_path / "readonly"
    folder.mkdir()
    folder.chmod(0o555)
    return folder


def test_unwritable_output_folder_is_one_line(saved, videos, tmp_path):
    target = _unwritable_folder(tmp_path) / "out"
    for args in (["embed", saved, videos[0], "--out", target / "e.npy"],
                 ["index", "build", saved, videos[0], "--out", target / "idx", "--no-progress"],
                 ["export", saved, "--out", target / "export"]):
        code, _, err = _run(*args)
        assert code == 2 and err.count("\n") == 1 and str(target) in err, (args, err)


def test_disk_full_while_writing_keeps_what_was_there(saved, videos, tmp_path):
    out = tmp_path / "e.npy"
    code, _, err = _run("embed", saved, *videos[:2], "--out", out, "--no-progress")
    assert code == 0, err
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    code, _, err = _finish(_cli("embed", saved, *videos, "--out", out, "--overwrite", "--no-progress",
                                limit_bytes=600))
    assert code == 2 and err.count("\n") == 1 and "e.npy" in err and "too large" in err.lower(), err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # old files intact, no temporaries
    index = tmp_path / "idx"
    VideoIndex.build(tclr_zoo.load_model(saved), videos[:2], progress=False).save(index)
    saved_files = {p.name: p.read_bytes() for p in index.iterdir()}
    code, _, err = _finish(_cli("index", "build", saved, *videos, "--out", index, "--overwrite", "--no-progress",
                                limit_bytes=600))
    assert code == 2 and err.count("\n") == 1 and "idx" in err, err
    assert {p.name: p.read_bytes() for p in index.iterdir()} == saved_files
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*before, "idx"])


def test_index_build_killed_midway_keeps_the_old_index_and_the_next_build_cleans_up(saved, videos, tmp_path):
    index = tmp_path / "idx"
    VideoIndex.build(tclr_zoo.load_model(saved), videos[:1], progress=False).save(index)
    old = VideoIndex.load(index)
    # killed while the new index sits complete in its staging folder, about to replace the old one
    env = dict(os.environ, TCLR_ZOO_TEST_SLOW_WRITE="5")
    proc = _cli("index", "build", saved, *videos, "--out", index, "--overwrite", "--no-progress", env=env)
    deadline = time.monotonic() + 240
    while not any(".staging-" in p.name and (p / "manifest.json").exists() for p in tmp_path.iterdir()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    _finish(proc)
    left = [p.name for p in tmp_path.iterdir() if p.name.startswith(".idx.")]
    assert left, "the kill should leave the staging folder behind"
    reloaded = VideoIndex.load(index)
    assert reloaded.ids == old.ids and torch.equal(reloaded.embeddings, old.embeddings)
    code, _, err = _run("index", "build", saved, *videos, "--out", index, "--overwrite", "--no-progress")
    assert code == 0, err
    assert len(VideoIndex.load(index)) == len(videos)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".idx.")]
    assert np.isfinite(VideoIndex.load(index).embeddings.float().numpy()).all()


def test_interrupted_index_build_resumes_where_it_stopped(saved, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    videos = [write_video(folder / f"v{i:02d}.mp4", 16 + i) for i in range(16)]
    straight = tmp_path / "straight"
    code, _, err = _run("index", "build", saved, folder, "--out", straight, "--no-progress")
    assert code == 0, err
    # The rows embedded so far are the unit store's: a unit file per 2 videos in .idx.shards.
    index, partial = tmp_path / "idx", tmp_path / ".idx.shards"
    args = ("index", "build", saved, folder, "--out", index, "--no-progress", "--batch-size", "1",
            "--shard-videos", "2")
    proc = _cli(*args)
    deadline = time.monotonic() + 240
    while not any(partial.glob("unit-*.safetensors")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    _finish(proc)
    assert not index.exists() and 0 < len(list(partial.glob("unit-*.safetensors"))) < len(videos) // 2
    refused = _run(*args)
    assert refused[0] == 2 and "--resume" in refused[2]
    other_head = _run(*args, "--resume", "--head", "backbone")
    assert other_head[0] == 2 and other_head[2].count("\n") == 1 and "head 'retrieval'" in other_head[2]
    code, out, err = _run(*args, "--resume")
    assert code == 0 and "from the interrupted build" in out, err
    a, b = VideoIndex.load(straight), VideoIndex.load(index)
    assert a.ids == b.ids == [str(v) for v in videos] and not partial.exists()
    torch.testing.assert_close(b.embeddings, a.embeddings, rtol=1e-4, atol=1e-5)
