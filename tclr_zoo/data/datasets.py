"""Torch datasets over video files for training and evaluation: the TCLR pretraining dataset
(:class:`TCLRPretrainDataset`, its sampler, collate function and the batched device-side augmentation
that finishes its batches) and the evenly spaced, centre-cropped clips that evaluation averages over
(:class:`EvalClipsDataset`); :func:`describe_dataset` names a dataset in results and model cards.

The video lists come from layouts.py (``load_split``), re-exported here so that
``tclr_zoo.data.datasets`` stays the one place to import datasets from.

Bad input never stops a run: a sample that cannot be decoded (or is too short) comes back as a
``BadSample`` naming the file and the reason; ``collate_pretrain`` drops it from the batch and passes
it on, so the training loop can log it once and count it in the epoch summary.

Augmentation randomness is drawn from ``numpy.random.default_rng([seed, epoch, index])``: the same
sample gets the same clips whatever the number of DataLoader workers, and a resumed run sees
exactly the clips an uninterrupted run would have seen. The epoch travels inside the sample key
(``key = epoch * len(dataset) + index``, produced by ``EpochShuffleSampler`` in the main process),
so DataLoader workers can persist across epochs instead of being restarted for each one.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..constants import DATASET_NAMES
from .decode import VideoDecodeError, decode_frames, probe
from .layouts import (  # noqa: F401  (re-exported: the public home of the dataset readers)
    DATASETS,
    VIDEO_EXTENSIONS,
    DatasetError,
    DatasetNotFoundError,
    VideoItem,
    VideoList,
    load_split,
    read_ucf_split,
)
from .sampling import ClipSampling, evenly_spaced_clips, sample_tclr_indices
from .transforms import (
    AugmentConfig,
    augment_batch,
    augment_clip,
    crop_resize_batch,
    eval_clip,
    normalize_clip,
    sample_clip_params,
)

#: Where the training augmentation runs: in the loader workers, per clip (``augment_clip``), or on
#: the training device, one batched call per step (``augment_batch``, see ``augment_pretrain_batch``).
AUGMENT_ON = ("worker", "device")

# How results name the datasets of the official layouts (the Hub's model-index reads these names).
SYNTHETIC_NAME = "synthetic"


def describe_dataset(layout: str, root: str | os.PathLike | None) -> str:
    """What the videos at ``root`` are, for results and model cards: ``"UCF101"`` for a UCF101
    folder, but ``"synthetic (tclr-zoo generated, ucf101 layout)"`` for the generated set written in
    UCF101's layout -- a card must not claim UCF101 numbers for moving shapes."""
    from .synthetic import is_synthetic_root

    if root is not None and is_synthetic_root(root):
        return f"{SYNTHETIC_NAME} (tclr-zoo generated, {layout} layout)"
    if layout in DATASET_NAMES:
        return DATASET_NAMES[layout]
    return f"{Path(root).name if root is not None else 'videos'} ({layout} layout)"


@dataclass(frozen=True)
class BadSample:
    """Stands in for a sample whose video could not be used."""

    path: str
    reason: str


