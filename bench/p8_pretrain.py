"""P8 (GPU): pretraining end to end, in steady state, against the model-only step.

The paper recipe (``recipes/tclr_r3d18_ucf101.yaml``: R3D-18, batch 40, 16x112x112, bf16 autocast and
channels_last_3d on CUDA) on generated 320x240 H.264 videos (UCF101's frame size). The recipe's
own pieces are used: ``build_dataset`` (``data.augment_on=auto``: workers decode, the GPU crops,
resizes and augments), a DataLoader with ``pretrain_loader``'s settings (pinned memory, persistent
workers) and the training loop's feed (``device_feed``: non_blocking copies and the augmentation of
the next batch on a side stream while this step runs), then ``train_step``.

A: end to end, ``--steps`` steps (>= 10) after ``--warmup`` steps, nothing else in the timed window
   (no checkpoint, no logging). The sampler runs through several epochs in one pass (keys
   ``epoch * N + i``, each epoch shuffled) so no epoch boundary drains the loader inside the window.
B: the model-only step, ``train_step`` on one batch already augmented on the GPU, the same count.
Target: A >= 85% of B. Reported with it: the workers, the time the loop waited for data, and the
GPU utilisation (``torch.cuda.utilization()``, sampled every 0.1 s during A, when pynvml is there).

``--compile``: the same with ``train.compile`` (a torch.compile-d forward): compile time (the first
step), A compiled, and the losses of one step compiled against eager from the same weights and batch.

``python -m bench.p8_pretrain [--workers N] [--steps 12] [--compile] [--json FILE]``;
``--dry`` runs the code on the CPU with tiny shapes (a structure check, not a measurement).
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from bench.core import Result, append_json_rows, machine

TARGET = 0.85
RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "tclr_r3d18_ucf101.yaml"


def _write_one(args: tuple) -> str:
    from bench.p2_data import write_video
    from tclr_zoo.data.synthetic import CLASS_NAMES, SyntheticConfig, render_video

    path, seed, frames, height, width = args
    config = SyntheticConfig(frames=frames, height=height, width=width)
    video = render_video(CLASS_NAMES[seed % 4], np.random.default_rng(seed), config)
    write_video(Path(path), video, codec="libx264", gop=250, options={"preset": "veryfast", "crf": "23"})
    return path


def make_videos(folder: Path, count: int, frames: int, height: int, width: int) -> list[str]:
    jobs = [(str(folder / f"v{i:04d}.mp4"), i, frames, height, width) for i in range(count)]
    with ProcessPoolExecutor(max_workers=max(1, min(count, os.cpu_count() or 1))) as pool:
        return list(pool.map(_write_one, jobs))


class Utilisation:
    """Samples ``torch.cuda.utilization()`` every 0.1 s in a thread; ``None`` where it is unavailable."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.samples, self.stop = device, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.wait(0.1):
            try:
                self.samples.append(float(torch.cuda.utilization(self.device)))
            except Exception:  # no pynvml / NVML: report None
                return

    def __enter__(self):
        if self.device.type == "cuda":
            self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()

    @property
    def mean(self) -> float | None:
        return statistics.mean(self.samples) if self.samples else None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(device: torch.device, *, workers: int, steps: int, warmup: int, with_compile: bool, dry: bool,
        log=print) -> list[Result]:
    from torch.utils.data import DataLoader

    from tclr_zoo.data.datasets import collate_pretrain
    from tclr_zoo.data.layouts import VideoItem
    from tclr_zoo.models.registry import create_model
    from tclr_zoo.train import epoch as one_epoch
    from tclr_zoo.train.config import load_recipe
    from tclr_zoo.train.runtime import augment_on, configure_model, seed_everything

    overrides = ["train.device=" + device.type]
    if dry:  # tiny and fast on a CPU; same code path, with the device augmentation forced
        overrides += ["model.arch=r3d_10_025", "data.size=32", "train.batch_size=2", "data.augment_on=device"]
    recipe = load_recipe(str(RECIPE), overrides)
    batch, clips_per_step = recipe.train.batch_size, recipe.train.batch_size * 2 * (1 + recipe.data.num_local)
    height, width, frames = (48, 64, 72) if dry else (240, 320, 72)
    count = 2 * batch  # reused over epochs: each step still decodes its 40 videos
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="tclr-zoo-p8-") as tmp:
        paths = make_videos(Path(tmp), count, frames, height, width)
        generated = time.perf_counter() - started
        log(f"P8: {count} videos {width}x{height}x{frames} written in {generated:.0f}s")
        dataset = one_epoch.build_dataset(recipe, [VideoItem(p, 0) for p in paths], device)
        total_steps = warmup + steps + 1
        epochs = -(-total_steps * batch // count)
        keys = []
        for epoch in range(epochs):  # several epochs in one pass: no epoch boundary drains the loader
            generator = torch.Generator().manual_seed(recipe.train.seed * 100_003 + epoch)
            keys += (epoch * count + torch.randperm(count, generator=generator)).tolist()
        loader = DataLoader(dataset, batch_size=batch, sampler=keys, num_workers=workers, collate_fn=collate_pretrain,
                            drop_last=True, pin_memory=device.type == "cuda", persistent_workers=False,
                            prefetch_factor=4 if workers else None)
        seed_everything(recipe.train.seed)
        model = create_model(recipe.model.arch, head_dim=recipe.model.head_dim, bn_mode=recipe.model.bn_mode)
        configure_model(model, recipe, device)
        initial = copy.deepcopy(model.state_dict())
        weights = one_epoch.loss_weights(recipe)

        def fresh(compiled: bool):
            model.load_state_dict(initial)
            optimizer = torch.optim.Adam(model.parameters(), lr=recipe.optim.lr,
                                         weight_decay=recipe.optim.weight_decay)
            forward = torch.compile(model.forward_pretrain) if compiled else model.forward_pretrain
            return optimizer, forward

        def end_to_end(compiled: bool) -> dict:
            optimizer, forward = fresh(compiled)
            feed = iter(one_epoch.device_feed(loader, device))
            waits, first_step = [], None
            for i in range(warmup):
                t = time.perf_counter()
                one_epoch.train_step(forward, optimizer, next(feed), recipe, device, weights)
                _sync(device)
                first_step = first_step or time.perf_counter() - t
            with Utilisation(device) as util:
                _sync(device)
                start = time.perf_counter()
                for _ in range(steps):
                    t = time.perf_counter()
                    ready = next(feed)
                    waits.append(time.perf_counter() - t)
                    one_epoch.train_step(forward, optimizer, ready, recipe, device, weights)
                _sync(device)
                seconds = time.perf_counter() - start
            last = next(feed)  # a batch for the model-only step (augmented on the device)
            return {"clips_per_s": steps * clips_per_step / seconds, "seconds": seconds,
                    "wait_s_per_step": statistics.mean(waits), "gpu_utilisation": util.mean,
                    "first_step_s": first_step, "batch": last}

        def model_only(compiled: bool, ready: dict) -> float:
            optimizer, forward = fresh(compiled)
            for _ in range(warmup):
                one_epoch.train_step(forward, optimizer, ready, recipe, device, weights)
            _sync(device)
            start = time.perf_counter()
            for _ in range(steps):
                one_epoch.train_step(forward, optimizer, ready, recipe, device, weights)
            _sync(device)
            return steps * clips_per_step / (time.perf_counter() - start)

        eager = end_to_end(False)
        eager_model = model_only(False, eager["batch"])
        log(f"P8 eager: end to end {eager['clips_per_s']:.0f} clips/s, model only {eager_model:.0f} clips/s")
        ratio = eager["clips_per_s"] / eager_model
        where = augment_on(recipe, device)
        settings = (f"{recipe.model.arch}, batch {batch} ({clips_per_step} clips) of {recipe.data.frames}x"
                    f"{recipe.data.size}x{recipe.data.size}, {count} H.264 videos {width}x{height}, {workers} workers, "
                    f"augmentation on the {where}, {steps} timed steps after {warmup}")
        util = eager["gpu_utilisation"]
        rows = [Result("P8" + ("-dry" if dry else ""), "pretraining end to end (paper recipe) vs the model-only step",
                       "end to end: loader workers + feed + step", "train_step on a ready batch",
                       eager["clips_per_s"], eager_model, unit="clips/s", ratio=ratio, target=f">= {TARGET}",
                       met=None if dry else ratio >= TARGET,
                       notes=f"{settings}; waited for data {eager['wait_s_per_step'] * 1e3:.0f} ms per step; GPU "
                             f"utilisation {'n/a' if util is None else f'{util:.0f}%'}; "
                             f"videos written in {generated:.0f}s",
                       extra={k: v for k, v in eager.items() if k != "batch"} | {"workers": workers,
                                                                                   "augment_on": where})]
        if with_compile:
            probe_batch = eager["batch"]
            losses = []
            for compiled in (False, True):
                optimizer, forward = fresh(compiled)
                t = time.perf_counter()
                losses.append(one_epoch.train_step(forward, optimizer, probe_batch, recipe, device, weights))
                _sync(device)
                if compiled:
                    compile_s = time.perf_counter() - t
            worst = max(abs(losses[1][k] - losses[0][k]) / max(abs(losses[0][k]), 1e-12) for k in losses[0])
            compiled_e2e = end_to_end(True)
            compiled_model = model_only(True, compiled_e2e["batch"])
            log(f"P8 compiled: end to end {compiled_e2e['clips_per_s']:.0f} clips/s, model only "
                f"{compiled_model:.0f}, compile {compile_s:.0f}s, worst relative loss difference {worst:.2e}")
            c_ratio = compiled_e2e["clips_per_s"] / compiled_model
            rows.append(Result("P8-compile" + ("-dry" if dry else ""),
                               "P8 with train.compile (torch.compile-d forward)",
                               "end to end, compiled", "end to end, eager", compiled_e2e["clips_per_s"],
                               eager["clips_per_s"], unit="clips/s",
                               ratio=compiled_e2e["clips_per_s"] / eager["clips_per_s"],
                               target="report: default on CUDA if > 1 end to end and the losses match eager",
                               met=None,
                               notes=f"compile (first step) {compile_s:.0f}s; compiled model-only step "
                                     f"{compiled_model:.0f} clips/s, end to end {c_ratio:.0%} of it; one step from the "
                                     f"same weights and batch: worst relative loss difference vs eager {worst:.1e}",
                               extra={"compile_s": compile_s, "model_only_clips_per_s": compiled_model,
                                      "loss_rel_diff": worst, "losses_eager": losses[0], "losses_compiled": losses[1],
                                      "wait_s_per_step": compiled_e2e["wait_s_per_step"],
                                      "gpu_utilisation": compiled_e2e["gpu_utilisation"]}))
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.p8_pretrain", description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda")
    p.add_argument("--workers", type=int, default=None, help="loader workers (default: CPUs - 2, at most 14)")
    p.add_argument("--steps", type=int, default=12, help="timed steps (>= 10 for the steady state)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--compile", action="store_true", help="also measure train.compile")
    p.add_argument("--dry", action="store_true", help="the code on the CPU with tiny shapes (no measurement)")
    p.add_argument("--json", help="append the rows as JSON lines to this file")
    args = p.parse_args(argv)
    device = torch.device("cpu" if args.dry else args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("P8: no CUDA GPU is visible (use --dry for a structure check on the CPU)")
    workers = (args.workers if args.workers is not None
               else (1 if args.dry else max(1, min(14, (os.cpu_count() or 4) - 2))))
    start = time.perf_counter()
    print(machine(), flush=True)
    rows = run(device, workers=workers, steps=2 if args.dry else args.steps, warmup=1 if args.dry else args.warmup,
               with_compile=args.compile, dry=args.dry)
    from bench.__main__ import format_row

    for row in rows:
        print(format_row(row), flush=True)
    append_json_rows(args.json, rows)
    print(f"wall {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
