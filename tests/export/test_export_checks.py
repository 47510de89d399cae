"""Graph rules and parity checks: they pass on real exports and are proven able to fail, with a clear message."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from onnx_graphs import VIDEO_SHAPE, hand_model, qdq_model

import tclr_zoo
from tclr_zoo.export.graph_checks import (
    EVERY_GRAPH,
    FLOAT,
    GRAPH_RULES,
    MAX_IR_VERSION,
    QDQ_RULES,
    RULES,
    TENSORRT_OPS,
    TRT8_MAX_OPSET,
    GraphCheckError,
    check_graph,
)
from tclr_zoo.export.parity import ParityError, check_parity

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SHAPE = (1, 3, 16, 32, 32)
OUT = ["embedding"]


class Pooled(torch.nn.Module):
    """Backbone feature map -> pooled vector (what the 'backbone' head exports)."""

    def __init__(self, backbone: torch.nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x).mean(dim=(2, 3, 4))


class ConvGelu(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv3d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.gelu(self.conv(x)).mean(dim=(2, 3, 4))


def _export(module: torch.nn.Module, path: Path, *, input_name="video", output_names=OUT, dynamic=True) -> Path:
    """TorchScript exporter at opset 17 (0.3 s here; the dynamo exporter needs onnxscript)."""
    axes = {input_name: {0: "batch"}, **{o: {0: "batch"} for o in output_names}} if dynamic else None
    torch.onnx.export(module, (torch.randn(*SHAPE),), str(path), dynamo=False, opset_version=17,
                      input_names=[input_name], output_names=list(output_names), dynamic_axes=axes)
    return path


@pytest.fixture(scope="module")
def pooled() -> torch.nn.Module:
    torch.manual_seed(0)
    return Pooled(tclr_zoo.create_model("r3d_10_025").eval().backbone).eval()


@pytest.fixture(scope="module")
def good_onnx(pooled, tmp_path_factory) -> Path:
    return _export(pooled, tmp_path_factory.mktemp("onnx") / "model.onnx")


def _violations(exc: pytest.ExceptionInfo) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for rule, msg in exc.value.violations:
        out.setdefault(rule, []).append(msg)
    return out


def _mean_node(out="embedding"):
    return helper.make_node("ReduceMean", ["video"], [out], axes=[2, 3, 4], keepdims=0, name="pool")


def _computed_axes_graph() -> onnx.ModelProto:
    """opset 18: ReduceMean's axes are an input, here computed by an Add."""
    two = helper.make_tensor("two", TensorProto.INT64, [3], [1, 1, 1])
    base = helper.make_tensor("base", TensorProto.INT64, [3], [1, 2, 3])
    return hand_model([helper.make_node("Add", ["base", "two"], ["axes"], name="add_axes"),
                       helper.make_node("ReduceMean", ["video", "axes"], ["embedding"], keepdims=0, name="pool")],
                      initializers=[two, base], opset=18)


def _batchnorm_graph() -> onnx.ModelProto:
    c = [numpy_helper.from_array(np.full(3, v, np.float32), n) for n, v in
         (("scale", 1.0), ("bias", 0.0), ("mean", 0.0), ("var", 1.0))]
    nodes = [helper.make_node("BatchNormalization", ["video", "scale", "bias", "mean", "var"], ["bn"], name="bn1"),
             helper.make_node("ReduceMean", ["bn"], ["embedding"], axes=[2, 3, 4], keepdims=0)]
    return hand_model(nodes, initializers=c)


def _checker_broken_graph() -> onnx.ModelProto:
    """A node reads a tensor that nothing defines."""
    return hand_model([helper.make_node("ReduceMean", ["missing"], ["embedding"], axes=[2, 3, 4], keepdims=0)])


# ---------------------------------------------------------------- passing cases

