"""The names ``load_model`` accepts, mapped to a local model folder: registry names (``arch`` or
``arch.tag``), ``hf-hub:ORG/REPO[@REVISION]``, ``local-dir:PATH`` and plain folders.

A name that looks like a path but is no model folder gets a message with a fix that works when
followed (a checkpoint -> how to export it; a near miss -> "did you mean").
"""

from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..atomic import file_sha256
from ..constants import CONFIG_NAME, HF_PREFIX, LOCAL_PREFIX, WEIGHTS_NAME
from ..models.registry import ModelNotFoundError, get_arch


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from: a folder (or ``None`` for a random init of ``arch``) and its identity.

    ``model_id`` and ``revision`` identify the weights (a Hub commit, or the weights' sha256 for a
    local folder) so embeddings from different models are never mixed in one index.
    """

    model_id: str
    directory: Path | None
    revision: str | None = None
    arch: str | None = None


def resolve(name_or_uri: str, *, pretrained: bool = True, with_onnx: bool = False) -> ModelSource:
    """Map a ``load_model`` name to a local folder, downloading from the Hub when needed.

    ``with_onnx`` also downloads a Hub repo's ``onnx/`` folder (for the onnx backend).
    """
    name = os.fspath(name_or_uri)
    if name.startswith(HF_PREFIX):
        return _from_hub(name[len(HF_PREFIX):], with_onnx)
    if name.startswith(LOCAL_PREFIX):
        return _from_folder(Path(name[len(LOCAL_PREFIX):]).expanduser(), explicit=True)
    if Path(name).expanduser().is_dir():
        return _from_folder(Path(name).expanduser(), explicit=False)
    if _looks_like_path(name):
        raise ModelNotFoundError(_not_a_model_folder(name))
    arch = name.split(".", 1)[0]
    get_arch(arch)
    if not pretrained:
        return ModelSource(f"{arch} (random init)", None, None, arch)
    from ..models.pretrained import get_pretrained

    return _from_hub(get_pretrained(name).repo_id, with_onnx)


def _not_a_model_folder(name: str) -> str:
    """Why ``name`` (which looks like a path) is no model, with a fix that works when followed."""
    from ..models.registry import list_models

    path = Path(name).expanduser()
    if path.is_file() and path.suffix in (".pt", ".pth"):
        return (f"{name}: a training checkpoint, not a saved model folder; make one with "
                f"`tclr-zoo export {name} --out {path.with_suffix('')}-model` (eval and export also take the "
                "checkpoint itself)")
    if path.is_file():
        return f"{name}: a file, not a saved model folder ({CONFIG_NAME} + {WEIGHTS_NAME})"
    parent = path.parent if str(path.parent) else Path(".")
    if parent.is_dir():
        close = difflib.get_close_matches(path.name, [p.name for p in parent.iterdir() if p.is_dir()], n=1)
        hint = f" (did you mean {parent / close[0]}?)" if close else ""
    else:
        hint = f" (nor is there a folder {parent})"
    if re.fullmatch(r"\w[\w.-]*/\w[\w.-]*", name) and not hint.startswith(" (did"):  # could be ORG/REPO
        hint += f"; for the Hub repository {name} write hf-hub:{name}"
    return (f"{name}: no such folder{hint}. A model is a saved model folder, local-dir:PATH, "
            f"hf-hub:ORG/REPO[@REVISION] or an architecture name ({', '.join(list_models())})")


def _looks_like_path(name: str) -> bool:
    return any(sep in name for sep in ("/", os.sep)) or name.startswith((".", "~")) or \
        name.endswith((".pt", ".pth", ".safetensors", ".json"))


def _from_hub(spec: str, with_onnx: bool) -> ModelSource:
    from .client import ALL_PATTERNS, fetch_snapshot

    repo_id, _, revision = spec.partition("@")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ModelNotFoundError(f"hf-hub:{spec}: expected hf-hub:ORG/REPO or hf-hub:ORG/REPO@REVISION")
    directory, commit = fetch_snapshot(repo_id, revision or None, allow_patterns=ALL_PATTERNS if with_onnx else None)
    return ModelSource(f"{HF_PREFIX}{repo_id}", Path(directory), commit)


def _from_folder(directory: Path, *, explicit: bool) -> ModelSource:
    if not directory.is_dir():
        raise ModelNotFoundError(f"{LOCAL_PREFIX}{directory}: no such folder")
    for required in (CONFIG_NAME, WEIGHTS_NAME):
        if not (directory / required).is_file():
            raise ModelNotFoundError(f"{directory}: no {required}; is it a folder written by save_pretrained "
                                     "or tclr-zoo export?")
    return ModelSource(f"{LOCAL_PREFIX}{directory.resolve()}", directory, _weights_revision(directory))


def _weights_revision(directory: Path) -> str:
    """A local folder's revision: its weights' sha256 (as recorded, verified on load; else computed)."""
    try:
        recorded = json.loads((directory / CONFIG_NAME).read_text()).get("weights_sha256")
    except (OSError, ValueError, AttributeError):
        recorded = None
    return (recorded if isinstance(recorded, str) else file_sha256(directory / WEIGHTS_NAME))[:16]


__all__ = ["ModelSource", "resolve"]
