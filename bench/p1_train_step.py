"""P1: one TCLR pretraining step (forward of all 10 clip groups, the 4 losses, backward, Adam).

A is the training loop's own step: ``tclr_zoo.train.epoch.train_step`` driving
``TCLRModel.forward_pretrain`` (all clip groups in ``groups_per_pass``-sized fused backbone passes
with per-group BatchNorm statistics, one head pass), the vectorised ``tclr_zoo.losses.tclr_losses``
and Adam, with the model laid out and the step run in the precision that ``tclr-zoo pretrain``
chooses for the device (``configure_model`` / ``autocast_for``).

B is a reference-style step written from the method's description (not from the authors' code), in
``bench.p1_reference_step``: a deep copy of the same network called once per clip group, so BatchNorm
sees each group alone, and the losses with Python loops over clip pairs and videos; then backward
and Adam. fp32, contiguous tensors.

Both sides get the same weights and the same clips (uniform in [0, 1], seeded). Before any timing,
one step of each runs on the identical starting state and the total losses (and each term, and the
gradients) are compared; those steps double as the warm-up. Timings: ``bench.core.compare``
(A and B alternating, medians).

Rows on CPU: ``P1`` (the recipe's CPU default, fp32) and ``P1-bf16`` (``train.amp=bf16``, on CPUs with
native bf16); the full run adds R3D-18 at 16x112x112 and two small-network rows. Each row's ``extra``
also holds the forward + backward time of the losses alone on both sides (where B's loops live).

CUDA rows (``device="cuda"``): R3D-18 at the paper's 16x112x112, 40 and 8 videos, A as the recipe
runs there (bf16 autocast + channels_last_3d, all groups in one pass; in the full run also with a
``torch.compile``-d forward), B in fp32 (in the full run also B in the reference's fp16 autocast +
GradScaler); model FLOP utilisation from ``torch.utils.flop_counter.FlopCounterMode`` over one step
against the GPU's dense bf16 peak.

``python -m bench.p1_train_step [--quick] [--device cuda [--shapes 40,8] [--compile] [--fp16-baseline]]
[--dry-cuda] [--json FILE]``; ``--dry-cuda`` runs the CUDA code path on the CPU with tiny shapes (a
structure check, not a measurement).
"""

from __future__ import annotations

import copy
import gc
import math
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F

from bench.core import Result, append_json_rows, compare, machine
from bench.p1_reference_step import reference_losses, reference_step
from tclr_zoo.losses import LOSS_KEYS
from tclr_zoo.models.registry import create_model
from tclr_zoo.train import distributed, epoch, runtime
from tclr_zoo.train.config import Recipe

CPU_TARGET = 1.5
CUDA_TARGET = 2.0

