"""What the app does, without HTTP: search by an uploaded video or by an indexed row, classify, list
the indexed items, and decide which file a client may fetch.

The web layer (:mod:`.server`) only moves bytes and turns :class:`AppError` into JSON; everything a
test wants to pin down -- the hits and their windows, the URLs that play a window, the serving rule,
the messages -- is here, callable without a browser or a server.

**The serving rule.** A client names a video only by its row number in the index; the file served is
the path the index records for that row, and it must be a regular file. No client-given path or name
is ever opened, so there is nothing to traverse. Relative paths in the index are read from the
folder the app runs in (as ``tclr-zoo index search`` reads them).

**Threads.** The model runs one request at a time (``model_lock``): requests wait for it in their
own threads instead of running the forward passes side by side on the same cores. Searches of the
index take ``index_lock`` (a FAISS index is built on the first search that needs it).
"""

from __future__ import annotations

import math
import os
import threading
import time
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..data.decode import VideoDecodeError

if TYPE_CHECKING:  # torch is imported when an index is opened, not with this module (the server starts fast)
    from ..inference.model import VideoModel
    from ..retrieval.index import VideoIndex
    from ..retrieval.types import SearchHit

#: Most neighbours one search returns, and most items one page of the item list holds.
MAX_K = 100
MAX_ITEMS = 200
#: Classes the classify panel shows.
TOP_CLASSES = 5
#: Frame strips decoded at once (each decodes a few frames of an indexed video), and strips kept.
STRIP_WORKERS = 2
STRIP_CACHE = 512

#: The media type a browser is told, by file extension; ``<video>.canPlayType`` decides from it whether
#: the page plays the file or shows its frame strip (and a file that then fails to play falls back too).
MEDIA_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm",
               ".mkv": "video/x-matroska", ".ogv": "video/ogg", ".avi": "video/x-msvideo", ".mpg": "video/mpeg",
               ".mpeg": "video/mpeg", ".wmv": "video/x-ms-wmv", ".flv": "video/x-flv", ".3gp": "video/3gpp"}
FALLBACK_MEDIA_TYPE = "application/octet-stream"