class TCLRPretrainDataset(Dataset):
    """One item = 2 augmentations of a global clip and of its K local clips.

    ``augment_on="worker"``: the item is the augmented float clips, ``global [2,3,T,S,S]`` and
    ``local [2,K,3,T,S,S]``. ``augment_on="device"``: the worker only decodes and draws every clip's
    parameters (the same draws, in the same order); the item is the decoded frames (uint8
    ``frames [U,H,W,3]``, each needed frame once), each clip's rows of them (``positions [2+2K,T]``:
    global, global, then the K local clips twice) and the parameters, and ``augment_pretrain_batch``
    crops, resizes and augments a collated batch on the training device. Both give the same clips
    up to float rounding (tests/data/test_augment_batch.py).
    """

    def __init__(
        self,
        paths: Sequence[str | os.PathLike],
        sampling: ClipSampling = ClipSampling(),
        augment: AugmentConfig = AugmentConfig(),
        *,
        channel_order: str = "bgr",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        seed: int = 0,
        augment_on: str = "worker",
    ) -> None:
        if augment_on not in AUGMENT_ON:
            raise ValueError(f"augment_on must be one of {AUGMENT_ON}, got {augment_on!r}")
        self.augment_on = augment_on
        self.paths = [str(p) for p in paths]
        self.sampling, self.augment = sampling, augment
        self.channel_order, self.mean, self.std = channel_order, mean, std
        self.seed = seed

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: int) -> dict[str, torch.Tensor] | BadSample:
        """Sample ``key % len`` as drawn in epoch ``key // len`` (plain indices mean epoch 0)."""
        epoch, index = divmod(int(key), len(self.paths))
        path = self.paths[index]
        rng = np.random.default_rng([self.seed, epoch, index])
        try:
            info = probe(path)
            indices = sample_tclr_indices(info.num_frames, self.sampling, rng, path)
            needed = indices.unique()
            frames = torch.from_numpy(decode_frames(path, needed, channel_order=self.channel_order, info=info))
        except VideoDecodeError as err:
            return BadSample(path, err.reason)
        if self.augment_on == "device":
            return self._decoded(frames, needed, indices, rng)
        # index_select, not frames[index]: the same contiguous copy, faster for uint8 frames (BENCHMARKS.md, P2).
        global_frames = frames.index_select(0, torch.from_numpy(np.searchsorted(needed, indices.global_clip)))
        local_frames = [frames.index_select(0, torch.from_numpy(row))
                        for row in np.searchsorted(needed, indices.local_clips)]  # K x [T, H, W, 3]
        hw = (frames.shape[1], frames.shape[2])
        # Drawn in the order global, global, then the K local clips twice; one stack per output.
        global_clips = torch.stack([self._augment(global_frames, hw, rng) for _ in range(2)])
        local_clips = torch.stack([self._augment(c, hw, rng) for _ in range(2) for c in local_frames])
        return {"global": global_clips, "local": local_clips.unflatten(0, (2, len(local_frames)))}

    def _augment(self, frames: torch.Tensor, hw: tuple[int, int], rng: np.random.Generator) -> torch.Tensor:
        clip = augment_clip(frames, sample_clip_params(hw, self.augment, rng), self.augment)
        return normalize_clip(clip, self.mean, self.std)

    def _decoded(self, frames: torch.Tensor, needed: np.ndarray, indices, rng: np.random.Generator) -> dict:
        """The ``augment_on="device"`` item: the parameters drawn in ``_augment``'s order, the frames as decoded."""
        global_rows = np.searchsorted(needed, indices.global_clip)
        local_rows = np.searchsorted(needed, indices.local_clips)
        positions = torch.from_numpy(np.concatenate([global_rows[None], global_rows[None], local_rows, local_rows]))
        hw = (frames.shape[1], frames.shape[2])
        params = [sample_clip_params(hw, self.augment, rng) for _ in range(len(positions))]
        return {"frames": frames, "positions": positions, "params": params}


class EpochShuffleSampler(Sampler[int]):
    """A fresh permutation per epoch, seeded by ``(seed, epoch)``, yielding epoch-tagged keys."""

    def __init__(self, num_samples: int, seed: int = 0) -> None:
        self.num_samples, self.seed, self.epoch = num_samples, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        offset = self.epoch * self.num_samples
        return iter((offset + torch.randperm(self.num_samples, generator=generator)).tolist())


def split_bad(batch: list) -> tuple[list, list[BadSample]]:
    """``(good samples, BadSample markers)`` of a DataLoader batch, in order."""
    return [s for s in batch if not isinstance(s, BadSample)], [s for s in batch if isinstance(s, BadSample)]


