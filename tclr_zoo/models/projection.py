"""The TCLR projection head: Linear -> BN -> ReLU -> Linear -> BN -> L2-normalise.

Submodule names (fc1, bn1, fc2, bn2) follow the reference ``mlp`` so that reference checkpoints map
onto it key for key.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ProjectionHead(nn.Module):
    """Maps a pooled backbone feature ``[N, in_dim]`` to an L2-normalised embedding ``[N, out_dim]``."""

    def __init__(self, in_dim: int = 512, hidden_dim: int | None = None, out_dim: int = 128) -> None:
        super().__init__()
        hidden_dim = hidden_dim or in_dim
        self.out_dim = out_dim
        self.fc1 = nn.Linear(in_dim, hidden_dim, bias=True)
        self.bn1 = nn.BatchNorm1d(hidden_dim)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(hidden_dim, out_dim, bias=False)
        self.bn2 = nn.BatchNorm1d(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.fc1(x)))
        return F.normalize(self.bn2(self.fc2(x)), p=2, dim=1)


__all__ = ["ProjectionHead"]
