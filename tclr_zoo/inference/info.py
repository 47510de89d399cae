"""``tclr-zoo info``: what a model is and how to feed it, read from its config without loading weights."""

from __future__ import annotations

from typing import Any

from ..constants import CARD_NAME
from ..hub.card import card_results, protocol_text
from ..hub.resolve import ModelSource, resolve, source_config
from ..models.preprocessing import Preprocessing


def describe(name: str, *, pretrained: bool = True) -> tuple[dict[str, Any], ModelSource]:
    """The ``config.json`` content of the model ``name`` names, and where it comes from.

    Any model name (``hub.resolve``): a saved folder's or Hub repository's config is read without
    loading the weights; a training checkpoint's is the one ``tclr-zoo export`` would save.

    Args:
        name: any model name.
        pretrained: False: describe the randomly initialised network of a registry name's architecture.

    Returns:
        ``(config, source)``.
    """
    source = resolve(name, pretrained=pretrained)
    return source_config(source), source


def model_summary(config: dict[str, Any], source: ModelSource) -> str:
    """What ``tclr-zoo info`` prints: identity, embeddings, classifier, input, export and results."""
    pre = Preprocessing.from_config(config)
    dims = config.get("embedding_dims", {})
    labels = config.get("labels")
    scaling = ("no mean/std normalisation" if pre.mean is None else
               f"then (x - {list(pre.mean)}) / {list(pre.std)}")
    lines = [
        f"model:          {source.model_id}" + (f" @ {source.revision}" if source.revision else ""),
        f"architecture:   {config['architecture']} ({config.get('library')} {config.get('library_version')})",
        "embeddings:     " + ", ".join(f"{head} {dim}-d" for head, dim in dims.items()),
        f"classifier:     {len(labels)} labels ({', '.join(labels[:5])}{', ...' if len(labels) > 5 else ''})"
        if labels else "classifier:     none",
        f"input:          {pre.frames} frames at stride {pre.eval_frame_stride}, "
        f"{pre.size}x{pre.size} (centre crop {pre.crop_fraction} of the short side)",
        f"pixels:         {pre.channel_order.upper()}, scaled to {list(pre.value_range)}, {scaling}",
    ]
    if pre.channel_order == "bgr":
        lines.append("                note: BGR channel order (the reference trained on OpenCV frames); the SDK "
                     "converts for you, other clients must too")
    export = config.get("export")
    if export:
        files = ", ".join(f"{k} {v}" for k, v in (export.get("onnx") or {}).items() if k != "report")
        lines.append(f"export:         head {export['head']}, batch 1..{export.get('max_batch')}, "
                     f"opset {export.get('opset')}: {files or 'no ONNX graph'}")
    lines += _result_lines(config, source)
    return "\n".join(lines)


def _result_lines(config: dict[str, Any], source: ModelSource) -> list[str]:
    """The measured results: config.json's evaluation records, each with its protocol; for folders
    saved before those existed, the numbers of the model card's model-index."""
    lines = []
    for record in config.get("evaluation") or []:
        metrics = ", ".join(f"{k} {v:.4f}" for k, v in record.get("metrics", {}).items())
        baseline = "".join(f"; {name.replace('_', ' ')}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items())
                           for name, values in (record.get("baseline") or {}).items())
        lines.append(f"results:        {record.get('dataset')}: {metrics}{baseline}")
        lines.append(f"                ({protocol_text(record)})")
    if not lines and source.directory is not None:
        carried = {k: v for k, v in card_results(source.directory / CARD_NAME).items()
                   if k not in ("provenance", "dataset")}
        if carried:
            lines.append("results:        " + ", ".join(f"{k} {v}" for k, v in carried.items())
                         + " (from the model card; protocol settings not recorded)")
    return lines or ["results:        none recorded (measure some with tclr-zoo eval MODEL --protocol retrieval ...)"]


__all__ = ["describe", "model_summary"]
