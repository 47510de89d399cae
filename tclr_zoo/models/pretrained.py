"""Published TCLR weights: timm-style ``arch.tag`` names -> Hub repositories and published numbers.
(Their preprocessing is TCLR's, the defaults of :class:`~tclr_zoo.models.preprocessing.Preprocessing`.)

The entries describe the authors' released checkpoints (R3D-18 pretrained on UCF101 and on
Kinetics-400, R(2+1)D-18 on Kinetics-400) once converted with
``tclr-zoo convert`` and pushed to a Hub organisation. The organisation is configurable
(``TCLR_ZOO_HUB_ORG``, default ``tclr-zoo``) so a team can serve its own mirror; the repository
names are fixed. Which repositories exist is recorded here (``published``), so a name whose
weights are not published yet says so at once, without a round trip to the Hub; with
``TCLR_ZOO_HUB_ORG`` set, every name is looked up in that organisation. A bare architecture name
never stands for weights: it is refused with its tags named (``tclr_zoo.load_model("r3d_18")``),
so nothing is downloaded that the user did not name.

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
from .registry import ModelNotFoundError, get_arch, random_weights_hint

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
    def available(self) -> bool:
        """Whether loading the name may download it: the repository is published, or a team serves
        its own copies (:data:`ORG_ENV` set) -- checked before any network is touched."""
        return self.published or bool(os.environ.get(ORG_ENV))

    @property
    def repo_id(self) -> str:
        return f"{os.environ.get(ORG_ENV) or DEFAULT_ORG}/{self.repo}"

    @property
    def results(self) -> dict[str, float | None]:
        """The paper's numbers for these weights (``<dataset>_<metric>``: fraction, or None), from
        :data:`PAPER_RESULTS`."""
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
    """The entry for ``arch.tag``.

    Args:
        name: an ``arch.tag`` name (:func:`list_pretrained`).

    Returns:
        Its :class:`PretrainedSpec`.

    Raises:
        ModelNotFoundError: an unknown architecture or tag, or a bare architecture name (which never
            stands for weights: the message names its tags, and how to get random weights).
    """
    if name in _PRETRAINED:
        return _PRETRAINED[name]
    arch, dot, _ = name.partition(".")
    get_arch(arch)  # unknown architecture -> ModelNotFoundError listing the known ones
    tags = list_pretrained(f"{arch}.*")
    named = ", ".join(tags) + ("" if any(_PRETRAINED[t].available for t in tags) else " (not published yet)")
    if not dot:
        weights = f"its weights are named {named}" if tags else "no weights are published for it"
        raise ModelNotFoundError(f"{name}: an architecture name; {weights}", **random_weights_hint(arch))
    raise ModelNotFoundError(f"no published weights named {name!r} (for {arch}: {named if tags else 'none'})",
                             **random_weights_hint(arch))


def published_weights(name: str) -> PretrainedSpec:
    """The entry for ``arch.tag`` when its weights can be downloaded -- decided without the network.

    Args:
        name: an ``arch.tag`` name.

    Returns:
        Its :class:`PretrainedSpec` (:attr:`~PretrainedSpec.available`).

    Raises:
        ModelNotFoundError: as :func:`get_pretrained`, or the weights are not published yet (the
            message says how to publish them, and how to get random weights meanwhile).
    """
    spec = get_pretrained(name)
    if not spec.available:
        raise ModelNotFoundError(f"{name}: these weights are not published yet (there is no {spec.repo_id} on the Hub; "
                                 f"`tclr-zoo list --pretrained` says how to make it, and {ORG_ENV}=ORG loads it from "
                                 "your organisation)", **random_weights_hint(spec.arch))
    return spec


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
           "get_pretrained", "list_pretrained", "pretrained_specs", "published_reference", "published_weights"]
