"""Labelled clip datasets for the classification protocols (linear probe, fine-tuning).

Training samples one random clip per video and epoch (``frames`` frames at ``stride``), augments it
with parameters drawn from ``(seed, epoch, index)`` — the same epoch-tagged keys as pretraining, see
``EpochShuffleSampler`` — and returns it with its label. Testing uses ``EvalClipsDataset``'s evenly
spaced centre-cropped clips.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .datasets import BadSample, VideoItem, split_bad
from .decode import VideoDecodeError, VideoTooShortError, decode_frames, probe
from .sampling import mirror_indices
from .transforms import AugmentConfig, augment_clip, normalize_clip, sample_clip_params


class ClipClassificationDataset(Dataset):
    """One randomly placed, augmented clip and its label per video; keys are ``epoch * len + index``."""

    def __init__(
        self,
        items: Sequence[VideoItem],
        *,
        frames: int = 16,
        stride: int = 2,
        augment: AugmentConfig = AugmentConfig.light(),
        channel_order: str = "bgr",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        seed: int = 0,
    ) -> None:
        self.items = list(items)
        self.frames, self.stride, self.augment = frames, stride, augment
        self.channel_order, self.mean, self.std, self.seed = channel_order, mean, std, seed

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: int) -> tuple[torch.Tensor, int] | BadSample:
        epoch, index = divmod(int(key), len(self.items))
        item = self.items[index]
        rng = np.random.default_rng([self.seed, epoch, index])
        try:
            info = probe(item.path)
            if info.num_frames < 1:
                raise VideoTooShortError(item.path, "has no frames")
            span = (self.frames - 1) * self.stride + 1
            start = int(rng.integers(0, info.num_frames - span + 1)) if info.num_frames >= span else 0
            indices = mirror_indices(start + np.arange(self.frames) * self.stride, info.num_frames)
            needed = np.unique(indices)
            decoded = decode_frames(item.path, needed, channel_order=self.channel_order, info=info)
        except VideoDecodeError as err:
            return BadSample(str(item.path), err.reason)
        frames = torch.from_numpy(decoded)[torch.from_numpy(np.searchsorted(needed, indices))]
        params = sample_clip_params((frames.shape[1], frames.shape[2]), self.augment, rng)
        clip = normalize_clip(augment_clip(frames, params, self.augment), self.mean, self.std)
        return clip, item.label


def collate_labelled(batch: list) -> dict:
    """Stack good ``(clip, label)`` samples; keep undecodable ones aside for the caller to report."""
    good, bad = split_bad(batch)
    out: dict = {"bad": bad, "videos": len(good)}
    if good:
        clips, labels = zip(*good)
        out["clips"], out["labels"] = torch.stack(clips), torch.tensor(labels)
    return out


__all__ = ["ClipClassificationDataset", "collate_labelled"]
