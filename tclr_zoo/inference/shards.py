"""The unit store: a long embedding job's rows, kept in fixed blocks of videos, one file per block,
so that a job cut short continues where it stopped -- in one process or split over many (``torchrun``)
-- and merges into exactly what one uninterrupted process would have written.

* A *unit* is a contiguous block of ``unit_videos`` videos of the input list, in input order. Unit
  ``u`` belongs to rank ``u % world_size``: round-robin, so a slow stretch of the list (long videos
  in one folder) is spread over all ranks. Units depend on the list and ``unit_videos`` only, never
  on the number of processes, so a resumed job may use another number of GPUs or nodes (one
  process is world size 1).
* Each finished unit is written atomically to ``unit-NNNNNN.safetensors`` in the store's folder, a
  hidden sibling of the job's output (``.OUT.shards``, :func:`shard_folder`): its rows (float32
  ``[r, D]``) plus, in the metadata, each row's id, path and window times and the unit's skipped
  videos (:class:`~.loader.Skipped` records). A unit file that exists is complete; resuming skips it.
  The last unit of the process that merges stays in memory: the output is written right after it,
  so a file would only be deleted again (a job of one unit writes no unit file at all).
* ``job.json`` in the folder, written with the first unit file, records what the rows are (the
  model's identity -- its weights and preprocessing, whatever folder it was loaded from -- head,
  precision, the list's sha256, ...); a resume with other settings is refused instead of mixing rows.
* Merging reads the units in order, so ids, order and vectors are those of a one-process run.

One pass of the model covers all of a process's units (decode workers start once, see
``VideoModel.video_outputs``); a unit is written as soon as its last video is out.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from ..atomic import atomic_write, save_safetensors
from ..constants import SHARD_VIDEOS as UNIT_VIDEOS  # a million videos are ~4000 unit files
from .loader import Skipped

JOB_NAME = "job.json"
#: The columns of a unit beside its rows (``VideoIndex``'s columns).
COLUMNS = ("ids", "paths", "starts", "ends")

#: ``part(position, windows, outputs)`` -> the rows of one video: a dict with ``embeddings``
#: ``[r, D]`` and the lists ``ids``, ``paths``, ``starts``, ``ends`` (:data:`COLUMNS`).
PartMaker = Callable[[int, list, torch.Tensor], dict[str, Any]]

#: How the caller's user spells the options the store's messages name (the CLI: ``--resume``).
PYTHON_SPELLING = {"resume": "resume=True", "overwrite": "overwrite=True"}


class ShardError(ValueError):
    """A unit folder that cannot be used for this job (other settings, a damaged unit file)."""


@dataclass(frozen=True)
class ShardPlan:
    """Which videos each unit holds and which rank embeds it."""

    count: int  # videos in the input list
    unit_videos: int = UNIT_VIDEOS

    def __post_init__(self) -> None:
        if self.unit_videos < 1:
            raise ValueError(f"unit_videos must be >= 1, got {self.unit_videos}")

    @property
    def units(self) -> int:
        return -(-self.count // self.unit_videos)

    def videos(self, unit: int) -> range:
        """Positions (in the input list) of the videos of ``unit``."""
        start = unit * self.unit_videos
        return range(start, min(start + self.unit_videos, self.count))

    def units_of(self, rank: int, world_size: int) -> list[int]:
        """The units ``rank`` embeds: every ``world_size``-th, starting at ``rank``."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        return list(range(rank, self.units, world_size))


def paths_digest(paths: Sequence[str]) -> str:
    """sha256 of the input list, in order: a resume must see the same videos in the same order. Names
    are hashed as the file system's bytes (``os.fsencode``): a file name need not be valid UTF-8."""
    return hashlib.sha256(b"\n".join(os.fsencode(p) for p in paths)).hexdigest()


def shard_folder(out: str | os.PathLike) -> Path:
    """Where a job writing ``out`` keeps its finished units: a hidden sibling, ``.OUT.shards``."""
    out = Path(out)
    return out.with_name(f".{out.name}.shards")