def test_real_export_passes_all_rules_and_reports(good_onnx):
    report = check_graph(good_onnx, input_shape=("batch", 3, 16, 32, 32), output_names=OUT,
                         max_opset=TRT8_MAX_OPSET)
    assert report["checks_passed"] == list(RULES)
    assert report["opset"] == 17 and report["ir_version"] <= MAX_IR_VERSION
    assert report["op_histogram"]["Conv"] == 12 and "BatchNormalization" not in report["op_histogram"]
    assert set(report["op_histogram"]) <= TENSORRT_OPS
    assert report["inputs"] == [{"name": "video", "dtype": "float32", "shape": ["batch", 3, 16, 32, 32]}]
    assert report["outputs"][0]["name"] == "embedding" and report["outputs"][0]["dtype"] == "float32"
    assert report["file_size_bytes"] == good_onnx.stat().st_size
    assert report["sha256"] == hashlib.sha256(good_onnx.read_bytes()).hexdigest()


def test_hand_built_minimal_graph_passes():
    report = check_graph(hand_model([_mean_node()]), input_shape=SHAPE, output_names=OUT)
    assert report["op_histogram"] == {"ReduceMean": 1} and "sha256" not in report


@pytest.mark.skipif(importlib.util.find_spec("onnxscript") is None, reason="dynamo exporter needs onnxscript")
def test_dynamo_export_passes(pooled, tmp_path):
    path = tmp_path / "dyn.onnx"
    torch.onnx.export(pooled, (torch.randn(*SHAPE),), str(path), dynamo=True, external_data=False,
                      input_names=["video"], output_names=OUT, dynamic_shapes=({0: torch.export.Dim("batch")},))
    report = check_graph(path, input_shape=SHAPE, output_names=OUT)
    assert report["checks_passed"] == list(RULES)


def test_parity_passes_at_batch_1_3_4(pooled, good_onnx):
    torch.manual_seed(1)
    inputs = [torch.randn(b, *SHAPE[1:]) for b in (1, 3, 4)]
    report = check_parity(pooled, good_onnx, inputs, output_name="embedding")
    assert report["provider"] == "CPUExecutionProvider"
    assert [b["batch_size"] for b in report["batches"]] == [1, 3, 4]
    for b in report["batches"]:
        assert b["max_abs_error"] <= 1e-4 * b["scale"] and b["min_cosine"] >= 0.99999
        assert b["ort_seconds"] > 0 and b["torch_seconds"] > 0
    # fp16 bounds with top-1 comparison are looser: the fp32 graph passes them too
    report16 = check_parity(pooled, good_onnx, inputs[:1], output_name="embedding", fp16=True, compare_top1=True)
    assert report16["batches"][0]["top1_agreement"] == 1.0


# ---------------------------------------------------------------- the checks can fail

def test_perturbed_graph_fails_parity(pooled, good_onnx, tmp_path):
    model = onnx.load(str(good_onnx))
    init = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))  # the largest conv weight
    w = numpy_helper.to_array(init).copy()
    w.flat[: w.size // 8] *= 1.5
    init.CopyFrom(numpy_helper.from_array(w, init.name))
    bad = tmp_path / "perturbed.onnx"
    onnx.save(model, str(bad))
    check_graph(bad, input_shape=SHAPE, output_names=OUT)  # structurally still fine: only parity can tell
    with pytest.raises(ParityError, match=r"batch size 2 .*max_abs_error = .* violates bound <= ") as exc:
        check_parity(pooled, bad, [torch.randn(2, *SHAPE[1:])], output_name="embedding")
    assert exc.value.report["batches"][0]["max_abs_error"] > 1e-3


def test_top1_mismatch_fails_parity_even_when_cosine_is_high(tmp_path):
    x_in = helper.make_tensor_value_info("video", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4])
    path = tmp_path / "identity.onnx"
    onnx.save(hand_model([helper.make_node("Identity", ["video"], ["logits"])], [x_in], [y]), str(path))
    x = torch.tensor([[1.0, 0.999, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0]])
    swapped = lambda t: t[:, [1, 0, 2, 3]]  # noqa: E731 - rows keep cosine > 0.999 but row 0's argmax flips
    with pytest.raises(ParityError, match=r"batch size 2 .*top1_agreement = 0.5000 \(rows \[0\] differ\)"):
        check_parity(swapped, path, [x], output_name="logits", fp16=True, compare_top1=True)
    with pytest.raises(ParityError, match=r"max_abs_error"):  # and the fp32 bound catches it anyway
        check_parity(swapped, path, [x], output_name="logits")


