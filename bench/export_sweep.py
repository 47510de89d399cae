"""Export every full-size architecture with every head and print the graph/parity/speed table.

    python bench/export_sweep.py [--archs r3d_18,r2plus1d_18,c3d] [--heads retrieval,logits] [--max-batch 4]
        [--fp16] [--int8 SOURCE [--dataset ucf101] [--calib-methods minmax,entropy,percentile]
        [--calib-clips 32] [--holdout-clips 64]] [--json FILE]

Random weights (plus a 10-class classifier so the ``logits`` head exists): the checks are about the
graph and the numerics, not the accuracy. Every export runs the same graph rules and onnxruntime
parity checks as ``tclr-zoo export --onnx``; the times are the parity runs' medians (CPU).

``--int8 SOURCE`` also exports the two INT8 graphs once per calibration method (``--calib-methods``)
and prints a second table: calibration seconds, the accuracy gate's figures on the held-out clips
(against the fp32 graph) and the speed of each int8 graph relative to the fp32 graph in onnxruntime
(the gate's own timings, batches of 4). The bounds are set to 0 for the sweep, so a miss is reported
("no" in the gate column, against the default bounds) instead of stopping it.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from tclr_zoo.constants import HEADS
from tclr_zoo.export.accuracy import passes
from tclr_zoo.export.exporter import export_model
from tclr_zoo.export.int8_options import CALIB_CLIPS, CALIBRATION_METHODS, HOLDOUT_CLIPS, Int8Options
from tclr_zoo.hub.format import model_config
from tclr_zoo.models.preprocessing import Preprocessing
from tclr_zoo.models.registry import create_model, resolve_model_args

INT8_HEADER = ("| arch | head | method | graph | calibration s | cosine mean | cosine min | agreement | default gate "
               "| speed vs fp32 ORT |\n|---|---|---|---|---|---|---|---|---|---|")


def sweep(archs: list[str], heads: list[str], max_batch: int, fp16: bool,
          int8: list[Int8Options] | None = None) -> tuple[list[dict], list[dict]]:
    rows, int8_rows = [], []
    for arch in archs:
        torch.manual_seed(0)
        model = create_model(arch, num_classes=10).eval()
        config = model_config(model, arch=arch, model_args=resolve_model_args(arch),
                              preprocessing=Preprocessing(), labels=[f"class{i}" for i in range(10)])
        for head in heads:
            for options in int8 or [None]:
                with tempfile.TemporaryDirectory() as tmp:
                    start = time.perf_counter()
                    report = export_model((model, config), Path(tmp) / "out", onnx=True, fp16=fp16, head=head,
                                          max_batch=max_batch, int8=options)
                    seconds = time.perf_counter() - start
                if options is None or options is int8[0]:  # the fp32/fp16 rows once per head
                    rows += _parity_rows(arch, head, report, seconds)
                if options is not None:
                    int8_rows += _int8_rows(arch, head, report)
    return rows, int8_rows


def _parity_rows(arch: str, head: str, report: dict, seconds: float) -> list[dict]:
    rows = []
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


def _int8_rows(arch: str, head: str, report: dict) -> list[dict]:
    int8, rows = report["int8"], []
    for graph, figures in int8["gate"]["graphs"].items():
        rows.append({"arch": arch, "head": head, "method": int8["method"], "graph": graph,
                     "calibration_s": int8["calibration_seconds"], **figures,
                     "default_gate": passes(figures),  # the gate's own rule at its default bounds
                     "held_out": int8["gate"]["held_out"]})
    return rows


def _line(r: dict) -> str:
    return (f"| {r['arch']} | {r['head']} | {r['graph']} | {r['max_abs_error']:.1e} | {r['min_cosine']:.7f} | "
            f"{r['ort_s']:.2f} | {r['torch_s']:.2f} | {r['torch_s'] / r['ort_s']:.2f}x |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--archs", default="r3d_18,r2plus1d_18,c3d")
    p.add_argument("--heads", default=",".join(HEADS), help="comma-separated heads (default: all)")
    p.add_argument("--max-batch", type=int, default=4)
    p.add_argument("--fp16", action="store_true", help="also export and check the float16 graph")
    p.add_argument("--int8", metavar="SOURCE", help="also export the int8 graphs, calibrated on SOURCE")
    p.add_argument("--dataset", help="SOURCE is a dataset root of this layout (e.g. ucf101)")
    p.add_argument("--calib-methods", default="minmax", help=f"comma-separated, of {', '.join(CALIBRATION_METHODS)}")
    p.add_argument("--calib-clips", type=int, default=CALIB_CLIPS)
    p.add_argument("--holdout-clips", type=int, default=HOLDOUT_CLIPS)
    p.add_argument("--json", help="write the rows here")
    args = p.parse_args()
    int8 = None if not args.int8 else [
        Int8Options(args.int8, dataset=args.dataset, calib_clips=args.calib_clips, holdout_clips=args.holdout_clips,
                    method=method, min_cosine=0.0, min_agreement=0.0) for method in args.calib_methods.split(",")]
    print(f"torch threads {torch.get_num_threads()}; times: seconds per batch of {args.max_batch} (median)")
    print("| arch | head | graph | max abs err | min cosine | ORT s | PyTorch s | ORT speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    rows, int8_rows = sweep(args.archs.split(","), args.heads.split(","), args.max_batch, args.fp16, int8)
    if int8_rows:
        print("\n" + INT8_HEADER + "\n" + "\n".join(_int8_line(r) for r in int8_rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"parity": rows, "int8": int8_rows}, indent=2) + "\n")


def _int8_line(r: dict) -> str:
    return (f"| {r['arch']} | {r['head']} | {r['method']} | {r['graph']} | {r['calibration_s']:.1f} | "
            f"{r['cosine_mean']:.5f} | {r['cosine_min']:.5f} | "
            f"{'n/a' if r['agreement'] is None else format(r['agreement'], '.3f')} | "
            f"{'yes' if r['default_gate'] else 'no'} | {r['speedup_vs_fp32']:.2f}x |")


if __name__ == "__main__":
    main()
