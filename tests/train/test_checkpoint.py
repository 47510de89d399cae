"""Training checkpoints under Ctrl-C: the interruption stays an interruption, and the old file stays."""

from __future__ import annotations

import os

import pytest
import torch

from tclr_zoo.hub.checkpoint import load_checkpoint
from tclr_zoo.train.checkpoint import previous_path, save_checkpoint


class _InterruptedFile:
    """A real file whose writes are cut by Ctrl-C once ``limit`` bytes went through, as a SIGINT
    landing in the middle of ``torch.save`` would."""

    def __init__(self, file, limit: int) -> None:
        self._file, self._left = file, limit

    def write(self, data) -> int:
        self._left -= len(data)
        if self._left < 0:
            raise KeyboardInterrupt
        return self._file.write(data)

    def __getattr__(self, name):
        return getattr(self._file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()


def test_ctrl_c_in_the_middle_of_a_checkpoint_write_is_a_keyboard_interrupt_and_keeps_the_old_one(tmp_path,
                                                                                                monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"epoch": 0, "weights": torch.zeros(4096)})
    real_fdopen = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, *args, **kwargs: _InterruptedFile(real_fdopen(fd, *args, **kwargs),
                                                                                  limit=2000))
    # torch's zip writer, closed while the interrupt unwinds, would raise "RuntimeError: unexpected pos"
    # in its place: the CLI would then print a traceback instead of what the run kept
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"epoch": 1, "weights": torch.ones(4096)}, keep_previous=True)
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary file, nothing moved aside
    assert not previous_path(path).exists()
