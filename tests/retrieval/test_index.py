"""VideoIndex: exact search against a brute-force reference, storage, save/load and provenance checks."""

from __future__ import annotations

import json
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import tclr_zoo.retrieval.search as search_module
from tclr_zoo import load_model
from tclr_zoo.data.decode import VideoDecodeError
from tclr_zoo.models.registry import ModelNotFoundError
from tclr_zoo.retrieval.index import VideoIndex
from tclr_zoo.retrieval.search import exact_topk
from tclr_zoo.retrieval.sheets import caption_height, contact_sheet
from tclr_zoo.retrieval.types import IndexFormatError, SearchHit

DIM = 64


def random_rows(n: int, dim: int = DIM, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def names(n: int, prefix: str = "v") -> list[str]:
    return [f"{prefix}{i}" for i in range(n)]


def reference(matrix: torch.Tensor, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Brute force in float64: full score matrix, full argsort."""
    scores = F.normalize(queries.double(), dim=1) @ F.normalize(matrix.double(), dim=1).T
    order = scores.argsort(dim=1, descending=True, stable=True)[:, :k]
    return scores.gather(1, order), order


def rows_of(hits: list[list[SearchHit]]) -> list[list[int]]:
    return [[h.row for h in per_query] for per_query in hits]


@pytest.fixture(scope="module")
def big() -> tuple[torch.Tensor, VideoIndex]:
    data = random_rows(10_000)
    index = VideoIndex(DIM)
    index.add(data, names(len(data)))
    return data, index


# --------------------------------------------------------------------------------------------
# Exact search
# --------------------------------------------------------------------------------------------


def test_search_equals_brute_force(big):
    data, index = big
    queries = random_rows(16, seed=1)
    hits = index.search(queries, k=10)
    want_scores, want_rows = reference(data, queries, 10)
    assert rows_of(hits) == want_rows.tolist()
    got = torch.tensor([[h.score for h in per_query] for per_query in hits], dtype=torch.float64)
    torch.testing.assert_close(got, want_scores, atol=1e-5, rtol=0)
    first = hits[0][0]
    assert first.id == f"v{first.row}" and first.path is None and first.start is None


def test_each_vector_is_its_own_nearest_neighbour(big):
    data, index = big
    hits = index.search(data, k=1)
    assert [per_query[0].row for per_query in hits] == list(range(len(data)))
    assert all(abs(per_query[0].score - 1.0) < 1e-5 for per_query in hits)


@pytest.mark.parametrize("k", [1, 5, 127, 128, 129, 999, 1000, 1007])
def test_chunk_boundaries_and_k_against_n(k):
    data, queries = random_rows(1000, seed=2), random_rows(7, seed=3)  # 1000 = 7 chunks of 128 + 104
    index = VideoIndex(DIM, chunk_rows=128)
    index.add(data, names(1000))
    hits = index.search(queries, k=k)
    want_scores, want_rows = reference(data, queries, k)
    assert all(len(per_query) == min(k, 1000) for per_query in hits)
    assert rows_of(hits) == want_rows.tolist()


def test_exact_topk_bounds_score_memory_and_accepts_any_chunking():
    data, queries = F.normalize(random_rows(3000, seed=4)), F.normalize(random_rows(5, seed=5))
    for chunk in (1, 7, 3000, 10_000):
        scores, rows = exact_topk(data, queries, 4, chunk_rows=chunk)
        assert rows.tolist() == reference(data, queries, 4)[1].tolist()
    budget = search_module._SCORE_BUDGET
    assert search_module._chunk_rows(1, 65536) == 65536
    assert search_module._chunk_rows(256, 65536) * 256 <= budget


def test_large_query_batches_are_split(monkeypatch):
    monkeypatch.setattr(search_module, "_SCORE_BUDGET", 4096)  # groups of 4 queries, chunks of >= 1024 rows
    data, queries = F.normalize(random_rows(3000, seed=4)), F.normalize(random_rows(10, seed=5))
    scores, rows = exact_topk(data, queries, 3)
    assert rows.tolist() == reference(data, queries, 3)[1].tolist() and scores.shape == (10, 3)


def test_query_forms_and_empty_index():
    index = VideoIndex(DIM)
    assert index.search(random_rows(3), k=5) == [[], [], []]
    index.add(random_rows(20), names(20))
    vector = random_rows(1, seed=9)[0]
    assert rows_of(index.search(vector, 3)) == rows_of(index.search(vector[None].numpy(), 3))
    with pytest.raises(ValueError, match="query must be"):
        index.search(torch.randn(DIM + 1))
    with pytest.raises(ValueError, match="k must be"):
        index.search(vector, 0)
    with pytest.raises(ModelNotFoundError, match="records no loadable model.*model="):  # no model id recorded
        index.search("some/video.mp4")


def test_float16_storage_recall():
    data, queries = random_rows(10_000, seed=6), random_rows(50, seed=7)
    full, half = VideoIndex(DIM), VideoIndex(DIM, dtype="float16")
    full.add(data, names(len(data)))
    half.add(data, names(len(data)))
    assert half.embeddings.dtype == torch.float16
    a, b = full.search(queries, 10), half.search(queries, 10)
    recall = np.mean([len(set(x) & set(y)) / 10 for x, y in zip(rows_of(a), rows_of(b))])
    assert recall >= 0.98
    assert max(abs(x.score - y.score) for qa, qb in zip(a, b) for x, y in zip(qa, qb)) < 2e-3


def test_appending_grows_geometrically():
    index = VideoIndex(8)
    buffers = set()
    for i in range(3000):
        index.add(torch.randn(1, 8), [f"r{i}"])
        buffers.add(index._data.data_ptr())
    assert len(index) == 3000 and len(buffers) <= 3  # 1024 -> 2048 -> 4096 rows
    torch.testing.assert_close(index.embeddings.norm(dim=1), torch.ones(3000))


# --------------------------------------------------------------------------------------------
# Refusals
# --------------------------------------------------------------------------------------------


def test_duplicate_ids_refused_and_index_unchanged():
    index = VideoIndex(DIM)
    index.add(random_rows(3), ["a", "b", "c"])
    with pytest.raises(ValueError, match="duplicate id 'b'"):
        index.add(random_rows(2), ["d", "b"])
    with pytest.raises(ValueError, match="duplicate id 'x'"):
        index.add(random_rows(2), ["x", "x"])
    with pytest.raises(ValueError, match="sequence of strings"):
        index.add(random_rows(1), "abc")
    assert len(index) == 3 and index.ids == ["a", "b", "c"]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_and_zero_rows_refused(bad):
    index = VideoIndex(DIM)
    rows = random_rows(4)
    rows[2, 5] = bad
    with pytest.raises(ValueError, match=r"row 2 \(id 'v2'\) contains NaN or Inf"):
        index.add(rows, names(4))
    with pytest.raises(ValueError, match="all zeros"):
        index.add(torch.zeros(1, DIM), ["z"])
    with pytest.raises(ValueError, match="NaN or Inf"):
        VideoIndex(DIM).search(torch.full((DIM,), bad))
    assert len(index) == 0


def test_shape_and_metadata_refused():
    index = VideoIndex(DIM)
    with pytest.raises(ValueError, match=r"must be \[N, D\]"):
        index.add(torch.randn(DIM), ["a"])
    with pytest.raises(ValueError, match="dimension 32 but this index holds dimension 64"):
        index.add(torch.randn(2, 32), ["a", "b"])
    with pytest.raises(ValueError, match="floating point"):
        index.add(torch.ones(1, DIM, dtype=torch.long), ["a"])
    with pytest.raises(ValueError, match="paths has 1 entries for 2 rows"):
        index.add(random_rows(2), ["a", "b"], paths=["x"])
    with pytest.raises(ValueError, match="ends .* before it starts"):
        index.add(random_rows(1), ["a"], starts=[2.0], ends=[1.0])
    assert len(index) == 0


def test_mismatched_model_refused():
    index = VideoIndex(DIM, model_id="hf-hub:org/a", revision="abc", head="retrieval")
    index.add(random_rows(2), ["a", "b"], model_id="hf-hub:org/a", revision="abc", head="retrieval")
    index.add(random_rows(1, seed=1), ["c"])  # provenance not stated: accepted
    for kwargs in ({"model_id": "hf-hub:org/b"}, {"revision": "def"}, {"head": "backbone"}):
        with pytest.raises(ValueError, match="not comparable"):
            index.add(random_rows(1, seed=2), ["d"], **kwargs)
    assert len(index) == 3


def test_first_add_records_provenance_and_dim():
    index = VideoIndex()
    index.add(random_rows(2, dim=16), ["a", "b"], model_id="m", head="retrieval")
    assert (index.dim, index.model_id, index.head, index.revision) == (16, "m", "retrieval", None)
    with pytest.raises(ValueError, match="not comparable"):
        index.add(random_rows(1, dim=16), ["c"], model_id="other")
    unknown = VideoIndex(16)
    unknown.add(random_rows(1, dim=16), ["a"])
    with pytest.raises(ValueError, match="not comparable"):  # rows of unknown origin cannot vouch for "m"
        unknown.add(random_rows(1, dim=16), ["b"], model_id="m")


# --------------------------------------------------------------------------------------------
# Save / load
# --------------------------------------------------------------------------------------------


def small_index(dtype: str = "float32") -> VideoIndex:
    index = VideoIndex(DIM, dtype=dtype, model_id="hf-hub:org/repo", revision="0" * 40, head="retrieval")
    index.add(random_rows(50), names(50), paths=[f"/videos/{i}.mp4" for i in range(50)],
              starts=[None] * 25 + [float(i) for i in range(25)], ends=[None] * 25 + [i + 2.0 for i in range(25)])
    return index


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_save_load_round_trip(tmp_path, dtype):
    index = small_index(dtype)
    index.save(tmp_path / "idx")
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert {"model_id", "revision", "head", "dim", "dtype", "count", "library_version", "sha256", "ids", "paths",
            "starts", "ends"} <= set(manifest)
    assert manifest["count"] == 50 and manifest["dtype"] == dtype
    loaded = VideoIndex.load(tmp_path / "idx")
    assert (loaded.model_id, loaded.revision, loaded.head, loaded.dim, loaded.dtype) == \
        (index.model_id, index.revision, index.head, DIM, dtype)
    assert (loaded.ids, loaded.paths, loaded.starts, loaded.ends) == (index.ids, index.paths, index.starts, index.ends)
    assert torch.equal(loaded.embeddings, index.embeddings)
    queries = random_rows(5, seed=8)
    assert loaded.search(queries, 7) == index.search(queries, 7)
    loaded.add(random_rows(1, seed=9), ["new"])  # a loaded index keeps growing
    assert loaded.search(random_rows(1, seed=9), 1)[0][0].id == "new"


def test_save_replaces_old_index_atomically(tmp_path, monkeypatch):
    target = tmp_path / "idx"
    small_index().save(target)
    bigger = small_index()
    bigger.add(random_rows(1, seed=3), ["extra"])

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("safetensors.torch.save_file", interrupted)
    with pytest.raises(KeyboardInterrupt):
        bigger.save(target, overwrite=True)
    monkeypatch.undo()
    assert len(VideoIndex.load(target)) == 50
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]  # no staging folder left behind
    bigger.save(target, overwrite=True)
    assert len(VideoIndex.load(target)) == 51
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]


def test_save_refuses_to_replace_other_folders(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"meow")
    with pytest.raises(ValueError, match="refusing to replace"):
        small_index().save(tmp_path / "photos")
    assert (tmp_path / "photos" / "cat.jpg").exists()


def test_corrupted_embeddings_named(tmp_path):
    small_index().save(tmp_path / "idx")
    tensor_file = tmp_path / "idx" / "embeddings.safetensors"
    raw = bytearray(tensor_file.read_bytes())
    raw[-5] ^= 0xFF
    tensor_file.write_bytes(bytes(raw))
    with pytest.raises(IndexFormatError, match=r"embeddings\.safetensors: sha256 does not match"):
        VideoIndex.load(tmp_path / "idx")
    tensor_file.write_bytes(bytes(raw[:100]))  # truncated: also caught without the hash check
    with pytest.raises(IndexFormatError, match=r"embeddings\.safetensors: not a readable safetensors"):
        VideoIndex.load(tmp_path / "idx", verify=False)
    tensor_file.unlink()
    with pytest.raises(IndexFormatError, match=r"embeddings\.safetensors"):
        VideoIndex.load(tmp_path / "idx")


def test_manifest_disagreements_named(tmp_path):
    small_index().save(tmp_path / "idx")
    manifest_file = tmp_path / "idx" / "manifest.json"
    good = json.loads(manifest_file.read_text())
    for change, message in (({"count": 51}, "'ids' has 50 entries but count is 51"),
                            ({"ids": ["same"] * 50}, "ids must be unique"),
                            ({"starts": ["0"] * 50}, "starts must be numbers"),
                            ({"format": "other"}, "not a tclr-zoo-video-index manifest"),
                            ({"format_version": 99}, "newer than this library")):
        manifest_file.write_text(json.dumps({**good, **change}))
        with pytest.raises(IndexFormatError, match=r"manifest\.json: .*" + message):
            VideoIndex.load(tmp_path / "idx")
    shorter = {key: good[key][:49] for key in ("ids", "paths", "starts", "ends")}
    manifest_file.write_text(json.dumps({**good, "count": 49, **shorter}))
    with pytest.raises(IndexFormatError, match=r"embeddings\.safetensors: holds .* \(50, 64\) but manifest\.json says"):
        VideoIndex.load(tmp_path / "idx")
    manifest_file.write_text("{not json")
    with pytest.raises(IndexFormatError, match="manifest.json: unreadable"):
        VideoIndex.load(tmp_path / "idx")
    with pytest.raises(IndexFormatError, match="manifest.json: missing"):
        VideoIndex.load(tmp_path / "nothing")


def test_empty_index_round_trip(tmp_path):
    VideoIndex().save(tmp_path / "empty")
    loaded = VideoIndex.load(tmp_path / "empty")
    assert len(loaded) == 0 and loaded.dim is None
    loaded.add(random_rows(2), ["a", "b"])
    assert loaded.dim == DIM


# --------------------------------------------------------------------------------------------
# FAISS
# --------------------------------------------------------------------------------------------


def faiss_or_skip():
    return pytest.importorskip("faiss", reason="faiss-cpu not installed (optional extra); torch path tested above")


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_faiss_exact_matches_torch(dtype):
    faiss_or_skip()
    data, queries = random_rows(5000, seed=10), random_rows(20, seed=11)
    exact, flat = VideoIndex(DIM, dtype=dtype), VideoIndex(DIM, dtype=dtype, backend="faiss")
    for part in (slice(0, 3000), slice(3000, 5000)):  # the FAISS index is synced incrementally
        exact.add(data[part], names(5000)[part])
        flat.add(data[part], names(5000)[part])
        a, b = exact.search(queries, 10), flat.search(queries, 10)
        assert rows_of(a) == rows_of(b)
        assert max(abs(x.score - y.score) for qa, qb in zip(a, b) for x, y in zip(qa, qb)) < 1e-5
    assert flat.faiss_index().ntotal == 5000


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_faiss_approximate_recall(dtype):
    faiss_or_skip()
    data = random_rows(5000, seed=12)
    approx = VideoIndex(DIM, dtype=dtype, approximate=True)
    assert approx.backend == "faiss"
    approx.add(data, names(5000))
    hits = approx.search(data[:200], 1)
    assert np.mean([per_query[0].row == i for i, per_query in enumerate(hits)]) >= 0.95


def test_backend_choice(monkeypatch):
    assert VideoIndex(DIM).backend == "torch"  # exact search: torch measured faster than IndexFlatIP
    with pytest.raises(ValueError, match="approximate search needs FAISS"):
        VideoIndex(DIM, backend="torch", approximate=True)
    monkeypatch.setitem(sys.modules, "faiss", None)  # as if faiss-cpu were not installed
    with pytest.raises(ImportError, match="pip install faiss-cpu"):
        VideoIndex(DIM, backend="faiss")
    with pytest.raises(ImportError, match="pip install faiss-cpu"):
        VideoIndex(DIM, approximate=True)


# --------------------------------------------------------------------------------------------
# Videos: contact sheet, build with a real model
# --------------------------------------------------------------------------------------------


def write_video(path: Path, seed: int, frames: int = 32, size: int = 32, fps: int = 8) -> str:
    """A tiny H.264 file of smooth random colour fields (distinct per seed)."""
    import av

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, size=(4, 4, 3)).astype(np.float32)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            field = np.kron(np.roll(base, i // 4, axis=1), np.ones((size // 4, size // 4, 1), np.float32))
            frame = av.VideoFrame.from_ndarray(field.astype(np.uint8), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return str(path)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("videos")
    return [write_video(root / f"clip{i}.mp4", seed=i) for i in range(4)]


def test_contact_sheet_png(tmp_path, videos):
    from PIL import Image

    hits = [SearchHit("clip1", 0.93, videos[1], None, None, 1), SearchHit("clip2#1", 0.5, videos[2], 1.0, 3.0, 2),
            SearchHit("gone", 0.1, str(tmp_path / "missing.mp4"), None, None, 3)]
    out = contact_sheet(videos[0], hits, tmp_path / "sheets" / "sheet.png", size=96)
    with Image.open(out) as image:
        assert image.format == "PNG"
        assert image.size == (96 * 4, 96 + caption_height(96))
        assert image.getpixel((48, 48)) != image.getpixel((96 * 3 + 48, 48))  # a frame vs the "no frame" tile
    with pytest.raises(TypeError, match="SearchHit"):
        contact_sheet(videos[0], [hits], tmp_path / "bad.png")


@pytest.fixture(scope="module")
def model():
    return load_model("r3d_10_025", pretrained=False)


def test_build_search_by_path_and_skip_bad(tmp_path, videos, model):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(VideoDecodeError, match="broken.mp4"):
        VideoIndex.build(model, [videos[0], str(broken)], progress=False)
    index = VideoIndex.build(model, [*videos[:3], str(broken)], batch_size=4, progress=False, skip_bad=True)
    assert index.ids == videos[:3] and index.paths == videos[:3]
    assert [path for path, _ in index.skipped] == [str(broken)]
    assert (index.model_id, index.revision, index.head, index.dim) == (model.model_id, model.revision, "retrieval", 512)
    hits = index.search(videos[:3], k=3, model=model)
    assert [per_query[0].path for per_query in hits] == videos[:3]
    index.add_videos(model, [videos[3]], ids=["last"], progress=False)
    assert index.search(videos[3], 1, model=model)[0][0].id == "last"
    other = VideoIndex(512, model_id="another-model")
    with pytest.raises(ValueError, match="not comparable"):
        other.search(videos[0], model=model)


def test_build_windows(videos, model):
    index = VideoIndex.build(model, videos[:2], ids=["a", "b"], windows=True, progress=False)
    windows = model.embed_windows(videos[0])
    assert index.ids[:len(windows.starts)] == [f"a#{w}" for w in range(len(windows.starts))]
    assert index.starts[:len(windows.starts)] == windows.starts and index.ends[:len(windows.ends)] == windows.ends
    count = len(windows.starts)
    torch.testing.assert_close(index.embeddings[:count], F.normalize(windows.embeddings), atol=1e-5, rtol=0)
    hit = index.search(windows.embeddings[-1], 1)[0][0]
    assert hit.path == videos[0] and hit.score > 0.9999 and hit.start == windows.starts[hit.row]


def test_extreme_but_finite_values_are_normalised():
    index = VideoIndex(2)
    index.add(torch.tensor([[1e30, 1e30], [1e-30, 0.0], [3.0, 4.0]]), ["huge", "tiny", "plain"])
    expected = torch.tensor([[0.5 ** 0.5, 0.5 ** 0.5], [1.0, 0.0], [0.6, 0.8]])
    torch.testing.assert_close(index.embeddings, expected)
