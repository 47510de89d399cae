"""TCLR pretraining: the loop, checkpoints, resume, and the closing kNN evaluation.

One step = one fused forward of all 10 clip groups (faithful per-group BatchNorm, see
models/grouped_bn.py), the four TCLR losses, backward, Adam. On CUDA: bf16 autocast and
channels_last_3d; on CPU: fp32 (``train.amp=bf16`` there also brings channels_last_3d). Everything
random is seeded from the recipe's seed and the epoch (data augmentation from ``(seed, epoch,
index)``, shuffling from ``(seed, epoch)``), so on CPU a run resumed from a checkpoint computes the
same losses as an uninterrupted one.

Where the augmentation runs (``data.augment_on``): on CUDA the loader workers only decode and draw
each clip's parameters, and the GPU crops, resizes and augments the whole batch, the next batch
prepared on a side stream while the current step runs (train/feed.py); on CPU, per clip in the
workers, which measured faster there (BENCHMARKS.md, P2). ``train.compile`` compiles the forward.

Under ``torchrun`` the same function runs once per process: see distributed.py for what is shared
(global batch, gathered losses, DDP gradients) and what only rank 0 does (logs, files, evaluation).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import av
import torch
import yaml
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from .. import __version__
from ..constants import LOCAL_PREFIX
from ..data.datasets import (
    DATASETS, BadFileLog, EpochShuffleSampler, TCLRPretrainDataset, VideoItem, augment_pretrain_batch,
    collate_pretrain, cpu_share, describe_dataset, load_split,
)
from ..data.sampling import ClipSampling
from ..data.synthetic import SyntheticConfig, default_cache_dir, generate
from ..data.transforms import AugmentConfig
from ..hub.card import render_model_card
from ..hub.format import model_config, write_model_files
from ..losses import LOSS_KEYS, LossWeights, tclr_losses
from ..hub.card import protocol_text
from ..models.registry import create_model, resolve_model_args
from . import distributed
from ..atomic import atomic_write, exclusive_output, refuse_to_replace, remove_stale_siblings, staged_directory
from .checkpoint import CheckpointError, load_checkpoint, resume_candidates, save_checkpoint
from .config import (
    Recipe, RecipeError, ResumeRequest, apply_override, load_recipe, preprocessing_config, recipe_from_dict,
    resume_changes,
)
from .evaluate import knn_retrieval
from .feed import DeviceFeed, to_device
from .runtime import augment_on, autocast_for, configure_model, resolve_device, seed_everything
from .scalars import ScalarLogger
from .schedule import WarmupPlateauSchedule

@dataclass
class RunData:
    train: list[VideoItem]
    test: list[VideoItem]
    class_names: list[str]
    name: str  # what the videos are (data.datasets.describe_dataset)
    split: int


@dataclass
class EpochStats:
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
    world = distributed.world_size()
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
        sizes = distributed.gather_ints(batch["videos"])  # every process's videos in this step
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
    world = distributed.world_size()
    losses = distributed.reduce_floats([stats.losses[k] for k in LOSS_KEYS])
    videos, bad_files = distributed.reduce_floats([stats.videos, stats.bad_files])
    peak = stats.peak_gpu_memory_gb if stats.peak_gpu_memory_gb is not None else -1.0
    seconds, peak = distributed.reduce_floats([stats.seconds, peak], op="max")
    for samples in distributed.gather_objects(stats.bad_samples):
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


def _worker_count(recipe: Recipe, log: Callable[[str], None], processes_per_node: int = 1) -> int:
    """``data.workers``, capped at the CPU count (more decode processes than cores only thrash);
    with several training processes on a node, at each one's share of the CPUs."""
    share = cpu_share(processes_per_node)
    if recipe.data.workers > share:
        per = "" if processes_per_node == 1 else f" per process ({processes_per_node} processes)"
        log(f"data.workers={recipe.data.workers} reduced to {share}, the number of CPUs available{per}")
        return share
    return recipe.data.workers


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


