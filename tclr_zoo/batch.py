"""Batch work over many video files for the CLI: find videos, embed or classify them, save results.

Batch commands run over folders of scraped videos, where one unreadable file is normal: with
``skip_bad`` a file that fails to decode is recorded (path and reason) in the output instead of
stopping the run, and the good files keep sharing batches. Outputs are written atomically.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .atomic import atomic_write
from .data.decode import VideoDecodeError
from .sdk import VideoModel

CHUNK = 16  # videos per embed call: enough to fill batches, small enough to retry one by one


@dataclass
class BatchResult:
    paths: list[str] = field(default_factory=list)  # the files that worked, in output order
    rows: list[Any] = field(default_factory=list)  # one result per path
    failed: list[dict[str, str]] = field(default_factory=list)  # {"path", "reason"}


def run_batch(paths: list[str], work: Callable[[list[str]], Sequence[Any]], *, skip_bad: bool,
              progress: bool = False) -> BatchResult:
    """Apply ``work`` (a list of paths -> one result each) in chunks; bad files retried one by one."""
    from tqdm.auto import tqdm

    result = BatchResult()
    with tqdm(total=len(paths), unit="video", disable=None if progress else True) as bar:  # None: off unless a terminal
        for start in range(0, len(paths), CHUNK):
            chunk = paths[start:start + CHUNK]
            try:
                _extend(result, chunk, work(chunk))
            except VideoDecodeError:
                if not skip_bad:
                    raise
                for path in chunk:
                    try:
                        _extend(result, [path], work([path]))
                    except VideoDecodeError as err:
                        result.failed.append({"path": path, "reason": err.reason})
            bar.update(len(chunk))
    return result


def _extend(result: BatchResult, paths: list[str], rows: Sequence[Any]) -> None:
    result.paths.extend(paths)
    result.rows.extend(rows)


def embed_files(model: VideoModel, paths: list[str], *, head: str, batch_size: int, skip_bad: bool,
                progress: bool) -> BatchResult:
    return run_batch(paths, lambda chunk: list(model.embed(chunk, head=head, batch_size=batch_size)),
                     skip_bad=skip_bad, progress=progress)


def classify_files(model: VideoModel, paths: list[str], *, top_k: int, batch_size: int, skip_bad: bool,
                   progress: bool) -> BatchResult:
    return run_batch(paths, lambda chunk: model.classify(chunk, top_k=top_k, batch_size=batch_size),
                     skip_bad=skip_bad, progress=progress)


def output_metadata(model: VideoModel, head: str, result: BatchResult) -> dict[str, Any]:
    return {"model_id": model.model_id, "revision": model.revision, "architecture": model.config["architecture"],
            "head": head, "paths": result.paths, "failed": result.failed}


def save_embeddings(out: str | os.PathLike, result: BatchResult, metadata: dict[str, Any]) -> list[Path]:
    """``.safetensors`` (embeddings + metadata inside) or ``.npy`` (+ a ``.json`` sidecar); returns the files."""
    out = Path(out)
    dim = int(metadata.get("dim", 0))
    matrix = torch.stack(result.rows) if result.rows else torch.empty(0, dim)
    if out.suffix == ".safetensors":
        from safetensors.torch import save

        data = save({"embeddings": matrix.contiguous()}, metadata={"tclr_zoo": json.dumps(metadata)})
        atomic_write(out, lambda f: f.write(data))
        return [out]
    if out.suffix == ".npy":
        buffer = io.BytesIO()
        np.save(buffer, matrix.numpy())
        sidecar = out.with_suffix(".json")
        atomic_write(out, lambda f: f.write(buffer.getvalue()))
        atomic_write(sidecar, lambda f: f.write((json.dumps(metadata, indent=2) + "\n").encode()))
        return [out, sidecar]
    raise ValueError(f"{out}: the output must end in .npy or .safetensors")


def index_model(index: Any, name: str | None, backend: str, device: str | None) -> VideoModel:
    """The model that embeds queries for ``index``: ``name``, else the one the index records."""
    if name is None:
        return index.recorded_model(backend=backend, device=device)
    from .sdk import load_model

    return load_model(name, backend=backend, device=device)


# --------------------------------------------------------------------------------------------
# Resumable index builds
# --------------------------------------------------------------------------------------------


def partial_index_dir(out_dir: str | os.PathLike) -> Path:
    """Where ``index build`` keeps the rows embedded so far: a hidden sibling of ``--out``."""
    out = Path(out_dir)
    return out.with_name(f".{out.name}.partial")


def build_index_resumable(model: VideoModel, paths: Sequence[str], out_dir: str | os.PathLike, *, resume: bool,
                          save_every: float, head: str, batch_size: int, progress: bool, skip_bad: bool,
                          windows: bool, dtype: str):
    """``VideoIndex.build`` for long runs: the rows embedded so far are saved (atomically) to
    :func:`partial_index_dir` at most every ``save_every`` seconds, and ``resume`` continues from
    them, skipping the videos they hold. Returns ``(index, videos_resumed)``; the caller saves the
    index to ``out_dir`` and then removes the partial folder.
    """
    import time

    from tqdm.auto import tqdm

    from .index import MANIFEST_NAME, IndexFormatError, VideoIndex

    partial = partial_index_dir(out_dir)
    if resume and (partial / MANIFEST_NAME).is_file():
        index = VideoIndex.load(partial)
        if index.head != head or index.model_id != model.model_id or index.revision != model.revision:
            raise IndexFormatError(f"--resume: {partial} was built with model {index.model_id!r} (revision "
                             f"{index.revision!r}, head {index.head!r}); rebuild with --overwrite or use that model")
    else:
        index = VideoIndex(None, dtype=dtype, model_id=model.model_id, revision=model.revision, head=head)
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
                                        skip_bad=skip_bad, windows=windows)
            bar.update(len(chunk))
            if start + step < len(todo) and time.monotonic() - last_save >= save_every:
                index.save(partial)
                last_save = time.monotonic()
    index.skipped = skipped
    return index, len(paths) - len(todo)
