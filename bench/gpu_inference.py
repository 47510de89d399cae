"""CUDA inference timings for bench/gpu.sh: R3D-18 clips/s at fp32 / bf16, with and without
channels_last_3d and torch.compile, each against the plain fp32 eager baseline in the same run.

    python -m bench.gpu_inference [--batch 32] [--repeats 20]
"""

from __future__ import annotations

import argparse
import sys

import torch

from .__main__ import format_row
from .core import Result, append_json_rows, compare


def variants(model, clips):
    """({name: callable}, baseline callable); every callable returns the backbone features."""
    def eager(x, dtype, memory_format, backbone=model.backbone):
        x = x.contiguous(memory_format=memory_format)
        with torch.inference_mode(), torch.autocast(x.device.type, dtype=dtype, enabled=dtype != torch.float32):
            return backbone(x)

    compiled = torch.compile(model.backbone)  # compiled on its first call (inside the warm-up)
    return {
        "bf16": lambda: eager(clips, torch.bfloat16, torch.contiguous_format),
        "fp32 channels_last_3d": lambda: eager(clips, torch.float32, torch.channels_last_3d),
        "bf16 channels_last_3d": lambda: eager(clips, torch.bfloat16, torch.channels_last_3d),
        "bf16 channels_last_3d compile": lambda: eager(clips, torch.bfloat16, torch.channels_last_3d, compiled),
    }, lambda: eager(clips, torch.float32, torch.contiguous_format)


def run(batch: int, repeats: int, device: str = "cuda", arch: str = "r3d_18", size: int = 112) -> list[Result]:
    """``device="cpu"`` (with a small ``arch`` and ``size``) is the dry run that checks this code
    without a GPU; its numbers mean nothing."""
    from tclr_zoo import create_model

    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench.gpu_inference needs a CUDA GPU (or --dry-cpu)")
    torch.backends.cudnn.benchmark = True
    model = create_model(arch).to(device).eval()
    clips = torch.rand(batch, 3, 16, size, size, device=device)
    fast, baseline = variants(model, clips)
    sync = torch.cuda.synchronize if device == "cuda" else None
    rows = []
    for name, fn in fast.items():
        if "channels_last" in name:
            model.to(memory_format=torch.channels_last_3d)
        try:
            a, b, _ = compare(fn, baseline, repeats=repeats, warmup=3, sync=sync)
        except Exception as err:  # noqa: BLE001 - a compile failure is this row's outcome
            rows.append(Result(f"GPU-{name}", f"{arch} forward, {batch} clips 16x{size}x{size}", name,
                               "fp32 eager", float("nan"), None, target="report",
                               notes=f"failed: {type(err).__name__}: {str(err)[:300]}"))
            print(format_row(rows[-1]), flush=True)
            model.to(memory_format=torch.contiguous_format)
            continue
        rows.append(Result(f"GPU-{name}", f"{arch} forward, {batch} clips 16x{size}x{size}", name, "fp32 eager",
                           a, b, ratio=b / a, target="report", notes=f"{batch / a:.0f} clips/s vs {batch / b:.0f}"))
        print(format_row(rows[-1]), flush=True)
        model.to(memory_format=torch.contiguous_format)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--dry-cpu", action="store_true", help="check this code on the CPU (tiny network, 32 px)")
    p.add_argument("--json", help="append the rows as JSON lines to this file")
    args = p.parse_args()
    if args.dry_cpu:
        rows = run(args.batch, args.repeats, device="cpu", arch="r3d_10_025", size=32)
    else:
        rows = run(args.batch, args.repeats)
    append_json_rows(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
