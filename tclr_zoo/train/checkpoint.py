"""Training checkpoints: what they hold, and files written atomically and checksummed. Reading one
(the envelope, its SHA-256, ``weights_only``) is ``hub/checkpoint.py``'s: a checkpoint is also a model
name, which commands that never train read.

What a pretraining checkpoint holds (:func:`training_state`): the epoch, the model, the optimiser,
the learning-rate schedule, the best loss and the history so far, torch's RNG state and the recipe,
so that :func:`restore_training_state` continues exactly where it stopped. A run folder keeps the
newest one as ``checkpoints/last.pt`` (and the one it replaced) and the lowest-loss one as
``checkpoints/best.pt``; :func:`read_last_checkpoint` finds the newest usable one of them.

A checkpoint holds only tensors, numbers, strings, lists and dicts, so it is read with
``weights_only=True`` (no pickled code can run). Writing goes to a temporary file in the same folder,
is flushed and fsync'ed, then renamed over the target: a crash leaves either the old or the new
file, never half. The state is stored serialised inside an envelope with its SHA-256, checked on
load, so a file damaged after it was written (a bad disk, a copy cut short) is refused instead of
resuming a run from garbage. ``save_checkpoint(..., keep_previous=True)`` keeps the file it replaces
as ``NAME.previous.pt``: ``resume_candidates`` then offers it when the newest one is unusable.

Fault injection for the crash tests: ``TCLR_ZOO_TEST_SLOW_WRITE=SECONDS`` sleeps after a file's
bytes are written (before it is renamed into place) and, with ``keep_previous``, again between moving
the old checkpoint aside and renaming the new one in, so a test can SIGKILL the process at both points.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..atomic import atomic_write, fault_injection_pause, remove_stale_siblings
from ..hub.checkpoint import FORMAT, CheckpointError, load_checkpoint

#: The run folder's checkpoints: the newest epoch's, and the one with the lowest training loss.
LAST_NAME = "last.pt"
BEST_NAME = "best.pt"


def previous_path(path: str | os.PathLike) -> Path:
    """Where ``save_checkpoint(path, keep_previous=True)`` keeps the file it replaced."""
    path = Path(path)
    return path.with_name(f"{path.stem}.previous{path.suffix}")


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any], *, keep_previous: bool = False) -> None:
    """Write ``state`` atomically with its SHA-256; with ``keep_previous`` the replaced file is kept
    as ``previous_path(path)`` (renamed, so at every instant one complete checkpoint exists)."""
    buffer = io.BytesIO()
    _save_interruptibly(state, buffer)
    payload = buffer.getbuffer()
    envelope = {"format": FORMAT, "sha256": hashlib.sha256(payload).hexdigest(),
                "payload": torch.frombuffer(payload, dtype=torch.uint8)}
    path = Path(path)

    def keep() -> None:
        if path.exists():
            os.replace(path, previous_path(path))
            fault_injection_pause()  # the crash tests' second kill point: between the two renames

    atomic_write(path, lambda f: _save_interruptibly(envelope, f), before_replace=keep if keep_previous else None)


def _save_interruptibly(obj: Any, file) -> None:
    """``torch.save``, except that a Ctrl-C in the middle stays a ``KeyboardInterrupt``: torch's zip
    writer, closed while unwinding, otherwise replaces it by ``RuntimeError: ... unexpected pos``, and
    the user would see a traceback where a stopped run should say what it kept."""
    try:
        torch.save(obj, file)
    except RuntimeError as err:
        if isinstance(err.__context__, KeyboardInterrupt):
            raise err.__context__ from None
        raise


def resume_candidates(path: str | os.PathLike) -> list[Path]:
    """Files to try when resuming from ``path``, newest first: it, then the one it replaced."""
    return [p for p in (Path(path), previous_path(path)) if p.exists()]


# --- what a pretraining checkpoint holds --------------------------------------------------------

def training_state(model, optimizer, schedule, *, epoch: int, best_loss: float, history: list, recipe) -> dict:
    """Everything a resumed run needs to compute what an uninterrupted one would have computed after
    ``epoch`` (0-based): the weights, the optimiser's moments, the schedule, torch's RNG state, and
    the recipe (with the changes resumes made) for the run's record."""
    return {"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "schedule": schedule.state_dict(), "best_loss": best_loss, "history": history,
            "torch_rng": torch.get_rng_state(), "recipe": recipe.to_dict(), "tclr_zoo": __version__}


def restore_training_state(state: dict, model, optimizer, schedule) -> tuple[int, float, list]:
    """Put a :func:`training_state` back; returns ``(first epoch to train, best loss, history)``."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    torch.set_rng_state(state["torch_rng"])
    return int(state["epoch"]) + 1, float(state["best_loss"]), list(state["history"])


def read_last_checkpoint(folder: str | os.PathLike, log) -> tuple[dict, Path]:
    """The newest usable checkpoint in ``folder``: ``last.pt``, or the one it replaced when ``last.pt``
    is missing (killed between two renames) or damaged; with the file it came from.

    First removes what writers killed meanwhile left (their temporary files), and moves a damaged
    file aside once a good one is found (else the next checkpoint would keep it as
    ``last.previous.pt``, in place of a good one); ``log`` says each. ``CheckpointError`` when none
    is usable, its message the problems found (or that none was written yet).
    """
    folder = Path(folder)
    for stale in (*remove_stale_siblings(folder / LAST_NAME), *remove_stale_siblings(folder / BEST_NAME)):
        log(f"removed {stale.name}, left by a process stopped while writing a checkpoint")
    problems, damaged = [], []
    for path in resume_candidates(folder / LAST_NAME):
        try:
            state = load_checkpoint(path)
        except CheckpointError as err:
            problems.append(str(err))
            damaged.append(path)
            log(f"cannot resume from {path.name}: {err}")
            continue
        for bad in damaged:
            bad.replace(bad.with_name(f"{bad.stem}.damaged{bad.suffix}"))
            log(f"moved the damaged {bad.name} aside to {bad.stem}.damaged{bad.suffix}")
        return state, path
    raise CheckpointError("; ".join(problems) if problems else "no checkpoint was written yet")


__all__ = ["BEST_NAME", "LAST_NAME", "previous_path", "read_last_checkpoint", "restore_training_state",
           "resume_candidates", "save_checkpoint", "training_state"]
