"""A pretraining run's folder: how a call starts, resumes or restarts the run in it, and what an
interruption left there.

A run folder holds (:class:`RunFolder`)::

    recipe.yaml            the recipe, with the changes resumes made (rewritten with each checkpoint)
    checkpoints/last.pt    the newest epoch (and last.previous.pt, the one it replaced)
    checkpoints/best.pt    the epoch with the lowest training loss
    logs/                  scalar logs, from the first checkpoint on
    model/, results.json   the saved model and the run's numbers, written when it ends

A call goes on in one of three ways (:func:`plan_start`): ``fresh`` (a new run; an earlier one is
replaced only with ``overwrite``), ``resume`` (continue from the newest usable checkpoint with the
recipe the run recorded) or ``restart`` (``--resume`` of a start stopped before its first
checkpoint: nothing was trained, so it starts again from epoch 1 in place). Every refusal comes
before anything is written, so no earlier checkpoint is lost by mistake. Under torchrun rank 0
reads and decides, and hands the result to the others (``runtime.on_main``).
"""

from __future__ import annotations

import json
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import yaml

from .. import runtime
from ..atomic import atomic_write, refuse_to_replace, remove_stale_siblings
from ..hub.checkpoint import CheckpointError
from .checkpoint import BEST_NAME, LAST_NAME, read_last_checkpoint, resume_candidates
from .config import Recipe, RecipeError, ResumeRequest, apply_override, load_recipe, recipe_from_dict, resume_changes


class RunFolder:
    """The files of the run folder ``root`` (see the module docstring)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.recipe, self.results = self.root / "recipe.yaml", self.root / "results.json"
        self.checkpoints, self.logs, self.model = self.root / "checkpoints", self.root / "logs", self.root / "model"
        self.last, self.best = self.checkpoints / LAST_NAME, self.checkpoints / BEST_NAME

    def write_recipe(self, recipe: Recipe) -> None:
        atomic_write(self.recipe, lambda f: f.write(yaml.safe_dump(recipe.to_dict(), sort_keys=False).encode()))

    def clear(self) -> None:
        """Remove the outputs of an earlier run (only what ``pretrain`` itself writes)."""
        for folder in (self.checkpoints, self.logs, self.model):
            shutil.rmtree(folder, ignore_errors=True)
        for file in (self.results, self.recipe):
            file.unlink(missing_ok=True)

    def set_up(self, recipe: Recipe, *, replace: bool) -> bool:
        """Once a start is accepted: empty the folder of an earlier run or an unfinished start
        (``replace``), create it and record the recipe. Returns whether the folder was created."""
        if replace:
            self.clear()
        created = not self.root.exists()
        self.root.mkdir(parents=True, exist_ok=True)
        self.write_recipe(recipe)
        return created

    def unfinished_start(self, *, clean: bool = False) -> bool:
        """Whether the folder holds only what a start writes before its first checkpoint:
        ``recipe.yaml`` and an empty ``checkpoints/`` (the scalar logs appear with the first
        checkpoint), or part of that. Such a folder holds nothing trained, so it is started again in
        place; anything else in it, a user's file say, stops that. ``clean``: first remove the
        temporary files of a writer killed meanwhile, as every write does."""
        if not self.root.is_dir():
            return False
        if clean:
            for target in (self.recipe, self.last, self.best):
                remove_stale_siblings(target)
        if {entry.name for entry in self.root.iterdir()} - {self.recipe.name, self.checkpoints.name}:
            return False
        ckpt = self.checkpoints
        return not ckpt.exists() or (ckpt.is_dir() and not any(ckpt.iterdir()))


def pretrain_command(*args: str | Path) -> str:
    """A pretrain command line to print in a hint, quoted so that it runs as printed."""
    return shlex.join(["tclr-zoo", "pretrain", *map(str, args)])


# --- what the folder holds so far (for the report of an interruption) ---------------------------

@dataclass
class RunProgress:
    """What the run folder holds so far, kept up to date while ``pretrain`` runs, for the report
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

    def after_interruption(self, folder: RunFolder) -> None:
        """Remove the run folder this call created if it is still empty, and note whether the folder
        holds an unfinished start, which ``--resume`` starts again (``recipe.yaml`` is kept for that)."""
        root = folder.root
        if self.created_folder and root.is_dir() and not any(root.iterdir()):
            root.rmdir()
        self.restartable = self.kept_epoch is None and folder.recipe.is_file() and folder.unfinished_start()


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (SIGINT) during ``pretrain``, carrying what the run folder kept (``progress``) so
    that the CLI can say it and print the command that goes on. Still a ``KeyboardInterrupt``: a
    library caller stops as before."""

    def __init__(self, out: Path, progress: RunProgress) -> None:
        super().__init__(f"{out}: interrupted; {progress.kept()}")
        self.out, self.progress = out, progress


# --- how this call goes on ----------------------------------------------------------------------

@dataclass
class Resumed:
    """What ``--resume`` continues: the checkpoint, the run's recipe with this resume's changes
    appended, and the finished run's results when there is nothing left to train."""

    state: dict
    source: Path
    recipe: Recipe
    done: int  # epochs in the checkpoint
    finished: dict | None = None


