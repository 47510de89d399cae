"""Multi-process pretraining under torchrun: what the processes share and how their data is split.

``torchrun --nproc_per_node N -m tclr_zoo.cli pretrain ...`` starts N copies of the same command;
:mod:`tclr_zoo.runtime` reads their places from torchrun's variables, joins the process group and
carries the rank-0 helpers (``on_main``, ``barrier``, the host-side exchanges). A plain
``tclr-zoo pretrain`` runs as one process with no process group, DDP or extra communication at all.
This module holds what only training needs on top of that.

What a multi-process run computes is chosen to match the reference, which trained on several GPUs
with ``nn.DataParallel`` (DAVEISHAN/TCLR ``train_gen_all_step.py``):

- ``train.batch_size`` is the global batch; each process takes ``batch_size // world_size`` videos
  of it. Global step s uses exactly the videos a one-process run uses at step s.
- BatchNorm normalises each clip group over the process's own videos, as each DataParallel replica
  did on its GPU (``train.sync_bn`` synchronises them, for ``model.bn_mode: shared`` only).
- The losses see the whole global batch: embeddings are all-gathered, with gradients, before the
  loss, as DataParallel gathered its replicas' outputs onto one GPU. So every clip has the same
  negatives as on one GPU, every rank computes the same loss value, and the learning rate of the
  recipe stays right.
- DDP averages the parameter gradients; with the gathered loss the average is exactly the gradient
  of the global-batch loss (see ``_GatherRows``).
- Only rank 0 logs and writes files; the others wait for it (``runtime.on_main``, ``runtime.barrier``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping

import torch
import torch.distributed as dist
from torch import nn

from .. import runtime
from ..data.datasets import EpochShuffleSampler
from .config import Recipe, RecipeError

# --- recipe checks ------------------------------------------------------------------------------

def per_process_batch(batch_size: int, world: int) -> int:
    """Videos per process for the global ``train.batch_size``; at least 2 (BatchNorm statistics)."""
    if batch_size % world:
        raise RecipeError(f"train.batch_size={batch_size} is the global batch and must split evenly over "
                          f"{world} processes; choose a multiple of {world}")
    local = batch_size // world
    if local < 2:
        split = "" if world == 1 else f" over {world} processes leaves {local} video per process;"
        raise RecipeError(f"train.batch_size={batch_size}{split} BatchNorm needs at least 2 videos per clip "
                          f"group (per process), so use train.batch_size >= {2 * world}")
    return local


def use_sync_bn(recipe: Recipe, world: int, device: torch.device) -> bool:
    """Whether to convert BatchNorm to SyncBatchNorm (``train.sync_bn``); invalid settings raise."""
    if not recipe.train.sync_bn:
        return False
    if recipe.model.bn_mode != "shared":
        raise RecipeError("train.sync_bn needs model.bn_mode=shared: faithful BatchNorm keeps separate statistics "
                          "per clip group, which SyncBatchNorm cannot synchronise; drop train.sync_bn or set "
                          "model.bn_mode=shared")
    if world > 1 and device.type != "cuda":
        raise RecipeError("train.sync_bn needs CUDA devices (torch's SyncBatchNorm has no CPU implementation)")
    return world > 1


def convert_sync_bn(model: nn.Module) -> Callable[[], None]:
    """Swap every BatchNorm of ``model`` for a SyncBatchNorm that shares its parameters and buffers.

    Returns the function that puts the original modules back (same tensors, now trained), so the
    saved model has the usual classes. State-dict keys are the same either way.
    """
    originals = {name: m for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    for name, module in originals.items():
        model.set_submodule(name, nn.SyncBatchNorm.convert_sync_batchnorm(module))

    def restore() -> None:
        for name, module in originals.items():
            model.set_submodule(name, module)

    return restore


# --- data ---------------------------------------------------------------------------------------

class DistributedEpochShuffleSampler(EpochShuffleSampler):
    """This rank's share of ``EpochShuffleSampler``'s permutation: positions rank, rank + N, ...

    Keys stay ``epoch * len + index``, so a sample's augmentation depends on (seed, epoch, index)
    only, never on the world size, and a run may resume with another number of processes.
    Interleaving the shares means that with a per-process batch of ``B / N``, global step s
    covers permutation positions ``s*B .. s*B+B-1`` -- the videos of a one-process run's step s.
    The tail is dropped: the permutation is cut to a multiple of N (as ``DistributedSampler``
    with ``drop_last=True``); the DataLoader's ``drop_last`` then drops a partial last batch.
    """

    def __init__(self, num_samples: int, seed: int = 0, *, rank: int, world_size: int) -> None:
        super().__init__(num_samples, seed)
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        return self.num_samples // self.world_size

    def __iter__(self):
        keys = list(super().__iter__())
        return iter(keys[self.rank : len(self) * self.world_size : self.world_size])


# --- the pretraining forward and loss -----------------------------------------------------------

class PretrainForward(nn.Module):
    """Makes ``forward`` run ``forward_pretrain``: DDP hooks only ``forward`` (it syncs buffers and
    prepares the gradient all-reduce there), so calling ``forward_pretrain`` directly would skip it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, global_clips: torch.Tensor, local_clips: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model.forward_pretrain(global_clips, local_clips)


