"""Classification protocols: linear probe (frozen backbone) and full fine-tuning, multi-clip testing.

Linear probe follows the authors' linear evaluation script: frozen backbone whose BatchNorm
layers stay in train mode (``frozen_bn: train``, as the reference; ``eval`` is the named
alternative), global average pool, one Linear layer, Adam lr 1e-2, batch 32, clips of 16 frames at
stride 2 with the lighter augmentation.

Fine-tuning has no reference script and the paper gives no settings; ours, chosen for R3D-18 at
16x112x112 and documented in the README: every layer trained, dropout 0.5 before the classifier,
Adam lr 1e-4, weight decay 1e-5, batch 32, cosine decay over the epochs, the same clips and
augmentation as the linear probe.

Testing (both): ``test_clips`` evenly spaced clips per video (10), centre crop 0.8 (``test_crops=3``
adds the crops at both ends of the long side), softmax averaged over all views; reports video-level
``top1``/``top5`` and view-level ``clip_top1``/``clip_top5``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..data.classification import ClipClassificationDataset, collate_labelled
from ..data.datasets import BadFileLog, EpochShuffleSampler, EvalClipsDataset, VideoItem
from ..data.transforms import AugmentConfig
from ..models import TCLRModel
from ..models.preprocessing import Preprocessing
from ..runtime import cpu_share
from .config import RecipeError
from .evaluate import collate_eval

PROTOCOLS = ("linear", "finetune")


@dataclass
class ClassifyConfig:
    """Settings of one linear-probe or fine-tuning run (``defaults_for(protocol)`` gives ours)."""

    protocol: str = "finetune"
    epochs: int = 100
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 1e-5
    schedule: str = "cosine"  # "cosine" or "constant"
    dropout: float = 0.5
    frozen_bn: str = "train"  # linear probe only: BatchNorm of the frozen backbone in "train" or "eval" mode
    # Clip geometry; None = the encoder's own preprocessing (config.json): the frames, frame stride,
    # input size and crop it was trained and is evaluated at. A different value is a deliberate choice.
    frames: int | None = None
    stride: int | None = None
    size: int | None = None
    augment: str = "light"  # "light" (reduced probabilities, as the reference linear eval), "full", "none"
    test_clips: int = 10
    test_crops: int = 1  # 1: centre crop; 3: also both ends of the long side (3-crop testing)
    crop_fraction: float | None = None
    workers: int = 4  # DataLoader processes (capped at the CPUs)
    seed: int = 0


# Clip settings a protocol takes from the encoder's preprocessing when left unset: setting -> Preprocessing field.
_MODEL_CLIP_FIELDS = {"frames": "frames", "stride": "eval_frame_stride", "size": "size",
                      "crop_fraction": "crop_fraction"}


def with_model_defaults(settings, preprocessing: Preprocessing | Mapping):
    """A copy of ``settings`` (a protocol's dataclass) whose unset (``None``) clip fields -- frames,
    frame stride, size, crop -- are the encoder's own, from its preprocessing (a ``Preprocessing``, or
    its ``config.json`` section): the input it was trained for and is evaluated at."""
    pre = Preprocessing.from_config(preprocessing)
    filled = {name: getattr(pre, key) for name, key in _MODEL_CLIP_FIELDS.items()
              if getattr(settings, name, 0) is None}
    return dataclasses.replace(settings, **filled)


def defaults_for(protocol: str) -> ClassifyConfig:
    if protocol == "linear":
        return ClassifyConfig(protocol="linear", lr=1e-2, weight_decay=0.0, schedule="constant", dropout=0.0)
    if protocol == "finetune":
        return ClassifyConfig()
    raise RecipeError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")


class VideoClassifier(nn.Module):
    """The encoder seen as a classifier: ``forward`` gives its logits (so DataLoader loops stay plain)."""

    def __init__(self, encoder: TCLRModel) -> None:
        super().__init__()
        self.encoder = encoder

    @property
    def backbone(self) -> nn.Module:
        return self.encoder.backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder.logits(x)


def build_classifier(encoder: TCLRModel, num_classes: int, cfg: ClassifyConfig) -> VideoClassifier:
    """Give ``encoder`` a fresh classifier; for the linear probe, freeze everything but it."""
    encoder.add_classifier(num_classes, cfg.dropout)
    if cfg.protocol == "linear":
        for p in encoder.backbone.parameters():
            p.requires_grad_(False)
    for p in encoder.projection.parameters():  # the projection head plays no part in classification
        p.requires_grad_(False)
    return VideoClassifier(encoder)


def _augment_config(cfg: ClassifyConfig) -> AugmentConfig:
    choices = {"light": AugmentConfig.light, "full": AugmentConfig, "none": AugmentConfig.none}
    if cfg.augment not in choices:
        raise RecipeError(f"augment must be one of {tuple(choices)}, got {cfg.augment!r}")
    return choices[cfg.augment](size=cfg.size)


def _set_train_mode(classifier: VideoClassifier, cfg: ClassifyConfig) -> None:
    classifier.train()
    if cfg.protocol == "linear" and cfg.frozen_bn == "eval":
        classifier.backbone.eval()


def train_classifier(classifier: VideoClassifier, train_items: Sequence[VideoItem], cfg: ClassifyConfig, *,
                     preprocessing: Preprocessing | Mapping, device: torch.device, progress: bool = False,
                     log: Callable[[str], None] = print) -> list[dict]:
    """Train ``classifier`` on one random clip per video and epoch; returns the per-epoch history."""
    cfg = with_model_defaults(cfg, preprocessing)
    if len(train_items) < cfg.batch_size:
        raise RecipeError(f"{len(train_items)} training videos is fewer than batch_size={cfg.batch_size}")
    dataset = ClipClassificationDataset(train_items, frames=cfg.frames, stride=cfg.stride,
                                        augment=_augment_config(cfg), seed=cfg.seed, **_pixels(preprocessing))
    sampler = EpochShuffleSampler(len(dataset), cfg.seed)
    workers = min(cfg.workers, cpu_share())  # more would only thrash (and make PyTorch warn)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, num_workers=workers,
                        collate_fn=collate_labelled, drop_last=True, persistent_workers=workers > 0)
    params = [p for p in classifier.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * len(loader)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        (lambda s: 0.5 * (1 + math.cos(math.pi * s / steps))) if cfg.schedule == "cosine" else (lambda s: 1.0))
    classifier.to(device)
    history, bad_log = [], BadFileLog(log)
    for epoch in range(cfg.epochs):
        sampler.set_epoch(epoch)
        _set_train_mode(classifier, cfg)
        row = _train_epoch(classifier, loader, optimizer, schedule, device, bad_log,
                           desc=f"{cfg.protocol} {epoch + 1}/{cfg.epochs}", progress=progress)
        history.append({"epoch": epoch + 1, **row})
        log(f"{cfg.protocol} epoch {epoch + 1}: loss={row['loss']:.4f} train_clip_top1={row['train_clip_top1']:.3f}")
    return history


def _train_epoch(classifier, loader, optimizer, schedule, device, bad_log: BadFileLog, *, desc: str,
                 progress: bool) -> dict:
    total_loss, correct, seen, bad = 0.0, 0, 0, 0
    start = time.perf_counter()
    for batch in tqdm(loader, desc=desc, disable=None if progress else True, leave=False):  # None: terminals only
        bad += bad_log.report(batch["bad"])
        if batch["videos"] < 2:
            continue
        clips, labels = batch["clips"].to(device), batch["labels"].to(device)
        logits = classifier(clips)
        loss = F.cross_entropy(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        total_loss += float(loss.detach()) * len(labels)
        correct += int((logits.argmax(1) == labels).sum())
        seen += len(labels)
    return {"loss": total_loss / max(seen, 1), "train_clip_top1": correct / max(seen, 1), "bad_files": bad,
            "seconds": round(time.perf_counter() - start, 2)}


def _pixels(preprocessing: Preprocessing | Mapping) -> dict:
    """The datasets' pixel arguments: the channel order to decode in and the mean/std."""
    pre = Preprocessing.from_config(preprocessing)
    return {"channel_order": pre.channel_order, "mean": pre.mean, "std": pre.std}


