"""Published TCLR weights: timm-style ``arch.tag`` names -> Hub repositories, preprocessing, numbers.

The entries describe the authors' released checkpoints (spec §7) once converted with
``tclr-zoo convert`` and pushed to a Hub organisation. The organisation is configurable
(``TCLR_ZOO_HUB_ORG``, default ``tclr-zoo``) so a team can serve its own mirror; the repository
names are fixed. Numbers are the paper's (provenance "paper"); ``None`` where the paper's table was
not transcribed into this project (the recipes leave them null too) -- never a guess.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from typing import Any

from .registry import ModelNotFoundError, get_arch

DEFAULT_ORG = "tclr-zoo"
ORG_ENV = "TCLR_ZOO_HUB_ORG"

# The reference network sees OpenCV's BGR frames scaled to [0, 1] with no mean/std (spec §2, §6).
FAITHFUL_PREPROCESSING: dict[str, Any] = {
    "channel_order": "bgr", "value_range": [0.0, 1.0], "mean": None, "std": None, "size": 112,
    "crop_fraction": 0.8, "frames": 16, "eval_frame_stride": 2, "pretrain_frame_stride": 4,
    "eval_protocol": {"clips": 9, "pooling": "temporal", "similarity": "cosine"},
}


@dataclass(frozen=True)
class PretrainedSpec:
    name: str  # "arch.tag"
    repo: str  # repository name inside the organisation
    dataset: str
    description: str
    results: dict[str, Any] = field(default_factory=dict)
    # Whether the repository exists on the public Hub. None of them does yet: the authors' files
    # must be converted and pushed first (`tclr-zoo list --pretrained` says how).
    published: bool = False

    @property
    def arch(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def repo_id(self) -> str:
        return f"{os.environ.get(ORG_ENV) or DEFAULT_ORG}/{self.repo}"


_PRETRAINED = {
    spec.name: spec
    for spec in (
        PretrainedSpec("r3d_18.tclr_ucf101", "tclr-r3d18-ucf101", "UCF101 split 1 (train)",
                       "R3D-18 pretrained with TCLR on UCF101 (authors' release, converted)",
                       {"ucf101_finetune_top1": 82.4, "hmdb51_finetune_top1": 52.9, "ucf101_nn_r1": 56.2,
                        "provenance": "paper (Dave et al., arXiv 2101.07974)"}),
        PretrainedSpec("r3d_18.tclr_k400", "tclr-r3d18-k400", "Kinetics-400 (train)",
                       "R3D-18 pretrained with TCLR on Kinetics-400 (authors' release, converted)",
                       {"ucf101_finetune_top1": None, "hmdb51_finetune_top1": None,
                        "provenance": "paper table not transcribed here"}),
        PretrainedSpec("r2plus1d_18.tclr_k400", "tclr-r2plus1d18-k400", "Kinetics-400 (train)",
                       "R(2+1)D-18 pretrained with TCLR on Kinetics-400 (authors' release, converted)",
                       {"ucf101_finetune_top1": None, "hmdb51_finetune_top1": None,
                        "provenance": "paper table not transcribed here"}),
    )
}


def list_pretrained(pattern: str = "*") -> list[str]:
    """``arch.tag`` names with published weights matching a shell-style ``pattern``."""
    return sorted(name for name in _PRETRAINED if fnmatch.fnmatch(name, pattern))


def get_pretrained(name: str) -> PretrainedSpec:
    """The entry for ``arch.tag``, or for a bare ``arch`` its first (default) tag."""
    if name in _PRETRAINED:
        return _PRETRAINED[name]
    arch = name.split(".", 1)[0]
    get_arch(arch)  # unknown architecture -> ModelNotFoundError listing the known ones
    tags = [n for n in list_pretrained(f"{arch}.*")]
    if "." not in name and tags:
        return _PRETRAINED[tags[0]]
    known = ", ".join(tags) if tags else "none"
    raise ModelNotFoundError(f"no published weights named {name!r} (for {arch}: {known}); "
                             f"use load_model({arch!r}, pretrained=False) for a randomly initialised network, "
                             "or a hf-hub:ORG/REPO / local-dir:PATH name")
