"""The small names every part of retrieval shares: a search result (``SearchHit``), the error a bad
saved index raises (``IndexFormatError``) and the storage dtypes (``DTYPES``).

They live apart from ``index.py`` so that the modules around the index -- the search kernels, the
saved format, contact sheets -- and its callers can use them without importing the index (and so
without an import cycle: ``sheets`` needs ``SearchHit``, never ``VideoIndex``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Storage dtypes by the name the index and its manifest use.
DTYPES = {"float32": torch.float32, "float16": torch.float16}


class IndexFormatError(ValueError):
    """A saved index that is missing, corrupted or malformed; the message names the file."""


@dataclass(frozen=True)
class SearchHit:
    """One neighbour: its id, cosine score, video path, window times (seconds) and row number, and
    ``missing``: its video file is no longer at ``path`` (moved or deleted since it was indexed; the
    row still matches, but nothing can be played, decoded or re-embedded from there).

    Attributes:
        id: the row's id, as given to ``VideoIndex.add`` (``"<id>#<window>"`` for window rows).
        score: cosine similarity to the query, in [-1, 1].
        path: the video the row comes from (None when the row was added without one).
        start: the window's start in seconds (None for a whole-video row).
        end: the window's end in seconds (None for a whole-video row).
        row: the row number in the index.
        missing: the video file is no longer at ``path``.
    """

    id: str
    score: float
    path: str | None
    start: float | None
    end: float | None
    row: int
    missing: bool = False


__all__ = ["DTYPES", "IndexFormatError", "SearchHit"]
