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

from ..atomic import atomic_write
from ..data.decode import VideoDecodeError
from ..inference.model import VideoModel
from .options import write_json

CHUNK = 16  # videos per embed call: enough to fill batches, small enough to retry one by one


@dataclass
class BatchResult:
    """What a batch command produced: the files that worked with one result each, and the skipped ones."""

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
    """One embedding (a 1-d tensor of ``head``) per video."""
    return run_batch(paths, lambda chunk: list(model.embed(chunk, head=head, batch_size=batch_size)),
                     skip_bad=skip_bad, progress=progress)


def classify_files(model: VideoModel, paths: list[str], *, top_k: int, batch_size: int, skip_bad: bool,
                   progress: bool) -> BatchResult:
    """The ``top_k`` (label, probability) pairs per video."""
    return run_batch(paths, lambda chunk: model.classify(chunk, top_k=top_k, batch_size=batch_size),
                     skip_bad=skip_bad, progress=progress)


def output_metadata(model: VideoModel, head: str, result: BatchResult) -> dict[str, Any]:
    """What an embeddings file records beside the matrix: model, head, the rows' paths, the skipped files."""
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
        write_json(sidecar, metadata)
        return [out, sidecar]
    raise ValueError(f"{out}: the output must end in .npy or .safetensors")


__all__ = ["CHUNK", "BatchResult", "classify_files", "embed_files", "output_metadata", "run_batch", "save_embeddings"]
