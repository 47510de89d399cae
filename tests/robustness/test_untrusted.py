"""Untrusted weights: no file this project reads can run code when loaded.

* every ``torch.load`` in the package passes ``weights_only=True`` (checked on the source);
* a crafted pickle that would create a file when unpickled -- as a training checkpoint, inside a
  checksummed checkpoint envelope, or handed to the CLI -- is refused, and the file is not created;
* a config.json that points outside its model folder is rejected (safetensors files with a
  recorded sha256 are checked on load: tests/inference/test_sdk.py::test_swapped_weights_...).
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import os
from pathlib import Path

import pytest
import torch
import warm_python

import tclr_zoo
from tclr_zoo.hub.checkpoint import FORMAT, CheckpointError, load_checkpoint
from tclr_zoo.inference.backends import BackendError

ROOT = Path(__file__).resolve().parents[2]


def test_every_torch_load_in_the_package_is_weights_only():
    calls = []
    for path in (ROOT / "tclr_zoo").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load"
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"):
                weights_only = {k.arg: k.value for k in node.keywords}.get("weights_only")
                calls.append((f"{path.relative_to(ROOT)}:{node.lineno}",
                              isinstance(weights_only, ast.Constant) and weights_only.value is True))
    assert len(calls) >= 2 and all(ok for _, ok in calls), calls


class _CreatesAFile:
    """Unpickling this runs ``os.system("touch MARKER")``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _evil_checkpoint(path: Path, marker: Path, *, envelope: bool) -> Path:
    state = {"format": "tclr_zoo.checkpoint/1", "model": {}, "payload": _CreatesAFile(marker)}
    if not envelope:
        torch.save(state, path)
        return path
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    torch.save({"format": FORMAT, "sha256": hashlib.sha256(data).hexdigest(),
                "payload": torch.frombuffer(bytearray(data), dtype=torch.uint8)}, path)
    return path


@pytest.mark.parametrize("envelope", [False, True], ids=["plain", "inside-checksummed-envelope"])
def test_crafted_pickle_checkpoint_is_refused_and_creates_nothing(tmp_path, envelope):
    marker = tmp_path / "pwned"
    path = _evil_checkpoint(tmp_path / "last.pt", marker, envelope=envelope)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    assert not marker.exists()


def test_cli_refuses_crafted_checkpoints_with_one_line(tmp_path):
    marker = tmp_path / "pwned"
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    _evil_checkpoint(run / "checkpoints" / "last.pt", marker, envelope=True)
    evil = _evil_checkpoint(tmp_path / "model.pt", marker, envelope=False)
    commands = [["pretrain", "demo", "--out", run, "--resume", "--set", "data.root=" + str(tmp_path / "nodata")],
                ["export", evil, "--out", tmp_path / "export"]]
    for args in commands:
        proc = warm_python.run_cli(args, cwd=ROOT, timeout=300)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert proc.stderr.count("\n") == 1 and "refused" in proc.stderr, (args, proc.stderr)
    assert not marker.exists() and not (tmp_path / "export").exists()


@pytest.mark.parametrize("where", ["../outside.onnx", "/etc/hostname", "onnx/../../outside.onnx"])
def test_config_pointing_outside_the_model_folder_is_rejected(tmp_path, where):
    torch.manual_seed(0)
    saved = tclr_zoo.load_model("r3d_10_025", pretrained=False).save_pretrained(tmp_path / "model")
    (tmp_path / "outside.onnx").write_bytes(b"not looked at")
    config = json.loads((saved / "config.json").read_text())
    config["export"] = {"head": "retrieval", "input": {"name": "video"}, "max_batch": 1, "onnx": {"fp32": where}}
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(BackendError, match="points outside the model folder"):
        tclr_zoo.load_model(saved, backend="onnx")
