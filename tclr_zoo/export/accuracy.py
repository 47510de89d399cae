"""The INT8 accuracy gate: does a quantized graph still give the fp32 graph's answers on held-out clips?

Both graphs run in onnxruntime (CPU) on the same held-out clips -- never the calibration clips, which
set the int8 scales and so flatter them. Measured per int8 graph:

- ``cosine_mean`` / ``cosine_min``: cosine similarity of each int8 output row with the fp32 row;
- ``agreement``: the answer a user gets, judged against fp32's own scores. Each held-out clip is a
  query with candidate answers, scored by both graphs (:func:`answer_scores`):

  - embedding heads (``retrieval``, ``backbone``, ``projection``): the *other* held-out videos, each
    the mean of its clips' embeddings as a ``VideoIndex`` stores a video, scored by cosine to the clip;
  - ``logits``: the classes, scored by softmax probability.

  The int8 answer is the candidate int8 scores highest; its **regret** is how much lower fp32 scores it
  than fp32's own top answer (0 when they agree). A regret within the tie tolerance (``TIE_COSINE``,
  ``TIE_PROBABILITY``) is no error: fp32 itself barely prefers one of the two, and bare top-1
  agreement, which counted such flips as errors, refused near-perfect graphs (R3D-18 on 3 held-out
  near-identical videos: cosine 0.99988, top-1 agreement 0.875). A query counts (is *judged*) only
  when some candidate lies
  more than the tolerance below fp32's best -- when a wrong answer is possible at all: a clip with a
  single candidate (2 held-out videos) or only tied ones is no evidence, where top-1 agreement counted
  it as a success and so passed any graph on 2 videos. ``agreement`` is the share of judged queries
  answered within the tolerance of fp32's best; with none judged it is ``None`` (not measured).

A graph passes (:func:`passes`) when ``cosine_mean >= min_cosine`` and its agreement, when measured,
is ``>= min_agreement``; a held-out set of fewer than ``MIN_HELDOUT_VIDEOS`` videos is refused before
any graph runs (``int8_options.HELD_OUT_RULE``). ``check_int8_accuracy`` raises
:class:`AccuracyGateError` naming the graph, the figures and the bound each missed. export/README.md
("The accuracy gate") gives the measurements behind the tolerances.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from .calibration import ClipSet, too_few_held_out
from .int8_options import MIN_AGREEMENT, MIN_COSINE, MIN_HELDOUT_VIDEOS, TIE_COSINE, TIE_PROBABILITY
from .parity import row_cosines

GATE_BATCH = 4
#: head kind -> (what a query's candidates are, what scores them, the tie tolerance in those units)
ANSWERS = {"embedding": ("kNN top-1 video", "fp32 cosine", TIE_COSINE),
           "logits": ("top-1 class", "fp32 probability", TIE_PROBABILITY)}


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


def answer_scores(outputs: np.ndarray, videos: np.ndarray, head: str) -> np.ndarray:
    """``[clips, candidates]``: how one graph scores each query's candidate answers (``-inf``: not a
    candidate). Embedding heads: cosine of each clip to every held-out video (the mean of its clips'
    L2-normalised embeddings, normalised), its own video excluded; ``logits``: softmax probabilities."""
    if head == "logits":
        shifted = np.exp(outputs - outputs.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)
    videos = np.asarray(videos)
    unit = _normalised(outputs)
    ids = np.unique(videos)
    gallery = _normalised(np.stack([unit[videos == v].mean(axis=0) for v in ids]))
    scores = unit @ gallery.T
    scores[videos[:, None] == ids[None, :]] = -np.inf
    return scores


def _normalised(rows: np.ndarray) -> np.ndarray:
    return rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)


def judge_answers(reference: np.ndarray, candidate: np.ndarray, tie: float) -> dict[str, Any]:
    """The candidate graph's answers judged by the reference graph's scores (both ``[queries,
    candidates]``, ``-inf`` where not a candidate), ties within ``tie`` forgiven.

    Returns ``agreement`` (share of judged queries whose candidate answer has regret <= ``tie``;
    ``None`` when none is judged), ``judged`` (queries with a candidate more than ``tie`` below the
    reference's best), ``queries``, ``regret_mean`` / ``regret_max`` (over all queries, in the
    reference's units) and ``top1_agreement`` (bare: same top answer, ties not forgiven; for comparison).
    """
    rows = np.arange(len(reference))
    best = reference.max(axis=1)
    answered = np.where(np.isfinite(reference), candidate, -np.inf).argmax(axis=1)
    regret = best - reference[rows, answered]
    worst = np.where(np.isfinite(reference), reference, np.inf).min(axis=1)
    judged = best - worst > tie
    return {"agreement": float(np.mean(regret[judged] <= tie)) if judged.any() else None,
            "judged": int(judged.sum()), "queries": len(reference),
            "regret_mean": float(regret.mean()), "regret_max": float(regret.max()),
            "top1_agreement": float(np.mean(answered == reference.argmax(axis=1)))}


def gate_figures(reference: np.ndarray, candidate: np.ndarray, videos: np.ndarray, head: str) -> dict[str, Any]:
    """Cosine (mean, min) and the judged answers (:func:`judge_answers`) of ``candidate`` outputs
    against ``reference`` outputs of the same held-out clips (``videos[i]``: the video of clip ``i``)."""
    cos = row_cosines(candidate, reference)
    kind, units, tie = ANSWERS["logits" if head == "logits" else "embedding"]
    answers = judge_answers(answer_scores(reference, videos, head), answer_scores(candidate, videos, head), tie)
    return {"cosine_mean": float(np.mean(cos)), "cosine_min": float(np.min(cos)), **answers,
            "agreement_kind": kind, "tie": tie, "tie_units": units}


def passes(figures: dict[str, Any], min_cosine: float = MIN_COSINE, min_agreement: float = MIN_AGREEMENT) -> bool:
    """The gate's rule: mean cosine at least ``min_cosine`` (NaN fails) and, when any query was
    judged, agreement at least ``min_agreement``. Either bound missed alone fails the graph."""
    agreement = figures["agreement"]
    return bool(figures["cosine_mean"] >= min_cosine and (agreement is None or agreement >= min_agreement))


def describe_agreement(figures: dict[str, Any]) -> str:
    """The agreement figure in words: '... agreement 0.9583 on 24 of 24 clips judged (ties: within ...)'."""
    tie = f"{figures['tie']:g} {figures['tie_units']}"
    if figures["agreement"] is None:
        return (f"{figures['agreement_kind']} agreement not measured: no held-out clip had an answer more than "
                f"{tie} below fp32's best (nothing to get wrong)")
    return (f"{figures['agreement_kind']} agreement {figures['agreement']:.4f} on {figures['judged']} of "
            f"{figures['queries']} clips judged (ties: within {tie})")


def check_int8_accuracy(fp32_graph: str | Path, int8_graphs: dict[str, str | Path], held_out: ClipSet, *,
                        head: str, min_cosine: float = MIN_COSINE,
                        min_agreement: float = MIN_AGREEMENT) -> dict[str, Any]:
    """Run the gate on every graph of ``int8_graphs`` (name -> path); returns the report, or raises
    :class:`AccuracyGateError` (with the report) when one graph misses a bound, and
    ``CalibrationSourceError`` for a held-out set too small to judge (before running anything)."""
    videos = len(np.unique(held_out.videos))
    if videos < MIN_HELDOUT_VIDEOS:
        raise too_few_held_out(f"{held_out.source}: the held-out clips come from {videos} video(s)")
    reference, fp32_seconds = run_graph(fp32_graph, held_out.clips, head)
    report: dict[str, Any] = {"held_out": held_out.describe(), "bounds": {"cosine_mean": min_cosine,
                                                                           "agreement": min_agreement},
                              "fp32_seconds": fp32_seconds, "graphs": {}}
    failures = []
    for name, path in int8_graphs.items():
        outputs, seconds = run_graph(path, held_out.clips, head)
        figures = gate_figures(reference, outputs, held_out.videos, head)
        figures.update(seconds=seconds, speedup_vs_fp32=fp32_seconds / seconds if seconds else None)
        figures["passed"] = passes(figures, min_cosine, min_agreement)
        report["graphs"][name] = figures
        if not figures["passed"]:
            failures.append(f"{name}: {_verdict(figures, min_cosine, min_agreement)}")
    report["passed"] = not failures
    if failures:
        raise AccuracyGateError(f"int8 accuracy gate failed on {len(held_out)} held-out clips of "
                                f"{len(held_out.names)} videos: " + "; ".join(failures), report)
    return report


def _verdict(figures: dict[str, Any], min_cosine: float, min_agreement: float) -> str:
    """Both figures of a failed graph, each with its bound and whether it was met."""
    cosine_ok = figures["cosine_mean"] >= min_cosine
    agreement_ok = figures["agreement"] is None or figures["agreement"] >= min_agreement
    return (f"cosine mean {figures['cosine_mean']:.5f} (min {figures['cosine_min']:.5f}; bound >= {min_cosine} "
            f"{'met' if cosine_ok else 'MISSED'}), {describe_agreement(figures)}"
            + ("" if figures["agreement"] is None else
               f" (bound >= {min_agreement} {'met' if agreement_ok else 'MISSED'})"))


__all__ = ["ANSWERS", "AccuracyGateError", "MIN_AGREEMENT", "MIN_COSINE", "answer_scores", "check_int8_accuracy",
           "describe_agreement", "gate_figures", "judge_answers", "passes", "run_graph"]