def _knn(model, data: RunData, recipe: Recipe, device, progress: bool, log: Callable[[str], None],
         which: str) -> dict:
    """The closing kNN evaluation of one network (``which``: "trained model" or "random init").

    It takes minutes on a CPU, so it says what it embeds; with progress on and the output not a
    terminal (``make demo`` into a pipe or a log file, where tqdm stays silent) it also logs how far
    it got, so a log never goes quiet for minutes.
    """
    e, d = recipe.eval, recipe.data
    log(f"kNN evaluation: embedding {len(data.train) + len(data.test)} videos ({len(data.train)} gallery, "
        f"{len(data.test)} queries, {e.clips} clips each), {which}...")
    lines = log if progress and not sys.stdout.isatty() else None
    return knn_retrieval(model, data.train, data.test, ks=e.ks, device=device, batch_size=e.batch_size,
                         workers=min(d.workers, 2, cpu_share()), progress=progress, clips=e.clips, frames=e.frames,
                         stride=e.stride, size=d.size, crop_fraction=e.crop_fraction,
                         channel_order=d.channel_order, mean=d.mean, std=d.std, log=lines)


@dataclass
class RunProgress:
    """What the run folder holds so far, kept up to date while :func:`pretrain` runs, for the report
    of an interruption (:class:`RunInterrupted`)."""

    resuming: bool = False  # a --resume of a run with a checkpoint
    kept_epoch: int | None = None  # epochs in the newest checkpoint; None: none, or not read yet
    epochs: int | None = None  # train.epochs of the run; None: not known yet
    saved_here: bool = False  # this call saved a checkpoint, so its resume changes are recorded
    finishing: bool = False  # every epoch is trained: evaluating and saving the model
    created_folder: bool = False  # this call created the run folder
    restartable: bool = False  # the folder holds only an unfinished start: `--resume` starts it again

    def kept(self) -> str:
        if self.kept_epoch is None:
            if self.resuming:
                return "before the run resumed; its folder is as it was"
            return "no checkpoint was saved yet, so nothing trained was kept"
        if self.finishing:
            return (f"all {self.kept_epoch} epochs are trained and checkpointed; the closing evaluation and the "
                    "saved model were not written")
        of = f" of {self.epochs}" if self.epochs else ""
        return f"kept the checkpoint of epoch {self.kept_epoch}{of}"


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) during :func:`pretrain`, carrying what the run folder kept (``progress``) so
    that the CLI can say it and print the command that goes on. Still a ``KeyboardInterrupt``: a
    library caller stops as before."""

    def __init__(self, out: Path, progress: RunProgress) -> None:
        super().__init__(f"{out}: interrupted; {progress.kept()}")
        self.out, self.progress = out, progress


def pretrain(recipe: Recipe | ResumeRequest, out_dir: str | Path, *, resume: bool = False, overwrite: bool = False,
             progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Run a recipe end to end; returns (and writes to ``OUT/results.json``) the run's numbers.

    A folder that already holds a run is continued with ``resume`` or replaced with ``overwrite``;
    otherwise it is left untouched and the call fails, so no earlier checkpoint is lost by mistake.
    A folder that holds only what a start stopped before its first checkpoint wrote (its
    ``recipe.yaml``) is started again in place. Every refusal comes before the run folder is created.

    ``recipe``: the recipe to run; with ``resume`` also a :class:`ResumeRequest` (what ``--resume``
    passes): the run's recorded recipe with only the request's overrides changed. A full ``Recipe``
    with ``resume`` is compared setting by setting with the recorded one. Either way only the
    settings in ``config.RESUMABLE`` may change, and the changes are recorded in ``recipe.yaml``
    once the first epoch trained with them is saved.

    Ctrl-C raises :class:`RunInterrupted` (a ``KeyboardInterrupt``) saying what the folder kept.

    Started by ``torchrun`` it joins the process group (distributed.py); rank 0 logs, writes and
    returns the results, the other ranks stay silent and return ``{"rank", "world_size", "history"}``.
    """
    if isinstance(recipe, ResumeRequest) and not resume:
        raise ValueError("a ResumeRequest continues a run: pass resume=True")
    out, run, main = Path(out_dir), RunProgress(), True
    try:
        with distributed.session(_session_device(recipe, out)) as ctx, contextlib.ExitStack() as held:
            main = ctx.is_main
            if not main:
                progress, log = False, _silent
            # One writer per run folder: rank 0 holds its lock for the whole run; a second run is refused
            # (on every rank) before anything is read or written.
            distributed.on_main(lambda: held.enter_context(exclusive_output(out)))
            try:
                return _pretrain(recipe, out, ctx, run, resume=resume, overwrite=overwrite, progress=progress,
                                 log=log)
            except BaseException as err:
                if main and _ctrl_c(err):
                    _after_interruption(out, run)  # while the folder is still locked
                raise
    except BaseException as err:
        if not main or not _ctrl_c(err):
            raise
        raise RunInterrupted(out, run) from None


