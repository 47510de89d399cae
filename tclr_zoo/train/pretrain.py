"""TCLR pretraining: the loop, checkpoints, resume, and the closing kNN evaluation.

One step = one fused forward of all 10 clip groups (faithful per-group BatchNorm, see
models/grouped_bn.py), the four TCLR losses, backward, Adam. On CUDA: bf16 autocast and
channels_last_3d; on CPU: fp32. Everything random is seeded from the recipe's seed and the epoch
(data augmentation from ``(seed, epoch, index)``, shuffling from ``(seed, epoch)``), so on CPU a run
resumed from a checkpoint computes the same losses as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import av
import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .. import __version__
from ..data.datasets import EpochShuffleSampler, TCLRPretrainDataset, VideoItem, collate_pretrain, read_ucf_split
from ..data.sampling import ClipSampling
from ..data.synthetic import SyntheticConfig, default_cache_dir, generate
from ..data.transforms import AugmentConfig
from ..hub import model_card, model_config, save_pretrained
from ..losses import LOSS_KEYS, LossWeights, tclr_losses
from ..registry import create_model, resolve_model_args
from .checkpoint import load_checkpoint, save_checkpoint
from .config import Recipe, RecipeError
from .evaluate import knn_retrieval
from .scalars import ScalarLogger
from .schedule import WarmupPlateauSchedule

@dataclass
class RunData:
    train: list[VideoItem]
    test: list[VideoItem]
    class_names: list[str]
    name: str


@dataclass
class EpochStats:
    losses: dict[str, float] = field(default_factory=dict)
    videos: int = 0
    steps: int = 0
    seconds: float = 0.0
    bad_files: int = 0
    skipped_steps: int = 0
    peak_gpu_memory_gb: float | None = None

    @property
    def loss(self) -> float:
        return self.losses.get("total", math.nan)


class BadFileLog:
    """Logs each unusable video once (path and reason) and counts them per epoch."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log, self.seen = log, set()

    def report(self, bad: list) -> int:
        for sample in bad:
            if sample.path not in self.seen:
                self.seen.add(sample.path)
                self.log(f"skipping {sample.path}: {sample.reason}")
        return len(bad)


def prepare_data(recipe: Recipe, progress: bool = False) -> RunData:
    """The train and test video lists the recipe names (generating the synthetic set if needed)."""
    data = recipe.data
    if data.dataset == "synthetic":
        root = generate(data.root or default_cache_dir(), SyntheticConfig(**data.synthetic), progress=progress)
    elif data.dataset == "ucf101":
        if not data.root:
            raise RecipeError("data.root must point at the UCF101 folder (UCF-101/ and ucfTrainTestlist/)")
        root = Path(data.root)
    else:
        raise RecipeError(f"data.dataset must be 'ucf101' or 'synthetic', got {data.dataset!r}")
    train, classes = read_ucf_split(root, data.split, "train")
    test, _ = read_ucf_split(root, data.split, "test")
    return RunData(train, test, classes, f"{data.dataset}/split{data.split}")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RecipeError(f"train.device={name!r} but no CUDA device is available")
    return torch.device(name)


def autocast_for(device: torch.device, amp: str):
    """bf16 autocast on CUDA by default; fp32 on CPU (CPU autocast is slower for 3D convs).

    fp16 is not offered: it would need loss scaling, and bf16 has fp32's range without it.
    """
    mode = ("bf16" if device.type == "cuda" else "none") if amp == "auto" else amp
    if mode not in ("bf16", "none"):
        raise RecipeError(f"train.amp must be auto, bf16 or none, got {amp!r}")
    if mode == "none":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_dataset(recipe: Recipe, items: list[VideoItem]) -> TCLRPretrainDataset:
    d = recipe.data
    sampling = ClipSampling(d.frames, d.stride, d.num_local, d.local_stride, d.min_frames)
    augment = AugmentConfig(**{"size": d.size, **d.augment})
    return TCLRPretrainDataset([i.path for i in items], sampling, augment, channel_order=d.channel_order,
                               mean=d.mean, std=d.std, seed=recipe.train.seed)


