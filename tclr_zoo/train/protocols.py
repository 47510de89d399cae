"""One entry point per downstream protocol, for ``tclr-zoo eval`` and ``tclr-zoo finetune``.

A protocol run loads an encoder (any model name, through ``hub.resolve``), reads the
dataset's train and test lists in their official layout, runs retrieval / linear probe /
fine-tuning, and returns one flat dict: the metrics (``R@k`` or ``top1``/``top5`` and the clip-level
``clip_top1``/``clip_top5``) beside the model id, the protocol parameters, dataset, split and the
library versions, which is what the JSON output holds.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from pathlib import Path

import av
import torch

from .. import __version__
from ..atomic import refuse_to_replace, staged_directory
from ..constants import EMBED_HEADS, LOCAL_PREFIX, POOLING_HEADS
from ..data.datasets import describe_dataset, load_split
from ..hub.card import protocol_text, render_model_card
from ..hub.format import model_config, write_model_files
from ..hub.resolve import resolve_model
from ..models import TCLRModel
from ..models.preprocessing import Preprocessing
from ..runtime import cpu_share
from .config import RecipeError, checked_value, reference_numbers
from .evaluate import knn_retrieval
from .finetune import build_classifier, defaults_for, multi_clip_test, train_classifier, with_model_defaults

PROTOCOL_NAMES = ("retrieval", "linear", "finetune")


@dataclasses.dataclass
class RetrievalConfig:
    """TCLR's kNN protocol: evenly spaced clips per video, centre crop, the ``retrieval`` head (spatially
    pooled time-steps); ``head`` takes the SDK's head names (``backbone``: also averaged over time, the
    convention of most other video SSL zoos; ``projection``: what the contrastive losses saw).

    ``None`` = the encoder's own setting from its ``config.json`` (clips from ``eval_protocol``,
    frames, frame stride, size and crop from ``preprocessing``); for the TCLR weights that is 9
    clips of 16 frames at stride 2, centre crop 0.8, 112 px, as the paper's protocol.
    """

    clips: int | None = None
    frames: int | None = None
    stride: int | None = None
    size: int | None = None
    crop_fraction: float | None = None
    head: str = "retrieval"  # "retrieval" (TCLR), "backbone", "projection"
    ks: tuple[int, ...] = (1, 5, 10, 20, 50)
    batch_size: int = 4
    workers: int = 2


def apply_settings(settings, overrides: dict) -> None:
    """Set dataclass fields from ``{name: value}``; unknown names and values of the wrong type are a
    one-line :class:`RecipeError` (before any work)."""
    names = {f.name for f in dataclasses.fields(settings)}
    hints = typing.get_type_hints(type(settings))
    for key, value in overrides.items():
        if key not in names:
            raise RecipeError(f"unknown protocol setting {key!r}; known: {', '.join(sorted(names))}")
        value = checked_value(value, hints[key], f"setting {key}")
        setattr(settings, key, tuple(value) if isinstance(getattr(settings, key), tuple) else value)


def renamed_settings(protocol: str, overrides: dict, log: Callable[[str], None]) -> dict:
    """``overrides`` in today's names. Retrieval's ``pooling`` (temporal / pooled / projection), the
    protocol's word before it took the SDK's head names, becomes ``head``, with a one-line note."""
    if protocol != "retrieval" or "pooling" not in overrides:
        return overrides
    old = overrides["pooling"]
    renamed = {key: value for key, value in overrides.items() if key != "pooling"}
    if old not in POOLING_HEADS:
        raise RecipeError(f"setting pooling={old!r}: pooling is now head, one of {', '.join(EMBED_HEADS)}")
    renamed.setdefault("head", POOLING_HEADS[old])
    log(f"note: setting pooling={old} is deprecated; it is head={POOLING_HEADS[old]} now")
    return renamed


def protocol_settings(protocol: str, overrides: dict | None = None, preprocessing: Preprocessing | None = None):
    """The settings of ``protocol`` with ``overrides``; with the model's ``preprocessing``, every
    setting left unset (``None``) takes the model's value, so the result says what will run."""
    if protocol not in PROTOCOL_NAMES:
        raise RecipeError(f"protocol must be one of {PROTOCOL_NAMES}, got {protocol!r}")
    settings = RetrievalConfig() if protocol == "retrieval" else defaults_for(protocol)
    apply_settings(settings, overrides or {})
    if protocol == "retrieval" and settings.head not in EMBED_HEADS:
        raise RecipeError(f"setting head must be one of {', '.join(EMBED_HEADS)}, got {settings.head!r}")
    if preprocessing is None:
        return settings
    if protocol == "retrieval" and settings.clips is None:
        settings.clips = preprocessing.eval_protocol.clips
    return with_model_defaults(settings, preprocessing)


