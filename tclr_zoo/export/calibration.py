"""Clips for INT8 calibration and for its accuracy gate, prepared exactly as the SDK prepares them.

Static quantization fixes every activation's range from the clips it is calibrated on, so those
clips must look like what the deployed graph will be fed: decoded in the model's channel order
(BGR for the published TCLR weights), cropped, resized and normalised by the model's own
``VideoModel.preprocess``. A calibration on RGB frames for a BGR model gives ranges for inputs the
graph never sees.

``calibration_sets`` turns a SOURCE into two disjoint clip sets (:class:`ClipSet`): one to calibrate on
and one, held out, that the gate measures on (a graph is never judged on the clips that set its scales).

- a folder of videos (at least 3): the videos are shuffled with a fixed seed and dealt
  alternately to calibration and held-out, so no video gives clips to both;
- a dataset root with ``dataset=``: calibration from the ``train`` subset of split 1, held-out
  from its ``test`` subset (``data.layouts.load_split``);
- a ``.npy`` file of preprocessed clips ``[N, 3, T, H, W]``: the first ``calib_clips`` calibrate,
  the rest (up to ``holdout_clips``) are held out; each row counts as its own video.

From a video, ``k`` clips are taken with starts spread evenly over it (the uniform clips of the
kNN evaluation protocol), each ``frames`` frames every ``eval_frame_stride`` -- the SDK's window.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..data.decode import decode_frames, probe
from ..data.layouts import expand_video_folders, load_split
from ..data.sampling import evenly_spaced_clips
from ..data.windows import WindowPlan

SHUFFLE_SEED = 0


class CalibrationSourceError(ValueError):
    """A calibration SOURCE that cannot give the clips asked for (the CLI reports it, exit status 2)."""


@dataclass
class ClipSet:
    """Preprocessed clips and the video each came from (kNN agreement leaves a clip's own video out)."""

    clips: np.ndarray  # float32 [N, 3, T, H, W]
    videos: np.ndarray  # int [N]: index into ``names``
    names: list[str]  # one per video
    source: str  # what the clips are, for the report

    def __len__(self) -> int:
        return len(self.clips)

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "clips": len(self), "videos": len(self.names)}


def calibration_sets(model: Any, source: str | os.PathLike, *, calib_clips: int, holdout_clips: int,
                     dataset: str | None = None) -> tuple[ClipSet, ClipSet]:
    """``(calibration, held_out)`` clips from ``source`` for ``model`` (a ``VideoModel``: its
    ``preprocess`` and window plan are used). Raises :class:`CalibrationSourceError` for a source
    that cannot give at least ``calib_clips`` calibration clips and two held-out videos (or rows)."""
    if calib_clips < 1 or holdout_clips < 2:
        raise CalibrationSourceError(f"need >= 1 calibration clip and >= 2 held-out clips, got {calib_clips} "
                                     f"and {holdout_clips}")
    path = Path(source).expanduser()
    if dataset is not None:
        sets = _from_dataset(model, path, dataset, calib_clips, holdout_clips)
    elif path.suffix.lower() == ".npy":
        sets = _from_array(model, path, calib_clips, holdout_clips)
    else:
        sets = _from_videos(model, path, calib_clips, holdout_clips)
    if len(sets[1].names) < 2:
        raise CalibrationSourceError(f"{source}: the held-out clips come from one video only; the accuracy gate "
                                     "needs at least two (give more videos)")
    return sets


def _from_dataset(model, root: Path, dataset: str, calib_clips: int, holdout_clips: int) -> tuple[ClipSet, ClipSet]:
    train = [str(item.path) for item in load_split(dataset, root, subset="train").items]
    test = [str(item.path) for item in load_split(dataset, root, subset="test").items]
    return (video_clips(model, _shuffled(train), calib_clips, f"{dataset} {root} split 1 train"),
            video_clips(model, _shuffled(test), holdout_clips, f"{dataset} {root} split 1 test"))