# Dense (no sparsity) bf16 tensor-core peaks from the vendor data sheets, in FLOP/s.
# First match wins, so the more specific names come first.
PEAK_BF16 = (
    ("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("GH200", 989e12), ("H200", 989e12), ("H100", 989e12),
    ("H800", 989e12), ("A100", 312e12), ("A800", 312e12), ("L40S", 362e12), ("L4", 121e12), ("A10G", 70e12),
)


# --------------------------------------------------------------------------------------
# inputs and the two sides
# --------------------------------------------------------------------------------------


def make_batch(videos: int, frames: int = 16, size: int = 112, num_local: int = 4, seed: int = 0) -> dict:
    """A collated pretraining batch (``collate_pretrain``'s layout) of clips uniform in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    return {
        "global": torch.rand(2, videos, 3, frames, size, size, generator=g),
        "local": torch.rand(2, num_local, videos, 3, frames, size, size, generator=g),
        "videos": videos,
        "bad": [],
    }


def on_device(batch: dict, device: torch.device) -> dict:
    """The clips moved once, shared by both sides: the loader's host-to-device copy is not part of
    the step being compared (``train_step``'s own ``.to(device)`` is then a no-op)."""
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def make_recipe(arch: str, videos: int, *, channels_last: Any = "auto", groups_per_pass: Any = "auto",
                amp: str = "auto", head_dim: int = 128) -> Recipe:
    recipe = Recipe()
    recipe.model.arch, recipe.model.head_dim = arch, head_dim
    recipe.train.batch_size = videos
    recipe.train.channels_last, recipe.train.groups_per_pass, recipe.train.amp = channels_last, groups_per_pass, amp
    return recipe


@dataclass
class Side:
    """A model, its Adam and the callable that runs one training step on the fixed batch."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    step: Callable[[], dict[str, float]]


def our_side(model, recipe: Recipe, batch: dict, device: torch.device, forward=None) -> Side:
    """A: the training loop's step on ``model`` configured exactly as ``tclr-zoo pretrain`` does."""
    runtime.configure_model(model, recipe, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.optim.lr, weight_decay=recipe.optim.weight_decay)
    forward = forward or distributed.pretraining_forward(model)
    weights = epoch.loss_weights(recipe)
    return Side(model, optimizer, lambda: epoch.train_step(forward, optimizer, batch, recipe, device, weights))


def reference_side(model, recipe: Recipe, batch: dict, device: torch.device, amp: str = "none") -> Side:
    """B: the reference-style step of ``bench.p1_reference_step`` (fp32; ``amp="fp16"``: fp16 autocast
    + GradScaler, CUDA only)."""
    optimizer, step = reference_step(model, recipe, batch, device, amp)
    return Side(model, optimizer, step)


# --------------------------------------------------------------------------------------
# checks and measurements
# --------------------------------------------------------------------------------------


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().float().flatten().cpu() for n, p in model.named_parameters() if p.grad is not None}


def agreement(values_a: dict, values_b: dict, model_a, model_b) -> dict[str, float]:
    """Loss differences of one step from identical states, and the gradients' relative difference."""
    out = {f"loss_diff_{k}": abs(values_a[k] - values_b[k]) for k in LOSS_KEYS}
    out["loss_rel_diff_total"] = out["loss_diff_total"] / max(abs(values_b["total"]), 1e-12)
    ga, gb = _grads(model_a), _grads(model_b)
    if set(ga) == set(gb) and ga:
        a, b = torch.cat([ga[n] for n in sorted(ga)]), torch.cat([gb[n] for n in sorted(gb)])
        out["grad_rel_diff"] = ((a - b).norm() / b.norm().clamp_min(1e-30)).item()
    out["loss_a_total"], out["loss_b_total"] = values_a["total"], values_b["total"]
    return out


def check_same_computation(a: Side, b: Side, rel_tol: float) -> dict[str, float]:
    """One step of each from the same weights and clips; the losses must agree (also the warm-up)."""
    values_a, values_b = a.step(), b.step()
    diffs = agreement(values_a, values_b, a.model, b.model)
    if not diffs["loss_rel_diff_total"] <= rel_tol:
        raise AssertionError(f"P1: A and B compute different losses (A {values_a}, B {values_b}); "
                             f"a timing of two different computations means nothing")
    return {k: _round(v) for k, v in diffs.items()}


def _sync(device: torch.device) -> Callable[[], None] | None:
    return torch.cuda.synchronize if device.type == "cuda" else None


def _round(v: float) -> float:
    return float(f"{v:.4g}")


def cpu_has_native_bf16() -> bool:
    """AMX or AVX512-BF16 (where oneDNN runs bf16 convolutions natively rather than emulated)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        flags = []
    return "amx_bf16" in flags or "avx512_bf16" in flags


def loss_times(videos: int, num_local: int, head_dim: int, device: torch.device) -> dict[str, float]:
    """Forward + backward of the losses alone (ms), on embeddings of this batch's shapes: the part of
    the step where the reference's Python loops live."""
    from bench.core import median_time
    from tclr_zoo.losses import tclr_losses

    g = torch.Generator().manual_seed(0)

    def emb(*shape):
        return F.normalize(torch.randn(*shape, head_dim, generator=g), dim=-1).to(device).requires_grad_()

    gz, gsz, lz = emb(2, videos), emb(2, videos, num_local), emb(2, videos, num_local)

    def ours():
        tclr_losses(gz, gsz, lz)["total"].backward()

    def reference():
        reference_losses([gz[0], gz[1]], [gsz[0], gsz[1]], [lz[0], lz[1]])["total"].backward()

    sync = _sync(device)
    return {"losses_fwd_bwd_ms_a": _round(1e3 * median_time(ours, repeats=5, sync=sync)),
            "losses_fwd_bwd_ms_b": _round(1e3 * median_time(reference, repeats=5, sync=sync))}


def _pair(arch: str, videos: int, frames: int, size: int, device: torch.device, *, seed: int = 0,
          channels_last: Any = "auto", groups_per_pass: Any = "auto", amp: str = "auto", b_amp: str = "none",
          compile_forward: bool = False) -> tuple[Side, Side, Recipe, dict]:
    recipe = make_recipe(arch, videos, channels_last=channels_last, groups_per_pass=groups_per_pass, amp=amp)
    batch = on_device(make_batch(videos, frames, size, recipe.data.num_local, seed=seed), device)
    torch.manual_seed(seed)
    model = create_model(arch, head_dim=recipe.model.head_dim, bn_mode="faithful").train()
    reference_model = copy.deepcopy(model)  # same weights; plain layout, called per clip group
    forward = None
    if compile_forward:
        runtime.configure_model(model, recipe, device)
        forward = torch.compile(model.forward_pretrain)
    a = our_side(model, recipe, batch, device, forward)
    b = reference_side(reference_model, recipe, batch, device, amp=b_amp)
    return a, b, recipe, batch


def _checks(a: Side, b: Side, recipe: Recipe, batch: dict, device: torch.device, b_amp: str) -> dict[str, Any]:
    """The agreement checks before timing (they are also the warm-up step of each side).

    Same precision on both sides: one step each, total losses within 1e-3 (relative; 1e-2 on CUDA,
    whose convolutions run in TF32 by default). A in bf16:
    first the same A step in fp32 (a copy of A's model, same layout and passes) against B, tightly,
    then B is put back at its start and A's bf16 step is compared to it within 10%.
    """
    tight_tol = 1e-3 if device.type == "cpu" else 1e-2  # cuDNN convolutions run in TF32 by default
    if runtime.amp_mode(device, recipe.train.amp) == "none" and b_amp == "none":
        return {"A_vs_B": check_same_computation(a, b, rel_tol=tight_tol)}
    fp32 = copy.deepcopy(recipe)
    fp32.train.amp = "none"
    twin = our_side(copy.deepcopy(a.model), fp32, batch, device)
    start = copy.deepcopy(b.model.state_dict())
    tight = check_same_computation(twin, b, rel_tol=tight_tol if b_amp == "none" else 5e-2)
    del twin
    b.model.load_state_dict(start)
    b.optimizer.state.clear()
    # bf16 against fp32: a sanity bound, not the equality check above. With 2 videos BatchNorm's
    # batch statistics are over 2 samples, where bf16 rounding moves the losses by up to ~5%.
    return {"A_fp32_vs_B": tight, "A_vs_B": check_same_computation(a, b, rel_tol=0.1)}


def measure(row_id: str, arch: str, videos: int, frames: int, size: int, *, repeats: int,
            device: torch.device | str = "cpu", target: float = CPU_TARGET, b_amp: str = "none",
            flops: bool = False, notes: str = "", **options) -> Result:
    """One row: build both sides, check they compute the same losses, time them alternately."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    a, b, recipe, batch = _pair(arch, videos, frames, size, device, b_amp=b_amp, **options)
    checks = _checks(a, b, recipe, batch, device, b_amp)
    t_a, t_b, times = compare(a.step, b.step, repeats=repeats, warmup=1 if device.type == "cuda" else 0,
                              sync=_sync(device))
    clips = videos * 2 * (1 + recipe.data.num_local)
    ratio = t_b / t_a
    model = a.model
    config = {"groups_per_pass": model.groups_per_pass or "all", "channels_last_3d": model._uses_channels_last(),
              "amp": runtime.amp_mode(device, recipe.train.amp)}
    extra: dict[str, Any] = {**checks, "clips_per_s_a": _round(clips / t_a), "clips_per_s_b": _round(clips / t_b),
                             "times_a": [_round(t) for t in times["a"]], "times_b": [_round(t) for t in times["b"]],
                             "repeats": repeats, "warmup": "the agreement-check step of each side", **config}
    extra.update(loss_times(videos, recipe.data.num_local, recipe.model.head_dim, device))
    if device.type == "cuda":
        extra["peak_gpu_memory_gb_both_sides"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
    elif config["amp"] == "bf16":
        extra["cpu_native_bf16"] = cpu_has_native_bf16()
    if flops:
        peak, peak_note = peak_bf16_flops(device)
        flops_a, flops_b = count_step_flops(a), count_step_flops(b)
        extra.update({"step_tflop_a": _round(flops_a / 1e12), "step_tflop_b": _round(flops_b / 1e12),
                      "peak_assumption": peak_note})
        if peak:
            extra["mfu_a"] = _round(flops_a / t_a / peak)
            extra["mfu_b_vs_bf16_peak"] = _round(flops_b / t_b / peak)
    a_text = (f"train_step (clip groups per backbone pass: {config['groups_per_pass']}, "
              f"{'channels_last_3d' if config['channels_last_3d'] else 'contiguous'}, "
              f"{'bf16' if config['amp'] == 'bf16' else 'fp32'}"
              + (", compiled forward" if options.get("compile_forward") else "") + ", vectorised losses)")
    b_text = "reference-style " + ("fp32" if b_amp == "none" else "fp16 autocast + GradScaler")
    return Result(
        id=row_id, what=f"TCLR pretraining step: {arch}, {videos} videos x 10 clips of {frames}x{size}x{size}",
        a=a_text, b=b_text + " (10 backbone + 18 head calls, losses looped over clip pairs and videos)",
        a_value=t_a, b_value=t_b, unit="s", ratio=ratio, target=f">= {target}x",
        met=None if (target == CUDA_TARGET and device.type != "cuda") else ratio >= target,  # dry run: no claim
        notes=notes, extra=extra)


# --------------------------------------------------------------------------------------
# CUDA rows
# --------------------------------------------------------------------------------------


def peak_bf16_flops(device: torch.device) -> tuple[float | None, str]:
    if device.type != "cuda":
        return None, "no GPU: no peak to divide by"
    name = torch.cuda.get_device_name(device)
    for key, peak in PEAK_BF16:
        if key in name:
            return peak, f"{name}: dense bf16 peak {peak / 1e12:.0f} TFLOP/s ({key} data sheet, no sparsity)"
    return None, f"{name}: peak bf16 FLOP/s unknown, utilisation not computed"


def count_step_flops(side: Side) -> int:
    """FLOPs of one step (forward + backward; the optimizer's element-wise work is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        side.step()
    return counter.get_total_flops()


def cuda_rows(device: torch.device | str, shapes: list[tuple[str, int]], *, arch: str = "r3d_18", frames: int = 16,
              size: int = 112, repeats: int = 5, with_compile: bool = False, with_fp16_baseline: bool = False,
              with_plain: bool = True, row_prefix: str = "P1-cuda", **options) -> list[Result]:
    """A as the recipe runs on CUDA (bf16 autocast, channels_last_3d, all groups in one pass) against B
    in fp32 (and optionally in the reference's fp16 mixed precision), with FLOP utilisation.

    Takes any device, so the CPU can run the same code with tiny shapes (``dry_cuda_rows``); there
    ``options`` force the CUDA settings that ``auto`` resolves to on a GPU.
    """
    device = torch.device(device)
    rows = []
    for label, videos in shapes:
        variants = [("", {}, "none")] if with_plain else []
        if with_fp16_baseline and device.type == "cuda":  # GradScaler's fp16 path needs CUDA
            variants.append(("-vs-fp16", {}, "fp16"))
        if with_compile:
            variants.append(("-compile", {"compile_forward": True}, "none"))
        for suffix, extra_options, b_amp in variants:
            row_id = f"{row_prefix}-{label}{suffix}"
            failure, out_of_memory = None, False
            try:
                rows.append(measure(row_id, arch, videos, frames, size, repeats=repeats, device=device,
                                    target=CUDA_TARGET, b_amp=b_amp, flops=True, **options, **extra_options))
                continue
            except Exception as err:  # noqa: BLE001 - an OOM or a compile failure is this row's outcome
                failure = f"{type(err).__name__}: {str(err)[:300]}"
                out_of_memory = isinstance(err, torch.cuda.OutOfMemoryError)
            # Outside the except block: the traceback no longer holds the failed pair's tensors.
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
            row = None
            if out_of_memory and b_amp == "none":
                row = _a_only(row_id, arch, videos, frames, size, device, repeats, failure,
                              **options, **extra_options)
            rows.append(row or Result(
                id=row_id, what=f"TCLR pretraining step: {arch}, {videos} videos, {device}", a="", b="",
                a_value=math.nan, b_value=None, target=f">= {CUDA_TARGET}x", met=None,
                notes=f"failed: {failure}"))
    return rows


def _a_only(row_id, arch, videos, frames, size, device, repeats, failure, **options) -> Result | None:
    """When the pair does not fit in GPU memory (B in fp32 at 40 videos may not): A alone, with its
    FLOP utilisation, and no ratio."""
    from bench.core import median_time

    try:
        recipe = make_recipe(arch, videos, **{k: v for k, v in options.items() if k != "compile_forward"})
        batch = on_device(make_batch(videos, frames, size, recipe.data.num_local), device)
        torch.manual_seed(0)
        model = create_model(arch, head_dim=recipe.model.head_dim).train()
        forward = None
        if options.get("compile_forward"):
            runtime.configure_model(model, recipe, device)
            forward = torch.compile(model.forward_pretrain)
        a = our_side(model, recipe, batch, device, forward)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t_a = median_time(a.step, repeats=repeats, warmup=2, sync=_sync(device))
        peak, peak_note = peak_bf16_flops(device)
        flops_a = count_step_flops(a)
        extra = {"step_tflop_a": _round(flops_a / 1e12), "peak_assumption": peak_note,
                 "clips_per_s_a": _round(videos * 2 * (1 + recipe.data.num_local) / t_a),
                 "peak_gpu_memory_gb_a": round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
                 if device.type == "cuda" else None}
        if peak:
            extra["mfu_a"] = _round(flops_a / t_a / peak)
        return Result(id=row_id, what=f"TCLR pretraining step: {arch}, {videos} videos x 10 clips of "
                                      f"{frames}x{size}x{size}",
                      a="train_step as configured for CUDA (bf16 autocast, channels_last_3d)",
                      b="reference-style fp32: did not fit in GPU memory", a_value=t_a, b_value=None, unit="s",
                      target=f">= {CUDA_TARGET}x", met=None, notes=f"B failed ({failure}); A alone",
                      extra=extra)
    except Exception as err:  # noqa: BLE001 - then the row reports the pair's failure alone
        print(f"{row_id}: A alone failed too: {type(err).__name__}: {str(err)[:300]}", file=sys.stderr)
        return None


def dry_cuda_rows() -> list[Result]:
    """The CUDA rows' code on the CPU with tiny shapes: a structure check, not a measurement."""
    return cuda_rows("cpu", [("tiny", 2)], arch="r3d_10_025", size=32, repeats=1, with_compile=False,
                     row_prefix="P1-dry", channels_last=True, groups_per_pass="all", amp="bf16")


# --------------------------------------------------------------------------------------
# the case
# --------------------------------------------------------------------------------------


def _cpu_rows(quick: bool) -> list[Result]:
    if quick:
        shapes = {"arch": "r3d_10_025", "videos": 4, "frames": 16, "size": 32}
        rows = [measure("P1", **shapes, repeats=2, notes="quick: small network at 32 px; the recipe's CPU default")]
    else:
        shapes = {"arch": "r3d_18", "videos": 2, "frames": 16, "size": 112}
        rows = [measure("P1", **shapes, repeats=3,
                        notes="paper network and clip size, 2 videos; the recipe's CPU default")]
    if quick:  # the quick run checks that the case runs; the bf16 row is the full run's
        rows[0].extra["bf16_row"] = "not run in --quick"
    elif cpu_has_native_bf16():
        rows.append(measure("P1-bf16", **shapes, repeats=3, amp="bf16",
                            notes="recipe option train.amp=bf16 (auto then also picks channels_last_3d and one "
                                  "clip group per pass); B stays fp32, as for the CUDA target"))
    else:
        rows[0].extra["bf16_row"] = "not run: this CPU has no native bf16 (AMX / AVX512-BF16)"
    if not quick:
        rows.append(measure("P1-small", "r3d_10_025", 8, 16, 64, repeats=5,
                            notes="small network, 8 videos at 64 px, recipe's CPU default"))
        rows.append(measure("P1-small-b32", "r3d_10_025", 32, 16, 32, repeats=3,
                            notes="small network, 32 videos at 32 px (more loop iterations in B), "
                                  "recipe's CPU default"))
    return rows


def run(quick: bool, device: str = "cpu") -> list[Result]:
    """P1 rows on ``device``: the CPU rows, or on CUDA the GPU rows alone (the GPU machine's time is
    scarce, and its CPU rows would measure another machine's CPU)."""
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SystemExit("P1 --device cuda: no CUDA GPU is visible")
        shapes = [("b8", 8)] if quick else [("b40", 40), ("b8", 8)]
        return cuda_rows(torch.device(device), shapes, repeats=3 if quick else 5,
                         with_compile=not quick, with_fp16_baseline=not quick)
    return _cpu_rows(quick)


def _print(rows: list[Result]) -> None:
    for r in rows:
        b = f"{r.b_value:.3f}" if r.b_value is not None else "-"
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "-"
        print(f"{r.id:22s} A {r.a_value:.3f}  B {b}  {r.unit}  ratio {ratio}  target {r.target}  met {r.met}")
        print(f"    {r.what}\n    A: {r.a}\n    B: {r.b}\n    {r.notes}")
        for k, v in r.extra.items():
            print(f"    {k}: {v}")
        sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m bench.p1_train_step", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--device", default="cpu", help="cpu (CPU rows) or cuda (GPU rows only)")
    p.add_argument("--dry-cuda", action="store_true", help="the CUDA rows' code on the CPU, tiny shapes")
    p.add_argument("--shapes", help="CUDA: comma-separated videos per batch, e.g. 40,8 (default 40,8)")
    p.add_argument("--compile", action="store_true", help="CUDA: add rows with a torch.compile-d forward")
    p.add_argument("--fp16-baseline", action="store_true", help="CUDA: add rows against B in fp16 + GradScaler")
    p.add_argument("--no-plain", action="store_true", help="CUDA: skip the plain rows (A vs B in fp32)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", help="append the rows as JSON lines to this file")
    args = p.parse_args(argv)
    start = time.perf_counter()
    print(machine(), flush=True)
    if args.dry_cuda:
        rows = dry_cuda_rows()
    elif args.device.startswith("cuda") and args.shapes:
        if not torch.cuda.is_available():
            raise SystemExit("P1 --device cuda: no CUDA GPU is visible")
        shapes = [(f"b{n}", int(n)) for n in args.shapes.split(",")]
        rows = cuda_rows(torch.device(args.device), shapes, repeats=args.repeats, with_compile=args.compile,
                         with_fp16_baseline=args.fp16_baseline, with_plain=not args.no_plain)
    else:
        rows = run(args.quick, args.device)
    _print(rows)
    append_json_rows(args.json, rows)
    print(f"wall {time.perf_counter() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
