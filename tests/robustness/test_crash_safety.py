"""Crash-safe training: ``tclr-zoo pretrain`` is SIGKILLed at random moments and at the two
instants of a checkpoint write that matter (new bytes written but not renamed in; old checkpoint
moved aside but the new one not yet in place), then continued with ``--resume``. The run that
finally completes must log the same losses, epoch by epoch, as one that was never interrupted
(fixed seed, CPU), and checkpoints damaged on disk must be refused by their SHA-256."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import warm_python
from conftest import tiny_overrides

from tclr_zoo.hub.checkpoint import CheckpointError, load_checkpoint
from tclr_zoo.train.checkpoint import previous_path, resume_candidates, save_checkpoint

ROOT = Path(__file__).resolve().parents[2]
EPOCHS = 4
LOSS_KEYS = ("total", "ic_global", "ic_local", "local_local", "global_local", "lr")


def _command(dataset: Path, out: Path, *flags: str) -> list[str]:
    sets = [a for kv in tiny_overrides(dataset, **{"train.epochs": EPOCHS, "eval.knn": "false"})
            for a in ("--set", kv)]
    return [sys.executable, "-m", "tclr_zoo.cli", "pretrain", "demo", "--out", str(out), "--no-progress",
            *flags, *sets]


def _start(dataset: Path, out: Path, slow_write: float = 0.0, *, fresh: bool = False):
    """The run, started again (``--resume`` once there is a checkpoint). ``fresh``: a new interpreter,
    for a kill during the imports; else warm-started (tests/helpers/warm_python.py)."""
    resume = bool(resume_candidates(out / "checkpoints" / "last.pt"))
    env = dict(os.environ, TCLR_ZOO_TEST_SLOW_WRITE=str(slow_write)) if slow_write else None
    command = _command(dataset, out, "--resume" if resume else "--overwrite")
    if fresh:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
    return warm_python.start(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _kill_when(proc, condition, timeout: float = 120.0, after: float = 0.0) -> None:
    """SIGKILL ``proc`` ``after`` seconds once ``condition()`` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"run ended before the kill point:\n{proc.stdout.read()}"
        assert time.monotonic() < deadline, "kill point never reached"
        time.sleep(0.005)
    time.sleep(after)
    assert proc.poll() is None, f"run ended before the kill:\n{proc.stdout.read()}"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()


def _temporaries(ckpt: Path) -> list[Path]:
    return list(ckpt.glob(".last.pt.tmp-*")) if ckpt.is_dir() else []


def _history(out: Path) -> list[dict]:
    return json.loads((out / "results.json").read_text())["history"]


