"""Feeding the training step: batches from the loader to the device, ready, one step ahead on CUDA.

``DeviceFeed`` wraps the pretraining DataLoader. For every batch it runs ``prepare`` (the copy to the
device, ``non_blocking`` from the loader's pinned memory, and with ``data.augment_on=device`` the
batched augmentation, ``data.datasets.augment_pretrain_batch``). On CUDA it does that on a side
stream for batch i+1 before handing out batch i, so the copy and the augmentation of the next batch
overlap the current step's kernels; the step's stream waits for the side stream before it uses a
batch. On CPU there is nothing to overlap: each batch is prepared when it is handed out, in order,
exactly as the loop did before (the same tensors, so a resumed CPU run keeps its losses).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch


class DeviceFeed:
    """Iterate ``loader``'s batches through ``prepare`` (see the module docstring); ``len`` is the loader's."""

    def __init__(self, loader: Iterable, device: torch.device, prepare: Callable[[dict], dict]) -> None:
        self.loader, self.device, self.prepare = loader, torch.device(device), prepare

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[dict]:
        if self.device.type != "cuda":
            for batch in self.loader:
                yield self.prepare(batch)
            return
        yield from self._prefetching()

    def _prefetching(self) -> Iterator[dict]:
        stream = torch.cuda.Stream(self.device)
        batches = iter(self.loader)

        def load() -> dict | None:
            batch = next(batches, None)
            if batch is None:
                return None
            with torch.cuda.stream(stream):
                return self.prepare(batch)

        upcoming = load()
        while upcoming is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_stream(stream)
            for value in upcoming.values():  # memory made on the side stream, now used on this one
                if isinstance(value, torch.Tensor) and value.is_cuda:
                    value.record_stream(current)
            batch, upcoming = upcoming, load()
            yield batch


def to_device(batch: dict, device: torch.device) -> dict:
    """The batch's clip tensors on ``device`` (``non_blocking``: the loader pins them on CUDA)."""
    return {k: v.to(device, non_blocking=True) if k in ("global", "local") and isinstance(v, torch.Tensor) else v
            for k, v in batch.items()}


__all__ = ["DeviceFeed", "to_device"]
