"""``embed`` and ``index build`` under ``torchrun``: every process embeds its share of the videos
and writes it unit by unit; rank 0 merges the units into the one output a single process writes.

``torchrun --nproc_per_node N -m tclr_zoo.cli embed ...`` starts N copies of the command. Each joins
the process group (``train.distributed.session``: gloo on CPU, NCCL on ``cuda:LOCAL_RANK``), loads
the model on its device and embeds the units ``inference.shards`` assigns it, into a hidden
sibling of ``--out`` (``.OUT.shards``). When all are done, rank 0 reads the units in order, writes
``--out`` atomically and removes the shard folder. An interrupted run continues with ``--resume``,
with any number of processes: finished units are kept. The shard folder must be on a file system
that every process (every node) can reach, as ``--out`` must. Rank 0 holds ``--out``'s writer lock
for the whole job, taken before any rank loads the model: a second run into the same output is
refused at once, on every rank.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import click

from ..constants import SHARD_VIDEOS
from .options import exclusive_outputs, load_for_inference

#: ``finish(model, units, skipped)`` on rank 0: write the output and return what to report.
Finish = Callable[[Any, list, list], Any]


def under_torchrun() -> bool:
    """Whether torchrun started this process: the variables pretraining reads (``train.distributed``)."""
    from ..train.distributed import torchrun_env

    return torchrun_env() is not None


def shard_folder(out: str | os.PathLike) -> Path:
    """Where a torchrun run keeps its finished units: a hidden sibling of ``--out``."""
    out = Path(out)
    return out.with_name(f".{out.name}.shards")


def check_shard_folder(out: str | os.PathLike, *, resume: bool, overwrite: bool) -> None:
    """Before any work: units an interrupted run left are neither lost nor silently reused, and
    ``--resume`` with nothing to continue says so instead of silently starting afresh."""
    from ..inference.shards import JOB_NAME

    folder = shard_folder(out)
    if folder.exists() and not (resume or overwrite):
        raise FileExistsError(f"{out}: an interrupted torchrun run left its finished units in {folder}; pass "
                              "--resume to continue it or --overwrite to start afresh")
    if resume and not (folder / JOB_NAME).is_file():
        fix = "pass --overwrite instead to start afresh" if folder.exists() else "drop --resume to start one"
        raise FileNotFoundError(f"--resume: {out} has no interrupted torchrun run to continue (no {JOB_NAME} in "
                                f"{folder}); {fix}")


def refuse_resume_without_torchrun(resume: bool) -> None:
    """``embed --resume`` outside torchrun would silently do nothing: say what it is for instead."""
    if resume and not under_torchrun():
        raise click.UsageError("--resume continues a run started under torchrun (its units in .OUT.shards); "
                               "a single-process embed writes --out once, at the end. For a resumable run on one "
                               "GPU or CPU, start it with: torchrun --nproc_per_node 1 -m tclr_zoo.cli embed ...")


@dataclass(frozen=True)
class ShardedRun:
    """What one sharded command makes: the rows of ``head`` (per window with ``windows``) into ``out``."""

    command: str  # "embed" or "index build": part of the job, so one cannot resume the other
    out: str
    head: str
    windows: bool = False
    resume: bool = False
    overwrite: bool = False
    unit_videos: int = SHARD_VIDEOS
    sidecar: str | None = None  # embed's FILE.json beside FILE.npy, written (and locked) with ``out``


def run_sharded(model_name: str, paths: list[str], run: ShardedRun, finish: Finish, *, check: Callable[[], None],
                backend: str, device: str | None, precision: str, batch_size: int, workers: int | None,
                progress: bool, skip_bad: bool) -> tuple[Any, bool]:
    """Embed ``paths`` over torchrun's processes and merge on rank 0; returns ``(what finish returned,
    whether this process is rank 0)``. Only rank 0 shows progress (of its own units).

    Before any rank loads the model, rank 0 takes the outputs' writer locks (held to the end) and
    runs ``check`` (may the outputs be written?); a refusal stops every rank with the same error."""
    from ..inference.shards import ShardPlan, UnitStore, embed_units
    from ..train import distributed
    from ..train.runtime import resolve_device

    with distributed.session(resolve_device(device or "auto")) as ctx, contextlib.ExitStack() as held:
        distributed.on_main(lambda: _claim(held, run, check))
        loaded = load_for_inference(model_name, backend, str(ctx.device), precision)
        plan = ShardPlan(len(paths), run.unit_videos)
        store = UnitStore(shard_folder(run.out), _job(run, loaded, paths, backend, precision))
        distributed.on_main(lambda: _open(store, run))
        embed_units(loaded, paths, plan, store, plan.units_of(ctx.rank, ctx.world_size), part=_part_maker(run, paths),
                    head=run.head, batch_size=batch_size, progress=progress and ctx.is_main, skip_bad=skip_bad,
                    workers=workers)
        distributed.barrier()
        return distributed.on_main(lambda: _merge(store, plan, loaded, finish)), ctx.is_main


def _claim(held: contextlib.ExitStack, run: ShardedRun, check: Callable[[], None]) -> None:
    """Rank 0, first thing: hold the outputs' writer locks for the whole job (``held``), then make,
    under them, the command's ``check`` that its outputs may be written, and check that the units an
    earlier run left are neither lost nor silently reused."""
    held.enter_context(exclusive_outputs(run.out, run.sidecar))
    check()
    check_shard_folder(run.out, resume=run.resume, overwrite=run.overwrite)


def _job(run: ShardedRun, model: Any, paths: list[str], backend: str, precision: str) -> dict[str, Any]:
    """What the units' rows are: a resume must match every field."""
    from ..inference.shards import paths_digest

    return {"command": run.command, "model_id": model.model_id, "revision": model.revision, "head": run.head,
            "windows": run.windows, "backend": backend, "precision": precision, "videos": len(paths),
            "paths_sha256": paths_digest(paths), "unit_videos": run.unit_videos}


def _open(store, run: ShardedRun) -> None:
    """Rank 0, before any rank writes: start afresh (``--overwrite``) or check the units to resume."""
    if store.folder.exists() and not run.resume:
        shutil.rmtree(store.folder)
    found = store.open(resume=run.resume)
    if found:
        click.echo(f"resuming: {found} finished units in {store.folder}", err=True)


def _part_maker(run: ShardedRun, paths: list[str]):
    """One video's rows as a one-process ``embed`` / ``index build`` makes them (ids are the paths)."""
    from ..retrieval.index import video_part, windows_part

    if run.windows:
        return lambda i, wins, out: windows_part(wins, out, paths[i], paths[i], run.head)
    return lambda i, wins, out: video_part(out, paths[i], paths[i], run.head)


def _merge(store, plan, model: Any, finish: Finish) -> Any:
    """Rank 0: every unit in order -> ``finish`` writes the output; then the shard folder goes."""
    units, skipped = store.merged(plan)
    result = finish(model, units, skipped)
    shutil.rmtree(store.folder, ignore_errors=True)
    return result


#: The options ``embed`` and ``index build`` take for torchrun runs.
SHARD_VIDEOS_OPTION = click.option(
    "--shard-videos", type=click.IntRange(min=1), default=SHARD_VIDEOS, show_default=True,
    help="Under torchrun: videos per unit, the block a process embeds and saves in one file (what an "
         "interruption can cost, per process). Keep it when resuming.")

__all__ = ["SHARD_VIDEOS_OPTION", "ShardedRun", "check_shard_folder", "refuse_resume_without_torchrun", "run_sharded", "shard_folder",
           "under_torchrun"]
