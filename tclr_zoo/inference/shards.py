"""Embedding a large collection in shards: fixed blocks of videos, one file per block, so that a run
split over many processes (``torchrun``) or cut short continues where it stopped and merges into
exactly what one process would have written.

* A *unit* is a contiguous block of ``unit_videos`` videos of the input list, in input order. Unit
  ``u`` belongs to rank ``u % world_size``: round-robin, so a slow stretch of the list (long videos
  in one folder) is spread over all ranks. Units depend on the list and ``unit_videos`` only, never
  on the number of processes, so a resumed run may use another number of GPUs or nodes.
* Each finished unit is written atomically to ``unit-NNNNNN.safetensors`` in a shard folder: its
  rows (float32 ``[r, D]``) plus, in the metadata, each row's id, path and window times and the
  unit's skipped videos. A unit file that exists is complete; resuming skips it.
* ``job.json`` in the folder records what the rows are (model, revision, head, precision, the
  list's sha256, ...); a resume with other settings is refused instead of mixing rows.
* Merging reads the units in order, so ids, order and vectors are those of a one-process run.

One pass of the model covers all of a rank's units (decode workers start once, see
``VideoModel.video_outputs``); a unit is written as soon as its last video is out.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..atomic import atomic_write, save_safetensors
from ..constants import SHARD_VIDEOS as UNIT_VIDEOS  # a million videos are ~4000 unit files

JOB_NAME = "job.json"

#: ``part(position, windows, outputs)`` -> the rows of one video: a dict with ``embeddings``
#: ``[r, D]`` and the lists ``ids``, ``paths``, ``starts``, ``ends`` (``VideoIndex``'s columns).
PartMaker = Callable[[int, list, torch.Tensor], dict[str, Any]]


class ShardError(ValueError):
    """A shard folder that cannot be used for this run (other settings, a damaged unit file)."""


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
    """sha256 of the input list, in order: a resume must see the same videos in the same order."""
    return hashlib.sha256("\n".join(paths).encode()).hexdigest()


class UnitStore:
    """The shard folder: ``job.json`` and one safetensors file per finished unit."""

    def __init__(self, folder: str | os.PathLike, job: dict[str, Any]) -> None:
        self.folder = Path(folder)
        self.job = job

    def unit_path(self, unit: int) -> Path:
        return self.folder / f"unit-{unit:06d}.safetensors"

    def open(self, *, resume: bool) -> int:
        """Create the folder for this job, or (``resume``) check that it holds this job; returns the
        number of finished units found. Called once, by one process, before any rank writes."""
        job_file = self.folder / JOB_NAME
        if resume and job_file.is_file():
            found = json.loads(job_file.read_text())
            changed = sorted(key for key in set(found) | set(self.job) if found.get(key) != self.job.get(key))
            if changed:
                raise ShardError(f"--resume: {self.folder} holds rows of another run (it differs in "
                                 f"{', '.join(changed)}); rerun with the settings it was started with, "
                                 "or with --overwrite to start afresh")
            return sum(1 for _ in self.folder.glob("unit-*.safetensors"))
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic_write(job_file, lambda f: f.write((json.dumps(self.job, indent=2) + "\n").encode()))
        return 0

    def done(self, unit: int) -> bool:
        return self.unit_path(unit).is_file()

    def save(self, unit: int, parts: list[dict[str, Any]], failed: list[tuple[str, str]], dim: int) -> None:
        rows = torch.cat([p["embeddings"].float() for p in parts]) if parts else torch.empty(0, dim)
        columns = {key: [v for part in parts for v in part[key]] for key in ("ids", "paths", "starts", "ends")}
        meta = {"unit": unit, "job": self.job["paths_sha256"], "failed": failed, **columns}
        save_safetensors({"rows": rows.contiguous()}, self.unit_path(unit), metadata={"tclr_zoo": json.dumps(meta)})

    def load(self, unit: int) -> dict[str, Any]:
        """A finished unit: ``embeddings`` and the columns (as one part), and ``failed``."""
        from safetensors import safe_open

        path = self.unit_path(unit)
        try:
            with safe_open(str(path), "pt") as f:
                meta = json.loads(f.metadata()["tclr_zoo"])
                rows = f.get_tensor("rows")
        except Exception as err:  # noqa: BLE001 - any unreadable file is reported the same way
            raise ShardError(f"{path}: not a readable unit file ({err}); delete it and rerun with --resume") from None
        if meta.get("unit") != unit or meta.get("job") != self.job["paths_sha256"]:
            raise ShardError(f"{path}: written for another unit or input list; delete it and rerun with --resume")
        return {"embeddings": rows, "failed": [tuple(item) for item in meta["failed"]],
                **{key: meta[key] for key in ("ids", "paths", "starts", "ends")}}

    def merged(self, plan: ShardPlan) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
        """Every unit's rows in input order (one part per unit) and the skipped videos, in input order."""
        missing = [u for u in range(plan.units) if not self.done(u)]
        if missing:
            raise ShardError(f"{self.folder}: {len(missing)} of {plan.units} units are missing "
                             f"(first: {self.unit_path(missing[0]).name})")
        units = [self.load(u) for u in range(plan.units)]
        return units, [item for unit in units for item in unit.pop("failed")]


def embed_units(model: Any, paths: Sequence[str], plan: ShardPlan, store: UnitStore, units: Sequence[int], *,
                part: PartMaker, head: str, batch_size: int, progress: bool, skip_bad: bool,
                workers: int | None) -> int:
    """Embed the unfinished ``units`` in one pass of ``model.video_outputs`` and write each unit as
    soon as its last video is out; returns the number of units written.

    ``video_outputs`` yields videos in input order and records a failed video before it yields any
    later one, so once the video at flat position ``i`` is out, every unit ending at ``i + 1`` or
    before is complete.
    """
    todo = [u for u in units if not store.done(u)]
    positions = [i for u in todo for i in plan.videos(u)]  # flat position -> position in ``paths``
    pending = _unit_ends(plan, todo)
    errors: dict[int, Any] | None = {} if skip_bad else None
    dim = int(model.config["embedding_dims"].get(head, 0))
    buffer: list[tuple[int, dict[str, Any]]] = []

    def write_complete(limit: int) -> None:
        nonlocal buffer
        while pending and pending[0][1] <= limit:
            unit, end = pending.pop(0)
            start = end - len(plan.videos(unit))
            failed = [(paths[positions[i]], errors[i].reason) for i in range(start, end) if errors and i in errors]
            store.save(unit, [p for flat, p in buffer if flat < end], failed, dim)
            buffer = [(flat, p) for flat, p in buffer if flat >= end]

    for flat, wins, out in model.video_outputs([paths[i] for i in positions], head, batch_size, None, progress,
                                               workers, errors):
        buffer.append((flat, part(positions[flat], wins, out)))
        write_complete(flat + 1)
    write_complete(len(positions))
    return len(todo)


def _unit_ends(plan: ShardPlan, todo: list[int]) -> list[tuple[int, int]]:
    """``(unit, end)`` per unit to do: its videos end at flat position ``end`` (exclusive)."""
    ends, total = [], 0
    for unit in todo:
        total += len(plan.videos(unit))
        ends.append((unit, total))
    return ends


__all__ = ["JOB_NAME", "UNIT_VIDEOS", "ShardError", "ShardPlan", "UnitStore", "embed_units", "paths_digest"]
