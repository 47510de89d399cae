"""Backbones, heads, the TCLR wrapper, and the preprocessing the weights carry."""

from .c3d import C3D
from .grouped_bn import GroupedBatchNorm1d, GroupedBatchNorm3d, clip_groups, convert_to_grouped_bn
from .preprocessing import ClipTransform, Preprocessing, PreprocessingError
from .projection import ProjectionHead
from .resnet3d import TCLRVideoResNet, apply_tclr_layer4
from .tclr import TCLRModel

__all__ = [
    "C3D",
    "ClipTransform",
    "GroupedBatchNorm1d",
    "GroupedBatchNorm3d",
    "Preprocessing",
    "PreprocessingError",
    "ProjectionHead",
    "TCLRModel",
    "TCLRVideoResNet",
    "apply_tclr_layer4",
    "clip_groups",
    "convert_to_grouped_bn",
]
