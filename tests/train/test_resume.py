"""``--resume`` does what it says.

A resumed run keeps the recipe it started with. Of what the user asks on resume only the settings in
``config.RESUMABLE`` may change (the run's length, the learning rate from the next epoch on, where
the data lives, the closing evaluation); each change is applied and appended to ``recipe.yaml``'s
``resumes``, whose top-level values stay those the run started with. Running that ``recipe.yaml``
afresh applies each change at its epoch and so reproduces the resumed run. Anything else is refused
in one line naming the key, and resuming a finished run says so and writes nothing.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import warm_python
import yaml
from conftest import tiny_overrides

from tclr_zoo.train.config import RecipeError, load_recipe
from tclr_zoo.train.pretrain import pretrain

LOSSES = ("total", "ic_global", "ic_local", "local_local", "global_local")
QUIET = {"eval.knn": "false"}


def _quiet(_msg: str) -> None:
    pass


@pytest.fixture(scope="module")
def two_epochs(tiny_dataset, tmp_path_factory) -> Path:
    """A finished 2-epoch tiny run (copy it before changing it)."""
    out = tmp_path_factory.mktemp("resume") / "two"
    pretrain(load_recipe("demo", tiny_overrides(tiny_dataset, **{"train.epochs": 2, **QUIET})), out,
             progress=False, log=_quiet)
    return out


def _copy(run: Path, tmp_path: Path, name: str) -> Path:
    shutil.copytree(run, tmp_path / name)
    return tmp_path / name


def test_a_new_learning_rate_applies_from_the_next_epoch_and_is_appended_to_the_recipe(two_epochs, tiny_dataset,
                                                                                       tmp_path):
    def resume(run: Path, **extra) -> dict:
        recipe = load_recipe("demo", tiny_overrides(tiny_dataset, **{"train.epochs": 3, **QUIET, **extra}))
        return pretrain(recipe, run, resume=True, progress=False, log=_quiet)

    plain = resume(_copy(two_epochs, tmp_path, "plain"))
    changed_run = _copy(two_epochs, tmp_path, "changed")
    changed = resume(changed_run, **{"optim.lr": 0.5})
    # epochs 1-2 are the checkpoint's; epoch 3 ran at the new lr (the tiny recipe has no warm-up or
    # plateau step left, so the lr is exactly the new base lr) and so computed other losses
    assert [r["lr"] for r in plain["history"]] == [0.002, 0.002, 0.002]
    assert [r["lr"] for r in changed["history"]] == [0.002, 0.002, 0.5]
    assert changed["history"][:2] == plain["history"][:2]
    assert changed["history"][2]["total"] != pytest.approx(plain["history"][2]["total"], rel=1e-4)
    # recipe.yaml keeps what epochs 1-2 ran with and appends the change
    recorded = yaml.safe_load((changed_run / "recipe.yaml").read_text())
    assert recorded["optim"]["lr"] == 0.002 and recorded["train"]["epochs"] == 2
    assert recorded["resumes"] == [{"epoch": 3, "set": {"optim.lr": 0.5, "train.epochs": 3},
                                    "was": {"optim.lr": 0.002, "train.epochs": 2}}]
    # ... and running it afresh reproduces the resumed run epoch by epoch
    replay = pretrain(load_recipe(str(changed_run / "recipe.yaml")), tmp_path / "replay", progress=False, log=_quiet)
    for a, b in zip(changed["history"], replay["history"], strict=True):
        assert a["lr"] == b["lr"]
        for key in LOSSES:
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), (a["epoch"], key)


def test_resuming_a_finished_run_says_so_and_changes_nothing(two_epochs, tiny_dataset, tmp_path):
    run = _copy(two_epochs, tmp_path, "finished")
    before = {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}
    said: list[str] = []
    for epochs in (2, 1):  # as long as the run, and shorter
        recipe = load_recipe("demo", tiny_overrides(tiny_dataset, **{"train.epochs": epochs, **QUIET}))
        result = pretrain(recipe, run, resume=True, progress=False, log=said.append)
        assert result["epochs"] == 2
    assert any("already trained 2 epochs" in line and "nothing to do" in line for line in said), said
    assert not any(line.startswith(("pretraining", "epoch ")) for line in said), said  # no training, no evaluation
    assert {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()} == before


def test_a_setting_that_cannot_change_is_refused_in_one_line_before_any_work(two_epochs, tiny_dataset, tmp_path):
    run = _copy(two_epochs, tmp_path, "refused")
    before = {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}
    sets = [a for kv in tiny_overrides(tiny_dataset, **{"train.epochs": 3, "model.arch": "r3d_18", **QUIET})
            for a in ("--set", kv)]
    done = warm_python.run_cli(["pretrain", "--out", run, "--resume", "--no-progress", *sets], timeout=300)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "model.arch cannot change in a resumed run" in lines[0], done.stderr
    assert "'r3d_10_025'" in lines[0] and "'r3d_18'" in lines[0] and "Traceback" not in done.stderr
    assert {p: p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()} == before


def test_resume_without_a_run_says_to_drop_resume_and_that_works(tiny_recipe, tmp_path):
    out = tmp_path / "new"
    with pytest.raises(RecipeError, match="holds no run to continue.*drop --resume"):
        pretrain(tiny_recipe(**QUIET), out, resume=True, progress=False, log=_quiet)
    assert not out.exists()
    assert pretrain(tiny_recipe(**QUIET), out, progress=False, log=_quiet)["epochs"] == 1
