"""P9: ``tclr-zoo embed`` under torchrun, one process per GPU, against the same command in one process.

Writes H.264 videos (320x240, as P7), saves ``r3d_10_025`` with random weights, runs the command
in one process and under ``torchrun --nproc_per_node N`` (N: the visible GPUs, at least 1; on the CPU
2 gloo processes), and checks that the two files hold the same paths in the same order and vectors
within 1e-4 (bf16 on a GPU rounds differently in other batch mixes). Reports both wall times: with
one GPU the torchrun run only checks the CUDA device mapping and the unit files, it cannot be faster.

``python -m bench.torchrun_embed [--device cuda] [--videos N] [--json FILE]``; ``bench/gpu.sh`` runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from .core import Result, append_json_rows
from .p7_embed_workers import write_videos


def _embed_command(device: str, model: Path, folder: Path, out: Path, nproc: int | None) -> list[str]:
    args = ["embed", str(model), str(folder), "--out", str(out), "--device", device, "--no-progress",
            "--shard-videos", "4"]
    if nproc is None:
        return [sys.executable, "-m", "tclr_zoo.cli", *args]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr",
            "127.0.0.1", "--master_port", str(port), "-m", "tclr_zoo.cli", *args]


def _timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def _read(path: Path) -> tuple[torch.Tensor, list[str]]:
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return f.get_tensor("embeddings"), json.loads(f.metadata()["tclr_zoo"])["paths"]


def run(device: str = "cpu", videos: int = 16) -> list[Result]:
    import tclr_zoo

    nproc = max(1, torch.cuda.device_count()) if device == "cuda" else 2
    with tempfile.TemporaryDirectory(prefix="tclr-zoo-bench-torchrun-") as tmp:
        tmp = Path(tmp)
        (tmp / "videos").mkdir()
        write_videos(tmp / "videos", videos, 64)
        torch.manual_seed(0)
        model = tclr_zoo.load_model("r3d_10_025", pretrained=False, device="cpu").save_pretrained(tmp / "model")
        one_s = _timed(_embed_command(device, model, tmp / "videos", tmp / "one.safetensors", None))
        many_s = _timed(_embed_command(device, model, tmp / "videos", tmp / "many.safetensors", nproc))
        (one, one_paths), (many, many_paths) = _read(tmp / "one.safetensors"), _read(tmp / "many.safetensors")
    same_order = one_paths == many_paths
    diff = float((one - many).abs().max())
    return [Result("P9", f"tclr-zoo embed, {videos} H.264 videos 320x240 x 64 frames, r3d_10_025, {device}",
                   f"torchrun --nproc_per_node {nproc}", "one process", many_s, one_s, ratio=one_s / many_s,
                   target="same paths and order, vectors within 1e-4", met=same_order and diff <= 1e-4,
                   notes=f"wall times of the whole command (model load included); max |diff| {diff:.1g}",
                   extra={"processes": nproc, "same_order": same_order, "max_abs_diff": diff})]


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.torchrun_embed", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--videos", type=int, default=16)
    p.add_argument("--json", help="append the rows (JSON lines) here")
    args = p.parse_args()
    rows = run(args.device, args.videos)
    for row in rows:
        print(json.dumps(row.as_dict()))
    append_json_rows(args.json, rows)
    if not all(row.met for row in rows):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
