"""The public ``create_model`` and ``list_models``, with the habits users bring from timm.

``tclr_zoo.create_model(name, pretrained=False, num_classes=None)`` gives a ``TCLRModel`` (an
``nn.Module``) as timm's does: ``name`` is an architecture or an ``arch.tag`` (the tag matters only
with ``pretrained=True``); ``pretrained=True`` loads the weights the name names -- any model name
``load_model`` takes, through the same resolver (``resolve.py``), so unpublished weights say so
without touching the network; ``num_classes=N`` gives a classifier whose ``forward`` returns logits
``[B, N]`` (a fresh linear layer on the pooled features; a loaded classifier of N classes is
kept). ``list_models(pretrained=True)`` lists the ``arch.tag`` names of released weights.

``tclr_zoo.load_model`` is the other door: the same names, but a ``VideoModel`` that decodes and
preprocesses videos the way the weights expect.
"""

from __future__ import annotations

import os
from typing import Any

from ..models import TCLRModel
from ..models.registry import ModelNotFoundError, get_arch
from ..models.registry import create_model as build_model
from ..models.registry import list_models as list_architectures
from .resolve import resolve_model


def create_model(name: str | os.PathLike, pretrained: bool = False, *, num_classes: int | None = None,
                 model_args: dict[str, Any] | None = None, head_dim: int = 128, bn_mode: str = "faithful",
                 **unknown: Any) -> TCLRModel:
    """A TCLR network, randomly initialised or with the weights ``name`` names.

    Args:
        name: an architecture (``r3d_18``) or ``arch.tag`` (``r3d_18.tclr_ucf101``); with
            ``pretrained=True`` also any name ``load_model`` takes (a saved folder, ``local-dir:``, a
            training checkpoint, ``hf-hub:ORG/REPO[@REV]``).
        pretrained: load the weights ``name`` names (a bare architecture name is refused, naming its
            weights); False: random weights for its architecture.
        num_classes: give the model a classifier with this many classes: ``forward`` then returns
            logits ``[B, num_classes]``. A fresh linear layer, unless the loaded weights already
            have a classifier of that size.
        model_args, head_dim, bn_mode: the architecture's arguments, the projection size and the
            BatchNorm mode of a random init (``models.registry.create_model``); loaded weights fix
            their own.
        **unknown: refused (a ``TypeError`` naming the right call), e.g. ``device=``, which is
            ``load_model``'s.

    Returns:
        The ``TCLRModel``: in training mode when randomly initialised, in eval mode when loaded.

    Raises:
        ModelNotFoundError: an unknown architecture or a name whose weights cannot be had (the
            message says how to fix it).
        TypeError: an argument this function does not take (the message names the right call).
    """
    if unknown:
        raise TypeError(f"create_model() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; it takes "
                        "name, pretrained, num_classes, model_args, head_dim and bn_mode (tclr_zoo.load_model loads a "
                        "model for inference, with device= and backend=)")
    if not pretrained:
        return build_model(_architecture(os.fspath(name)), model_args=model_args, head_dim=head_dim, bn_mode=bn_mode,
                           num_classes=num_classes)
    if model_args is not None:
        raise TypeError("create_model(..., pretrained=True) takes no model_args: "
                        "the loaded weights fix the architecture")
    model = resolve_model(name)[0]
    if num_classes and (model.classifier is None or model.classifier.out_features != num_classes):
        model.add_classifier(num_classes)
    return model


def list_models(pattern: str = "*", *, pretrained: bool = False) -> list[str]:
    """Registered names matching a shell-style ``pattern``, sorted.

    Args:
        pattern: e.g. ``"r3d_*"``.
        pretrained: list the ``arch.tag`` names of released weights instead of the architectures
            (as ``tclr_zoo.list_pretrained``; ``tclr-zoo list --pretrained`` says which are
            published yet).

    Returns:
        The names.
    """
    if not pretrained:
        return list_architectures(pattern)
    from ..models.pretrained import list_pretrained

    return list_pretrained(pattern if "." in pattern or pattern.endswith("*") else f"{pattern}.*")


def _architecture(name: str) -> str:
    """The architecture a registry name names (``arch.tag`` -> ``arch``); other names are refused:
    random weights are built from an architecture."""
    if ":" in name or "/" in name or os.sep in name:
        raise ModelNotFoundError(f"{name} names saved weights: create_model({name!r}, pretrained=True) loads them; "
                                 "random weights are built from an architecture name "
                                 f"({', '.join(list_architectures())})")
    arch = name.split(".", 1)[0]
    get_arch(arch)
    return arch


__all__ = ["create_model", "list_models"]