@dataclass
class Start:
    """How this call goes on in the folder: ``mode`` ("fresh", "resume" or "restart"), the recipe
    the run trains with, and for a resume what it continues."""

    mode: str
    recipe: Recipe
    resumed: Resumed | None = None


def plan_start(requested: Recipe | ResumeRequest, folder: RunFolder, device: torch.device, progress: RunProgress, *,
               resume: bool, overwrite: bool, log: Callable[[str], None]) -> Start:
    """Check the folder and decide how this call goes on, on rank 0 (the others get its answer);
    nothing is written. A resume reads its checkpoint here, before the data is prepared: a bad
    ``--resume`` fails in a second, and the checkpoint need not be on the other ranks' disks."""
    mode = runtime.on_main(lambda: check_run_folder(folder, resume, overwrite))
    progress.resuming = mode == "resume"
    if mode == "resume":
        resumed = runtime.on_main(lambda: read_resume(folder, requested, log))
        if resumed.finished is None:
            progress.kept_epoch = resumed.done
            check_resumed_device(resumed.recipe, device, folder)
        return Start(mode, resumed.recipe, resumed)
    if mode == "restart":
        return Start(mode, runtime.on_main(lambda: restart_recipe(folder, requested, log)))
    return Start(mode, requested)


def check_run_folder(folder: RunFolder, resume: bool, overwrite: bool) -> str:
    """Refuse what would lose files, before any work and before anything is created: a run resumed
    where there is none, a run replaced without ``--overwrite``, or a run started in a folder that
    holds other files. Returns how the run goes on: ``"resume"``, ``"fresh"``, or ``"restart"``."""
    out = folder.root
    has_run = bool(resume_candidates(folder.last))
    unfinished = not has_run and folder.unfinished_start(clean=True)
    if resume:
        if has_run:
            return "resume"
        if unfinished and folder.recipe.is_file():
            return "restart"
        raise RecipeError(f"--resume: {out} holds no run to continue (no checkpoints/last.pt); drop --resume to "
                          "start one there")
    if has_run and not overwrite:
        raise RecipeError(f"{out} already holds a run (to replace it: the same command with --overwrite; or choose "
                          f"another --out); to continue it: {pretrain_command('--out', out, '--resume')}")
    if not unfinished:
        refuse_to_replace(out, overwrite=overwrite, kind="folder")
    return "fresh"


