"""Writing the synthetic action dataset: H.264 encoding, the dataset layouts and split files, the
manifest, and :func:`generate` (cache check, lock, staging); the pixels come from :mod:`.render`.

``SyntheticConfig.layout`` picks one of the official layouts (the videos are the same in all
three; only their paths and the split files differ), written under ``root`` with
``root/manifest.json`` (generation parameters + generator version)::

    ucf101 (default)
        UCF-101/<Class>/v_<Class>_g<GG>_c<CC>.mp4
        ucfTrainTestlist/classInd.txt          "1 Class"  (1-based, sorted class names)
        ucfTrainTestlist/trainlist0{1,2,3}.txt "Class/v_Class_g03_c01.mp4 <label, 1-based>"
        ucfTrainTestlist/testlist0{1,2,3}.txt  "Class/v_Class_g01_c01.mp4"
    hmdb51
        hmdb51_org/<Class>/v_<Class>_g<GG>_c<CC>.mp4
        testTrainMulti_7030_splits/<Class>_test_split{1,2,3}.txt
                                               "v_Class_g01_c01.mp4 <id> " (1 train, 2 test, 0 unused)
    kinetics400 (one split: train and val)
        annotations/{train,val}.csv            "label,youtube_id,time_start,time_end,split,is_cc"
        {train,val}/<Class>/<youtube_id>_<start:06d>_<end:06d>.mp4

As in UCF101 the test split is made of whole groups (split 1: the first ``test_groups`` groups
of every class; splits 2 and 3 rotate to the next ``test_groups`` groups, see
:func:`split_role`) and the train split of the others.  Splits 2 and 3 also leave one clip per
class unused (HMDB51's id 0; absent from both UCF lists), so that every layout gives each
split the same train and test videos; split 1 uses every video.  A group is one "actor/scene": its clips
share the background, the object's shape, colour and texture and roughly its size, and
differ in position, speed, phase, rotation sense, camera shake and noise.  With
``shared_scenes`` (the default) group ``g`` is the *same* scene in every class, as if every
action had been filmed in every scene: appearance then carries no class information at all,
and a contrastive learner meets negatives that look alike and differ only in motion.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import math
import os
from contextlib import contextmanager
from dataclasses import asdict
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from ...atomic import refuse_to_replace, staged_directory
from .render import SyntheticConfig, _scene_seed, _video_seed, render_video, sample_appearance

#: Bumped whenever the rendered pixels or the layout change; part of the manifest, so a cache
#: written by another version is rebuilt.
GENERATOR_VERSION = 3

#: Splits written for the ucf101 and hmdb51 layouts (kinetics400 has one: train/val).
NUM_SPLITS = 3

_GENERATOR_ID = "tclr_zoo.data.synthetic"


def default_cache_dir() -> Path:
    """``$TCLR_ZOO_CACHE/synthetic``, or ``~/.cache/tclr_zoo/synthetic``."""
    base = os.environ.get("TCLR_ZOO_CACHE")
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "tclr_zoo"
    return root / "synthetic"


# --------------------------------------------------------------------------------------------
# Layouts: where each video goes, and the part it plays in each split
# --------------------------------------------------------------------------------------------


def video_relpath(class_name: str, group: int, clip: int) -> str:
    """``"<Class>/v_<Class>_gGG_cCC.mp4"`` (group and clip 1-based), relative to ``UCF-101/``."""
    return f"{class_name}/v_{class_name}_g{group:02d}_c{clip:02d}.mp4"


def split_role(config: SyntheticConfig, split: int, group: int, clip: int) -> str:
    """``"train"``, ``"test"`` or ``"unused"``: the part a video plays in ``split`` (1-based).

    The test groups of split ``s`` are the ``test_groups`` groups after those of split ``s - 1``
    (wrapping around), like UCF101's three splits; split 1 takes groups ``1..test_groups``.
    Splits 2 and 3 leave the last clip of the first train group unused (when a group has
    several clips), as HMDB51 leaves clips out of each split.
    """
    if not 1 <= split <= NUM_SPLITS:
        raise ValueError(f"split must be in [1, {NUM_SPLITS}], got {split}")
    k, groups = config.test_groups, config.groups
    test = {((split - 1) * k + j) % groups + 1 for j in range(k)}
    if group in test:
        return "test"
    first_train = min(set(range(1, groups + 1)) - test)
    if split > 1 and config.clips_per_group > 1 and group == first_train and clip == config.clips_per_group:
        return "unused"
    return "train"


def youtube_id(class_name: str, group: int, clip: int) -> str:
    """A made-up, stable 11-character YouTube-style id (``[A-Za-z0-9_-]``) for the kinetics400 layout."""
    digest = hashlib.sha1(f"{class_name}/{group}/{clip}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:11]


def _kinetics_times(config: SyntheticConfig, group: int, clip: int) -> tuple[int, int]:
    start = 10 * (clip - 1) + group
    return start, start + max(1, math.ceil(config.frames / config.fps))


def layout_relpath(config: SyntheticConfig, class_name: str, group: int, clip: int) -> str:
    """Where the video goes under ``root`` in ``config.layout`` (POSIX separators)."""
    if config.layout == "ucf101":
        return f"UCF-101/{video_relpath(class_name, group, clip)}"
    if config.layout == "hmdb51":
        return f"hmdb51_org/{video_relpath(class_name, group, clip)}"
    subset = "val" if split_role(config, 1, group, clip) == "test" else "train"
    start, end = _kinetics_times(config, group, clip)
    return f"{subset}/{class_name}/{youtube_id(class_name, group, clip)}_{start:06d}_{end:06d}.mp4"


# --------------------------------------------------------------------------------------------
# Writing the dataset
# --------------------------------------------------------------------------------------------


def _write_mp4(path: Path, frames: np.ndarray, fps: int) -> None:
    import av

    T, H, W, _ = frames.shape
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = W
        stream.height = H
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = fps  # a keyframe per second, for cheap seeking
        # One thread and no macroblock-tree rate control: with mbtree, x264 (core 165, as bundled
        # with PyAV 18) was seen to give different bitstreams for identical input in one process.
        stream.options = {"crf": "18", "preset": "veryfast", "threads": "1", "mbtree": "0"}
        tb = Fraction(1, fps)
        for i in range(T):
            frame = av.VideoFrame.from_ndarray(frames[i], format="rgb24")
            frame.pts = i
            frame.time_base = tb
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def _manifest(config: SyntheticConfig) -> dict:
    return {
        "generator": _GENERATOR_ID,
        "version": GENERATOR_VERSION,
        "config": asdict(config),
        "classes": list(config.class_names),
        "num_videos": config.num_videos,
        "codec": "libx264",
        "pix_fmt": "yuv420p",
    }


def read_manifest(root: str | os.PathLike) -> dict | None:
    """The manifest of the dataset at ``root``, or ``None`` if absent/unreadable."""
    try:
        with open(Path(root) / "manifest.json", encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_synthetic_root(root: str | os.PathLike) -> bool:
    """Whether ``root`` holds a dataset written by this generator (whatever its layout)."""
    manifest = read_manifest(root)
    return manifest is not None and manifest.get("generator") == _GENERATOR_ID


def _split_files(config: SyntheticConfig) -> dict[str, str]:
    """The split/annotation files of ``config.layout``: path under ``root`` -> text."""
    classes = config.class_names
    videos = [(label, name, g, c) for label, name in enumerate(classes)
              for g in range(1, config.groups + 1) for c in range(1, config.clips_per_group + 1)]
    files: dict[str, str] = {}
    if config.layout == "ucf101":
        files["ucfTrainTestlist/classInd.txt"] = "".join(f"{i + 1} {n}\n" for i, n in enumerate(classes))
        for s in range(1, NUM_SPLITS + 1):
            roles = [(split_role(config, s, g, c), label, video_relpath(name, g, c)) for label, name, g, c in videos]
            files[f"ucfTrainTestlist/trainlist{s:02d}.txt"] = "".join(
                f"{rel} {label + 1}\n" for role, label, rel in roles if role == "train")
            files[f"ucfTrainTestlist/testlist{s:02d}.txt"] = "".join(
                f"{rel}\n" for role, _, rel in roles if role == "test")
    elif config.layout == "hmdb51":
        ids = {"train": 1, "test": 2, "unused": 0}
        for s in range(1, NUM_SPLITS + 1):
            for name in classes:
                # The official files end each line with a blank: "<video> <id> ".
                files[f"testTrainMulti_7030_splits/{name}_test_split{s}.txt"] = "".join(
                    f"{video_relpath(n, g, c).split('/')[1]} {ids[split_role(config, s, g, c)]} \n"
                    for _, n, g, c in videos if n == name)
    else:  # kinetics400: split 1, test groups -> val
        for subset in ("train", "val"):
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(["label", "youtube_id", "time_start", "time_end", "split", "is_cc"])
            for _, name, g, c in videos:
                if ("val" if split_role(config, 1, g, c) == "test" else "train") == subset:
                    writer.writerow([name, youtube_id(name, g, c), *_kinetics_times(config, g, c), subset, 0])
            files[f"annotations/{subset}.csv"] = out.getvalue()
    return files


def _is_complete(root: Path, config: SyntheticConfig) -> bool:
    m = read_manifest(root)
    if m is None:
        return False
    want = _manifest(config)
    if any(m.get(k) != want[k] for k in ("generator", "version", "config")):
        return False
    return all((root / rel).is_file() for rel in _split_files(config))


def _write_dataset(out: Path, config: SyntheticConfig, progress: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(name, g, c) for name in config.class_names
            for g in range(1, config.groups + 1) for c in range(1, config.clips_per_group + 1)]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc="synthetic videos", unit="video", disable=None)  # None: terminals only
    try:
        for name, g, c in jobs:
            app = sample_appearance(np.random.default_rng(_scene_seed(config, name, g)))
            rng = np.random.default_rng(_video_seed(config, name, g, c))
            frames = render_video(name, rng, config, appearance=app)
            path = out / layout_relpath(config, name, g, c)
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_mp4(path, frames, config.fps)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    for rel, text in _split_files(config).items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text, encoding="utf-8", newline="\n")
    # The manifest is written last: its presence marks a complete dataset.
    roles = [split_role(config, 1, g, c) for _, g, c in jobs]
    manifest = dict(_manifest(config), num_train=roles.count("train"), num_test=roles.count("test"))
    tmp = out / "manifest.json.part"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out / "manifest.json")


@contextmanager
def _lock(root: Path) -> Iterator[None]:
    """Exclusive lock on a sibling lock file (POSIX); a no-op where ``fcntl`` is missing."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    lock_path = root.parent / f".{root.name}.lock"
    with open(lock_path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def generate(
    root: str | os.PathLike | None = None,
    config: SyntheticConfig = SyntheticConfig(),
    *,
    progress: bool = False,
) -> Path:
    """Write the dataset under ``root`` (default :func:`default_cache_dir`) and return ``root``.

    Nothing is written when ``root/manifest.json`` already describes the same config and
    generator version.  Otherwise the dataset is built in a temporary sibling directory and
    renamed into place (an existing older dataset is swapped out and deleted), so an
    interrupted run never leaves a half-written dataset that looks complete.  ``root`` must
    be missing, empty, or a dataset written by this module.
    """
    root = Path(root).expanduser() if root is not None else default_cache_dir()
    root = root.absolute()
    if _is_complete(root, config):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with _lock(root):
        if _is_complete(root, config):  # another process finished it meanwhile
            return root
        # Not a folder, or a folder with someone else's files in it: FileExistsError.
        refuse_to_replace(root, overwrite=False, kind="folder", ours=is_synthetic_root,
                          ours_name="synthetic-dataset manifest")
        # Built in a hidden sibling that replaces root when complete; leftovers of killed runs go.
        with staged_directory(root) as staging:
            _write_dataset(staging, config, progress)
    return root


__all__ = ["GENERATOR_VERSION", "NUM_SPLITS", "default_cache_dir", "generate", "is_synthetic_root", "layout_relpath",
           "read_manifest", "split_role", "video_relpath", "youtube_id"]
