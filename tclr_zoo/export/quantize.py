"""Static INT8 quantization of an exported fp32 graph: one calibration, two QDQ graphs.

``quantize_int8`` calibrates the activation ranges of ``onnx/model.onnx`` once, on preprocessed clips
(``calibration.py``), and writes from those same ranges:

- ``model.int8.onnx`` for onnxruntime ("U8S8"): uint8 activations with a zero point (asymmetric, so a
  ReLU output uses all 256 levels), int8 weights symmetric per output channel. onnxruntime's x86
  kernels run this form fastest; on this project's 2-core x86 machine it is the one that beats the
  torch backend (BENCHMARKS.md, P4), while S8S8 runs about half as fast there.
- ``model.int8.trt.onnx`` for TensorRT ("S8S8"): int8 activations and weights, symmetric, zero point 0,
  per-channel weights, float biases: the only QDQ form TensorRT's explicit quantization accepts
  (``graph_checks``, ``quantized="tensorrt"``). It builds with ``export/build_trt_engine.py --int8``, no
  calibrator.

Both are QDQ graphs (``QuantizeLinear``/``DequantizeLinear`` pairs around float ops), not QOperator
graphs (``QLinearConv``...), which TensorRT cannot parse.

Calibration methods (``onnxruntime.quantization.CalibrationMethod``):

- ``minmax``: the range of everything seen. One pass, no histograms: the fastest calibration.
- ``entropy``: TensorRT's KL-divergence threshold (2048-bin histograms, 128 quantized bins).
  ``quantize_static`` would run it with 128 bins for both, where the search has a single candidate,
  the full range: it would be MinMax with extra cost. So this module runs the calibrator itself with
  TensorRT's bin counts and hands the ranges to ``quantize_static`` through its calibration cache.
- ``percentile``: the 99.999th percentile of |x| (2048 bins): the rare largest activations saturate,
  the rest get finer steps.

:data:`~tclr_zoo.export.int8_options.DEFAULT_METHOD` is ``percentile``, measured (export/README.md has
the table): four models (the demo model; R3D-18, R3D-10/4 and C3D with random weights), 32 calibration
clips from the synthetic set's train list, the gate on 64 clips of its test list, measured when the gate
counted bare top-1 agreement (near-ties as errors; export/README.md has why it no longer does). An export
passed only when both graphs passed, and with percentile three of the four did, with minmax one: minmax's
TensorRT graphs agreed on 0.92-0.95 of the queries, percentile's on 0.94-1.0, with equal or higher
cosines (symmetric int8 leaves the negative half of its codes unused after a ReLU, so a range set by
the single largest activation costs the TensorRT graph twice); the onnxruntime graphs passed with both
(0.95-0.98). Entropy was the worst on both models it ran on (cosine 0.990 on the demo model, agreement
0.89-0.92): KL thresholds clip more than these embeddings can lose. Percentile calibrates about 3x
slower than minmax (R3D-18, 32 clips: 50 s against 17 s on 2 cores).
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import onnx

from ..constants import INT8_NAME, INT8_TRT_NAME
from ..models.preprocessing import Preprocessing
from .int8_options import DEFAULT_METHOD
from .onnx_export import INPUT_NAME, MAX_IR_VERSION

#: name -> (onnxruntime CalibrationMethod name, calibrator options); the names are int8_options.CALIBRATION_METHODS
METHODS: dict[str, tuple[str, dict[str, Any]]] = {
    "minmax": ("MinMax", {}),
    "entropy": ("Entropy", {"num_bins": 2048, "num_quantized_bins": 128}),
    "percentile": ("Percentile", {"num_bins": 2048, "percentile": 99.999}),
}
CALIBRATION_BATCH = 4  # clips per calibration run: the augmented graph outputs every activation it calibrates

#: flavour -> (file name, activation type, extra_options of quantize_static)
FLAVOURS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "onnxruntime": (INT8_NAME, "QUInt8", {"WeightSymmetric": True}),
    # TensorRT dequantizes int8 only: biases stay float (it fuses them into the int8 kernel itself).
    "tensorrt": (INT8_TRT_NAME, "QInt8", {"ActivationSymmetric": True, "WeightSymmetric": True,
                                          "QuantizeBias": False}),
}
_FLAVOUR_TEXT = {"onnxruntime": "U8S8: uint8 asymmetric activations, int8 symmetric per-channel weights",
                 "tensorrt": "S8S8: int8 symmetric activations and per-channel weights, zero points 0, float biases"}


class QuantizationError(RuntimeError):
    """onnxruntime could not calibrate or quantize the graph (a bug or an unsupported graph, exit 1)."""


def quantize_int8(fp32_graph: str | Path, clips: np.ndarray, out_dir: str | Path, *,
                  method: str = DEFAULT_METHOD, input_range: tuple[float, float] | None = None) -> dict[str, Any]:
    """Calibrate ``fp32_graph`` on ``clips`` (float32 ``[N, 3, T, H, W]``) with ``method`` and write both
    flavours into ``out_dir``.

    ``input_range``: the range the graph's input can take (:func:`input_range`), used for its
    quantization instead of the range the clips happen to cover: a calibration set without one white
    pixel would otherwise clip every brighter input (measured on the demo model, calibrated on the tiny
    synthetic set's train videos, whose pixels reach 0.83: mean cosine 0.972 on its test videos, 0.9997
    with the preprocessing's [0, 1]).

    Returns ``{"method", "calibration_clips", "calibration_seconds", "input_range", "graphs": {flavour:
    {"path", "name", "scheme", "seconds"}}}``.
    """
    if method not in METHODS:
        raise ValueError(f"calibration method must be one of {', '.join(METHODS)}, got {method!r}")
    clips = np.ascontiguousarray(clips, dtype=np.float32)
    if clips.ndim != 5 or len(clips) == 0:
        raise ValueError(f"calibration clips must be a non-empty array [N, 3, T, H, W], got {list(clips.shape)}")
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="tclr-int8-") as tmp, _quiet_onnxruntime():
        prepared = _preprocess(Path(fp32_graph), Path(tmp))
        start = time.perf_counter()
        cache = calibrate(prepared, clips, method, Path(tmp))
        report: dict[str, Any] = {"method": method, "calibration_clips": len(clips),
                                  "calibration_seconds": time.perf_counter() - start,
                                  "input_range": list(input_range) if input_range else None, "graphs": {}}
        for flavour in FLAVOURS:
            start = time.perf_counter()
            path = quantize_flavour(prepared, cache, out_dir, flavour, method, input_range)
            report["graphs"][flavour] = {"name": path.name, "path": str(path), "scheme": _FLAVOUR_TEXT[flavour],
                                         "seconds": time.perf_counter() - start}
    return report


def _preprocess(fp32_graph: Path, tmp: Path) -> Path:
    """onnxruntime's recommended pre-processing (shape inference and graph optimisation) before
    quantizing; symbolic shape inference is skipped: the shapes are static but for the batch axis."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out = tmp / "prepared.onnx"
    quant_pre_process(str(fp32_graph), str(out), skip_symbolic_shape=True)
    return out


def calibrate(graph: Path, clips: np.ndarray, method: str, tmp: Path) -> Path:
    """Activation ranges of ``graph`` over ``clips`` -> a calibration cache file (JSON) that
    ``quantize_static`` reads instead of calibrating again: one calibration for both flavours."""
    from onnxruntime.quantization import CalibrationMethod, create_calibrator, save_tensors_data
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    name, options = METHODS[method]
    try:
        calibrator = create_calibrator(graph, sorted(set(QDQRegistry) | set(QLinearOpsRegistry)),
                                       augmented_model_path=str(tmp / "augmented.onnx"),
                                       calibrate_method=CalibrationMethod[name], extra_options=dict(options))
        # One batch per call: each call folds its batch into the ranges (histograms) and drops the
        # activations, where one call over all clips would hold every activation of every clip at once.
        for start in range(0, len(clips), CALIBRATION_BATCH):
            calibrator.collect_data(ClipReader(clips[start:start + CALIBRATION_BATCH]))
        ranges = calibrator.compute_data()
    except Exception as err:  # onnxruntime raises plain exceptions of several kinds here
        raise QuantizationError(f"calibration ({method}) of {graph.name} failed: {err}") from err
    cache = tmp / f"calibration.{method}.json"
    save_tensors_data(ranges, cache)
    return cache


def input_range(preprocessing: Preprocessing | Mapping[str, Any]) -> tuple[float, float]:
    """The values a model's input can take: its pixel ``value_range`` after the ``(x - mean) / std`` of
    its ``preprocessing`` (a :class:`Preprocessing` or its config.json section), over all channels (the
    input is quantized per tensor)."""
    lo, hi = Preprocessing.from_config(preprocessing).clip_range()
    return float(lo.min()), float(hi.max())


def quantize_flavour(prepared: Path, cache: Path, out_dir: Path, flavour: str, method: str,
                     input_range: tuple[float, float] | None = None) -> Path:
    """One QDQ graph from the cached ranges: per-channel symmetric int8 weights, activations as ``flavour``,
    the input quantized over ``input_range`` when given."""
    import inspect

    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        raise QuantizationError("this onnxruntime's quantize_static has no calibration_cache_path: "
                                "INT8 export needs onnxruntime >= 1.31")
    file_name, activation, extra = FLAVOURS[flavour]
    extra = dict(extra)
    if input_range is not None:
        extra["TensorQuantOverrides"] = {INPUT_NAME: [{"rmin": np.float32(input_range[0]),
                                                       "rmax": np.float32(input_range[1])}]}
    out = out_dir / file_name
    try:
        quantize_static(str(prepared), str(out), None, quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType[activation], weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod[METHODS[method][0]], extra_options=extra,
                        calibration_cache_path=str(cache))
    except Exception as err:
        raise QuantizationError(f"quantizing {prepared.name} ({flavour}) failed: {err}") from err
    _finalise(out, flavour, method)
    return out


def _finalise(path: Path, flavour: str, method: str) -> None:
    """Keep only the opset imports the nodes use (pre-processing adds every domain onnxruntime knows,
    which a TensorRT parser need not), hold the IR version the graph rules allow, and record how the
    graph was made in its metadata."""
    model = onnx.load(str(path))
    used = {node.domain or "" for node in model.graph.node}
    kept = [o for o in model.opset_import if (o.domain or "") in used or (o.domain or "") in ("", "ai.onnx")]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    meta = {"tclr_zoo.int8": _FLAVOUR_TEXT[flavour], "tclr_zoo.calibration": method}
    for entry in list(model.metadata_props):
        if entry.key in meta:
            model.metadata_props.remove(entry)
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))


class ClipReader:
    """onnxruntime's ``CalibrationDataReader`` over preprocessed clips, ``CALIBRATION_BATCH`` at a time."""

    def __init__(self, clips: np.ndarray, batch: int = CALIBRATION_BATCH) -> None:
        self.clips, self.batch, self.position = clips, batch, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= len(self.clips):
            return None
        part = self.clips[self.position:self.position + self.batch]
        self.position += self.batch
        return {INPUT_NAME: part}

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return iter(self.get_next, None)

    def __len__(self) -> int:
        return -(-len(self.clips) // self.batch)

    def rewind(self) -> None:
        self.position = 0


@contextmanager
def _quiet_onnxruntime() -> Iterator[None]:
    """quantize_static logs "consider pre-processing" warnings (we do) and the histogram calibrators
    print progress lines: keep the export's output to its own summary."""
    import contextlib
    import io

    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


__all__ = ["ClipReader", "DEFAULT_METHOD", "FLAVOURS", "METHODS", "QuantizationError", "calibrate",
           "input_range", "quantize_flavour", "quantize_int8"]
