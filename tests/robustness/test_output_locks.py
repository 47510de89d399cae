"""One writer per output: a second process writing a run folder, an export, an index or an
embeddings file that another process is writing is refused at once -- exit 2, one line naming the
holder's PID and command -- and the first one's files are intact; a SIGKILLed holder leaves no
lock behind (the kernel drops a ``flock`` with its process); readers are never blocked.

The two pretraining runs are real ``tclr-zoo`` processes. The first is stopped (SIGSTOP) as soon
as its lock file names it, so the second ones meet it mid-run whatever the machine's speed, then it
is let go (SIGCONT) and must finish as if alone. The other writers meet a small holder process that
takes the lock through ``atomic.exclusive_output`` and waits on its stdin: the commands themselves
run their real refusal path (through click's runner: they stop before any model is loaded).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import warm_python
import yaml
from click.testing import CliRunner
from conftest import tiny_overrides

from tclr_zoo import cli
from tclr_zoo.atomic import OutputInUseError, lock_path
from tclr_zoo.retrieval.index import VideoIndex

ROOT = Path(__file__).resolve().parents[2]
HOLDER_COMMAND = "holder-for-the-lock-test"
# Holds the lock of every path it is given until its stdin closes; says "held" once it has them.
HOLDER = f"""
import sys
from contextlib import ExitStack
from tclr_zoo.atomic import exclusive_output
with ExitStack() as held:
    for target in sys.argv[1:]:
        held.enter_context(exclusive_output(target, command={HOLDER_COMMAND!r}))
    print("held", flush=True)
    sys.stdin.read()
"""
ONE_RANK = {"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"}  # the torchrun path


def _pretrain(dataset: Path, out: Path, *flags: str, epochs: int) -> subprocess.Popen:
    sets = [a for kv in tiny_overrides(dataset, **{"train.epochs": epochs, "train.max_steps_per_epoch": 1,
                                                   "eval.knn": "false"}) for a in ("--set", kv)]
    return warm_python.start([sys.executable, "-m", "tclr_zoo.cli", "pretrain", "demo", "--out", str(out),
                              "--no-progress", *flags, *sets], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)


def _holder_pid(target: Path) -> int | None:
    """The PID the lock file of ``target`` records (None while there is none, or it is being written)."""
    try:
        return json.loads(lock_path(target).read_text() or "{}").get("pid")
    except (OSError, ValueError):
        return None


def _wait_until_holding(proc: subprocess.Popen, target: Path, timeout: float = 90.0) -> None:
    """Until ``proc`` holds ``target``'s lock: its lock file names it (written once the flock is taken)."""
    deadline = time.monotonic() + timeout
    while _holder_pid(target) != proc.pid:
        assert proc.poll() is None, f"ended before taking the lock: {proc.communicate()}"
        assert time.monotonic() < deadline, "the lock was never taken"
        time.sleep(0.02)


def _refusal(code: int, stderr: str, target: Path, pid: int, command: str) -> None:
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1, (code, stderr)
    assert str(target) in lines[0] and f"PID {pid} (" in lines[0] and command in lines[0], lines[0]


