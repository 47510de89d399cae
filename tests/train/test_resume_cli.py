"""``tclr-zoo pretrain`` as a user meets resume and Ctrl-C: no dead ends.

Real CLI subprocesses on the tiny dataset, run from a scratch folder with ``--out run`` so that
every command a message prints is run again exactly as printed (``tclr-zoo`` being the installed
script). Ctrl-C is a real SIGINT, sent while the process sits in the fault-injection pause of a
checkpoint write (``TCLR_ZOO_TEST_SLOW_WRITE``, atomic.py): after an epoch trained, before its
checkpoint is in place.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import warm_python
import yaml
from conftest import tiny_overrides

from tclr_zoo.atomic import exclusive_output

CLI = warm_python.CLI
SCRIPT = Path(sys.executable).with_name("tclr-zoo")
CHEAP = {"train.max_steps_per_epoch": 1}  # the override a bare --resume used to refuse
QUIET = {"eval.knn": "false"}


def _sets(dataset: Path, **extra) -> list[str]:
    return [arg for item in tiny_overrides(dataset, **{**CHEAP, **extra}) for arg in ("--set", item)]


def _cli(args: list[str], cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return warm_python.run(CLI + args, cwd=cwd, env=env, timeout=300)


def _as_printed(line: str) -> list[str]:
    """The command a message printed (from ``tclr-zoo pretrain`` to the end of the line) as argv."""
    words = shlex.split(line[line.index("tclr-zoo pretrain"):])
    return ([sys.executable, str(SCRIPT)] if SCRIPT.is_file() else CLI) + words[1:]


def _files(folder: Path) -> dict[Path, bytes]:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _interrupt_during_a_checkpoint_write(args: list[str], cwd: Path, run: Path) -> subprocess.CompletedProcess:
    """Start ``pretrain ARGS`` and send SIGINT while its next checkpoint sits in a temporary file."""
    env = dict(os.environ, TCLR_ZOO_TEST_SLOW_WRITE="3")
    proc = warm_python.start(CLI + args, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             terminal_sigint=True)
    deadline = time.monotonic() + 240
    while not list((run / "checkpoints").glob(".last.pt.tmp-*")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the checkpoint write never started"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def set_run(tiny_dataset, tmp_path_factory) -> tuple[Path, str]:
    """A finished 1-epoch CLI run started with --set overrides (max_steps_per_epoch among them), its
    closing kNN evaluation included, and its stdout (a pipe). Copy the run before changing it."""
    where = tmp_path_factory.mktemp("set_run")
    done = _cli(["pretrain", "--out", "run", *_sets(tiny_dataset)], where)
    assert done.returncode == 0, done.stdout + done.stderr
    return where / "run", done.stdout


def _copy(run: Path, tmp_path: Path) -> Path:
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run"


def test_bare_resume_continues_the_recorded_recipe_and_its_printed_command_trains_longer(set_run, tmp_path):
    run = _copy(set_run[0], tmp_path)
    before = _files(run)
    bare = _cli(["pretrain", "--out", "run", "--resume"], tmp_path)  # the run's --set overrides are not repeated
    assert bare.returncode == 0, bare.stderr
    assert "already trained 1 epoch " in bare.stdout and "nothing to do" in bare.stdout, bare.stdout
    assert _files(run) == before
    hint = next(line for line in bare.stdout.splitlines() if "tclr-zoo pretrain" in line)
    longer = warm_python.run(_as_printed(hint), cwd=tmp_path, timeout=300)
    assert longer.returncode == 0, longer.stdout + longer.stderr
    assert "changed for this resume: train.epochs 1 -> 2" in longer.stdout and "epoch 2:" in longer.stdout
    history = json.loads((run / "results.json").read_text())["history"]
    assert [(r["epoch"], r["steps"]) for r in history] == [(1, 1), (2, 1)]  # the recorded max_steps_per_epoch=1
    recorded = yaml.safe_load((run / "recipe.yaml").read_text())
    assert recorded["train"]["max_steps_per_epoch"] == 1 and recorded["train"]["epochs"] == 1
    assert recorded["resumes"] == [{"epoch": 2, "set": {"train.epochs": 2}, "was": {"train.epochs": 1}}]


def test_a_recipe_named_with_resume_must_be_the_one_the_run_recorded(set_run, tmp_path):
    run = _copy(set_run[0], tmp_path)
    before = _files(run)
    other = _cli(["pretrain", "demo_ic_only", "--out", "run", "--resume"], tmp_path)
    assert other.returncode == 2, other.stdout + other.stderr
    assert other.stderr.count("\n") == 1, other.stderr
    assert "holds a run of recipe 'demo', not 'demo_ic_only'" in other.stderr, other.stderr
    same = _cli(["pretrain", "demo", "--out", "run", "--resume"], tmp_path)
    assert same.returncode == 0 and "nothing to do" in same.stdout, same.stdout + same.stderr
    assert _files(run) == before


def test_the_commands_printed_by_refusals_to_start_or_resume_work_as_printed(set_run, tiny_dataset, tmp_path):
    run = _copy(set_run[0], tmp_path)
    again = _cli(["pretrain", "--out", "run", *_sets(tiny_dataset)], tmp_path)  # the command that made the run
    assert again.returncode == 2 and "already holds a run" in again.stderr, again.stderr
    go_on = warm_python.run(_as_printed(again.stderr), cwd=tmp_path, timeout=300)
    assert go_on.returncode == 0 and "nothing to do" in go_on.stdout, go_on.stdout + go_on.stderr
    (run / "checkpoints" / "last.pt").write_bytes(b"damaged")  # and no last.previous.pt after one epoch
    damaged = _cli(["pretrain", "--out", "run", "--resume"], tmp_path)
    assert damaged.returncode == 2 and "no usable checkpoint" in damaged.stderr, damaged.stderr
    fresh = warm_python.run(_as_printed(damaged.stderr), cwd=tmp_path, timeout=300)
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    history = json.loads((run / "results.json").read_text())["history"]
    assert [(r["epoch"], r["steps"]) for r in history] == [(1, 1)]  # the recorded recipe, started afresh


def test_ctrl_c_before_the_first_checkpoint_keeps_nothing_and_the_printed_command_starts_it_again(
        tiny_dataset, tmp_path):
    run = tmp_path / "run"
    stopped = _interrupt_during_a_checkpoint_write(["pretrain", "--out", "run", "--no-progress",
                                                    *_sets(tiny_dataset, **QUIET)], tmp_path, run)
    assert stopped.returncode == 130, stopped.stdout + stopped.stderr
    assert "Traceback" not in stopped.stderr and "Aborted" not in stopped.stderr, stopped.stderr
    lines = stopped.stderr.strip().splitlines()
    assert len(lines) == 2 and "interrupted: no checkpoint was saved yet" in lines[0], stopped.stderr
    assert lines[1].endswith("tclr-zoo pretrain --out run --resume --no-progress"), stopped.stderr
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "recipe.yaml"]  # nothing trained, no logs
    again = warm_python.run(_as_printed(lines[1]), cwd=tmp_path, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "starting it again from epoch 1" in again.stdout
    history = json.loads((run / "results.json").read_text())["history"]
    assert [(r["epoch"], r["steps"]) for r in history] == [(1, 1)]  # with the recorded --set overrides


def test_a_start_killed_before_its_first_checkpoint_starts_again_in_place_without_overwrite(tiny_dataset, tmp_path):
    run, args = tmp_path / "run", ["pretrain", "--out", "run", "--no-progress", *_sets(tiny_dataset, **QUIET)]
    env = dict(os.environ, TCLR_ZOO_TEST_SLOW_WRITE="30")
    proc = warm_python.start(CLI + args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not list(run.glob(".recipe.yaml.tmp-*")):  # killed while it records its recipe
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    proc.kill()
    proc.wait(timeout=60)
    (run / "notes.txt").write_text("mine")  # a user's file makes it someone else's folder: refused, kept
    refused = _cli(args, tmp_path)
    assert refused.returncode == 2 and "not empty" in refused.stderr, refused.stderr
    assert (run / "notes.txt").read_text() == "mine"
    (run / "notes.txt").unlink()
    again = _cli(args, tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads((run / "results.json").read_text())["epochs"] == 1
    assert not list(run.glob(".recipe.yaml.tmp-*"))


def test_a_resume_interrupted_before_its_first_epoch_is_saved_records_nothing_and_says_how_to_continue(
        set_run, tmp_path):
    run = _copy(set_run[0], tmp_path)
    before = _files(run)
    stopped = _interrupt_during_a_checkpoint_write(["pretrain", "--out", "run", "--resume", "--set",
                                                    "train.epochs=2", "--set", "eval.knn=false"], tmp_path, run)
    assert stopped.returncode == 130, stopped.stdout + stopped.stderr
    assert "epoch 2:" in stopped.stdout  # the epoch trained; its checkpoint was not yet in place
    assert "Traceback" not in stopped.stderr, stopped.stderr
    lines = stopped.stderr.strip().splitlines()
    assert len(lines) == 2 and "interrupted: kept the checkpoint of epoch 1 of 2" in lines[0], stopped.stderr
    assert lines[1].endswith("tclr-zoo pretrain --out run --resume --set train.epochs=2 --set eval.knn=false")
    assert _files(run) == before  # recipe.yaml (no resumes entry), checkpoints, logs, results: all as they were
    go_on = warm_python.run(_as_printed(lines[1]), cwd=tmp_path, timeout=300)
    assert go_on.returncode == 0, go_on.stdout + go_on.stderr
    assert yaml.safe_load((run / "recipe.yaml").read_text())["resumes"][0]["set"] == {"train.epochs": 2,
                                                                                       "eval.knn": False}
    assert [r["epoch"] for r in json.loads((run / "results.json").read_text())["history"]] == [1, 2]


def test_refused_starts_create_no_run_folder_and_lose_nothing(tiny_dataset, set_run, tmp_path):
    """Each refusal exits 2 before anything is created: not the run folder, nor the parents it would need."""
    existing = _copy(set_run[0], tmp_path)
    before = _files(existing)
    with exclusive_output(tmp_path / "locked" / "run"):  # another writer holds this one
        cases = {
            "missing dataset": (["--out", "a/b/run", *_sets(tiny_dataset), "--set", "data.dataset=ucf101",
                                 "--set", "data.root=nodata"], "nodata", "a"),
            "bad recipe (seen once the model is built)": (["--out", "c/run", *_sets(tiny_dataset),
                                                           "--set", "data.frames=8"], "data.num_local=4", "c"),
            "bad --resume": (["--out", "d/run", "--resume"], "holds no run to continue", "d"),
            "locked folder": (["--out", "locked/run", *_sets(tiny_dataset)], "another tclr-zoo process", "locked/run"),
            "--overwrite, missing dataset": (["--out", "run", "--overwrite", "--set", "data.dataset=ucf101",
                                              "--set", "data.root=nodata"], "nodata", None),
        }
        procs = {name: warm_python.start(CLI + ["pretrain", "--no-progress", *args], cwd=tmp_path,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for name, (args, _, _) in cases.items()}
        for name, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=300)
            message, absent = cases[name][1:]
            assert proc.returncode == 2 and message in stderr and stderr.count("\n") == 1, (name, stdout, stderr)
            assert absent is None or not (tmp_path / absent).exists(), (name, sorted(tmp_path.rglob("*")))
    assert _files(existing) == before  # the refused --overwrite deleted nothing


def test_closing_knn_evaluation_reports_progress_into_a_pipe(set_run):
    """``make demo`` into a pipe or a log: the minutes-long closing evaluation says what it embeds and
    how far it got (tqdm shows nothing there)."""
    lines = set_run[1].splitlines()
    start = [i for i, line in enumerate(lines) if line.startswith("kNN evaluation: embedding 18 videos")]
    assert [lines[i].rsplit(", ", 1)[1] for i in start] == ["trained model...", "random init..."], lines
    assert "(12 gallery, 6 queries, 2 clips each)" in lines[start[0]]
    for first, end in ((start[0] + 1, start[1]), (start[1] + 1, len(lines))):
        passes = [line for line in lines[first:end] if line.startswith("  ")]
        assert [p for p in passes if p.startswith("  gallery")][-1] == "  gallery 12/12 videos", lines
        assert [p for p in passes if p.startswith("  queries")][-1] == "  queries 6/6 videos", lines
        assert len(passes) >= 3, lines  # more than one line per pass: progress, not just a total
