"""The saved format of a ``VideoIndex``: file names, the manifest and its checks, and the writers
``VideoIndex.save`` uses.

It lives apart from ``index.py`` because a saved index comes from disk and is trusted in nothing:
reading it is mostly validation, which has nothing to do with searching, and a reader of the
format (or a tool that only needs ``MANIFEST_NAME``) should not have to wade through the index.

Saved layout (``save``/``load``)::

    DIR/embeddings.safetensors   {"embeddings": [N, D] float32|float16}
    DIR/faiss.index              approximate indexes only: the HNSW graph, so loading does not rebuild it
    DIR/manifest.json            format, version, model id/revision/identity/head, dim, dtype, count,
                                 sha256 of the safetensors file, and per row: ids, paths,
                                 starts, ends (window timestamps in seconds, or null); with
                                 faiss.index, "faiss": its sha256, row count and how it was built

``model_identity`` (``VideoModel.identity``: the model's weights and preprocessing as a digest) is
what decides whether a query model fits the index; manifests written before it existed have only
``model_id`` and ``revision`` and are still read (the index then compares those).
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

import torch

from ..atomic import OutputExistsError, file_sha256, refuse_to_replace, save_safetensors
from .search import import_faiss
from .types import DTYPES, IndexFormatError

EMBEDDINGS_NAME = "embeddings.safetensors"
FAISS_NAME = "faiss.index"
MANIFEST_NAME = "manifest.json"
FORMAT_NAME = "tclr-zoo-video-index"
FORMAT_VERSION = 1

_SHA256 = re.compile(r"[0-9a-f]{64}")
_MANIFEST_TYPES = {"format": str, "format_version": int, "count": int, "dtype": str, "sha256": str,
                   "ids": list, "paths": list, "starts": list, "ends": list}


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def is_saved_index(directory: Path) -> bool:
    """Whether ``directory`` holds a saved index (its manifest): the one folder ``save`` may replace."""
    return (directory / MANIFEST_NAME).is_file()


def check_index_target(directory: Path, *, overwrite: bool, flag: str = "overwrite=True") -> None:
    """May an index be saved to ``directory``? An absent or empty folder, always; a saved index only
    with ``overwrite`` (``flag`` names it in the refusal: ``--overwrite`` for the CLI). Anything
    else -- a file, a folder of the user's own files -- is never replaced, not even with
    ``overwrite``: an index is rebuilt in minutes, a user's folder is not."""
    if is_saved_index(directory):
        if not overwrite:
            raise OutputExistsError(f"{directory}: holds a saved index; pass {flag} to replace it, or choose "
                                    "another folder")
        return
    if directory.is_dir() and any(directory.iterdir()):
        raise OutputExistsError(f"{directory}: folder is not empty and holds no {MANIFEST_NAME}; refusing to replace "
                                f"it (choose another folder or empty it; {flag} replaces only a saved index)")
    refuse_to_replace(directory, overwrite=False, kind="folder")  # a file where the folder goes


def write_embeddings(folder: Path, matrix: torch.Tensor) -> str:
    """Write ``folder/embeddings.safetensors``; returns its sha256 for the manifest."""
    save_safetensors({"embeddings": matrix.contiguous()}, folder / EMBEDDINGS_NAME)
    return _sha256(folder / EMBEDDINGS_NAME)


def write_faiss(folder: Path, index: Any, built_as: dict[str, Any]) -> dict[str, Any]:
    """Write ``folder/faiss.index``; returns the manifest's ``faiss`` entry (``built_as``: the index
    type and parameters, so a reader that would build another kind ignores it)."""
    import_faiss().write_index(index, str(folder / FAISS_NAME))
    return {"file": FAISS_NAME, "sha256": _sha256(folder / FAISS_NAME), "ntotal": int(index.ntotal),
            "built_as": built_as}


def write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    """Write ``folder/manifest.json``."""
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    """The file's sha256; a file that cannot be read is an :class:`IndexFormatError` naming it."""
    try:
        return file_sha256(path)
    except OSError as err:
        raise IndexFormatError(f"{path}: cannot read ({err.strerror or err})") from err


def check_sha256(path: Path, expected: str) -> None:
    """Refuse an embeddings file whose sha256 is not the one its manifest records."""
    if _sha256(path) != expected:
        raise IndexFormatError(f"{path}: sha256 does not match {MANIFEST_NAME}; the file is corrupted "
                               "or was modified after saving")


