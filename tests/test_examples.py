"""The examples and the `index` / `embed` commands, run as a user would: subprocesses on real videos."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import warm_python
from PIL import Image
from real_videos import real_video
from safetensors import safe_open

import tclr_zoo
from tclr_zoo.retrieval.sheets import caption_height

ROOT = Path(__file__).resolve().parents[1]
VIDEOS = ("carphone_pristine.mp4", "bikes.mp4", "carphone_distorted.mp4")


def run(*args, timeout=300) -> subprocess.CompletedProcess:
    return warm_python.run_python(args, timeout=timeout, cwd=ROOT)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return tclr_zoo.load_model("r3d_10_025", pretrained=False).save_pretrained(
        tmp_path_factory.mktemp("examples") / "model")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("videos")
    for name in VIDEOS:
        shutil.copy(real_video(name), out / name)
    (out / "notes.txt").write_text("not a video")
    return out


def test_embed_folder_example(saved, folder, tmp_path):
    proc = run("examples/embed_folder.py", saved, folder, tmp_path / "e.safetensors")
    assert proc.returncode == 0, proc.stderr
    with safe_open(str(tmp_path / "e.safetensors"), "pt") as f:
        assert f.get_tensor("embeddings").shape == (3, 512)
        assert len(json.loads(f.metadata()["paths"])) == 3
    assert "window" in proc.stdout


def test_build_index_example_finds_every_video_itself(saved, folder, tmp_path):
    proc = run("examples/build_index.py", saved, folder, tmp_path / "index", "--sheet", tmp_path / "s.png", "-k", "3")
    assert proc.returncode == 0, proc.stderr
    assert "3/3 videos are their own nearest neighbour" in proc.stdout
    assert Image.open(tmp_path / "s.png").size == (160 * 4, 160 + caption_height(160))


def test_classify_example(tmp_path, folder):
    torch.manual_seed(0)
    net = tclr_zoo.create_model("r3d_10_025", num_classes=2)
    from tclr_zoo.hub.format import model_config, save_pretrained
    from tclr_zoo.models.preprocessing import Preprocessing
    from tclr_zoo.models.registry import resolve_model_args

    config = model_config(net, arch="r3d_10_025", model_args=resolve_model_args("r3d_10_025"),
                          preprocessing=Preprocessing(), labels=["cars", "bikes"])
    save_pretrained(net, tmp_path / "clf", config)
    proc = run("examples/classify.py", tmp_path / "clf", folder / VIDEOS[0], "--top-k", "2")
    assert proc.returncode == 0, proc.stderr
    assert "cars" in proc.stdout and "bikes" in proc.stdout


def test_cli_index_build_and_search(saved, folder, tmp_path):
    cli = ("-m", "tclr_zoo.cli")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 1000)
    built = run(*cli, "index", "build", saved, folder, broken, "--out", tmp_path / "idx", "--skip-bad",
                "--no-progress")
    assert built.returncode == 0, built.stderr
    assert "indexed 3 videos" in built.stdout and "1 skipped" in built.stdout
    assert f"skipped {broken}" in built.stderr
    query = folder / VIDEOS[1]
    found = run(*cli, "index", "search", tmp_path / "idx", query, "-k", "2", "--json", "--contact-sheet",
                tmp_path / "sheet.png")
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout[:found.stdout.rindex("]") + 1])
    assert hits[0]["path"] == str(query) and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
    assert (tmp_path / "sheet.png").is_file()
    by_id = run(*cli, "index", "search", tmp_path / "idx", str(folder / VIDEOS[0]), "-k", "1")
    assert by_id.returncode == 0 and VIDEOS[0] in by_id.stdout
    again = run(*cli, "index", "build", saved, folder, "--out", tmp_path / "idx")
    assert again.returncode == 2 and "--overwrite" in again.stderr


def test_cli_embed_npy_records_skipped_files(saved, folder, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 1000)
    proc = run("-m", "tclr_zoo.cli", "embed", saved, folder, broken, "--out", tmp_path / "e.npy", "--skip-bad",
               "--head", "backbone", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert np.load(tmp_path / "e.npy").shape == (3, 128)
    meta = json.loads((tmp_path / "e.json").read_text())
    assert [f["path"] for f in meta["failed"]] == [str(broken)] and len(meta["paths"]) == 3
    stop = run("-m", "tclr_zoo.cli", "embed", saved, broken, "--out", tmp_path / "f.npy")
    assert stop.returncode == 2 and stop.stderr.count("\n") == 1 and str(broken) in stop.stderr
    assert not (tmp_path / "f.npy").exists()