class AppError(Exception):
    """A request the app refuses: an HTTP status and one line for the page (never a traceback), and
    any headers the refusal needs (``Retry-After`` on 503, ``Connection: close`` on 408)."""

    def __init__(self, message: str, status: int = 400, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class MediaFile:
    """A file the serving rule allows: the indexed path of a row and the media type to send it as."""

    path: Path
    media_type: str


def display_name(filename: str | None) -> str:
    """A client's file name, safe to echo in a message: its last path part, printable characters only,
    at most 120 of them (it is never used to open anything)."""
    base = (filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    clean = "".join(ch for ch in base if unicodedata.category(ch)[0] != "C").strip()
    return (clean[:117] + "...") if len(clean) > 120 else (clean or "upload")


def upload_suffix(name: str) -> str:
    """The extension to give an upload's temporary file (FFmpeg guesses a few formats from it):
    a short alphanumeric one from the client's name, or none."""
    suffix = Path(name).suffix.lower()
    return suffix if 2 <= len(suffix) <= 6 and suffix[1:].isalnum() else ""


def media_type(path: str | os.PathLike) -> str:
    """What a browser is told the file is, from its extension (see :data:`MEDIA_TYPES`)."""
    return MEDIA_TYPES.get(Path(path).suffix.lower(), FALLBACK_MEDIA_TYPE)


def seconds_text(value: float) -> str:
    """Seconds for a media fragment (``#t=start,end``): plain decimal, microsecond precision."""
    text = f"{max(value, 0.0) + 0.0:.6f}".rstrip("0").rstrip(".")  # + 0.0: no "-0"
    return text or "0"


def window_url(row: int, start: float | None, end: float | None) -> str:
    """The URL that plays row ``row``'s window: the media URL with a media fragment ``#t=start,end``
    (the browser seeks to ``start`` and stops at ``end``); the whole video for a per-video row."""
    url = f"/media/{row}"
    if start is None or end is None:
        return url
    return f"{url}#t={seconds_text(start)},{seconds_text(end)}"


def check_same_model(index: VideoIndex, model: VideoModel) -> None:
    """Queries must be embedded by the model whose vectors the index holds; anything else gives
    scores without meaning, so a mismatch is refused before the app starts."""
    if index.mismatch(identity=model.identity, model_id=model.model_id, revision=model.revision) is not None:
        raise AppError(f"the model {model.model_id} (revision {model.revision}) is not the model this index was built "
                       f"with ({index.model_id}, revision {index.revision}): their embeddings are not comparable; "
                       "leave --model out to use the index's model, or rebuild the index with this one")
    head = getattr(model.backend, "head", None)  # an ONNX graph runs one head, the exported one
    if head is not None and index.head is not None and head != index.head:
        raise AppError(f"the model's exported graph gives the {head!r} head but the index holds {index.head!r} "
                       "embeddings; use the torch backend or an export of that head")


class SearchService:
    """The app over one index and the model that embeds its queries (see the module docstring).

    ``index_dir``: where the index was loaded from (shown in the about panel). ``k``: neighbours per
    search unless a request asks for another number (1..:data:`MAX_K`).
    """

    def __init__(self, index: VideoIndex, model: VideoModel, *, index_dir: str | os.PathLike | None = None,
                 k: int = 10) -> None:
        if len(index) == 0:
            raise AppError(f"{index_dir or 'the index'}: the index is empty; there is nothing to search")
        check_same_model(index, model)
        self.index, self.model = index, model
        self.index_dir = None if index_dir is None else Path(index_dir)
        self.k = self._checked_k(k)
        self.model_lock = threading.Lock()
        self.index_lock = threading.Lock()
        self._strip_slots = threading.BoundedSemaphore(STRIP_WORKERS)
        self._strip_lock = threading.Lock()
        self._strips: OrderedDict[int, bytes] = OrderedDict()  # row -> PNG, least recently used first
        # The index's columns, copied once (its properties copy them on every access).
        self._ids, self._paths, self._starts, self._ends = index.ids, index.paths, index.starts, index.ends
        self.videos = len({p for p in self._paths if p is not None})
        self.windows = any(s is not None for s in self._starts)

    @classmethod
    def open(cls, index_dir: str | os.PathLike, *, model: str | None = None, backend: str = "torch",
             device: str | None = None, approximate: bool = False, k: int = 10,
             pretrained: bool = True) -> "SearchService":
        """Load the index at ``index_dir`` and its model: ``model`` when given (it must be the model the
        index records; ``pretrained=False``: an architecture's random weights), else the one the index
        records (:func:`~tclr_zoo.retrieval.build.index_model`)."""
        from ..retrieval.build import index_model
        from ..retrieval.index import VideoIndex

        index = VideoIndex.load(index_dir, approximate=approximate)
        return cls(index, index_model(index, model, backend, device, pretrained=pretrained), index_dir=index_dir, k=k)

    # ---- searching --------------------------------------------------------------------------
    def search_video(self, path: str | os.PathLike, *, name: str, k: int | None = None) -> dict[str, Any]:
        """The neighbours of an uploaded video (``path``; ``name`` is what the client called it, used
        in messages). An undecodable file raises :class:`AppError` (422) with the decoder's reason."""
        k = self._checked_k(self.k if k is None else k)
        started = time.monotonic()
        with self.model_lock:
            try:
                vector = self.model.embed(os.fspath(path), head=self.index.head or "retrieval", workers=0)
            except VideoDecodeError as err:
                raise AppError(f"{name}: {err.reason}", 422) from None
        return self._results(self._search(vector[0], k), {"kind": "upload", "name": name}, started)

    def search_row(self, row: int, *, k: int | None = None) -> dict[str, Any]:
        """The neighbours of an indexed row (its stored vector; the row itself comes first)."""
        k = self._checked_k(self.k if k is None else k)
        row = self.checked_row(row)
        started = time.monotonic()
        query = {"kind": "row", "row": row, "name": self._name(row), "start": self._starts[row],
                 "end": self._ends[row]}
        return self._results(self._search(self.index.embeddings[row].float(), k), query, started)

    def classify_video(self, path: str | os.PathLike, *, name: str, top_k: int = TOP_CLASSES) -> dict[str, Any]:
        """The top-``top_k`` labels with probabilities of an uploaded video, for a model with a classifier."""
        if not self.model.labels:
            raise AppError(f"{self.model.model_id} has no classifier, so it cannot classify; search works "
                           "(a classifier comes from tclr-zoo eval --protocol linear|finetune --save DIR)", 409)
        started = time.monotonic()
        with self.model_lock:
            try:
                top = self.model.classify(os.fspath(path), top_k=top_k, workers=0)[0]
            except VideoDecodeError as err:
                raise AppError(f"{name}: {err.reason}", 422) from None
        return {"query": {"kind": "upload", "name": name}, "seconds": round(time.monotonic() - started, 3),
                "classes": [{"label": label, "probability": p} for label, p in top]}

    def _search(self, vector: Any, k: int) -> list[SearchHit]:
        with self.index_lock:
            return self.index.search(vector, k)[0]

    def _results(self, hits: list[SearchHit], query: dict[str, Any], started: float) -> dict[str, Any]:
        return {"query": query, "seconds": round(time.monotonic() - started, 3), "windows": self.windows,
                "hits": [self.hit_json(rank, hit) for rank, hit in enumerate(hits, 1)]}

    def hit_json(self, rank: int, hit: SearchHit) -> dict[str, Any]:
        """One result as the page shows it: where it is (row, file, window) and how to show it."""
        return {"rank": rank, "row": hit.row, "id": hit.id, "name": self._name(hit.row),
                "score": hit.score if math.isfinite(hit.score) else None, "start": hit.start, "end": hit.end,
                "media_type": media_type(hit.path) if hit.path is not None else None,
                "media_url": f"/media/{hit.row}", "window_url": window_url(hit.row, hit.start, hit.end),
                "strip_url": f"/strip/{hit.row}.png", "missing": hit.missing}

    # ---- the index's items --------------------------------------------------------------------
    def items(self, *, offset: int = 0, limit: int = 50, contains: str = "") -> dict[str, Any]:
        """A page of the indexed rows (to search by one), optionally those whose id contains ``contains``."""
        if offset < 0 or not 1 <= limit <= MAX_ITEMS:
            raise AppError(f"offset must be >= 0 and limit 1..{MAX_ITEMS}, got offset {offset}, limit {limit}")
        needle = contains.casefold()
        rows = [r for r, id in enumerate(self._ids) if needle in id.casefold()] if needle else None
        total = len(self.index) if rows is None else len(rows)
        page = range(offset, min(offset + limit, total))
        chosen = list(page) if rows is None else [rows[i] for i in page]
        return {"total": total, "offset": offset,
                "items": [{"row": r, "id": self._ids[r], "name": self._name(r), "start": self._starts[r],
                           "end": self._ends[r]} for r in chosen]}

    def checked_row(self, row: int) -> int:
        """``row`` if the index has it; a row is only ever a number in ``0..len-1`` (404 otherwise)."""
        if isinstance(row, bool) or not isinstance(row, int) or not 0 <= row < len(self.index):
            raise AppError(f"no row {row!r} in the index (rows 0..{len(self.index) - 1})", 404)
        return row

    def _name(self, row: int) -> str:
        path = self._paths[row]
        return Path(path).name if path else self._ids[row]

    # ---- serving files ----------------------------------------------------------------------
    def media(self, row: int) -> MediaFile:
        """The file of row ``row`` under the serving rule (module docstring): the indexed path, a regular file."""
        path = self._paths[self.checked_row(row)]
        if path is None:
            raise AppError(f"row {row} records no video file", 404)
        if not Path(path).is_file():
            raise AppError(f"{Path(path).name}: the file the index lists for row {row} is missing or not a "
                           "regular file", 404)
        return MediaFile(Path(path), media_type(path))

    def strip_png(self, row: int) -> bytes:
        """A PNG of a few frames spread over row ``row``'s window (the whole video for a per-video row),
        decoded with the hardened decoder; the last :data:`STRIP_CACHE` are kept, and at most
        :data:`STRIP_WORKERS` are decoded at once."""
        from .strips import frame_strip

        file = self.media(row)
        with self._strip_lock:
            if row in self._strips:
                self._strips.move_to_end(row)
                return self._strips[row]
        with self._strip_slots:
            try:
                png = frame_strip(file.path, self._starts[row], self._ends[row])
            except VideoDecodeError as err:
                raise AppError(f"{file.path.name}: {err.reason}", 422) from None
        with self._strip_lock:
            self._strips[row] = png
            while len(self._strips) > STRIP_CACHE:
                self._strips.popitem(last=False)
        return png

    # ---- about --------------------------------------------------------------------------------
    def about(self) -> dict[str, Any]:
        """The about panel: model, preprocessing, index and export (see :mod:`.about`)."""
        from .about import about_panel

        return about_panel(self.model, self.index, self.index_dir, videos=self.videos, windows=self.windows)

    @staticmethod
    def _checked_k(k: int) -> int:
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise AppError(f"k must be 1..{MAX_K}, got {k!r}")
        return k


__all__ = ["AppError", "MAX_ITEMS", "MAX_K", "MEDIA_TYPES", "MediaFile", "SearchService", "TOP_CLASSES",
           "check_same_model", "display_name", "media_type", "seconds_text", "upload_suffix", "window_url"]
