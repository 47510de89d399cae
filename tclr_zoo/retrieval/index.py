"""``VideoIndex``: cosine search over video embeddings, saved as safetensors + a JSON manifest.

This module holds the container: rows, ids, per-row metadata and the provenance of the vectors,
and the ways to fill it (``add``, ``add_videos``, ``build``), query it (``search``) and keep it
(``save``, ``load``). How a search is computed is in ``search`` (exact chunked top-k, FAISS), how
an index is laid out on disk in ``storage``, and the shared small types in ``types``.

Rows are L2-normalised when added, so cosine similarity is a dot product; float16 storage
(``dtype="float16"``) halves memory and is still scored in float32.

Only vectors of one model are comparable: the index records the model's identity (a digest of its
weights and preprocessing, ``VideoModel.identity``), the embedding head, and the name it was loaded
from (id and revision, to load it again), and refuses rows (or query models) of another model. The
identity decides, not the name: the model's folder moved or copied elsewhere still matches its
index, other weights under the same name do not. Indexes saved before identities were recorded
(id and revision only) keep working with the model they name.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import exclusive_output, staged_directory
from ..hub.identity import short_identity
from ..inference.loader import Skipped
from ..inference.shards import video_part, windows_part
from .search import (
    BACKENDS,
    DEFAULT_CHUNK_ROWS,
    HNSW_EF_SEARCH,
    exact_topk,
    faiss_built_as,
    faiss_topk,
    import_faiss,
    new_faiss_index,
)
from .storage import (
    EMBEDDINGS_NAME,
    FORMAT_NAME,
    FORMAT_VERSION,
    MANIFEST_NAME,
    check_index_target,
    check_sha256,
    read_faiss,
    read_manifest,
    read_matrix,
    write_embeddings,
    write_faiss,
    write_manifest,
)
from .types import DTYPES, SearchHit

log = logging.getLogger(__name__)

_MIN_CAPACITY = 1024


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------


def _as_float_matrix(value: Any, what: str) -> torch.Tensor:
    """A CPU floating tensor from a tensor, numpy array or nested list (no copy when possible)."""
    tensor = value if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value))
    if not tensor.is_floating_point():
        raise ValueError(f"{what} must be floating point, got {tensor.dtype}")
    return tensor.detach().cpu()


def _normalised_rows(matrix: torch.Tensor, what: str, names: Sequence[str] | None = None) -> torch.Tensor:
    """L2-normalised float32 copy of the rows, refusing NaN/Inf and zero rows by name.

    The float32 norms flag every odd row (NaN/Inf propagate; squares of huge or tiny finite
    values overflow/underflow), so the full-matrix ``isfinite`` pass, which cost more than the
    normalisation itself, is replaced by a float64 look at just those rows.
    """
    work = matrix.to(torch.float32, copy=True)
    norms = torch.linalg.vector_norm(work, dim=1, keepdim=True)
    odd = ~torch.isfinite(norms[:, 0]) | (norms[:, 0] == 0)
    for row in odd.nonzero()[:, 0].tolist():
        label = f" (id {names[row]!r})" if names is not None else ""
        values = matrix[row].double()
        if not torch.isfinite(values).all():
            raise ValueError(f"{what}: row {row}{label} contains NaN or Inf")
        norm = values.norm()
        if norm == 0:
            raise ValueError(f"{what}: row {row}{label} is all zeros; its cosine similarity is undefined")
        work[row], norms[row] = (values / norm).float(), 1.0
    return work.div_(norms)


def _column(values: Sequence[Any] | None, count: int, name: str, convert) -> list[Any]:
    """A per-row metadata column of length ``count`` (all None when not given)."""
    if values is None:
        return [None] * count
    if isinstance(values, (str, bytes)):
        raise ValueError(f"{name} must be a sequence with one entry per row, not a single string")
    values = list(values)
    if len(values) != count:
        raise ValueError(f"{name} has {len(values)} entries for {count} rows")
    return [None if v is None else convert(v, name) for v in values]


def _to_path(value: Any, name: str) -> str:
    if not isinstance(value, (str, os.PathLike)):
        raise ValueError(f"{name} entries must be str, os.PathLike or None, got {type(value).__name__}")
    return os.fspath(value)


def _to_time(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"{name} entries must be numbers (seconds) or None, got {type(value).__name__}")
    if not math.isfinite(float(value)):
        raise ValueError(f"{name} entries must be finite, got {value!r}")
    return float(value)


def _checked_ids(ids: Any, count: int, taken: dict[str, int]) -> list[str]:
    """Ids are the user's handle on a row: non-empty strings, unique in the batch and the index."""
    if isinstance(ids, (str, bytes)) or ids is None:
        raise ValueError("ids must be a sequence of strings, one per row")
    ids = list(ids)
    if len(ids) != count:
        raise ValueError(f"got {len(ids)} ids for {count} rows")
    seen: set[str] = set()
    for value in ids:
        if not isinstance(value, str) or not value:
            raise ValueError(f"ids must be non-empty strings, got {value!r}")
        if value in taken or value in seen:
            again = " (to re-add a changed video: add_videos(..., replace=True))" if value in taken else ""
            raise ValueError(f"duplicate id {value!r}: ids must be unique within the index{again}")
        seen.add(value)
    return ids



