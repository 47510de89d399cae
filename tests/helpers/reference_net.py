"""Test helper: the TCLR reference network and checkpoint files in the authors' format.

Built from the method's description and torchvision alone (not from tclr_zoo), so the converter is checked against
an independent reading of the reference. Checkpoints are saved as the reference training script
saves them: ``torch.save`` of a dict with the epoch, state dict, optimizer state, learning rate and
the pickled ``torch.cuda.amp.GradScaler`` object itself.
"""

from __future__ import annotations

import contextlib
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import video


class Mlp(nn.Module):
    """The reference projection head (``mlp``), for 'd'-type (time-pooled) inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(512, 512, bias=True)
        self.bn1 = nn.BatchNorm1d(512)
        self.bn2 = nn.BatchNorm1d(128)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(512, 128, bias=False)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:  # [B, 512, T] -> [B, 128]
        x = self.relu(self.bn1(self.fc1(feats.mean(dim=2))))
        return F.normalize(self.bn2(self.fc2(x)), p=2, dim=1)


class Backbone(nn.Module):
    """torchvision's network with TCLR's layer4[0] and the reference's spatial-only pooling, no fc."""

    def __init__(self, arch: str) -> None:
        super().__init__()
        net = getattr(video, arch)(weights=None)
        block = net.layer4[0]
        block.conv1[0] = nn.Conv3d(256, 512, kernel_size=(3, 3, 3), stride=(1, 2, 2), padding=(2, 1, 1),
                                   dilation=(2, 1, 1), bias=False)
        block.downsample[0] = nn.Conv3d(256, 512, kernel_size=(1, 1, 1), stride=(1, 2, 2), bias=False)
        self.stem, self.layer1, self.layer2 = net.stem, net.layer1, net.layer2
        self.layer3, self.layer4 = net.layer3, net.layer4

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, 3, T, H, W] -> [B, 512, T/4]
        x = self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))
        return x.mean(dim=(3, 4))


def build(arch: str, seed: int = 0) -> nn.Sequential:
    """``Sequential(backbone, head)`` with seeded weights and non-trivial BatchNorm statistics."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = nn.Sequential(Backbone(arch), Mlp())
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.data.uniform_(0.8, 1.2)
                m.bias.data.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.7, 1.3)
                m.num_batches_tracked.fill_(1234)
            elif isinstance(m, nn.Linear) and m.bias is not None:
                m.bias.data.normal_(0, 0.1)
    return net.eval()


def outputs(net: nn.Sequential, clips: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Backbone features ``[B, 512, 4]`` and the head's embedding ``[B, 128]``."""
    with torch.no_grad():
        feats = net[0](clips)
        return feats, net[1](feats)


def trained_grad_scaler() -> torch.cuda.amp.GradScaler:
    """A ``torch.cuda.amp.GradScaler`` in the state a GPU training run pickles.

    Without CUDA the scaler disables itself; give it what an enabled one holds between steps (a
    current scale, a growth tracker, an empty per-optimizer defaultdict).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scaler = torch.cuda.amp.GradScaler()
    scaler.__dict__.update(
        _enabled=True, _init_scale=2.0**16, _scale=torch.tensor(1024.0), _growth_factor=2.0, _backoff_factor=0.5,
        _growth_interval=2000, _init_growth_tracker=0, _growth_tracker=torch.tensor(17, dtype=torch.int32),
        _per_optimizer_states=defaultdict(torch.amp.grad_scaler._refresh_per_optimizer_state),
    )
    return scaler


@contextlib.contextmanager
def torch19_pickle_names():
    """Pickle GradScaler's defaultdict factory under its torch 1.9 name, as the released files have it."""
    import torch.cuda.amp.grad_scaler as legacy

    factory = torch.amp.grad_scaler._refresh_per_optimizer_state
    module = factory.__module__
    legacy._refresh_per_optimizer_state, factory.__module__ = factory, legacy.__name__
    try:
        yield
    finally:
        factory.__module__ = module
        del legacy._refresh_per_optimizer_state


def save_checkpoint(path: Path, net: nn.Module | dict, *, epoch: int = 247, key: str = "state_dict",
                    data_parallel: bool = True, optimizer_step: bool = False, best_score: bool = False,
                    torch19_names: bool = False) -> Path:
    """Write ``net`` (or a ready state dict) as the reference training script does.

    ``data_parallel`` adds ``module.`` as ``nn.DataParallel`` does; ``optimizer_step`` saves Adam
    state after one step (else the state dict of a fresh Adam: param groups only, a small file);
    ``best_score`` adds the numpy float64 and scheduler counter that ``model_temp.pth`` carries.
    """
    if isinstance(net, dict):
        params = [v for v in net.values() if v.is_floating_point()]
        state = {("module." if data_parallel else "") + k: v for k, v in net.items()}
    else:  # an OrderedDict with _metadata, as model.state_dict() gives
        params = list(net.parameters())
        state = (nn.DataParallel(net) if data_parallel else net).state_dict()
    optimizer = torch.optim.Adam([p.detach().clone().requires_grad_() for p in params], lr=1e-3, weight_decay=1e-9)
    if optimizer_step:
        for p in optimizer.param_groups[0]["params"]:
            p.grad = torch.full_like(p, 1e-3)
        optimizer.step()
    checkpoint = {"epoch": epoch, key: state, "optimizer": optimizer.state_dict(), "learning_rate": 1e-4,
                  "amp_scaler": trained_grad_scaler()}
    if best_score:
        checkpoint.update(best_score=np.mean([1.25, 1.5]), scheduler_epoch=3)
    with torch19_pickle_names() if torch19_names else contextlib.nullcontext():
        torch.save(checkpoint, path)
    return path