def _ctrl_c(err: BaseException) -> bool:
    """A ``KeyboardInterrupt``, or an error that code cleaning up after one raised in its place (a
    library's writer closed half-way): either way the user stopped the run."""
    while err is not None:
        if isinstance(err, KeyboardInterrupt):
            return True
        err = err.__context__
    return False


def _after_interruption(out: Path, run: RunProgress) -> None:
    """Remove the run folder this call created if it is still empty, and note whether the folder
    holds an unfinished start, which ``--resume`` starts again (``recipe.yaml`` is kept for that)."""
    if run.created_folder and out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    run.restartable = run.kept_epoch is None and (out / "recipe.yaml").is_file() and _unfinished_start(out)


def _session_device(recipe: Recipe | ResumeRequest, out: Path) -> torch.device:
    """The device to join the run on. A resume knows its recipe only once rank 0 has read the
    checkpoint, after the process group exists; ``train.device`` cannot change on resume, so the one
    ``OUT/recipe.yaml`` records serves (or the request's own ``--set train.device``), checked against
    the checkpoint's recipe once it is read (:func:`_check_resumed_device`)."""
    if isinstance(recipe, Recipe):
        return resolve_device(recipe.train.device)
    probe = Recipe()
    probe.train.device = _recorded_device(out)
    for item in recipe.overrides:
        apply_override(probe, item)
    return resolve_device(probe.train.device)


def _recorded_device(out: Path) -> str:
    try:
        device = (yaml.safe_load((out / "recipe.yaml").read_text()) or {}).get("train", {}).get("device", "auto")
    except (OSError, yaml.YAMLError, AttributeError):
        return "auto"
    return device if isinstance(device, str) else "auto"


def _check_resumed_device(recipe: Recipe, device: torch.device, out: Path) -> None:
    if resolve_device(recipe.train.device).type != device.type:
        raise RecipeError(f"--resume: the run in {out} trains with train.device={recipe.train.device!r}, not on "
                          f"{device.type} as {out / 'recipe.yaml'} said; add --set train.device={recipe.train.device}")


def _check_time_steps(recipe: Recipe, model) -> None:
    """The global-local loss pairs each time-step of the global clip's feature map with one local clip."""
    steps = recipe.data.frames // model.temporal_downsampling
    if steps != recipe.data.num_local:
        raise RecipeError(f"{recipe.model.arch} turns data.frames={recipe.data.frames} into {steps} time-steps, but "
                          f"the global-local loss needs one per local clip (data.num_local={recipe.data.num_local}); "
                          f"use data.frames={recipe.data.num_local * model.temporal_downsampling} or "
                          f"data.num_local={steps}")


def _silent(_message: str) -> None:
    pass


def _command(*args: str | Path) -> str:
    """A command line to print in a hint, quoted so that it runs as printed."""
    return shlex.join(["tclr-zoo", "pretrain", *map(str, args)])


def _check_run_folder(out: Path, resume: bool, overwrite: bool) -> str:
    """Refuse what would lose files, before any work and before anything is created: a run resumed
    where there is none, a run replaced without ``--overwrite``, or a run started in a folder that
    holds other files. Returns how the run goes on: ``"resume"``, ``"fresh"``, or ``"restart"``
    (``--resume`` of a start stopped before its first checkpoint: it starts again from epoch 1)."""
    has_run = bool(resume_candidates(out / "checkpoints" / "last.pt"))
    unfinished = not has_run and _unfinished_start(out, clean=True)
    if resume:
        if has_run:
            return "resume"
        if unfinished and (out / "recipe.yaml").is_file():
            return "restart"
        raise RecipeError(f"--resume: {out} holds no run to continue (no checkpoints/last.pt); drop --resume to "
                          "start one there")
    if has_run and not overwrite:
        raise RecipeError(f"{out} already holds a run (to replace it: the same command with --overwrite; or choose "
                          f"another --out); to continue it: {_command('--out', out, '--resume')}")
    if not unfinished:
        refuse_to_replace(out, overwrite=overwrite, kind="folder")
    return "fresh"