def run_protocol(model_ref: str, protocol: str, dataset: str, root: str | Path, *, split: int = 1,
                 overrides: dict | None = None, device: torch.device | str = "cpu", progress: bool = False,
                 log: Callable[[str], None] = print, save_dir: str | Path | None = None,
                 overwrite: bool = False, reference: dict | None = None, pretrained: bool = True) -> dict:
    """Evaluate ``model_ref`` with ``protocol`` on ``dataset``; returns the flat result dict.

    ``model_ref``: any model name (``hub.resolve``: a saved folder, ``local-dir:``, a training
    checkpoint, ``hf-hub:ORG/REPO[@REV]``, a published ``arch.tag``); ``pretrained=False``: the
    architecture a registry name names, with random weights (the baseline to beat).

    Settings not given in ``overrides`` that describe the clips (frames, stride, size, crop, and
    for retrieval the number of clips) are the model's own (its ``config.json``), so a model is
    evaluated at the input it was trained for. ``save_dir`` (linear / finetune): write the trained
    model there in the saved-model layout, with its classifier, class names and the preprocessing
    it was trained with; an existing non-empty folder is refused (before any training) unless
    ``overwrite``. ``reference``: the downstream recipe's published numbers, which a saved model
    records beside its own result (``training.reference``), so the comparison travels with it.
    """
    if save_dir is not None and protocol == "retrieval":
        raise RecipeError("--save applies to linear and finetune: retrieval trains nothing")
    if save_dir is not None:
        refuse_to_replace(save_dir, overwrite=overwrite, kind="folder")
    overrides = renamed_settings(protocol, overrides or {}, log)
    protocol_settings(protocol, overrides)  # a bad setting fails before the model is read
    encoder, config, _ = resolve_model(model_ref, pretrained=pretrained)
    pre = Preprocessing.from_config(config)
    settings = protocol_settings(protocol, overrides, pre)
    device = torch.device(device)
    train = load_split(dataset, root, split=split, subset="train")
    test = load_split(dataset, root, split=split, subset="test")
    described = describe_dataset(dataset, root)
    log(f"{protocol} on {described} split {split}: {len(train.items)} train / {len(test.items)} test videos, "
        f"{len(train.class_names)} classes")
    if protocol == "retrieval":
        metrics = _retrieval(encoder, train, test, settings, pre, device, progress)
    else:
        metrics = _classification(encoder, train, test, settings, pre, device, progress, log)
    record = evaluation_record(protocol, described, split, settings, metrics)
    if save_dir is not None:
        _save_classifier(encoder, config, train.class_names, save_dir, settings, record, reference or {})
        log(f"saved the {protocol} model to {save_dir}")
    return {"model": str(model_ref), "protocol": protocol, "dataset": dataset, "dataset_description": described,
            "split": split, "parameters": dataclasses.asdict(settings), **metrics,
            "missing_files": len(train.missing) + len(test.missing), "evaluation": record,
            "versions": {"tclr_zoo": __version__, "torch": torch.__version__, "av": av.__version__}}


def _retrieval(encoder, train, test, settings: RetrievalConfig, pre: Preprocessing, device, progress) -> dict:
    encoder.to(device)
    return knn_retrieval(encoder, train.items, test.items, ks=settings.ks, device=device,
                         batch_size=settings.batch_size, workers=min(settings.workers, cpu_share()),
                         progress=progress, head=settings.head, clips=settings.clips, frames=settings.frames,
                         stride=settings.stride, size=settings.size, crop_fraction=settings.crop_fraction,
                         channel_order=pre.channel_order, mean=pre.mean, std=pre.std)


