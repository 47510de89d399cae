"""Published TCLR weights: timm-style ``arch.tag`` names -> Hub repositories and published numbers.
(Their preprocessing is TCLR's, the defaults of :class:`~tclr_zoo.models.preprocessing.Preprocessing`.)

The entries describe the authors' released checkpoints (R3D-18 pretrained on UCF101 and on
Kinetics-400, R(2+1)D-18 on Kinetics-400) once converted with
``tclr-zoo convert`` and pushed to a Hub organisation. The organisation is configurable
(``TCLR_ZOO_HUB_ORG``, default ``tclr-zoo``) so a team can serve its own mirror; the repository
names are fixed.

:data:`PAPER_RESULTS` is the one home of the published numbers of TCLR-pretrained networks, as
fractions of 1 like every other number in tclr-zoo; the recipes' ``reference: {published: arch.tag}``
and the model cards of released weights read them from there. ``None`` where the paper's table was
not transcribed into this project -- never a guess.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass

from ..constants import HF_PREFIX
from .registry import ModelNotFoundError, get_arch

DEFAULT_ORG = "tclr-zoo"
ORG_ENV = "TCLR_ZOO_HUB_ORG"

#: Published numbers of TCLR-pretrained networks (``arch.tag``; an entry needs no released weights),
#: as fractions of 1, keyed ``<source>_<dataset>_<metric>``: ``paper`` (Dave et al., arXiv 2101.07974),
#: ``repo_readme`` (the DAVEISHAN/TCLR README), ``reference`` (the reference code's own
#: linear evaluation). ``None``: the paper reports it, but it is not transcribed here yet.
PAPER_RESULTS: dict[str, dict[str, float | None]] = {
    "r3d_18.tclr_ucf101": {
        "paper_ucf101_knn_r1": 0.562,  # NN retrieval R@1, R3D-18 pretrained on UCF101
        "repo_readme_ucf101_knn_r1": 0.561,
        "paper_ucf101_finetune_top1": 0.824,
        "paper_hmdb51_finetune_top1": 0.529,
        "reference_linear_eval_ucf101_top1": 0.699,
    },
    **{name: {"paper_ucf101_finetune_top1": None, "paper_hmdb51_finetune_top1": None}
       for name in ("r3d_18.tclr_k400", "r2plus1d_18.tclr_k400", "r2plus1d_18.tclr_ucf101", "c3d.tclr_ucf101")},
}
PAPER_PREFIX = "paper_"


@dataclass(frozen=True)
class PretrainedSpec:
    name: str  # "arch.tag"
    repo: str  # repository name inside the organisation
    dataset: str
    description: str
    # Whether the repository exists on the public Hub. None of them does yet: the authors' files
    # must be converted and pushed first (`tclr-zoo list --pretrained` says how).
    published: bool = False

    @property
    def arch(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def repo_id(self) -> str:
        return f"{os.environ.get(ORG_ENV) or DEFAULT_ORG}/{self.repo}"

    @property
    def results(self) -> dict[str, float | None]:
        """The paper's numbers for these weights (``<dataset>_<metric>``: fraction, or None), from :data:`PAPER_RESULTS`."""
        return {key[len(PAPER_PREFIX):]: value for key, value in PAPER_RESULTS.get(self.name, {}).items()
                if key.startswith(PAPER_PREFIX)}


_PRETRAINED = {
    spec.name: spec
    for spec in (
        PretrainedSpec("r3d_18.tclr_ucf101", "tclr-r3d18-ucf101", "UCF101 split 1 (train)",
                       "R3D-18 pretrained with TCLR on UCF101 (authors' release, converted)"),
        PretrainedSpec("r3d_18.tclr_k400", "tclr-r3d18-k400", "Kinetics-400 (train)",
                       "R3D-18 pretrained with TCLR on Kinetics-400 (authors' release, converted)"),
        PretrainedSpec("r2plus1d_18.tclr_k400", "tclr-r2plus1d18-k400", "Kinetics-400 (train)",
                       "R(2+1)D-18 pretrained with TCLR on Kinetics-400 (authors' release, converted)"),
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


def pretrained_specs() -> list[PretrainedSpec]:
    """Every released-weights entry, in table order."""
    return list(_PRETRAINED.values())


def find_pretrained(model_id: str, *, by_repo: bool = False) -> PretrainedSpec | None:
    """The entry named by ``model_id`` (``arch.tag``, optionally ``hf-hub:``-prefixed and ``@revision``-suffixed),
    or None. ``by_repo``: also match an ``ORG/REPO`` id by its repository name (any organisation).

    Args:
        model_id: a registry or Hub name.
        by_repo: whether a repository name identifies an entry (for converted weights only, so a
            user's own upload under a similar name is never taken for the authors' release).

    Returns:
        The :class:`PretrainedSpec`, or None when no entry matches.
    """
    name = model_id.removeprefix(HF_PREFIX).split("@", 1)[0]
    for spec in _PRETRAINED.values():
        if name == spec.name or (by_repo and name.split("/")[-1] == spec.repo):
            return spec
    return None


def published_reference(name: str) -> dict[str, float | None]:
    """A copy of the :data:`PAPER_RESULTS` row ``name`` (KeyError naming the known rows if absent)."""
    if name not in PAPER_RESULTS:
        raise KeyError(f"no published results for {name!r}; known: {', '.join(PAPER_RESULTS)}")
    return dict(PAPER_RESULTS[name])


__all__ = ["DEFAULT_ORG", "ORG_ENV", "PAPER_RESULTS", "PretrainedSpec", "find_pretrained",
           "get_pretrained", "list_pretrained", "pretrained_specs", "published_reference"]
