"""The saved-model layout (= Hub repo layout): ``config.json`` + ``model.safetensors`` + ``README.md``.

Weights and their preprocessing travel together: ``config.json`` records the architecture, its
exact arguments and how frames must be prepared (channel order, scaling, crop, frames, stride), so a
loader never has to guess. Weights are safetensors only: nothing is unpickled.

It also resolves the names ``load_model`` accepts (:func:`resolve`): registry names
(``arch`` or ``arch.tag``), ``hf-hub:ORG/REPO[@REVISION]``, ``local-dir:PATH`` and plain folders.
The network side (download, cache, offline mode, upload) lives in ``hub_client``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from . import __version__
from .atomic import save_safetensors
from .models import TCLRModel
from .registry import ModelNotFoundError, create_model, get_arch

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"


HF_PREFIX = "hf-hub:"
LOCAL_PREFIX = "local-dir:"


class ModelLoadError(ValueError):
    """A model folder whose content cannot be loaded as asked (bad config, weights that don't fit)."""


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
    from .pretrained import get_pretrained

    return _from_hub(get_pretrained(name).repo_id, with_onnx)


def _not_a_model_folder(name: str) -> str:
    """Why ``name`` (which looks like a path) is no model, with a fix that works when followed."""
    from .registry import list_models

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
    from .hub_client import ALL_PATTERNS, fetch_snapshot

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


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (weights can be hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """``config.json`` of a saved model folder, checked to be a tclr_zoo config."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise ModelNotFoundError(f"{path}: not found; is {directory} a saved tclr_zoo model?")
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"{path}: unreadable config ({err})") from None
    if not isinstance(config, dict) or config.get("library") != "tclr_zoo":
        found = config.get("library") if isinstance(config, dict) else type(config).__name__
        raise ModelLoadError(f"{path}: not a tclr_zoo model config (library={found!r})")
    for key in ("architecture", "model_args", "preprocessing"):
        if key not in config:
            raise ModelLoadError(f"{path}: missing {key!r}")
    return config


def model_config(model: TCLRModel, *, arch: str, model_args: dict[str, Any], preprocessing: dict[str, Any],
                 labels: list[str] | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``config.json`` content describing ``model`` (``extra`` adds e.g. training results).

    ``labels`` (class names, index = logit) must be given exactly when the model has a classifier.
    """
    classes = model.classifier.out_features if model.classifier is not None else None
    if (labels is None) != (classes is None) or (labels is not None and len(labels) != classes):
        raise ValueError(f"labels ({None if labels is None else len(labels)}) must match the classifier ({classes})")
    steps = preprocessing["frames"] // model.temporal_downsampling
    config = {
        "library": "tclr_zoo",
        "library_version": __version__,
        "architecture": arch,
        "model_args": model_args,
        "head_dim": model.head.out_dim,
        "embedding_dims": {
            "backbone": model.feature_dim,
            "retrieval": model.feature_dim * steps,
            "projection": model.head.out_dim,
        },
        "labels": labels,
        "preprocessing": preprocessing,
    }
    config.update(extra or {})
    return config


def save_pretrained(model: TCLRModel, directory: str | os.PathLike, config: dict[str, Any],
                    card: str | None = None) -> Path:
    """Write ``config.json``, ``model.safetensors`` and (if given) the model card to ``directory``.

    ``config.json`` records the weights' sha256 (``weights_sha256``), which loading checks, so a
    corrupted or swapped weights file is refused instead of silently computing something else.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_safetensors(state, directory / WEIGHTS_NAME, metadata={"format": "pt", "library": "tclr_zoo"})
    config = {**config, "weights_sha256": file_sha256(directory / WEIGHTS_NAME)}
    (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    if card is not None:
        (directory / CARD_NAME).write_text(card)
    return directory


def load_pretrained_dir(directory: str | os.PathLike) -> tuple[TCLRModel, dict[str, Any]]:
    """Rebuild a model saved by :func:`save_pretrained` (strict: missing/unexpected keys are errors)."""
    directory = Path(directory)
    config = read_config(directory)
    weights_path = directory / WEIGHTS_NAME
    if not weights_path.is_file():
        raise ModelNotFoundError(f"{weights_path}: not found; is {directory} a saved tclr_zoo model?")
    expected = config.get("weights_sha256")
    if expected is not None and file_sha256(weights_path) != expected:
        raise ModelLoadError(f"{weights_path}: sha256 differs from the one recorded in config.json "
                             "(the file is corrupt or was replaced); re-download or re-save the model")
    labels = config.get("labels")
    model = create_model(config["architecture"], model_args=config["model_args"], head_dim=config.get("head_dim", 128),
                         num_classes=len(labels) if labels else None)
    try:
        state = load_file(str(weights_path))
    except Exception as err:  # safetensors raises its own SafetensorError / OSError variants
        raise ModelLoadError(f"{weights_path}: not a readable safetensors file ({err})") from None
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelLoadError(f"{weights_path}: weights do not fit {config['architecture']}: "
                             f"missing keys {missing[:10]}, unexpected keys {unexpected[:10]}")
    return model.eval(), config


def model_card(config: dict[str, Any], results: dict[str, Any] | None = None, **options: Any) -> str:
    """A model card (README.md with Hub metadata) for a saved model: ``MODEL_CARD.md`` filled in.

    Kept here for existing callers; :func:`tclr_zoo.model_card.render_model_card` does the work
    (``options``: ``model_id``, ``folder``, ``export_report``, ``conversion_check``).
    """
    from .model_card import render_model_card

    return render_model_card(config, results, **options)
