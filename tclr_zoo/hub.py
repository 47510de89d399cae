"""The saved-model layout (= Hub repo layout): ``config.json`` + ``model.safetensors`` + ``README.md``.

Weights and their preprocessing travel together: ``config.json`` records the architecture, its
exact arguments and how frames must be prepared (channel order, scaling, crop, frames, stride), so a
loader never has to guess. Weights are safetensors only: nothing is unpickled.

Hub download / upload (``hf-hub:`` names, ``push_to_hub``) arrive with the SDK issue; this module
already owns the layout they will use.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file

from . import __version__
from .models import TCLRModel
from .registry import create_model

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"


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
    """Write ``config.json``, ``model.safetensors`` and (if given) the model card to ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(directory / WEIGHTS_NAME), metadata={"format": "pt", "library": "tclr_zoo"})
    (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
    if card is not None:
        (directory / CARD_NAME).write_text(card)
    return directory


def load_pretrained_dir(directory: str | os.PathLike) -> tuple[TCLRModel, dict[str, Any]]:
    """Rebuild a model saved by :func:`save_pretrained` (strict: missing/unexpected keys are errors)."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: not found; is {directory} a saved tclr_zoo model?")
    config = json.loads(config_path.read_text())
    if config.get("library") != "tclr_zoo":
        raise ValueError(f"{config_path}: not a tclr_zoo model config (library={config.get('library')!r})")
    labels = config.get("labels")
    model = create_model(config["architecture"], model_args=config["model_args"], head_dim=config["head_dim"],
                         num_classes=len(labels) if labels else None)
    state = load_file(str(weights_path))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{weights_path}: missing keys {missing[:10]}, unexpected keys {unexpected[:10]}")
    return model.eval(), config


def model_card(config: dict[str, Any], results: dict[str, Any] | None = None) -> str:
    """A model card (README.md with Hub metadata) for a saved model."""
    results = results or {}
    arch = config["architecture"]
    pre = config["preprocessing"]
    metrics = [(k, v) for k, v in results.items() if k.startswith("knn_")]
    index = "".join(
        f"      - type: {k}\n        value: {v:.4f}\n" for k, v in metrics if isinstance(v, (int, float))
    )
    empty = "      []\n"
    front = (
        "---\nlibrary_name: tclr_zoo\ntags:\n- video\n- self-supervised\n- tclr\n"
        f"model-index:\n- name: {arch}\n  results:\n  - task:\n      type: video-retrieval\n"
        f"    dataset:\n      name: {results.get('dataset', 'unknown')}\n      type: video\n"
        f"    metrics:\n{index or empty}---\n"
    )
    body = (
        f"\n# {arch} — TCLR\n\nA {arch} video encoder pretrained with TCLR (Dave et al., arXiv 2101.07974) "
        f"using tclr_zoo {config['library_version']}.\n\n"
        "## Preprocessing\n\n"
        f"- channel order: {pre['channel_order'].upper()}, pixels scaled to [0, 1]\n"
        f"- mean/std: {pre['mean']} / {pre['std']}\n"
        f"- clips: {pre['frames']} frames at stride {pre['eval_frame_stride']}, centre crop "
        f"{pre['crop_fraction']} of the short side, resized to {pre['size']}x{pre['size']}\n\n"
        "## Results\n\n" + ("".join(f"- {k}: {v}\n" for k, v in results.items()) or "- none recorded\n")
    )
    return front + body

