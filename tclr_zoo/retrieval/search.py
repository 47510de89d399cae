"""The search kernels behind ``VideoIndex.search``: exact chunked top-k in torch, and FAISS (exact
``IndexFlatIP`` or approximate HNSW), with the storage-dtype handling of each.

They live apart from ``index.py`` because they work on bare matrices: the index owns the rows, ids and
provenance; these functions only turn ``[N, D]`` rows and ``[Q, D]`` queries into scores and row numbers.

Rows are L2-normalised when added, so cosine similarity is a dot product and a search is one
matrix product against the stored ``[N, D]`` matrix followed by a top-k.

Why exact brute force (torch) is the default, even for large indexes: a single query is bound
by memory bandwidth (the whole matrix is read once), a batch of queries by arithmetic (the
matrix is read once for the whole batch), and both are the best any exact method can do.
Measured on a 2-core Sapphire Rapids VM, 1,000,000 x 512 float32 (2 GB), top-10, one query costs
about one read of the matrix, and a batch about the bare matrix product (see BENCHMARKS.md P5).
FAISS's ``IndexFlatIP`` (faiss-cpu 1.15 wheel, OpenBLAS) was slower for both there and holds a
second copy of the matrix, so FAISS is used for *approximate* search (HNSW, ``approximate=True``),
or for exact search only when asked for (``backend="faiss"``).

Scoring is chunked (at most 16 MB of scores at a time) with a running top-k, so memory does
not grow with the index. float16 storage (``dtype="float16"``) halves memory and is scored in
float32: each chunk is upcast into a reused 32 MB buffer. On the machine above the conversion,
not memory, is then the limit (see BENCHMARKS.md P5); a float16 matrix product was faster there,
but that CPU has AVX512-FP16 (without native half arithmetic, speed is not assured) and float16
scores are too coarse to rank close neighbours exactly.
"""

from __future__ import annotations

import numpy as np
import torch

BACKENDS = ("auto", "torch", "faiss")

# Rows scored per chunk; the score temporary is further bounded by _SCORE_BUDGET.
DEFAULT_CHUNK_ROWS = 65536
# Floats in one [queries, chunk] score block (16 MB): big enough to amortise per-chunk Python
# overhead, small enough that a large query batch never allocates Q x N scores.
_SCORE_BUDGET = 1 << 22
_MIN_CHUNK_ROWS = 1024
# Bytes of the float32 buffer a float16 chunk is upcast into (the chunk shrinks to fit): small
# enough to stay in a large L3, big enough that per-call overhead stays negligible.
_UPCAST_BYTES = 32 << 20
_HNSW_M = 32
_HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 128


# --------------------------------------------------------------------------------------------
# Exact top-k
# --------------------------------------------------------------------------------------------


