"""Clips for INT8 calibration and for its accuracy gate, prepared exactly as the SDK prepares them.

Static quantization fixes every activation's range from the clips it is calibrated on, so those
clips must look like what the deployed graph will be fed: decoded in the model's channel order
(BGR for the published TCLR weights), cropped, resized and normalised by the model's own
``VideoModel.preprocess``. A calibration on RGB frames for a BGR model gives ranges for inputs the
graph never sees.

``calibration_sets`` turns a SOURCE into two disjoint clip sets (:class:`ClipSet`): one to calibrate on
and one, held out, that the gate measures on (a graph is never judged on the clips that set its scales).

- a folder of videos (at least ``MIN_FOLDER_VIDEOS``): the videos are shuffled with a fixed seed and
  dealt alternately to calibration and held-out, so no video gives clips to both;
- a dataset root with ``dataset=``: calibration from the ``train`` subset of split 1, held-out
  from its ``test`` subset (``data.layouts.load_split``);
- a ``.npy`` file of preprocessed clips ``[N, 3, T, H, W]``: the first ``calib_clips`` calibrate,
  the rest (up to ``holdout_clips``) are held out; each row counts as its own video.

From a video, ``k`` clips are taken with starts spread evenly over it (the uniform clips of the
kNN evaluation protocol), each ``frames`` frames every ``eval_frame_stride`` -- the SDK's window.

The held-out set must hold clips of at least ``MIN_HELDOUT_VIDEOS`` videos (``int8_options.HELD_OUT_RULE``,
the gate's need); a source that cannot give them is refused with that rule and what to give instead.
With ``skip_bad`` a video that cannot be decoded is left out and recorded (``ClipSet.skipped``), as the
other batch commands' ``--skip-bad`` does; folders and dataset lists are probed before they are dealt,
so a broken file does not cost the held-out half a video.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..data.decode import VideoDecodeError, decode_frames, probe
from ..data.layouts import expand_video_folders, load_split
from ..data.sampling import evenly_spaced_clips
from ..data.windows import WindowPlan
from .int8_options import HELD_OUT_REMEDY, HELD_OUT_RULE, MIN_FOLDER_VIDEOS, MIN_HELDOUT_VIDEOS

SHUFFLE_SEED = 0


class CalibrationSourceError(ValueError):
    """A calibration SOURCE that cannot give the clips asked for (the CLI reports it, exit status 2)."""


@dataclass
class ClipSet:
    """Preprocessed clips and the video each came from (the gate ranks a clip against the other videos)."""

    clips: np.ndarray  # float32 [N, 3, T, H, W]
    videos: np.ndarray  # int [N]: index into ``names``
    names: list[str]  # one per video
    source: str  # what the clips are, for the report
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"path", "reason"}: unreadable, left out

    def __len__(self) -> int:
        return len(self.clips)

    def describe(self) -> dict[str, Any]:
        return {"source": self.source, "clips": len(self), "videos": len(self.names), "skipped": self.skipped}


def calibration_sets(model: Any, source: str | os.PathLike, *, calib_clips: int, holdout_clips: int,
                     dataset: str | None = None, skip_bad: bool = False) -> tuple[ClipSet, ClipSet]:
    """``(calibration, held_out)`` clips from ``source`` for ``model`` (a ``VideoModel``: its
    ``preprocess`` and window plan are used). Raises :class:`CalibrationSourceError` for a source
    that cannot give at least ``calib_clips`` calibration clips and held-out clips of
    ``MIN_HELDOUT_VIDEOS`` videos (or rows), and ``VideoDecodeError`` for an unreadable video unless
    ``skip_bad`` (then it is left out and listed in the set's ``skipped``)."""
    if calib_clips < 1 or holdout_clips < MIN_HELDOUT_VIDEOS:
        raise CalibrationSourceError(f"need >= 1 calibration clip and >= {MIN_HELDOUT_VIDEOS} held-out clips, got "
                                     f"{calib_clips} and {holdout_clips}: {HELD_OUT_RULE}")
    path = Path(source).expanduser()
    if dataset is not None:
        sets = _from_dataset(model, path, dataset, calib_clips, holdout_clips, skip_bad)
    elif path.suffix.lower() == ".npy":
        sets = _from_array(model, path, calib_clips, holdout_clips)
    else:
        sets = _from_videos(model, path, calib_clips, holdout_clips, skip_bad)
    held = sets[1]
    if len(held.names) < MIN_HELDOUT_VIDEOS:  # e.g. held-out videos that failed to decode mid-stream
        raise too_few_held_out(f"{source}: the held-out clips come from {len(held.names)} video(s)"
                               + _skipped_note(held.skipped))
    return sets


def too_few_held_out(what: str) -> CalibrationSourceError:
    """The one refusal of a held-out set too small for the gate: what the source gave, the rule, what to give."""
    return CalibrationSourceError(f"{what}; {HELD_OUT_RULE}: {HELD_OUT_REMEDY}")


def _skipped_note(skipped: list[dict[str, str]]) -> str:
    return f" (and {len(skipped)} unreadable, skipped)" if skipped else ""


def _from_dataset(model, root: Path, dataset: str, calib_clips: int, holdout_clips: int,
                  skip_bad: bool) -> tuple[ClipSet, ClipSet]:
    sets = []
    for subset, count in (("train", calib_clips), ("test", holdout_clips)):
        skipped: list[dict[str, str]] = []
        listed = [str(item.path) for item in load_split(dataset, root, subset=subset).items]
        videos = _readable(_shuffled(listed), skipped) if skip_bad else _shuffled(listed)
        if subset == "test" and len(videos) < MIN_HELDOUT_VIDEOS:
            raise too_few_held_out(f"{root}: the {dataset} split 1 test list has {len(videos)} video(s)"
                                   + _skipped_note(skipped))
        sets.append(video_clips(model, videos, count, f"{dataset} {root} split 1 {subset}",
                                skipped if skip_bad else None))
    return sets[0], sets[1]


def _from_videos(model, path: Path, calib_clips: int, holdout_clips: int, skip_bad: bool) -> tuple[ClipSet, ClipSet]:
    if not path.exists():
        raise CalibrationSourceError(f"{path}: no such file or folder")
    skipped: list[dict[str, str]] = []
    videos = _shuffled(expand_video_folders([path]))
    if skip_bad:
        videos = _readable(videos, skipped)
    if len(videos) < MIN_FOLDER_VIDEOS:
        raise too_few_held_out(f"{path}: {len(videos)} video(s){_skipped_note(skipped)}, dealt alternately to "
                               f"calibration and held-out: {len(videos) // 2} held out")
    # Videos found unreadable before dealing belong to neither half: they are listed with the calibration set.
    return (video_clips(model, videos[0::2], calib_clips, f"videos in {path} (calibration half)",
                        skipped if skip_bad else None),
            video_clips(model, videos[1::2], holdout_clips, f"videos in {path} (held-out half)",
                        [] if skip_bad else None))


def _from_array(model, path: Path, calib_clips: int, holdout_clips: int) -> tuple[ClipSet, ClipSet]:
    try:
        clips = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise CalibrationSourceError(f"{path}: not a readable .npy array ({err})") from None
    want = (3, model.frames, model.size, model.size)
    if clips.ndim != 5 or tuple(clips.shape[1:]) != want or not np.issubdtype(clips.dtype, np.floating):
        raise CalibrationSourceError(f"{path}: expected preprocessed float clips [N, {', '.join(map(str, want))}], "
                                     f"got {clips.dtype} {list(clips.shape)}")
    if len(clips) < calib_clips + MIN_HELDOUT_VIDEOS:  # each row counts as its own video
        raise too_few_held_out(f"{path}: {len(clips)} clips, --calib-clips {calib_clips} of them calibrate: "
                               f"{max(len(clips) - calib_clips, 0)} held out")
    held = min(holdout_clips, len(clips) - calib_clips)

    def rows(start: int, count: int, what: str) -> ClipSet:
        part = np.array(clips[start:start + count], dtype=np.float32)  # a writable copy, not the file's map
        _check_preprocessed(model, part, path)
        return ClipSet(part, np.arange(count), [f"{path.name}[{start + i}]" for i in range(count)],
                       f"{path} rows {start}..{start + count - 1} ({what})")

    return rows(0, calib_clips, "calibration"), rows(calib_clips, held, "held out")


def _check_preprocessed(model, clips: np.ndarray, path: Path) -> None:
    """Clips given ready-made must be in the range the model's preprocessing produces (the SDK's own
    check, ``inference.inputs.check_clips``): 0..255 pixels, or another mean/std, would calibrate every
    int8 scale for inputs the deployed graph never sees, and the gate would judge it on them too."""
    from ..inference.inputs import VideoInputError, check_clips

    try:
        check_clips(clips, model.preprocessing)
    except VideoInputError as err:
        raise CalibrationSourceError(f"{path}: {err}") from None


def _shuffled(paths: Sequence[str]) -> list[str]:
    """A fixed-seed shuffle: a folder sorted by class would otherwise calibrate on the first classes only."""
    order = np.random.default_rng(SHUFFLE_SEED).permutation(len(paths))
    return [paths[i] for i in order]


def video_clips(model: Any, videos: Sequence[str], count: int, source: str,
                skipped: list[dict[str, str]] | None = None) -> ClipSet:
    """``count`` clips from ``videos``, ``ceil(count / len(videos))`` per video (starts spread evenly),
    preprocessed by ``model.preprocess`` from frames decoded in the model's channel order.

    ``skipped``: ``None`` lets the first ``VideoDecodeError`` stop the run; a list (``--skip-bad``)
    receives ``{"path", "reason"}`` for each video that fails, which then gives no clip at all, and
    becomes the set's ``skipped``."""
    if not videos:
        raise CalibrationSourceError(f"{source}: no videos")
    per_video = math.ceil(count / len(videos))
    clips, owners = [], []
    for v, path in enumerate(videos):
        try:
            taken = _clips_of(model, path, min(per_video, count - len(clips)))
        except VideoDecodeError as err:
            if skipped is None:
                raise
            skipped.append({"path": str(path), "reason": err.reason})
            continue
        clips.extend(taken)
        owners.extend([v] * len(taken))
        if len(clips) == count:
            break
    if not clips:
        raise CalibrationSourceError(f"{source}: none of its {len(videos)} video(s) could be decoded")
    used = sorted(set(owners))
    remap = {v: i for i, v in enumerate(used)}
    return ClipSet(np.stack(clips).astype(np.float32, copy=False), np.array([remap[v] for v in owners]),
                   [str(videos[v]) for v in used], source, list(skipped or []))


def _clips_of(model: Any, path: str, k: int) -> list[np.ndarray]:
    """Up to ``k`` preprocessed clips of one video; all or none (a decode error part-way raises)."""
    order = model.preprocessing.channel_order
    return [model.preprocess(torch.from_numpy(decode_frames(path, indices.tolist(), channel_order=order))).numpy()
            for indices in spread_windows(model.plan, probe(path).num_frames, k)]


def _readable(videos: Sequence[str], skipped: list[dict[str, str]]) -> list[str]:
    """``videos`` whose container and stream open (``probe``); the others go to ``skipped``."""
    kept = []
    for path in videos:
        try:
            probe(path)
        except VideoDecodeError as err:
            skipped.append({"path": str(path), "reason": err.reason})
        else:
            kept.append(path)
    return kept


def spread_windows(plan: WindowPlan, num_frames: int, k: int) -> np.ndarray:
    """``[k', frames]`` frame indices of up to ``k`` windows of ``plan`` with starts spread evenly over a
    video of ``num_frames`` frames: the kNN protocol's evenly spaced clips, never more than the video has
    distinct starts (one mirrored window for a video shorter than a window)."""
    distinct_starts = max(num_frames - plan.span, 0) + 1
    return evenly_spaced_clips(num_frames, min(k, distinct_starts), plan.frames, plan.stride)


__all__ = ["CalibrationSourceError", "ClipSet", "calibration_sets", "spread_windows", "too_few_held_out",
           "video_clips"]