def _unfinished_start(out: Path, *, clean: bool = False) -> bool:
    """Whether the folder ``out`` holds only what a start writes before its first checkpoint:
    ``recipe.yaml`` and an empty ``checkpoints/`` (the scalar logs appear with the first checkpoint),
    or part of that. Such a folder holds nothing trained, so it is started again in place; anything
    else in it, a user's file say, stops that. ``clean``: first remove the temporary files of a
    writer killed meanwhile, as every write does."""
    recipe, ckpt = out / "recipe.yaml", out / "checkpoints"
    if not out.is_dir():
        return False
    if clean:
        for target in (recipe, ckpt / "last.pt", ckpt / "best.pt"):
            remove_stale_siblings(target)
    if {entry.name for entry in out.iterdir()} - {"recipe.yaml", "checkpoints"}:
        return False
    return not ckpt.exists() or (ckpt.is_dir() and not any(ckpt.iterdir()))


def _read_last_checkpoint(out: Path, log: Callable[[str], None]) -> tuple[dict, Path]:
    """The newest usable checkpoint: ``last.pt``, or the one it replaced when ``last.pt`` is missing
    (killed between two renames) or damaged."""
    ckpt_dir = out / "checkpoints"
    for stale in (*remove_stale_siblings(ckpt_dir / "last.pt"), *remove_stale_siblings(ckpt_dir / "best.pt")):
        log(f"removed {stale.name}, left by a process stopped while writing a checkpoint")
    problems, damaged = [], []
    for path in resume_candidates(ckpt_dir / "last.pt"):
        try:
            state = load_checkpoint(path)
        except CheckpointError as err:
            problems.append(str(err))
            damaged.append(path)
            log(f"cannot resume from {path.name}: {err}")
            continue
        for bad in damaged:  # else the next checkpoint would keep it as last.previous.pt, in place of a good one
            bad.replace(bad.with_name(f"{bad.stem}.damaged{bad.suffix}"))
            log(f"moved the damaged {bad.name} aside to {bad.stem}.damaged{bad.suffix}")
        return state, path
    detail = "; ".join(problems) if problems else "no checkpoint was written yet"
    again = (_command(out / "recipe.yaml", "--out", out, "--overwrite") if (out / "recipe.yaml").is_file()
             else "the command that started it, with --overwrite")
    raise RecipeError(f"--resume: no usable checkpoint in {ckpt_dir} ({detail}); start the run again: {again}")


@dataclass
class Resumed:
    """What ``--resume`` continues: the checkpoint, the run's recipe with this resume's changes
    appended, and the finished run's results when there is nothing left to train."""

    state: dict
    source: Path
    recipe: Recipe
    done: int  # epochs in the checkpoint
    finished: dict | None = None


def _resume(out: Path, requested: Recipe | ResumeRequest, log: Callable[[str], None]) -> Resumed:
    """Read the checkpoint and decide what the resumed run is (on rank 0; see ``distributed.on_main``).

    The run keeps the recipe it was started with; of what the user asks now only the settings in
    ``config.RESUMABLE`` may differ, and each change is appended to the recipe's ``resumes``.
    """
    state, source = _read_last_checkpoint(out, log)
    recipe = recipe_from_dict(state["recipe"], f"{source} (recipe)")
    done = int(state["epoch"]) + 1
    wanted = requested.applied_to(recipe, str(out)) if isinstance(requested, ResumeRequest) else requested
    changes = resume_changes(recipe, wanted)
    if changes:
        recipe.resumes.append({"epoch": done + 1, "set": {k: new for k, (_, new) in changes.items()},
                               "was": {k: old for k, (old, _) in changes.items()}})
        log("changed for this resume: " + ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changes.items()))
    results = out / "results.json"
    epochs = recipe.settings_from(None).train.epochs
    if done >= epochs and results.is_file():  # finished, and its evaluation and model were written
        longer = _command("--out", out, "--resume", "--set", f"train.epochs={2 * done}")
        log(f"{out}: the run already trained {done} epoch{'s' if done != 1 else ''} (train.epochs={epochs}); nothing "
            f"to do, nothing changed. To train longer, give the new total, e.g.: {longer}")
        return Resumed(state, source, recipe, done, finished=json.loads(results.read_text()))
    return Resumed(state, source, recipe, done)


