"""An index ready to serve: rows removed and videos re-added, the HNSW graph saved and loaded
without a rebuild, and big exact indexes memory-mapped -- with the sha256 checks kept."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import torch.nn.functional as F
from test_index import names, random_rows, write_video

import tclr_zoo.retrieval.search as search_module
from tclr_zoo import load_model
from tclr_zoo.retrieval.index import VideoIndex
from tclr_zoo.retrieval.storage import FAISS_NAME, MANIFEST_NAME
from tclr_zoo.retrieval.types import IndexFormatError

pytest.importorskip("faiss")


def filled(n: int, dim: int = 32, **kwargs) -> tuple[torch.Tensor, VideoIndex]:
    data = random_rows(n, dim)
    index = VideoIndex(dim, **kwargs)
    index.add(data, names(n), paths=[f"/videos/{i % (n // 2)}.mp4" for i in range(n)])
    return data, index


# --------------------------------------------------------------------------------------------
# remove, and re-adding a changed video
# --------------------------------------------------------------------------------------------


def test_remove_keeps_every_other_row_and_its_metadata():
    data, index = filled(10)
    with pytest.raises(KeyError, match="'nope'"):
        index.remove(["v1", "nope"])
    assert len(index) == 10  # nothing removed when one id is unknown
    assert index.remove(["v1", "v7"]) == 2 and index.remove("v0") == 1
    kept = [i for i in range(10) if i not in (0, 1, 7)]
    assert index.ids == [f"v{i}" for i in kept] and index.paths == [f"/videos/{i % 5}.mp4" for i in kept]
    torch.testing.assert_close(index.embeddings, F.normalize(data[kept]), atol=1e-6, rtol=0)
    assert [index.row(f"v{i}") for i in kept] == list(range(7))
    hit = index.search(data[8], 1)[0][0]
    assert (hit.id, hit.row) == ("v8", kept.index(8))
    assert "v1" not in index and index.search(data[1], 7)[0][0].id != "v1"


def test_remove_videos_drops_all_their_rows_and_empties_cleanly(tmp_path):
    _, index = filled(8)  # paths /videos/0..3.mp4, two rows each
    assert index.remove_videos(["/videos/2.mp4", "/videos/never.mp4"]) == 2
    assert "/videos/2.mp4" not in index.paths and len(index) == 6
    assert index.remove(index.ids) == 6 and len(index) == 0 and index.search(random_rows(1, 32)[0], 3) == [[]]
    index.add(random_rows(2, 32, seed=3), ["again0", "again1"])
    index.save(tmp_path / "idx")
    assert VideoIndex.load(tmp_path / "idx").ids == ["again0", "again1"]


def test_a_removed_row_leaves_the_approximate_search_too():
    data, index = filled(200, approximate=True)
    assert index.search(data[5], 1)[0][0].id == "v5"  # the HNSW graph is built here
    index.remove("v5")
    index.add(random_rows(1, 32, seed=5), ["new"])  # back to 200 rows: an old graph would look current
    assert all(hit.id != "v5" for hit in index.search(data[5], 10)[0])
    ids = [q[0].id for q in index.search(data[:40], 1)]  # each row is its own nearest neighbour
    assert [id for i, id in enumerate(ids) if i != 5] == [f"v{i}" for i in range(40) if i != 5]


def test_re_adding_a_changed_video_replaces_its_rows(tmp_path):
    model = load_model("r3d_10_025", pretrained=False)
    paths = [write_video(tmp_path / f"clip{i}.mp4", seed=i) for i in range(3)]
    index = VideoIndex.build(model, paths, windows=True, progress=False)
    before, old_rows = len(index), index.paths.count(paths[1])
    with pytest.raises(ValueError,
                       match=r"unique within the index \(to re-add a changed video: add_videos\(..., replace=True\)\)"):
        index.add_videos(model, [paths[1]], windows=True, progress=False)
    write_video(tmp_path / "clip1.mp4", seed=7, frames=96)  # the file changed: other pixels, more windows
    index.add_videos(model, [paths[1]], windows=True, progress=False, replace=True)
    fresh = model.embed_windows(paths[1])
    rows = [row for row, path in enumerate(index.paths) if path == paths[1]]
    assert len(rows) == len(fresh.starts) > old_rows and len(index) == before - old_rows + len(rows)
    torch.testing.assert_close(index.embeddings[rows], F.normalize(fresh.embeddings), atol=1e-5, rtol=0)
    assert index.ids[-len(rows):] == [f"{paths[1]}#{w}" for w in range(len(rows))]


# --------------------------------------------------------------------------------------------
# The saved HNSW graph
# --------------------------------------------------------------------------------------------


def test_approximate_index_is_saved_with_its_graph_and_loaded_without_a_rebuild(tmp_path, monkeypatch):
    data, index = filled(500, approximate=True)
    expected = index.search(data[:20], 5)
    index.save(tmp_path / "idx")
    manifest = json.loads((tmp_path / "idx" / MANIFEST_NAME).read_text())
    assert manifest["faiss"]["ntotal"] == 500 and manifest["faiss"]["built_as"]["kind"] == "hnsw"

    def no_build(*args, **kwargs):
        raise AssertionError("the saved HNSW graph was rebuilt")

    monkeypatch.setattr("tclr_zoo.retrieval.index.new_faiss_index", no_build)
    loaded = VideoIndex.load(tmp_path / "idx", approximate=True)
    assert loaded.faiss_index().ntotal == 500
    assert [[h.id for h in q] for q in loaded.search(data[:20], 5)] == [[h.id for h in q] for q in expected]
    monkeypatch.undo()
    assert VideoIndex.load(tmp_path / "idx", approximate=False)._faiss is None  # exact loading ignores the graph


def test_a_tampered_or_stale_graph_is_refused_or_rebuilt(tmp_path, monkeypatch):
    data, index = filled(100, approximate=True)
    index.save(tmp_path / "idx")
    shutil.copytree(tmp_path / "idx", tmp_path / "tampered")
    graph = tmp_path / "tampered" / FAISS_NAME
    graph.write_bytes(graph.read_bytes()[:-16] + bytes(16))
    with pytest.raises(IndexFormatError, match="faiss.index: sha256 does not match"):
        VideoIndex.load(tmp_path / "tampered", approximate=True)
    # this code now builds HNSW with other parameters: the saved graph is not what it would build
    monkeypatch.setattr(search_module, "_HNSW_M", 16)
    stale = VideoIndex.load(tmp_path / "idx", approximate=True)
    assert stale._faiss is None and stale.search(data[3], 1)[0][0].id == "v3"


def test_exact_index_writes_no_graph_and_loading_follows_what_was_saved(tmp_path):
    _, index = filled(10)
    index.save(tmp_path / "idx")
    assert not (tmp_path / "idx" / FAISS_NAME).exists()
    assert "faiss" not in json.loads((tmp_path / "idx" / MANIFEST_NAME).read_text())
    assert VideoIndex.load(tmp_path / "idx").approximate is False
    _, approx = filled(10, approximate=True)
    approx.save(tmp_path / "approx")
    loaded = VideoIndex.load(tmp_path / "approx")  # saved with a graph: approximate, graph read
    assert loaded.approximate and loaded._faiss is not None
    assert VideoIndex.load(tmp_path / "approx", approximate=False)._faiss is None
    approx.save(tmp_path / "no-graph", graph=False)
    assert not (tmp_path / "no-graph" / FAISS_NAME).exists()


def test_index_build_approximate_saves_the_graph_that_search_uses(tmp_path):
    from click.testing import CliRunner

    from tclr_zoo import cli

    saved = load_model("r3d_10_025", pretrained=False).save_pretrained(tmp_path / "model")
    paths = [write_video(tmp_path / f"clip{i}.mp4", seed=i) for i in range(3)]
    runner = CliRunner()
    built = runner.invoke(cli.main, ["index", "build", str(saved), *paths, "--out", str(tmp_path / "idx"),
                                     "--approximate", "--no-progress", "--workers", "0"])
    assert built.exit_code == 0, built.output
    assert (tmp_path / "idx" / FAISS_NAME).is_file()
    found = runner.invoke(cli.main, ["index", "search", str(tmp_path / "idx"), paths[2], "-k", "1", "--json"])
    assert found.exit_code == 0, found.output
    assert json.loads(found.output)[0]["id"] == paths[2]


# --------------------------------------------------------------------------------------------
# Memory-mapped loading
# --------------------------------------------------------------------------------------------


def _mapped_from(address: int, path) -> bool:
    """Whether ``address`` lies in a memory mapping of the file ``path`` (Linux: /proc/self/maps)."""
    for line in open("/proc/self/maps"):
        fields = line.split()
        if len(fields) >= 6 and fields[5] == str(path):
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if start <= address < end:
                return True
    return False


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_mmap_loading_maps_the_file_and_never_writes_it(tmp_path, dtype):
    data, index = filled(300, dtype=dtype)
    index.save(tmp_path / "idx")
    tensor_file = tmp_path / "idx" / "embeddings.safetensors"
    before = tensor_file.read_bytes()
    loaded = VideoIndex.load(tmp_path / "idx")
    assert _mapped_from(loaded.embeddings.data_ptr(), tensor_file)  # the rows are pages of the file, not a copy
    in_memory = VideoIndex.load(tmp_path / "idx", mmap=False)
    assert not _mapped_from(in_memory.embeddings.data_ptr(), tensor_file)
    assert torch.equal(in_memory.embeddings, index.embeddings)
    assert torch.equal(loaded.embeddings, index.embeddings)
    assert [h.id for h in loaded.search(data[7], 3)[0]] == [h.id for h in index.search(data[7], 3)[0]]
    loaded.add(random_rows(2, 32, seed=9), ["new0", "new1"])
    loaded.remove("v0")
    assert len(loaded) == 301 and tensor_file.read_bytes() == before


def test_mmap_loading_keeps_the_checks(tmp_path):
    _, index = filled(20)
    index.save(tmp_path / "idx")
    tensor_file = tmp_path / "idx" / "embeddings.safetensors"
    raw = bytearray(tensor_file.read_bytes())
    raw[-1] ^= 0xFF
    tensor_file.write_bytes(bytes(raw))
    with pytest.raises(IndexFormatError, match="sha256 does not match"):
        VideoIndex.load(tmp_path / "idx")
    tensor_file.write_bytes(bytes(raw[:-64]))  # truncated: the header promises more than the file holds
    with pytest.raises(IndexFormatError, match="embeddings.safetensors"):
        VideoIndex.load(tmp_path / "idx", verify=False)
