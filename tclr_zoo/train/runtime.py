"""How the training step runs on its device: bf16 autocast, the memory layout, how many clip groups
share one backbone pass, and where the augmentation runs. The training loop and bench/p1 make the
same choices through these functions, so a benchmark times the step a run would take. (Which device,
and the process's place under torchrun, are :mod:`tclr_zoo.runtime`'s, shared with inference.)
"""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch

from ..data.datasets import AUGMENT_ON
from .config import Recipe, RecipeError


def amp_mode(device: torch.device, amp: str) -> str:
    """``train.amp`` resolved for ``device``: ``"bf16"`` or ``"none"``."""
    mode = ("bf16" if device.type == "cuda" else "none") if amp == "auto" else amp
    if mode not in ("bf16", "none"):
        raise RecipeError(f"train.amp must be auto, bf16 or none, got {amp!r}")
    return mode


def autocast_for(device: torch.device, amp: str):
    """bf16 autocast on CUDA by default; fp32 on CPU.

    On CPUs with native bf16 (AMX / avx512_bf16) ``train.amp=bf16`` makes the CPU step several
    times faster (BENCHMARKS.md, P1),
    but it changes the numbers and is slow on CPUs without bf16 units, so CPU runs stay fp32 unless
    the recipe asks for it.
    fp16 is not offered: it would need loss scaling, and bf16 has fp32's range without it.
    """
    if amp_mode(device, amp) == "none":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def groups_per_pass(recipe: Recipe, device: torch.device) -> int | None:
    setting = recipe.train.groups_per_pass
    if setting == "auto":
        if device.type == "cuda":
            return None
        # On CPU a channels_last_3d pass over several clip groups takes grouped BatchNorm's strided
        # path (explicit statistics), slower per group than one group per pass with the native
        # kernel (BENCHMARKS.md, P1); contiguous passes keep 2 groups.
        return 1 if use_channels_last(recipe, device) else 2
    if setting == "all":
        return None
    if not isinstance(setting, int) or setting < 1:
        raise RecipeError(f"train.groups_per_pass must be auto, all or a positive integer, got {setting!r}")
    return setting


def use_channels_last(recipe: Recipe, device: torch.device) -> bool:
    """``auto``: on CUDA, and on CPU with bf16 autocast, where oneDNN's channels-last bf16
    convolutions make the step faster than contiguous ones (BENCHMARKS.md, P1). In fp32 on CPU
    the layout gave no clear gain for training (BENCHMARKS.md, P1), so it stays off there."""
    setting = recipe.train.channels_last
    if setting == "auto":
        return device.type == "cuda" or amp_mode(device, recipe.train.amp) == "bf16"
    return bool(setting)


def augment_on(recipe: Recipe, device: torch.device) -> str:
    """``data.augment_on`` resolved for ``device``: ``"device"`` (loader workers only decode; the training
    device crops, resizes and augments the whole batch) or ``"worker"`` (per clip, in the workers).
    ``auto``: the device on CUDA; the workers on CPU, where the per-clip path in the workers measured
    faster than the batched one in the training process (BENCHMARKS.md, P2)."""
    setting = recipe.data.augment_on
    if setting == "auto":
        return "device" if device.type == "cuda" else "worker"
    if setting not in AUGMENT_ON:
        raise RecipeError(f"data.augment_on must be auto, {' or '.join(AUGMENT_ON)}, got {setting!r}")
    return setting


def configure_model(model, recipe: Recipe, device: torch.device):
    """Put ``model`` on ``device`` in the layout and with the backbone passes the recipe resolves to
    there (the training loop's setup; bench/p1_train_step.py times the step with it)."""
    model.groups_per_pass = groups_per_pass(recipe, device)
    model.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed clip shapes: let cuDNN pick the fastest kernels
    if use_channels_last(recipe, device):
        model.to(memory_format=torch.channels_last_3d)
    return model


__all__ = ["amp_mode", "augment_on", "autocast_for", "configure_model", "groups_per_pass", "seed_everything",
           "use_channels_last"]