def _restart(out: Path, requested: Recipe | ResumeRequest, log: Callable[[str], None]) -> Recipe:
    """``--resume`` of a start stopped before its first checkpoint: nothing was trained, so the run
    starts again from epoch 1 with the recipe it recorded, as ``pretrain OUT/recipe.yaml --set ...``
    would (a library caller's full ``Recipe`` is used as it is)."""
    if not isinstance(requested, ResumeRequest):
        log(f"{out}: the run was stopped before its first checkpoint; starting it again from epoch 1")
        return requested
    recipe = load_recipe(str(out / "recipe.yaml"), list(requested.overrides))
    requested.check_recipe_name(recipe, str(out))
    log(f"{out}: the run was stopped before its first checkpoint; starting it again from epoch 1 with its "
        "recorded recipe")
    return recipe


def _set_up_run_folder(out: Path, recipe: Recipe, *, replace: bool) -> bool:
    """Once the start is accepted: empty the folder of an earlier run or an unfinished start
    (``replace``; only what ``pretrain`` writes), create it and record the recipe. Returns whether
    the folder was created."""
    if replace:
        _clear_run(out)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    _write_recipe(out, recipe)
    return created


def _write_recipe(out: Path, recipe: Recipe) -> None:
    atomic_write(out / "recipe.yaml", lambda f: f.write(yaml.safe_dump(recipe.to_dict(), sort_keys=False).encode()))


def _pretrain(requested: Recipe | ResumeRequest, out: Path, ctx: distributed.DistContext, run: RunProgress, *,
              resume: bool, overwrite: bool, progress: bool, log: Callable[[str], None]) -> dict:
    wall_start = time.perf_counter()
    device, world = ctx.device, ctx.world_size
    # Everything is checked before anything is written: a refused start leaves no run folder behind.
    mode = distributed.on_main(lambda: _check_run_folder(out, resume, overwrite))
    run.resuming = mode == "resume"
    resumed = None
    if mode == "resume":
        # Read the checkpoint before the data: a bad --resume fails in a second, not after data preparation.
        # Rank 0 reads the file and hands it to the others: it need not be on their disks.
        resumed = distributed.on_main(lambda: _resume(out, requested, log))
        if resumed.finished is not None:
            return resumed.finished if ctx.is_main else {"rank": ctx.rank, "world_size": world, "history": []}
        recipe, run.kept_epoch = resumed.recipe, resumed.done
        _check_resumed_device(recipe, device, out)
    elif mode == "restart":
        recipe = distributed.on_main(lambda: _restart(out, requested, log))
    else:
        recipe = requested
    per_process = distributed.per_process_batch(recipe.train.batch_size, world)
    sync_bn = distributed.use_sync_bn(recipe, world, device)
    final = recipe.settings_from(None)  # the settings the run ends with (epochs, data location, evaluation)
    run.epochs = final.train.epochs
    data = prepare_data(final, progress)
    seed_everything(recipe.train.seed)
    model_args = resolve_model_args(recipe.model.arch, recipe.model.model_args)
    model = create_model(recipe.model.arch, model_args=model_args, head_dim=recipe.model.head_dim,
                         bn_mode=recipe.model.bn_mode)
    _check_time_steps(recipe, model)
    # the same network at initialisation: the kNN baseline (only rank 0 evaluates)
    random_init = copy.deepcopy(model) if ctx.is_main else None
    configure_model(model, recipe, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.optim.lr, weight_decay=recipe.optim.weight_decay)
    o = recipe.optim
    schedule = WarmupPlateauSchedule(optimizer, o.lr, o.warmup, o.plateau_patience, o.plateau_factor)
    start_epoch, best_loss, history = 0, math.inf, []
    if resumed is not None:
        start_epoch, best_loss, history = _restore(resumed.state, model, optimizer, schedule)
        log(f"resumed from {resumed.source} at epoch {start_epoch + 1}")
        resumed = None  # the checkpoint's tensors are in the model and optimizer now
    restore_bn = distributed.convert_sync_bn(model) if sync_bn else None
    forward = distributed.pretraining_forward(model)
    if recipe.train.compile:
        forward = torch.compile(forward)  # compiled on the first step (bench/gpu.sh, P8, times it)
    workers = _worker_count(final, log, ctx.local_world_size)
    loader = pretrain_loader(build_dataset(recipe, data.train, device), recipe, device, workers, rank=ctx.rank,
                             world_size=world)
    if mode != "resume":  # the start is accepted: only now is the run folder created (or emptied)
        run.created_folder = distributed.on_main(lambda: _set_up_run_folder(out, recipe,
                                                                            replace=overwrite or mode == "restart"))
    logger = ScalarLogger(out / "logs") if ctx.is_main else None  # creates its files at the first epoch's end
    bad_log = BadFileLog(log)
    processes = "" if world == 1 else f" ({world} processes x {per_process}, {ctx.backend})"
    log(f"pretraining {recipe.model.arch} on {data.name}: {len(data.train)} videos, device {device}, "
        f"batch {recipe.train.batch_size}{processes}, epochs {start_epoch + 1}..{final.train.epochs}, "
        f"{workers} loader workers, augmentation on the {loader.dataset.augment_on}"
        f"{', compiled forward' if recipe.train.compile else ''}")
    try:
        for epoch in range(start_epoch, final.train.epochs):
            schedule.set_base_lr(recipe.settings_from(epoch + 1).optim.lr)  # a change made by an earlier resume
            schedule.start_epoch(epoch)
            loader.sampler.set_epoch(epoch)
            stats = train_one_epoch(model, optimizer, loader, final, device, bad_log, epoch=epoch,
                                    progress=progress, forward=forward)
            schedule.end_epoch(stats.loss)
            row = _epoch_row(epoch, stats, schedule.lr, recipe, world)
            history.append(row)
            improved = stats.loss < best_loss
            best_loss = min(best_loss, stats.loss)
            if ctx.is_main:
                log(_epoch_summary(row))
                # The checkpoint first, then what describes it: an interruption in between leaves a
                # record of an epoch that was not kept, never one of an epoch that was. So a resume
                # interrupted before its first epoch is saved records nothing, not even its changes.
                state = _checkpoint_state(model, optimizer, schedule, epoch, best_loss, history, recipe)
                save_checkpoint(out / "checkpoints" / "last.pt", state, keep_previous=True)
                run.kept_epoch, run.saved_here = epoch + 1, True
                if improved:
                    save_checkpoint(out / "checkpoints" / "best.pt", state)
                _write_recipe(out, recipe)
                logger.log(epoch + 1, {f"loss/{k}": v for k, v in stats.losses.items()} |
                           {"lr": row["lr"], "clips_per_second": row["clips_per_second"], "bad_files": stats.bad_files})
    finally:
        if logger is not None:
            logger.close()
    run.finishing = True
    if restore_bn is not None:
        restore_bn()
    run_info = _distributed_info(model, ctx, per_process, sync_bn, log)
    # Rank 0 evaluates and writes; the others wait here for it (and fail with it if it fails).
    results = distributed.on_main(lambda: _finish(model, random_init, data, recipe, device, out, history,
                                                  wall_start, progress, log, run_info))
    return results if ctx.is_main else {"rank": ctx.rank, "world_size": world, "history": history}


