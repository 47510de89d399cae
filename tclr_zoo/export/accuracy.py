"""The INT8 accuracy gate: does a quantized graph still give the fp32 graph's answers on held-out clips?

Both graphs run in onnxruntime (CPU) on the same held-out clips -- never the calibration clips, which
set the int8 scales and so flatter them. Measured per int8 graph:

- ``cosine_mean`` / ``cosine_min``: cosine similarity of each int8 output row with the fp32 row;
- ``agreement`` (what the head is used for):

  - embedding heads (``retrieval``, ``backbone``, ``projection``): kNN top-1 agreement, the share
    of queries whose nearest gallery item (cosine) is the same under int8 and fp32. Each held-out clip
    is a query; the gallery is the other held-out videos, each the mean of its clips' embeddings as a
    ``VideoIndex`` stores a video. Clips as gallery items measured worse and meant less: a query's
    nearest clips are the near-identical clips of one other video, and which of those wins flips on
    noise far below what changes a search result (on the tiny test set: clip gallery 0.79, video
    gallery 1.0 for the same graphs);
  - ``logits``: top-1 agreement, the share of clips whose predicted class is the same.

A graph passes when ``cosine_mean >= min_cosine`` and ``agreement >= min_agreement`` (defaults
:data:`MIN_COSINE`, :data:`MIN_AGREEMENT`); ``check_int8_accuracy`` raises :class:`AccuracyGateError`
naming the graph and the numbers otherwise.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from .calibration import ClipSet
from .int8_options import MIN_AGREEMENT, MIN_COSINE
from .parity import row_cosines

GATE_BATCH = 4


class AccuracyGateError(ValueError):
    """An int8 graph fails the gate; ``report`` holds every figure measured."""

    def __init__(self, message: str, report: dict[str, Any]) -> None:
        super().__init__(message)
        self.report = report


def run_graph(path: str | Path, clips: np.ndarray, output_name: str) -> tuple[np.ndarray, float]:
    """Outputs of the graph at ``path`` for ``clips`` (``GATE_BATCH`` at a time) and the seconds they took."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    start = time.perf_counter()
    outs = [session.run([output_name], {input_name: clips[i:i + GATE_BATCH]})[0]
            for i in range(0, len(clips), GATE_BATCH)]
    return np.concatenate(outs).astype(np.float64), time.perf_counter() - start


def knn_agreement(reference: np.ndarray, candidate: np.ndarray, videos: np.ndarray) -> float:
    """Share of rows (clips) whose nearest other video (:func:`nearest_video`) is the same in both embeddings."""
    videos = np.asarray(videos)
    if len(np.unique(videos)) < 2:
        raise ValueError("kNN agreement needs rows from at least two videos")
    return float(np.mean(nearest_video(reference, videos) == nearest_video(candidate, videos)))


def nearest_video(embeddings: np.ndarray, videos: np.ndarray) -> np.ndarray:
    """For each row (a clip of video ``videos[i]``), the other video most cosine-similar to it, each video
    taken as a ``VideoIndex`` stores it: the mean of its clips' L2-normalised embeddings, normalised."""
    videos = np.asarray(videos)
    unit = _normalised(embeddings)
    ids = np.unique(videos)
    gallery = _normalised(np.stack([unit[videos == v].mean(axis=0) for v in ids]))
    scores = unit @ gallery.T
    scores[videos[:, None] == ids[None, :]] = -np.inf
    return ids[scores.argmax(axis=1)]


def _normalised(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def top1_agreement(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Share of rows with the same argmax."""
    return float(np.mean(reference.argmax(axis=1) == candidate.argmax(axis=1)))


def gate_figures(reference: np.ndarray, candidate: np.ndarray, videos: np.ndarray, head: str) -> dict[str, Any]:
    """Cosine (mean, min) and the head's agreement of ``candidate`` outputs against ``reference``."""
    cos = row_cosines(candidate, reference)
    logits = head == "logits"
    agreement = top1_agreement(reference, candidate) if logits else knn_agreement(reference, candidate, videos)
    return {"cosine_mean": float(np.mean(cos)), "cosine_min": float(np.min(cos)), "agreement": agreement,
            "agreement_kind": "top-1 class" if logits else "kNN top-1 video"}


def check_int8_accuracy(fp32_graph: str | Path, int8_graphs: dict[str, str | Path], held_out: ClipSet, *,
                        head: str, min_cosine: float = MIN_COSINE,
                        min_agreement: float = MIN_AGREEMENT) -> dict[str, Any]:
    """Run the gate on every graph of ``int8_graphs`` (name -> path); returns the report, or raises
    :class:`AccuracyGateError` (with the report) when one graph misses a bound."""
    reference, fp32_seconds = run_graph(fp32_graph, held_out.clips, head)
    report: dict[str, Any] = {"held_out": held_out.describe(), "bounds": {"cosine_mean": min_cosine,
                                                                           "agreement": min_agreement},
                              "fp32_seconds": fp32_seconds, "graphs": {}}
    failures = []
    for name, path in int8_graphs.items():
        outputs, seconds = run_graph(path, held_out.clips, head)
        figures = gate_figures(reference, outputs, held_out.videos, head)
        figures.update(seconds=seconds, speedup_vs_fp32=fp32_seconds / seconds if seconds else None)
        figures["passed"] = bool(figures["cosine_mean"] >= min_cosine and figures["agreement"] >= min_agreement)
        report["graphs"][name] = figures
        if not figures["passed"]:
            failures.append(f"{name}: cosine mean {figures['cosine_mean']:.5f} (min {figures['cosine_min']:.5f}, "
                            f"bound >= {min_cosine}), {figures['agreement_kind']} agreement "
                            f"{figures['agreement']:.4f} (bound >= {min_agreement})")
    report["passed"] = not failures
    if failures:
        raise AccuracyGateError(f"int8 accuracy gate failed on {len(held_out)} held-out clips of "
                                f"{len(held_out.names)} videos: " + "; ".join(failures), report)
    return report


__all__ = ["AccuracyGateError", "MIN_AGREEMENT", "MIN_COSINE", "check_int8_accuracy", "gate_figures",
           "knn_agreement", "nearest_video", "run_graph", "top1_agreement"]
