"""Shared fixtures: a tiny synthetic dataset (real H.264 files), a tiny pretraining recipe, and a saved
random model with one short clip for the CLI tests (read only: a test that changes them copies them)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hub_server import local_hub  # noqa: F401  (one local Hub server per session, for every test that needs it)
from hub_upload_stub import hub  # noqa: F401  (the upload stand-in, for the push tests and the README's)

from tclr_zoo.data.synthetic import SyntheticConfig, generate
from tclr_zoo.train.config import load_recipe

# The files whose tests take the longest (each over ~15 s on 2 cores, 2026-12-03) run first. pytest-xdist
# hands each test process a contiguous share of the list and an idle process steals from the end of a
# busy one's share, so a slow file collected last would finish the run alone on one core.
SLOW_FILES_FIRST = ("tests/test_bench.py", "tests/inference/test_ray_engine.py",
                    "tests/robustness/test_crash_safety.py", "tests/test_readme.py", "tests/train/test_resume.py",
                    "tests/train/test_distributed.py", "tests/train/test_resume_cli.py",
                    "tests/robustness/test_output_locks.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Slow files first (in the order above), every file's tests kept together and in their order."""
    def rank(item: pytest.Item) -> int:
        path = item.nodeid.split("::")[0]
        return SLOW_FILES_FIRST.index(path) if path in SLOW_FILES_FIRST else len(SLOW_FILES_FIRST)

    items.sort(key=rank)


# 3 classes x 3 groups x 2 clips of 40 frames at 32x32: 12 train videos, 6 test videos.
TINY_SYNTHETIC = {"num_classes": 3, "groups": 3, "clips_per_group": 2, "test_groups": 1,
                  "frames": 40, "height": 32, "width": 32}


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    return generate(tmp_path_factory.mktemp("data") / "synthetic", SyntheticConfig(**TINY_SYNTHETIC))


def tiny_overrides(dataset: Path, **extra) -> list[str]:
    """``--set`` overrides turning the demo recipe into a seconds-long run on ``dataset``."""
    values = {
        "data.root": str(dataset),
        "data.synthetic": "{" + ", ".join(f"{k}: {v}" for k, v in TINY_SYNTHETIC.items()) + "}",
        "data.stride": 2,
        "data.size": 32,
        "data.workers": 0,
        "model.head_dim": 32,
        "train.epochs": 1,
        "train.batch_size": 4,
        "optim.warmup": "[1.0]",
        "eval.clips": 2,
        "eval.ks": "[1, 5]",
        **extra,
    }
    return [f"{k}={v}" for k, v in values.items()]


@pytest.fixture(scope="session")
def saved(tmp_path_factory) -> Path:
    """A saved ``r3d_10_025`` folder with seeded random weights: a real model for the CLI's commands."""
    import torch

    import tclr_zoo

    torch.manual_seed(0)
    return tclr_zoo.load_model("r3d_10_025", pretrained=False).save_pretrained(tmp_path_factory.mktemp("m") / "model")


@pytest.fixture(scope="session")
def video(tmp_path_factory) -> Path:
    """One short H.264 clip (24 frames)."""
    from hostile_videos import write_video

    return write_video(tmp_path_factory.mktemp("v") / "clip.mp4", 24)


@pytest.fixture
def tiny_recipe(tiny_dataset):
    def make(**extra):
        return load_recipe("demo", tiny_overrides(tiny_dataset, **extra))

    return make


@pytest.fixture
def copied_dataset(tiny_dataset, tmp_path) -> Path:
    """A private copy of the tiny dataset that a test may damage."""
    target = tmp_path / "synthetic"
    shutil.copytree(tiny_dataset, target)
    return target



@pytest.fixture(scope="session")
def tiny_run(tiny_dataset, tmp_path_factory) -> Path:
    """A finished one-epoch tiny pretraining run with its closing kNN evaluation (read it, don't change it)."""
    from tclr_zoo.train.pretrain import pretrain

    out = tmp_path_factory.mktemp("run") / "tiny"
    pretrain(load_recipe("demo", tiny_overrides(tiny_dataset)), out, progress=False, log=lambda _msg: None)
    return out
