"""Graph rules for exported ONNX encoders: a graph that passes loads in onnxruntime and parses in TensorRT.

Each rule is one small function over the graph, listed in :data:`GRAPH_RULES` with what it checks, why,
and which graphs it applies to: the float graphs (fp32, and fp16, whose input and output stay float32)
and the INT8 QDQ graphs of each runtime (``check_graph(quantized="onnxruntime" | "tensorrt")``), which
must pass the float rules too. Adding a rule is adding a function and a row.

:func:`check_graph` runs the rules that apply, collects *all* violations and raises one
:class:`GraphCheckError` listing them (each line ``[rule] message`` naming the node or input concerned,
rules in table order); on success it returns a report dict for ``export_report.json``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx.numpy_helper

from ..atomic import file_sha256

__all__ = [
    "EVERY_GRAPH",
    "FLOAT",
    "GRAPH_RULES",
    "GraphCheckError",
    "GraphFacts",
    "GraphTarget",
    "INT8_GRAPHS",
    "MAX_IR_VERSION",
    "QDQ_OPS",
    "QDQ_RULES",
    "RULES",
    "Rule",
    "TENSORRT_INT8",
    "TENSORRT_OPS",
    "TRT10_MAX_OPSET",
    "TRT8_MAX_OPSET",
    "check_graph",
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
_DEFAULT_DOMAINS = ("", "ai.onnx")


# ---- what the rules look at ------------------------------------------------------------------


@dataclass(frozen=True)
class GraphTarget:
    """What the caller asks of the graph: ``check_graph``'s arguments, checked once."""

    input_shape: tuple[int | str, ...]  # (batch, 3, T, H, W); the batch entry is ignored (must be dynamic)
    output_names: tuple[str, ...]
    allowed_ops: frozenset[str]  # with QDQ_OPS added for a quantized graph
    max_opset: int
    max_ir_version: int
    quantized: str | None  # None (fp32 / fp16 graph), "onnxruntime" or "tensorrt" (INT8 QDQ graph)


@dataclass(frozen=True)
class GraphFacts:
    """One model and what several rules read from it, computed once."""

    proto: onnx.ModelProto
    path: Path | None  # the .onnx file when check_graph was given one
    initializers: dict[str, onnx.TensorProto]  # main graph, by name
    initializer_names: frozenset[str]  # dense and sparse
    graph_input_names: frozenset[str]
    real_inputs: tuple[onnx.ValueInfoProto, ...]  # graph inputs that are not initializers
    all_nodes: tuple[onnx.NodeProto, ...]  # main graph and every subgraph
    producer: dict[str, onnx.NodeProto]  # main-graph tensor name -> the node that writes it
    opsets: dict[str, int]  # domain ("ai.onnx" for the default one) -> version

    @classmethod
    def read(cls, model: onnx.ModelProto | str | Path) -> GraphFacts:
        """The facts of a ModelProto or of a ``.onnx`` file (its external data, if any, is not loaded)."""
        path: Path | None = None
        if isinstance(model, (str, Path)):
            path = Path(model)
            proto = onnx.load(str(path), load_external_data=False)
        elif isinstance(model, onnx.ModelProto):
            proto = model
        else:
            raise TypeError(f"model must be an onnx.ModelProto or a path, got {type(model).__name__}")
        graph = proto.graph
        initializer_names = {t.name for t in graph.initializer} | {t.values.name for t in graph.sparse_initializer}
        return cls(proto=proto, path=path, initializers={t.name: t for t in graph.initializer},
                   initializer_names=frozenset(initializer_names),
                   graph_input_names=frozenset(i.name for i in graph.input),
                   real_inputs=tuple(i for i in graph.input if i.name not in initializer_names),
                   all_nodes=tuple(n for g in _walk_graphs(graph) for n in g.node),
                   producer={out: n for n in graph.node for out in n.output if out},
                   opsets={(o.domain or "ai.onnx"): o.version for o in proto.opset_import})

    @property
    def graph(self) -> onnx.GraphProto:
        return self.proto.graph

    def default_domain_nodes(self) -> Iterator[onnx.NodeProto]:
        """The main graph's nodes of the default ONNX domain."""
        return (n for n in self.graph.node if n.domain in _DEFAULT_DOMAINS)


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