def read_manifest(path: Path) -> dict[str, Any]:
    """Parse and type-check ``manifest.json`` (it comes from disk: trust nothing)."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IndexFormatError(f"{path}: missing; not a saved VideoIndex") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise IndexFormatError(f"{path}: unreadable manifest ({err})") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise IndexFormatError(f"{path}: not a {FORMAT_NAME} manifest")
    for key, kind in _MANIFEST_TYPES.items():
        if not isinstance(manifest.get(key), kind) or isinstance(manifest.get(key), bool):
            raise IndexFormatError(f"{path}: field {key!r} must be {kind.__name__}, got {manifest.get(key)!r:.80}")
    if manifest["format_version"] > FORMAT_VERSION:
        raise IndexFormatError(f"{path}: format version {manifest['format_version']} is newer than this "
                               f"library reads ({FORMAT_VERSION}); upgrade tclr-zoo")
    _check_manifest_values(path, manifest)
    return manifest


def _check_manifest_values(path: Path, manifest: dict[str, Any]) -> None:
    def fail(message: str):
        raise IndexFormatError(f"{path}: {message}")

    for key in ("model_id", "revision", "model_identity", "head"):
        if manifest.get(key) is not None and not isinstance(manifest[key], str):
            fail(f"field {key!r} must be a string or null")
    dim = manifest.get("dim")
    if dim is not None and (not isinstance(dim, int) or isinstance(dim, bool) or dim < 1):
        fail(f"field 'dim' must be a positive int or null, got {dim!r}")
    if manifest["dtype"] not in DTYPES or manifest["count"] < 0 or not _SHA256.fullmatch(manifest["sha256"]):
        fail("bad 'dtype', 'count' or 'sha256'")
    count = manifest["count"]
    if count > 0 and dim is None:
        fail("'dim' is null but the index has rows")
    for key in ("ids", "paths", "starts", "ends"):
        if len(manifest[key]) != count:
            fail(f"{key!r} has {len(manifest[key])} entries but count is {count}")
    if not all(isinstance(i, str) and i for i in manifest["ids"]) or len(set(manifest["ids"])) != count:
        fail("ids must be unique non-empty strings")
    if not all(p is None or isinstance(p, str) for p in manifest["paths"]):
        fail("paths must be strings or null")
    for key in ("starts", "ends"):
        if not all(t is None or (isinstance(t, (int, float)) and not isinstance(t, bool)) for t in manifest[key]):
            fail(f"{key} must be numbers or null")


def read_matrix(path: Path, manifest: dict[str, Any], *, mmap: bool = True) -> torch.Tensor:
    """The ``embeddings`` tensor, checked against the manifest's count, dim and dtype.

    ``mmap``: map the file (copy-on-write, so the file never changes) instead of reading it: loading
    costs no memory, and the pages that searches touch come from disk or from the page cache, which
    several processes serving one index share. ``mmap=False`` reads the rows into memory (a copy),
    for files on storage that should not be paged from. safetensors 0.8 maps files by itself, but
    older versions read them, so the mapping is made here rather than left to the version.
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), "pt") as f:
            names = list(f.keys())
            if names != ["embeddings"]:
                raise IndexFormatError(f"{path}: expected one tensor 'embeddings', found {sorted(names)}")
            matrix = _mapped(path, f.get_slice("embeddings")) if mmap else f.get_tensor("embeddings").clone()
    except FileNotFoundError:
        raise IndexFormatError(f"{path}: missing") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        if isinstance(err, IndexFormatError):
            raise
        raise IndexFormatError(f"{path}: not a readable safetensors file ({err})") from err
    expected = (manifest["count"], manifest["dim"] or 0)
    if tuple(matrix.shape) != expected or matrix.dtype != DTYPES[manifest["dtype"]]:
        raise IndexFormatError(f"{path}: holds {matrix.dtype} {tuple(matrix.shape)} but {MANIFEST_NAME} says "
                               f"{manifest['dtype']} {expected}")
    return matrix


_SAFETENSORS_DTYPES = {"F32": torch.float32, "F16": torch.float16}


def _mapped(path: Path, view: Any) -> torch.Tensor:
    """The tensor ``view`` describes, memory-mapped from ``path`` (a safetensors file holding it alone)."""
    dtype = _SAFETENSORS_DTYPES.get(view.get_dtype())
    if dtype is None:
        raise IndexFormatError(f"{path}: embeddings of dtype {view.get_dtype()} (expected F32 or F16)")
    shape = tuple(view.get_shape())
    with open(path, "rb") as f:
        data_start = 8 + struct.unpack("<Q", f.read(8))[0]  # safetensors: u64 header size, header, data
    size = path.stat().st_size
    nbytes = dtype.itemsize * shape[0] * (shape[1] if len(shape) > 1 else 1)
    if data_start % dtype.itemsize or data_start + nbytes > size:
        raise IndexFormatError(f"{path}: embeddings data is not where its header says")
    whole = torch.from_file(str(path), shared=False, size=size, dtype=torch.uint8)
    return whole[data_start:data_start + nbytes].view(dtype).view(shape)


def read_faiss(directory: Path, manifest: dict[str, Any], built_as: dict[str, Any], *, verify: bool) -> Any | None:
    """The saved FAISS index when it is current -- built as ``built_as`` asks, over all ``count``
    rows -- else None (the caller rebuilds it on first use). A file that its manifest names but
    that is missing, modified or inconsistent is an error, not a silent rebuild."""
    entry = manifest.get("faiss")
    if not isinstance(entry, dict) or entry.get("built_as") != built_as or entry.get("ntotal") != manifest["count"]:
        return None
    path = directory / FAISS_NAME
    if entry.get("file") != FAISS_NAME or not isinstance(entry.get("sha256"), str):
        raise IndexFormatError(f"{directory / MANIFEST_NAME}: bad 'faiss' entry")
    if verify:
        check_sha256(path, entry["sha256"])
    try:
        index = import_faiss().read_index(str(path))
    except RuntimeError as err:  # FAISS reports bad files as RuntimeError
        raise IndexFormatError(f"{path}: not a readable FAISS index ({err})") from err
    if index.ntotal != manifest["count"] or index.d != manifest["dim"]:
        raise IndexFormatError(f"{path}: holds {index.ntotal} x {index.d} but {MANIFEST_NAME} says "
                               f"{manifest['count']} x {manifest['dim']}")
    return index


__all__ = ["EMBEDDINGS_NAME", "FAISS_NAME", "FORMAT_NAME", "FORMAT_VERSION", "MANIFEST_NAME", "check_index_target",
           "check_sha256", "is_saved_index", "read_faiss", "read_manifest", "read_matrix", "write_embeddings",
           "write_faiss", "write_manifest"]