def check_shard_folder(out: str | os.PathLike, *, resume: bool, overwrite: bool,
                       spelling: Mapping[str, str] = PYTHON_SPELLING) -> None:
    """Before any work: units an interrupted job left are neither lost nor silently reused, and
    ``resume`` with nothing to continue says so instead of silently starting afresh. A folder with
    no finished unit in it holds nothing to lose: a job started without ``resume`` replaces it."""
    folder = shard_folder(out)
    resume_flag, overwrite_flag = spelling["resume"], spelling["overwrite"]
    if any(folder.glob("unit-*.safetensors")) and not (resume or overwrite):
        raise FileExistsError(f"{out}: an interrupted run left its finished units in {folder}; pass {resume_flag} "
                              f"to continue it or {overwrite_flag} to start afresh")
    if resume and not (folder / JOB_NAME).is_file():
        fix = (f"pass {overwrite_flag} instead to start afresh" if folder.exists()
               else f"drop {resume_flag} to start one")
        raise FileNotFoundError(f"{resume_flag.split('=')[0]}: {out} has no interrupted run to continue (no {JOB_NAME} "
                                f"in {folder}); {fix}")


def video_part(out: torch.Tensor, path: str, id: str, head: str) -> dict[str, Any]:
    """One row per video: its windows' outputs pooled as ``VideoModel.embed`` pools them."""
    from .model import pool_windows

    return {"embeddings": pool_windows(out, "mean", head)[None], "ids": [id], "paths": [path], "starts": [None],
            "ends": [None]}


def windows_part(windows: list, out: torch.Tensor, path: str, id: str, head: str) -> dict[str, Any]:
    """One row per sliding window, with its times, id ``"<id>#<window>"``."""
    return {"embeddings": out, "ids": [f"{id}#{w}" for w in range(len(out))], "paths": [path] * len(out),
            "starts": [w.start for w in windows], "ends": [w.end for w in windows]}


def _unit(parts: list[dict[str, Any]], skipped: list[Skipped], dim: int) -> dict[str, Any]:
    """One unit as :meth:`UnitStore.load` gives it back: the rows, the columns and the skipped videos."""
    rows = torch.cat([p["embeddings"].float() for p in parts]) if parts else torch.empty(0, dim)
    return {"embeddings": rows, "skipped": list(skipped),
            **{key: [v for part in parts for v in part[key]] for key in COLUMNS}}


class Units:
    """Finished units kept in memory: a job with no output file to keep them beside (nothing to
    resume). :class:`UnitStore` keeps them in files; both merge the same way."""

    def __init__(self) -> None:
        self._units: dict[int, dict[str, Any]] = {}

    def done(self, unit: int) -> bool:
        return unit in self._units

    def keep(self, unit: int, parts: list[dict[str, Any]], skipped: list[Skipped], dim: int) -> None:
        """Hold a finished unit in memory, for this process's merge."""
        self._units[unit] = _unit(parts, skipped, dim)

    save = keep

    def load(self, unit: int) -> dict[str, Any]:
        return self._units[unit]

    def merged(self, plan: ShardPlan) -> tuple[list[dict[str, Any]], list[Skipped]]:
        """Every unit's rows in input order (one part per unit) and the skipped videos, in input order."""
        missing = [u for u in range(plan.units) if not self.done(u)]
        if missing:
            raise ShardError(f"{self}: {len(missing)} of {plan.units} units are missing (first: unit {missing[0]})")
        units = [self.load(u) for u in range(plan.units)]
        return units, [item for unit in units for item in unit.pop("skipped")]


#: The fields of ``job.json`` that name the model rather than say what it is (``model``: its
#: identity): a folder moved or copied elsewhere is the same model. Compared only with a ``job.json``
#: of an earlier version, which records no identity.
MODEL_NAMES = ("model_id", "revision")


def job_differences(found: Mapping[str, Any], job: Mapping[str, Any]) -> list[str]:
    """The fields in which the job a unit folder holds (``found``) differs from ``job``, sorted."""
    ignored = MODEL_NAMES if "model" in found else ("model",)
    return sorted(key for key in set(found) | set(job) if key not in ignored and found.get(key) != job.get(key))


