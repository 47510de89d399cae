"""Numerical parity between an exported ONNX graph (run by onnxruntime on CPU) and the PyTorch model.

Bounds (per input batch):

* fp32 graph: max abs error <= 1e-4 * max(1, max |reference|)  (relative to output scale)
  and row-wise cosine similarity >= 0.99999 (minimum over rows);
* fp16 graph (fp32 inputs/outputs kept): min row-wise cosine >= 0.999;
* ``compare_top1=True`` (logits heads): the argmax of every row must agree.

Speeds: each side is run 3 times, alternately (ORT, torch, ORT, torch, ...), and the median is reported; the
first run of each side is also the one compared, so nothing is run more than ``repeats`` times.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

__all__ = ["FP16_MIN_COSINE", "FP32_MAX_ABS_REL", "FP32_MIN_COSINE", "ParityError", "check_parity", "row_cosines"]

FP32_MAX_ABS_REL = 1e-4
FP32_MIN_COSINE = 0.99999
FP16_MIN_COSINE = 0.999


class ParityError(ValueError):
    """ONNX and PyTorch outputs disagree; ``report`` holds what was measured up to the failure."""

    def __init__(self, message: str, report: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.report = report


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``a`` with the same row of ``b`` (two zero rows agree: 1)."""
    a = a.reshape(a.shape[0], -1)
    b = b.reshape(b.shape[0], -1)
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    dot = np.sum(a * b, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = dot / (na * nb)
    both_zero = (na == 0) & (nb == 0)
    cos = np.where(both_zero, 1.0, cos)  # two zero rows agree; one zero row gives NaN -> fails the bound
    return cos


def check_parity(
    reference: Callable[[torch.Tensor], torch.Tensor],
    onnx_path: str | Path,
    inputs: Sequence[torch.Tensor],
    *,
    output_name: str,
    fp16: bool = False,
    compare_top1: bool = False,
    repeats: int = 3,
) -> dict[str, Any]:
    """Compare onnxruntime (CPUExecutionProvider) on ``onnx_path`` with ``reference`` on every input.

    Raises :class:`ParityError` (naming the batch size, metric, measured value and bound) on the first batch
    that fails; otherwise returns ``{"provider", "providers", "graph", "bounds", "batches": [...]}`` with one
    entry per input: batch_size, max_abs_error, scale, min_cosine, [top1_agreement], ort_seconds, torch_seconds.
    """
    import onnxruntime as ort

    if not inputs:
        raise ValueError("check_parity needs at least one input batch")
    repeats = max(1, int(repeats))
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    providers = session.get_providers()
    input_name = session.get_inputs()[0].name
    if output_name not in [o.name for o in session.get_outputs()]:
        raise ParityError(f"graph {onnx_path} has no output {output_name!r} "
                          f"(outputs: {[o.name for o in session.get_outputs()]})")

    bounds: dict[str, Any] = ({"min_cosine": FP16_MIN_COSINE} if fp16 else
                              {"max_abs_error_rel": FP32_MAX_ABS_REL, "min_cosine": FP32_MIN_COSINE})
    if compare_top1:
        bounds["top1_agreement"] = 1.0
    report: dict[str, Any] = {"provider": providers[0], "providers": providers, "graph": str(onnx_path),
                              "precision": "fp16" if fp16 else "fp32", "bounds": bounds, "batches": []}

    for x in inputs:
        x = torch.as_tensor(x).float().contiguous()
        batch = int(x.shape[0])
        feed = {input_name: x.detach().cpu().numpy().astype(np.float32, copy=False)}
        ort_times: list[float] = []
        torch_times: list[float] = []
        ort_out = ref_out = None
        with torch.no_grad():
            for _ in range(repeats):
                t0 = time.perf_counter()
                out = session.run([output_name], feed)[0]
                ort_times.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                ref = reference(x)
                torch_times.append(time.perf_counter() - t0)
                if ort_out is None:
                    ort_out, ref_out = out, ref
        if not isinstance(ref_out, torch.Tensor):
            raise TypeError(f"reference must return a torch.Tensor, got {type(ref_out).__name__}")
        r = ref_out.detach().cpu().double().numpy()
        o = np.asarray(ort_out, dtype=np.float64)
        entry: dict[str, Any] = {"batch_size": batch, "output_shape": list(o.shape),
                                 "ort_seconds": statistics.median(ort_times),
                                 "torch_seconds": statistics.median(torch_times)}
        report["batches"].append(entry)

        def fail(metric: str, value: Any, bound: str) -> ParityError:
            return ParityError(f"parity failed at batch size {batch} ({report['precision']} graph {onnx_path}): "
                               f"{metric} = {value} violates bound {bound}", report)

        if o.shape != r.shape:
            raise fail("output shape", list(o.shape), f"== reference shape {list(r.shape)}")
        scale = max(1.0, float(np.max(np.abs(r)))) if r.size else 1.0
        max_abs = float(np.max(np.abs(o - r))) if r.size else 0.0
        if not np.all(np.isfinite(o)):
            max_abs = float("nan")
        cos = row_cosines(o, r)
        min_cos = float(np.min(cos)) if cos.size else 1.0
        if np.isnan(cos).any():
            min_cos = float("nan")
        entry.update(max_abs_error=max_abs, scale=scale, min_cosine=min_cos)
        if compare_top1:
            agree = o.reshape(batch, -1).argmax(axis=1) == r.reshape(batch, -1).argmax(axis=1)
            entry["top1_agreement"] = float(agree.mean()) if agree.size else 1.0

        if not fp16:
            bound = FP32_MAX_ABS_REL * scale
            if not max_abs <= bound:  # also catches NaN
                raise fail("max_abs_error", f"{max_abs:.3e}",
                           f"<= {bound:.3e} ({FP32_MAX_ABS_REL:g} x output scale {scale:.4g})")
        min_bound = FP16_MIN_COSINE if fp16 else FP32_MIN_COSINE
        if not min_cos >= min_bound:
            raise fail("min_cosine", f"{min_cos:.7f}", f">= {min_bound}")
        if compare_top1 and entry["top1_agreement"] < 1.0:
            bad = [int(i) for i in np.flatnonzero(~agree)]
            raise fail("top1_agreement", f"{entry['top1_agreement']:.4f} (rows {bad[:10]} differ)", "== 1.0")
    return report
