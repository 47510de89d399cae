"""One entry point per downstream protocol, for ``tclr-zoo eval`` and ``tclr-zoo finetune``.

A protocol run loads an encoder (a saved-model folder or a pretraining checkpoint), reads the
dataset's train and test lists in their official layout, runs retrieval / linear probe /
fine-tuning, and returns one flat dict: the metrics (``R@k`` or ``top1``/``top5`` and the clip-level
``clip_top1``/``clip_top5``) beside the model id, the protocol parameters, dataset, split and the
library versions, which is what the JSON output holds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import av
import torch

from .. import __version__
from ..data.datasets import load_split
from ..hub import load_pretrained_dir, model_card, model_config, save_pretrained
from ..models import TCLRModel
from ..registry import create_model, resolve_model_args
from .checkpoint import load_checkpoint
from .config import RecipeError
from .evaluate import knn_retrieval
from .finetune import build_classifier, defaults_for, multi_clip_test, train_classifier

PROTOCOL_NAMES = ("retrieval", "linear", "finetune")


@dataclasses.dataclass
class RetrievalConfig:
    """Spec §6: 9 clips of 16 frames at stride 2, centre crop 0.8, spatially pooled time-steps."""

    clips: int = 9
    frames: int = 16
    stride: int = 2
    size: int | None = None  # default: the model's preprocessing size
    crop_fraction: float = 0.8
    pooling: str = "temporal"  # "temporal" (TCLR), "pooled", "projection"
    ks: tuple[int, ...] = (1, 5, 10, 20, 50)
    batch_size: int = 4
    workers: int = 2


def load_encoder(reference: str | Path) -> tuple[TCLRModel, dict]:
    """A saved-model folder (``config.json`` + ``model.safetensors``) or a pretraining checkpoint."""
    path = Path(reference)
    if path.is_dir():
        return load_pretrained_dir(path)
    if path.is_file():
        return _encoder_from_checkpoint(path)
    raise FileNotFoundError(f"{reference}: no saved model folder or training checkpoint there")


def _encoder_from_checkpoint(path: Path) -> tuple[TCLRModel, dict]:
    from .config import recipe_from_dict
    from .pretrain import preprocessing_config

    state = load_checkpoint(path)
    recipe = recipe_from_dict(state["recipe"], str(path))
    args = resolve_model_args(recipe.model.arch, recipe.model.model_args)
    model = create_model(recipe.model.arch, model_args=args, head_dim=recipe.model.head_dim)
    model.load_state_dict(state["model"])
    return model.eval(), model_config(model, arch=recipe.model.arch, model_args=args,
                                      preprocessing=preprocessing_config(recipe))


def apply_settings(settings, overrides: dict) -> None:
    """Set dataclass fields from ``{name: value}``; unknown names are a clear error."""
    names = {f.name for f in dataclasses.fields(settings)}
    for key, value in overrides.items():
        if key not in names:
            raise RecipeError(f"unknown protocol setting {key!r}; known: {', '.join(sorted(names))}")
        setattr(settings, key, tuple(value) if isinstance(getattr(settings, key), tuple) else value)


def protocol_settings(protocol: str, overrides: dict | None = None):
    if protocol not in PROTOCOL_NAMES:
        raise RecipeError(f"protocol must be one of {PROTOCOL_NAMES}, got {protocol!r}")
    settings = RetrievalConfig() if protocol == "retrieval" else defaults_for(protocol)
    apply_settings(settings, overrides or {})
    return settings


def run_protocol(model_ref: str, protocol: str, dataset: str, root: str | Path, *, split: int = 1,
                 overrides: dict | None = None, device: torch.device | str = "cpu", progress: bool = False,
                 log: Callable[[str], None] = print, save_dir: str | Path | None = None) -> dict:
    """Evaluate ``model_ref`` with ``protocol`` on ``dataset``; returns the flat result dict.

    ``save_dir`` (linear / finetune): write the trained model there in the saved-model layout, with
    its classifier and class names, so it can be loaded, evaluated again or exported.
    """
    if save_dir is not None and protocol == "retrieval":
        raise RecipeError("--save applies to linear and finetune: retrieval trains nothing")
    settings = protocol_settings(protocol, overrides)
    encoder, config = load_encoder(model_ref)
    pre = config["preprocessing"]
    device = torch.device(device)
    train = load_split(dataset, root, split=split, subset="train")
    test = load_split(dataset, root, split=split, subset="test")
    log(f"{protocol} on {dataset} split {split}: {len(train.items)} train / {len(test.items)} test videos, "
        f"{len(train.class_names)} classes")
    if protocol == "retrieval":
        metrics = _retrieval(encoder, train, test, settings, pre, device, progress)
    else:
        metrics = _classification(encoder, train, test, settings, pre, device, progress, log)
        if save_dir is not None:
            _save_classifier(encoder, config, train.class_names, save_dir, protocol, dataset, metrics)
            log(f"saved the {protocol} model to {save_dir}")
    return {"model": str(model_ref), "protocol": protocol, "dataset": dataset, "split": split,
            "parameters": dataclasses.asdict(settings), **metrics,
            "missing_files": len(train.missing) + len(test.missing),
            "versions": {"tclr_zoo": __version__, "torch": torch.__version__, "av": av.__version__}}


def _retrieval(encoder, train, test, settings: RetrievalConfig, pre: dict, device, progress) -> dict:
    settings.size = settings.size or pre["size"]
    encoder.to(device)
    return knn_retrieval(encoder, train.items, test.items, ks=settings.ks, device=device,
                         batch_size=settings.batch_size, workers=settings.workers, progress=progress,
                         pooling=settings.pooling, clips=settings.clips, frames=settings.frames,
                         stride=settings.stride, size=settings.size, crop_fraction=settings.crop_fraction,
                         channel_order=pre["channel_order"], mean=pre.get("mean"), std=pre.get("std"))


def _classification(encoder, train, test, settings, pre: dict, device, progress, log) -> dict:
    classifier = build_classifier(encoder, len(train.class_names), settings)
    history = train_classifier(classifier, train.items, settings, preprocessing=pre, device=device,
                               progress=progress, log=log)
    metrics = multi_clip_test(classifier, test.items, settings, preprocessing=pre, device=device, progress=progress)
    return {**metrics, "classes": len(train.class_names), "history": history}


def _save_classifier(encoder: TCLRModel, config: dict, class_names: list[str], save_dir, protocol: str,
                     dataset: str, metrics: dict) -> None:
    extra = {"training": {"protocol": protocol, "dataset": dataset, "from": config.get("training"),
                          "top1": metrics["top1"], "top5": metrics["top5"]}}
    new_config = model_config(encoder, arch=config["architecture"], model_args=config["model_args"],
                              preprocessing=config["preprocessing"], labels=list(class_names), extra=extra)
    save_pretrained(encoder.to("cpu").eval(), save_dir, new_config, card=model_card(new_config))


def format_table(result: dict) -> str:
    """The metrics of a result as a two-column text table."""
    keys = [k for k in result if k.startswith(("R@", "top", "clip_top"))]
    width = max(len(k) for k in keys)
    lines = [f"{'metric':{width}s}  value", f"{'-' * width}  ------"]
    lines += [f"{k:{width}s}  {result[k]:.4f}" for k in keys]
    return "\n".join(lines)


def load_protocol_recipe(source: str | Path, overrides: list[str] | None = None) -> dict:
    """A downstream recipe (``protocol:``, ``model:``, ``data:``, ``settings:``, ``reference:``).

    ``source`` is a YAML path or a bundled name; ``overrides`` are ``key.sub=value`` strings whose
    values are parsed as YAML (``settings.epochs=3``, ``data.root=/data/UCF101``, ``model=runs/x/model``).
    """
    import yaml

    from .config import recipe_text

    text, origin = recipe_text(source)
    recipe = yaml.safe_load(text) or {}
    if not isinstance(recipe, dict) or recipe.get("protocol") not in PROTOCOL_NAMES:
        raise RecipeError(f"{origin}: not a downstream recipe (needs 'protocol: retrieval|linear|finetune')")
    for item in overrides or []:
        if "=" not in item:
            raise RecipeError(f"override {item!r} must look like key.sub=value")
        dotted, value = item.split("=", 1)
        *parents, leaf = dotted.strip().split(".")
        target = recipe
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise RecipeError(f"override {item!r}: {part!r} is not a section")
        target[leaf] = yaml.safe_load(value) if value.strip() else None
    unknown = set(recipe) - {"name", "description", "protocol", "model", "data", "settings", "reference"}
    if unknown:
        raise RecipeError(f"{origin}: unknown keys {sorted(unknown)}")
    for key in ("model", "data"):
        if not recipe.get(key):
            raise RecipeError(f"{origin}: '{key}' must be set (e.g. --set {key}=...)")
    return recipe
