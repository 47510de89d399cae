"""Architecture registry with timm-style names.

An architecture name maps to a backbone builder and its keyword arguments; the suffix ``_050`` /
``_025`` means a width multiplier of 0.5 / 0.25 and ``_10`` a ResNet with one block per stage (as in
timm's ``mobilenetv3_small_050``). The small variants make CPU runs practical. ``model_args`` saved
in a model's ``config.json`` are these keyword arguments, so any saved model can be rebuilt exactly.
"""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field
from typing import Any, Callable

from torch import nn

from ..constants import RANDOM_INIT_FLAG
from . import C3D, TCLRModel, TCLRVideoResNet
from .resnet3d import scaled_widths


class ModelNotFoundError(KeyError):
    """A model name that names no model to be had: an unknown architecture, weights that are not
    published, a folder that is not there.

    Args:
        message: what is wrong, naming the name.
        hint: how to fix it from Python, appended to ``message`` (e.g. ``pretrained=False``).
        cli_hint: the same fix for the command line, as ``(flag, text)``: the CLI shows ``message`` +
            ``text`` when the command has ``flag`` (e.g. ``--random-init``), else ``message`` alone.
    """

    def __init__(self, message: str, *, hint: str = "", cli_hint: tuple[str, str] | None = None) -> None:
        super().__init__(message + hint)
        self.reason = message
        self.cli_hint = cli_hint

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


@dataclass(frozen=True)
class ArchSpec:
    name: str
    builder: Callable[..., nn.Module]
    model_args: dict[str, Any] = field(default_factory=dict)
    description: str = ""


def _resnet(kind: str, width: float, depth: int) -> dict[str, Any]:
    depths = (2, 2, 2, 2) if depth == 18 else (1, 1, 1, 1)
    return {"kind": kind, "widths": list(scaled_widths(width)), "depths": list(depths)}


def _c3d(width: float, convs: tuple[int, ...]) -> dict[str, Any]:
    widths = [max(4, int(round(w * width))) for w in (64, 128, 256, 512, 512)]
    return {"widths": widths, "convs_per_stage": list(convs)}


_ARCHS: dict[str, ArchSpec] = {
    spec.name: spec
    for spec in (
        ArchSpec("r3d_18", TCLRVideoResNet, _resnet("r3d", 1.0, 18), "R3D-18 (torchvision) with TCLR layer4"),
        ArchSpec("r3d_18_050", TCLRVideoResNet, _resnet("r3d", 0.5, 18), "R3D-18 at half width"),
        ArchSpec("r3d_10_025", TCLRVideoResNet, _resnet("r3d", 0.25, 10), "R3D-10 at quarter width (CPU demo)"),
        ArchSpec("r2plus1d_18", TCLRVideoResNet, _resnet("r2plus1d", 1.0, 18), "R(2+1)D-18 with TCLR layer4"),
        ArchSpec("r2plus1d_10_025", TCLRVideoResNet, _resnet("r2plus1d", 0.25, 10), "R(2+1)D-10, quarter width"),
        ArchSpec("c3d", C3D, _c3d(1.0, (1, 1, 2, 2, 2)), "C3D with BatchNorm, 4-step temporal map"),
        ArchSpec("c3d_025", C3D, _c3d(0.25, (1, 1, 1, 1, 1)), "C3D, quarter width, one conv per stage"),
    )
}


def random_weights_hint(arch: str) -> dict[str, Any]:
    """The ``hint`` and ``cli_hint`` of a :class:`ModelNotFoundError` that say how to get ``arch`` with
    random weights: ``pretrained=False`` in Python, ``--random-init`` on the command line."""
    return {"hint": f"; pass pretrained=False for {arch} with random weights",
            "cli_hint": (RANDOM_INIT_FLAG, f"; add {RANDOM_INIT_FLAG} for random weights")}


def list_models(pattern: str = "*") -> list[str]:
    """Names of the registered architectures matching a shell-style ``pattern`` (sorted)."""
    return sorted(name for name in _ARCHS if fnmatch.fnmatch(name, pattern))


def get_arch(name: str) -> ArchSpec:
    try:
        return _ARCHS[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), list(_ARCHS), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        known = ", ".join(sorted(_ARCHS))
        raise ModelNotFoundError(f"unknown architecture {name!r}{hint}; available: {known}") from None


def resolve_model_args(arch: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The registered keyword arguments of ``arch`` with ``overrides`` applied (unknown keys refused)."""
    args = dict(get_arch(arch).model_args)
    for key, value in (overrides or {}).items():
        if key not in args:
            raise ValueError(f"{arch} has no model argument {key!r}; known: {', '.join(sorted(args))}")
        args[key] = value
    return args


def create_backbone(arch: str, model_args: dict[str, Any] | None = None) -> nn.Module:
    return get_arch(arch).builder(**resolve_model_args(arch, model_args))


def create_model(
    arch: str, *, model_args: dict[str, Any] | None = None, head_dim: int = 128, bn_mode: str = "faithful",
    num_classes: int | None = None,
) -> TCLRModel:
    """A randomly initialised TCLR model (backbone + projection head [+ classifier]) for ``arch``.

    The registry's builder, by exact architecture name; ``tclr_zoo.create_model`` (``hub.factory``)
    is the public one, which also takes ``arch.tag`` names and ``pretrained=True``.

    Args:
        arch: a registered architecture name (:func:`list_models`).
        model_args: overrides of the architecture's registered keyword arguments.
        head_dim: the projection head's output size.
        bn_mode: ``"faithful"`` (per-clip-group BatchNorm statistics, as the reference) or ``"shared"``.
        num_classes: add a linear classifier with this many classes; the model's ``forward`` then
            returns its logits.

    Returns:
        The :class:`TCLRModel`, in training mode (a fresh ``nn.Module``).
    """
    return TCLRModel(create_backbone(arch, model_args), head_dim=head_dim, bn_mode=bn_mode, num_classes=num_classes)


__all__ = ["ArchSpec", "ModelNotFoundError", "create_backbone", "create_model", "get_arch", "list_models",
           "random_weights_hint", "resolve_model_args"]
