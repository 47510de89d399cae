"""The model's output heads, written once for the SDK and for the exported graphs:
``video [B,3,T,H,W]`` float32 -> ONE named output per head.

| head         | output                | what                                                                  |
|--------------|-----------------------|-----------------------------------------------------------------------|
| ``backbone``   | ``[B, C]``            | backbone feature map averaged over time and space                    |
| ``retrieval``  | ``[B, C*T']``         | spatially pooled time-steps, flattened (channel-major), L2-normalised: |
|                |                       | the paper's nearest-neighbour retrieval feature                       |
| ``projection`` | ``[B, head_dim]``     | time-pooled feature through the projection head, L2-normalised       |
| ``logits``     | ``[B, classes]``      | the classifier's scores (models with a classifier only)              |

:func:`head_forward` computes a head; the SDK's torch backend calls it on the model itself and
:class:`ExportHead` (what is exported, built by :func:`build_head`) wraps it, so the SDK and the graph
compute the same thing by construction. :func:`check_head` and :func:`head_output_dim` say whether a
model has a head and how wide it is; :func:`fold_batchnorm` is the BatchNorm folding both use.

An ``ExportHead`` holds an eval-mode copy of the model. With ``fold_bn=True`` (what is exported) every
BatchNorm is folded into the Conv3d / Linear in front of it, so no exporter has to do it and no
``BatchNormalization`` node reaches the graph; with ``fold_bn=False`` the copy computes exactly what
the PyTorch model computes (the parity reference). Pooling is a plain ``mean`` over dims and L2
normalisation is ``x / max(||x||_2, eps)``: both export to TensorRT-friendly ops (``ReduceMean``,
``ReduceL2``, ``Clip``/``Max``, ``Div``) with constant axes.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from ..constants import HEADS
from .tclr import TCLRModel

EPS = 1e-12  # F.normalize's default


def l2_normalize(x: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """``F.normalize(x, dim=1)`` written with ops every exporter maps to plain ONNX reductions.

    Computed in float32 whatever ``x``'s dtype: in a float16 graph the sum of squares of a 2048-D
    feature can overflow float16 and ``eps`` would round to 0.
    """
    if x.dtype != torch.float32:
        x = x.float()
    norm = torch.linalg.vector_norm(x, ord=2, dim=1, keepdim=True)  # -> ReduceL2
    return x / torch.clamp_min(norm, eps)


class ExportHead(nn.Module):
    """``video [B,3,T,H,W]`` -> the ``head`` output of ``model`` (see the module docstring)."""

    def __init__(self, model: TCLRModel, head: str, *, fold_bn: bool = True) -> None:
        super().__init__()
        check_head(model, head)
        self.head_name = head
        model = copy.deepcopy(model).float().eval()
        if fold_bn:
            fold_batchnorm(model)
        self.backbone = model.backbone
        self.projection = model.projection
        self.classifier = model.classifier
        self.eval()

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return head_forward(self, self.head_name, video)


def head_forward(model: nn.Module, head: str, video: torch.Tensor) -> torch.Tensor:
    """The ``head`` output for ``video``, from anything with ``backbone``, ``projection`` and ``classifier``.

    One function for the exported graph (an ``ExportHead``) and the SDK's torch backend (the
    ``TCLRModel`` itself), so the two compute the same thing by construction.
    """
    feats = model.backbone(video)  # [B, C, T', h, w]
    if head == "backbone":
        return feats.mean(dim=(2, 3, 4))
    if head == "logits":
        return model.classifier(feats.mean(dim=(2, 3, 4)))  # dropout is the identity in eval mode
    temporal = feats.mean(dim=(3, 4))  # [B, C, T']
    if head == "retrieval":
        return l2_normalize(temporal.flatten(1))
    h = model.projection
    pooled = temporal.mean(dim=2)
    z = h.bn2(h.fc2(h.relu(h.bn1(h.fc1(pooled)))))  # ProjectionHead.forward without F.normalize
    return l2_normalize(z)


def check_head(model: TCLRModel, head: str) -> None:
    """Raise ``ValueError`` with what to do when ``head`` is unknown or ``model`` cannot produce it."""
    if head not in HEADS:
        raise ValueError(f"unknown export head {head!r}; choose one of {', '.join(HEADS)}")
    if head == "logits" and model.classifier is None:
        raise ValueError("head 'logits' needs a model with a classifier; fine-tune or linear-probe it first "
                         "(tclr-zoo eval --protocol linear/finetune --save DIR), or export another head")


def head_output_dim(model: TCLRModel, head: str, frames: int) -> int:
    """The size of the head's output vector for clips of ``frames`` frames."""
    check_head(model, head)
    if head == "backbone":
        return model.feature_dim
    if head == "retrieval":
        return model.feature_dim * (frames // model.temporal_downsampling)
    if head == "projection":
        return model.projection.out_dim
    return model.classifier.out_features


def build_head(model: TCLRModel, head: str, *, fold_bn: bool = True) -> ExportHead:
    return ExportHead(model, head, fold_bn=fold_bn)


@torch.no_grad()
def fold_batchnorm(module: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm that directly follows a Conv3d in a Sequential (or a nested
    Sequential ending in a Conv3d, as R(2+1)D's ``Conv2Plus1D``) or a Linear
    (the projection head's ``fc1 -> bn1``, ``fc2 -> bn2``) into it, in place; the BN becomes Identity.

    Raises ``ValueError`` if any BatchNorm is left unfolded, so a new architecture cannot slip one
    through silently.
    """
    for seq in [m for m in module.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        for first, second in zip(names, names[1:]):
            owner, key = seq, first
            while isinstance(owner._modules[key], nn.Sequential) and len(owner._modules[key]):
                owner = owner._modules[key]  # R(2+1)D: Conv2Plus1D is a Sequential ending in its Conv3d
                key = list(owner._modules)[-1]
            conv, bn = owner._modules[key], seq._modules[second]
            if isinstance(conv, nn.Conv3d) and isinstance(bn, nn.modules.batchnorm._BatchNorm):
                owner._modules[key] = fuse_conv_bn_eval(conv, bn)
                seq._modules[second] = nn.Identity()
    for parent in module.modules():
        for lin_name, bn_name in (("fc1", "bn1"), ("fc2", "bn2")):
            lin, bn = getattr(parent, lin_name, None), getattr(parent, bn_name, None)
            if isinstance(lin, nn.Linear) and isinstance(bn, nn.modules.batchnorm._BatchNorm):
                setattr(parent, lin_name, fuse_linear_bn_eval(lin, bn))
                setattr(parent, bn_name, nn.Identity())
    left = [name for name, m in module.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if left:
        raise ValueError(f"BatchNorm layers that follow no Conv3d/Linear could not be folded: {left[:5]}")
    return module


__all__ = ["EPS", "ExportHead", "build_head", "check_head", "fold_batchnorm", "head_forward", "head_output_dim",
           "l2_normalize"]