def _chunk_rows(num_queries: int, chunk_rows: int) -> int:
    """``chunk_rows``, lowered so that ``num_queries x rows`` scores stay within the budget."""
    return min(chunk_rows, max(_MIN_CHUNK_ROWS, _SCORE_BUDGET // max(1, num_queries)))


def _chunk_scores(queries: torch.Tensor, block: torch.Tensor, scratch: torch.Tensor | None) -> torch.Tensor:
    """``queries @ block.T`` in float32; a float16 block is first upcast into the reused ``scratch``.

    Why not a half-precision product: its speed depends on the CPU (fast only with AVX512-FP16
    or AMX-FP16; see the module docstring) and its float16 scores (steps of ~5e-4 near 1) are
    too coarse to rank close neighbours without a second, exact pass.
    """
    if block.dtype != queries.dtype:
        block = scratch[:block.shape[0]].copy_(block)
    return queries @ block.T


def _merge(best: tuple[torch.Tensor, torch.Tensor] | None, scores: torch.Tensor, rows: torch.Tensor,
           k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the ``k`` best of the running top-k and a new chunk's top-k."""
    if best is not None:
        scores, rows = torch.cat([best[0], scores], dim=1), torch.cat([best[1], rows], dim=1)
    if scores.shape[1] > k:
        scores, pick = scores.topk(k, dim=1)
        rows = rows.gather(1, pick)
    return scores, rows


def _sort_hits(scores: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Best first, ties broken by row number, so results do not depend on chunking or threads."""
    by_row = rows.argsort(dim=1, stable=True)
    scores, rows = scores.gather(1, by_row), rows.gather(1, by_row)
    by_score = scores.argsort(dim=1, descending=True, stable=True)
    return scores.gather(1, by_score), rows.gather(1, by_score)


def exact_topk(matrix: torch.Tensor, queries: torch.Tensor, k: int, *,
               chunk_rows: int = DEFAULT_CHUNK_ROWS) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``min(k, N)`` rows of ``matrix [N, D]`` with the largest dot product with each query.

    Returns ``(scores, rows)``, both ``[Q, min(k, N)]``, best first. ``queries`` is float32
    ``[Q, D]``; ``matrix`` float32 or float16. Rows are scored in chunks with a running top-k
    merge, so the temporary score matrix is bounded (``_SCORE_BUDGET`` floats) whatever N and Q.
    """
    num_rows, num_queries = matrix.shape[0], queries.shape[0]
    k = min(k, num_rows)
    if k == 0 or num_queries == 0:
        return torch.empty(num_queries, 0), torch.empty(num_queries, 0, dtype=torch.long)
    group = _SCORE_BUDGET // _MIN_CHUNK_ROWS
    if num_queries > group:  # so many queries that even minimal chunks would exceed the budget
        parts = [exact_topk(matrix, queries[i:i + group], k, chunk_rows=chunk_rows)
                 for i in range(0, num_queries, group)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    step, scratch = _chunk_rows(num_queries, chunk_rows), None
    if matrix.dtype != queries.dtype:
        step = min(step, max(1, _UPCAST_BYTES // (4 * matrix.shape[1])))
        scratch = torch.empty(min(step, num_rows), matrix.shape[1], dtype=queries.dtype)
    best = None
    for start in range(0, num_rows, step):
        scores = _chunk_scores(queries, matrix[start:start + step], scratch)
        top, pick = scores.topk(min(k, scores.shape[1]), dim=1)
        best = _merge(best, top, pick + start, k)
    return _sort_hits(*best)


# --------------------------------------------------------------------------------------------
# FAISS
# --------------------------------------------------------------------------------------------


def import_faiss():
    try:
        import faiss
    except ImportError as err:
        raise ImportError("FAISS is not installed; pip install faiss-cpu (or use backend='torch' "
                          "with approximate=False)") from err
    return faiss


def new_faiss_index(faiss, dim: int, dtype: str, approximate: bool):
    """Exact: flat inner product (scalar-quantised fp16 for fp16 storage, to keep memory halved).
    Approximate: an HNSW graph over the same codes."""
    ip = faiss.METRIC_INNER_PRODUCT
    fp16 = dtype == "float16"
    if not approximate:
        return faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, ip) if fp16 \
            else faiss.IndexFlatIP(dim)
    index = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_fp16, _HNSW_M, ip) if fp16 \
        else faiss.IndexHNSWFlat(dim, _HNSW_M, ip)
    index.hnsw.efConstruction = _HNSW_EF_CONSTRUCTION
    return index


def faiss_built_as(dtype: str, approximate: bool) -> dict[str, object]:
    """What :func:`new_faiss_index` builds, as recorded beside a saved FAISS index: a saved index is
    used only if it is what this code would build now."""
    return {"kind": "hnsw" if approximate else "flat", "codes": "fp16" if dtype == "float16" else "fp32",
            "metric": "inner_product", **({"m": _HNSW_M, "ef_construction": _HNSW_EF_CONSTRUCTION} if approximate
                                          else {})}


def faiss_topk(index, queries: torch.Tensor, k: int, *, approximate: bool,
               ef_search: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Search the FAISS ``index`` (from :func:`new_faiss_index`) for float32 ``queries [Q, D]``;
    ``(scores, rows)`` best first as :func:`exact_topk` gives them (rows of -1 where FAISS found
    fewer than ``k``)."""
    if approximate:
        index.hnsw.efSearch = max(ef_search, k)
    scores, rows = index.search(np.ascontiguousarray(queries.numpy()), k)
    return _sort_hits(torch.from_numpy(scores), torch.from_numpy(rows))


__all__ = ["BACKENDS", "DEFAULT_CHUNK_ROWS", "HNSW_EF_SEARCH", "exact_topk", "faiss_built_as", "faiss_topk",
           "import_faiss", "new_faiss_index"]
