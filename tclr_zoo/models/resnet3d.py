"""R3D and R(2+1)D backbones built from torchvision's video ResNet builders, with TCLR's layer4.

TCLR keeps 4 time-steps at the end of the network: the first block of layer4 gets a
temporal stride of 1 and a temporal dilation of 2 instead of a temporal stride of 2. Parameter shapes
of R3D are unchanged, so state dicts stay interchangeable with torchvision's ``r3d_18``.

torchvision's ``VideoResNet`` hard-codes the widths 64..512; ``TCLRVideoResNet`` reuses its
``_make_layer`` builder and blocks with configurable widths and depths, so the full-size models have
exactly torchvision's module tree and the small variants (for CPU runs) are the same design scaled.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torchvision.models.video.resnet import BasicBlock, Conv2Plus1D, Conv3DSimple, VideoResNet

FULL_WIDTHS = (64, 128, 256, 512)


class TCLRVideoResNet(VideoResNet):
    """A torchvision VideoResNet returning the layer4 feature map ``[B, C, T/4, H/16, W/16]``."""

    def __init__(
        self,
        kind: str = "r3d",
        widths: Sequence[int] = FULL_WIDTHS,
        depths: Sequence[int] = (2, 2, 2, 2),
        tclr_layer4: bool = True,
    ) -> None:
        nn.Module.__init__(self)  # VideoResNet.__init__ fixes the widths; build the same tree ourselves
        if kind not in ("r3d", "r2plus1d"):
            raise ValueError(f"unknown video ResNet kind {kind!r}; expected 'r3d' or 'r2plus1d'")
        conv_maker = Conv3DSimple if kind == "r3d" else Conv2Plus1D
        self.kind = kind
        self.feature_dim = int(widths[3])
        # layer2 and layer3 halve time (and layer4 without TCLR's change)
        self.temporal_downsampling = 4 if tclr_layer4 else 8
        self.inplanes = int(widths[0])
        self.stem = _r3d_stem(widths[0]) if kind == "r3d" else _r2plus1d_stem(widths[0])
        self.layer1 = self._make_layer(BasicBlock, conv_maker, widths[0], depths[0], stride=1)
        self.layer2 = self._make_layer(BasicBlock, conv_maker, widths[1], depths[1], stride=2)
        self.layer3 = self._make_layer(BasicBlock, conv_maker, widths[2], depths[2], stride=2)
        self.layer4 = self._make_layer(BasicBlock, conv_maker, widths[3], depths[3], stride=2)
        if tclr_layer4:
            apply_tclr_layer4(self)
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)


def apply_tclr_layer4(net: VideoResNet) -> None:
    """Replace layer4[0]'s temporal stride 2 by stride 1 + dilation 2, in place, as the authors' code does.

    For R(2+1)D the first (2+1)D conv becomes one full dilated 3x3x3 Conv3d, as in the reference.
    """
    block = net.layer4[0]
    in_ch = block.downsample[0].in_channels
    out_ch = block.downsample[0].out_channels
    block.conv1[0] = nn.Conv3d(
        in_ch, out_ch, kernel_size=3, stride=(1, 2, 2), padding=(2, 1, 1), dilation=(2, 1, 1), bias=False
    )
    block.downsample[0] = nn.Conv3d(in_ch, out_ch, kernel_size=1, stride=(1, 2, 2), bias=False)


def _r3d_stem(width: int) -> nn.Sequential:
    """torchvision's BasicStem with a configurable width."""
    return nn.Sequential(
        nn.Conv3d(3, width, kernel_size=(3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
        nn.BatchNorm3d(width),
        nn.ReLU(inplace=True),
    )


def _r2plus1d_stem(width: int) -> nn.Sequential:
    """torchvision's R2Plus1dStem (45 mid channels at width 64) with a configurable width."""
    mid = max(1, round(45 * width / 64))
    return nn.Sequential(
        nn.Conv3d(3, mid, kernel_size=(1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False),
        nn.BatchNorm3d(mid),
        nn.ReLU(inplace=True),
        nn.Conv3d(mid, width, kernel_size=(3, 1, 1), stride=(1, 1, 1), padding=(1, 0, 0), bias=False),
        nn.BatchNorm3d(width),
        nn.ReLU(inplace=True),
    )


def _init_weights(net: nn.Module) -> None:
    """torchvision VideoResNet's initialisation (Kaiming fan-out for convs, BN at identity)."""
    for m in net.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def scaled_widths(width_multiplier: float) -> tuple[int, ...]:
    """Widths of the four stages scaled by ``width_multiplier`` (at least 4 channels each)."""
    return tuple(max(4, int(round(w * width_multiplier))) for w in FULL_WIDTHS)


__all__ = ["FULL_WIDTHS", "TCLRVideoResNet", "apply_tclr_layer4", "scaled_widths"]