class UnitStore(Units):
    """The unit folder: ``job.json`` and one safetensors file per finished unit."""

    def __init__(self, folder: str | os.PathLike, job: dict[str, Any], *,
                 spelling: Mapping[str, str] = PYTHON_SPELLING) -> None:
        super().__init__()
        self.folder = Path(folder)
        self.job = job
        self.spelling = spelling

    def __str__(self) -> str:
        return str(self.folder)

    def unit_path(self, unit: int) -> Path:
        return self.folder / f"unit-{unit:06d}.safetensors"

    def open(self, *, resume: bool) -> list[int]:
        """Clear the folder of an earlier job, or (``resume``) check that it holds this job; returns
        the finished units found. Called once, by one process, before any rank writes."""
        job_file = self.folder / JOB_NAME
        if resume and job_file.is_file():
            found = json.loads(job_file.read_text())
            changed = job_differences(found, self.job)
            if changed:
                differences = ", ".join(f"{key} {found.get(key)!r} there, {key} {self.job.get(key)!r} here"
                                        for key in changed)
                raise ShardError(f"{self.spelling['resume'].split('=')[0]}: {self.folder} holds rows of another run "
                                 f"(it differs in {', '.join(changed)}: {differences}); rerun with the settings it "
                                 f"was started with, or with {self.spelling['overwrite']} to start afresh")
            return self.finished()
        if self.folder.exists():
            shutil.rmtree(self.folder)
        return []

    def finished(self) -> list[int]:
        """The units whose files are in the folder."""
        return sorted(int(p.stem.split("-")[1]) for p in self.folder.glob("unit-*.safetensors"))

    def discard(self) -> None:
        """Remove the folder: once the job's output holds every row."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def done(self, unit: int) -> bool:
        return unit in self._units or self.unit_path(unit).is_file()

    def save(self, unit: int, parts: list[dict[str, Any]], skipped: list[Skipped], dim: int) -> None:
        """Write a finished unit's file (the folder and ``job.json`` first, when this is the first)."""
        job_file = self.folder / JOB_NAME
        if not job_file.is_file():  # every rank may get here first: the same bytes, each written atomically
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write(job_file, lambda f: f.write((json.dumps(self.job, indent=2) + "\n").encode()))
        built = _unit(parts, skipped, dim)
        meta = {"unit": unit, "job": self.job["paths_sha256"], "failed": [s.to_record() for s in skipped],
                **{key: built[key] for key in COLUMNS}}
        save_safetensors({"rows": built["embeddings"].contiguous()}, self.unit_path(unit),
                         metadata={"tclr_zoo": json.dumps(meta)})

    def load(self, unit: int) -> dict[str, Any]:
        """A finished unit: ``embeddings``, the columns and ``skipped`` (unit files of earlier
        versions recorded skipped videos as ``[path, reason]`` pairs; they read the same)."""
        from safetensors import safe_open

        if unit in self._units:
            return self._units[unit]
        path = self.unit_path(unit)
        again = f"delete it and rerun with {self.spelling['resume']}"
        try:
            with safe_open(str(path), "pt") as f:
                meta = json.loads(f.metadata()["tclr_zoo"])
                rows = f.get_tensor("rows")
        except Exception as err:  # noqa: BLE001 - any unreadable file is reported the same way
            raise ShardError(f"{path}: not a readable unit file ({err}); {again}") from None
        if meta.get("unit") != unit or meta.get("job") != self.job["paths_sha256"]:
            raise ShardError(f"{path}: written for another unit or input list; {again}")
        return {"embeddings": rows, "skipped": [Skipped.of(item) for item in meta["failed"]],
                **{key: meta[key] for key in COLUMNS}}


def embed_units(model: Any, paths: Sequence[str], plan: ShardPlan, store: Units, units: Sequence[int], *,
                part: PartMaker, head: str, batch_size: int, progress: bool, skip_bad: bool,
                workers: int | None, keep_last: bool = False) -> int:
    """Embed the unfinished ``units`` in one pass of ``model.video_outputs`` and save each unit as
    soon as its last video is out -- the last one only in memory with ``keep_last`` (this process
    merges); returns the number of units embedded.

    ``video_outputs`` gives one item per video in input order (its outputs, or a ``Skipped``
    record), so the items of a unit are the next ``len(plan.videos(unit))`` of the stream.
    """
    todo = [u for u in units if not store.done(u)]
    positions = [i for u in todo for i in plan.videos(u)]  # the videos of this pass, in order
    dim = int(model.config["embedding_dims"].get(head, 0))
    stream = model.video_outputs([paths[i] for i in positions], head=head, batch_size=batch_size,
                                 progress=progress, workers=workers, skip_bad=skip_bad)
    try:
        for unit in todo:
            parts, skipped = [], []
            for position in plan.videos(unit):
                item = next(stream)
                if isinstance(item, Skipped):
                    skipped.append(item)
                else:
                    _, windows, out = item
                    parts.append(part(position, windows, out))
            (store.keep if keep_last and unit == todo[-1] else store.save)(unit, parts, skipped, dim)
    finally:
        stream.close()  # the decode workers end here, whatever stopped the pass
    return len(todo)


__all__ = ["COLUMNS", "JOB_NAME", "MODEL_NAMES", "PYTHON_SPELLING", "PartMaker", "ShardError", "ShardPlan",
           "UNIT_VIDEOS", "UnitStore", "Units", "check_shard_folder", "embed_units", "job_differences", "paths_digest",
           "shard_folder", "video_part", "windows_part"]
