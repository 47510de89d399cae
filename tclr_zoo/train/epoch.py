"""One pretraining epoch: the data a run trains on, its loader, the step, and the epoch's numbers.

One step = one fused forward of all 10 clip groups (faithful per-group BatchNorm, see
models/grouped_bn.py), the four TCLR losses, backward, Adam. On CUDA: bf16 autocast and
channels_last_3d; on CPU: fp32 (``train.amp=bf16`` there also brings channels_last_3d).
Augmentation is seeded from ``(seed, epoch, index)`` and shuffling from ``(seed, epoch)``, so an
epoch's clips do not depend on what ran before it: a resumed run sees the clips an uninterrupted
one would have seen.

Where the augmentation runs (``data.augment_on``): on CUDA the loader workers only decode and draw
each clip's parameters, and the GPU crops, resizes and augments the whole batch, the next batch
prepared on a side stream while the current step runs (train/feed.py); on CPU, per clip in the
workers, which measured faster there (BENCHMARKS.md, P2).

Under ``torchrun`` each process trains on its share of every global batch and the losses are those
of the whole batch (see distributed.py); :func:`train_one_epoch` returns numbers combined over the
processes, so every rank's schedule sees the same loss.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .. import runtime  # tclr_zoo.runtime: this process's place; .runtime (the step's settings) by name below
from ..data.datasets import (
    DATASETS,
    BadFileLog,
    EpochShuffleSampler,
    TCLRPretrainDataset,
    VideoItem,
    augment_pretrain_batch,
    collate_pretrain,
    describe_dataset,
    load_split,
)
from ..data.sampling import ClipSampling
from ..data.synthetic import SyntheticConfig, default_cache_dir, generate
from ..data.transforms import AugmentConfig
from ..losses import LOSS_KEYS, LossWeights, tclr_losses
from . import distributed
from .config import Recipe, RecipeError
from .feed import DeviceFeed, to_device
from .runtime import augment_on, autocast_for


@dataclass
class RunData:
    """The videos of a run: it trains on ``train``; its closing kNN evaluation queries ``train`` with ``test``."""

    train: list[VideoItem]
    test: list[VideoItem]
    class_names: list[str]
    name: str  # what the videos are (data.datasets.describe_dataset)
    split: int


@dataclass
class EpochStats:
    """One epoch's numbers: mean losses per step, videos, steps, time, and the files that failed."""

    losses: dict[str, float] = field(default_factory=dict)
    videos: int = 0
    steps: int = 0
    seconds: float = 0.0
    bad_files: int = 0
    skipped_steps: int = 0
    peak_gpu_memory_gb: float | None = None
    bad_samples: list = field(default_factory=list)  # this process's, for rank 0 to log (distributed)

    @property
    def loss(self) -> float:
        return self.losses.get("total", math.nan)


def prepare_data(recipe: Recipe, progress: bool = False) -> RunData:
    """The train and test video lists the recipe names (generating the synthetic set if needed)."""
    data = recipe.data
    if data.dataset == "synthetic":
        config = SyntheticConfig(**data.synthetic)
        root, layout = generate(data.root or default_cache_dir(), config, progress=progress), config.layout
    elif data.dataset in DATASETS:
        if not data.root:
            raise RecipeError(f"data.root must point at the {data.dataset} folder (--set data.root=PATH)")
        root, layout = Path(data.root), data.dataset
    else:
        raise RecipeError(f"data.dataset must be 'synthetic' or one of {', '.join(DATASETS)}, got {data.dataset!r}")
    train = load_split(layout, root, split=data.split, subset="train")
    test = load_split(layout, root, split=data.split, subset="test")
    return RunData(train.items, test.items, train.class_names, describe_dataset(layout, root), data.split)


def build_dataset(recipe: Recipe, items: list[VideoItem], device: torch.device | None = None) -> TCLRPretrainDataset:
    """The pretraining dataset; ``device``: the training device, which decides where ``data.augment_on=auto``
    augments (``None``: in the workers)."""
    d = recipe.data
    sampling = ClipSampling(d.frames, d.stride, d.num_local, d.local_stride, d.min_frames)
    augment = AugmentConfig(**{"size": d.size, **d.augment})
    where = augment_on(recipe, device if device is not None else torch.device("cpu"))
    return TCLRPretrainDataset([i.path for i in items], sampling, augment, channel_order=d.channel_order,
                               mean=d.mean, std=d.std, seed=recipe.train.seed, augment_on=where)


