"""C3D backbone (Tran et al. 2015) with BatchNorm, ending in a 4-step temporal map at T=16.

The paper reports TCLR with C3D but the authors released no C3D code. Classic C3D pools time by 2 in
pool2..pool5 (16 -> 1 time-step); TCLR's global-local loss needs the time-steps of the global clip
to line up with its 4 local clips, so here only pool2 and pool3 pool time (16 -> 4) and the last two
stages keep 4 time-steps, mirroring the R3D layer4 change. BatchNorm follows every convolution, as in
the C3D variants used by video SSL papers, and there is no fully connected part: the output is the
conv5 feature map ``[B, C, T/4, H/16, W/16]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

FULL_WIDTHS = (64, 128, 256, 512, 512)
# Max-pool kernel/stride after each stage: stage 1 spatial only, stages 2-3 time and space, stage 4
# spatial only, stage 5 none.
_POOLS = ((1, 2, 2), (2, 2, 2), (2, 2, 2), (1, 2, 2), None)


class C3D(nn.Module):
    """C3D with BatchNorm; ``convs_per_stage`` lets small CPU variants drop the doubled convs."""

    def __init__(
        self,
        widths: Sequence[int] = FULL_WIDTHS,
        convs_per_stage: Sequence[int] = (1, 1, 2, 2, 2),
    ) -> None:
        super().__init__()
        if len(widths) != 5 or len(convs_per_stage) != 5:
            raise ValueError("C3D needs 5 widths and 5 conv counts (one per stage)")
        self.feature_dim = int(widths[-1])
        self.temporal_downsampling = 4  # 16 frames -> 4 time-steps
        stages = []
        in_ch = 3
        for width, convs, pool in zip(widths, convs_per_stage, _POOLS):
            stages.append(_stage(in_ch, int(width), int(convs), pool))
            in_ch = int(width)
        self.stages = nn.Sequential(*stages)
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x)


def _stage(in_ch: int, out_ch: int, convs: int, pool: tuple[int, int, int] | None) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(convs):
        layers += [
            nn.Conv3d(in_ch if i == 0 else out_ch, out_ch, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm3d(out_ch),
            nn.ReLU(inplace=True),
        ]
    if pool is not None:
        layers.append(nn.MaxPool3d(kernel_size=pool, stride=pool))
    return nn.Sequential(*layers)


__all__ = ["C3D", "FULL_WIDTHS"]
