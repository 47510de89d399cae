"""The `tclr-zoo` command as users run it: real subprocesses, exit codes, and the installed wheel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import warm_python
from conftest import tiny_overrides

REPO = Path(__file__).resolve().parents[2]
CLI = warm_python.CLI


def _run(args: list[str], cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return warm_python.run(args, cwd=cwd, env=env or os.environ.copy(), timeout=timeout)


def _set_args(dataset: Path, **extra) -> list[str]:
    return [arg for item in tiny_overrides(dataset, **extra) for arg in ("--set", item)]


def test_help_explains_commands(tmp_path):
    top = _run(CLI + ["--help"], tmp_path)
    assert top.returncode == 0 and "pretrain" in top.stdout and "list" in top.stdout
    sub = _run(CLI + ["pretrain", "--help"], tmp_path)
    assert sub.returncode == 0 and "--resume" in sub.stdout and "KEY=VALUE" in sub.stdout


def test_list_architectures_and_recipes(tmp_path):
    archs = _run(CLI + ["list", "r3d_*"], tmp_path)
    assert archs.returncode == 0 and "r3d_18 " in archs.stdout and "c3d" not in archs.stdout
    recipes = _run(CLI + ["list", "--recipes"], tmp_path)
    assert {"demo", "tclr_r3d18_ucf101"} <= set(recipes.stdout.split())


@pytest.mark.parametrize("args, message", [
    (["pretrain", "no_such_recipe"], "unknown recipe 'no_such_recipe'"),
    (["pretrain", "missing.yaml"], "missing.yaml: recipe file not found"),
    (["pretrain", "--set", "train.epochz=3"], "unknown key 'epochz'"),
    (["pretrain", "--set", "model.arch=r3d_99"], "unknown architecture 'r3d_99'"),
    (["pretrain", "tclr_r3d18_ucf101"], "data.root must point at the ucf101 folder"),
])
def test_user_errors_exit_2_with_one_line(tmp_path, args, message):
    result = _run(CLI + args + ["--out", str(tmp_path / "out")], tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_pretrain_and_resume_from_the_command_line(tmp_path, tiny_dataset):
    out = tmp_path / "run"
    first = _run(CLI + ["pretrain", "--out", str(out), "--no-progress"] + _set_args(tiny_dataset), tmp_path)
    assert first.returncode == 0, first.stderr
    assert "R@1 trained" in first.stdout and "random init" in first.stdout
    assert json.loads((out / "results.json").read_text())["epochs"] == 1
    again = _run(CLI + ["pretrain", "--out", str(out), "--resume", "--no-progress"]
                 + _set_args(tiny_dataset, **{"train.epochs": 2, "eval.knn": "false"}), tmp_path)
    assert again.returncode == 0, again.stderr
    assert "resumed from" in again.stdout and "epoch 2:" in again.stdout
    refused = _run(CLI + ["pretrain", "--out", str(out), "--no-progress"] + _set_args(tiny_dataset), tmp_path)
    assert refused.returncode == 2 and "already holds a run" in refused.stderr
    assert json.loads((out / "results.json").read_text())["epochs"] == 2  # nothing was lost
    fresh = _run(CLI + ["pretrain", "--out", str(out), "--overwrite", "--no-progress"]
                 + _set_args(tiny_dataset, **{"eval.knn": "false"}), tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    assert json.loads((out / "results.json").read_text())["epochs"] == 1
    assert (out / "logs" / "metrics.csv").read_text().count("loss/total") == 1  # old logs replaced


def test_demo_recipe_ships_in_the_wheel_and_runs_from_it(tmp_path, tiny_dataset):
    """Build the wheel, unpack it away from the checkout, and pretrain with its bundled demo recipe."""
    build = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
                  str(tmp_path / "dist"), str(REPO)], tmp_path, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("tclr_zoo-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "tclr_zoo/recipes/demo.yaml" in names and "tclr_zoo/recipes/tclr_r3d18_ucf101.yaml" in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = {**os.environ, "PYTHONPATH": str(site)}
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    where = _run([sys.executable, "-c", "import tclr_zoo; print(tclr_zoo.__file__)"], workdir, env)
    assert where.stdout.startswith(str(site)), where.stdout  # the wheel's copy, not the checkout
    result = _run(CLI + ["pretrain", "--out", "run", "--no-progress"]
                  + _set_args(tiny_dataset, **{"eval.knn": "false"}), workdir, env)
    assert result.returncode == 0, result.stderr
    assert (workdir / "run" / "model" / "model.safetensors").is_file()


def test_example_script_runs(tmp_path):
    result = _run([sys.executable, str(REPO / "examples" / "tclr_step.py")], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "global_steps_z  (2, 4, 4, 128)" in result.stdout and "total=" in result.stdout