def _classification(encoder, train, test, settings, pre: Preprocessing, device, progress, log) -> dict:
    classifier = build_classifier(encoder, len(train.class_names), settings)
    history = train_classifier(classifier, train.items, settings, preprocessing=pre, device=device,
                               progress=progress, log=log)
    metrics = multi_clip_test(classifier, test.items, settings, preprocessing=pre, device=device, progress=progress)
    return {**metrics, "classes": len(train.class_names), "history": history}


def evaluation_record(protocol: str, dataset: str, split: int, settings, metrics: dict) -> dict:
    """One measured result with everything needed to read it: protocol, dataset, split, the clip
    settings it ran with and its metrics. ``results.json``, ``config.json`` (``evaluation``), the
    model card and ``tclr-zoo info`` all show numbers from such records."""
    keys = ("clips", "frames", "stride", "size", "crop_fraction", "head") if protocol == "retrieval" else \
        ("test_clips", "test_crops", "frames", "stride", "size", "crop_fraction")
    names = {"test_clips": "clips", "test_crops": "crops"}
    wanted = ("R@", "top", "clip_top")
    return {"protocol": protocol, "dataset": dataset, "split": split,
            "settings": {names.get(k, k): getattr(settings, k) for k in keys},
            "metrics": {k: v for k, v in metrics.items() if k.startswith(wanted) and isinstance(v, float)}}


def _save_classifier(encoder: TCLRModel, config: dict, class_names: list[str], save_dir, settings,
                     record: dict, reference: dict) -> None:
    """The saved classifier records what it was trained and tested with: its clip geometry goes into
    ``preprocessing`` (so ``classify`` feeds it the same input), its test result into ``evaluation``."""
    preprocessing = dataclasses.replace(Preprocessing.from_config(config), frames=settings.frames,
                                        eval_frame_stride=settings.stride, size=settings.size,
                                        crop_fraction=settings.crop_fraction)
    extra = {"training": {"protocol": record["protocol"], "dataset": record["dataset"], "from": config.get("training"),
                          "top1": record["metrics"]["top1"], "top5": record["metrics"]["top5"],
                          "reference": reference_numbers(reference)},
             "evaluation": [record]}
    new_config = model_config(encoder, arch=config["architecture"], model_args=config["model_args"],
                              preprocessing=preprocessing, labels=list(class_names), extra=extra)
    with staged_directory(save_dir) as staging:
        write_model_files(encoder.to("cpu").eval(), staging, new_config,
                        card=render_model_card(new_config, model_id=f"{LOCAL_PREFIX}{Path(save_dir).absolute()}"))


def format_table(result: dict) -> str:
    """The metrics of a result as a two-column text table, under the protocol settings they hold for."""
    keys = [k for k in result if k.startswith(("R@", "top", "clip_top"))]
    width = max([len("metric"), *(len(k) for k in keys)])
    lines = [protocol_text(result["evaluation"])] if "evaluation" in result else []
    lines += [f"{'metric':{width}s}  value", f"{'-' * width}  ------"]
    lines += [f"{k:{width}s}  {result[k]:.4f}" for k in keys]
    return "\n".join(lines)


def load_protocol_recipe(source: str | Path, overrides: list[str] | None = None) -> dict:
    """A downstream recipe (``protocol:``, ``model:``, ``data:``, ``settings:``, ``reference:``).

    ``source`` is a YAML path or a bundled name; ``overrides`` are ``key.sub=value`` strings whose
    values are parsed as YAML (``settings.epochs=3``, ``data.root=/data/UCF101``, ``model=runs/x/model``).
    """
    import yaml

    from .config import expand_reference, recipe_text

    text, origin = recipe_text(source, "downstream")
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
    recipe["reference"] = expand_reference(recipe.get("reference") or {}, origin)
    return recipe


__all__ = ["PROTOCOL_NAMES", "RetrievalConfig", "apply_settings", "evaluation_record", "format_table",
           "load_protocol_recipe", "protocol_settings", "renamed_settings", "run_protocol"]