def _distributed_info(model, ctx: distributed.DistContext, per_process: int, sync_bn: bool,
                      log: Callable[[str], None]) -> dict:
    """World size etc. for results.json; with several processes also a digest of every rank's
    parameters, which must agree (DDP keeps the replicas identical; a mismatch is a bug)."""
    if not ctx.distributed:
        return {"world_size": 1}
    digests = distributed.gather_objects(distributed.parameter_digest(dict(model.named_parameters())))
    agree = len(set(digests)) == 1
    if not agree:
        log("WARNING: the processes ended with different parameters; the saved model is rank 0's")
    return {"world_size": ctx.world_size, "backend": ctx.backend, "per_process_batch": per_process,
            "sync_bn": sync_bn, "replicas_agree": agree, "parameter_digests": digests}


def _clear_run(out: Path) -> None:
    """Remove the outputs of an earlier run in ``out`` (only what ``pretrain`` itself writes)."""
    for name in ("checkpoints", "logs", "model"):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in ("results.json", "recipe.yaml"):
        (out / name).unlink(missing_ok=True)


def _epoch_row(epoch: int, stats: EpochStats, lr: float, recipe: Recipe, world_size: int = 1) -> dict:
    clips = stats.videos * 2 * (1 + recipe.data.num_local)  # videos of all processes
    return {"epoch": epoch + 1, **{k: round(v, 5) for k, v in stats.losses.items()}, "lr": lr,
            "steps": stats.steps, "videos": stats.videos, "world_size": world_size,
            "seconds": round(stats.seconds, 2),
            "clips_per_second": round(clips / stats.seconds, 2) if stats.seconds else 0.0,
            "bad_files": stats.bad_files, "skipped_steps": stats.skipped_steps,
            "peak_gpu_memory_gb": stats.peak_gpu_memory_gb}


