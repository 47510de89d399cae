"""Export: heads, ONNX graphs (dynamo opset 20 and TorchScript opset 17), graph + parity checks, the
saved-model layout, the atomic output folder and the `tclr-zoo export` command."""

from __future__ import annotations

import copy
import functools
import json
import sys

import onnx
import pytest
import torch
import torch.nn.functional as F
import warm_python
from click.testing import CliRunner

from tclr_zoo import cli
from tclr_zoo.export import exporter
from tclr_zoo.export.exporter import ExportError, export_model
from tclr_zoo.export.graph_checks import GraphCheckError, check_graph
from tclr_zoo.export.parity import ParityError
from tclr_zoo.hub.format import load_pretrained_dir, model_config, save_pretrained
from tclr_zoo.models.outputs import build_head, fold_batchnorm
from tclr_zoo.models.registry import create_model, resolve_model_args

ARCHS = ("r3d_10_025", "r2plus1d_10_025", "c3d_025")
HEADS = ("backbone", "retrieval", "projection", "logits")
PREPROCESSING = {"channel_order": "bgr", "value_range": [0.0, 1.0], "mean": None, "std": None, "size": 32,
                 "crop_fraction": 0.8, "frames": 16, "eval_frame_stride": 2, "pretrain_frame_stride": 4,
                 "eval_protocol": {"clips": 9, "pooling": "temporal", "similarity": "cosine"}}
LABELS = [f"class{i}" for i in range(5)]
MAX_BATCH = 4


def _make(arch: str, classifier: bool = True):
    """A random model whose BatchNorm layers are not the identity (so folding them is tested)."""
    torch.manual_seed(0)
    model = create_model(arch, head_dim=32)
    if classifier:
        model.add_classifier(len(LABELS))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    model.eval()
    config = model_config(model, arch=arch, model_args=resolve_model_args(arch), preprocessing=PREPROCESSING,
                          labels=LABELS if classifier else None)
    return model, config


@pytest.fixture(scope="module")
def models():
    return {arch: _make(arch) for arch in ARCHS}


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("arch", ARCHS)
def test_heads_match_the_model_and_fold_batchnorm(models, arch):
    model, _ = models[arch]
    x = torch.rand(2, 3, 16, 32, 32)
    with torch.no_grad():
        temporal = model.temporal_features(x)
        expected = {"backbone": temporal.mean(-1), "retrieval": F.normalize(temporal.flatten(1), dim=1),
                    "projection": model.projection(temporal.mean(-1)), "logits": model.logits(x)}
        for head, want in expected.items():
            folded = build_head(model, head)
            assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in folded.modules())
            torch.testing.assert_close(build_head(model, head, fold_bn=False)(x), want, rtol=1e-6, atol=1e-6)
            torch.testing.assert_close(folded(x), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHS)
def test_torch_backend_runs_a_folded_copy_that_follows_the_model(arch):
    """The SDK's torch backend serves a BatchNorm-folded copy: same outputs as the model within float32
    rounding, the model itself left unfolded (it is what save_pretrained writes), and the copy rebuilt
    after the model's weights change in place."""
    from tclr_zoo.inference.backends import TorchBackend

    model, _ = _make(arch)
    folded, plain = TorchBackend(model, "cpu"), TorchBackend(copy.deepcopy(model), "cpu", fold_bn=False)
    x = torch.rand(2, 3, 16, 32, 32)
    for head in HEADS:
        torch.testing.assert_close(folded.run(x, head), plain.run(x, head), rtol=1e-4, atol=1e-5)
    assert any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in folded.model.modules())
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in folded.inference_model().modules())
    before = folded.run(x, "backbone")
    with torch.no_grad():
        folded.model.load_state_dict({k: v * 1.5 if v.is_floating_point() else v
                                      for k, v in folded.model.state_dict().items()})
        plain.model.load_state_dict(folded.model.state_dict())
    after = folded.run(x, "backbone")
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, plain.run(x, "backbone"), rtol=1e-4, atol=1e-5)


