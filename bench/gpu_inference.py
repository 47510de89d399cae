"""CUDA inference timings for bench/gpu.sh: R3D-18 clips/s at fp32 / bf16, with and without
channels_last_3d and torch.compile, each against the plain fp32 eager baseline in the same run.

    python -m bench.gpu_inference [--batch 32] [--repeats 20]
"""

from __future__ import annotations

import argparse
import sys

import torch

from .core import Result, compare


def variants(model, clips):
    """({name: callable}, baseline callable); every callable returns the backbone features."""
    def eager(x, dtype, memory_format, backbone=model.backbone):
        x = x.contiguous(memory_format=memory_format)
        with torch.inference_mode(), torch.autocast("cuda", dtype=dtype, enabled=dtype != torch.float32):
            return backbone(x)

    compiled = torch.compile(model.backbone)  # compiled on its first call (inside the warm-up)
    return {
        "bf16": lambda: eager(clips, torch.bfloat16, torch.contiguous_format),
        "fp32 channels_last_3d": lambda: eager(clips, torch.float32, torch.channels_last_3d),
        "bf16 channels_last_3d": lambda: eager(clips, torch.bfloat16, torch.channels_last_3d),
        "bf16 channels_last_3d compile": lambda: eager(clips, torch.bfloat16, torch.channels_last_3d, compiled),
    }, lambda: eager(clips, torch.float32, torch.contiguous_format)


def run(batch: int, repeats: int) -> list[Result]:
    from tclr_zoo import create_model

    if not torch.cuda.is_available():
        raise SystemExit("bench.gpu_inference needs a CUDA GPU")
    torch.backends.cudnn.benchmark = True
    model = create_model("r3d_18").cuda().eval()
    clips = torch.rand(batch, 3, 16, 112, 112, device="cuda")
    fast, baseline = variants(model, clips)
    rows = []
    for name, fn in fast.items():
        if "channels_last" in name:
            model.to(memory_format=torch.channels_last_3d)
        a, b, _ = compare(fn, baseline, repeats=repeats, warmup=3, sync=torch.cuda.synchronize)
        rows.append(Result(f"GPU-{name}", f"R3D-18 forward, {batch} clips 16x112x112", name, "fp32 eager",
                           a, b, ratio=b / a, target="report", notes=f"{batch / a:.0f} clips/s vs {batch / b:.0f}"))
        model.to(memory_format=torch.contiguous_format)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args()
    from .__main__ import format_row

    for row in run(args.batch, args.repeats):
        print(format_row(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