def read_resume(folder: RunFolder, requested: Recipe | ResumeRequest, log: Callable[[str], None]) -> Resumed:
    """Read the newest usable checkpoint and decide what the resumed run is.

    The run keeps the recipe it was started with; of what the user asks now only the settings in
    ``config.RESUMABLE`` may differ, and each change is appended to the recipe's ``resumes``.
    """
    out = folder.root
    try:
        state, source = read_last_checkpoint(folder.checkpoints, log)
    except CheckpointError as err:
        again = (pretrain_command(folder.recipe, "--out", out, "--overwrite") if folder.recipe.is_file()
                 else "the command that started it, with --overwrite")
        raise RecipeError(f"--resume: no usable checkpoint in {folder.checkpoints} ({err}); start the run again: "
                          f"{again}") from None
    recipe = recipe_from_dict(state["recipe"], f"{source} (recipe)")
    done = int(state["epoch"]) + 1
    wanted = requested.applied_to(recipe, str(out)) if isinstance(requested, ResumeRequest) else requested
    changes = resume_changes(recipe, wanted)
    if changes:
        recipe.resumes.append({"epoch": done + 1, "set": {k: new for k, (_, new) in changes.items()},
                               "was": {k: old for k, (old, _) in changes.items()}})
        log("changed for this resume: " + ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changes.items()))
    epochs = recipe.settings_from(None).train.epochs
    if done >= epochs and folder.results.is_file():  # finished, and its evaluation and model were written
        longer = pretrain_command("--out", out, "--resume", "--set", f"train.epochs={2 * done}")
        log(f"{out}: the run already trained {done} epoch{'s' if done != 1 else ''} (train.epochs={epochs}); nothing "
            f"to do, nothing changed. To train longer, give the new total, e.g.: {longer}")
        return Resumed(state, source, recipe, done, finished=json.loads(folder.results.read_text()))
    return Resumed(state, source, recipe, done)


def restart_recipe(folder: RunFolder, requested: Recipe | ResumeRequest, log: Callable[[str], None]) -> Recipe:
    """``--resume`` of a start stopped before its first checkpoint: nothing was trained, so the run
    starts again from epoch 1 with the recipe it recorded, as ``pretrain OUT/recipe.yaml --set ...``
    would (a library caller's full ``Recipe`` is used as it is)."""
    out = folder.root
    if not isinstance(requested, ResumeRequest):
        log(f"{out}: the run was stopped before its first checkpoint; starting it again from epoch 1")
        return requested
    recipe = load_recipe(str(folder.recipe), list(requested.overrides))
    requested.check_recipe_name(recipe, str(out))
    log(f"{out}: the run was stopped before its first checkpoint; starting it again from epoch 1 with its "
        "recorded recipe")
    return recipe


# --- the device a run joins on ------------------------------------------------------------------

def session_device(requested: Recipe | ResumeRequest, folder: RunFolder) -> torch.device:
    """The device to join the run on. A resume knows its recipe only once rank 0 has read the
    checkpoint, after the process group exists; ``train.device`` cannot change on resume, so the one
    ``OUT/recipe.yaml`` records serves (or the request's own ``--set train.device``), checked against
    the checkpoint's recipe once it is read (:func:`check_resumed_device`)."""
    if isinstance(requested, Recipe):
        return runtime.resolve_device(requested.train.device, setting="train.device")
    probe = Recipe()
    probe.train.device = _recorded_device(folder)
    for item in requested.overrides:
        apply_override(probe, item)
    return runtime.resolve_device(probe.train.device, setting="train.device")


def _recorded_device(folder: RunFolder) -> str:
    try:
        device = (yaml.safe_load(folder.recipe.read_text()) or {}).get("train", {}).get("device", "auto")
    except (OSError, yaml.YAMLError, AttributeError):
        return "auto"
    return device if isinstance(device, str) else "auto"


def check_resumed_device(recipe: Recipe, device: torch.device, folder: RunFolder) -> None:
    if runtime.resolve_device(recipe.train.device, setting="train.device").type != device.type:
        raise RecipeError(f"--resume: the run in {folder.root} trains with train.device={recipe.train.device!r}, not "
                          f"on {device.type} as {folder.recipe} said; add --set train.device={recipe.train.device}")


__all__ = ["Resumed", "RunFolder", "RunInterrupted", "RunProgress", "Start", "check_resumed_device",
           "check_run_folder", "plan_start", "pretrain_command", "read_resume", "restart_recipe", "session_device"]
