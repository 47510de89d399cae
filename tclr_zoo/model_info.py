"""``tclr-zoo info``: what a model is and how to feed it, read from its config without loading weights."""

from __future__ import annotations

from typing import Any

from .hub import ModelSource, model_config, read_config, resolve
from .pretrained import FAITHFUL_PREPROCESSING
from .registry import create_model, resolve_model_args


def describe(name: str) -> tuple[dict[str, Any], ModelSource]:
    """The config of ``name``; a bare architecture name describes its randomly initialised network."""
    bare_arch = "." not in name and "/" not in name and ":" not in name
    source = resolve(name, pretrained=not bare_arch)
    if source.directory is not None:
        return read_config(source.directory), source
    args = resolve_model_args(source.arch)
    model = create_model(source.arch, model_args=args)
    return model_config(model, arch=source.arch, model_args=args, preprocessing=dict(FAITHFUL_PREPROCESSING)), source


def model_summary(config: dict[str, Any], source: ModelSource) -> str:
    pre = config["preprocessing"]
    dims = config.get("embedding_dims", {})
    labels = config.get("labels")
    lines = [
        f"model:          {source.model_id}" + (f" @ {source.revision}" if source.revision else ""),
        f"architecture:   {config['architecture']} ({config.get('library')} {config.get('library_version')})",
        "embeddings:     " + ", ".join(f"{head} {dim}-d" for head, dim in dims.items()),
        f"classifier:     {len(labels)} labels ({', '.join(labels[:5])}{', ...' if len(labels) > 5 else ''})"
        if labels else "classifier:     none",
        f"input:          {pre['frames']} frames at stride {pre.get('eval_frame_stride')}, "
        f"{pre['size']}x{pre['size']} (centre crop {pre.get('crop_fraction')} of the short side)",
        f"pixels:         {str(pre['channel_order']).upper()}, scaled to {pre.get('value_range', [0, 1])}, "
        f"mean {pre.get('mean')}, std {pre.get('std')}",
    ]
    if str(pre["channel_order"]).lower() == "bgr":
        lines.append("                note: BGR channel order (the reference trained on OpenCV frames); the SDK "
                     "converts for you, other clients must too")
    export = config.get("export")
    if export:
        files = ", ".join(f"{k} {v}" for k, v in (export.get("onnx") or {}).items() if k != "report")
        lines.append(f"export:         head {export['head']}, batch 1..{export.get('max_batch')}, "
                     f"opset {export.get('opset')}: {files or 'no ONNX graph'}")
    results = {k: v for k, v in config.items() if k.startswith(("knn_", "results"))}
    for key, value in results.items():
        lines.append(f"{key + ':':16s}{value}")
    return "\n".join(lines)