def pretrain_loader(dataset: TCLRPretrainDataset, recipe: Recipe, device: torch.device, workers: int) -> DataLoader:
    """One loader for the whole run; call ``loader.sampler.set_epoch(e)`` before iterating epoch e."""
    if len(dataset) < recipe.train.batch_size:
        raise RecipeError(f"{len(dataset)} training videos is fewer than train.batch_size={recipe.train.batch_size}")
    return DataLoader(dataset, batch_size=recipe.train.batch_size,
                      sampler=EpochShuffleSampler(len(dataset), recipe.train.seed), num_workers=workers,
                      collate_fn=collate_pretrain, drop_last=True, pin_memory=device.type == "cuda",
                      persistent_workers=workers > 0, prefetch_factor=2 if workers else None)


def loss_weights(recipe: Recipe) -> LossWeights:
    if recipe.train.ic_only:
        return LossWeights.ic_only()
    return LossWeights(**recipe.train.loss_weights)


def train_one_epoch(model, optimizer, loader, recipe: Recipe, device, bad_log: BadFileLog, *,
                    epoch: int, progress: bool) -> EpochStats:
    model.train()
    stats, sums = EpochStats(), {k: 0.0 for k in LOSS_KEYS}
    weights, limit = loss_weights(recipe), recipe.train.max_steps_per_epoch
    clips_per_video = 2 * (1 + recipe.data.num_local)
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{recipe.train.epochs}", disable=not progress, leave=False,
               total=min(len(loader), limit) if limit else len(loader))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for batch in bar:
        stats.bad_files += bad_log.report(batch["bad"])
        if batch["videos"] < 2:  # BatchNorm needs 2 videos; happens only when bad files filled the batch
            stats.skipped_steps += 1
            continue
        losses = train_step(model, optimizer, batch, recipe, device, weights)
        for key in LOSS_KEYS:
            sums[key] += losses[key]
        stats.steps += 1
        stats.videos += batch["videos"]
        rate = stats.videos * clips_per_video / (time.perf_counter() - start)
        bar.set_postfix({**{k: f"{v:.3f}" for k, v in losses.items()}, "clips/s": f"{rate:.1f}"})
        if limit and stats.steps >= limit:
            break
    stats.seconds = time.perf_counter() - start
    if device.type == "cuda":
        stats.peak_gpu_memory_gb = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
    stats.losses = {k: v / max(stats.steps, 1) for k, v in sums.items()}
    return stats


def train_step(model, optimizer, batch, recipe: Recipe, device, weights: LossWeights) -> dict[str, float]:
    global_clips = batch["global"].to(device, non_blocking=True)
    local_clips = batch["local"].to(device, non_blocking=True)
    with autocast_for(device, recipe.train.amp):
        out = model.forward_pretrain(global_clips, local_clips)
    losses = tclr_losses(**out, temperature=recipe.train.temperature, weights=weights)
    values = dict(zip(LOSS_KEYS, torch.stack([losses[k].detach() for k in LOSS_KEYS]).tolist()))  # one sync
    if not math.isfinite(values["total"]):
        raise FloatingPointError(f"non-finite loss {values}; lower optim.lr or check the input data")
    optimizer.zero_grad(set_to_none=True)
    losses["total"].backward()
    optimizer.step()
    return values


