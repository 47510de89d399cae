"""Search hits whose video has moved since it was indexed are marked: the row still
matches, but its file is gone, and a caller (the CLI, a contact sheet) must be able to tell."""

from __future__ import annotations

import torch

from tclr_zoo.retrieval.index import VideoIndex


def test_hits_whose_file_has_moved_are_marked_missing(tmp_path):
    files = [tmp_path / f"v{i}.mp4" for i in range(3)]
    for path in files:
        path.write_bytes(b"video")
    index = VideoIndex(3)
    index.add(torch.eye(3), ["a", "b", "c"], paths=[str(p) for p in files])
    index.add(torch.ones(1, 3), ["no file"])  # a row without a path is not "missing"
    files[1].rename(tmp_path / "moved.mp4")
    hits = index.search(torch.ones(3), 4)[0]
    assert {hit.id: hit.missing for hit in hits} == {"a": False, "b": True, "c": False, "no file": False}
    index.save(tmp_path / "idx")
    files[2].unlink()
    per_query = VideoIndex.load(tmp_path / "idx").search(torch.eye(3), 1)
    assert [(hit.id, hit.missing) for (hit,) in per_query] == [("a", False), ("b", True), ("c", True)]  # checked
    # when searching, not when the index was saved
