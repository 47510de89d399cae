"""The about panel: which model answers (id, revision, how it runs), how it wants its frames (BGR
where it applies), what the index holds, and what is known of the model's export (ONNX graphs,
int8) from its ``config.json``.

Plain data (JSON-ready dicts) so the page only lays it out, and tests read the same facts.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..inference.model import VideoModel
    from ..models.preprocessing import Preprocessing
    from ..retrieval.index import VideoIndex

BGR_NOTE = ("BGR: the weights expect OpenCV's channel order (the reference trained on OpenCV frames); the app "
            "converts uploads for you, other clients must too")
EXPORT_HINT = "tclr-zoo export MODEL --out DIR --onnx [--fp16] [--int8 --calibrate SOURCE]"


def about_panel(model: VideoModel, index: VideoIndex, index_dir: str | os.PathLike | None, *, videos: int,
                windows: bool) -> dict[str, Any]:
    """Everything the about panel shows (``videos``/``windows``: counted once by the service)."""
    return dict(model=model_facts(model), preprocessing=preprocessing_facts(model.preprocessing),
                index=index_facts(index, index_dir, videos=videos, windows=windows),
                export=export_facts(model.config))


def model_facts(model: VideoModel) -> dict[str, Any]:
    """Identity and how it runs: backend, device, precision (and the ONNX graph and providers)."""
    backend = model.backend
    labels = model.labels or []
    graph = getattr(backend, "graph_path", None)
    return {"id": model.model_id, "revision": model.revision, "architecture": model.config.get("architecture"),
            "backend": backend.name, "device": str(model.device), "precision": getattr(backend, "precision", None),
            "graph": Path(graph).name if graph is not None else None, "providers": model.providers,
            "classifier": len(labels) or None, "labels": labels[:20]}


def preprocessing_facts(pre: Preprocessing) -> dict[str, Any]:
    """How frames are prepared before the model sees them (the model's preprocessing)."""
    section = pre.to_config()  # JSON-ready values
    return {"frames": pre.frames, "frame_stride": pre.eval_frame_stride, "size": pre.size,
            "crop_fraction": pre.crop_fraction, "channel_order": pre.channel_order.upper(),
            "value_range": section["value_range"], "mean": section["mean"], "std": section["std"],
            "note": BGR_NOTE if pre.channel_order == "bgr" else None}


def index_facts(index: VideoIndex, index_dir: str | os.PathLike | None, *, videos: int,
                windows: bool) -> dict[str, Any]:
    """Size, head and search of the index, and the model it records."""
    search = "approximate (FAISS HNSW)" if index.approximate else f"exact ({index.backend})"
    return {"directory": None if index_dir is None else str(index_dir), "rows": len(index), "videos": videos,
            "kind": "windows (moment search)" if windows else "one row per video", "head": index.head,
            "dim": index.dim, "dtype": index.dtype, "search": search, "model_id": index.model_id,
            "revision": index.revision}


def export_facts(config: dict[str, Any]) -> dict[str, Any]:
    """The export as ``config.json`` records it (``tclr-zoo export``): graphs and int8 calibration;
    ``status`` says "not exported" for a folder that was never exported."""
    export = config.get("export")
    if not export:
        return {"status": "not exported", "graphs": {}, "int8": "no int8 graph", "hint": EXPORT_HINT}
    graphs = {k: v for k, v in (export.get("onnx") or {}).items() if k != "report"}
    if graphs:
        status = (f"exported: ONNX opset {export.get('opset')}, head {export.get('head')}, "
                  f"batch 1..{export.get('max_batch')}")
    else:
        status = f"saved by tclr-zoo export without an ONNX graph (head {export.get('head')})"
    return {"status": status, "graphs": graphs, "int8": _int8_text(export.get("int8")),
            "hint": None if graphs else EXPORT_HINT}


def _int8_text(int8: dict[str, Any] | None) -> str:
    """The int8 entry of an export (``tclr-zoo export --int8``) in one line."""
    if not int8:
        return "no int8 graph"
    graphs = "; ".join(f"{k}: {v}" for k, v in int8.items() if k != "calibration_method")
    return f"calibrated ({int8.get('calibration_method', 'method not recorded')}); {graphs}"


__all__ = ["about_panel", "export_facts", "index_facts", "model_facts", "preprocessing_facts"]
