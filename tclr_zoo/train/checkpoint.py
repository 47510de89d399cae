"""Training checkpoints: written atomically, checksummed, loaded without executing pickled code.

A checkpoint holds only tensors, numbers, strings, lists and dicts, so it is read with
``weights_only=True`` (no pickled code can run). Writing goes to a temporary file in the same folder,
is flushed and fsync'ed, then renamed over the target: a crash leaves either the old or the new
file, never half. The state is stored serialised inside an envelope with its SHA-256, checked on
load, so a file damaged after it was written (a bad disk, a copy cut short) is refused instead of
resuming a run from garbage. ``save_checkpoint(..., keep_previous=True)`` keeps the file it replaces
as ``NAME.previous.pt``: ``resume_candidates`` then offers it when the newest one is unusable.

Fault injection for the crash tests: ``TCLR_ZOO_TEST_SLOW_WRITE=SECONDS`` sleeps after a file's
bytes are written (before it is renamed into place) and, with ``keep_previous``, again between moving
the old checkpoint aside and renaming the new one in, so a test can SIGKILL the process at both points.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_write, fault_injection_pause

FORMAT = "tclr_zoo.checkpoint/2"  # {"format", "sha256", "payload": uint8 tensor of torch.save(state)}
UNCHECKED_FORMAT = "tclr_zoo.checkpoint/1"  # earlier files: the state itself, no checksum (still read)


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable or not one of ours."""


def previous_path(path: str | os.PathLike) -> Path:
    """Where ``save_checkpoint(path, keep_previous=True)`` keeps the file it replaced."""
    path = Path(path)
    return path.with_name(f"{path.stem}.previous{path.suffix}")


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any], *, keep_previous: bool = False) -> None:
    """Write ``state`` atomically with its SHA-256; with ``keep_previous`` the replaced file is kept
    as ``previous_path(path)`` (renamed, so at every instant one complete checkpoint exists)."""
    buffer = io.BytesIO()
    _save_interruptibly(state, buffer)
    payload = buffer.getbuffer()
    envelope = {"format": FORMAT, "sha256": hashlib.sha256(payload).hexdigest(),
                "payload": torch.frombuffer(payload, dtype=torch.uint8)}
    path = Path(path)

    def keep() -> None:
        if path.exists():
            os.replace(path, previous_path(path))
            fault_injection_pause()  # the crash tests' second kill point: between the two renames

    atomic_write(path, lambda f: _save_interruptibly(envelope, f), before_replace=keep if keep_previous else None)


def _save_interruptibly(obj: Any, file) -> None:
    """``torch.save``, except that a Ctrl-C in the middle stays a ``KeyboardInterrupt``: torch's zip
    writer, closed while unwinding, otherwise replaces it by ``RuntimeError: ... unexpected pos``, and
    the user would see a traceback where a stopped run should say what it kept."""
    try:
        torch.save(obj, file)
    except RuntimeError as err:
        if isinstance(err.__context__, KeyboardInterrupt):
            raise err.__context__ from None
        raise


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The state saved by :func:`save_checkpoint`, after checking its SHA-256; ``CheckpointError``
    names the file and the problem (missing, not ours, damaged, or holding code to execute)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    envelope = _load_tensors_only(path, path)
    if not isinstance(envelope, dict) or envelope.get("format") not in (FORMAT, UNCHECKED_FORMAT):
        raise CheckpointError(f"{path}: not a tclr_zoo training checkpoint")
    if envelope["format"] == UNCHECKED_FORMAT:
        return envelope
    payload = envelope.get("payload")
    if not isinstance(payload, torch.Tensor) or payload.dtype != torch.uint8:
        raise CheckpointError(f"{path}: damaged checkpoint (no payload)")
    data = payload.numpy().tobytes()
    if hashlib.sha256(data).hexdigest() != envelope.get("sha256"):
        raise CheckpointError(f"{path}: damaged checkpoint (SHA-256 of its contents does not match the one "
                              "recorded when it was written)")
    state = _load_tensors_only(io.BytesIO(data), path)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a tclr_zoo training checkpoint")
    return state


def _load_tensors_only(source, path: Path) -> Any:
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure here means "not a usable checkpoint"
        message = str(err)
        refused = re.search(r"GLOBAL ([\w.]+)", message) or re.search(r"Unsupported global: ([\w.]+)", message)
        if refused:
            raise CheckpointError(f"{path}: refused: the file holds a pickled object ({refused.group(1)}) that would "
                                  "run code when loaded; training checkpoints hold only tensors and plain data") from None
        # torch wraps the unpickler's own complaint in paragraphs of advice: keep the complaint.
        lines = [line.strip() for line in message.splitlines() if line.strip()]
        advice = ("Weights only load failed", "Please file an issue", "Check the documentation")
        first = next((line for line in lines if not line.startswith(advice)), type(err).__name__)
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(err).__name__}: {first})") from None


def resume_candidates(path: str | os.PathLike) -> list[Path]:
    """Files to try when resuming from ``path``, newest first: it, then the one it replaced."""
    return [p for p in (Path(path), previous_path(path)) if p.exists()]