class BadFileLog:
    """Logs each unusable video once (path and reason) and counts them, so a run can report them."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self.log, self.seen = log, set()

    def report(self, bad: list[BadSample]) -> int:
        for sample in bad:
            if sample.path not in self.seen:
                self.seen.add(sample.path)
                self.log(f"skipping {sample.path}: {sample.reason}")
        return len(bad)


def collate_pretrain(batch: list) -> dict:
    """Stack good samples as ``global [2,B,3,T,H,W]`` and ``local [2,K,B,3,T,H,W]``; keep bad ones aside.

    Items of ``augment_on="device"`` are kept as lists, one entry per good sample (``frames``,
    ``positions``, ``params``): their videos may differ in size and in the number of decoded frames.
    """
    good, bad = split_bad(batch)
    out: dict = {"bad": bad, "videos": len(good)}
    if good and "frames" in good[0]:
        for key in ("frames", "positions", "params"):
            out[key] = [s[key] for s in good]
    elif good:
        out["global"] = torch.stack([s["global"] for s in good], dim=1)
        out["local"] = torch.stack([s["local"] for s in good], dim=2)
    return out


def augment_pretrain_batch(batch: dict, dataset: TCLRPretrainDataset, device: torch.device | str | None = None) -> dict:
    """Finish a collated ``augment_on="device"`` batch on ``device`` (default: where its frames are):
    crop and resize every clip (``crop_resize_batch``), then augment them all in one ``augment_batch``
    call. Returns the batch with float ``global [2,B,3,T,S,S]`` and ``local [2,K,B,3,T,S,S]``, as
    the ``augment_on="worker"`` batch would be; any other batch is returned as is."""
    if "frames" not in batch:
        return batch
    frames = [f if device is None else f.to(device, non_blocking=True) for f in batch["frames"]]
    positions = [p.to(f.device, non_blocking=True) for p, f in zip(batch["positions"], frames)]
    videos, clips = len(frames), positions[0].shape[0]
    k = (clips - 2) // 2
    # the clips of global [2, B] then local [2, K, B], flattened: (sample, clip of the sample) pairs
    order = [(b, g) for g in range(2) for b in range(videos)]
    order += [(b, 2 + r * k + j) for r in range(2) for j in range(k) for b in range(videos)]
    params = [batch["params"][b][c] for b, c in order]
    crops = crop_resize_batch([(frames[b], positions[b][c]) for b, c in order], params, dataset.augment)
    out = augment_batch(crops, params, dataset.augment, mean=dataset.mean, std=dataset.std)
    done = {key: v for key, v in batch.items() if key not in ("frames", "positions", "params")}
    done["global"] = out[:2 * videos].unflatten(0, (2, videos))
    done["local"] = out[2 * videos:].unflatten(0, (2, k, videos))
    return done


class EvalClipsDataset(Dataset):
    """All ``clips`` evenly spaced, centre-cropped clips of a video (retrieval / multi-clip testing).

    ``crops=3`` adds the two crops at the ends of the long side (3-crop testing): each item is then
    ``[clips * 3, 3, T, H, W]``, clip-major (clip 0 left/centre/right, clip 1 ...).
    """

    def __init__(
        self,
        items: Sequence[VideoItem],
        *,
        clips: int = 9,
        frames: int = 16,
        stride: int = 2,
        size: int = 112,
        crop_fraction: float = 0.8,
        crops: int = 1,
        channel_order: str = "bgr",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        if crops not in (1, 3):
            raise ValueError(f"crops must be 1 (centre) or 3 (both ends and centre), got {crops}")
        self.items = list(items)
        self.clips, self.frames, self.stride = clips, frames, stride
        self.size, self.crop_fraction = size, crop_fraction
        self.positions = (0.5,) if crops == 1 else (0.0, 0.5, 1.0)
        self.channel_order, self.mean, self.std = channel_order, mean, std

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int] | BadSample:
        item = self.items[index]
        try:
            info = probe(item.path)
            indices = evenly_spaced_clips(info.num_frames, self.clips, self.frames, self.stride)
            needed = np.unique(indices)
            frames = torch.from_numpy(decode_frames(item.path, needed, channel_order=self.channel_order, info=info))
        except VideoDecodeError as err:
            return BadSample(str(item.path), err.reason)
        position = np.searchsorted(needed, indices)
        clips = [eval_clip(frames[torch.from_numpy(row)], self.size, self.crop_fraction, where)
                 for row in position for where in self.positions]
        stacked = torch.stack([normalize_clip(c, self.mean, self.std) for c in clips])
        return stacked, item.label, index


__all__ = ["AUGMENT_ON", "BadFileLog", "BadSample", "EpochShuffleSampler", "EvalClipsDataset", "SYNTHETIC_NAME",
           "TCLRPretrainDataset", "augment_pretrain_batch", "collate_pretrain", "describe_dataset", "split_bad"]
