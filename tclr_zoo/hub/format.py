"""The saved-model layout (= Hub repo layout): ``config.json`` + ``model.safetensors`` + ``README.md``.

Weights and their preprocessing travel together: ``config.json`` records the architecture, its
exact arguments and how frames must be prepared (channel order, scaling, crop, frames, stride: a
:class:`~tclr_zoo.models.preprocessing.Preprocessing`, checked when the file is read), so a loader
never has to guess. Weights are safetensors only: nothing is unpickled.

Which folder a name means is ``resolve.py``'s job; the network side (download, cache, offline mode,
upload) is ``client.py``'s.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from .. import __version__
from ..atomic import file_sha256, refuse_to_replace, save_safetensors, staged_directory
from ..constants import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME
from ..models import TCLRModel
from ..models.preprocessing import CONFIG_KEY, Preprocessing, PreprocessingError
from ..models.registry import ModelNotFoundError, create_model


class ModelLoadError(ValueError):
    """A model folder whose content cannot be loaded as asked (bad config, weights that don't fit)."""


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
    for key in ("architecture", "model_args", CONFIG_KEY):
        if key not in config:
            raise ModelLoadError(f"{path}: missing {key!r}")
    try:  # checked here, so a bad section is named with its file before anything uses it
        Preprocessing.from_config(config)
    except PreprocessingError as err:
        raise ModelLoadError(f"{path}: {err}") from None
    return config


def model_config(model: TCLRModel, *, arch: str, model_args: dict[str, Any],
                 preprocessing: Preprocessing | Mapping[str, Any], labels: list[str] | None = None,
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``config.json`` content describing ``model`` (``extra`` adds e.g. training results).

    ``preprocessing``: a :class:`Preprocessing`, or its ``config.json`` section (checked the same way).
    ``labels`` (class names, index = logit) must be given exactly when the model has a classifier.
    """
    preprocessing = Preprocessing.from_config(preprocessing)
    classes = model.classifier.out_features if model.classifier is not None else None
    if (labels is None) != (classes is None) or (labels is not None and len(labels) != classes):
        raise ValueError(f"labels ({None if labels is None else len(labels)}) must match the classifier ({classes})")
    steps = preprocessing.frames // model.temporal_downsampling
    config = {
        "library": "tclr_zoo",
        "library_version": __version__,
        "architecture": arch,
        "model_args": model_args,
        "head_dim": model.projection.out_dim,
        "embedding_dims": {
            "backbone": model.feature_dim,
            "retrieval": model.feature_dim * steps,
            "projection": model.projection.out_dim,
        },
        "labels": labels,
    }
    config = preprocessing.store(config)
    config.update(extra or {})
    return config


def write_model_files(model: TCLRModel, folder: str | os.PathLike, config: dict[str, Any],
                      card: str | None = None) -> None:
    """Write ``config.json``, ``model.safetensors`` and (if given) the model card into ``folder``, a
    folder the caller stages (an export, a pretraining run's ``model/``) -- :func:`save_pretrained`
    is the staged way for everyone else.

    ``config.json`` records the weights' sha256 (``weights_sha256``), which loading checks, so a
    corrupted or swapped weights file is refused instead of silently computing something else.
    """
    folder = Path(folder)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_safetensors(state, folder / WEIGHTS_NAME, metadata={"format": "pt", "library": "tclr_zoo"})
    config = {**config, "weights_sha256": file_sha256(folder / WEIGHTS_NAME)}
    (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    if card is not None:
        (folder / CARD_NAME).write_text(card)


def is_model_folder(directory: Path) -> bool:
    """Whether ``directory`` holds a saved model (which saving again may replace)."""
    return (directory / CONFIG_NAME).is_file()


def refuse_foreign_folder(directory: str | os.PathLike) -> None:
    """A saved model may replace an earlier one or an empty folder, never a folder of other files."""
    refuse_to_replace(directory, overwrite=False, kind="folder", flag="", ours=is_model_folder,
                      ours_name=CONFIG_NAME)


def save_pretrained(model: TCLRModel, directory: str | os.PathLike, config: dict[str, Any],
                    card: str | None = None) -> Path:
    """Write a saved-model folder (:func:`write_model_files`) through a staging folder: a crash leaves
    the old folder or the new one. A folder holding anything but an earlier saved model is refused."""
    directory = Path(directory)
    refuse_foreign_folder(directory)
    with staged_directory(directory) as staging:
        write_model_files(model, staging, config, card)
    return directory


def read_weights(directory: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a saved model folder's ``model.safetensors`` (no pickle: safetensors only).

    Args:
        directory: a saved model folder.

    Returns:
        Key -> tensor, as written (files of older versions may hold ``head.*`` keys for ``projection.*``).

    Raises:
        ModelLoadError: the file cannot be read as safetensors.
    """
    path = Path(directory) / WEIGHTS_NAME
    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own SafetensorError / OSError variants
        raise ModelLoadError(f"{path}: not a readable safetensors file ({err})") from None


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
    state = read_weights(directory)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ModelLoadError(f"{weights_path}: weights do not fit {config['architecture']}: "
                             f"missing keys {missing[:10]}, unexpected keys {unexpected[:10]}")
    return model.eval(), config


__all__ = ["ModelLoadError", "is_model_folder", "load_pretrained_dir", "model_config", "read_config", "read_weights",
           "refuse_foreign_folder", "save_pretrained", "write_model_files"]
