"""Never lose a user's files.

Every command that writes refuses, before any work, an output that exists (a file, or a folder
with anything in it) unless ``--overwrite`` is given -- all through ``atomic.refuse_to_replace``.
And every file follows the user's umask, the weights too (safetensors writes through a private
temporary file of its own, which left ``model.safetensors`` at ``-rw-------``).

The refusals run in-process through click's own runner (the real command, parser and error path;
one more is run as a real subprocess), because each one stops before the model is even loaded.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest
import torch
import warm_python
from click.testing import CliRunner
from hostile_videos import write_video

import tclr_zoo
from tclr_zoo import cli
from tclr_zoo.export.exporter import export_model
from tclr_zoo.retrieval.index import VideoIndex


def _existing(tmp_path: Path, name: str, kind: str) -> Path:
    """A user's output-like thing that must survive: a file, a model-like folder, or a folder of videos."""
    path = tmp_path / name
    if kind == "file":
        path.write_text("the user's own file\n")
    elif kind == "model folder":
        path.mkdir()
        (path / "README.md").write_text("my notes\n")
        (path / "config.json").write_text("{}\n")
    else:
        path.mkdir()
        write_video(path / "holiday.mp4", 20)
    return path


def _snapshot(path: Path) -> dict:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {p: p.read_bytes() for p in files}


WRITERS = {
    # name: (argv with {model}, {video}, {target}, {dataset}; what is at {target})
    "eval --save (a model's files)": (["eval", "{model}", "--protocol", "linear", "--dataset", "ucf101", "--root",
                                       "{dataset}", "--save", "{target}"], "model folder"),
    "eval --save (a folder of videos)": (["eval", "{model}", "--protocol", "finetune", "--dataset", "ucf101", "--root",
                                          "{dataset}", "--save", "{target}"], "videos"),
    "eval --out": (["eval", "{model}", "--protocol", "retrieval", "--dataset", "ucf101", "--root", "{dataset}",
                    "--out", "{target}"], "file"),
    "finetune --save": (["finetune", "finetune_r3d18_ucf101", "--set", "model={model}", "--set", "data.root={dataset}",
                         "--save", "{target}"], "model folder"),
    "embed --out .npy": (["embed", "{model}", "{video}", "--out", "{target}"], "file"),
    "classify --json": (["classify", "{model}", "{video}", "--json", "{target}"], "file"),
    "index build --out": (["index", "build", "{model}", "{video}", "--out", "{target}"], "videos"),
    "index search --contact-sheet": (["index", "search", "{dataset}", "{video}", "--contact-sheet", "{target}"],
                                     "file"),
    "export --out": (["export", "{model}", "--out", "{target}"], "model folder"),
    "convert OUT_DIR": (["convert", "{video}", "{target}", "--arch", "r3d_18"], "model folder"),
    "pretrain --out (not a run)": (["pretrain", "--out", "{target}", "--set", "train.epochs=1"], "videos"),
}
TARGET_NAMES = {"embed --out .npy": "emb.npy", "classify --json": "top.json", "eval --out": "r.json",
                "index search --contact-sheet": "sheet.png"}


@pytest.mark.parametrize("writer", list(WRITERS))
def test_every_writer_refuses_an_existing_output_before_any_work(writer, saved, video, tiny_dataset, tmp_path):
    argv, kind = WRITERS[writer]
    target = _existing(tmp_path, TARGET_NAMES.get(writer, "out"), kind)
    before = _snapshot(target)
    values = {"model": str(saved), "video": str(video), "target": str(target), "dataset": str(tiny_dataset)}
    result = CliRunner().invoke(cli.main, [a.format(**values) for a in argv])
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2, (writer, result.output, result.exception)
    assert len(lines) == 1 and str(target) in lines[0] and "--overwrite" in lines[0], lines
    assert _snapshot(target) == before


def test_embed_sidecar_is_protected_too_and_overwrite_replaces_both(saved, video, tmp_path):
    out, sidecar = tmp_path / "emb.npy", tmp_path / "emb.json"
    sidecar.write_text("my metadata\n")
    command = [sys.executable, "-m", "tclr_zoo.cli", "embed", str(saved), str(video), "--out", str(out),
               "--device", "cpu", "--no-progress"]
    refused = warm_python.run(command, timeout=300)
    assert refused.returncode == 2 and f"{sidecar}: exists" in refused.stderr and not out.exists()
    assert sidecar.read_text() == "my metadata\n"
    done = warm_python.run(command + ["--overwrite"], timeout=300)
    assert done.returncode == 0, done.stderr
    assert out.is_file() and '"model_id"' in sidecar.read_text()


def test_every_written_file_follows_the_umask(saved, tmp_path):
    old = os.umask(0o027)
    try:
        model = tclr_zoo.load_model(saved)
        folder = model.save_pretrained(tmp_path / "saved")
        exported = tmp_path / "exported"
        export_model(saved, exported)  # saved-model layout (no ONNX: the weights are the point)
        index = VideoIndex(4)
        index.add(torch.eye(4), ["a", "b", "c", "d"])
        index.save(tmp_path / "index")
    finally:
        os.umask(old)
    written = [*folder.iterdir(), *exported.iterdir(), *(tmp_path / "index").iterdir()]
    assert {p.name for p in written} >= {"model.safetensors", "config.json", "README.md", "embeddings.safetensors"}
    modes = {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode) for p in written}
    assert set(modes.values()) == {0o640}, modes  # 0o666 minus the umask, for the weights as for the rest
