"""What a model name means, decided once: every kind of name -> where its model comes from
(:func:`resolve`) -> the network and its ``config.json`` (:func:`load_source`).

``load_model``, ``create_model``, ``tclr-zoo info``, ``export``, ``eval``, ``finetune``, ``embed``,
``classify``, ``index`` and ``app`` all go through here, so the same name gives the same model --
or the same one-line error -- everywhere. The names:

* a saved-model folder (``config.json`` + ``model.safetensors``, written by ``save_pretrained`` or
  ``tclr-zoo export``), also as ``local-dir:PATH``;
* a training checkpoint (``.pt``), read without executing pickled code (``checkpoint.py``);
* ``hf-hub:ORG/REPO[@REVISION]``: a Hub repository, downloaded into the Hugging Face cache
  (``client.py``), pinned to a commit, branch or tag when ``@REVISION`` is given;
* ``arch.tag``: published weights (``models/pretrained.py``). Weights that are not published yet
  say so at once, without touching the network;
* ``arch`` with ``pretrained=False`` (the CLI's ``--random-init``): the architecture with random
  weights. A bare architecture name never stands for weights: with ``pretrained=True`` it is
  refused, naming its weights' ``arch.tag`` names -- it is never turned into a Hub repository.

A name that looks like a path but is no model gets a message with a fix that works when followed
(a near miss -> "did you mean"; ``ORG/REPO`` -> ``hf-hub:ORG/REPO``). What the model *is* --
for comparing embeddings -- is its content, not its name: ``identity.py``.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..atomic import file_sha256
from ..constants import CONFIG_NAME, HF_PREFIX, LOCAL_PREFIX, RANDOM_INIT_FLAG, WEIGHTS_NAME
from ..models import TCLRModel
from ..models.preprocessing import Preprocessing
from ..models.registry import ModelNotFoundError, create_model, get_arch, list_models, resolve_model_args
from .checkpoint import CHECKPOINT_SUFFIXES, model_from_checkpoint
from .format import load_pretrained_dir, model_config, read_config

#: How ``model_id`` marks a randomly initialised network (it names no weights to load again).
RANDOM_INIT_SUFFIX = " (random init)"


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from: a saved-model folder, a training checkpoint, or (neither) a random
    init of ``arch``; and the name it goes by.

    Attributes:
        model_id: the name to load it again with (``hf-hub:ORG/REPO``, ``local-dir:/abs/path``, a
            checkpoint's absolute path), or ``ARCH (random init)``. Where it came from, not what it
            is: a model's identity is its content (``VideoModel.identity``).
        directory: the saved-model folder (a Hub snapshot in the cache), or None.
        revision: the Hub commit, or for a folder the first 16 hex digits of its weights' sha256.
        arch: the architecture of a random init.
        checkpoint: the training checkpoint, or None.
    """

    model_id: str
    directory: Path | None
    revision: str | None = None
    arch: str | None = None
    checkpoint: Path | None = None


def resolve(name_or_uri: str | os.PathLike, *, pretrained: bool = True, with_onnx: bool = False) -> ModelSource:
    """Map a model name to where its model comes from, downloading a Hub repository when needed.

    Args:
        name_or_uri: a saved-model folder, ``local-dir:PATH``, a training checkpoint (``.pt``),
            ``hf-hub:ORG/REPO[@REVISION]``, or a registry name (``arch.tag``; ``arch`` with
            ``pretrained=False``).
        pretrained: False: random weights for the architecture a registry name names (``arch`` or
            ``arch.tag``); a name of saved weights is then refused.
        with_onnx: also download a Hub repository's ``onnx/`` folder (for the onnx backend).

    Returns:
        The :class:`ModelSource`.

    Raises:
        ModelNotFoundError: the name names no model that can be had (the message says why, and
            how to fix it); ``HubError`` for a Hub download that fails.
    """
    name = os.fspath(name_or_uri)
    if not pretrained:
        return _random_init(name)
    if name.startswith(HF_PREFIX):
        return _from_hub(name[len(HF_PREFIX):], with_onnx)
    if name.startswith(LOCAL_PREFIX):
        return _from_folder(Path(name[len(LOCAL_PREFIX):]).expanduser(), explicit=True)
    path = Path(name).expanduser()
    if path.is_dir():
        return _from_folder(path, explicit=False)
    if path.is_file() and path.suffix in CHECKPOINT_SUFFIXES:
        return ModelSource(str(path.resolve()), None, checkpoint=path)
    if path.is_file() or _looks_like_path(name):
        raise ModelNotFoundError(_not_a_model(name))
    from ..models.pretrained import get_pretrained, published_weights

    if "." not in name:
        get_pretrained(name)  # a bare architecture name never stands for weights: refused, naming them
    return _from_hub(published_weights(name).repo_id, with_onnx)


