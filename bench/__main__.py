"""`python -m bench [--quick] [--only P1,P3] [--device cpu|cuda] [--json FILE] [--update-doc]`.

Runs the cases P1-P7 (each alternates its fast path A and baseline B in one process), prints one
table with the machine it ran on, and with --update-doc writes it to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import time
from pathlib import Path

from .core import Result, machine

CASES = {"P1": "p1_train_step", "P2": "p2_data", "P3": "p3_embed", "P4": "p4_onnx", "P5": "p5_index",
         "P6": "p6_memory", "P7": "p7_embed_workers"}
DOC = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def run_cases(names: list[str], quick: bool, device: str) -> list[Result]:
    rows: list[Result] = []
    for name in names:
        module = importlib.import_module(f".{CASES[name]}", __package__)
        start = time.perf_counter()
        kwargs = {"device": device} if name == "P1" else {}
        got = module.run(quick, **kwargs)
        print(f"[{name}: {time.perf_counter() - start:.0f} s]", file=sys.stderr, flush=True)
        for row in got:
            print(format_row(row), file=sys.stderr, flush=True)
        rows.extend(got)
    return rows


def _fmt(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit == "s":
        return f"{value * 1e3:.1f} ms" if value < 1 else f"{value:.2f} s"
    return f"{value:.3g} {unit}"


def format_row(r: Result) -> str:
    ratio = "-" if r.ratio is None else f"{r.ratio:.2f}x"
    met = {True: "met", False: "**missed**", None: "report"}[r.met]
    return (f"| {r.id} | {r.what} | {r.a}: {_fmt(r.a_value, r.unit)} | {r.b}: {_fmt(r.b_value, r.unit)} | "
            f"{ratio} | {r.target} | {met} | {r.notes} |")


def table(rows: list[Result], info: dict, quick: bool) -> str:
    gpu = info["gpu"] or "none"
    head = (f"Machine: {info['cpu']}, {info['cores']} cores ({info['torch_threads']} torch threads), GPU: {gpu}; "
            f"python {info['python']}, torch {info['torch']}, torchvision {info['torchvision']}, av {info['av']}, "
            f"onnxruntime {info['onnxruntime']}, faiss {info['faiss']}. Mode: {'--quick' if quick else 'full'}.\n\n")
    lines = ["| id | what | A (fast path) | B (baseline) | ratio | target | | notes |",
             "|---|---|---|---|---|---|---|---|"] + [format_row(r) for r in rows]
    return head + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small shapes: the whole suite in under 3 minutes on 2 cores")
    p.add_argument("--only", help="comma-separated case ids, e.g. P1,P3 (default: all)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="device for P1 (the GPU rows)")
    p.add_argument("--json", help="write the rows and the machine here")
    p.add_argument("--update-doc", action="store_true", help=f"write the table to {DOC.name}")
    args = p.parse_args(argv)
    names = [n.strip().upper() for n in args.only.split(",")] if args.only else list(CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        p.error(f"unknown case(s) {unknown}; choose from {', '.join(CASES)}")
    info = machine()
    rows = run_cases(names, args.quick, args.device)
    text = table(rows, info, args.quick)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "quick": args.quick,
                                               "rows": [r.as_dict() for r in rows]}, indent=2) + "\n")
    if args.update_doc:
        update_doc(text)
    return 0


def update_doc(text: str) -> None:
    """Replace the measured table between the markers of BENCHMARKS.md (the prose around it stays)."""
    start, end = "<!-- bench:table -->", "<!-- /bench:table -->"
    doc = DOC.read_text() if DOC.exists() else f"# Benchmarks\n\n{start}\n{end}\n"
    if start not in doc:
        doc += f"\n{start}\n{end}\n"
    before, rest = doc.split(start, 1)
    after = rest.split(end, 1)[1] if end in rest else ""
    DOC.write_text(f"{before}{start}\n{text}{end}{after}")


if __name__ == "__main__":
    sys.exit(main())