@contextlib.contextmanager
def _held(*targets: Path):
    """A process holding the writer locks of ``targets`` for the block."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, *map(str, targets)], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)
        proc.stdout.close()


def test_second_pretrain_into_a_training_run_folder_is_refused_and_the_first_run_stays_intact(tiny_dataset,
                                                                                                tmp_path):
    out = tmp_path / "run"
    first = _pretrain(tiny_dataset, out, epochs=2)
    try:
        _wait_until_holding(first, out)
        os.kill(first.pid, signal.SIGSTOP)  # mid-run, whatever this machine's speed
        try:
            later = [_pretrain(tiny_dataset, out, epochs=2), _pretrain(tiny_dataset, out, "--overwrite", epochs=1)]
            refusals = [(proc.communicate(timeout=180)[1], proc.returncode) for proc in later]
        finally:
            os.kill(first.pid, signal.SIGCONT)
        stdout, stderr = first.communicate(timeout=300)
    finally:
        if first.poll() is None:  # the test failed before the first run ended
            first.kill()
            first.communicate()
    assert first.returncode == 0, stderr[-3000:]
    header, *rows = (out / "logs" / "metrics.csv").read_text().splitlines()
    assert header == "step,name,value" and header not in rows  # one header
    pairs = [tuple(row.split(",")[:2]) for row in rows]
    assert len(pairs) == len(set(pairs))  # every (epoch, metric) once
    names = {name for _, name in pairs}
    assert "loss/total" in names and sorted(pairs) == sorted((str(e), n) for e in (1, 2) for n in names)
    assert len(list((out / "logs" / "tensorboard").glob("events.out.tfevents.*"))) == 1
    results = json.loads((out / "results.json").read_text())
    recipe = yaml.safe_load((out / "recipe.yaml").read_text())
    assert results["epochs"] == recipe["train"]["epochs"] == len(results["history"]) == 2
    assert stdout.count("epoch 2:") == 1 and not lock_path(out).exists()  # released, and its file removed
    for stderr, code in refusals:
        _refusal(code, stderr, out, first.pid, "pretrain")


def test_a_sigkilled_holder_leaves_no_lock_and_the_next_run_succeeds(saved, video, tmp_path):
    out = tmp_path / "e.npy"
    command = [sys.executable, "-m", "tclr_zoo.cli", "embed", str(saved), str(video), "--out", str(out),
               "--no-progress", "--workers", "0"]
    # SIGKILLed as soon as it holds the lock; the slowed write only makes sure it cannot finish before.
    killed = warm_python.start(command, cwd=ROOT, env={**os.environ, "TCLR_ZOO_TEST_SLOW_WRITE": "60"},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _wait_until_holding(killed, out)
    finally:
        killed.kill()
        killed.communicate(timeout=30)
    assert _holder_pid(out) == killed.pid  # its lock file is still there, naming the dead process ...
    done = CliRunner().invoke(cli.main, command[3:])  # ... and stops nobody (the same command, run here)
    assert done.exit_code == 0, done.output
    assert out.is_file() and out.with_suffix(".json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.json", "e.npy"]  # no lock file, no temporaries


WRITERS = {
    # name: (argv with {model}, {video}, {index}, {out}; what the output is called)
    "export --out": (["export", "{model}", "--out", "{out}"], "exported"),
    "convert OUT_DIR": (["convert", "{video}", "{out}", "--arch", "r3d_18"], "converted"),
    "index build --out": (["index", "build", "{model}", "{video}", "--out", "{out}", "--no-progress"], "idx"),
    "embed --out": (["embed", "{model}", "{video}", "--out", "{out}", "--no-progress"], "e.safetensors"),
    "embed --out .npy (its sidecar held)": (["embed", "{model}", "{video}", "--out", "{npy}", "--no-progress"],
                                            "e.json"),
    "classify --json": (["classify", "{model}", "{video}", "--json", "{out}", "--no-progress"], "top.json"),
    "index search --contact-sheet": (["index", "search", "{index}", "a", "--contact-sheet", "{out}"], "sheet.png"),
    "eval --out": (["eval", "{model}", "--protocol", "retrieval", "--dataset", "folder", "--root", "{index}",
                    "--out", "{out}", "--no-progress"], "result.json"),
    "finetune --save": (["finetune", "finetune_ucf101", "--save", "{out}", "--no-progress"], "saved"),
    "embed --out under torchrun": (["embed", "{model}", "{video}", "--out", "{out}", "--no-progress"], "t.npy"),
    "index build --out under torchrun": (["index", "build", "{model}", "{video}", "--out", "{out}", "--no-progress"],
                                         "tidx"),
}


def test_a_second_export_index_build_or_embed_is_refused_naming_the_writer(saved, video, tmp_path):
    index = tmp_path / "index"
    small = VideoIndex(4)
    small.add(torch.eye(4), ["a", "b", "c", "d"])
    small.save(index)
    outputs = {name: tmp_path / "out" / target for name, (_, target) in WRITERS.items()}
    runner = CliRunner()
    with _held(*outputs.values()) as holder:
        for name, (argv, _) in WRITERS.items():
            values = {"model": saved, "video": video, "index": index, "out": outputs[name],
                      "npy": outputs[name].with_suffix(".npy")}
            result = runner.invoke(cli.main, [str(a).format(**values) for a in argv],
                                   env=ONE_RANK if "torchrun" in name else None)
            _refusal(result.exit_code, result.stderr, outputs[name], holder.pid, HOLDER_COMMAND)
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(
            f".{p.name}.lock" for p in outputs.values())  # nothing written: only the holder's lock files
        with pytest.raises(OutputInUseError, match=f"PID {holder.pid} "):
            small.save(outputs["index build --out"])  # the library writer too
    assert not (tmp_path / "out").exists()


def test_readers_are_not_blocked_while_a_writer_holds_the_index(tmp_path):
    index = tmp_path / "index"
    small = VideoIndex(4)
    small.add(torch.eye(4), ["a", "b", "c", "d"])
    small.save(index)
    with _held(index):
        started = time.monotonic()
        assert VideoIndex.load(index).search(torch.eye(4)[2], 1)[0][0].id == "c"
        found = CliRunner().invoke(cli.main, ["index", "search", str(index), "b", "-k", "2"])
        assert found.exit_code == 0 and found.stdout.splitlines()[0].split()[2] == "b", found.output
        assert time.monotonic() - started < 10  # no waiting for the writer
        with pytest.raises(OutputInUseError):
            small.save(index, overwrite=True)