@pytest.fixture(scope="module")
def straight(tiny_dataset, tmp_path_factory) -> Path:
    """A run of EPOCHS epochs that nothing interrupted (the tests only read it)."""
    out = tmp_path_factory.mktemp("crash") / "straight"
    done = warm_python.run(_command(tiny_dataset, out, "--overwrite"), cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_sigkill_at_random_moments_and_mid_checkpoint_then_resume_equals_an_uninterrupted_run(tiny_dataset,
                                                                                                 straight, tmp_path):
    out, ckpt = tmp_path / "killed", tmp_path / "killed" / "checkpoints"
    rng = random.Random(7)
    kills = []
    # 1. a random moment of the start-up (importing, preparing data: always over 2 s on CI's cores)
    proc = _start(tiny_dataset, out, fresh=True)
    moment = time.monotonic() + rng.uniform(0.3, 2.0)
    _kill_when(proc, lambda: time.monotonic() > moment)
    kills.append("random, start-up")
    # 2. while a checkpoint's bytes sit in a temporary file, last.pt still the old one
    proc = _start(tiny_dataset, out, slow_write=1.5)
    _kill_when(proc, lambda: bool(_temporaries(ckpt)) and (ckpt / "last.pt").exists())
    kills.append("checkpoint written, not renamed")
    # 3. between the renames: the old last.pt moved aside, the new one not yet in place
    proc = _start(tiny_dataset, out, slow_write=1.5)
    _kill_when(proc, lambda: bool(_temporaries(ckpt)) and not (ckpt / "last.pt").exists()
               and previous_path(ckpt / "last.pt").exists())
    kills.append("between renames")
    # 4. a random moment of the epoch after the next checkpoint, then a run to the end
    proc = _start(tiny_dataset, out)
    written = (ckpt / "last.pt").stat().st_mtime_ns if (ckpt / "last.pt").exists() else 0
    _kill_when(proc, lambda: (ckpt / "last.pt").exists() and (ckpt / "last.pt").stat().st_mtime_ns != written,
               after=rng.uniform(0.0, 0.4))
    kills.append("random, mid-epoch")
    final = warm_python.run(_command(tiny_dataset, out, "--resume" if resume_candidates(ckpt / "last.pt")
                                     else "--overwrite"), cwd=ROOT, timeout=600)
    assert final.returncode == 0, final.stdout + final.stderr
    assert not _temporaries(ckpt)
    a, b = _history(straight), _history(out)
    assert [r["epoch"] for r in b] == list(range(1, EPOCHS + 1)) and len(kills) == 4
    for row_a, row_b in zip(a, b):
        for key in LOSS_KEYS:
            assert row_b[key] == pytest.approx(row_a[key], rel=1e-5, abs=1e-6), (row_a["epoch"], key)


def test_damaged_checkpoint_is_refused_and_resume_falls_back_to_the_previous_one(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"epoch": 1, "w": torch.ones(3)}, keep_previous=True)
    save_checkpoint(path, {"epoch": 2, "w": torch.full((3,), 2.0)}, keep_previous=True)
    assert load_checkpoint(previous_path(path))["epoch"] == 1 and load_checkpoint(path)["epoch"] == 2
    data = bytearray(path.read_bytes())
    position = data.index(bytes(torch.full((3,), 2.0).numpy().tobytes()))  # the tensor's bytes, inside the payload
    data[position] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(path)
    assert resume_candidates(path) == [path, previous_path(path)]


def test_resume_from_a_damaged_last_checkpoint_falls_back_to_the_previous_one_and_matches(tiny_dataset, straight,
                                                                                         tmp_path):
    """A finished run whose last.pt (epoch EPOCHS) was damaged on disk: ``--resume`` refuses it by its
    SHA-256, says so, continues from last.previous.pt (epoch EPOCHS - 1), trains the last epoch
    again and logs the losses, and ends with the weights, of the uninterrupted run."""
    out = tmp_path / "damaged"
    shutil.copytree(straight, out)
    last = out / "checkpoints" / "last.pt"
    assert load_checkpoint(previous_path(last))["epoch"] == EPOCHS - 2  # 0-based: the one before the last
    data = bytearray(last.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, in the middle of the pickled state
    last.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(last)
    resumed = warm_python.run(_command(tiny_dataset, out, "--resume"), cwd=ROOT, timeout=600)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    log = resumed.stdout + resumed.stderr
    assert "cannot resume from last.pt" in log and "SHA-256" in log, log
    assert f"resumed from {previous_path(last)} at epoch {EPOCHS}" in log, log
    assert f"epochs {EPOCHS}..{EPOCHS}" in log and f"epoch {EPOCHS}:" in log and f"epoch {EPOCHS - 1}:" not in log, log
    a, b = _history(straight), _history(out)
    assert [r["epoch"] for r in b] == list(range(1, EPOCHS + 1))
    for row_a, row_b in zip(a, b):
        for key in LOSS_KEYS:
            assert row_b[key] == pytest.approx(row_a[key], rel=1e-5, abs=1e-6), (row_a["epoch"], key)
    final, reference = load_checkpoint(last), load_checkpoint(straight / "checkpoints" / "last.pt")
    assert final["epoch"] == reference["epoch"] == EPOCHS - 1
    # the damaged file was moved aside, so the good epoch-(EPOCHS-1) checkpoint is still the fallback
    assert load_checkpoint(previous_path(last))["epoch"] == EPOCHS - 2
    assert (last.parent / "last.damaged.pt").is_file() and "moved the damaged last.pt aside" in log
    for key, value in reference["model"].items():
        torch.testing.assert_close(final["model"][key], value, atol=1e-5, rtol=1e-4)
