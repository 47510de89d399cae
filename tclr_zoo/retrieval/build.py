"""Building an index over many videos for a long run: the rows embedded so far are saved at
intervals, and an interrupted build resumes where it stopped, skipping the videos it holds.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Sequence

from tqdm.auto import tqdm

from ..atomic import exclusive_output
from ..inference.model import VideoModel, load_model
from .index import VideoIndex
from .storage import MANIFEST_NAME
from .types import IndexFormatError


def index_model(index: VideoIndex, name: str | None, backend: str, device: str | None) -> VideoModel:
    """The model that embeds queries for ``index``: ``name``, else the one the index records."""
    if name is None:
        return index.recorded_model(backend=backend, device=device)
    return load_model(name, backend=backend, device=device)


def partial_index_dir(out_dir: str | os.PathLike) -> Path:
    """Where ``index build`` keeps the rows embedded so far: a hidden sibling of ``--out``."""
    out = Path(out_dir)
    return out.with_name(f".{out.name}.partial")


def build_index_resumable(model: VideoModel, paths: Sequence[str], out_dir: str | os.PathLike, *, resume: bool,
                          save_every: float, head: str, batch_size: int, progress: bool, skip_bad: bool,
                          windows: bool, dtype: str, workers: int | None = None, approximate: bool = False):
    """``VideoIndex.build`` for long runs: the rows embedded so far are saved (atomically) to
    :func:`partial_index_dir` at most every ``save_every`` seconds, and ``resume`` continues from
    them, skipping the videos they hold. Returns ``(index, videos_resumed)``; the caller saves the
    index to ``out_dir`` and then removes the partial folder. ``approximate``: the index saves an HNSW
    graph at the end (the partial saves leave it out: building it is the slow part).

    ``resume`` with no saved rows raises ``FileNotFoundError`` (nothing to continue) rather than
    silently starting afresh. The build holds ``out_dir``'s writer lock (``atomic.exclusive_output``;
    the caller may hold it already, as ``index build`` does, to save under it): a second build into
    the same index is refused with ``OutputInUseError`` before any video is read.
    """
    with exclusive_output(out_dir):
        index = _start_index(model, out_dir, resume=resume, head=head, dtype=dtype, approximate=approximate)
        return _fill(index, model, paths, partial_index_dir(out_dir), save_every=save_every, head=head,
                     batch_size=batch_size, progress=progress, skip_bad=skip_bad, windows=windows, workers=workers)


def nothing_to_resume(out_dir: str | os.PathLike) -> str | None:
    """Why ``index build --resume`` has nothing to continue at ``out_dir`` (one line naming the
    folder and what to do), or None when an interrupted build left rows to resume from."""
    partial = partial_index_dir(out_dir)
    if (partial / MANIFEST_NAME).is_file():
        return None
    fix = "pass --overwrite instead to start afresh" if partial.exists() else "drop --resume to start one"
    return f"--resume: {out_dir} has no interrupted build to continue (no saved rows in {partial}); {fix}"


def _start_index(model: VideoModel, out_dir: str | os.PathLike, *, resume: bool, head: str, dtype: str,
                 approximate: bool) -> VideoIndex:
    """The rows an interrupted build of ``out_dir`` saved (``resume``), checked to be of this model
    and head; else an empty index."""
    if not resume:
        return VideoIndex(None, dtype=dtype, model_id=model.model_id, revision=model.revision, head=head,
                          approximate=approximate)
    missing = nothing_to_resume(out_dir)
    if missing:
        raise FileNotFoundError(missing)
    partial = partial_index_dir(out_dir)
    index = VideoIndex.load(partial, approximate=approximate)
    if index.head != head or index.model_id != model.model_id or index.revision != model.revision:
        raise IndexFormatError(f"--resume: {partial} was built with model {index.model_id!r} (revision "
                               f"{index.revision!r}, head {index.head!r}); rebuild with --overwrite or use that model")
    return index


def _fill(index: VideoIndex, model: VideoModel, paths: Sequence[str], partial: Path, *, save_every: float,
          head: str, batch_size: int, progress: bool, skip_bad: bool, windows: bool,
          workers: int | None) -> tuple[VideoIndex, int]:
    """Embed the ``paths`` the index does not hold yet, saving the rows to ``partial`` every
    ``save_every`` seconds; returns ``(index, videos_resumed)``."""
    done = set(index.paths)
    todo = [p for p in paths if p not in done]
    skipped: list[tuple[str, str]] = []
    last_save = time.monotonic()
    step = max(1, batch_size) * 4
    with tqdm(total=len(paths), initial=len(paths) - len(todo), unit="video", leave=False,
              disable=None if progress else True) as bar:
        for start in range(0, len(todo), step):
            chunk = todo[start:start + step]
            skipped += index.add_videos(model, chunk, head=head, batch_size=batch_size, progress=False,
                                        skip_bad=skip_bad, windows=windows, workers=workers)
            bar.update(len(chunk))
            if start + step < len(todo) and time.monotonic() - last_save >= save_every:
                index.save(partial, graph=False, overwrite=True)
                last_save = time.monotonic()
    index.skipped = skipped
    return index, len(paths) - len(todo)


def index_from_units(units: list[dict[str, Any]], skipped: list[tuple[str, str]], *, model: VideoModel, head: str,
                     dtype: str, approximate: bool = False) -> VideoIndex:
    """The index a one-process build makes, from the units of a sharded one (``inference.shards``):
    the rows in unit order are the rows in input order, added in one call as ``add_videos`` adds them."""
    index = VideoIndex(None, dtype=dtype, model_id=model.model_id, revision=model.revision, head=head,
                       approximate=approximate)
    filled = [unit for unit in units if unit["ids"]]
    if filled:
        index.add_parts(filled, model, head)
    index.skipped = list(skipped)
    return index


__all__ = ["build_index_resumable", "index_from_units", "index_model", "nothing_to_resume", "partial_index_dir"]
