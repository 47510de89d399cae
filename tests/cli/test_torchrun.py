"""``embed`` and ``index build`` under torchrun: real ``torchrun`` runs with 2 CPU processes (gloo)
write what one process writes -- the same ids, order and vectors -- and an interrupted run resumes
from its finished units, also with another number of processes; ``embed --resume`` works in one
process too (the same unit store, world size 1)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hostile_videos import write_video
from safetensors import safe_open

import tclr_zoo
from tclr_zoo import cli
from tclr_zoo.inference.corpus import embed_corpus
from tclr_zoo.inference.shards import ShardPlan, shard_folder

ARCH = "r3d_10_025"
LENGTHS = (24, 40, 70, 33, 50, 31, 90)  # frames of the good videos
# Float sums in another batch composition (windows of other videos in the batch, other thread
# counts) differ in the last bits; measured 3e-8 between a torchrun run and a one-process run.
TOLERANCE = 1e-6
# What torchrun would set for a one-process run: the sharded path, in this process.
ONE_RANK = {"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"}


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return tclr_zoo.load_model(ARCH, pretrained=False, device="cpu").save_pretrained(
        tmp_path_factory.mktemp("model") / "saved")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """7 real H.264 files of 1-3 windows and a broken one (b_broken.mp4 sorts between them)."""
    root = tmp_path_factory.mktemp("videos")
    for i, n in enumerate(LENGTHS):
        write_video(root / f"{'a' if i < 3 else 'c'}{i}.mp4", n)
    (root / "b_broken.mp4").write_bytes(os.urandom(3000))
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "tclr_zoo.cli", *args, "--no-progress", "--shard-videos", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)


def _read(path: Path) -> tuple[torch.Tensor, dict]:
    with safe_open(str(path), "pt") as f:
        return f.get_tensor("embeddings"), json.loads(f.metadata()["tclr_zoo"])


def test_units_cover_the_list_once_round_robin_whatever_the_world_size():
    plan = ShardPlan(9, unit_videos=2)
    assert plan.units == 5 and list(plan.videos(4)) == [8]
    for world in (1, 2, 3, 7):
        mine = [plan.units_of(rank, world) for rank in range(world)]
        assert sorted(u for units in mine for u in units) == list(range(5))
        assert all(units == list(range(rank, 5, world)) for rank, units in enumerate(mine))
    assert [i for u in range(plan.units) for i in plan.videos(u)] == list(range(9))
    with pytest.raises(ValueError, match="rank 2 outside world size 2"):
        plan.units_of(2, 2)


def test_embed_under_torchrun_writes_what_one_process_writes(saved, folder, tmp_path):
    run = _torchrun(tmp_path, "embed", str(saved), str(folder), "--out", "all.safetensors", "--skip-bad")
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("embedded 7 videos (1 skipped)") == 1  # rank 0 reports, once
    assert not shard_folder(tmp_path / "all.safetensors").exists()  # merged, then removed
    got, meta = _read(tmp_path / "all.safetensors")

    model = tclr_zoo.load_model(saved, device="cpu")
    paths = sorted(str(p) for p in folder.iterdir())
    one = embed_corpus(model, paths, head="retrieval", batch_size=8, skip_bad=True, progress=False, workers=0)
    assert meta["paths"] == one.paths and [p.rsplit("/", 1)[1] for p in meta["paths"]][:3] == ["a0.mp4", "a1.mp4",
                                                                                                 "a2.mp4"]
    assert [f["path"] for f in meta["failed"]] == [str(folder / "b_broken.mp4")]
    assert meta["failed"][0]["reason"] == one.skipped[0].reason
    torch.testing.assert_close(got, one.embeddings, atol=TOLERANCE, rtol=0)


def test_index_build_resumes_an_interrupted_torchrun_run_with_another_world_size(saved, folder, tmp_path):
    out = tmp_path / "idx"
    # Without --skip-bad the broken file stops the rank that meets it: the run fails, finished units stay.
    failed = _torchrun(tmp_path, "index", "build", str(saved), str(folder), "--out", str(out), "--windows")
    assert failed.returncode != 0 and "b_broken.mp4" in failed.stderr
    assert not out.exists() and any(shard_folder(out).glob("unit-*.safetensors"))

    runner = CliRunner()
    base = ["index", "build", str(saved), str(folder), "--out", str(out), "--windows", "--no-progress",
            "--shard-videos", "2", "--workers", "0"]
    again = runner.invoke(cli.main, base, env=ONE_RANK)
    assert again.exit_code == 2 and "pass --resume to continue it or --overwrite" in again.output
    other = runner.invoke(cli.main, [*base, "--resume", "--skip-bad", "--head", "backbone"], env=ONE_RANK)
    assert other.exit_code == 2 and "differs in head" in other.output

    resumed = runner.invoke(cli.main, [*base, "--resume", "--skip-bad"], env=ONE_RANK)
    assert resumed.exit_code == 0, resumed.output
    assert "resuming:" in resumed.output and "(1 skipped)" in resumed.output
    assert not shard_folder(out).exists()

    built = tclr_zoo.VideoIndex.load(out)
    model = tclr_zoo.load_model(saved, device="cpu")
    one = tclr_zoo.VideoIndex.build(model, [str(folder)], windows=True, skip_bad=True, progress=False, workers=0)
    assert built.ids == one.ids and built.paths == one.paths
    assert built.starts == one.starts and built.ends == one.ends
    assert len(built) == sum(len(model.plan.indices(n)) for n in LENGTHS) > len(LENGTHS)
    assert built.ids[:2] == [f"{folder}/a0.mp4#0", f"{folder}/a1.mp4#0"]
    torch.testing.assert_close(built.embeddings, one.embeddings, atol=TOLERANCE, rtol=0)


def test_embed_resumes_an_interrupted_run_in_one_process(saved, folder, tmp_path, monkeypatch):
    """Ctrl-C in the first forward pass of unit 2 (one window a pass): units 0 and 1 (videos 0-3, the
    broken one among them) are kept; --resume embeds the rest and writes what an uninterrupted run writes."""
    from tclr_zoo.inference.backends import TorchBackend

    model = tclr_zoo.load_model(saved, device="cpu")
    stop_at = sum(len(model.plan.indices(n)) for n in LENGTHS[:3]) + 1
    out, runner = tmp_path / "e.npy", CliRunner()
    base = ["embed", str(saved), str(folder), "--out", str(out), "--skip-bad", "--no-progress", "--workers", "0",
            "--batch-size", "1", "--shard-videos", "2"]
    forward, calls = TorchBackend.run, []

    def interrupted(self, clips, head):
        calls.append(head)
        if len(calls) == stop_at:
            raise KeyboardInterrupt
        return forward(self, clips, head)

    with monkeypatch.context() as patched:
        patched.setattr(TorchBackend, "run", interrupted)
        stopped = runner.invoke(cli.main, base)
    assert stopped.exit_code != 0 and not out.exists()
    assert sorted(p.name for p in shard_folder(out).iterdir()) == ["job.json", "unit-000000.safetensors",
                                                                   "unit-000001.safetensors"]
    again = runner.invoke(cli.main, base)
    assert again.exit_code == 2 and "pass --resume to continue it or --overwrite" in again.output
    resumed = runner.invoke(cli.main, [*base, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert "resuming: 2 finished units (4 of 8 videos)" in resumed.output
    assert "embedded 7 videos (1 skipped)" in resumed.output and "4 videos from the interrupted run" in resumed.output
    assert not shard_folder(out).exists() and sorted(p.name for p in tmp_path.iterdir()) == ["e.json", "e.npy"]

    meta = json.loads(out.with_suffix(".json").read_text())
    one = embed_corpus(model, [str(folder)], skip_bad=True, workers=0)
    assert meta["paths"] == one.paths and meta["failed"] == [s.to_record() for s in one.skipped]
    torch.testing.assert_close(torch.from_numpy(np.load(out)), one.embeddings, atol=TOLERANCE, rtol=0)