def test_exported_gelu_is_outside_the_allow_list(tmp_path):
    path = _export(ConvGelu().eval(), tmp_path / "gelu.onnx")
    with pytest.raises(GraphCheckError, match=r"\[allowed_ops\] op 'Erf'") as exc:
        check_graph(path, input_shape=SHAPE, output_names=OUT)
    assert set(_violations(exc)) == {"allowed_ops"}


def test_hand_built_cumsum_nonzero_and_custom_domain_are_rejected():
    axis = helper.make_tensor("axis", TensorProto.INT64, [], [2])
    nodes = [helper.make_node("CumSum", ["video", "axis"], ["c"], name="cumsum"),
             helper.make_node("NonZero", ["c"], ["nz"], name="nonzero"),
             helper.make_node("Relu", ["c"], ["r"], domain="com.example", name="custom"),
             helper.make_node("ReduceMean", ["r"], ["embedding"], axes=[2, 3, 4], keepdims=0)]
    model = hand_model(nodes, initializers=[axis])
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    with pytest.raises(GraphCheckError) as exc:
        check_graph(model, input_shape=SHAPE, output_names=OUT)
    msgs = " | ".join(_violations(exc)["allowed_ops"])
    assert "op 'CumSum'" in msgs and "'cumsum'" in msgs
    assert "op 'NonZero'" in msgs and "op 'com.example::Relu'" in msgs


def test_non_constant_reduce_axes_are_rejected():
    # opset 18: ReduceMean takes axes as an input; here it is a graph input, then a computed tensor
    axes_in = helper.make_tensor_value_info("axes", TensorProto.INT64, [3])
    model = hand_model([helper.make_node("ReduceMean", ["video", "axes"], ["embedding"], keepdims=0, name="pool")],
                       inputs=[helper.make_tensor_value_info("video", TensorProto.FLOAT, ["batch", 3, 16, 32, 32]),
                               axes_in], opset=18)
    with pytest.raises(GraphCheckError) as exc:
        check_graph(model, input_shape=SHAPE, output_names=OUT)
    v = _violations(exc)
    assert v["constant_axes_and_shapes"] == [
        "ReduceMean node 'pool': axes input 'axes' is a graph input, not an initializer or Constant"]
    assert "input_signature" in v  # the extra input breaks the one-input rule as well

    with pytest.raises(GraphCheckError, match=r"axes input 'axes' is computed by Add node 'add_axes'") as exc:
        check_graph(_computed_axes_graph(), input_shape=SHAPE, output_names=OUT)
    assert set(_violations(exc)) == {"constant_axes_and_shapes"}
    # the same graph with constant axes passes: the rule is about the axes, nothing else
    const = hand_model([helper.make_node("Constant", [], ["axes"], value=helper.make_tensor(
        "a", TensorProto.INT64, [3], [2, 3, 4])), helper.make_node("ReduceMean", ["video", "axes"], ["embedding"],
                                                                   keepdims=0)], opset=18)
    check_graph(const, input_shape=SHAPE, output_names=OUT)


