"""The authors' learning-rate schedule (their reference code): per-epoch warm-up, then divide on a plateau.

Warm-up sets lr = base_lr * warmup[epoch] for the first epochs; afterwards the lr is multiplied by
``factor`` whenever the epoch's training loss has not improved for ``patience`` epochs
(torch's ReduceLROnPlateau, whose state is saved with the checkpoint so ``--resume`` continues it).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau


class WarmupPlateauSchedule:
    """Call ``start_epoch(e)`` before epoch ``e`` and ``end_epoch(loss)`` after it."""

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, warmup: Sequence[float],
                 patience: int, factor: float) -> None:
        self.optimizer = optimizer
        self.base_lr = base_lr
        self.warmup = list(warmup)
        self.plateau = ReduceLROnPlateau(optimizer, mode="min", factor=factor, patience=patience)
        self.epoch = 0

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if epoch < len(self.warmup):
            self._set_lr(self.base_lr * self.warmup[epoch])

    def end_epoch(self, train_loss: float) -> None:
        if self.epoch >= len(self.warmup) - 1:  # plateau tracking starts once the full lr is reached
            self.plateau.step(train_loss)

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def set_base_lr(self, base_lr: float) -> None:
        """A new base lr from now on (``--resume --set optim.lr=...``): the current lr is scaled by the
        same factor, so the warm-up step or the plateau reductions reached so far are kept."""
        if base_lr != self.base_lr:
            self._set_lr(self.lr * base_lr / self.base_lr)
            self.base_lr = base_lr

    def _set_lr(self, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "plateau": self.plateau.state_dict(), "base_lr": self.base_lr}

    def load_state_dict(self, state: dict) -> None:
        """Restore after the optimizer (whose state holds the lr reached); a base lr that differs from
        the saved one rescales that lr, as :meth:`set_base_lr` would have."""
        self.epoch = int(state["epoch"])
        self.plateau.load_state_dict(state["plateau"])
        saved = float(state.get("base_lr", self.base_lr))
        if saved != self.base_lr:
            self._set_lr(self.lr * self.base_lr / saved)


__all__ = ["WarmupPlateauSchedule"]
