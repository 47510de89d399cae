"""Durability: every writer fsyncs the new bytes before the rename that publishes them.

A rename is atomic, but only as durable as the data it points at: after a power cut, a file renamed
into place before its data reached the disk can come back empty or holding garbage, with the old
version already gone. So the order of the system calls is the contract. These tests record every
``os.fsync`` (resolved to the path its descriptor points at) and every ``os.replace`` while the real
writers run, and check that each published file -- and each file of a published folder -- was
fsynced before the rename that published it, and that the folder holding the rename was fsynced
after it (which makes the rename itself durable).

Nothing is mocked away: the recording wrappers call the real ``os.fsync`` and ``os.replace``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from tclr_zoo import atomic
from tclr_zoo.hub.checkpoint import load_checkpoint
from tclr_zoo.train.checkpoint import save_checkpoint


class SyscallLog:
    """The fsyncs (by path) and renames of the process, in order."""

    def __init__(self) -> None:
        self.events: list[tuple] = []

    def fsynced_before(self, path: Path, index: int) -> bool:
        return any(e[0] == "fsync" and e[1] == path for e in self.events[:index])

    def replaces(self) -> list[tuple[int, Path, Path]]:
        return [(i, e[1], e[2]) for i, e in enumerate(self.events) if e[0] == "replace"]

    def fsynced_after(self, path: Path, index: int) -> bool:
        return any(e[0] == "fsync" and e[1] == path for e in self.events[index + 1:])


@pytest.fixture
def syscalls(monkeypatch) -> SyscallLog:
    log = SyscallLog()
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        log.events.append(("fsync", Path(os.readlink(f"/proc/self/fd/{fd}")).resolve()))
        real_fsync(fd)

    def replace(src, dst, **kwargs) -> None:
        log.events.append(("replace", Path(src).resolve(), Path(dst).resolve()))
        real_replace(src, dst, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return log


def _publishing_replace(log: SyscallLog, target: Path) -> tuple[int, Path]:
    """The one rename that put ``target`` in place: (its position in the log, the path renamed)."""
    found = [(i, src) for i, src, dst in log.replaces() if dst == target.resolve()]
    assert len(found) == 1, f"expected one rename onto {target}, saw {log.replaces()}"
    return found[0]


def _check_file_published_durably(log: SyscallLog, target: Path) -> None:
    index, temp = _publishing_replace(log, target)
    assert temp != target.resolve() and temp.parent == target.resolve().parent
    assert log.fsynced_before(temp, index), f"{temp.name} was renamed onto {target.name} before it was fsynced"
    assert log.fsynced_after(target.resolve().parent, index), "the folder was not fsynced after the rename"


def test_atomic_write_fsyncs_the_temp_file_before_the_rename(tmp_path, syscalls):
    target = tmp_path / "results.json"
    target.write_text("old")
    atomic.atomic_write(target, lambda f: f.write(b"new"))
    assert target.read_bytes() == b"new"
    _check_file_published_durably(syscalls, target)


def test_save_safetensors_fsyncs_before_the_rename(tmp_path, syscalls):
    target = tmp_path / "unit.safetensors"
    atomic.save_safetensors({"rows": torch.arange(6.0).reshape(2, 3)}, target)
    _check_file_published_durably(syscalls, target)


def test_checkpoint_with_previous_fsyncs_before_both_renames(tmp_path, syscalls):
    target = tmp_path / "last.pt"
    save_checkpoint(target, {"epoch": 0})
    syscalls.events.clear()
    save_checkpoint(target, {"epoch": 1}, keep_previous=True)
    assert load_checkpoint(target)["epoch"] == 1
    assert load_checkpoint(tmp_path / "last.previous.pt")["epoch"] == 0
    _check_file_published_durably(syscalls, target)


def _check_folder_published_durably(log: SyscallLog, target: Path, expected_files: set[str]) -> None:
    index, staging = _publishing_replace(log, target)
    published = {str(p.relative_to(target)) for p in target.rglob("*") if p.is_file()}
    assert expected_files <= published
    for name in published:
        assert log.fsynced_before(staging / name, index), f"{name} was published before it was fsynced"
    for folder in {(staging / name).parent for name in published}:
        assert log.fsynced_before(folder, index), f"folder {folder.name} was published before it was fsynced"
    assert log.fsynced_after(target.resolve().parent, index), "the parent folder was not fsynced after the rename"


def test_staged_directory_fsyncs_every_file_and_folder_before_publishing(tmp_path, syscalls):
    target = tmp_path / "export"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with atomic.staged_directory(target) as staging:
        (staging / "model.onnx").write_bytes(b"graph")
        (staging / "onnx").mkdir()
        (staging / "onnx" / "report.json").write_text("{}")
    assert not (target / "old.txt").exists()
    _check_folder_published_durably(syscalls, target, {"model.onnx", "onnx/report.json"})


def test_a_saved_index_is_fsynced_before_it_is_published(tmp_path, syscalls):
    """A real staged-folder writer: ``VideoIndex.save``."""
    from tclr_zoo import VideoIndex

    index = VideoIndex(4, model_id="test-model")
    index.add(np.eye(4, dtype=np.float32)[:3], ["a", "b", "c"])
    target = tmp_path / "index"
    index.save(target)
    assert VideoIndex.load(target).ids == ["a", "b", "c"]
    _check_folder_published_durably(syscalls, target, {"manifest.json"})