def test_shape_gather_concat_reshape_chain_is_rejected():
    idx = helper.make_tensor("idx", TensorProto.INT64, [1], [0])
    minus1 = helper.make_tensor("minus1", TensorProto.INT64, [1], [-1])
    nodes = [helper.make_node("ReduceMean", ["video"], ["pooled"], axes=[3, 4], keepdims=0),  # [b,3,16]
             helper.make_node("Shape", ["pooled"], ["shp"], name="shape_of_pooled"),
             helper.make_node("Gather", ["shp", "idx"], ["b"], axis=0, name="gather_batch"),
             helper.make_node("Concat", ["b", "minus1"], ["new_shape"], axis=0, name="concat_shape"),
             helper.make_node("Reshape", ["pooled", "new_shape"], ["flat"], name="flatten"),
             helper.make_node("ReduceMean", ["flat"], ["embedding"], axes=[1], keepdims=1)]
    model = hand_model(nodes, initializers=[idx, minus1],
                       outputs=[helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 1])])
    # Gather is allowed here so that only the chain itself is at fault
    with pytest.raises(GraphCheckError) as exc:
        check_graph(model, input_shape=SHAPE, output_names=OUT, allowed_ops=TENSORRT_OPS | {"Gather"})
    v = _violations(exc)
    assert v["no_shape_derived_reshape"] == ["Reshape node 'flatten': shape input 'new_shape' derives from "
                                             "Shape node 'shape_of_pooled' (dynamic Shape->...->Reshape chain)"]
    assert set(v) == {"no_shape_derived_reshape", "constant_axes_and_shapes"}
    assert "computed by Concat node 'concat_shape'" in v["constant_axes_and_shapes"][0]


def test_batchnorm_node_is_rejected():
    with pytest.raises(GraphCheckError, match=r"\[batchnorm_folded\] BatchNorm not folded: BatchNormalization "
                                              r"node 'bn1'") as exc:
        check_graph(_batchnorm_graph(), input_shape=SHAPE, output_names=OUT)
    assert set(_violations(exc)) == {"batchnorm_folded"}  # BN is TensorRT-parsable: only the folding rule fires


def test_external_data_is_rejected(good_onnx, tmp_path):
    model = onnx.load(str(good_onnx))
    path = tmp_path / "ext.onnx"
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location="ext.onnx.data", size_threshold=0)
    with pytest.raises(GraphCheckError, match=r"\[single_file\] 16 tensor\(s\) stored as external data, "
                                              r"e\.g\. initializer ") as exc:
        check_graph(path, input_shape=SHAPE, output_names=OUT)
    assert set(_violations(exc)) == {"single_file"}


def test_wrong_input_name_and_fixed_batch_are_rejected(pooled, tmp_path):
    renamed = _export(pooled, tmp_path / "renamed.onnx", input_name="clip")
    with pytest.raises(GraphCheckError, match=r"\[input_signature\] input is named 'clip', expected 'video'"):
        check_graph(renamed, input_shape=SHAPE, output_names=OUT)
    fixed = _export(pooled, tmp_path / "fixed.onnx", dynamic=False)
    with pytest.raises(GraphCheckError, match=r"input 'video' dim 0 \(batch\) is fixed to 1; it must be dynamic"):
        check_graph(fixed, input_shape=SHAPE, output_names=OUT)


def test_wrong_outputs_clip_shape_opset_and_ir_are_rejected(good_onnx):
    with pytest.raises(GraphCheckError, match=r"\[output_signature\] outputs are named \['embedding'\], "
                                              r"expected \['logits'\]"):
        check_graph(good_onnx, input_shape=SHAPE, output_names=["logits"])
    with pytest.raises(GraphCheckError, match=r"input 'video' dim 2 is 16, expected 8"):
        check_graph(good_onnx, input_shape=(1, 3, 8, 32, 32), output_names=OUT)
    with pytest.raises(GraphCheckError, match=r"\[opset_ir_version\] default-domain opset 17 > 16"):
        check_graph(good_onnx, input_shape=SHAPE, output_names=OUT, max_opset=16)
    with pytest.raises(GraphCheckError, match=r"IR version 14 > 10") as exc:
        check_graph(hand_model([_mean_node()], ir_version=14), input_shape=SHAPE, output_names=OUT)
    assert set(_violations(exc)) == {"opset_ir_version"}


