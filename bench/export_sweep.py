"""Export every full-size architecture with every head and print the graph/parity/speed table.

    python bench/export_sweep.py [--archs r3d_18,r2plus1d_18,c3d] [--max-batch 4] [--fp16] [--json FILE]

Random weights (plus a 10-class classifier so the ``logits`` head exists): the checks are about the
graph and the numerics, not the accuracy. Every export runs the same graph rules and onnxruntime
parity checks as ``tclr-zoo export --onnx``; the times are the parity runs' medians (CPU).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from tclr_zoo.constants import HEADS
from tclr_zoo.export.exporter import export_model
from tclr_zoo.hub.format import model_config
from tclr_zoo.models.pretrained import FAITHFUL_PREPROCESSING
from tclr_zoo.models.registry import create_model, resolve_model_args



def sweep(archs: list[str], max_batch: int, fp16: bool) -> list[dict]:
    rows = []
    for arch in archs:
        torch.manual_seed(0)
        model = create_model(arch, num_classes=10).eval()
        config = model_config(model, arch=arch, model_args=resolve_model_args(arch),
                              preprocessing=dict(FAITHFUL_PREPROCESSING), labels=[f"class{i}" for i in range(10)])
        for head in HEADS:
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                report = export_model((model, config), Path(tmp) / "out", onnx=True, fp16=fp16, head=head,
                                      max_batch=max_batch)
                seconds = time.perf_counter() - start
            for graph, result in report["parity"].items():
                batches = result["batches"]
                largest = max(batches, key=lambda b: b["batch_size"])
                rows.append({"arch": arch, "head": head, "graph": graph, "opset": report["opset"],
                             "ops": len(report["graphs"][graph]["op_histogram"]),
                             "max_abs_error": max(b["max_abs_error"] for b in batches),
                             "min_cosine": min(b["min_cosine"] for b in batches),
                             "batch": largest["batch_size"], "ort_s": largest["ort_seconds"],
                             "torch_s": largest["torch_seconds"], "export_s": seconds})
                print(_line(rows[-1]), flush=True)
    return rows


def _line(r: dict) -> str:
    return (f"| {r['arch']} | {r['head']} | {r['graph']} | {r['max_abs_error']:.1e} | {r['min_cosine']:.7f} | "
            f"{r['ort_s']:.2f} | {r['torch_s']:.2f} | {r['torch_s'] / r['ort_s']:.2f}x |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--archs", default="r3d_18,r2plus1d_18,c3d")
    p.add_argument("--max-batch", type=int, default=4)
    p.add_argument("--fp16", action="store_true", help="also export and check the float16 graph")
    p.add_argument("--json", help="write the rows here")
    args = p.parse_args()
    print(f"torch threads {torch.get_num_threads()}; times: seconds per batch of {args.max_batch} (median)")
    print("| arch | head | graph | max abs err | min cosine | ORT s | PyTorch s | ORT speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    rows = sweep(args.archs.split(","), args.max_batch, args.fp16)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
