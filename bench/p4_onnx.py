"""P4: the SDK's onnx backend against its torch backend, the same ``embed`` call on a real video."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from .core import Result, compare
from .videos import real_video


def run(quick: bool) -> list[Result]:
    import tclr_zoo
    from tclr_zoo.export.exporter import export_model

    arch = "r3d_10_025" if quick else "r3d_18"
    video = real_video("bikes.mp4")
    with tempfile.TemporaryDirectory(prefix="bench-p4-") as tmp:
        torch.manual_seed(0)
        saved = tclr_zoo.load_model(arch, pretrained=False).save_pretrained(Path(tmp) / "saved")
        export_model(saved, Path(tmp) / "export", onnx=True, max_batch=8, head="retrieval")
        torch_model = tclr_zoo.load_model(Path(tmp) / "export", device="cpu")
        onnx_model = tclr_zoo.load_model(Path(tmp) / "export", backend="onnx", device="cpu")
        diff = float((torch_model.embed(video) - onnx_model.embed(video)).abs().max())
        a, b, _ = compare(lambda: onnx_model.embed(video), lambda: torch_model.embed(video),
                          repeats=3 if quick else 5)
    windows = len(torch_model.plan.indices(_frames(video)))
    return [Result("P4", f"embed bikes.mp4 ({windows} windows), {arch}", "onnx backend (onnxruntime CPU EP)",
                   "torch backend (eager fp32, channels_last_3d)", a, b, ratio=b / a, target=">= 1.1x on CPU",
                   met=b / a >= 1.1, extra={"max_abs_difference": diff, "providers": onnx_model.providers})]


def _frames(path: str) -> int:
    from tclr_zoo.data.decode import probe

    return probe(path).num_frames
