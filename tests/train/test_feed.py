"""Feeding the step: augmentation on the device, the CUDA prefetcher, ``train.compile``.

On CPU ``data.augment_on=auto`` keeps the per-clip augmentation in the workers (measured faster
there, BENCHMARKS.md P2); ``device`` moves it into the training process as one batched call, and a
run then trains on the same clips (float rounding aside), so it computes the same losses.
"""

from __future__ import annotations

import pytest
import torch

from tclr_zoo.train import pretrain as pretrain_module
from tclr_zoo.train.config import Recipe, RecipeError
from tclr_zoo.train.feed import DeviceFeed
from tclr_zoo.train.pretrain import pretrain
from tclr_zoo.train.runtime import augment_on

LOSSES = ("total", "ic_global", "ic_local", "local_local", "global_local")


def _quiet(_msg: str) -> None:
    pass


def test_augment_on_resolves_per_device():
    recipe = Recipe()
    assert augment_on(recipe, torch.device("cpu")) == "worker"
    assert augment_on(recipe, torch.device("cuda")) == "device"
    recipe.data.augment_on = "device"
    assert augment_on(recipe, torch.device("cpu")) == "device"
    recipe.data.augment_on = "gpu"
    with pytest.raises(RecipeError, match="augment_on"):
        augment_on(recipe, torch.device("cpu"))


def test_cpu_feed_prepares_each_batch_in_order_when_it_is_handed_out():
    prepared = []

    def prepare(batch):
        prepared.append(batch["i"])
        return {**batch, "done": True}

    feed = DeviceFeed([{"i": i} for i in range(3)], torch.device("cpu"), prepare)
    assert len(feed) == 3
    for i, batch in enumerate(feed):
        assert batch == {"i": i, "done": True} and prepared == list(range(i + 1))  # no read-ahead on CPU


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_feed_prefetches_one_batch_ahead():
    device = torch.device("cuda")
    batches = [{"global": torch.full((4,), float(i)).pin_memory(), "bad": []} for i in range(3)]
    feed = DeviceFeed(batches, device, lambda b: {**b, "global": b["global"].to(device, non_blocking=True) * 2})
    got = [b["global"].sum().item() for b in feed]
    assert got == [0.0, 8.0, 16.0]


def test_device_augmentation_trains_on_the_same_clips(tiny_recipe, tmp_path, monkeypatch):
    """One step with the augmentation in the workers and one with it batched in the training process:
    the same losses (the clips differ by float rounding only; later steps drift apart a little, as
    Adam's first updates are about lr x sign(gradient)); train.compile wraps the forward."""
    overrides = {"eval.knn": "false", "train.max_steps_per_epoch": 1}
    worker = pretrain(tiny_recipe(**overrides), tmp_path / "worker", progress=False, log=_quiet)
    compiled = []

    def fake_compile(fn):
        compiled.append(fn)
        return fn

    monkeypatch.setattr(pretrain_module.torch, "compile", fake_compile)
    device = pretrain(tiny_recipe(**overrides, **{"data.augment_on": "device", "train.compile": "true"}),
                      tmp_path / "device", progress=False, log=_quiet)
    assert len(compiled) == 1
    a, b = worker["history"][0], device["history"][0]
    assert a["steps"] == b["steps"] == 1
    for key in LOSSES:
        assert b[key] == pytest.approx(a[key], rel=1e-5), key


def test_resume_with_device_augmentation_gives_the_same_losses(tiny_recipe, tmp_path):
    """The clips' randomness stays in the workers, seeded by (seed, epoch, video): resuming a run that
    augments on the device computes exactly the losses of an uninterrupted one."""
    settings = {"eval.knn": "false", "data.augment_on": "device", "train.max_steps_per_epoch": 2}
    straight = pretrain(tiny_recipe(**settings, **{"train.epochs": 2}), tmp_path / "a", progress=False, log=_quiet)
    pretrain(tiny_recipe(**settings, **{"train.epochs": 1}), tmp_path / "b", progress=False, log=_quiet)
    resumed = pretrain(tiny_recipe(**settings, **{"train.epochs": 2}), tmp_path / "b", resume=True, progress=False,
                       log=_quiet)
    assert [r["epoch"] for r in resumed["history"]] == [1, 2]
    for a, b in zip(straight["history"], resumed["history"]):
        assert [a[k] for k in LOSSES] == [b[k] for k in LOSSES]
