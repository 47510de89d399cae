"""P10: a corpus embedding job on the Ray Data engine against today's one-process ``embed``.

The demo-sized model (``r3d_10_025`` saved at 32 px, random weights: speed does not depend on
them) embeds H.264 videos (P7's: 320x240, 8 s at 25 fps; 24 files, each listed 8 times: a job of
192 videos) with ``embed_corpus``:

* **A** -- ``engine="ray"`` on a local Ray with this machine's CPUs: decode tasks (a few videos
  each, 1 CPU; ``--videos-per-task``) and one CPU model actor (1 CPU);
* **B** -- ``engine="local"``: one process with its default decode workers (what ``tclr-zoo
  embed`` runs today).

Each job pays a fixed cost before its first row (Ray: worker processes that import torch, the actor
loading the model; one process: its decode workers), so each engine is timed on a list of 48 videos
and on the 192, alternately, in one Ray session: the throughput is the extra videos over the
extra time, the fixed cost what the short job takes beyond its videos' share. ``ray.init`` itself is
timed apart. The rows of A and B are checked equal.

``python -m bench.p10_ray [--quick] [--json FILE]`` runs it alone; on a GPU machine
``bench/gpu.sh`` runs it with ``--device cuda`` (a GPU actor against P7's one-process GPU embed).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from tclr_zoo.inference.ray_engine import RayOptions

from .core import Result, append_json_rows

RAY_DEFAULTS = RayOptions()  # Ray itself is imported when a job runs

TARGET = 0.9  # A's throughput >= 0.9x B's


def _job(vm, paths: list[str], engine: str, options) -> tuple[float, torch.Tensor]:
    from tclr_zoo.inference.corpus import embed_corpus

    start = time.perf_counter()
    rows = embed_corpus(vm, paths, engine=engine, ray=options).embeddings
    return time.perf_counter() - start, rows


def run(quick: bool, device: str = "cpu", *, actor_cpus: float = 1.0, decode_cpus: float = 1.0,
        videos_per_task: int = RAY_DEFAULTS.videos_per_task) -> list[Result]:
    import tclr_zoo
    from tclr_zoo.inference.ray_engine import ray_session

    from .p7_embed_workers import models, write_videos

    files, short, videos, repeats = (4, 8, 16, 1) if quick else (24, 48, 192, 3)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "videos").mkdir()
        written = write_videos(Path(tmp) / "videos", files, 100 if quick else 200)
        paths = [written[i % files] for i in range(videos)]  # each file several times: a long job, few files
        vm = tclr_zoo.load_model(models(Path(tmp), "cpu")[0][1].source.directory, device=device)
        options = RayOptions(actor_cpus=actor_cpus, decode_cpus=decode_cpus, videos_per_task=videos_per_task)
        start = time.perf_counter()
        with ray_session(options):
            init_s = time.perf_counter() - start
            times: dict[tuple[str, int], list[float]] = {}
            rows = {}
            for _ in range(repeats):
                for engine in ("ray", "local"):
                    for count in (short, videos):
                        took, rows[engine] = _job(vm, paths[:count], engine, options)
                        times.setdefault((engine, count), []).append(took)
    median = {key: statistics.median(value) for key, value in times.items()}
    per_s = {e: (videos - short) / (median[(e, videos)] - median[(e, short)]) for e in ("ray", "local")}
    fixed = {e: median[(e, short)] - short / per_s[e] for e in ("ray", "local")}
    diff = float((rows["ray"] - rows["local"]).abs().max())
    ratio = per_s["ray"] / per_s["local"]
    return [Result(
        id="P10", what=f"corpus embedding, {videos} H.264 videos 320x240 ({files} files), r3d_10_025 at 32 px, "
                        f"{device}",
        a=(f"engine=ray: decode tasks ({decode_cpus:g} CPU, {videos_per_task} videos each) + 1 model actor "
           f"({actor_cpus:g} CPU), local Ray"),
        b="engine=local: one process, default decode workers", a_value=per_s["ray"], b_value=per_s["local"],
        unit="videos/s", ratio=ratio, target=f">= {TARGET}x of one process", met=ratio >= TARGET,
        notes=(f"throughput from {short} vs {videos} videos, medians of {repeats}; fixed cost per job: ray "
               f"{fixed['ray']:.1f} s, one process {fixed['local']:.1f} s; ray.init {init_s:.1f} s; "
               f"rows max |A-B| {diff:.1e}"),
        extra={"fixed_s_ray": round(fixed["ray"], 2), "fixed_s_local": round(fixed["local"], 2),
               "ray_init_s": round(init_s, 2), "max_abs_diff": diff,
               "medians_s": {f"{e}-{c}": round(v, 3) for (e, c), v in median.items()}})]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=None)
    p.add_argument("--actor-cpus", type=float, default=1.0, help="CPUs per model actor (--ray-actor-cpus)")
    p.add_argument("--decode-cpus", type=float, default=1.0, help="CPUs per decode task (--ray-decode-cpus)")
    p.add_argument("--videos-per-task", type=int, default=RAY_DEFAULTS.videos_per_task,
                   help=f"videos per decode task (RayOptions.videos_per_task, default {RAY_DEFAULTS.videos_per_task})")
    args = p.parse_args(argv)
    rows = run(args.quick, args.device, actor_cpus=args.actor_cpus, decode_cpus=args.decode_cpus,
               videos_per_task=args.videos_per_task)
    for row in rows:
        print(row.as_dict(), file=sys.stderr)
    append_json_rows(args.json, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