def _epoch_summary(row: dict) -> str:
    parts = " ".join(f"{k}={row[k]:.3f}" for k in LOSS_KEYS)
    bad = f", {row['bad_files']} bad files skipped" if row["bad_files"] else ""
    return (f"epoch {row['epoch']}: {parts} lr={row['lr']:.2e} {row['clips_per_second']:.1f} clips/s "
            f"({row['seconds']:.1f}s){bad}")


def _finish(model, random_init, data, run_recipe: Recipe, device, out: Path, history, wall_start, progress, log,
            run_info: dict | None = None) -> dict:
    """The closing evaluation, the saved model, and ``results.json`` (with ``recipe.yaml`` just before
    it, so that a finished run's record matches its checkpoint even if an earlier write was cut off)."""
    recipe = run_recipe.settings_from(None)  # the settings the run ended with
    results: dict = {"recipe": recipe.name, "arch": recipe.model.arch, "dataset": data.name, "split": data.split,
                     "epochs": len(history) and history[-1]["epoch"], "history": history,
                     "distributed": run_info or {"world_size": 1}}
    train_seconds = sum(r["seconds"] for r in history)
    clips = sum(r["videos"] for r in history) * 2 * (1 + recipe.data.num_local)
    results["clips_per_second"] = round(clips / train_seconds, 2) if train_seconds else 0.0
    results["bad_files"] = sum(r["bad_files"] for r in history)
    peaks = [r["peak_gpu_memory_gb"] for r in history if r.get("peak_gpu_memory_gb") is not None]
    results["peak_gpu_memory_gb"] = max(peaks) if peaks else None
    evaluation = []
    if recipe.eval.knn:
        trained = _knn(model, data, recipe, device, progress, log, "trained model")
        baseline = _knn(random_init.to(device), data, recipe, device, progress, log, "random init")
        results["knn_r1"], results["knn_r1_random_init"] = trained["R@1"], baseline["R@1"]
        results["knn"], results["knn_random_init"] = trained, baseline
        record = knn_record(recipe, data, trained, baseline)
        results["knn_protocol"] = {"protocol": "retrieval", "dataset": data.name, "split": data.split,
                                   **record["settings"]}
        evaluation.append(record)
        log(f"{protocol_text(record)}\n  R@1: trained {trained['R@1']:.3f}, random init {baseline['R@1']:.3f} "
            f"({trained['queries']} queries, {trained['gallery']} gallery)")
    config = model_config(model, arch=recipe.model.arch,
                          model_args=resolve_model_args(recipe.model.arch, recipe.model.model_args),
                          preprocessing=preprocessing_config(recipe),
                          extra={"training": {"recipe": recipe.name, "dataset": data.name, "split": data.split,
                                              "epochs": results["epochs"]},
                                 "evaluation": evaluation})
    model_dir = out / "model"
    card = render_model_card(config, model_id=f"{LOCAL_PREFIX}{model_dir.absolute()}")
    with staged_directory(model_dir) as staging:
        write_model_files(model.to("cpu").eval(), staging, config, card=card)
    results["wall_seconds"] = round(time.perf_counter() - wall_start, 2)
    results["versions"] = {"tclr_zoo": __version__, "torch": torch.__version__, "av": av.__version__}
    _write_recipe(out, run_recipe)
    atomic_write(out / "results.json", lambda f: f.write((json.dumps(results, indent=2) + "\n").encode()))
    log(f"saved model to {model_dir} and results to {out / 'results.json'} "
        f"(wall time {results['wall_seconds']:.0f}s)")
    return results


def knn_record(recipe: Recipe, data: RunData, trained: dict, baseline: dict) -> dict:
    """The closing kNN evaluation as an evaluation record (see ``protocols.evaluation_record``),
    with the randomly initialised network's recalls as its baseline."""
    e = recipe.eval
    recalls = [f"R@{k}" for k in e.ks]
    return {"protocol": "retrieval", "dataset": data.name, "split": data.split,
            "settings": {"clips": e.clips, "frames": e.frames, "stride": e.stride, "size": recipe.data.size,
                         "crop_fraction": e.crop_fraction, "pooling": "temporal"},
            "metrics": {k: trained[k] for k in recalls},
            "baseline": {"random_init": {k: baseline[k] for k in recalls}}}