def test_checker_failure_is_reported():
    with pytest.raises(GraphCheckError, match=r"\[onnx_checker\] onnx.checker.check_model\(full_check=True\) failed"):
        check_graph(_checker_broken_graph(), input_shape=SHAPE, output_names=OUT)


# ---------------------------------------------------------------- the rule table

def _external_data_file(tmp_path: Path) -> Path:
    """A valid graph whose one weight lives in a second file."""
    bias = numpy_helper.from_array(np.zeros(3, np.float32), "bias")
    model = hand_model([_mean_node("pooled"), helper.make_node("Add", ["pooled", "bias"], ["embedding"])],
                       initializers=[bias])
    path = tmp_path / "ext.onnx"
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location="ext.onnx.data", size_threshold=0)
    return path


def _input_named_clip() -> onnx.ModelProto:
    return hand_model([helper.make_node("ReduceMean", ["clip"], ["embedding"], axes=[2, 3, 4], keepdims=0)],
                      inputs=[helper.make_tensor_value_info("clip", TensorProto.FLOAT, ["batch", 3, 16, 32, 32])])


def _float16_output() -> onnx.ModelProto:
    return hand_model([_mean_node("pooled"), helper.make_node("Cast", ["pooled"], ["embedding"],
                                                             to=TensorProto.FLOAT16)],
                      outputs=[helper.make_tensor_value_info("embedding", TensorProto.FLOAT16, ["batch", 3])])


def _erf_graph() -> onnx.ModelProto:
    return hand_model([helper.make_node("Erf", ["video"], ["e"], name="erf"),
                       helper.make_node("ReduceMean", ["e"], ["embedding"], axes=[2, 3, 4], keepdims=0)])


def _shape_reshape_graph() -> onnx.ModelProto:
    """Reshape(x, Shape(x)): the shortest Shape -> Reshape chain."""
    return hand_model([_mean_node("pooled"), helper.make_node("Shape", ["pooled"], ["shp"], name="shape"),
                       helper.make_node("Reshape", ["pooled", "shp"], ["embedding"], name="reshape")])


TRT_INT8 = dict(quantized="tensorrt", allowed_ops=frozenset({"Conv", "ReduceMean", "Identity", "ConvInteger"}))

#: (rule, case id, graph builder taking tmp_path, check_graph keyword arguments): each graph breaks one rule.
CASES = [
    ("onnx_checker", "undefined-tensor", lambda _: _checker_broken_graph(), {}),
    ("single_file", "external-data", _external_data_file, {}),
    ("input_signature", "input-named-clip", lambda _: _input_named_clip(), {}),
    ("output_signature", "float16-output", lambda _: _float16_output(), {}),
    ("batchnorm_folded", "batchnorm-node", lambda _: _batchnorm_graph(), {}),
    ("opset_ir_version", "ir-14", lambda _: hand_model([_mean_node()], ir_version=14), {}),
    ("allowed_ops", "erf", lambda _: _erf_graph(), {}),
    ("constant_axes_and_shapes", "computed-axes", lambda _: _computed_axes_graph(), {}),
    ("no_shape_derived_reshape", "shape-to-reshape", lambda _: _shape_reshape_graph(), {}),
    # the INT8 rules, on the hand-built QDQ graph with one thing broken (TensorRT's graph: all four apply)
    ("qdq_no_integer_ops", "convinteger", lambda _: qdq_model(extra_nodes=[
        helper.make_node("ConvInteger", ["x_q", "w_q"], ["ci"], name="int_conv")]), TRT_INT8),
    ("qdq_constant_scales", "scale-from-node", lambda _: qdq_model(scale_from_node=True), TRT_INT8),
    ("qdq_around_compute", "float-weight", lambda _: qdq_model(weight_dq=False), TRT_INT8),
    ("qdq_int8_zero_points", "zero-point-5", lambda _: qdq_model(zero_point=5), TRT_INT8),
    ("qdq_int8_zero_points", "uint8-zero-point",
     lambda _: qdq_model(zero_point=128, zp_type=TensorProto.UINT8), TRT_INT8),
]
#: A Shape-derived shape is also a computed one: that rule cannot fire without this one.
ALSO_FIRES = {"no_shape_derived_reshape": {"constant_axes_and_shapes"}}