def device_feed(loader: DataLoader, device: torch.device) -> DeviceFeed:
    """The loader's batches on ``device``, augmented there when the dataset leaves that to the device,
    and on CUDA prepared one step ahead on a side stream (train/feed.py)."""
    dataset = loader.dataset

    def prepare(batch: dict) -> dict:  # frames copied non_blocking (pinned on CUDA), augmented there
        return to_device(augment_pretrain_batch(batch, dataset, device), device)

    return DeviceFeed(loader, device, prepare)


def pretrain_loader(dataset: TCLRPretrainDataset, recipe: Recipe, device: torch.device, workers: int, *,
                    rank: int = 0, world_size: int = 1) -> DataLoader:
    """One loader for the whole run; call ``loader.sampler.set_epoch(e)`` before iterating epoch e.

    With several processes each loader yields this rank's share of every global batch.
    """
    if len(dataset) < recipe.train.batch_size:
        raise RecipeError(f"{len(dataset)} training videos is fewer than train.batch_size={recipe.train.batch_size}")
    if world_size == 1:
        sampler = EpochShuffleSampler(len(dataset), recipe.train.seed)
    else:
        sampler = distributed.DistributedEpochShuffleSampler(len(dataset), recipe.train.seed, rank=rank,
                                                             world_size=world_size)
    return DataLoader(dataset, batch_size=distributed.per_process_batch(recipe.train.batch_size, world_size),
                      sampler=sampler, num_workers=workers,
                      collate_fn=collate_pretrain, drop_last=True, pin_memory=device.type == "cuda",
                      persistent_workers=workers > 0, prefetch_factor=2 if workers else None)


def loss_weights(recipe: Recipe) -> LossWeights:
    if recipe.train.ic_only:
        return LossWeights.ic_only()
    return LossWeights(**recipe.train.loss_weights)


def train_one_epoch(model, optimizer, loader, recipe: Recipe, device, bad_log: BadFileLog, *,
                    epoch: int, progress: bool, forward=None) -> EpochStats:
    """One epoch; ``forward`` is the pretraining forward (default ``model.forward_pretrain``; DDP's
    wrapper with several processes). Returns the epoch's numbers combined over all processes."""
    model.train()
    forward = forward or model.forward_pretrain
    world = runtime.world_size()
    stats, sums = EpochStats(), {k: 0.0 for k in LOSS_KEYS}
    seen = 0  # videos of all processes, for the progress bar's clips/s
    weights, limit = loss_weights(recipe), recipe.train.max_steps_per_epoch
    clips_per_video = 2 * (1 + recipe.data.num_local)
    bar = tqdm(device_feed(loader, device), desc=f"epoch {epoch + 1}/{recipe.train.epochs}", leave=False,
               disable=None if progress else True,  # None: only on a terminal, never into a pipe or log file
               total=min(len(loader), limit) if limit else len(loader))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for batch in bar:
        stats.bad_files += bad_log.report(batch["bad"])
        if world > 1:
            stats.bad_samples.extend(batch["bad"])
        sizes = runtime.gather_ints(batch["videos"])  # every process's videos in this step
        if min(sizes) < 2:  # BatchNorm needs 2 videos; happens only when bad files filled a batch.
            stats.skipped_steps += 1  # All processes skip together, or DDP's all-reduce would hang.
            continue
        losses = train_step(forward, optimizer, batch, recipe, device, weights, sizes)
        for key in LOSS_KEYS:
            sums[key] += losses[key]
        stats.steps += 1
        stats.videos += batch["videos"]
        seen += sum(sizes)
        rate = seen * clips_per_video / (time.perf_counter() - start)
        bar.set_postfix({**{k: f"{v:.3f}" for k, v in losses.items()}, "clips/s": f"{rate:.1f}"})
        if limit and stats.steps >= limit:
            break
    stats.seconds = time.perf_counter() - start
    if device.type == "cuda":
        stats.peak_gpu_memory_gb = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
    stats.losses = {k: v / max(stats.steps, 1) for k, v in sums.items()}
    return _combine_processes(stats, bad_log) if world > 1 else stats