def test_fold_batchnorm_refuses_a_batchnorm_it_cannot_fold():
    with pytest.raises(ValueError, match="could not be folded"):
        fold_batchnorm(torch.nn.Sequential(torch.nn.ReLU(), torch.nn.BatchNorm3d(4)).eval())


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("head", HEADS)
def test_export_every_head_passes_graph_and_parity_checks(models, arch, head, tmp_path):
    model, config = models[arch]
    out = tmp_path / "export"
    sample = torch.rand(2, 3, 16, 32, 32) if head == "backbone" else None  # "real clips" path, cycled
    report = export_model((model, config), out, onnx=True, head=head, max_batch=MAX_BATCH, sample_inputs=sample)

    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors", "README.md", "onnx"}
    assert {p.name for p in (out / "onnx").iterdir()} == {"model.onnx", "export_report.json"}
    written = json.loads((out / "onnx" / "export_report.json").read_text())
    assert written["head"] == head and written["parity_batch_sizes"] == [1, 3, MAX_BATCH]
    assert {"torch", "onnx", "onnxruntime"} <= set(written["versions"])
    assert written["parity_inputs"].startswith("sample_inputs" if sample is not None else "random")
    graph = written["graphs"]["model.onnx"]
    assert graph["opset"] == 20 and graph["ir_version"] <= 10 and "BatchNormalization" not in graph["op_histogram"]
    assert graph["inputs"][0]["name"] == "video" and graph["inputs"][0]["shape"][1:] == [3, 16, 32, 32]
    assert [o["name"] for o in graph["outputs"]] == [head]
    assert len(graph["sha256"]) == 64 and graph["file_size_bytes"] > 0
    batches = written["parity"]["model.onnx"]["batches"]
    assert [b["batch_size"] for b in batches] == [1, 3, MAX_BATCH]
    assert all(b["min_cosine"] >= 0.99999 and b["ort_seconds"] > 0 and b["torch_seconds"] > 0 for b in batches)
    assert written["speed"]["model.onnx"]["batches"][0]["ort_speedup"] > 0
    assert report["parity"] == written["parity"]

    reloaded, saved_config = load_pretrained_dir(out)
    assert _same_weights(reloaded, model)
    dims = {"backbone": 128, "retrieval": 512, "projection": 32, "logits": 5}
    assert saved_config["export"]["head"] == head
    assert saved_config["export"]["output"] == {"name": head, "dtype": "float32", "shape": ["batch", dims[head]]}
    assert saved_config["export"]["onnx"]["fp32"] == "onnx/model.onnx"


def test_fp16_graph_keeps_float32_io_and_top1(models, tmp_path):
    model, config = models["r3d_10_025"]
    report = export_model((model, config), tmp_path / "out", fp16=True, head="logits", max_batch=MAX_BATCH)
    assert (tmp_path / "out" / "onnx" / "model.fp16.onnx").is_file()
    graph = report["graphs"]["model.fp16.onnx"]
    assert graph["inputs"][0]["dtype"] == "float32" and graph["outputs"][0]["dtype"] == "float32"
    proto = onnx.load(str(tmp_path / "out" / "onnx" / "model.fp16.onnx"))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer)
    parity = report["parity"]["model.fp16.onnx"]
    assert parity["precision"] == "fp16"
    assert all(b["min_cosine"] >= 0.999 and b["top1_agreement"] == 1.0 for b in parity["batches"])
    assert report["files"]["model.fp16.onnx"]["bytes"] < 0.6 * report["files"]["model.onnx"]["bytes"]


def test_opset_17_uses_the_torchscript_exporter(models, tmp_path):
    model, config = models["r2plus1d_10_025"]
    report = export_model((model, config), tmp_path / "out", onnx=True, opset=17, head="retrieval", max_batch=3)
    graph = report["graphs"]["model.onnx"]
    assert report["exporter"] == "torchscript" and graph["opset"] == 17 and graph["limits"]["max_opset"] == 17
    assert set(graph["op_histogram"]) <= {"Conv", "Relu", "Add", "ReduceMean", "Flatten", "ReduceL2", "Clip", "Div"}
    assert report["parity_batch_sizes"] == [1, 3]
    assert json.loads((tmp_path / "out" / "config.json").read_text())["export"]["exporter"] == "torchscript"


