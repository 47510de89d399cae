"""The CPU training fast path: what ``auto`` resolves to, and that it computes the same step."""

from __future__ import annotations

import copy

import pytest
import torch

from tclr_zoo.models.registry import create_model
from tclr_zoo.train.config import Recipe
from tclr_zoo.train.epoch import loss_weights, train_step
from tclr_zoo.train.runtime import configure_model, groups_per_pass, use_channels_last

CPU, CUDA = torch.device("cpu"), torch.device("cuda")  # resolution only looks at the device type


def _recipe(**train) -> Recipe:
    recipe = Recipe()
    recipe.model.arch, recipe.model.head_dim, recipe.train.batch_size = "r3d_10_025", 32, 4
    for key, value in train.items():
        setattr(recipe.train, key, value)
    return recipe


@pytest.mark.parametrize("train, device, expected", [
    ({}, CPU, (False, 2)),  # fp32 on CPU: contiguous, 2 clip groups per pass (unchanged)
    ({"amp": "bf16"}, CPU, (True, 1)),  # bf16 on CPU: channels_last_3d, one group per pass
    ({"amp": "bf16", "channels_last": False}, CPU, (False, 2)),
    ({"channels_last": True}, CPU, (True, 1)),  # channels_last asked for: native BatchNorm per group
    ({"amp": "bf16", "groups_per_pass": 5}, CPU, (True, 5)),  # explicit settings win
    ({"amp": "none", "groups_per_pass": "all"}, CPU, (False, None)),
    ({}, CUDA, (True, None)),
])
def test_auto_layout_andgroups_per_pass(train, device, expected):
    recipe = _recipe(**train)
    assert (use_channels_last(recipe, device), groups_per_pass(recipe, device)) == expected


def _batch(videos: int = 4, size: int = 32, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"global": torch.rand(2, videos, 3, 16, size, size, generator=g),
            "local": torch.rand(2, 4, videos, 3, 16, size, size, generator=g), "videos": videos, "bad": []}


def _one_step(model, recipe: Recipe, batch: dict) -> dict[str, float]:
    configure_model(model, recipe, CPU)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.optim.lr)
    return train_step(model.forward_pretrain, optimizer, batch, recipe, CPU, loss_weights(recipe))


def _grad_rel_diff(a, b) -> float:
    ga = torch.cat([p.grad.flatten() for p in a.parameters()])
    gb = torch.cat([p.grad.flatten() for p in b.parameters()])
    return ((ga - gb).norm() / gb.norm()).item()


def _models():
    torch.manual_seed(0)
    model = create_model("r3d_10_025", head_dim=32).train()
    return model, copy.deepcopy(model)


def test_channels_last_cpu_step_equals_the_contiguous_step():
    """fp32: the channels_last_3d, one-group-per-pass step gives the default step's losses, gradients
    and BatchNorm running statistics."""
    contiguous, channels_last = _models()
    batch = _batch()
    expected = _one_step(contiguous, _recipe(), batch)
    got = _one_step(channels_last, _recipe(channels_last=True), batch)
    assert channels_last._uses_channels_last() and channels_last.groups_per_pass == 1
    assert not contiguous._uses_channels_last() and contiguous.groups_per_pass == 2
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-4, abs=1e-4), key
    # fp32 rounding of different convolution kernels, grown through BatchNorm over 4 videos
    # (largest at the stem, the deepest in backward: ~1.5e-3 of its norm)
    assert _grad_rel_diff(channels_last, contiguous) < 5e-3
    for (name, p), q in zip(channels_last.named_buffers(), contiguous.buffers()):
        torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4, msg=name)


def test_bf16_cpu_step_with_auto_layout_is_close_to_fp32():
    """train.amp=bf16 on CPU (auto: channels_last_3d, one group per pass): the fp32 step's total
    loss within bf16 rounding, and the gradients pointing the same way."""
    fp32, bf16 = _models()
    batch = _batch(videos=8)
    expected = _one_step(fp32, _recipe(), batch)
    got = _one_step(bf16, _recipe(amp="bf16"), batch)
    assert bf16._uses_channels_last() and bf16.groups_per_pass == 1
    assert got["total"] == pytest.approx(expected["total"], rel=2e-2)
    # bf16 activations move the gradients by ~25% of their norm (the same with the contiguous
    # layout): they must still point the same way
    ga = torch.cat([p.grad.flatten() for p in bf16.parameters()])
    gb = torch.cat([p.grad.flatten() for p in fp32.parameters()])
    assert torch.nn.functional.cosine_similarity(ga, gb, dim=0) > 0.9