# ---- the rules: each yields one message per violation ----------------------------------------


def _onnx_checker(g: GraphFacts, want: GraphTarget) -> Iterator[str]:
    try:  # on the file when we have one: works for > 2 GB and resolves external data
        onnx.checker.check_model(str(g.path) if g.path is not None else g.proto, full_check=True)
    except Exception as exc:  # noqa: BLE001 - onnx raises ValidationError, InferenceError, or plain errors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        yield f"onnx.checker.check_model(full_check=True) failed: {first}"


def _single_file(g: GraphFacts, want: GraphTarget) -> Iterator[str]:
    external = [where for where, t in _all_tensors(g.proto) if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        more = f" (and {len(external) - 3} more)" if len(external) > 3 else ""
        yield (f"{len(external)} tensor(s) stored as external data, e.g. {', '.join(external[:3])}{more}; "
               "export with external_data=False")


def _input_signature(g: GraphFacts, want: GraphTarget) -> Iterator[str]:
    if len(g.real_inputs) != 1:
        yield (f"expected exactly one graph input 'video', found {len(g.real_inputs)}: "
               f"{[i.name for i in g.real_inputs]}")
    if not g.real_inputs:
        return
    vi = g.real_inputs[0]
    if vi.name != "video":
        yield f"input is named {vi.name!r}, expected 'video'"
    if vi.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        yield f"input {vi.name!r} has dtype {_dtype_name(vi.type.tensor_type.elem_type)}, expected float32"
    yield from _input_dims(vi, want.input_shape)


def _input_dims(vi: onnx.ValueInfoProto, want: tuple[int | str, ...]) -> Iterator[str]:
    """Dim 0 dynamic, dims 1-4 fixed and equal to ``want[1:]``."""
    tt = vi.type.tensor_type
    dims = list(tt.shape.dim) if tt.HasField("shape") else None
    if dims is None or len(dims) != 5:
        yield f"input {vi.name!r} has shape {_shape_of(vi)}, expected rank 5 [batch,3,T,H,W]"
        return
    if dims[0].HasField("dim_value"):
        yield f"input {vi.name!r} dim 0 (batch) is fixed to {dims[0].dim_value}; it must be dynamic (symbolic)"
    for axis, (d, w) in enumerate(zip(dims[1:], want[1:]), start=1):
        if not d.HasField("dim_value"):
            yield (f"input {vi.name!r} dim {axis} is dynamic ({d.dim_param or '?'}); "
                   f"only the batch axis may be, expected {w}")
        elif d.dim_value != w:
            yield (f"input {vi.name!r} dim {axis} is {d.dim_value}, expected {w} "
                   f"(expected shape [batch, {', '.join(map(str, want[1:]))}])")


def _output_signature(g: GraphFacts, want: GraphTarget) -> Iterator[str]:
    got = [o.name for o in g.graph.output]
    if got != list(want.output_names):
        yield f"outputs are named {got}, expected {list(want.output_names)}"
    for o in g.graph.output:
        if o.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            yield f"output {o.name!r} has dtype {_dtype_name(o.type.tensor_type.elem_type)}, expected float32"


def _batchnorm_folded(g: GraphFacts, want: GraphTarget) -> Iterator[str]:
    for n in g.all_nodes:
        if n.op_type == "BatchNormalization" and n.domain in _DEFAULT_DOMAINS:
            yield (f"BatchNorm not folded: {_node_label(n)} is in the graph "
                   "(export the model in eval mode so BN folds into the convolutions)")


def _opset_ir_version(g: GraphFacts, want: GraphTarget) -> Iterator[str]:
    opset = g.opsets.get("ai.onnx")
    if opset is None:
        yield "no opset import for the default ONNX domain"
    elif opset > want.max_opset:
        yield f"default-domain opset {opset} > {want.max_opset} (the newest this TensorRT target parses)"
    if g.proto.ir_version > want.max_ir_version:
        yield f"IR version {g.proto.ir_version} > {want.max_ir_version} (onnxruntime refuses newer IR)"


def _allowed_ops(g: GraphFacts, want: GraphTarget) -> Iterator[str]:
    bad_ops: Counter[str] = Counter()
    first_node: dict[str, onnx.NodeProto] = {}
    for n in g.all_nodes:
        key = n.op_type if n.domain in _DEFAULT_DOMAINS else f"{n.domain}::{n.op_type}"
        if key not in want.allowed_ops:  # a custom-domain key ("dom::Op") is never in the allow-list
            bad_ops[key] += 1
            first_node.setdefault(key, n)
    for op, count in sorted(bad_ops.items()):
        yield f"op {op!r} ({count} node(s), e.g. {_node_label(first_node[op])}) is not in the TensorRT allow-list"


def _constant_axes_and_shapes(g: GraphFacts, want: GraphTarget) -> Iterator[str]:
    constant = (g.initializer_names - g.graph_input_names) | {
        out for n in g.default_domain_nodes() if n.op_type == "Constant" for out in n.output}
    for n in g.default_domain_nodes():
        for pos, what in _CONST_INPUTS.get(n.op_type, ()):
            src = n.input[pos] if len(n.input) > pos else ""
            if not src or src in constant:
                continue
            if src in g.graph_input_names:
                origin = "a graph input"
            elif src in g.producer:
                origin = f"computed by {_node_label(g.producer[src])}"
            else:
                origin = "undefined"
            yield f"{_node_label(n)}: {what} input {src!r} is {origin}, not an initializer or Constant"


def _no_shape_derived_reshape(g: GraphFacts, want: GraphTarget) -> Iterator[str]:
    for n in g.default_domain_nodes():
        if n.op_type == "Reshape" and len(n.input) > 1 and n.input[1]:
            root = _shape_root(n.input[1], g.producer)
            if root is not None:
                yield (f"{_node_label(n)}: shape input {n.input[1]!r} derives from {_node_label(root)} "
                       "(dynamic Shape->...->Reshape chain)")


def _shape_root(name: str, producer: dict[str, onnx.NodeProto]) -> onnx.NodeProto | None:
    """The first ``Shape`` node found upstream of tensor ``name`` (depth first), or None."""
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


def _qdq_no_integer_ops(g: GraphFacts, want: GraphTarget) -> Iterator[str]:
    for n in g.graph.node:
        if n.op_type.startswith("QLinear") or n.op_type in _INTEGER_OPS:
            yield (f"{_node_label(n)} is a QOperator-form integer op; quantize with quant_format=QDQ "
                   "(TensorRT parses Q/DQ pairs only)")


def _qdq_constant_scales(g: GraphFacts, want: GraphTarget) -> Iterator[str]:
    for n in g.graph.node:
        if n.op_type not in QDQ_OPS:
            continue
        for pos, what in ((1, "scale"), (2, "zero point")):
            name = n.input[pos] if len(n.input) > pos else ""
            if not name:
                continue
            if name not in g.initializers:
                yield (f"{_node_label(n)}: {what} {name!r} is not an initializer "
                       "(TensorRT needs constant Q/DQ parameters)")
            elif pos == 1:
                scale = onnx.numpy_helper.to_array(g.initializers[name])
                if not (scale.size and (scale > 0).all() and np.isfinite(scale).all()):
                    yield f"{_node_label(n)}: scale {name!r} has values that are not finite and > 0"


def _qdq_around_compute(g: GraphFacts, want: GraphTarget) -> Iterator[str]:
    for n in g.default_domain_nodes():
        for pos in _QUANTIZED_INPUTS.get(n.op_type, ()):
            name = n.input[pos] if len(n.input) > pos else ""
            if not name:
                continue
            dq = g.producer.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                yield (f"{_node_label(n)}: input {pos} {name!r} does not come from a DequantizeLinear, "
                       "so TensorRT runs this layer in float")
                continue
            quantize = g.producer.get(dq.input[0])
            if dq.input[0] not in g.initializers and (quantize is None or quantize.op_type != "QuantizeLinear"):
                yield (f"{_node_label(n)}: input {pos} comes from {_node_label(dq)}, "
                       "which is fed neither by a QuantizeLinear nor by a constant")


def _qdq_int8_zero_points(g: GraphFacts, want: GraphTarget) -> Iterator[str]:
    for n in g.graph.node:
        if n.op_type in QDQ_OPS:
            yield from _zero_point_problem(n, g.initializers)


def _zero_point_problem(node: onnx.NodeProto, initializers: dict[str, onnx.TensorProto]) -> Iterator[str]:
    if len(node.input) < 3 or not node.input[2]:
        yield f"{_node_label(node)} has no zero point, which means uint8; TensorRT needs an int8 zero point of 0"
        return
    tensor = initializers.get(node.input[2])
    if tensor is None:
        return  # rule qdq_constant_scales names it
    if tensor.data_type != onnx.TensorProto.INT8:
        bias = " (a quantized bias: keep biases float)" if tensor.data_type == onnx.TensorProto.INT32 else ""
        yield (f"{_node_label(node)}: zero point {node.input[2]!r} is {_dtype_name(tensor.data_type)}{bias}, "
               "TensorRT needs int8 (symmetric)")
    elif (values := onnx.numpy_helper.to_array(tensor)).any():
        yield (f"{_node_label(node)}: zero point {node.input[2]!r} is {values.ravel()[:4].tolist()}, "
               "TensorRT needs 0 (symmetric)")


# ---- the table -------------------------------------------------------------------------------

#: ``Rule.graphs``: the graphs a rule runs on, named by ``check_graph``'s ``quantized`` argument.
FLOAT = None  # fp32 and fp16 graphs (an fp16 graph's input and output stay float32, so one set of rules)
EVERY_GRAPH: frozenset[str | None] = frozenset({FLOAT, "onnxruntime", "tensorrt"})
INT8_GRAPHS: frozenset[str | None] = frozenset({"onnxruntime", "tensorrt"})
TENSORRT_INT8: frozenset[str | None] = frozenset({"tensorrt"})


@dataclass(frozen=True)
class Rule:
    """One graph rule: its name (in ``checks_passed`` and in error lines), what it checks and why, the
    graphs it applies to, and the function that yields one message per violation."""

    name: str
    graphs: frozenset[str | None]
    checks: str
    why: str
    check: Callable[[GraphFacts, GraphTarget], Iterator[str]]


GRAPH_RULES: tuple[Rule, ...] = (
    Rule("onnx_checker", EVERY_GRAPH,
         "onnx.checker.check_model(full_check=True) passes (on the file when given a path).",
         "A graph the checker refuses is malformed: runtimes may refuse it or read it differently.",
         _onnx_checker),
    Rule("single_file", EVERY_GRAPH,
         "No tensor is stored as external data (a model.onnx.data beside the graph).",
         "Each graph is one file, recorded with its size and sha256 in the export report; weights in a "
         "second file are lost when the graph is copied alone.",
         _single_file),
    Rule("input_signature", EVERY_GRAPH,
         "Exactly one input 'video', float32, rank 5 [batch, 3, T, H, W]; dim 0 dynamic, dims 1-4 fixed "
         "and equal to input_shape[1:].",
         "The SDK, the Triton config and TensorRT's profiles feed the graph by that name and shape: a fixed "
         "clip shape lets TensorRT choose its kernels, a dynamic batch lets one engine serve every batch.",
         _input_signature),
    Rule("output_signature", EVERY_GRAPH,
         "The outputs are named exactly output_names (in order) and are float32.",
         "Callers fetch the output by the head's name; float32 even in an fp16 graph, so that no consumer "
         "gets half precision.",
         _output_signature),
    Rule("batchnorm_folded", EVERY_GRAPH,
         "No BatchNormalization node.",
         "Eval-mode exports fold BatchNorm into the convolution before it; a BN node left is a layer the "
         "folding missed (TensorRT parses it, and runs it as a layer of its own).",
         _batchnorm_folded),
    Rule("opset_ir_version", EVERY_GRAPH,
         "Default-domain opset <= max_opset and IR version <= max_ir_version.",
         "TensorRT parses opsets up to 20 (TensorRT 10) or 17 (TensorRT 8.x); onnxruntime refuses an IR "
         "version newer than it knows.",
         _opset_ir_version),
    Rule("allowed_ops", EVERY_GRAPH,
         "Every default-domain op is in allowed_ops (TENSORRT_OPS, plus Q/DQ for an int8 graph); an op of "
         "any other domain is a violation.",
         "The allow-list is what TensorRT parses and our encoders need, so a new op in an export is a "
         "decision rather than a surprise at engine-build time.",
         _allowed_ops),
    Rule("constant_axes_and_shapes", EVERY_GRAPH,
         "Every axes input (Reduce*, Squeeze, Unsqueeze, Slice) and the shape input of Reshape and Expand "
         "is an initializer or a Constant node's output, never a graph input or a computed tensor.",
         "TensorRT needs them when it builds the engine; a computed one is a dynamic-shape path.",
         _constant_axes_and_shapes),
    Rule("no_shape_derived_reshape", EVERY_GRAPH,
         "No Reshape whose shape input depends (transitively) on a Shape node.",
         "Such a shape is also non-constant, so constant_axes_and_shapes fires as well; this rule names the "
         "Shape node at the root of the chain, which is the thing to fix.",
         _no_shape_derived_reshape),
    Rule("qdq_no_integer_ops", INT8_GRAPHS,
         "No QLinear*, ConvInteger, MatMulInteger or dynamic-quantization op (the QOperator form).",
         "TensorRT parses quantization only as Q/DQ pairs around float ops.",
         _qdq_no_integer_ops),
    Rule("qdq_constant_scales", INT8_GRAPHS,
         "Every Q/DQ scale and zero point is an initializer; scales are finite and > 0.",
         "TensorRT reads them when it builds the engine and refuses computed ones.",
         _qdq_constant_scales),
    Rule("qdq_around_compute", INT8_GRAPHS,
         "Each input of every Conv, Gemm and MatMul (data and weights, not the bias) comes from a "
         "DequantizeLinear: an activation through a QuantizeLinear -> DequantizeLinear pair, a weight "
         "from a constant.",
         "TensorRT runs a layer in int8 only when Q/DQ feed it; without them it runs in float.",
         _qdq_around_compute),
    Rule("qdq_int8_zero_points", TENSORRT_INT8,
         "Every Q/DQ has an int8 zero point, and all of them are 0 (a missing zero point means uint8).",
         "TensorRT supports symmetric int8 only. The onnxruntime graph keeps uint8 activations with zero "
         "points (U8S8), which onnxruntime runs well.",
         _qdq_int8_zero_points),
)

#: Rules of every graph (fp32, fp16 and int8), in the order they run.
RULES: tuple[str, ...] = tuple(r.name for r in GRAPH_RULES if FLOAT in r.graphs)
#: Rules of an INT8 graph for each runtime (``check_graph(quantized=...)``), after :data:`RULES`.
QDQ_RULES: dict[str, tuple[str, ...]] = {
    runtime: tuple(r.name for r in GRAPH_RULES if runtime in r.graphs and FLOAT not in r.graphs)
    for runtime in ("onnxruntime", "tensorrt")
}


# ---- running them ----------------------------------------------------------------------------


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
    """Run every graph rule that applies to ``model`` and report.

    Args:
        model: a ModelProto, or the path of a ``.onnx`` file (then the report names the file, its size
            and its sha256).
        input_shape: ``(batch, 3, T, H, W)``; its first entry is ignored (the batch axis must be dynamic).
        output_names: the graph's outputs, in order.
        allowed_ops: the default-domain ops allowed (rule ``allowed_ops``).
        max_ir_version: the newest IR version allowed.
        max_opset: the newest default-domain opset allowed (:data:`TRT10_MAX_OPSET` or
            :data:`TRT8_MAX_OPSET`).
        quantized: ``None`` for an fp32 or fp16 graph; ``"onnxruntime"`` or ``"tensorrt"`` for an INT8
            QDQ graph (the rules of :data:`QDQ_RULES` for that runtime run too, and Q/DQ ops are allowed).

    Returns:
        The report for ``export_report.json``: opsets, IR version, producer, op histogram, inputs and
        outputs, ``checks_passed`` (rule names, in order) and the limits used.

    Raises:
        GraphCheckError: listing every violation of every rule, in table order.
        ValueError: ``quantized`` or ``input_shape`` is not one of the forms above.
    """
    want = _target(input_shape, output_names, allowed_ops, max_ir_version, max_opset, quantized)
    facts = GraphFacts.read(model)
    rules = [rule for rule in GRAPH_RULES if quantized in rule.graphs]
    violations = [(rule.name, message) for rule in rules for message in rule.check(facts, want)]
    if violations:
        raise GraphCheckError(violations)
    return _report(facts, want, [rule.name for rule in rules])


def _target(input_shape, output_names, allowed_ops, max_ir_version, max_opset, quantized) -> GraphTarget:
    if quantized is not None and quantized not in QDQ_RULES:
        raise ValueError(f"quantized must be None or one of {', '.join(QDQ_RULES)}, got {quantized!r}")
    if len(tuple(input_shape)) != 5:
        raise ValueError(f"input_shape must be (batch, 3, T, H, W), got {input_shape!r}")
    allowed = frozenset(allowed_ops) | (QDQ_OPS if quantized is not None else frozenset())
    return GraphTarget(input_shape=tuple(input_shape), output_names=tuple(output_names), allowed_ops=allowed,
                       max_opset=max_opset, max_ir_version=max_ir_version, quantized=quantized)


def _report(g: GraphFacts, want: GraphTarget, passed: list[str]) -> dict[str, Any]:
    report: dict[str, Any] = {
        "opset": g.opsets.get("ai.onnx"),
        "opset_imports": g.opsets,
        "ir_version": g.proto.ir_version,
        "producer": f"{g.proto.producer_name} {g.proto.producer_version}".strip(),
        "op_histogram": dict(sorted(Counter(n.op_type for n in g.all_nodes).items())),
        "num_nodes": len(g.all_nodes),
        "num_initializers": len(g.graph.initializer),
        "inputs": [_describe(i) for i in g.real_inputs],
        "outputs": [_describe(o) for o in g.graph.output],
        "checks_passed": passed,
        "limits": {"max_opset": want.max_opset, "max_ir_version": want.max_ir_version},
    }
    if want.quantized is not None:
        report["quantized"] = {"runtime": want.quantized, **_qdq_summary(g)}
    if g.path is not None:
        report.update(path=str(g.path), file_size_bytes=g.path.stat().st_size, sha256=file_sha256(g.path))
    return report


def _qdq_summary(g: GraphFacts) -> dict[str, Any]:
    """What was quantized: Q/DQ counts and the compute ops fed by DequantizeLinear on every input rule
    ``qdq_around_compute`` covers."""
    compute = [n for n in g.default_domain_nodes() if n.op_type in _QUANTIZED_INPUTS]
    fed = [n for n in compute if all(getattr(g.producer.get(n.input[p]), "op_type", None) == "DequantizeLinear"
                                     for p in _QUANTIZED_INPUTS[n.op_type] if p < len(n.input) and n.input[p])]
    kinds = Counter(n.op_type for n in g.graph.node)
    return {"quantize_nodes": kinds["QuantizeLinear"], "dequantize_nodes": kinds["DequantizeLinear"],
            "compute_ops": len(compute), "quantized_compute_ops": len(fed)}
