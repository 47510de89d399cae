"""Graph rules for exported ONNX encoders: a graph that passes loads in onnxruntime and parses in TensorRT.

``check_graph`` runs every rule, collects *all* violations and raises one :class:`GraphCheckError` listing
them (each line ``[rule] message`` naming the node or input concerned); on success it returns a report
dict for ``export_report.json``.

Rules (names as they appear in ``checks_passed`` and in error messages):

``onnx_checker``        ``onnx.checker.check_model(full_check=True)`` passes (on the file when given a path).
``single_file``         no tensor stored as external data (``model.onnx.data`` beside the graph).
``input_signature``     exactly one input ``video``, float32, rank 5 ``[batch, 3, T, H, W]``; dim 0 dynamic,
                        dims 1-4 fixed and equal to ``input_shape[1:]``.
``output_signature``    outputs named exactly ``output_names`` (in order), float32.
``batchnorm_folded``    no ``BatchNormalization`` node (eval-mode exports fold BN into the convolutions).
``opset_ir_version``    default-domain opset <= ``max_opset`` and IR version <= ``max_ir_version``.
``allowed_ops``         every default-domain op in ``allowed_ops``; any other domain is a violation.
``constant_axes_and_shapes``  every ``axes`` input (Reduce*/Squeeze/Unsqueeze/Slice) and the ``shape`` input of
                        Reshape/Expand is an initializer or a ``Constant`` node's output, never a graph input
                        or a computed tensor.
``no_shape_derived_reshape``  no Reshape whose shape input depends (transitively) on a ``Shape`` node.  Such a
                        shape is also non-constant, so rule ``constant_axes_and_shapes`` fires as well; this
                        rule names the ``Shape`` node at the root of the chain, which is the thing to fix.

INT8 (QDQ) graphs, with ``quantized="onnxruntime"`` or ``"tensorrt"`` (``QuantizeLinear`` and
``DequantizeLinear`` then join the allowed ops). These are TensorRT's explicit-quantization rules; the
onnxruntime graph (uint8 activations with zero points) must pass all but the last:

``qdq_no_integer_ops``  no ``QLinear*``, ``ConvInteger``, ``MatMulInteger`` or dynamic-quantization op (the
                        QOperator form): TensorRT parses quantization only as Q/DQ pairs around float ops.
``qdq_constant_scales`` every Q/DQ scale and zero point is an initializer; scales are finite and > 0.
                        TensorRT reads them at build time and refuses computed ones.
``qdq_around_compute``  each input of every Conv, Gemm and MatMul that TensorRT fuses into an int8 kernel
                        (data and weights; not the bias) comes from a ``DequantizeLinear``: an activation
                        through a ``QuantizeLinear`` -> ``DequantizeLinear`` pair, a weight from a constant.
                        Without them TensorRT runs that layer in float.
``qdq_int8_zero_points`` (``"tensorrt"`` only) every Q/DQ has an int8 zero point and all of them are 0: TensorRT
                        supports symmetric int8 only (a missing zero point means uint8).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import onnx
import onnx.numpy_helper

__all__ = [
    "GraphCheckError",
    "MAX_IR_VERSION",
    "QDQ_OPS",
    "QDQ_RULES",
    "RULES",
    "TENSORRT_OPS",
    "TRT10_MAX_OPSET",
    "TRT8_MAX_OPSET",
    "check_graph",
    "qdq_violations",
]


class GraphCheckError(ValueError):
    """An exported graph breaks one or more rules; ``violations`` holds ``(rule, message)`` pairs."""

    def __init__(self, violations: Sequence[tuple[str, str]]) -> None:
        self.violations = list(violations)
        lines = "\n".join(f"  [{rule}] {msg}" for rule, msg in self.violations)
        super().__init__(f"ONNX graph check failed ({len(self.violations)} violation(s)):\n{lines}")


# Allow-list of ONNX ops, taken from TensorRT 10's "Supported ONNX Operators" matrix (onnx-tensorrt,
# docs/operators.md) and restricted to what our encoders (R3D, R(2+1)D, C3D + heads) actually need, so that a
# new op in an export is a deliberate decision rather than a surprise at engine-build time:
#   Conv                                  3-D convolutions (Conv3d, the (2+1)D factorised convs)
#   Relu, Clip, Max                       activations (Clip/Max also appear as clamp in L2 normalisation)
#   Add, Mul, Sub, Div, Sqrt, Pow         residual adds, normalisation arithmetic
#   ReduceMean, ReduceL2, ReduceSumSquare global pooling (dynamo exports mean over T,H,W) and L2 norms
#   GlobalAveragePool, AveragePool, MaxPool  pooling (TorchScript exporter, C3D's max pools)
#   Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Expand, Concat, Slice  layout ops (constant shapes only)
#   Gemm, MatMul                          linear heads (projection, classifier)
#   Cast, Constant, Identity              exporter plumbing
#   BatchNormalization                    parsed by TensorRT, but rule ``batchnorm_folded`` rejects it anyway:
#                                         eval-mode exports must fold it into Conv weights
#   Shape                                 parsed by TensorRT, allowed only when no Reshape depends on it
#                                         (rule ``no_shape_derived_reshape``)
# Deliberately absent (all exist in TensorRT but have no place in our graphs, and most signal an export gone
# wrong): Gather/NonZero/CumSum/Loop/If/Erf (GELU)/data-dependent shape ops.
TENSORRT_OPS: frozenset[str] = frozenset({
    "Conv", "Relu", "Add", "Mul", "Sub", "Div", "ReduceMean", "GlobalAveragePool", "AveragePool", "MaxPool",
    "Reshape", "Flatten", "Gemm", "MatMul", "Transpose", "Squeeze", "Unsqueeze", "Concat", "Slice", "Cast",
    "Constant", "Identity", "BatchNormalization", "Sqrt", "Pow", "ReduceL2", "ReduceSumSquare", "Clip", "Max",
    "Expand", "Shape",
})

MAX_IR_VERSION = 10  # onnxruntime 1.31 accepts up to IR 13 but refuses onnx 1.23's default IR 14; exports carry 8-10
TRT10_MAX_OPSET = 20
TRT8_MAX_OPSET = 17

RULES = (
    "onnx_checker", "single_file", "input_signature", "output_signature", "batchnorm_folded",
    "opset_ir_version", "allowed_ops", "constant_axes_and_shapes", "no_shape_derived_reshape",
)
#: Rules of an INT8 graph for each runtime (``check_graph(quantized=...)``), after :data:`RULES`.
QDQ_RULES: dict[str, tuple[str, ...]] = {
    "onnxruntime": ("qdq_no_integer_ops", "qdq_constant_scales", "qdq_around_compute"),
    "tensorrt": ("qdq_no_integer_ops", "qdq_constant_scales", "qdq_around_compute", "qdq_int8_zero_points"),
}
QDQ_OPS: frozenset[str] = frozenset({"QuantizeLinear", "DequantizeLinear"})
#: QOperator-form ops (``quantize_static(quant_format=QOperator)``, dynamic quantization): not TensorRT's.
_INTEGER_OPS = frozenset({"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear", "MatMulIntegerToFloat",
                          "DynamicQuantizeMatMul"})
#: The compute ops TensorRT runs in int8 when Q/DQ feed them, and which of their inputs must be quantized.
_QUANTIZED_INPUTS: dict[str, tuple[int, ...]] = {"Conv": (0, 1), "Gemm": (0, 1), "MatMul": (0, 1)}

# (op_type -> input positions that must be constant). Axes are inputs from opset 13 (ReduceSum, Squeeze,
# Unsqueeze) or 18 (the other Reduce* ops); at older opsets they are attributes and there is no input.
_CONST_INPUTS: dict[str, tuple[tuple[int, str], ...]] = {
    **{op: ((1, "axes"),) for op in (
        "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
        "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "Squeeze", "Unsqueeze")},
    "Slice": ((3, "axes"),),
    "Reshape": ((1, "shape"),),
    "Expand": ((1, "shape"),),
}


def _dtype_name(elem_type: int) -> str:
    try:
        return str(onnx.helper.tensor_dtype_to_np_dtype(elem_type))  # "float32", "float16", "int64", ...
    except (KeyError, ValueError, TypeError):
        pass
    try:
        return onnx.TensorProto.DataType.Name(elem_type).lower()
    except ValueError:
        return f"unknown({elem_type})"


def _shape_of(value_info: onnx.ValueInfoProto) -> list[int | str] | None:
    tt = value_info.type.tensor_type
    if not tt.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in tt.shape.dim]


def _describe(value_info: onnx.ValueInfoProto) -> dict[str, Any]:
    return {"name": value_info.name, "dtype": _dtype_name(value_info.type.tensor_type.elem_type),
            "shape": _shape_of(value_info)}


def _walk_graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _walk_graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _walk_graphs(g)


def _all_tensors(model: onnx.ModelProto) -> Iterator[tuple[str, onnx.TensorProto]]:
    for graph in _walk_graphs(model.graph):
        for t in graph.initializer:
            yield f"initializer {t.name!r}", t
        for st in graph.sparse_initializer:
            yield f"sparse initializer {st.values.name!r}", st.values
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR:
                    yield f"node {node.name or node.op_type!r} attribute {attr.name!r}", attr.t
                elif attr.type == onnx.AttributeProto.TENSORS:
                    for t in attr.tensors:
                        yield f"node {node.name or node.op_type!r} attribute {attr.name!r}", t


def _node_label(node: onnx.NodeProto) -> str:
    return f"{node.op_type} node {node.name!r}" if node.name else f"{node.op_type} node (output {node.output[0]!r})"


def check_graph(
    model: onnx.ModelProto | str | Path,
    *,
    input_shape: tuple[int | str, ...],
    output_names: Sequence[str],
    allowed_ops: frozenset[str] | set[str] = TENSORRT_OPS,
    max_ir_version: int = MAX_IR_VERSION,
    max_opset: int = TRT10_MAX_OPSET,
    quantized: str | None = None,
) -> dict[str, Any]:
    """Run every graph rule on ``model`` (a ModelProto or a path to a ``.onnx`` file).

    Raises :class:`GraphCheckError` listing every violation; otherwise returns the report dict.
    ``input_shape`` is ``(batch, 3, T, H, W)``; its first entry is ignored (the batch axis must be dynamic).
    ``quantized``: ``"onnxruntime"`` or ``"tensorrt"`` for an INT8 QDQ graph (the rules of
    :data:`QDQ_RULES` for that runtime run too, and Q/DQ ops are allowed).
    """
    if quantized is not None and quantized not in QDQ_RULES:
        raise ValueError(f"quantized must be None or one of {', '.join(QDQ_RULES)}, got {quantized!r}")
    if quantized is not None:
        allowed_ops = frozenset(allowed_ops) | QDQ_OPS
    path: Path | None = None
    if isinstance(model, (str, Path)):
        path = Path(model)
        proto = onnx.load(str(path), load_external_data=False)
    elif isinstance(model, onnx.ModelProto):
        proto = model
    else:
        raise TypeError(f"model must be an onnx.ModelProto or a path, got {type(model).__name__}")

    violations: list[tuple[str, str]] = []
    failed: set[str] = set()

    def fail(rule: str, msg: str) -> None:
        violations.append((rule, msg))
        failed.add(rule)

    graph = proto.graph
    initializer_names = {t.name for t in graph.initializer} | {t.values.name for t in graph.sparse_initializer}
    real_inputs = [i for i in graph.input if i.name not in initializer_names]
    graph_input_names = {i.name for i in graph.input}

    # 1. onnx.checker (on the file when we have one: works for > 2 GB and resolves external data)
    try:
        onnx.checker.check_model(str(path) if path is not None else proto, full_check=True)
    except Exception as exc:  # onnx raises ValidationError, InferenceError, or plain errors on bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        fail("onnx_checker", f"onnx.checker.check_model(full_check=True) failed: {first}")

    # 2. single file
    external = [where for where, t in _all_tensors(proto) if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        more = f" (and {len(external) - 3} more)" if len(external) > 3 else ""
        fail("single_file", f"{len(external)} tensor(s) stored as external data, e.g. {', '.join(external[:3])}{more}; "
                            "export with external_data=False")

    # 3. input signature
    if len(real_inputs) != 1:
        fail("input_signature", f"expected exactly one graph input 'video', found {len(real_inputs)}: "
                                f"{[i.name for i in real_inputs]}")
    if real_inputs:
        vi = real_inputs[0]
        if vi.name != "video":
            fail("input_signature", f"input is named {vi.name!r}, expected 'video'")
        if vi.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            fail("input_signature", f"input {vi.name!r} has dtype "
                                    f"{_dtype_name(vi.type.tensor_type.elem_type)}, expected float32")
        tt = vi.type.tensor_type
        dims = list(tt.shape.dim) if tt.HasField("shape") else None
        want = tuple(input_shape)
        if len(want) != 5:
            raise ValueError(f"input_shape must be (batch, 3, T, H, W), got {input_shape!r}")
        if dims is None or len(dims) != 5:
            fail("input_signature", f"input {vi.name!r} has shape {_shape_of(vi)}, expected rank 5 [batch,3,T,H,W]")
        else:
            if dims[0].HasField("dim_value"):
                fail("input_signature", f"input {vi.name!r} dim 0 (batch) is fixed to {dims[0].dim_value}; "
                                        "it must be dynamic (symbolic)")
            for axis, (d, w) in enumerate(zip(dims[1:], want[1:]), start=1):
                if not d.HasField("dim_value"):
                    fail("input_signature", f"input {vi.name!r} dim {axis} is dynamic ({d.dim_param or '?'}); "
                                            f"only the batch axis may be, expected {w}")
                elif d.dim_value != w:
                    fail("input_signature", f"input {vi.name!r} dim {axis} is {d.dim_value}, expected {w} "
                                            f"(expected shape [batch, {', '.join(map(str, want[1:]))}])")

    # 4. output signature
    got_out = [o.name for o in graph.output]
    if got_out != list(output_names):
        fail("output_signature", f"outputs are named {got_out}, expected {list(output_names)}")
    for o in graph.output:
        if o.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            fail("output_signature", f"output {o.name!r} has dtype {_dtype_name(o.type.tensor_type.elem_type)}, "
                                     "expected float32")

    # 5. BatchNorm folded
    all_nodes = [n for g in _walk_graphs(graph) for n in g.node]
    for n in all_nodes:
        if n.op_type == "BatchNormalization" and n.domain in ("", "ai.onnx"):
            fail("batchnorm_folded", f"BatchNorm not folded: {_node_label(n)} is in the graph "
                                     "(export the model in eval mode so BN folds into the convolutions)")

    # 6. opset / IR version
    opsets = {(o.domain or "ai.onnx"): o.version for o in proto.opset_import}
    opset = opsets.get("ai.onnx")
    if opset is None:
        fail("opset_ir_version", "no opset import for the default ONNX domain")
    elif opset > max_opset:
        fail("opset_ir_version", f"default-domain opset {opset} > {max_opset} (the newest this TensorRT target parses)")
    if proto.ir_version > max_ir_version:
        fail("opset_ir_version", f"IR version {proto.ir_version} > {max_ir_version} (onnxruntime refuses newer IR)")

    # 7. allowed ops
    bad_ops: Counter[str] = Counter()
    first_node: dict[str, onnx.NodeProto] = {}
    for n in all_nodes:
        key = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op_type}"
        if key not in allowed_ops:  # a custom-domain key ("dom::Op") is never in the allow-list
            bad_ops[key] += 1
            first_node.setdefault(key, n)
    for op, count in sorted(bad_ops.items()):
        fail("allowed_ops", f"op {op!r} ({count} node(s), e.g. {_node_label(first_node[op])}) "
                            "is not in the TensorRT allow-list")

    # 8. constant axes / shape inputs, 9. no Shape-derived Reshape (main graph)
    producer = {out: n for n in graph.node for out in n.output if out}
    constant_values = (initializer_names - graph_input_names) | {
        out for n in graph.node if n.op_type == "Constant" and n.domain in ("", "ai.onnx") for out in n.output}

    def shape_root(name: str) -> onnx.NodeProto | None:
        seen: set[str] = set()
        stack = [name]
        while stack:
            cur = stack.pop()
            if cur in seen:
                continue
            seen.add(cur)
            node = producer.get(cur)
            if node is None:
                continue
            if node.op_type == "Shape":
                return node
            stack.extend(i for i in node.input if i)
        return None

    for n in graph.node:
        if n.domain not in ("", "ai.onnx"):
            continue
        for pos, what in _CONST_INPUTS.get(n.op_type, ()):
            if len(n.input) <= pos or not n.input[pos]:
                continue
            src = n.input[pos]
            if src in constant_values:
                continue
            if src in graph_input_names:
                origin = "a graph input"
            elif src in producer:
                origin = f"computed by {_node_label(producer[src])}"
            else:
                origin = "undefined"
            fail("constant_axes_and_shapes", f"{_node_label(n)}: {what} input {src!r} is {origin}, "
                                             "not an initializer or Constant")
        if n.op_type == "Reshape" and len(n.input) > 1 and n.input[1]:
            root = shape_root(n.input[1])
            if root is not None:
                fail("no_shape_derived_reshape", f"{_node_label(n)}: shape input {n.input[1]!r} derives from "
                                                 f"{_node_label(root)} (dynamic Shape->...->Reshape chain)")

    if quantized is not None:
        for rule, msg in qdq_violations(graph, tensorrt=quantized == "tensorrt"):
            fail(rule, msg)

    if violations:
        raise GraphCheckError(violations)

    report: dict[str, Any] = {
        "opset": opset,
        "opset_imports": opsets,
        "ir_version": proto.ir_version,
        "producer": f"{proto.producer_name} {proto.producer_version}".strip(),
        "op_histogram": dict(sorted(Counter(n.op_type for n in all_nodes).items())),
        "num_nodes": len(all_nodes),
        "num_initializers": len(graph.initializer),
        "inputs": [_describe(i) for i in real_inputs],
        "outputs": [_describe(o) for o in graph.output],
        "checks_passed": [r for r in RULES + QDQ_RULES.get(quantized or "", ()) if r not in failed],
        "limits": {"max_opset": max_opset, "max_ir_version": max_ir_version},
    }
    if quantized is not None:
        report["quantized"] = {"runtime": quantized, **_qdq_summary(graph)}
    if path is not None:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        report.update(path=str(path), file_size_bytes=path.stat().st_size, sha256=digest.hexdigest())
    return report


# ---- INT8 (QDQ) rules ------------------------------------------------------------------------


def qdq_violations(graph: onnx.GraphProto, *, tensorrt: bool) -> list[tuple[str, str]]:
    """``(rule, message)`` for every break of the QDQ rules (module docstring) in ``graph``;
    ``tensorrt`` adds rule ``qdq_int8_zero_points``."""
    initializers = {t.name: t for t in graph.initializer}
    producer = {out: n for n in graph.node for out in n.output if out}
    found: list[tuple[str, str]] = []
    for n in graph.node:
        if n.op_type.startswith("QLinear") or n.op_type in _INTEGER_OPS:
            found.append(("qdq_no_integer_ops", f"{_node_label(n)} is a QOperator-form integer op; quantize "
                                                "with quant_format=QDQ (TensorRT parses Q/DQ pairs only)"))
        if n.op_type in QDQ_OPS:
            found += _scale_violations(n, initializers)
            if tensorrt:
                found += _zero_point_violations(n, initializers)
        if n.domain in ("", "ai.onnx") and n.op_type in _QUANTIZED_INPUTS:
            found += _compute_input_violations(n, producer, initializers)
    return found


def _scale_violations(node: onnx.NodeProto, initializers: dict[str, onnx.TensorProto]) -> list[tuple[str, str]]:
    found = []
    for pos, what in ((1, "scale"), (2, "zero point")):
        if len(node.input) <= pos or not node.input[pos]:
            continue
        name = node.input[pos]
        if name not in initializers:
            found.append(("qdq_constant_scales", f"{_node_label(node)}: {what} {name!r} is not an initializer "
                                                 "(TensorRT needs constant Q/DQ parameters)"))
        elif pos == 1:
            scale = onnx.numpy_helper.to_array(initializers[name])
            if not (scale.size and (scale > 0).all() and np.isfinite(scale).all()):
                found.append(("qdq_constant_scales", f"{_node_label(node)}: scale {name!r} has values that are "
                                                     "not finite and > 0"))
    return found


def _zero_point_violations(node: onnx.NodeProto, initializers: dict[str, onnx.TensorProto]) -> list[tuple[str, str]]:
    if len(node.input) < 3 or not node.input[2]:
        return [("qdq_int8_zero_points", f"{_node_label(node)} has no zero point, which means uint8; TensorRT "
                                         "needs an int8 zero point of 0")]
    tensor = initializers.get(node.input[2])
    if tensor is None:
        return []  # rule qdq_constant_scales names it
    if tensor.data_type != onnx.TensorProto.INT8:
        bias = " (a quantized bias: keep biases float)" if tensor.data_type == onnx.TensorProto.INT32 else ""
        return [("qdq_int8_zero_points", f"{_node_label(node)}: zero point {node.input[2]!r} is "
                                         f"{_dtype_name(tensor.data_type)}{bias}, TensorRT needs int8 (symmetric)")]
    values = onnx.numpy_helper.to_array(tensor)
    if values.any():
        return [("qdq_int8_zero_points", f"{_node_label(node)}: zero point {node.input[2]!r} is "
                                         f"{values.ravel()[:4].tolist()}, TensorRT needs 0 (symmetric)")]
    return []


def _compute_input_violations(node: onnx.NodeProto, producer: dict[str, onnx.NodeProto],
                              initializers: dict[str, onnx.TensorProto]) -> list[tuple[str, str]]:
    found = []
    for pos in _QUANTIZED_INPUTS[node.op_type]:
        if len(node.input) <= pos or not node.input[pos]:
            continue
        name = node.input[pos]
        dq = producer.get(name)
        if dq is None or dq.op_type != "DequantizeLinear":
            found.append(("qdq_around_compute", f"{_node_label(node)}: input {pos} {name!r} does not come from a "
                                                "DequantizeLinear, so TensorRT runs this layer in float"))
            continue
        source = dq.input[0]
        quantize = producer.get(source)
        if source not in initializers and (quantize is None or quantize.op_type != "QuantizeLinear"):
            found.append(("qdq_around_compute", f"{_node_label(node)}: input {pos} comes from {_node_label(dq)}, "
                                                "which is fed neither by a QuantizeLinear nor by a constant"))
    return found


def _qdq_summary(graph: onnx.GraphProto) -> dict[str, Any]:
    """What was quantized: Q/DQ counts and the compute ops fed by DequantizeLinear on every input rule
    ``qdq_around_compute`` covers."""
    producer = {out: n for n in graph.node for out in n.output if out}
    compute = [n for n in graph.node if n.domain in ("", "ai.onnx") and n.op_type in _QUANTIZED_INPUTS]
    fed = [n for n in compute if all(getattr(producer.get(n.input[p]), "op_type", None) == "DequantizeLinear"
                                     for p in _QUANTIZED_INPUTS[n.op_type] if p < len(n.input) and n.input[p])]
    kinds = Counter(n.op_type for n in graph.node)
    return {"quantize_nodes": kinds["QuantizeLinear"], "dequantize_nodes": kinds["DequantizeLinear"],
            "compute_ops": len(compute), "quantized_compute_ops": len(fed)}