def _is_path_query(query: Any) -> bool:
    if isinstance(query, (str, os.PathLike)):
        return True
    return (isinstance(query, (list, tuple)) and len(query) > 0
            and all(isinstance(q, (str, os.PathLike)) for q in query))


# --------------------------------------------------------------------------------------------
# The index
# --------------------------------------------------------------------------------------------


class VideoIndex:
    """Embeddings of videos (or of windows of videos) of one model, searchable by cosine similarity.

    ``dim``: embedding size (``None``: taken from the first ``add``). ``dtype``: ``"float32"`` or
    ``"float16"`` (half the memory; scores still computed in float32). ``model_id``/``revision``/
    ``identity``/``head``: provenance of the vectors (see the module docstring); ``None`` means not
    yet known, and is taken from the first ``add`` that states it. ``backend``: ``"torch"`` (exact
    chunked search), ``"faiss"``
    (FAISS, exact ``IndexFlatIP`` or approximate HNSW; needs faiss-cpu) or ``"auto"`` (torch for
    exact search, FAISS for approximate). ``approximate=True`` uses an HNSW graph: much faster
    queries on large indexes, at the cost of a slow build, extra memory and some recall.
    """

    def __init__(self, dim: int | None = None, *, dtype: str = "float32", model_id: str | None = None,
                 revision: str | None = None, head: str | None = None, backend: str = "auto",
                 approximate: bool = False, chunk_rows: int = DEFAULT_CHUNK_ROWS, identity: str | None = None) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
            raise ValueError(f"dim must be a positive int or None, got {dim!r}")
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
        self.dim, self.dtype = dim, dtype
        self.model_id, self.revision, self.head, self.identity = model_id, revision, head, identity
        self.backend = self._resolve_backend(backend, approximate)
        self.approximate = approximate
        self.chunk_rows = chunk_rows
        self.ef_search = HNSW_EF_SEARCH
        self.skipped: list[Skipped] = []  # the videos build() left out (skip_bad); not saved
        self._data = torch.empty(0, dim or 0, dtype=DTYPES[dtype])
        self._count = 0
        self._ids: list[str] = []
        self._row_of: dict[str, int] = {}
        self._paths: list[str | None] = []
        self._starts: list[float | None] = []
        self._ends: list[float | None] = []
        self._faiss = None
        self._recorded: tuple[Any, Any] = (None, None)  # (backend, device) -> model, for recorded_model

    @staticmethod
    def _resolve_backend(backend: str, approximate: bool) -> str:
        """Torch is faster for exact search on CPU (see the ``search`` module docstring); FAISS does approximate."""
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if backend == "torch" and approximate:
            raise ValueError("approximate search needs FAISS: use backend='faiss' or 'auto'")
        resolved = "faiss" if backend == "faiss" or approximate else "torch"
        if resolved == "faiss":
            import_faiss()  # fail now, not at the first search
        return resolved

    # ---- views ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._count

    def __contains__(self, id: object) -> bool:
        return id in self._row_of

    def __repr__(self) -> str:
        return (f"VideoIndex({self._count} x {self.dim}, dtype={self.dtype!r}, model_id={self.model_id!r}, "
                f"head={self.head!r}, backend={self.backend!r}{', approximate' if self.approximate else ''})")

    @property
    def embeddings(self) -> torch.Tensor:
        """The stored ``[N, D]`` rows (a view: do not modify in place)."""
        return self._data[:self._count]

    @property
    def ids(self) -> list[str]:
        return list(self._ids)

    @property
    def paths(self) -> list[str | None]:
        return list(self._paths)

    @property
    def starts(self) -> list[float | None]:
        return list(self._starts)

    @property
    def ends(self) -> list[float | None]:
        return list(self._ends)

    def row(self, id: str) -> int:
        """Row number of ``id`` (KeyError if absent)."""
        return self._row_of[id]

    # ---- adding -----------------------------------------------------------------------------
    def _check_provenance(self, what: str, **given: str | None) -> None:
        """Refuse vectors that state another model or head than the index's (see :meth:`mismatch`)."""
        problem = self.mismatch(**given)
        if problem is not None:
            raise ValueError(f"{what} come from {problem}: embeddings of different models or heads are not "
                             "comparable; use a separate index")

    def mismatch(self, *, identity: str | None = None, model_id: str | None = None, revision: str | None = None,
                 head: str | None = None) -> str | None:
        """How rows of this provenance differ from the index's ("model_id='b' but this index holds
        model_id='a'"), or None when they may be added to it and searched against it.

        Vectors of different models (or heads) live in unrelated spaces: mixing them gives
        meaningless scores without any error, so the mismatch must be caught. When both sides state
        an identity (``VideoModel.identity``), it decides and the names do not matter: a copied or
        moved model folder is the same model. Otherwise -- an index saved before identities were
        recorded, or rows that state none -- ``model_id`` and ``revision`` are compared. ``None``
        means "not stated" and is not checked; an index with rows but no recorded value cannot
        vouch for them, so it refuses a stated one.
        """
        if identity is not None and self.identity is not None:
            if identity != self.identity:
                return (f"the model {model_id or 'given'} (identity {short_identity(identity)}) but this index holds "
                        f"embeddings of {self.model_id} (identity {short_identity(self.identity)})")
            model_id = revision = None  # the same weights and preprocessing, under whatever name
        for key, value in (("model_id", model_id), ("revision", revision), ("head", head)):
            mine = getattr(self, key)
            if value is None or value == mine or (mine is None and self._count == 0):
                continue
            return f"{key}={value!r} but this index holds {key}={mine!r}"
        return None

    def _checked_matrix(self, embeddings: Any) -> torch.Tensor:
        matrix = _as_float_matrix(embeddings, "embeddings")
        if matrix.ndim != 2:
            raise ValueError(f"embeddings must be [N, D], got shape {tuple(matrix.shape)}")
        if self.dim is not None and matrix.shape[1] != self.dim:
            raise ValueError(f"embeddings have dimension {matrix.shape[1]} but this index holds dimension "
                             f"{self.dim} (a different model or head?)")
        if matrix.shape[1] == 0:
            raise ValueError("embeddings have dimension 0")
        return matrix

    def add(self, embeddings: Any, ids: Sequence[str], *, paths: Sequence[Any] | None = None,
            starts: Sequence[float | None] | None = None, ends: Sequence[float | None] | None = None,
            model_id: str | None = None, revision: str | None = None, head: str | None = None,
            identity: str | None = None) -> None:
        """Append rows ``[N, D]`` (normalised here) with their unique ids and optional metadata.

        Everything is validated before anything is stored, so a refused call leaves the index
        unchanged.

        Args:
            embeddings: float rows ``[N, D]`` (tensor, numpy array or nested list), ``D`` the index's
                dimension (the first ``add`` sets it when the index was made without one).
            ids: one non-empty string per row, unique within the index.
            paths: per row, the video it comes from (or None).
            starts: per row, the window's start in seconds, for clip-level rows (or None).
            ends: per row, the window's end in seconds (not before its start).
            model_id: the model the rows come from; checked against the index's, recorded when the
                index did not know it yet (likewise ``revision`` and ``head``).
            revision: the model's revision (a Hub commit).
            head: the embedding head the rows come from.
            identity: the model's identity (``VideoModel.identity``); when the index records one too,
                it decides whether the rows fit, whatever ``model_id`` says.

        Raises:
            ValueError: a refused row or column: not floating point, not ``[N, D]`` of the index's
                dimension, a NaN/Inf or all-zero row, a missing or duplicate id, a metadata column of
                the wrong length, a window that ends before it starts, or a ``model_id``/``revision``/
                ``head`` other than the index's (embeddings of different models are not comparable).
        """
        self._check_provenance("embeddings", identity=identity, model_id=model_id, revision=revision, head=head)
        matrix = self._checked_matrix(embeddings)
        count = matrix.shape[0]
        ids = _checked_ids(ids, count, self._row_of)
        rows = _normalised_rows(matrix, "embeddings", ids)
        paths = _column(paths, count, "paths", _to_path)
        starts = _column(starts, count, "starts", _to_time)
        ends = _column(ends, count, "ends", _to_time)
        for i, (s, e) in enumerate(zip(starts, ends)):
            if s is not None and e is not None and e < s:
                raise ValueError(f"row {i} (id {ids[i]!r}) ends ({e}) before it starts ({s})")
        self._adopt(model_id=model_id, revision=revision, head=head, identity=identity, dim=rows.shape[1])
        self._append(rows, ids, paths, starts, ends)

    def _adopt(self, **values: Any) -> None:
        """Record provenance stated by the first rows added to an index that did not know it."""
        for key, value in values.items():
            if getattr(self, key) is None and value is not None:
                setattr(self, key, value)

    def _reserve(self, extra: int) -> None:
        """Grow the row buffer geometrically, so appends cost amortised O(1) per row."""
        needed = self._count + extra
        if needed <= self._data.shape[0] and self._data.shape[1] == self.dim:
            return
        capacity = max(needed, 2 * self._data.shape[0], _MIN_CAPACITY)
        grown = torch.empty(capacity, self.dim, dtype=DTYPES[self.dtype])
        if self._count:
            grown[:self._count] = self._data[:self._count]
        self._data = grown

    def _append(self, rows: torch.Tensor, ids: list[str], paths: list, starts: list, ends: list) -> None:
        self._reserve(rows.shape[0])
        self._data[self._count:self._count + rows.shape[0]] = rows
        for offset, id in enumerate(ids):
            self._row_of[id] = self._count + offset
        self._count += rows.shape[0]
        self._ids += ids
        self._paths += paths
        self._starts += starts
        self._ends += ends

    def add_videos(self, model: Any, paths: Iterable[str | os.PathLike], *, ids: Sequence[str] | None = None,
                   head: str | None = None, batch_size: int = 8, progress: bool = True, skip_bad: bool = False,
                   windows: bool = False, workers: int | None = None, replace: bool = False) -> list[Skipped]:
        """Embed videos with ``model`` and add them; returns the skipped ones (``Skipped(path, reason)``).

        Rows are added only once every video is embedded, so a failure leaves the index unchanged.

        Args:
            model: a ``tclr_zoo.VideoModel``; its id and revision must be the index's (when known).
            paths: video files, and folders (searched recursively for video files, as the CLI does).
            ids: one per video; default: the paths.
            head: the embedding head (default: the index's, else ``retrieval``).
            batch_size: windows per forward pass.
            progress: show a progress bar over the videos.
            skip_bad: unreadable videos are logged and skipped instead of aborting.
            windows: add one row per sliding window (id ``"<id>#<window>"``, with its start/end in
                seconds) instead of one per video.
            workers: processes decoding the videos while the model runs (``VideoModel.embed``).
            replace: re-add videos whose file changed: the rows the index holds for these paths are
                removed once the new ones are embedded, and the new rows go at the end (a video that
                is skipped keeps its old rows).

        Returns:
            The videos left out with ``skip_bad``, as ``Skipped(path, reason)``, in input order
            (empty without ``skip_bad``).

        Raises:
            ValueError: ids that are duplicate or taken, or a model or head other than the index's.
            FileNotFoundError: a folder in ``paths`` holds no video file.
            VideoDecodeError: a video cannot be decoded (without ``skip_bad``).
        """
        from ..data.layouts import expand_video_folders

        paths = expand_video_folders([paths] if isinstance(paths, (str, os.PathLike)) else list(paths))
        replaced = set(paths) if replace else set()
        taken = {id: row for id, row in self._row_of.items() if self._paths[row] not in replaced}
        ids = _checked_ids(paths if ids is None else ids, len(paths), taken)
        head = head or self.head or "retrieval"
        self._check_provenance("the model's embeddings", **provenance(model), head=head)
        parts, skipped = [], []
        for item in model.video_outputs([os.fspath(p) for p in paths], head=head, batch_size=batch_size,
                                        progress=progress, workers=workers, skip_bad=skip_bad):
            if isinstance(item, Skipped):
                log.info("skipping %s: %s", item.path, item.reason)  # returned to the caller, who reports it (once)
                skipped.append(item)
                continue
            i, wins, out = item
            parts.append(windows_part(wins, out, paths[i], ids[i], head) if windows else
                         video_part(out, paths[i], ids[i], head))
        if replaced:
            self.remove_videos(replaced - {item.path for item in skipped})  # a video that failed keeps its old rows
        if parts:
            self.add_parts(parts, model, head)
        return skipped

    def add_parts(self, parts: list[dict[str, Any]], model: Any, head: str) -> None:
        """Add the rows of ``parts`` (``inference.shards.video_part`` / ``windows_part`` dicts) in one
        call, stating ``model``'s provenance."""
        columns = {key: [v for part in parts for v in part[key]] for key in ("ids", "paths", "starts", "ends")}
        self.add(torch.cat([part["embeddings"] for part in parts]), columns.pop("ids"), **columns,
                 **provenance(model), head=head)

    # ---- removing ---------------------------------------------------------------------------
    def remove(self, ids: str | Iterable[str]) -> int:
        """Remove the rows with these ids; returns how many. An unknown id raises ``KeyError`` (naming
        it) before anything is removed. A FAISS index is rebuilt on the next search that needs it:
        HNSW graphs cannot delete.

        Args:
            ids: one id, or several.

        Returns:
            The number of rows removed.

        Raises:
            KeyError: an id the index does not hold (nothing is removed).
        """
        ids = [ids] if isinstance(ids, str) else list(ids)
        missing = [id for id in ids if id not in self._row_of]
        if missing:
            raise KeyError(f"not in the index: {', '.join(map(repr, missing[:5]))}"
                           + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
        return self._drop_rows({self._row_of[id] for id in ids})

    def remove_videos(self, paths: Iterable[str | os.PathLike]) -> int:
        """Remove every row of these videos (one per video, or one per window); returns how many.
        Paths the index does not hold are ignored.

        Args:
            paths: the videos' paths, as they were added (compared as strings, not resolved).

        Returns:
            The number of rows removed (0 when none matched).
        """
        paths = {os.fspath(p) for p in paths}
        return self._drop_rows({row for row, path in enumerate(self._paths) if path in paths})

    def _drop_rows(self, drop: set[int]) -> int:
        if not drop:
            return 0
        keep = [row for row in range(self._count) if row not in drop]
        self._data = self._data[torch.tensor(keep, dtype=torch.long)] if keep else self._data[:0].clone()
        self._count = len(keep)
        for name in ("_ids", "_paths", "_starts", "_ends"):
            column = getattr(self, name)
            setattr(self, name, [column[row] for row in keep])
        self._row_of = {id: row for row, id in enumerate(self._ids)}
        self._faiss = None
        return len(drop)

    @classmethod
    def build(cls, model: Any, paths: Iterable[str | os.PathLike], *, ids: Sequence[str] | None = None,
              head: str = "retrieval", batch_size: int = 8, progress: bool = True, skip_bad: bool = False,
              windows: bool = False, dtype: str = "float32", backend: str = "auto",
              approximate: bool = False, workers: int | None = None) -> "VideoIndex":
        """Embed ``paths`` with ``model`` (a ``tclr_zoo.VideoModel``) into a new index.

        Videos skipped with ``skip_bad=True`` are listed in ``index.skipped``.

        Args:
            model: the ``VideoModel`` that embeds the videos; the index records its id and revision.
            paths: video files, and folders (searched recursively).
            ids: one per video; default: the paths.
            head: the embedding head.
            batch_size: windows per forward pass.
            progress: show a progress bar over the videos.
            skip_bad: skip unreadable videos instead of aborting.
            windows: one row per sliding window instead of one per video.
            dtype: storage, ``"float32"`` or ``"float16"``.
            backend: search backend, ``"torch"``, ``"faiss"`` or ``"auto"`` (see the class).
            approximate: search an HNSW graph (FAISS) instead of every row.
            workers: processes decoding the videos while the model runs.

        Returns:
            The new index.

        Raises:
            ValueError: a bad ``dtype`` or ``backend``, ``approximate`` with ``backend="torch"``, or
                duplicate ids.
            ImportError: FAISS is needed (``backend="faiss"`` or ``approximate``) but not installed.
            FileNotFoundError, VideoDecodeError: as for :meth:`add_videos`.
        """
        index = cls(None, dtype=dtype, **provenance(model), head=head,
                    backend=backend, approximate=approximate)
        index.skipped = index.add_videos(model, paths, ids=ids, head=head, batch_size=batch_size,
                                         progress=progress, skip_bad=skip_bad, windows=windows, workers=workers)
        return index

    # ---- searching --------------------------------------------------------------------------
    def recorded_model(self, *, backend: str = "torch", device: str | None = None) -> Any:
        """The model whose embeddings this index holds, loaded from the id it records (a Hub model at the
        recorded commit; a folder must still hold the same weights, which searching checks). When it
        cannot be loaded from there (a random init, a folder that moved), the message says to pass
        the model: a moved or copied folder of it matches the index."""
        from ..constants import HF_PREFIX
        from ..hub.resolve import is_loadable
        from ..inference.model import load_model
        from ..models.registry import ModelNotFoundError

        fix = {"hint": "; pass the model that built it (model=...; a moved or copied folder of it matches)",
               "cli_hint": ("--model", "; pass the model that built it with --model (a moved or copied folder of it "
                                       "matches)")}
        if not is_loadable(self.model_id):
            raise ModelNotFoundError(f"the index records no loadable model ({self.model_id!r})", **fix)
        key = (backend, device)
        if self._recorded[0] != key:
            pinned = f"@{self.revision}" if self.model_id.startswith(HF_PREFIX) and self.revision else ""
            try:
                self._recorded = (key, load_model(self.model_id + pinned, backend=backend, device=device))
            except ModelNotFoundError as err:
                raise ModelNotFoundError(f"the index's model cannot be loaded from where it was recorded "
                                         f"({getattr(err, 'reason', err)})", **fix) from None
        return self._recorded[1]

    def _queries(self, query: Any, model: Any, batch_size: int) -> torch.Tensor:
        """Queries as normalised float32 ``[Q, D]``; video paths are embedded with ``model`` (default:
        the model the index records, see :meth:`recorded_model`)."""
        if _is_path_query(query):
            if model is None:
                model = self.recorded_model()
            self._check_provenance("the query model's embeddings", **provenance(model))
            query = model.embed(query, head=self.head or "retrieval", batch_size=batch_size)
        matrix = _as_float_matrix(query, "query")
        if matrix.ndim == 1:
            matrix = matrix.unsqueeze(0)
        if matrix.ndim != 2 or (self.dim is not None and matrix.shape[1] != self.dim):
            raise ValueError(f"query must be [D] or [Q, D] with D = {self.dim}, got shape {tuple(matrix.shape)}")
        if matrix.shape[0] == 0:
            return matrix.float()
        return _normalised_rows(matrix, "query")

    def search(self, query: Any, k: int = 10, *, model: Any = None, batch_size: int = 8) -> list[list[SearchHit]]:
        """The ``k`` nearest rows (cosine) of each query, best first: one list of hits per query.

        Args:
            query: a vector ``[D]``, a matrix ``[Q, D]``, or a video path / list of paths (then
                ``model`` embeds them, with the index's head; without it, the model the index records).
            k: hits per query.
            model: the ``VideoModel`` that embeds video queries (default: :meth:`recorded_model`).
            batch_size: windows per forward pass when embedding video queries.

        Returns:
            One list of :class:`~.types.SearchHit` per query, best first. Fewer than ``k`` hits when
            the index has fewer rows (approximate search may also return fewer); a hit's ``missing``
            says its video file is no longer there.

        Raises:
            ValueError: ``k`` not a positive int, a query not ``[D]``/``[Q, D]`` of the index's
                dimension (or with NaN/Inf or all-zero rows), or a query model other than the one
                whose embeddings the index holds.
            ModelNotFoundError: video queries without ``model`` and the index records no loadable model.
        """
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, got {k!r}")
        queries = self._queries(query, model, batch_size)
        if self._count == 0 or queries.shape[0] == 0:
            return [[] for _ in range(queries.shape[0])]
        if self.backend == "faiss":
            scores, rows = self._faiss_search(queries, min(k, self._count))
        else:
            scores, rows = exact_topk(self.embeddings, queries, k, chunk_rows=self.chunk_rows)
        present: dict[str, bool] = {}  # one stat per file per search (windows of one video share it)
        return [[self._hit(int(r), float(s), present) for s, r in zip(srow.tolist(), rrow.tolist()) if r >= 0]
                for srow, rrow in zip(scores, rows)]

    def _hit(self, row: int, score: float, present: dict[str, bool]) -> SearchHit:
        """The hit of ``row``, marked ``missing`` when its file is no longer there (``present``:
        what this search already found out about files)."""
        path = self._paths[row]
        if path is not None and path not in present:
            present[path] = os.path.exists(path)
        return SearchHit(self._ids[row], score, path, self._starts[row], self._ends[row], row,
                         missing=path is not None and not present[path])

    # ---- FAISS ------------------------------------------------------------------------------
    def faiss_index(self):
        """The FAISS index, built on first use and then given only the rows added since.

        FAISS keeps its own copy of the vectors (float32, or float16 codes for fp16 storage).
        """
        faiss = import_faiss()
        if self._faiss is None or self._faiss.ntotal > self._count:
            self._faiss = new_faiss_index(faiss, self.dim, self.dtype, self.approximate)
        for start in range(self._faiss.ntotal, self._count, self.chunk_rows):
            block = self._data[start:min(start + self.chunk_rows, self._count)]
            self._faiss.add(np.ascontiguousarray(block.float().numpy()))
        return self._faiss

    def _faiss_search(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        return faiss_topk(self.faiss_index(), queries, k, approximate=self.approximate, ef_search=self.ef_search)

    # ---- saving and loading -----------------------------------------------------------------
    def _manifest(self, sha256: str, faiss: dict[str, Any] | None = None) -> dict[str, Any]:
        from .. import __version__

        return {**({"faiss": faiss} if faiss else {}), "format": FORMAT_NAME, "format_version": FORMAT_VERSION,
                "library_version": __version__,
                "model_id": self.model_id, "revision": self.revision, "model_identity": self.identity,
                "head": self.head, "dim": self.dim,
                "dtype": self.dtype, "count": self._count, "embeddings_file": EMBEDDINGS_NAME,
                "sha256": sha256, "ids": self._ids, "paths": self._paths, "starts": self._starts,
                "ends": self._ends}

    def save(self, directory: str | os.PathLike, *, graph: bool | None = None, overwrite: bool = False) -> Path:
        """Write ``directory/embeddings.safetensors`` and ``directory/manifest.json`` atomically.

        Both files are written to a temporary sibling folder that then replaces ``directory``,
        so an interrupted save leaves the previous index intact. A ``directory`` that already holds
        a saved index is replaced only with ``overwrite=True`` (as ``index build`` needs
        ``--overwrite``); a non-empty one that is not a saved index is never replaced
        (``OutputExistsError``, a ``ValueError``, naming the folder). While it writes, the save holds
        the folder's writer lock: another process saving there at the same time gets
        ``atomic.OutputInUseError``. An approximate index also writes its HNSW graph
        (``faiss.index``, built now if it was not yet), which ``load`` then uses instead of building
        it again; ``graph=False`` leaves it out (e.g. for intermediate saves of a long build).

        Args:
            directory: the folder to write.
            graph: write the HNSW graph (default: when the index is approximate).
            overwrite: replace a saved index already in ``directory``.

        Returns:
            ``directory``, as a ``Path``.

        Raises:
            OutputExistsError: ``directory`` holds a saved index (without ``overwrite``), other files,
                or is a file.
            OutputInUseError: another process is writing ``directory``.
            WriteError: it cannot be written (full disk, read-only); the previous index is kept.
        """
        directory = Path(directory)
        with exclusive_output(directory):
            check_index_target(directory, overwrite=overwrite)
            with staged_directory(directory) as staging:
                matrix = self.embeddings if self.dim is not None else torch.empty(0, 0, dtype=DTYPES[self.dtype])
                sha256 = write_embeddings(staging, matrix)
                graph = (write_faiss(staging, self.faiss_index(), faiss_built_as(self.dtype, True))
                         if (self.approximate if graph is None else graph) and self._count else None)
                write_manifest(staging, self._manifest(sha256, graph))
        return directory

    @classmethod
    def load(cls, directory: str | os.PathLike, *, backend: str = "auto", approximate: bool | None = None,
             verify: bool = True, mmap: bool = True) -> "VideoIndex":
        """Read an index written by :meth:`save`.

        Raises :class:`~.types.IndexFormatError` (a ``ValueError``) naming the file when a file is
        missing, malformed, fails its sha256 check (``verify=False`` skips it, e.g. for
        read-only trusted copies) or disagrees with the manifest. ``approximate=True`` uses the
        saved HNSW graph when it is current (saved by an approximate index, over all rows) and
        builds one on first search otherwise; ``None`` (the default): approximate when the index was
        saved with a graph and FAISS is installed, exact otherwise. The embeddings are memory-mapped
        from the file (pages
        are read as searches touch them, and processes serving one index share them);
        ``mmap=False`` reads them into memory instead.

        Args:
            directory: a folder written by :meth:`save`.
            backend: search backend, ``"torch"``, ``"faiss"`` or ``"auto"``.
            approximate: use an HNSW graph (see above; ``None``: when one was saved and FAISS is there).
            verify: check the embeddings' (and the graph's) sha256 against the manifest.
            mmap: memory-map the embeddings instead of reading them into memory.

        Returns:
            The index, with the saved rows, ids, metadata and provenance.

        Raises:
            IndexFormatError: a missing, malformed or modified file (the message names it).
            ValueError: a bad ``backend``, or ``approximate=True`` with ``backend="torch"``.
            ImportError: FAISS is needed but not installed.
        """
        directory = Path(directory)
        manifest_path, tensor_path = directory / MANIFEST_NAME, directory / EMBEDDINGS_NAME
        manifest = read_manifest(manifest_path)
        if approximate is None:
            approximate = "faiss" in manifest and backend != "torch" and _faiss_installed()
        if verify:
            check_sha256(tensor_path, manifest["sha256"])
        matrix = read_matrix(tensor_path, manifest, mmap=mmap)
        index = cls(manifest["dim"], dtype=manifest["dtype"], model_id=manifest["model_id"],
                    revision=manifest["revision"], head=manifest["head"], backend=backend, approximate=approximate,
                    identity=manifest.get("model_identity"))
        index._data, index._count = matrix, matrix.shape[0]
        index._ids, index._paths = manifest["ids"], manifest["paths"]
        index._starts, index._ends = ([None if t is None else float(t) for t in manifest[key]]
                                      for key in ("starts", "ends"))
        index._row_of = {id: row for row, id in enumerate(index._ids)}
        if approximate and index._count:
            index._faiss = read_faiss(directory, manifest, faiss_built_as(index.dtype, True), verify=verify)
        return index


def provenance(model: Any) -> dict[str, str | None]:
    """What a ``VideoModel``'s rows state about where they come from: its identity, id and revision."""
    return {"identity": model.identity, "model_id": model.model_id, "revision": model.revision}


def _faiss_installed() -> bool:
    try:
        import_faiss()
    except ImportError:
        return False
    return True


__all__ = ["VideoIndex"]
