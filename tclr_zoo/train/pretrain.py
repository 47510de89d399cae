"""TCLR pretraining, end to end: :func:`pretrain` runs a recipe in a run folder and returns its numbers.

A run (:class:`PretrainRun`) builds the model, optimiser, schedule and loader from its recipe
(restoring a checkpoint when it resumes), trains the epochs (:mod:`.epoch`), saves a checkpoint
after each (:mod:`.checkpoint`), and ends with the paper's kNN evaluation of the trained and the
randomly initialised network, the saved model and ``results.json``. How a call starts, resumes or
restarts the run in its folder, and what Ctrl-C reports, is :mod:`.resume`'s.

Everything random is seeded from the recipe's seed and the epoch, so on CPU a run resumed from a
checkpoint computes the same losses as an uninterrupted one. ``train.compile`` compiles the forward.

Under ``torchrun`` the same function runs once per process: see distributed.py for what is shared
(global batch, gathered losses, DDP gradients); only rank 0 logs, evaluates and writes files.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import sys
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

import av
import torch
from torch.utils.data import DataLoader

from .. import __version__, runtime  # tclr_zoo.runtime; .runtime (the step's settings) by name below
from ..atomic import atomic_write, exclusive_output, staged_directory
from ..constants import LOCAL_PREFIX
from ..data.datasets import BadFileLog
from ..hub.card import protocol_text, render_model_card
from ..hub.format import model_config, write_model_files
from ..models.registry import create_model, resolve_model_args
from . import distributed
from .checkpoint import restore_training_state, save_checkpoint, training_state
from .config import Recipe, RecipeError, ResumeRequest, preprocessing_config, reference_numbers
from .epoch import (
    EpochStats,
    RunData,
    build_dataset,
    epoch_row,
    epoch_summary,
    prepare_data,
    pretrain_loader,
    train_one_epoch,
    worker_count,
)
from .evaluate import knn_retrieval
from .resume import Resumed, RunFolder, RunInterrupted, RunProgress, plan_start, session_device
from .runtime import configure_model, seed_everything
from .scalars import ScalarLogger
from .schedule import WarmupPlateauSchedule


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

    Started by ``torchrun`` it joins the process group (``tclr_zoo.runtime``); rank 0 logs, writes and
    returns the results, the other ranks stay silent and return ``{"rank", "world_size", "history"}``.
    """
    if isinstance(recipe, ResumeRequest) and not resume:
        raise ValueError("a ResumeRequest continues a run: pass resume=True")
    folder, kept, main = RunFolder(Path(out_dir)), RunProgress(), True
    try:
        with runtime.session(session_device(recipe, folder)) as ctx, contextlib.ExitStack() as held:
            main = ctx.is_main
            if not main:
                progress, log = False, _silent
            # One writer per run folder: rank 0 holds its lock for the whole run; a second run is refused
            # (on every rank) before anything is read or written.
            runtime.on_main(lambda: held.enter_context(exclusive_output(folder.root)))
            try:
                return _run(recipe, folder, ctx, kept, resume=resume, overwrite=overwrite, progress=progress, log=log)
            except BaseException as err:
                if main and _ctrl_c(err):
                    kept.after_interruption(folder)  # while the folder is still locked
                raise
    except BaseException as err:
        if not main or not _ctrl_c(err):
            raise
        raise RunInterrupted(folder.root, kept) from None


def _run(requested: Recipe | ResumeRequest, folder: RunFolder, ctx: runtime.DistContext, kept: RunProgress, *,
         resume: bool, overwrite: bool, progress: bool, log: Callable[[str], None]) -> dict:
    wall_start = time.perf_counter()
    # Everything is checked before anything is written: a refused start leaves no run folder behind.
    start = plan_start(requested, folder, ctx.device, kept, resume=resume, overwrite=overwrite, log=log)
    if start.resumed is not None and start.resumed.finished is not None:
        return start.resumed.finished if ctx.is_main else {"rank": ctx.rank, "world_size": ctx.world_size,
                                                           "history": []}
    run = PretrainRun.build(start.recipe, folder, ctx, kept, start.resumed, progress=progress, log=log,
                            wall_start=wall_start)
    start.resumed = None  # the checkpoint's tensors are in the model and optimizer now
    if start.mode != "resume":  # the start is accepted: only now is the run folder created (or emptied)
        replace = overwrite or start.mode == "restart"
        kept.created_folder = runtime.on_main(lambda: folder.set_up(start.recipe, replace=replace))
    run.train()
    return run.finish()


