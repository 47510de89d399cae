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
from ..inference.model import VideoModel, pool_windows
from .options import write_json

@dataclass
class BatchResult:
    """What a batch command produced: the files that worked with one result each, and the skipped ones."""

    paths: list[str] = field(default_factory=list)  # the files that worked, in output order
    rows: list[Any] = field(default_factory=list)  # one result per path
    failed: list[dict[str, str]] = field(default_factory=list)  # {"path", "reason"}


def _extend(result: BatchResult, paths: list[str], rows: Sequence[Any]) -> None:
    result.paths.extend(paths)
    result.rows.extend(rows)


def embed_files(model: VideoModel, paths: list[str], *, head: str, batch_size: int, skip_bad: bool,
                progress: bool, workers: int | None = None) -> BatchResult:
    """One embedding (a 1-d tensor of ``head``) per video."""
    return stream_videos(model, paths, head, lambda out: pool_windows(out, "mean", head), batch_size=batch_size,
                         skip_bad=skip_bad, progress=progress, workers=workers)


def classify_files(model: VideoModel, paths: list[str], *, top_k: int, batch_size: int, skip_bad: bool,
                   progress: bool, workers: int | None = None) -> BatchResult:
    """The ``top_k`` (label, probability) pairs per video."""
    labels = model.labels
    if not labels:  # the SDK's own message
        model.classify(torch.zeros(1, 3, model.frames, model.size, model.size), top_k=top_k)

    def top(out: torch.Tensor) -> list[tuple[str, float]]:
        values, indices = out.softmax(dim=1).mean(dim=0).topk(min(top_k, len(labels)))
        return [(labels[int(i)], float(v)) for v, i in zip(values, indices)]

    return stream_videos(model, paths, "logits", top, batch_size=batch_size, skip_bad=skip_bad, progress=progress,
                         workers=workers)


def stream_videos(model: VideoModel, paths: list[str], head: str, reduce: Callable[[torch.Tensor], Any], *,
                  batch_size: int, skip_bad: bool, progress: bool, workers: int | None) -> BatchResult:
    """All ``paths`` in one pass of the model (decode workers started once), ``reduce`` turning a
    video's window outputs into its result; with ``skip_bad`` a video that fails to decode is
    recorded with its reason -- the one a decode in this process gives -- and the others go on."""
    errors: dict[int, VideoDecodeError] | None = {} if skip_bad else None
    result = BatchResult()
    outputs = {i: reduce(out) for i, _, out in
               model.video_outputs(list(paths), head, batch_size, None, progress, workers, errors)}
    for i, path in enumerate(paths):
        if i in outputs:
            _extend(result, [path], [outputs[i]])
        else:
            result.failed.append({"path": path, "reason": errors[i].reason})
    return result


def result_from_units(units: list[dict[str, Any]], skipped: list[tuple[str, str]]) -> BatchResult:
    """What :func:`embed_files` returns, from the units of a sharded run (``inference.shards``)."""
    result = BatchResult(failed=[{"path": path, "reason": reason} for path, reason in skipped])
    for unit in units:
        _extend(result, unit["paths"], list(unit["embeddings"]))
    return result


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


__all__ = ["BatchResult", "classify_files", "embed_files", "output_metadata", "result_from_units", "save_embeddings",
           "stream_videos"]
