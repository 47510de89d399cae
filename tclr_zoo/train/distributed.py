"""Multi-process pretraining under torchrun: the process group, data shards and rank-0 duties.

``torchrun --nproc_per_node N -m tclr_zoo.cli pretrain ...`` starts N copies of the same command and
tells each one its place through the environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``). A plain
``tclr-zoo pretrain`` has none of these variables (or a world size of 1): it runs as one process
with no process group, DDP or extra communication at all.

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
- Only rank 0 logs and writes files; the others wait for it at ``barrier()``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from ..data.datasets import EpochShuffleSampler
from .config import Recipe, RecipeError

T = TypeVar("T")

# How long ranks wait for rank 0 when it works alone (kNN evaluation, saving the model, reading a
# checkpoint). Long on purpose: under torchrun a rank 0 that dies takes the others down anyway.
WAIT_TIMEOUT = timedelta(hours=24)


@dataclass(frozen=True)
class DistContext:
    """This process's place in the run (world size 1: a plain single-process run)."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


_context = DistContext()
_cpu_group = None  # gloo group for small host-side exchanges (no GPU sync when the backend is NCCL)
_wait_group = None  # gloo group with WAIT_TIMEOUT, for waiting on rank 0


def torchrun_env() -> dict[str, int] | None:
    """``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` (and ``LOCAL_WORLD_SIZE``) as set by torchrun, else None."""
    names = ("WORLD_SIZE", "RANK", "LOCAL_RANK")
    if not all(name in os.environ for name in names):
        return None
    try:
        env = {name: int(os.environ[name]) for name in names}
        env["LOCAL_WORLD_SIZE"] = int(os.environ.get("LOCAL_WORLD_SIZE", env["WORLD_SIZE"]))
    except ValueError:
        raise RecipeError("WORLD_SIZE, RANK and LOCAL_RANK must be integers (start the run with torchrun)") from None
    return env


def current() -> DistContext:
    return _context


def world_size() -> int:
    return _context.world_size


def rank() -> int:
    return _context.rank


def is_main() -> bool:
    """True on rank 0, the one process that logs, evaluates and writes files."""
    return _context.is_main


def barrier() -> None:
    """Wait until every rank gets here; on a host-side group with a long timeout, because the
    others may wait for rank 0's evaluation and saving far longer than a GPU collective's timeout."""
    if _context.distributed:
        dist.barrier(group=_wait_group)


@contextlib.contextmanager
def session(device: torch.device) -> Iterator[DistContext]:
    """Join torchrun's process group for one run and leave it afterwards (also on errors).

    ``device`` is the recipe's resolved device; under torchrun a CUDA device becomes
    ``cuda:LOCAL_RANK``. Backend: NCCL for CUDA, gloo for CPU. Without torchrun (or with a world
    size of 1) this does nothing and yields a single-process context.
    """
    global _context, _cpu_group, _wait_group
    env = torchrun_env()
    if env is None or env["WORLD_SIZE"] == 1:
        yield DistContext(device=device)
        return
    if dist.is_initialized():
        raise RuntimeError("a torch.distributed process group is already initialised; pretrain() manages its own")
    local_rank = env["LOCAL_RANK"]
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise RecipeError(f"LOCAL_RANK={local_rank} but only {torch.cuda.device_count()} CUDA devices are "
                              "visible; start at most that many processes per node (--nproc_per_node)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)  # pinned memory, cuDNN handles etc. on this process's GPU
    backend = "nccl" if device.type == "cuda" else "gloo"
    dist.init_process_group(backend, device_id=device if device.type == "cuda" else None)
    try:
        _cpu_group = dist.group.WORLD if backend == "gloo" else dist.new_group(backend="gloo")
        _wait_group = dist.new_group(backend="gloo", timeout=WAIT_TIMEOUT)
        _context = DistContext(dist.get_rank(), local_rank, dist.get_world_size(), env["LOCAL_WORLD_SIZE"],
                               device, backend)
        yield _context
    finally:
        _context, _cpu_group, _wait_group = DistContext(), None, None
        dist.destroy_process_group()


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
    if not _context.distributed:
        return model.forward_pretrain
    device_ids = [_context.device.index] if _context.device.type == "cuda" else None
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


# --- host-side exchanges ------------------------------------------------------------------------

def gather_ints(value: int) -> list[int]:
    """``value`` from every rank (e.g. the videos each has this step, which bad files can lower)."""
    if not _context.distributed:
        return [value]
    parts = [torch.zeros(1, dtype=torch.int64) for _ in range(_context.world_size)]
    dist.all_gather(parts, torch.tensor([value], dtype=torch.int64), group=_cpu_group)
    return [int(p) for p in parts]


def reduce_floats(values: list[float], op: str = "sum") -> list[float]:
    """Sum (or max) of ``values`` over ranks."""
    if not _context.distributed:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX, group=_cpu_group)
    return tensor.tolist()


def gather_objects(obj: Any) -> list[Any]:
    """A picklable ``obj`` from every rank, in rank order."""
    if not _context.distributed:
        return [obj]
    out: list[Any] = [None] * _context.world_size
    dist.all_gather_object(out, obj, group=_cpu_group)
    return out


def on_main(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only and hand its result, or its exception, to every rank.

    For what must happen once (clearing a run folder, reading a checkpoint that may exist only on
    rank 0's disk, the closing evaluation): the others wait, and a failure stops all ranks with the
    same error instead of leaving them waiting.
    """
    if not _context.distributed:
        return fn()
    payload: list[Any] = [None]
    error: BaseException | None = None
    if _context.is_main:
        try:
            payload[0] = ("ok", fn())
        except Exception as err:  # noqa: BLE001 - re-raised below, on every rank
            error = err
            payload[0] = ("error", _portable(err))
    dist.broadcast_object_list(payload, src=0, group=_wait_group)
    status, value = payload[0]
    if error is not None:
        raise error
    if status == "error":
        raise value
    return value


def _portable(err: Exception) -> Exception:
    """``err`` if it survives pickling, else a RuntimeError with its message."""
    try:
        return pickle.loads(pickle.dumps(err))
    except Exception:  # noqa: BLE001 - custom exceptions with extra __init__ arguments
        return RuntimeError(f"rank 0 failed: {type(err).__name__}: {err}")


def parameter_digest(params: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 of parameter names and values: equal on all ranks iff the replicas are identical."""
    digest = hashlib.sha256()
    for name in sorted(params):
        value = params[name].detach().to("cpu", torch.float32).contiguous()
        digest.update(name.encode())
        digest.update(value.numpy().tobytes())
    return digest.hexdigest()
