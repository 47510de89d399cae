"""The deployment recipes under export/: the Triton repository generator's files and the TensorRT
engine script's behaviour without TensorRT (the GPU steps themselves are not run here)."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import warm_python

from tclr_zoo.export.exporter import export_model
from tclr_zoo.hub.format import model_config
from tclr_zoo.models.registry import create_model, resolve_model_args

ROOT = Path(__file__).resolve().parents[2]
TRITON = ROOT / "export" / "triton_repository.py"
TRT = ROOT / "export" / "build_trt_engine.py"
PREPROCESSING = {"channel_order": "bgr", "value_range": [0.0, 1.0], "mean": None, "std": None, "size": 32,
                 "crop_fraction": 0.8, "frames": 16, "eval_frame_stride": 2, "pretrain_frame_stride": 4,
                 "eval_protocol": {"clips": 9, "pooling": "temporal", "similarity": "cosine"}}
MAX_BATCH = 4


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = create_model("r3d_10_025", head_dim=32)
    config = model_config(model, arch="r3d_10_025", model_args=resolve_model_args("r3d_10_025"),
                          preprocessing=PREPROCESSING)
    out = tmp_path_factory.mktemp("exp") / "r3d-tiny"
    export_model((model, config), out, onnx=True, max_batch=MAX_BATCH, head="retrieval")
    return out


def _run(script: Path, *args) -> subprocess.CompletedProcess:
    return warm_python.run_python([script, *args], timeout=120)


def _block(text: str, name: str) -> str:
    """The body of ``name [ { ... } ]`` or ``name { ... }`` (no nested blocks in our tensors)."""
    m = re.search(rf"^{name} \[\s*\{{(.*?)\}}\s*\]", text, re.S | re.M) or re.search(
        rf"^{name} \{{(.*?)\}}", text, re.S | re.M)
    assert m, f"no {name} block in:\n{text}"
    return m.group(1)


def _list(body: str, key: str) -> list[int]:
    m = re.search(rf"{key}: \[([^\]]*)\]", body)
    assert m, f"no {key} in {body}"
    return [int(v) for v in m.group(1).split(",")]


def test_onnxruntime_repository(export_dir, tmp_path):
    repo = tmp_path / "repo"
    proc = _run(TRITON, export_dir, "--out", repo, "--name", "tclr", "--preferred-batch", "2,4",
                "--queue-delay-us", "250", "--instances", "2", "--kind", "KIND_CPU")
    assert proc.returncode == 0, proc.stderr
    model = repo / "tclr"
    text = (model / "config.pbtxt").read_text()
    export = json.loads((export_dir / "config.json").read_text())["export"]
    out_dim = export["output"]["shape"][1]

    assert re.search(r'^name: "tclr"$', text, re.M)
    assert re.search(r'^platform: "onnxruntime_onnx"$', text, re.M)
    assert re.search(rf"^max_batch_size: {MAX_BATCH}$", text, re.M)
    inp = _block(text, "input")
    assert 'name: "video"' in inp and "data_type: TYPE_FP32" in inp
    assert _list(inp, "dims") == [3, 16, 32, 32]
    out = _block(text, "output")
    assert 'name: "retrieval"' in out and "data_type: TYPE_FP32" in out
    assert _list(out, "dims") == [out_dim] and out_dim > 0
    batching = _block(text, "dynamic_batching")
    assert _list(batching, "preferred_batch_size") == [2, 4]
    assert "max_queue_delay_microseconds: 250" in batching
    group = _block(text, "instance_group")
    assert "count: 2" in group and "kind: KIND_CPU" in group

    assert (model / "1" / "model.onnx").read_bytes() == (export_dir / "onnx" / "model.onnx").read_bytes()
    doc = (model / "PREPROCESSING.md").read_text()
    assert "Channel order: BGR" in doc and "16 frames" in doc and "32x32" in doc and "0.8" in doc

    # the ONNX graph accepts what config.pbtxt promises: a batch of [3,16,32,32] float32 clips
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    y = sess.run(["retrieval"], {"video": torch.rand(MAX_BATCH, 3, 16, 32, 32).numpy()})[0]
    assert y.shape == (MAX_BATCH, out_dim)


@pytest.mark.parametrize("channel_order,expected", [("bgr", "bgr"), (None, "bgr"), ("rgb", "rgb")],
                         ids=["bgr", "left-out", "rgb"])
def test_the_repositorys_channel_order_is_the_models(export_dir, tmp_path, channel_order, expected):
    """config.pbtxt's parameters and PREPROCESSING.md give the channel order the model loaded from the
    export uses -- BGR for this one, also when its config.json leaves the key out (BGR is the default)."""
    from tclr_zoo import load_model
    from tclr_zoo.export.triton import write_model_repository

    folder = tmp_path / "export"
    shutil.copytree(export_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["preprocessing"].pop("channel_order")
    if channel_order is not None:
        config["preprocessing"]["channel_order"] = channel_order
    (folder / "config.json").write_text(json.dumps(config))
    model = load_model(folder, device="cpu")
    assert model.preprocessing.channel_order == expected

    repo = write_model_repository(folder, tmp_path / "repo", name="tclr")
    text = (repo / "config.pbtxt").read_text()
    parameter = r'^parameters \{\n  key: "(\w+)"\n  value: \{ string_value: ("(?:[^"\\]|\\.)*") \}\n\}$'
    parameters = dict(re.findall(parameter, text, re.M))  # key -> the quoted (JSON-escaped) value
    assert json.loads(parameters["channel_order"]) == expected
    assert json.loads(json.loads(parameters["preprocessing"])) == model.preprocessing.to_config()
    assert f"Channel order: {expected.upper()}." in (repo / "PREPROCESSING.md").read_text()


def test_defaults_and_protobuf_parse(export_dir, tmp_path):
    proc = _run(TRITON, export_dir, "--out", tmp_path / "repo")
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "repo" / export_dir.name / "config.pbtxt").read_text()
    assert _list(_block(text, "dynamic_batching"), "preferred_batch_size") == [MAX_BATCH // 2, MAX_BATCH]
    assert "kind: KIND_AUTO" in text  # onnxruntime: a GPU when the server has one, else the CPU
    assert text.startswith("# generated by export/triton_repository.py") and "serving onnx/model.onnx" in text
    # tokenizes as protobuf text format (Triton's model_config proto is not installed here)
    text_format = pytest.importorskip("google.protobuf.text_format")
    tokenizer = text_format.Tokenizer(text.splitlines())
    while not tokenizer.AtEnd():
        tokenizer.NextToken()


@pytest.mark.parametrize("case", ["missing", "plain", "no_onnx"])
def test_rejects_non_exports(export_dir, tmp_path, case):
    target = tmp_path / "x"
    if case == "plain":
        target.mkdir()
        (target / "config.json").write_text(json.dumps({"architecture": "r3d_10_025"}))
    elif case == "no_onnx":
        target.mkdir()
        config = json.loads((export_dir / "config.json").read_text())
        config["export"]["onnx"] = None
        (target / "config.json").write_text(json.dumps(config))
    proc = _run(TRITON, target, "--out", tmp_path / "repo")
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert ("ONNX" in proc.stderr) if case == "no_onnx" else ("not a tclr-zoo export" in proc.stderr)
    assert not (tmp_path / "repo").exists()


def test_tensorrt_repository_needs_a_plan(export_dir, tmp_path):
    proc = _run(TRITON, export_dir, "--out", tmp_path / "repo", "--platform", "tensorrt")
    assert proc.returncode == 2 and "--plan" in proc.stderr
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"not really an engine")  # the generator only copies it
    proc = _run(TRITON, export_dir, "--out", tmp_path / "repo", "--platform", "tensorrt", "--plan", plan)
    assert proc.returncode == 0, proc.stderr
    model = tmp_path / "repo" / export_dir.name
    assert re.search(r'^platform: "tensorrt_plan"$', (model / "config.pbtxt").read_text(), re.M)
    assert (model / "1" / "model.plan").read_bytes() == plan.read_bytes()
    assert not (model / "1" / "model.onnx").exists()


def test_bad_batch_options(export_dir, tmp_path):
    for args in (["--max-batch", str(MAX_BATCH + 1)], ["--preferred-batch", "8"]):
        proc = _run(TRITON, export_dir, "--out", tmp_path / "repo", *args)
        assert proc.returncode == 2, args


def test_trt_engine_script_without_tensorrt(export_dir, tmp_path):
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here; the engine build is a GPU check")
    proc = _run(TRT, export_dir, "--out", tmp_path / "model.plan", "--fp16", "--opt-batch", "2")
    assert proc.returncode == 2
    assert "TensorRT is not installed" in proc.stderr
    assert not (tmp_path / "model.plan").exists()
    proc = _run(TRT, tmp_path, "--out", tmp_path / "model.plan")
    assert proc.returncode == 2 and "not a tclr-zoo export" in proc.stderr


def test_cli_export_triton_writes_a_repository_beside_the_export(tmp_path):
    """`tclr-zoo export --triton`: a checked export plus OUT/triton/NAME serving its graph."""
    torch.manual_seed(0)
    model = create_model("r3d_10_025", head_dim=32)
    config = model_config(model, arch="r3d_10_025", model_args=resolve_model_args("r3d_10_025"),
                          preprocessing=PREPROCESSING)
    from tclr_zoo.hub.format import save_pretrained

    save_pretrained(model, tmp_path / "saved", config)
    out = tmp_path / "served"
    proc = warm_python.run_cli(["export", tmp_path / "saved", "--out", out, "--triton", "--max-batch", "2"],
                               timeout=300)
    assert proc.returncode == 0, proc.stderr
    repo = out / "triton" / "served"
    assert (repo / "1" / "model.onnx").read_bytes() == (out / "onnx" / "model.onnx").read_bytes()
    text = (repo / "config.pbtxt").read_text()
    assert re.search(r"^max_batch_size: 2$", text, re.M) and 'platform: "onnxruntime_onnx"' in text
    assert "Channel order: BGR" in (repo / "PREPROCESSING.md").read_text()
    assert f"tritonserver --model-repository {out / 'triton'}" in proc.stdout