def _from_videos(model, path: Path, calib_clips: int, holdout_clips: int) -> tuple[ClipSet, ClipSet]:
    if not path.exists():
        raise CalibrationSourceError(f"{path}: no such file or folder")
    videos = _shuffled(expand_video_folders([path]))
    if len(videos) < 3:
        raise CalibrationSourceError(f"{path}: {len(videos)} video(s); calibration and the held-out gate need at "
                                     "least 3 (their clips never mix), or use --dataset or a .npy of clips")
    return (video_clips(model, videos[0::2], calib_clips, f"videos in {path} (calibration half)"),
            video_clips(model, videos[1::2], holdout_clips, f"videos in {path} (held-out half)"))


def _from_array(model, path: Path, calib_clips: int, holdout_clips: int) -> tuple[ClipSet, ClipSet]:
    try:
        clips = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise CalibrationSourceError(f"{path}: not a readable .npy array ({err})") from None
    want = (3, model.frames, model.size, model.size)
    if clips.ndim != 5 or tuple(clips.shape[1:]) != want or not np.issubdtype(clips.dtype, np.floating):
        raise CalibrationSourceError(f"{path}: expected preprocessed float clips [N, {', '.join(map(str, want))}], "
                                     f"got {clips.dtype} {list(clips.shape)}")
    if len(clips) < calib_clips + 2:
        raise CalibrationSourceError(f"{path}: {len(clips)} clips; --calib-clips {calib_clips} plus at least 2 "
                                     "held-out clips are needed")
    held = min(holdout_clips, len(clips) - calib_clips)

    def rows(start: int, count: int, what: str) -> ClipSet:
        part = np.array(clips[start:start + count], dtype=np.float32)  # a writable copy, not the file's map
        return ClipSet(part, np.arange(count), [f"{path.name}[{start + i}]" for i in range(count)],
                       f"{path} rows {start}..{start + count - 1} ({what})")

    return rows(0, calib_clips, "calibration"), rows(calib_clips, held, "held out")


def _shuffled(paths: Sequence[str]) -> list[str]:
    """A fixed-seed shuffle: a folder sorted by class would otherwise calibrate on the first classes only."""
    order = np.random.default_rng(SHUFFLE_SEED).permutation(len(paths))
    return [paths[i] for i in order]


def video_clips(model: Any, videos: Sequence[str], count: int, source: str) -> ClipSet:
    """``count`` clips from ``videos``, ``ceil(count / len(videos))`` per video (starts spread evenly),
    preprocessed by ``model.preprocess`` from frames decoded in the model's channel order."""
    if not videos:
        raise CalibrationSourceError(f"{source}: no videos")
    per_video = math.ceil(count / len(videos))
    order = model.config["preprocessing"]["channel_order"]
    clips, owners = [], []
    for v, path in enumerate(videos):
        for indices in spread_windows(model.plan, probe(path).num_frames, min(per_video, count - len(clips))):
            frames = torch.from_numpy(decode_frames(path, indices.tolist(), channel_order=order))
            clips.append(model.preprocess(frames).numpy())
            owners.append(v)
        if len(clips) == count:
            break
    used = sorted(set(owners))
    remap = {v: i for i, v in enumerate(used)}
    return ClipSet(np.stack(clips).astype(np.float32, copy=False), np.array([remap[v] for v in owners]),
                   [str(videos[v]) for v in used], source)


def spread_windows(plan: WindowPlan, num_frames: int, k: int) -> np.ndarray:
    """``[k', frames]`` frame indices of up to ``k`` windows of ``plan`` with starts spread evenly over a
    video of ``num_frames`` frames: the kNN protocol's evenly spaced clips, never more than the video has
    distinct starts (one mirrored window for a video shorter than a window)."""
    distinct_starts = max(num_frames - plan.span, 0) + 1
    return evenly_spaced_clips(num_frames, min(k, distinct_starts), plan.frames, plan.stride)


__all__ = ["CalibrationSourceError", "ClipSet", "calibration_sets", "spread_windows", "video_clips"]
