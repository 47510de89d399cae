"""Multi-process pretraining: real ``torchrun`` runs on CPU (gloo), the gathered-loss gradient, shards."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from conftest import tiny_overrides

from tclr_zoo import runtime
from tclr_zoo.data.datasets import EpochShuffleSampler
from tclr_zoo.hub.checkpoint import load_checkpoint
from tclr_zoo.hub.format import load_pretrained_dir
from tclr_zoo.losses import tclr_losses
from tclr_zoo.train import distributed
from tclr_zoo.train.config import RecipeError, load_recipe
from tclr_zoo.train.distributed import DistributedEpochShuffleSampler
from tclr_zoo.train.pretrain import pretrain


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _quiet(_msg: str) -> None:
    pass


# --- data shards and recipe checks (no processes) -----------------------------------------------

@pytest.mark.parametrize("num, world, per_process", [(12, 2, 2), (10, 3, 1), (17, 4, 2)])
def test_shards_are_disjoint_and_each_global_step_is_the_single_process_step(num, world, per_process):
    single = EpochShuffleSampler(num, seed=5)
    shards = [DistributedEpochShuffleSampler(num, seed=5, rank=r, world_size=world) for r in range(world)]
    for epoch in (0, 3):
        single.set_epoch(epoch)
        for shard in shards:
            shard.set_epoch(epoch)
        keys = list(single)
        parts = [list(shard) for shard in shards]
        assert all(len(part) == len(shard) == num // world for part, shard in zip(parts, shards))
        flat = [k for part in parts for k in part]
        assert len(set(flat)) == len(flat)  # disjoint
        assert all(epoch * num <= k < (epoch + 1) * num for k in flat)  # epoch-tagged keys, as one process
        # global step s = per-process batch s of every rank = single-process batch s (tail dropped)
        batch = per_process * world
        for step in range((num // world) // per_process):
            got = {k for part in parts for k in part[step * per_process : (step + 1) * per_process]}
            assert got == set(keys[step * batch : (step + 1) * batch])
    assert list(shards[0]) != list(DistributedEpochShuffleSampler(num, seed=5, rank=0, world_size=world))


def test_batch_and_sync_bn_settings_are_checked(tiny_dataset):
    assert distributed.per_process_batch(40, 8) == 5
    assert distributed.per_process_batch(4, 1) == 4
    with pytest.raises(RecipeError, match="split evenly over 3 processes"):
        distributed.per_process_batch(4, 3)
    with pytest.raises(RecipeError, match="at least 2 videos"):
        distributed.per_process_batch(4, 4)
    cpu = torch.device("cpu")
    faithful = load_recipe("demo", tiny_overrides(tiny_dataset, **{"train.sync_bn": "true"}))
    with pytest.raises(RecipeError, match="model.bn_mode=shared"):
        distributed.use_sync_bn(faithful, 2, cpu)
    shared = load_recipe("demo", tiny_overrides(tiny_dataset, **{"train.sync_bn": "true", "model.bn_mode": "shared"}))
    with pytest.raises(RecipeError, match="needs CUDA"):
        distributed.use_sync_bn(shared, 2, cpu)
    assert distributed.use_sync_bn(shared, 1, cpu) is False  # one process: nothing to synchronise
    assert distributed.use_sync_bn(load_recipe("demo", tiny_overrides(tiny_dataset)), 2, cpu) is False


# --- the gathered loss: DDP gradients equal the one-process gradient of the global batch -----------

class _ToyTCLR(torch.nn.Module):
    """A BatchNorm-free stand-in with ``forward_pretrain``, so one and two processes must agree exactly."""

    def __init__(self, features: int = 12, dim: int = 8, steps: int = 4) -> None:
        super().__init__()
        self.steps, self.dim = steps, dim
        self.embed = torch.nn.Linear(features, dim * steps)

    def forward_pretrain(self, global_clips, local_clips):
        norm = torch.nn.functional.normalize
        g = self.embed(global_clips.flatten(2)).unflatten(-1, (self.steps, self.dim))  # [2, B, K, D]
        loc = self.embed(local_clips.flatten(3)).unflatten(-1, (self.steps, self.dim)).mean(-2)  # [2, K, B, D]
        return {"global_z": norm(g.mean(2), dim=-1), "global_steps_z": norm(g, dim=-1),
                "local_z": norm(loc.transpose(1, 2), dim=-1)}


def _toy_batch(sizes):
    gen = torch.Generator().manual_seed(0)
    videos = sum(sizes)
    return torch.randn(2, videos, 3, 1, 2, 2, generator=gen), torch.randn(2, 4, videos, 3, 1, 2, 2, generator=gen)


def _toy_model():
    torch.manual_seed(1)
    return _ToyTCLR()


def _gradient_worker(rank: int, port: int, sizes: list[int]) -> None:
    os.environ.update(WORLD_SIZE=str(len(sizes)), RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    global_clips, local_clips = _toy_batch(sizes)
    reference = _toy_model()
    expected_loss = tclr_losses(**reference.forward_pretrain(global_clips, local_clips))["total"]
    expected_loss.backward()
    start = sum(sizes[:rank])
    mine = slice(start, start + sizes[rank])  # this rank's videos of the global batch (sizes may differ)
    with runtime.session(torch.device("cpu")) as ctx:
        assert ctx.world_size == len(sizes) and ctx.rank == rank
        model = _toy_model()
        forward = distributed.pretraining_forward(model)
        assert isinstance(forward, torch.nn.parallel.DistributedDataParallel)
        out = distributed.gather_embeddings(forward(global_clips[:, mine], local_clips[:, :, mine]), sizes)
        loss = tclr_losses(**out)["total"]
        loss.backward()
        torch.testing.assert_close(loss, expected_loss)
        for (name, p), q in zip(model.named_parameters(), reference.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-6, msg=f"rank {rank}: {name}")


@pytest.mark.parametrize("sizes", [[3, 2]])
def test_gathered_loss_gives_every_rank_the_one_process_gradient(sizes):
    """Unequal shares (a bad file dropped from one rank's batch) included."""
    mp.spawn(_gradient_worker, args=(_free_port(), sizes), nprocs=len(sizes), join=True)


# --- real torchrun runs ----------------------------------------------------------------------------

def _torchrun(out: Path, dataset: Path, *extra_args: str, **overrides) -> subprocess.CompletedProcess:
    sets = [arg for item in tiny_overrides(dataset, **overrides) for arg in ("--set", item)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "tclr_zoo.cli", "pretrain", "--out", str(out), "--no-progress",
           *extra_args, *sets]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=out.parent, env=env, capture_output=True, text=True, timeout=240)


