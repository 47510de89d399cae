"""``index build`` / ``index search`` / ``embed`` as a user sees them:
``--resume`` with nothing to resume says so, a skipped file is reported once, counts read "1 video",
a saved index is replaced only with ``--overwrite`` (a folder of other files never), and hits whose
file has moved are marked in the text and JSON output.

Refusals run in-process through click's runner (the real command and error path; they stop before a
model is loaded); the skipped-file report runs as a real process, because its duplicate came from a
logging line that only a real stderr shows.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import warm_python
from click.testing import CliRunner

from tclr_zoo import cli
from tclr_zoo.retrieval.index import VideoIndex

ROOT = Path(__file__).resolve().parents[2]
ONE_RANK = {"WORLD_SIZE": "1", "RANK": "0", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1"}  # the torchrun path


def _one_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1, (result.exit_code, result.output)
    return lines[0]


@pytest.mark.parametrize("env", [None, ONE_RANK], ids=["one process", "under torchrun"])
def test_index_build_resume_with_nothing_to_resume_says_so(saved, video, tmp_path, env):
    out = tmp_path / "idx"
    result = CliRunner().invoke(cli.main, ["index", "build", str(saved), str(video), "--out", str(out), "--resume",
                                           "--no-progress"], env=env)
    line = _one_line(result)
    assert f"--resume: {out} has no interrupted" in line and "drop --resume" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing started afresh, nothing left behind


def test_index_build_replaces_a_saved_index_only_with_overwrite_and_never_other_files(saved, video, tmp_path):
    index = tmp_path / "idx"
    VideoIndex(4).save(index)
    line = _one_line(CliRunner().invoke(cli.main, ["index", "build", str(saved), str(video), "--out", str(index)]))
    assert f"{index}: holds a saved index; pass --overwrite" in line
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me\n")
    line = _one_line(CliRunner().invoke(cli.main, ["index", "build", str(saved), str(video), "--out", str(mine),
                                                   "--overwrite"]))
    assert f"{mine}: folder is not empty and holds no manifest.json" in line and "only a saved index" in line
    assert [p.name for p in mine.iterdir()] == ["notes.txt"]  # refused before any work, and kept


def test_index_build_reports_each_skipped_file_once_and_counts_one_video(saved, video, tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00not a video" * 100)
    done = warm_python.run_cli(["index", "build", saved, video, broken, "--out", tmp_path / "idx", "--skip-bad",
                                "--no-progress", "--workers", "0"], cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    reported = [line for line in done.stderr.splitlines() if str(broken) in line]
    assert len(reported) == 1 and reported[0].startswith(f"tclr-zoo: skipped {broken}: "), done.stderr
    assert done.stdout.startswith("indexed 1 video (1 skipped) with "), done.stdout


def test_embed_of_one_video_says_1_video(saved, video, tmp_path):
    result = CliRunner().invoke(cli.main, ["embed", str(saved), str(video), "--out", str(tmp_path / "e.safetensors"),
                                           "--no-progress", "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("embedded 1 video (0 skipped) -> "), result.stdout


def test_index_search_marks_hits_whose_file_has_moved(tmp_path):
    files = [tmp_path / f"v{i}.mp4" for i in range(3)]
    for path in files:
        path.write_bytes(b"video")
    index = VideoIndex(3)
    index.add(torch.tensor([[1.0, 0, 0], [0.9, 0.1, 0], [0.8, 0.2, 0]]), ["a", "b", "c"],
              paths=[str(p) for p in files])
    index.save(tmp_path / "idx")
    files[1].rename(tmp_path / "elsewhere.mp4")
    text = CliRunner().invoke(cli.main, ["index", "search", str(tmp_path / "idx"), "a", "-k", "3"])
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert [line.split()[2] for line in lines] == ["a", "b", "c"]
    assert [line.endswith(f"[missing: no file at {files[1]}]") for line in lines] == [False, True, False]
    as_json = CliRunner().invoke(cli.main, ["index", "search", str(tmp_path / "idx"), "a", "-k", "3", "--json"])
    assert [(hit["id"], hit["missing"]) for hit in json.loads(as_json.stdout)] == [("a", False), ("b", True),
                                                                                   ("c", False)]
