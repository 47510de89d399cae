"""One TCLR pretraining step by hand, with the public API only.

    python examples/tclr_step.py [ARCH]      # default r3d_10_025 (small, CPU friendly)

Builds a model, makes the 10 clips per video that TCLR trains on (2 augmentations x (1 global + 4
local clips); random pixels here, see tclr_zoo.data for the real sampler), runs the fused forward
pass, the four losses, and one Adam step.
"""

import sys

import torch

from tclr_zoo import create_model
from tclr_zoo.losses import tclr_losses

arch = sys.argv[1] if len(sys.argv) > 1 else "r3d_10_025"
size = 112 if arch in ("r3d_18", "r2plus1d_18", "c3d") else 32
videos = 4

torch.manual_seed(0)
model = create_model(arch).train()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-9)
global_clips = torch.rand(2, videos, 3, 16, size, size)  # [augmentation, video, C, T, H, W]
local_clips = torch.rand(2, 4, videos, 3, 16, size, size)  # [augmentation, local clip, video, C, T, H, W]

embeddings = model.forward_pretrain(global_clips, local_clips)
losses = tclr_losses(**embeddings)
optimizer.zero_grad()
losses["total"].backward()
optimizer.step()

for name, value in embeddings.items():
    print(f"{name:15s} {tuple(value.shape)}")
print("  ".join(f"{k}={v.item():.3f}" for k, v in losses.items()))