def _no_leftovers(parent, name="out"):
    return [p.name for p in parent.iterdir() if name in p.name] == []


def test_failing_parity_leaves_no_export(models, tmp_path, monkeypatch):
    model, config = models["c3d_025"]
    real_build = exporter.build_head

    class Perturbed(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            y = self.inner(x)
            return y + 0.05 * torch.randn_like(y)

    def build(model, head, *, fold_bn=True):
        module = real_build(model, head, fold_bn=fold_bn)
        return module if fold_bn else Perturbed(module)  # the reference no longer matches the graph

    monkeypatch.setattr(exporter, "build_head", build)
    with pytest.raises(ParityError, match="batch size 1"):
        export_model((model, config), tmp_path / "out", onnx=True, head="projection", max_batch=2)
    assert _no_leftovers(tmp_path)


def test_failing_graph_check_keeps_an_existing_export_untouched(models, tmp_path, monkeypatch):
    model, config = models["r3d_10_025"]
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old export")
    with pytest.raises(FileExistsError, match="not empty.*--overwrite"):  # atomic.OutputExistsError
        export_model((model, config), out, onnx=True, head="backbone", max_batch=2)
    strict = functools.partial(check_graph, allowed_ops=frozenset({"Conv", "Relu", "Add"}))
    monkeypatch.setattr(exporter, "check_graph", strict)
    with pytest.raises(GraphCheckError, match="ReduceMean"):
        export_model((model, config), out, onnx=True, head="backbone", max_batch=2, overwrite=True)
    assert [p.name for p in out.iterdir()] == ["keep.txt"] and _no_leftovers(tmp_path, ".out")


def test_overwrite_replaces_and_saved_model_only_without_onnx(models, tmp_path):
    model, config = models["c3d_025"]
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("x")
    report = export_model((model, config), out, head="backbone", overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert "parity" not in report and json.loads((out / "config.json").read_text())["export"]["onnx"] is None


def test_logits_needs_a_classifier(tmp_path):
    model, config = _make("c3d_025", classifier=False)
    with pytest.raises(ExportError, match="needs a model with a classifier"):
        export_model((model, config), tmp_path / "out", onnx=True, head="logits")
    assert not (tmp_path / "out").exists()


def test_cli_graph_failure_exits_1_with_one_line(models, tmp_path, monkeypatch):
    model, config = models["r3d_10_025"]
    saved = save_pretrained(model, tmp_path / "model", config)
    monkeypatch.setattr(exporter, "check_graph", functools.partial(check_graph, allowed_ops=frozenset({"Conv"})))
    result = CliRunner().invoke(cli.main, ["export", str(saved), "--out", str(tmp_path / "out"), "--onnx",
                                           "--head", "backbone", "--max-batch", "2"])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "allowed_ops" in lines[0] and "nothing written" in lines[0]
    assert not (tmp_path / "out").exists()


def test_cli_export_end_to_end(models, tmp_path):
    model, config = models["r3d_10_025"]
    saved = save_pretrained(model, tmp_path / "model", config)
    out = tmp_path / "exported"
    command = [sys.executable, "-m", "tclr_zoo.cli", "export", str(saved), "--out", str(out), "--onnx",
               "--head", "projection", "--max-batch", "2"]
    done = warm_python.run(command, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "parity ok" in done.stdout and "opset 20" in done.stdout
    for name in ("config.json", "model.safetensors", "README.md", "onnx/model.onnx", "onnx/export_report.json"):
        assert (out / name).is_file(), name
    runner = CliRunner()  # usage errors, in-process: exit 2 with one line, no traceback
    again = runner.invoke(cli.main, command[3:])
    assert again.exit_code == 2 and "--overwrite" in again.stderr
    missing = runner.invoke(cli.main, ["export", str(tmp_path / "nope"), "--out", str(tmp_path / "x")])
    assert missing.exit_code == 2 and "nope" in missing.stderr and "Traceback" not in missing.stderr