@torch.no_grad()
def multi_clip_test(classifier: VideoClassifier, items: Sequence[VideoItem], cfg: ClassifyConfig, *,
                    preprocessing: Preprocessing | Mapping, device: torch.device, batch_size: int = 2,
                    progress: bool = False) -> dict:
    """Video-level (softmax averaged over ``cfg.test_clips`` clips) and clip-level top-1/top-5."""
    cfg = with_model_defaults(cfg, preprocessing)
    dataset = EvalClipsDataset(items, clips=cfg.test_clips, frames=cfg.frames, stride=cfg.stride, size=cfg.size,
                               crop_fraction=cfg.crop_fraction, crops=cfg.test_crops, **_pixels(preprocessing))
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=min(cfg.workers, 2, cpu_share()),
                        collate_fn=collate_eval)
    classifier.eval().to(device)
    video_probs, clip_probs, labels, bad = [], [], [], []
    for batch in tqdm(loader, desc="test", disable=None if progress else True, leave=False):
        bad += batch["bad"]
        if "clips" not in batch:
            continue
        clips = batch["clips"].to(device)  # [B, N, 3, T, H, W]
        probs = classifier(clips.flatten(0, 1)).softmax(-1).view(*clips.shape[:2], -1).float().cpu()
        clip_probs.append(probs.flatten(0, 1))
        video_probs.append(probs.mean(1))
        labels.append(batch["labels"])
    if not labels:
        raise ValueError("no test video could be decoded")
    video_labels = torch.cat(labels)
    clip_labels = video_labels.repeat_interleave(cfg.test_clips * cfg.test_crops)
    return {**topk_accuracy(torch.cat(video_probs), video_labels, prefix=""),
            **topk_accuracy(torch.cat(clip_probs), clip_labels, prefix="clip_"),
            "videos": int(video_labels.numel()), "bad_videos": len(bad)}


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, *, prefix: str = "", ks=(1, 5)) -> dict[str, float]:
    ranked = scores.topk(min(max(ks), scores.shape[1]), dim=1).indices
    hits = ranked == labels[:, None]
    return {f"{prefix}top{k}": hits[:, :k].any(1).float().mean().item() for k in ks}


__all__ = ["ClassifyConfig", "PROTOCOLS", "VideoClassifier", "build_classifier", "defaults_for", "multi_clip_test",
           "topk_accuracy", "train_classifier", "with_model_defaults"]
