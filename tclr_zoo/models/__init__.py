"""Backbones, heads and the TCLR wrapper."""

from .c3d import C3D
from .grouped_bn import GroupedBatchNorm1d, GroupedBatchNorm3d, clip_groups, convert_to_grouped_bn
from .heads import ProjectionHead
from .resnet3d import TCLRVideoResNet, apply_tclr_layer4
from .tclr import TCLRModel

__all__ = [
    "C3D",
    "GroupedBatchNorm1d",
    "GroupedBatchNorm3d",
    "ProjectionHead",
    "TCLRModel",
    "TCLRVideoResNet",
    "apply_tclr_layer4",
    "clip_groups",
    "convert_to_grouped_bn",
]