def _worker_count(recipe: Recipe, log: Callable[[str], None]) -> int:
    """``data.workers``, capped at the CPU count (more decode processes than cores only thrash)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if recipe.data.workers > cpus:
        log(f"data.workers={recipe.data.workers} reduced to {cpus}, the number of CPUs available")
        return cpus
    return recipe.data.workers


def _groups_per_pass(recipe: Recipe, device: torch.device) -> int | None:
    setting = recipe.train.groups_per_pass
    if setting == "auto":
        return None if device.type == "cuda" else 2
    if setting == "all":
        return None
    if not isinstance(setting, int) or setting < 1:
        raise RecipeError(f"train.groups_per_pass must be auto, all or a positive integer, got {setting!r}")
    return setting


def _use_channels_last(recipe: Recipe, device: torch.device) -> bool:
    setting = recipe.train.channels_last
    return device.type == "cuda" if setting == "auto" else bool(setting)


def _checkpoint_state(model, optimizer, schedule, epoch, best_loss, history, recipe) -> dict:
    return {"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(), "best_loss": best_loss, "history": history,
            "torch_rng": torch.get_rng_state(), "recipe": recipe.to_dict(), "tclr_zoo": __version__}


def _restore(state: dict, model, optimizer, schedule) -> tuple[int, float, list]:
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["epoch"]) + 1, float(state["best_loss"]), list(state["history"])


def _knn(model, data: RunData, recipe: Recipe, device, progress: bool) -> dict:
    e, d = recipe.eval, recipe.data
    return knn_retrieval(model, data.train, data.test, ks=e.ks, device=device, batch_size=e.batch_size,
                         workers=min(d.workers, 2), progress=progress, clips=e.clips, frames=e.frames,
                         stride=e.stride, size=d.size, crop_fraction=e.crop_fraction,
                         channel_order=d.channel_order, mean=d.mean, std=d.std)


def preprocessing_config(recipe: Recipe) -> dict:
    d, e = recipe.data, recipe.eval
    return {"channel_order": d.channel_order, "value_range": [0.0, 1.0], "mean": d.mean, "std": d.std,
            "size": d.size, "crop_fraction": e.crop_fraction, "frames": d.frames,
            "eval_frame_stride": e.stride, "pretrain_frame_stride": d.stride,
            "eval_protocol": {"clips": e.clips, "pooling": "temporal", "similarity": "cosine"}}


def pretrain(recipe: Recipe, out_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
             progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Run a recipe end to end; returns (and writes to ``OUT/results.json``) the run's numbers.

    A folder that already holds a run is continued with ``resume`` or replaced with ``overwrite``;
    otherwise it is left untouched and the call fails, so no earlier checkpoint is lost by mistake.
    """
    wall_start = time.perf_counter()
    out = Path(out_dir)
    if not (resume or overwrite) and (out / "checkpoints" / "last.pt").exists():
        raise RecipeError(f"{out} already holds a run; pass --resume to continue it, --overwrite to replace "
                          "it, or choose another --out")
    if overwrite and not resume:
        _clear_run(out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_dir = out / "checkpoints"
    device = resolve_device(recipe.train.device)
    data = prepare_data(recipe, progress)
    seed_everything(recipe.train.seed)
    model_args = resolve_model_args(recipe.model.arch, recipe.model.model_args)
    model = create_model(recipe.model.arch, model_args=model_args, head_dim=recipe.model.head_dim,
                         bn_mode=recipe.model.bn_mode)
    model.groups_per_pass = _groups_per_pass(recipe, device)
    random_init = copy.deepcopy(model)  # the same network at initialisation: the kNN baseline
    model.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed clip shapes: let cuDNN pick the fastest kernels
    if _use_channels_last(recipe, device):
        model.to(memory_format=torch.channels_last_3d)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.optim.lr, weight_decay=recipe.optim.weight_decay)
    o = recipe.optim
    schedule = WarmupPlateauSchedule(optimizer, o.lr, o.warmup, o.plateau_patience, o.plateau_factor)
    start_epoch, best_loss, history = 0, math.inf, []
    if resume:
        if not (ckpt_dir / "last.pt").exists():
            raise RecipeError(f"--resume: no checkpoint at {ckpt_dir / 'last.pt'}")
        start_epoch, best_loss, history = _restore(load_checkpoint(ckpt_dir / "last.pt"), model, optimizer, schedule)
        log(f"resumed from {ckpt_dir / 'last.pt'} at epoch {start_epoch + 1}")
    (out / "recipe.yaml").write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    loader = pretrain_loader(build_dataset(recipe, data.train), recipe, device, _worker_count(recipe, log))
    logger, bad_log = ScalarLogger(out / "logs"), BadFileLog(log)
    log(f"pretraining {recipe.model.arch} on {data.name}: {len(data.train)} videos, device {device}, "
        f"batch {recipe.train.batch_size}, epochs {start_epoch + 1}..{recipe.train.epochs}")
    try:
        for epoch in range(start_epoch, recipe.train.epochs):
            schedule.start_epoch(epoch)
            loader.sampler.set_epoch(epoch)
            stats = train_one_epoch(model, optimizer, loader, recipe, device, bad_log, epoch=epoch, progress=progress)
            schedule.end_epoch(stats.loss)
            row = _epoch_row(epoch, stats, schedule.lr, recipe)
            history.append(row)
            logger.log(epoch + 1, {f"loss/{k}": v for k, v in stats.losses.items()} |
                       {"lr": row["lr"], "clips_per_second": row["clips_per_second"], "bad_files": stats.bad_files})
            log(_epoch_summary(row))
            improved = stats.loss < best_loss
            best_loss = min(best_loss, stats.loss)
            state = _checkpoint_state(model, optimizer, schedule, epoch, best_loss, history, recipe)
            save_checkpoint(ckpt_dir / "last.pt", state)
            if improved:
                save_checkpoint(ckpt_dir / "best.pt", state)
    finally:
        logger.close()
    return _finish(model, random_init, data, recipe, device, out, history, wall_start, progress, log)