def _ctrl_c(err: BaseException) -> bool:
    """A ``KeyboardInterrupt``, or an error that code cleaning up after one raised in its place (a
    library's writer closed half-way): either way the user stopped the run."""
    while err is not None:
        if isinstance(err, KeyboardInterrupt):
            return True
        err = err.__context__
    return False


def _silent(_message: str) -> None:
    pass


@dataclass
class PretrainRun:
    """One process's part of one pretraining run: what it trains, with what, and where it writes.

    ``recipe`` is the run's record: the settings it started with and the changes resumes made
    (``recipe.resumes``); :attr:`final` is the settings it ends with (its length, data location,
    evaluation). Build one with :meth:`build`, then :meth:`train` and :meth:`finish`.
    """

    recipe: Recipe
    folder: RunFolder
    ctx: runtime.DistContext
    kept: RunProgress  # what the folder holds so far, for the report of an interruption
    data: RunData
    model: Any  # TCLRModel
    random_init: Any  # the same network at initialisation, the kNN baseline (rank 0 only, else None)
    optimizer: torch.optim.Optimizer
    schedule: WarmupPlateauSchedule
    forward: Callable  # the pretraining forward: DDP's wrapper with several processes, maybe compiled
    loader: DataLoader
    workers: int
    sync_bn: bool
    restore_bn: Callable[[], None] | None  # puts plain BatchNorm back after SyncBatchNorm training
    progress: bool
    log: Callable[[str], None]
    start_epoch: int = 0
    best_loss: float = math.inf
    history: list[dict] = field(default_factory=list)
    wall_start: float = field(default_factory=time.perf_counter)

    @cached_property
    def final(self) -> Recipe:
        """The settings the run ends with: every resume change applied."""
        return self.recipe.settings_from(None)

    @property
    def device(self) -> torch.device:
        return self.ctx.device

    @classmethod
    def build(cls, recipe: Recipe, folder: RunFolder, ctx: runtime.DistContext, kept: RunProgress,
              resumed: Resumed | None, *, progress: bool, log: Callable[[str], None],
              wall_start: float) -> PretrainRun:
        """Everything the run needs, in the order that fixes its random numbers (seed, model
        initialisation, then a resumed checkpoint's RNG state); nothing is written yet."""
        device, world = ctx.device, ctx.world_size
        distributed.per_process_batch(recipe.train.batch_size, world)  # a batch that cannot split: refused now
        sync_bn = distributed.use_sync_bn(recipe, world, device)
        final = recipe.settings_from(None)
        kept.epochs = final.train.epochs
        data = prepare_data(final, progress)
        seed_everything(recipe.train.seed)
        model_args = resolve_model_args(recipe.model.arch, recipe.model.model_args)
        model = create_model(recipe.model.arch, model_args=model_args, head_dim=recipe.model.head_dim,
                             bn_mode=recipe.model.bn_mode)
        _check_time_steps(recipe, model)
        random_init = copy.deepcopy(model) if ctx.is_main else None
        configure_model(model, recipe, device)
        o = recipe.optim
        optimizer = torch.optim.Adam(model.parameters(), lr=o.lr, weight_decay=o.weight_decay)
        schedule = WarmupPlateauSchedule(optimizer, o.lr, o.warmup, o.plateau_patience, o.plateau_factor)
        start_epoch, best_loss, history = 0, math.inf, []
        if resumed is not None:
            start_epoch, best_loss, history = restore_training_state(resumed.state, model, optimizer, schedule)
            log(f"resumed from {resumed.source} at epoch {start_epoch + 1}")
        restore_bn = distributed.convert_sync_bn(model) if sync_bn else None
        forward = distributed.pretraining_forward(model)
        if recipe.train.compile:
            forward = torch.compile(forward)  # compiled on the first step (bench/gpu.sh, P8, times it)
        workers = worker_count(final, log, ctx.local_world_size)
        loader = pretrain_loader(build_dataset(recipe, data.train, device), recipe, device, workers, rank=ctx.rank,
                                 world_size=world)
        return cls(recipe=recipe, folder=folder, ctx=ctx, kept=kept, data=data, model=model, random_init=random_init,
                   optimizer=optimizer, schedule=schedule, forward=forward, loader=loader, workers=workers,
                   sync_bn=sync_bn, restore_bn=restore_bn, progress=progress, log=log, start_epoch=start_epoch,
                   best_loss=best_loss, history=history, wall_start=wall_start)

    # --- training -------------------------------------------------------------------------------

    def train(self) -> None:
        """Train the epochs left, saving a checkpoint after each (rank 0)."""
        logger = ScalarLogger(self.folder.logs) if self.ctx.is_main else None  # files appear at the first log
        bad_log = BadFileLog(self.log)
        self.log(self._summary())
        try:
            for epoch in range(self.start_epoch, self.final.train.epochs):
                stats = self._train_epoch(epoch, bad_log)
                improved = stats.loss < self.best_loss
                self.best_loss = min(self.best_loss, stats.loss)
                if self.ctx.is_main:
                    self._keep(epoch, stats, logger, improved=improved)
        finally:
            if logger is not None:
                logger.close()

    def _summary(self) -> str:
        recipe, ctx, world = self.recipe, self.ctx, self.ctx.world_size
        per_process = distributed.per_process_batch(recipe.train.batch_size, world)
        processes = "" if world == 1 else f" ({world} processes x {per_process}, {ctx.backend})"
        return (f"pretraining {recipe.model.arch} on {self.data.name}: {len(self.data.train)} videos, device "
                f"{self.device}, batch {recipe.train.batch_size}{processes}, epochs {self.start_epoch + 1}.."
                f"{self.final.train.epochs}, {self.workers} loader workers, augmentation on the "
                f"{self.loader.dataset.augment_on}{', compiled forward' if recipe.train.compile else ''}")

    def _train_epoch(self, epoch: int, bad_log: BadFileLog) -> EpochStats:
        """One epoch at the learning rate in force from it on; its row is appended to the history."""
        self.schedule.set_base_lr(self.recipe.settings_from(epoch + 1).optim.lr)  # a change made by a resume
        self.schedule.start_epoch(epoch)
        self.loader.sampler.set_epoch(epoch)
        stats = train_one_epoch(self.model, self.optimizer, self.loader, self.final, self.device, bad_log,
                                epoch=epoch, progress=self.progress, forward=self.forward)
        self.schedule.end_epoch(stats.loss)
        self.history.append(epoch_row(epoch, stats, self.schedule.lr, self.recipe, self.ctx.world_size))
        return stats

    def _keep(self, epoch: int, stats: EpochStats, logger: ScalarLogger, *, improved: bool) -> None:
        """Rank 0, after each epoch: log it, save the checkpoint, then what describes it.

        The checkpoint first: an interruption in between leaves a record of an epoch that was not
        kept, never one of an epoch that was. So a resume interrupted before its first epoch is saved
        records nothing, not even its changes.
        """
        row = self.history[-1]
        self.log(epoch_summary(row))
        state = training_state(self.model, self.optimizer, self.schedule, epoch=epoch, best_loss=self.best_loss,
                               history=self.history, recipe=self.recipe)
        save_checkpoint(self.folder.last, state, keep_previous=True)
        self.kept.kept_epoch, self.kept.saved_here = epoch + 1, True
        if improved:
            save_checkpoint(self.folder.best, state)
        self.folder.write_recipe(self.recipe)
        logger.log(epoch + 1, {f"loss/{k}": v for k, v in stats.losses.items()} |
                   {"lr": row["lr"], "clips_per_second": row["clips_per_second"], "bad_files": stats.bad_files})

    # --- the end --------------------------------------------------------------------------------

    def finish(self) -> dict:
        """Rank 0 evaluates and writes the model and results; the others wait for it (and fail with
        it if it fails). Returns the results on rank 0, the rank's history elsewhere."""
        self.kept.finishing = True
        if self.restore_bn is not None:
            self.restore_bn()
        run_info = self._distributed_info()
        results = runtime.on_main(lambda: self._evaluate_and_save(run_info))
        if self.ctx.is_main:
            return results
        return {"rank": self.ctx.rank, "world_size": self.ctx.world_size, "history": self.history}

    def _distributed_info(self) -> dict:
        """World size etc. for results.json; with several processes also a digest of every rank's
        parameters, which must agree (DDP keeps the replicas identical; a mismatch is a bug)."""
        ctx = self.ctx
        if not ctx.distributed:
            return {"world_size": 1}
        digests = runtime.gather_objects(distributed.parameter_digest(dict(self.model.named_parameters())))
        agree = len(set(digests)) == 1
        if not agree:
            self.log("WARNING: the processes ended with different parameters; the saved model is rank 0's")
        return {"world_size": ctx.world_size, "backend": ctx.backend,
                "per_process_batch": distributed.per_process_batch(self.recipe.train.batch_size, ctx.world_size),
                "sync_bn": self.sync_bn, "replicas_agree": agree, "parameter_digests": digests}

    def _evaluate_and_save(self, run_info: dict) -> dict:
        """The closing evaluation, the saved model, and ``results.json`` (with ``recipe.yaml`` just before
        it, so that a finished run's record matches its checkpoint even if an earlier write was cut off)."""
        results = self._training_results(run_info)
        evaluation = self._closing_knn(results) if self.final.eval.knn else []
        model_dir = self._save_model(evaluation, results["epochs"])
        results["wall_seconds"] = round(time.perf_counter() - self.wall_start, 2)
        results["versions"] = {"tclr_zoo": __version__, "torch": torch.__version__, "av": av.__version__}
        self.folder.write_recipe(self.recipe)
        results_file = self.folder.results
        atomic_write(results_file, lambda f: f.write((json.dumps(results, indent=2) + "\n").encode()))
        self.log(f"saved model to {model_dir} and results to {results_file} "
                 f"(wall time {results['wall_seconds']:.0f}s)")
        return results

    def _training_results(self, run_info: dict) -> dict:
        final, data, history = self.final, self.data, self.history
        results: dict = {"recipe": final.name, "arch": final.model.arch, "dataset": data.name, "split": data.split,
                         "epochs": len(history) and history[-1]["epoch"], "history": history,
                         "distributed": run_info}
        train_seconds = sum(r["seconds"] for r in history)
        clips = sum(r["videos"] for r in history) * 2 * (1 + final.data.num_local)
        results["clips_per_second"] = round(clips / train_seconds, 2) if train_seconds else 0.0
        results["bad_files"] = sum(r["bad_files"] for r in history)
        peaks = [r["peak_gpu_memory_gb"] for r in history if r.get("peak_gpu_memory_gb") is not None]
        results["peak_gpu_memory_gb"] = max(peaks) if peaks else None
        return results

    def _closing_knn(self, results: dict) -> list[dict]:
        """The paper's kNN retrieval of the trained and the randomly initialised network, into
        ``results``; returns the evaluation records for ``config.json``."""
        final, data = self.final, self.data
        trained = self._knn(self.model, "trained model")
        baseline = self._knn(self.random_init.to(self.device), "random init")
        results["knn_r1"], results["knn_r1_random_init"] = trained["R@1"], baseline["R@1"]
        results["knn"], results["knn_random_init"] = trained, baseline
        record = knn_record(final, data, trained, baseline)
        results["knn_protocol"] = {"protocol": "retrieval", "dataset": data.name, "split": data.split,
                                   **record["settings"]}
        self.log(f"{protocol_text(record)}\n  R@1: trained {trained['R@1']:.3f}, random init {baseline['R@1']:.3f} "
                 f"({trained['queries']} queries, {trained['gallery']} gallery)")
        return [record]

    def _knn(self, model, which: str) -> dict:
        """The closing kNN evaluation of one network (``which``: "trained model" or "random init").

        It takes minutes on a CPU, so it says what it embeds; with progress on and the output not a
        terminal (``make demo`` into a pipe or a log file, where tqdm stays silent) it also logs how far
        it got, so a log never goes quiet for minutes.
        """
        e, d, data = self.final.eval, self.final.data, self.data
        self.log(f"kNN evaluation: embedding {len(data.train) + len(data.test)} videos ({len(data.train)} gallery, "
                 f"{len(data.test)} queries, {e.clips} clips each), {which}...")
        lines = self.log if self.progress and not sys.stdout.isatty() else None
        return knn_retrieval(model, data.train, data.test, ks=e.ks, device=self.device, batch_size=e.batch_size,
                             workers=min(d.workers, 2, runtime.cpu_share()), progress=self.progress, clips=e.clips,
                             frames=e.frames, stride=e.stride, size=d.size, crop_fraction=e.crop_fraction,
                             channel_order=d.channel_order, mean=d.mean, std=d.std, log=lines)

    def _save_model(self, evaluation: list[dict], epochs: int) -> Path:
        """The trained network in the saved-model layout, its config recording how it was trained, the
        recipe's reference numbers (so its card never needs the recipe) and its evaluation."""
        final, data = self.final, self.data
        training = {"recipe": final.name, "dataset": data.name, "split": data.split, "epochs": epochs,
                    "reference": reference_numbers(final.reference)}
        config = model_config(self.model, arch=final.model.arch,
                              model_args=resolve_model_args(final.model.arch, final.model.model_args),
                              preprocessing=preprocessing_config(final),
                              extra={"training": training, "evaluation": evaluation})
        model_dir = self.folder.model
        card = render_model_card(config, model_id=f"{LOCAL_PREFIX}{model_dir.absolute()}")
        with staged_directory(model_dir) as staging:
            write_model_files(self.model.to("cpu").eval(), staging, config, card=card)
        return model_dir