def pretraining_forward(model: nn.Module) -> Callable[..., dict[str, torch.Tensor]]:
    """``model.forward_pretrain``, behind DDP when there are several processes.

    The DDP wrapper is only the way in; checkpoints keep saving ``model`` itself, so their keys
    never carry DDP's ``module.`` prefix. ``broadcast_buffers`` (the default) gives every rank
    rank 0's BatchNorm running statistics at each step, as DataParallel's replicas had GPU 0's.
    """
    ctx = runtime.current()
    if not ctx.distributed:
        return model.forward_pretrain
    device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(PretrainForward(model), device_ids=device_ids)


class _GatherRows(torch.autograd.Function):
    """All-gather rows of ``[b_r, F]`` tensors (sizes may differ per rank) into ``[sum b, F]``.

    Backward: every rank computes the same loss L from the gathered rows, so the gradient of the
    gathered tensor is dL/dZ on every rank; summing it over ranks and keeping this rank's rows gives
    N * dL/dz_r, and DDP's average over ranks turns that into exactly dL/dtheta.
    """

    @staticmethod
    def forward(ctx, rows: torch.Tensor, sizes: list[int], rank: int) -> torch.Tensor:
        ctx.sizes, ctx.rank = sizes, rank
        padded = rows.new_zeros((max(sizes), *rows.shape[1:]))
        padded[: rows.shape[0]] = rows
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded)
        return torch.cat([part[:size] for part, size in zip(parts, sizes)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous()
        dist.all_reduce(grad)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None, None


def gather_embeddings(out: dict[str, torch.Tensor], sizes: list[int]) -> dict[str, torch.Tensor]:
    """``forward_pretrain``'s outputs of all ranks, batch dimension (dim 1) in rank order, in one collective."""
    if len(sizes) == 1:
        return out
    keys = list(out)
    videos = out[keys[0]].shape[1]
    rows = [out[k].transpose(0, 1).reshape(videos, -1) for k in keys]  # [b, 2*...]
    widths = [r.shape[1] for r in rows]
    gathered = _GatherRows.apply(torch.cat(rows, dim=1), list(sizes), dist.get_rank())
    total = gathered.shape[0]
    result = {}
    for key, part in zip(keys, gathered.split(widths, dim=1)):
        shape = out[key].shape
        result[key] = part.reshape(total, shape[0], *shape[2:]).transpose(0, 1)
    return result


def parameter_digest(params: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of parameter names and values: equal on all ranks iff the replicas are identical."""
    digest = hashlib.sha256()
    for name in sorted(params):
        value = params[name].detach().to("cpu", torch.float32).contiguous()
        digest.update(name.encode())
        digest.update(value.numpy().tobytes())
    return digest.hexdigest()


__all__ = ["DistributedEpochShuffleSampler", "PretrainForward", "convert_sync_bn", "gather_embeddings",
           "parameter_digest", "per_process_batch", "pretraining_forward", "use_sync_bn"]