def _with_bad_files(dataset: Path, count: int) -> list[Path]:
    """Add ``count`` undecodable videos to the train list of ``dataset`` (a private copy)."""
    split = next(dataset.rglob("trainlist01.txt"))
    lines = split.read_text().splitlines()
    rel = lines[0].split()[0]
    video_root = next(p for p in [dataset, *dataset.iterdir()] if (p / rel).is_file())
    class_name = rel.split("/")[0]
    bad = []
    for i in range(count):
        path = video_root / class_name / f"v_broken_g09_c{i + 1:02d}.mp4"
        path.write_bytes(b"garbage" * 100)
        bad.append(path)
    split.write_text("\n".join(lines + [f"{class_name}/{p.name} 1" for p in bad]) + "\n")
    return bad


def _digest(model_dir: Path) -> str:
    model, _ = load_pretrained_dir(model_dir)
    return distributed.parameter_digest(dict(model.named_parameters()))


def test_torchrun_two_processes_resume_across_world_sizes_with_bad_files(copied_dataset, tmp_path):
    """1 process (epoch 1) -> torchrun 2 processes (epoch 2, kNN) -> 1 process (epoch 3), in one run folder.

    12 good + 6 broken videos, global batch 6 (3 per process): broken files shrink some ranks'
    batches (unequal gathers) or force every rank to skip the step together.
    """
    bad = _with_bad_files(copied_dataset, 6)
    out = tmp_path / "run"
    common = {"data.root": str(copied_dataset), "train.batch_size": 6}
    first = pretrain(load_recipe("demo", tiny_overrides(copied_dataset, **common, **{"eval.knn": "false"})), out,
                     progress=False, log=_quiet)
    assert first["distributed"] == {"world_size": 1} and first["history"][0]["world_size"] == 1
    events_before = set(out.rglob("events.out.tfevents*"))

    # --resume continues the recorded recipe (eval.knn=false): the evaluation is asked for by name
    run = _torchrun(out, copied_dataset, "--resume", **common, **{"train.epochs": 2, "eval.knn": "true"})
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    # gradients were synchronised: both ranks ended with the same parameters, the ones rank 0 saved
    info = results["distributed"]
    assert info["world_size"] == 2 and info["backend"] == "gloo" and info["per_process_batch"] == 3
    digests = info["parameter_digests"]
    assert len(digests) == 2 and digests[0] == digests[1] and info["replicas_agree"] is True
    assert digests[0] == _digest(out / "model")
    ckpt = load_checkpoint(out / "checkpoints" / "last.pt")
    assert not any(key.startswith("module.") for key in ckpt["model"])
    # rank 0 alone logged and wrote: each line once, one CSV row per epoch, one new TensorBoard file
    assert run.stdout.count("resumed from") == 1 and run.stdout.count("epoch 2:") == 1
    assert run.stdout.count("R@1 trained") == 1 and "(2 processes x 3, gloo)" in run.stdout
    assert (out / "logs" / "metrics.csv").read_text().count("loss/total") == 2
    if events_before:  # tensorboard installed
        assert len(set(out.rglob("events.out.tfevents*")) - events_before) == 1
    # every broken file logged exactly once, by rank 0, whichever rank met it
    skipped = [line[len("skipping "):].split(": ")[0] for line in run.stdout.splitlines()
               if line.startswith("skipping ")]
    assert sorted(skipped) == sorted(str(p) for p in bad)
    epoch2 = results["history"][1]
    assert [r["world_size"] for r in results["history"]] == [1, 2]
    # 18 videos = 3 global steps of 6, all used; videos and bad files counted over both ranks
    assert epoch2["bad_files"] == 6 and epoch2["steps"] + epoch2["skipped_steps"] == 3 and epoch2["steps"] >= 1
    assert 2 * 2 * epoch2["steps"] <= epoch2["videos"] <= 12
    assert epoch2["clips_per_second"] > 0 and results["knn"]["queries"] == 6

    last = pretrain(load_recipe("demo", tiny_overrides(copied_dataset, **common, **{"train.epochs": 3,
                                                                                   "eval.knn": "false"})),
                    out, resume=True, progress=False, log=_quiet)
    assert [r["epoch"] for r in last["history"]] == [1, 2, 3]
    assert [r["world_size"] for r in last["history"]] == [1, 2, 1]
    assert last["history"][1]["total"] == pytest.approx(epoch2["total"])


def test_torchrun_refuses_a_global_batch_that_does_not_split(tiny_dataset, tmp_path):
    (tmp_path / "x").mkdir()
    run = _torchrun(tmp_path / "x" / "run", tiny_dataset, **{"train.batch_size": 5})
    assert run.returncode != 0
    assert "train.batch_size=5 is the global batch and must split evenly over 2 processes" in run.stderr
    assert not (tmp_path / "x" / "run").exists()