def _clear_run(out: Path) -> None:
    """Remove the outputs of an earlier run in ``out`` (only what ``pretrain`` itself writes)."""
    for name in ("checkpoints", "logs", "model"):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in ("results.json", "recipe.yaml"):
        (out / name).unlink(missing_ok=True)


def _epoch_row(epoch: int, stats: EpochStats, lr: float, recipe: Recipe) -> dict:
    clips = stats.videos * 2 * (1 + recipe.data.num_local)
    return {"epoch": epoch + 1, **{k: round(v, 5) for k, v in stats.losses.items()}, "lr": lr,
            "steps": stats.steps, "videos": stats.videos, "seconds": round(stats.seconds, 2),
            "clips_per_second": round(clips / stats.seconds, 2) if stats.seconds else 0.0,
            "bad_files": stats.bad_files, "skipped_steps": stats.skipped_steps,
            "peak_gpu_memory_gb": stats.peak_gpu_memory_gb}


def _epoch_summary(row: dict) -> str:
    parts = " ".join(f"{k}={row[k]:.3f}" for k in LOSS_KEYS)
    bad = f", {row['bad_files']} bad files skipped" if row["bad_files"] else ""
    return (f"epoch {row['epoch']}: {parts} lr={row['lr']:.2e} {row['clips_per_second']:.1f} clips/s "
            f"({row['seconds']:.1f}s){bad}")


def _finish(model, random_init, data, recipe, device, out: Path, history, wall_start, progress, log) -> dict:
    results: dict = {"recipe": recipe.name, "arch": recipe.model.arch, "dataset": data.name,
                     "epochs": len(history) and history[-1]["epoch"], "history": history}
    train_seconds = sum(r["seconds"] for r in history)
    clips = sum(r["videos"] for r in history) * 2 * (1 + recipe.data.num_local)
    results["clips_per_second"] = round(clips / train_seconds, 2) if train_seconds else 0.0
    results["bad_files"] = sum(r["bad_files"] for r in history)
    peaks = [r["peak_gpu_memory_gb"] for r in history if r.get("peak_gpu_memory_gb") is not None]
    results["peak_gpu_memory_gb"] = max(peaks) if peaks else None
    if recipe.eval.knn:
        trained = _knn(model, data, recipe, device, progress)
        baseline = _knn(random_init.to(device), data, recipe, device, progress)
        results["knn_r1"], results["knn_r1_random_init"] = trained["R@1"], baseline["R@1"]
        results["knn"], results["knn_random_init"] = trained, baseline
        log(f"kNN retrieval R@1 ({data.name}, test vs train): trained {trained['R@1']:.3f}, "
            f"random init {baseline['R@1']:.3f} ({trained['queries']} queries, {trained['gallery']} gallery)")
    config = model_config(model, arch=recipe.model.arch,
                          model_args=resolve_model_args(recipe.model.arch, recipe.model.model_args),
                          preprocessing=preprocessing_config(recipe),
                          extra={"training": {"recipe": recipe.name, "dataset": data.name, "epochs": results["epochs"]}})
    summary = {k: results[k] for k in ("knn_r1", "knn_r1_random_init", "dataset") if k in results}
    save_pretrained(model.to("cpu").eval(), out / "model", config, card=model_card(config, summary))
    results["wall_seconds"] = round(time.perf_counter() - wall_start, 2)
    results["versions"] = {"tclr_zoo": __version__, "torch": torch.__version__, "av": av.__version__}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    log(f"saved model to {out / 'model'} and results to {out / 'results.json'} "
        f"(wall time {results['wall_seconds']:.0f}s)")
    return results