def _combine_processes(stats: EpochStats, bad_log: BadFileLog) -> EpochStats:
    """The epoch's numbers over all processes: mean losses (the same on every rank, since each
    computes the global-batch loss; averaged anyway so every rank's lr schedule sees the very same
    number), summed videos and bad files, the slowest rank's time; rank 0 logs others' bad files."""
    world = runtime.world_size()
    losses = runtime.reduce_floats([stats.losses[k] for k in LOSS_KEYS])
    videos, bad_files = runtime.reduce_floats([stats.videos, stats.bad_files])
    peak = stats.peak_gpu_memory_gb if stats.peak_gpu_memory_gb is not None else -1.0
    seconds, peak = runtime.reduce_floats([stats.seconds, peak], op="max")
    for samples in runtime.gather_objects(stats.bad_samples):
        bad_log.report(samples)  # logs each file once, whichever rank met it
    return EpochStats(losses={k: v / world for k, v in zip(LOSS_KEYS, losses)}, videos=int(videos),
                      steps=stats.steps, seconds=seconds, bad_files=int(bad_files),
                      skipped_steps=stats.skipped_steps, peak_gpu_memory_gb=peak if peak >= 0 else None)


def train_step(forward, optimizer, batch, recipe: Recipe, device, weights: LossWeights,
               sizes: list[int] | None = None) -> dict[str, float]:
    """One optimisation step. With several processes ``sizes`` holds each one's videos: the
    embeddings of all of them are gathered, so the loss is the global batch's (see distributed.py)."""
    global_clips = batch["global"].to(device, non_blocking=True)
    local_clips = batch["local"].to(device, non_blocking=True)
    with autocast_for(device, recipe.train.amp):
        out = forward(global_clips, local_clips)
    if sizes is not None and len(sizes) > 1:
        out = distributed.gather_embeddings(out, sizes)
    losses = tclr_losses(**out, temperature=recipe.train.temperature, weights=weights)
    values = dict(zip(LOSS_KEYS, torch.stack([losses[k].detach() for k in LOSS_KEYS]).tolist()))  # one sync
    if not math.isfinite(values["total"]):
        raise FloatingPointError(f"non-finite loss {values}; lower optim.lr or check the input data")
    optimizer.zero_grad(set_to_none=True)
    losses["total"].backward()
    optimizer.step()
    return values


def worker_count(recipe: Recipe, log: Callable[[str], None], processes_per_node: int = 1) -> int:
    """``data.workers``, capped at the CPU count (more decode processes than cores only thrash);
    with several training processes on a node, at each one's share of the CPUs."""
    share = runtime.cpu_share(processes_per_node)
    if recipe.data.workers > share:
        per = "" if processes_per_node == 1 else f" per process ({processes_per_node} processes)"
        log(f"data.workers={recipe.data.workers} reduced to {share}, the number of CPUs available{per}")
        return share
    return recipe.data.workers



def epoch_row(epoch: int, stats: EpochStats, lr: float, recipe: Recipe, world_size: int = 1) -> dict:
    clips = stats.videos * 2 * (1 + recipe.data.num_local)  # videos of all processes
    return {"epoch": epoch + 1, **{k: round(v, 5) for k, v in stats.losses.items()}, "lr": lr,
            "steps": stats.steps, "videos": stats.videos, "world_size": world_size,
            "seconds": round(stats.seconds, 2),
            "clips_per_second": round(clips / stats.seconds, 2) if stats.seconds else 0.0,
            "bad_files": stats.bad_files, "skipped_steps": stats.skipped_steps,
            "peak_gpu_memory_gb": stats.peak_gpu_memory_gb}



def epoch_summary(row: dict) -> str:
    parts = " ".join(f"{k}={row[k]:.3f}" for k in LOSS_KEYS)
    bad = f", {row['bad_files']} bad files skipped" if row["bad_files"] else ""
    return (f"epoch {row['epoch']}: {parts} lr={row['lr']:.2e} {row['clips_per_second']:.1f} clips/s "
            f"({row['seconds']:.1f}s){bad}")


__all__ = ["EpochStats", "RunData", "build_dataset", "device_feed", "epoch_row", "epoch_summary", "loss_weights",
           "prepare_data", "pretrain_loader", "train_one_epoch", "train_step", "worker_count"]
