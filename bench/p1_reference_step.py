"""P1's side B: a reference-style TCLR training step, written from the method's description (not from the
authors' code).

The network of side A (``bench.p1_train_step``: the training loop's own step), deep-copied, called
once per clip group (2 global + 8 local backbone calls; the head once per pooled clip and once per
global time-step, 18 calls), so BatchNorm sees each group alone; the losses as the reference code
computes them, with Python loops over clip pairs (IC local: 56 NT-Xent calls) and over the videos of the batch
(LL); then backward and Adam. fp32, contiguous tensors (or, for one CUDA row, the reference's own
fp16 autocast + GradScaler).
"""

from __future__ import annotations

import contextlib
import functools
from typing import Callable

import torch
import torch.nn.functional as F

from tclr_zoo.losses import LOSS_KEYS
from tclr_zoo.train.config import Recipe

TAU = 0.1


def reference_step(model, recipe: Recipe, batch: dict, device: torch.device,
                   amp: str = "none") -> tuple[torch.optim.Optimizer, Callable[[], dict[str, float]]]:
    """Adam on ``model`` and the callable that runs one reference-style step on ``batch`` and returns
    the loss values (fp32; ``amp="fp16"``: fp16 autocast + GradScaler, CUDA only)."""
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=recipe.optim.lr, weight_decay=recipe.optim.weight_decay)
    global_clips, local_clips = batch["global"].to(device), batch["local"].to(device)
    scaler = torch.amp.GradScaler(device.type) if amp == "fp16" else None

    def step() -> dict[str, float]:
        with torch.autocast(device.type, dtype=torch.float16) if scaler else contextlib.nullcontext():
            gz, gsz, lz = reference_forward(model, global_clips, local_clips)
        losses = reference_losses(gz, gsz, lz, recipe.train.temperature)
        values = dict(zip(LOSS_KEYS, torch.stack([losses[k].detach() for k in LOSS_KEYS]).tolist()))
        optimizer.zero_grad(set_to_none=True)
        if scaler:
            scaler.scale(losses["total"]).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            losses["total"].backward()
            optimizer.step()
        return values

    return optimizer, step


def reference_forward(model, global_clips: torch.Tensor, local_clips: torch.Tensor):
    """The TCLR network as the reference runs it: one backbone call per clip group, one head call per input.

    Returns per augmentation: ``gz[u]`` [B,D], ``gsz[u]`` [B,K,D] (time-step embeddings) and
    ``lz[u]`` [B,K,D] (pooled local-clip embeddings). The model's grouped BatchNorm layers are left
    at one group, where they are plain ``nn.BatchNorm``: each call normalises over its own clips.
    """
    backbone, head = model.backbone, model.projection
    num_local = local_clips.shape[1]
    gz, gsz, lz = [], [], []
    for u in range(2):  # the global ("sparse") clip of each augmentation
        feats = backbone(global_clips[u]).mean(dim=(3, 4))  # [B, C, K] temporal feature map
        gz.append(head(feats.mean(dim=2)))
        gsz.append(torch.stack([head(feats[:, :, i]) for i in range(feats.shape[2])], dim=1))
    for u in range(2):  # the K local ("dense") clips of each augmentation
        pooled = [backbone(local_clips[u, k]).mean(dim=(2, 3, 4)) for k in range(num_local)]
        lz.append(torch.stack([head(p) for p in pooled], dim=1))
    return gz, gsz, lz


@functools.lru_cache(maxsize=None)
def _negatives_mask(n: int, device: str) -> torch.Tensor:
    """[2N, 2N] True where column c is a negative of row r (neither r itself nor its partner)."""
    eye = torch.eye(2 * n, dtype=torch.bool, device=device)
    return ~(eye | eye.roll(n, dims=1))


def reference_nt_xent(a: torch.Tensor, b: torch.Tensor, tau: float = TAU) -> torch.Tensor:
    """NT-Xent as TCLR uses it: rows [b; a]; positive = partner in the other view; CE summed / 2N."""
    n = a.shape[0]
    z = torch.cat([b, a], dim=0).float()
    sim = z @ z.t() / tau
    positives = torch.cat([torch.diagonal(sim, n), torch.diagonal(sim, -n)])[:, None]
    negatives = sim[_negatives_mask(n, str(sim.device))].view(2 * n, 2 * n - 2)
    logits = torch.cat([positives, negatives], dim=1)
    labels = torch.zeros(2 * n, dtype=torch.long, device=sim.device)
    return F.cross_entropy(logits, labels, reduction="sum") / (2 * n)


def reference_losses(gz, gsz, lz, tau: float = TAU) -> dict[str, torch.Tensor]:
    """The four TCLR losses with the reference's loops: over (u, v, k, l) pairs for IC local, over videos for LL."""
    videos, num_local = lz[0].shape[0], lz[0].shape[1]
    ic_global = reference_nt_xent(gz[0], gz[1], tau)
    ic_local = 0.0
    for u in range(2):
        for v in range(2):
            for k in range(num_local):
                for l in range(num_local):
                    if u == v and k == l:
                        continue
                    ic_local = ic_local + reference_nt_xent(lz[u][:, k], lz[v][:, l], tau)
    ic_local = ic_local / 4
    local_local = 0.0
    for b in range(videos):  # summed over the batch, as the reference does
        local_local = local_local + reference_nt_xent(lz[0][b], lz[1][b], tau)
    global_local = 0.0
    labels = torch.arange(2 * videos * num_local, device=lz[0].device) % num_local
    for u in range(2):
        for v in range(2):
            s = torch.bmm(gsz[u].float(), lz[v].float().transpose(1, 2))  # [B, K, K]
            logits = torch.cat([s, s.transpose(1, 2)], dim=0).reshape(2 * videos * num_local, num_local) / tau
            global_local = global_local + F.cross_entropy(logits, labels, reduction="sum") / (2 * videos)
    total = ic_global + ic_local + local_local + global_local
    return {"ic_global": ic_global, "ic_local": ic_local, "local_local": local_local,
            "global_local": global_local, "total": total}