def load_source(source: ModelSource) -> tuple[TCLRModel, dict[str, Any]]:
    """The network (eval mode, on the CPU) and the ``config.json`` content of ``source``.

    Args:
        source: what :func:`resolve` gave.

    Returns:
        ``(model, config)``: a folder's weights (strictly checked), a checkpoint's model, or a
        random init with TCLR's preprocessing.
    """
    if source.checkpoint is not None:
        return model_from_checkpoint(source.checkpoint)
    if source.directory is not None:
        return load_pretrained_dir(source.directory)
    return random_init_model(source.arch)


def source_config(source: ModelSource) -> dict[str, Any]:
    """The ``config.json`` content of ``source``, without loading a folder's weights (``tclr-zoo info``)."""
    if source.directory is not None and source.checkpoint is None:
        return read_config(source.directory)
    return load_source(source)[1]


def resolve_model(name_or_uri: str | os.PathLike, *, pretrained: bool = True
                  ) -> tuple[TCLRModel, dict[str, Any], ModelSource]:
    """:func:`resolve` and :func:`load_source` in one: what ``export``, ``eval`` and ``finetune`` need.

    Args:
        name_or_uri: any model name (see :func:`resolve`).
        pretrained: False for random weights of a registry name's architecture.

    Returns:
        ``(model, config, source)``.
    """
    source = resolve(name_or_uri, pretrained=pretrained)
    model, config = load_source(source)
    return model, config, source


def random_init_model(arch: str) -> tuple[TCLRModel, dict[str, Any]]:
    """A randomly initialised ``arch`` network (eval mode) and its ``config.json`` (TCLR's
    preprocessing, the defaults).

    Args:
        arch: a registry architecture name.

    Returns:
        The model and the config a ``save_pretrained`` of it would write.
    """
    args = resolve_model_args(arch)
    model = create_model(arch, model_args=args)
    return model.eval(), model_config(model, arch=arch, model_args=args, preprocessing=Preprocessing())


def is_loadable(model_id: str | None) -> bool:
    """Whether a recorded ``model_id`` names weights :func:`resolve` can load again (not a random init)."""
    return bool(model_id) and not model_id.endswith(RANDOM_INIT_SUFFIX) and (
        model_id.startswith((HF_PREFIX, LOCAL_PREFIX)) or model_id.endswith(CHECKPOINT_SUFFIXES))


def _random_init(name: str) -> ModelSource:
    """``pretrained=False``: the architecture of a registry name; a name of saved weights is refused
    (random weights are built from an architecture name, never from someone's folder)."""
    arch = name.split(".", 1)[0]
    if ":" in name or _looks_like_path(name) or (arch not in list_models() and Path(name).expanduser().exists()):
        archs = ", ".join(list_models())
        raise ModelNotFoundError(
            f"{name} names saved weights",
            hint=f"; pretrained=False builds an architecture with random weights: leave it out to load them, or "
                 f"give an architecture name ({archs})",
            cli_hint=(RANDOM_INIT_FLAG, f"; {RANDOM_INIT_FLAG} builds an architecture with random weights: leave it "
                                        f"out to load them, or give an architecture name ({archs})"))
    get_arch(arch)
    return ModelSource(f"{arch}{RANDOM_INIT_SUFFIX}", None, None, arch)


def _not_a_model(name: str) -> str:
    """Why ``name`` (which looks like a path) is no model, with a fix that works when followed."""
    path = Path(name).expanduser()
    if path.is_file():
        return (f"{name}: a file, not a model (a model is a saved model folder with {CONFIG_NAME} + {WEIGHTS_NAME}, "
                f"or a training checkpoint {' / '.join(CHECKPOINT_SUFFIXES)})")
    parent = path.parent if str(path.parent) else Path(".")
    if parent.is_dir():
        wanted = Path.is_file if path.suffix in CHECKPOINT_SUFFIXES else Path.is_dir
        close = difflib.get_close_matches(path.name, [p.name for p in parent.iterdir() if wanted(p)], n=1)
        hint = f" (did you mean {parent / close[0]}?)" if close else ""
    else:
        hint = f" (nor is there a folder {parent})"
    if re.fullmatch(r"\w[\w.-]*/\w[\w.-]*", name) and not hint.startswith(" (did"):  # could be ORG/REPO
        hint += f"; for the Hub repository {name} write hf-hub:{name}"
    what = "file" if path.suffix in CHECKPOINT_SUFFIXES else "folder"
    return (f"{name}: no such {what}{hint}. A model is a saved model folder, local-dir:PATH, a training checkpoint "
            f"(.pt), hf-hub:ORG/REPO[@REVISION] or a published arch.tag name (`tclr-zoo list --pretrained`)")


def _looks_like_path(name: str) -> bool:
    return any(sep in name for sep in ("/", os.sep)) or name.startswith((".", "~")) or \
        name.endswith((*CHECKPOINT_SUFFIXES, ".safetensors", ".json"))


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


__all__ = ["ModelSource", "RANDOM_INIT_SUFFIX", "is_loadable", "load_source", "random_init_model", "resolve",
           "resolve_model", "source_config"]
