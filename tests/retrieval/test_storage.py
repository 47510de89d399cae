"""Where an index may be saved: ``VideoIndex.save`` replaces a saved index only with
``overwrite=True`` -- as ``index build`` needs ``--overwrite`` -- and never a folder of other files."""

from __future__ import annotations

import pytest
import torch

from tclr_zoo.atomic import OutputExistsError
from tclr_zoo.retrieval.index import VideoIndex


def _index(*ids: str) -> VideoIndex:
    index = VideoIndex(4)
    index.add(torch.eye(4)[:len(ids)], list(ids))
    return index


def test_save_refuses_to_replace_a_saved_index_without_overwrite(tmp_path):
    target = tmp_path / "idx"
    _index("a", "b").save(target)
    with pytest.raises(OutputExistsError, match=f"{target}: holds a saved index; pass overwrite=True to replace it"):
        _index("c").save(target)
    assert VideoIndex.load(target).ids == ["a", "b"]  # untouched
    with pytest.raises(ValueError):  # what library callers have always caught a refused target as
        _index("c").save(target)
    _index("c").save(target, overwrite=True)
    assert VideoIndex.load(target).ids == ["c"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]  # no lock file or staging folder left


def test_save_never_replaces_a_folder_of_other_files_even_with_overwrite(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "cat.jpg").write_bytes(b"meow")
    for overwrite in (False, True):
        with pytest.raises(OutputExistsError, match="holds no manifest.json; refusing to replace it"):
            _index("a").save(photos, overwrite=overwrite)
    assert [p.name for p in photos.iterdir()] == ["cat.jpg"]
    (tmp_path / "empty").mkdir()
    _index("a").save(tmp_path / "empty")  # an empty folder is always fine
    assert VideoIndex.load(tmp_path / "empty").ids == ["a"]