def _check_time_steps(recipe: Recipe, model) -> None:
    """The global-local loss pairs each time-step of the global clip's feature map with one local clip."""
    steps = recipe.data.frames // model.temporal_downsampling
    if steps != recipe.data.num_local:
        raise RecipeError(f"{recipe.model.arch} turns data.frames={recipe.data.frames} into {steps} time-steps, but "
                          f"the global-local loss needs one per local clip (data.num_local={recipe.data.num_local}); "
                          f"use data.frames={recipe.data.num_local * model.temporal_downsampling} or "
                          f"data.num_local={steps}")


def knn_record(recipe: Recipe, data: RunData, trained: dict, baseline: dict) -> dict:
    """The closing kNN evaluation as an evaluation record (see ``protocols.evaluation_record``),
    with the randomly initialised network's recalls as its baseline."""
    e = recipe.eval
    recalls = [f"R@{k}" for k in e.ks]
    return {"protocol": "retrieval", "dataset": data.name, "split": data.split,
            "settings": {"clips": e.clips, "frames": e.frames, "stride": e.stride, "size": recipe.data.size,
                         "crop_fraction": e.crop_fraction, "head": "retrieval"},
            "metrics": {k: trained[k] for k in recalls},
            "baseline": {"random_init": {k: baseline[k] for k in recalls}}}


__all__ = ["PretrainRun", "RunInterrupted", "knn_record", "pretrain"]