@pytest.mark.parametrize("rule, build, kwargs", [pytest.param(r, b, k, id=f"{r}-{i}") for r, i, b, k in CASES])
def test_each_rule_fires_alone_on_a_graph_that_breaks_only_it(rule, build, kwargs, tmp_path):
    with pytest.raises(GraphCheckError) as exc:
        check_graph(build(tmp_path), input_shape=SHAPE, output_names=OUT, **kwargs)
    assert set(_violations(exc)) == {rule} | ALSO_FIRES.get(rule, set())
    assert all(f"[{r}] {m}" in str(exc.value) for r, m in exc.value.violations)  # the message names each line's rule


def test_the_rule_table_lists_every_rule_once_and_check_graph_runs_it():
    names = [r.name for r in GRAPH_RULES]
    assert len(names) == len(set(names)) == 13
    assert {rule for rule, *_ in CASES} == set(names)  # every rule in the table has a graph that breaks it
    for rule in GRAPH_RULES:
        assert rule.checks and rule.why and callable(rule.check), rule.name
        assert rule.graphs and rule.graphs <= EVERY_GRAPH, rule.name
    # the table decides which rules a graph gets, and in which order they run and report
    assert RULES == tuple(r.name for r in GRAPH_RULES if FLOAT in r.graphs)
    for runtime in ("onnxruntime", "tensorrt"):
        assert list(RULES + QDQ_RULES[runtime]) == [r.name for r in GRAPH_RULES if runtime in r.graphs]
    assert QDQ_RULES["tensorrt"] == QDQ_RULES["onnxruntime"] + ("qdq_int8_zero_points",)
    # a rule of TensorRT's int8 graph only does not run on onnxruntime's: the same graph passes there
    report = check_graph(qdq_model(zero_point=5), input_shape=SHAPE, output_names=OUT, quantized="onnxruntime",
                         allowed_ops=frozenset({"Conv", "ReduceMean"}))
    assert report["checks_passed"] == list(RULES + QDQ_RULES["onnxruntime"])


def test_violations_of_several_rules_come_in_table_order():
    nodes = [helper.make_node("Erf", ["clip"], ["e"]), helper.make_node("ReduceMean", ["e"], ["out"], axes=[2, 3, 4],
                                                                      keepdims=0)]
    model = hand_model(nodes, inputs=[helper.make_tensor_value_info("clip", TensorProto.FLOAT, VIDEO_SHAPE)],
                       outputs=[helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 3])], ir_version=14)
    with pytest.raises(GraphCheckError) as exc:
        check_graph(model, input_shape=SHAPE, output_names=OUT)
    assert [rule for rule, _ in exc.value.violations] == [
        "input_signature", "output_signature", "opset_ir_version", "allowed_ops"]
    assert str(exc.value).splitlines()[0] == "ONNX graph check failed (4 violation(s)):"


def test_bad_arguments_are_refused_before_the_graph_is_read(tmp_path):
    with pytest.raises(ValueError, match=r"input_shape must be \(batch, 3, T, H, W\), got \(3, 16, 32, 32\)"):
        check_graph(tmp_path / "absent.onnx", input_shape=(3, 16, 32, 32), output_names=OUT)
    with pytest.raises(ValueError, match=r"quantized must be None or one of onnxruntime, tensorrt, got 'int4'"):
        check_graph(tmp_path / "absent.onnx", input_shape=SHAPE, output_names=OUT, quantized="int4")
