"""Corpus jobs from Python (``inference.corpus``): an embedding job stopped half-way continues with
``resume=True`` -- here under torchrun, with two processes -- and ends with what one uninterrupted
call gives; embeddings files and unit files of earlier versions still read."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hostile_videos import write_video
from safetensors import safe_open

import tclr_zoo
from tclr_zoo.atomic import save_safetensors
from tclr_zoo.inference.corpus import CorpusEmbeddings, embed_corpus, read_embeddings, save_embeddings
from tclr_zoo.inference.loader import Skipped
from tclr_zoo.inference.shards import UnitStore, shard_folder

# Float sums in another batch composition differ in the last bits (measured 3e-8; tests/cli/test_torchrun.py).
TOLERANCE = 1e-6
RESUME = """\
import os, sys
from tclr_zoo.inference.corpus import embed_corpus

saved, out, *paths = sys.argv[1:]
result = embed_corpus(saved, paths, out=out, unit_videos=2, resume=True, skip_bad=True, workers=0, device="cpu")
done = "None" if result is None else f"{len(result)} rows, {len(result.skipped)} skipped, {result.resumed} resumed"
print(f"rank {os.environ['RANK']}: {done}")
"""


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[str]:
    """6 real H.264 files of one window each and a broken one, 4th in sorted order."""
    folder = tmp_path_factory.mktemp("corpus")
    for i in range(6):
        write_video(folder / f"v{i}.mp4", 24 + 2 * i)
    (folder / "v2_broken.mp4").write_bytes(os.urandom(2000))
    return sorted(str(p) for p in folder.iterdir())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_stopped_job_resumes_under_torchrun_and_writes_what_one_call_gives(saved, videos, tmp_path):
    model = tclr_zoo.load_model(saved, device="cpu")
    straight = embed_corpus(model, videos, skip_bad=True, workers=0)
    out = tmp_path / "e.safetensors"
    forward, calls = model.backend.run, []

    def stopping(clips, head):  # Ctrl-C in the 3rd forward pass (one window a pass): in unit 1
        calls.append(head)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return forward(clips, head)

    model.backend.run = stopping
    with pytest.raises(KeyboardInterrupt):
        embed_corpus(model, videos, out=out, unit_videos=2, skip_bad=True, workers=0, batch_size=1)
    model.backend.run = forward
    assert not out.exists() and sorted(p.name for p in shard_folder(out).iterdir()) == ["job.json",
                                                                                      "unit-000000.safetensors"]
    with pytest.raises(FileExistsError, match="pass resume=True to continue it or overwrite=True to start afresh"):
        embed_corpus(model, videos, out=out, unit_videos=2, skip_bad=True, workers=0)
    # Mark unit 0's rows: a resume must take them from the file, not embed those videos again.
    unit = shard_folder(out) / "unit-000000.safetensors"
    with safe_open(str(unit), "pt") as f:
        meta, kept = f.metadata(), f.get_tensor("rows")
    marked = torch.full_like(kept, 0.25)
    save_safetensors({"rows": marked}, unit, metadata=meta)

    script = tmp_path / "resume.py"
    script.write_text(RESUME)
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
                          "127.0.0.1", "--master_port", str(_free_port()), str(script), str(saved), str(out), *videos],
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    assert sorted(run.stdout.splitlines()) == ["rank 0: 6 rows, 1 skipped, 2 resumed", "rank 1: None"]
    assert not shard_folder(out).exists()
    got = read_embeddings(out)
    assert got.paths == straight.paths == [p for p in videos if "broken" not in p]
    assert got.skipped == straight.skipped and [s.path for s in got.skipped] == [videos[3]]
    assert (got.model_id, got.revision, got.head) == (model.model_id, model.revision, "retrieval")
    torch.testing.assert_close(kept, straight.embeddings[:2], atol=TOLERANCE, rtol=0)
    assert torch.equal(got.embeddings[:2], marked)
    torch.testing.assert_close(got.embeddings[2:], straight.embeddings[2:], atol=TOLERANCE, rtol=0)


def test_embeddings_and_unit_files_of_earlier_versions_still_read(tmp_path):
    # An embeddings file as embed wrote it before Skipped: .npy + a sidecar whose "failed" holds dicts, no ids.
    np.save(tmp_path / "old.npy", np.eye(2, 3, dtype=np.float32))
    (tmp_path / "old.json").write_text(json.dumps({
        "model_id": "local-dir:/m", "revision": "abc", "architecture": "r3d_10_025", "head": "retrieval",
        "paths": ["/a.mp4", "/b.mp4"], "failed": [{"path": "/c.mp4", "reason": "no video stream"}], "dim": 3}))
    old = read_embeddings(tmp_path / "old.npy")
    assert old.ids == old.paths == ["/a.mp4", "/b.mp4"] and old.starts == old.ends == [None, None]
    assert old.skipped == [Skipped("/c.mp4", "no video stream")] and torch.equal(old.embeddings, torch.eye(2, 3))

    # A unit file whose skipped videos are [path, reason] pairs, as unit files recorded them before.
    store = UnitStore(tmp_path / "units", {"paths_sha256": "d"})
    store.folder.mkdir()
    meta = {"unit": 0, "job": "d", "failed": [["/c.mp4", "no video stream"]], "ids": ["/a.mp4"], "paths": ["/a.mp4"],
            "starts": [None], "ends": [None]}
    save_safetensors({"rows": torch.ones(1, 3)}, store.unit_path(0), metadata={"tclr_zoo": json.dumps(meta)})
    unit = store.load(0)
    assert unit["skipped"] == [Skipped("/c.mp4", "no video stream")] and unit["ids"] == ["/a.mp4"]

    # Window rows keep their ids and times through a file of today's format.
    rows = CorpusEmbeddings(torch.arange(12.0).reshape(3, 4), ["/a.mp4#0", "/a.mp4#1", "/b.mp4#0"],
                            ["/a.mp4", "/a.mp4", "/b.mp4"], [0.0, 1.24, 0.0], [1.24, 2.48, 1.24],
                            [Skipped("/c.mp4", "no video stream")], "local-dir:/m", "abc", "backbone")
    save_embeddings(tmp_path / "new.safetensors", rows)
    back = read_embeddings(tmp_path / "new.safetensors")
    assert (back.ids, back.paths, back.starts, back.ends, back.skipped, back.head) == (
        rows.ids, rows.paths, rows.starts, rows.ends, rows.skipped, "backbone")
    assert torch.equal(back.embeddings, rows.embeddings)
    sidecar = json.loads(Path(save_embeddings(tmp_path / "new.npy", rows)[1]).read_text())
    assert sidecar["failed"] == [{"path": "/c.mp4", "reason": "no video stream"}]  # the JSON form, as before
