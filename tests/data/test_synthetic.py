"""Tests for the synthetic action dataset (tclr_zoo.data.synthetic), default (UCF101) layout.

The HMDB51 and Kinetics-400 layouts are read back in test_layouts.py."""

from __future__ import annotations

import io
import re
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

av = pytest.importorskip("av")

# the writer module, whose _write_mp4 generate() calls (patched below); it also sees the seeds and paths
from tclr_zoo.data.synthetic import (  # noqa: E402
    CLASS_NAMES,
    SyntheticConfig,
    default_cache_dir,
    generate,
    read_manifest,
    render_video,
    sample_appearance,
    split_role,
)
from tclr_zoo.data.synthetic import write as synthetic  # noqa: E402

TINY = SyntheticConfig(num_classes=3, groups=2, clips_per_group=1, test_groups=1, frames=24, height=32, width=32)
NAME_RE = re.compile(r"^(?P<cls>\w+)/v_(?P=cls)_g(?P<g>\d\d)_c(?P<c>\d\d)\.mp4$")


def decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def read_splits(root: Path):
    class_ind = [line.split() for line in (root / "ucfTrainTestlist/classInd.txt").read_text().splitlines()]
    train = [line.split() for line in (root / "ucfTrainTestlist/trainlist01.txt").read_text().splitlines()]
    test = [line.split() for line in (root / "ucfTrainTestlist/testlist01.txt").read_text().splitlines()]
    return class_ind, train, test


def all_videos(root: Path) -> list[str]:
    return sorted(p.relative_to(root / "UCF-101").as_posix() for p in (root / "UCF-101").rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("syn") / "tiny"
    assert generate(root, TINY) == root.absolute()
    return root


# ------------------------------------------------------------------------------------------
# Layout, splits, decoding
# ------------------------------------------------------------------------------------------


def test_layout_and_split_files(tiny: Path):
    class_ind, train, test = read_splits(tiny)
    classes = sorted(CLASS_NAMES[: TINY.num_classes])
    assert class_ind == [[str(i + 1), n] for i, n in enumerate(classes)]
    label_of = {n: i + 1 for i, n in enumerate(classes)}

    assert all(len(e) == 2 for e in train) and all(len(e) == 1 for e in test)
    listed = [e[0] for e in train] + [e[0] for e in test]
    assert len(listed) == len(set(listed)) == TINY.num_videos
    assert sorted(listed) == all_videos(tiny)  # every file listed once, nothing else on disk
    for rel, label in train:
        m = NAME_RE.match(rel)
        assert m, rel
        assert int(label) == label_of[m["cls"]]
    for (rel,) in test:
        assert NAME_RE.match(rel), rel
        assert (tiny / "UCF-101" / rel).is_file()

    manifest = read_manifest(tiny)
    assert manifest["config"] == {
        "num_classes": 3, "groups": 2, "clips_per_group": 1, "test_groups": 1,
        "frames": 24, "height": 32, "width": 32, "fps": 25, "seed": 0, "shared_scenes": True, "layout": "ucf101",
    }
    assert manifest["num_train"] == len(train) and manifest["num_test"] == len(test)
    assert sorted(p.name for p in tiny.iterdir()) == ["UCF-101", "manifest.json", "ucfTrainTestlist"]
    assert manifest["version"] == synthetic.GENERATOR_VERSION
    assert manifest["classes"] == classes


def test_train_test_split_by_whole_groups(tmp_path):
    cfg = replace(TINY, num_classes=2, groups=4, clips_per_group=2, test_groups=2, frames=4)
    root = generate(tmp_path / "g", cfg)
    _, train, test = read_splits(root)
    group = lambda rel: (NAME_RE.match(rel)["cls"], int(NAME_RE.match(rel)["g"]))  # noqa: E731
    train_groups = {group(e[0]) for e in train}
    test_groups = {group(e[0]) for e in test}
    assert not train_groups & test_groups
    assert {g for _, g in test_groups} == {1, 2}
    assert {g for _, g in train_groups} == {3, 4}
    assert len(train) == 2 * 2 * 2 and len(test) == 2 * 2 * 2


def test_three_splits_rotate_the_test_groups(tiny: Path):
    cfg = SyntheticConfig(groups=6, clips_per_group=3, test_groups=2)
    roles = {s: {(g, c): split_role(cfg, s, g, c) for g in range(1, 7) for c in range(1, 4)} for s in (1, 2, 3)}
    for split, test_groups in ((1, {1, 2}), (2, {3, 4}), (3, {5, 6})):
        assert {g for (g, _), r in roles[split].items() if r == "test"} == test_groups
    assert "unused" not in roles[1].values()  # split 1 uses every video (the demo's split)
    assert [k for k, r in roles[2].items() if r == "unused"] == [(1, 3)]
    assert [k for k, r in roles[3].items() if r == "unused"] == [(1, 3)]
    with pytest.raises(ValueError):
        split_role(cfg, 4, 1, 1)
    # The files of the tiny dataset (2 groups, 1 test group, 1 clip per group: nothing unused).
    lists = tiny / "ucfTrainTestlist"
    for split, test_group in ((1, 1), (2, 2), (3, 1)):
        test = lists.joinpath(f"testlist{split:02d}.txt").read_text().split()
        train = lists.joinpath(f"trainlist{split:02d}.txt").read_text().split()[::2]
        assert {int(NAME_RE.match(rel)["g"]) for rel in test} == {test_group}
        assert sorted(test + train) == all_videos(tiny)


def test_every_video_decodes(tiny: Path):
    for rel in all_videos(tiny):
        path = tiny / "UCF-101" / rel
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264"
            assert stream.codec_context.pix_fmt == "yuv420p"
            assert stream.average_rate == 25
        frames = decode(path)
        assert frames.shape == (TINY.frames, TINY.height, TINY.width, 3)
        assert frames.std() > 5  # not a blank video


def test_decoded_video_matches_render(tiny: Path):
    """The files hold what render_video draws (up to H.264 / yuv420p loss)."""
    cfg = TINY
    name = sorted(CLASS_NAMES[: cfg.num_classes])[0]
    app = sample_appearance(np.random.default_rng(synthetic._scene_seed(cfg, name, 2)))
    ref = render_video(name, np.random.default_rng(synthetic._video_seed(cfg, name, 2, 1)), cfg, appearance=app)
    got = decode(tiny / "UCF-101" / synthetic.video_relpath(name, 2, 1))
    assert np.abs(got.astype(np.float32) - ref).mean() < 6


# ------------------------------------------------------------------------------------------
# Determinism, caching, atomic rebuild
# ------------------------------------------------------------------------------------------


def test_deterministic_for_a_config(tiny: Path, tmp_path):
    again = generate(tmp_path / "again", TINY)
    other = generate(tmp_path / "other", replace(TINY, seed=1))
    assert all_videos(again) == all_videos(tiny) == all_videos(other)
    for n in ("classInd.txt", "trainlist01.txt", "testlist03.txt"):
        assert (again / "ucfTrainTestlist" / n).read_text() == (tiny / "ucfTrainTestlist" / n).read_text()
    for rel in all_videos(tiny):
        a = decode(tiny / "UCF-101" / rel)
        np.testing.assert_array_equal(a, decode(again / "UCF-101" / rel))
        assert not np.array_equal(a, decode(other / "UCF-101" / rel))
    # Rendering alone is deterministic too.
    np.testing.assert_array_equal(
        render_video("Spin", np.random.default_rng(3), TINY), render_video("Spin", np.random.default_rng(3), TINY)
    )


def test_regeneration_skipped_when_manifest_matches_and_rebuilt_on_change(tmp_path):
    root = tmp_path / "cache"
    generate(root, TINY)
    video = root / "UCF-101" / all_videos(root)[0]
    stamps = ((root / "manifest.json").stat().st_mtime_ns, video.stat().st_mtime_ns, video.stat().st_ino)

    assert generate(root, TINY) == root.absolute()
    assert ((root / "manifest.json").stat().st_mtime_ns, video.stat().st_mtime_ns, video.stat().st_ino) == stamps

    changed = replace(TINY, num_classes=2, frames=12)
    generate(root, changed)
    assert read_manifest(root)["config"]["frames"] == 12
    _, train, test = read_splits(root)
    assert sorted(e[0] for e in train + test) == all_videos(root)  # no stale files of the old build
    assert len(all_videos(root)) == changed.num_videos
    assert decode(root / "UCF-101" / all_videos(root)[0]).shape[0] == 12
    # Only the dataset (and its lock file) are left beside it: no temporary directories.
    assert sorted(p.name for p in tmp_path.iterdir()) == [".cache.lock", "cache"]


def test_interrupted_generation_leaves_no_complete_looking_dataset(tmp_path, monkeypatch):
    root = tmp_path / "ds"
    real_write = synthetic._write_mp4
    calls = []

    def failing_write(path, frames, fps):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        real_write(path, frames, fps)

    monkeypatch.setattr(synthetic, "_write_mp4", failing_write)
    with pytest.raises(KeyboardInterrupt):
        generate(root, TINY)
    assert not root.exists()
    assert [p.name for p in tmp_path.iterdir()] == [".ds.lock"]

    # An older complete dataset survives an interrupted rebuild untouched.
    monkeypatch.setattr(synthetic, "_write_mp4", real_write)
    generate(root, TINY)
    monkeypatch.setattr(synthetic, "_write_mp4", failing_write)
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        generate(root, replace(TINY, seed=5))
    assert read_manifest(root)["config"]["seed"] == 0
    assert len(all_videos(root)) == TINY.num_videos


def test_refuses_to_replace_a_foreign_directory(tmp_path):
    root = tmp_path / "mine"
    root.mkdir()
    (root / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        generate(root, TINY)
    assert (root / "notes.txt").read_text() == "keep me"


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("TCLR_ZOO_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path / "synthetic"
    monkeypatch.delenv("TCLR_ZOO_CACHE")
    assert default_cache_dir() == Path.home() / ".cache" / "tclr_zoo" / "synthetic"


def test_config_validation():
    with pytest.raises(ValueError):
        SyntheticConfig(num_classes=len(CLASS_NAMES) + 1)
    with pytest.raises(ValueError):
        SyntheticConfig(groups=3, test_groups=3)
    with pytest.raises(ValueError):
        SyntheticConfig(width=33)  # yuv420p needs even sizes
    with pytest.raises(ValueError, match="layout"):
        SyntheticConfig(layout="imagenet")
    assert len(CLASS_NAMES) >= 8 and len(set(CLASS_NAMES)) == len(CLASS_NAMES)


# ------------------------------------------------------------------------------------------
# Class design: colour is uninformative, motion is
# ------------------------------------------------------------------------------------------


def test_colour_statistics_do_not_tell_the_class():
    cfg = replace(TINY, frames=8)
    # [class, video, channel]: mean colour of a video (frames look alike: no colour trend).
    means = np.array(
        [
            [render_video(n, np.random.default_rng([7, i, k]), cfg).reshape(-1, 3).mean(0) for k in range(8)]
            for i, n in enumerate(CLASS_NAMES)
        ]
    )
    within = means.std(axis=1).mean()  # spread of videos inside a class
    between = means.mean(axis=1).std(axis=0).mean()  # spread of the class averages
    assert within > 2 * between
    # Two videos of one class can look completely different.
    assert np.abs(means[0, 0] - means[0, 1]).max() > 20 or np.abs(means[0, 0] - means[0, 2]).max() > 20


def _render_gray(class_name: str, seed: int, cfg: SyntheticConfig) -> tuple[np.ndarray, np.ndarray]:
    """Gray video [T,H,W] and object mask (object and background have opposite luminance)."""
    rng = np.random.default_rng(seed)
    app = sample_appearance(rng)
    video = render_video(class_name, rng, cfg, appearance=app).astype(np.float32).mean(-1)
    return video, (video > 128 if app.bg_dark else video < 128)


def _shift(masks: np.ndarray, lag: int = 1) -> tuple[int, int]:
    """Dominant circular (dy, dx) displacement of the mask between frames t and t+lag."""
    a = np.fft.fft2(masks[:-lag].astype(np.float32))
    b = np.fft.fft2(masks[lag:].astype(np.float32))
    corr = np.fft.ifft2(np.conj(a) * b).real.sum(0)
    dy, dx = np.unravel_index(np.argmax(corr), corr.shape)
    H, W = corr.shape
    return (dy + H // 2) % H - H // 2, (dx + W // 2) % W - W // 2


MOTION_CFG = SyntheticConfig(frames=48, height=64, width=64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_motion_defines_the_class(seed):
    cfg = MOTION_CFG
    gray, fg = {}, {}
    for n in CLASS_NAMES:
        gray[n], fg[n] = _render_gray(n, seed, cfg)
    area = {n: m.sum((1, 2)).astype(np.float32) for n, m in fg.items()}

    dy, dx = _shift(fg["MoveUp"])
    assert dy < 0 and dx == 0
    dy, dx = _shift(fg["MoveDown"])
    assert dy > 0 and dx == 0
    dy, dx = _shift(fg["MoveSideways"])
    assert dy == 0 and dx != 0
    for n in ("MoveUp", "MoveDown", "MoveSideways"):  # rigid motion: size constant
        assert area[n].std() < 0.1 * area[n].mean()
    # The reversed "up" video moves down.
    assert _shift(fg["MoveUp"][::-1])[0] > 0

    # Sawtooth scale: grow = mostly growing steps, shrink = mostly shrinking steps.
    assert (np.diff(area["Grow"]) > 0).mean() > 0.75
    assert (np.diff(area["Shrink"]) < 0).mean() > 0.75
    # Blink: the object is fully gone in some frames and present in others.
    assert area["Blink"].min() == 0 and area["Blink"].max() > 50
    assert 0.25 < (area["Blink"] > 0).mean() < 0.75

    # Spin: the object stays in place with a constant area, but its pixels change (shape or
    # texture rotates) far more than the noise.
    spin = fg["Spin"]
    assert area["Spin"].std() < 0.1 * area["Spin"].mean()
    assert _shift(spin) == (0, 0)
    inside = spin[:-3] | spin[3:]
    assert np.percentile(np.abs(gray["Spin"][3:] - gray["Spin"][:-3])[inside], 90) > 25  # noise: ~5

    # Bounce: the vertical centroid goes up and down several times.
    ys = np.arange(cfg.height)[None, :, None]
    cy = (fg["Bounce"] * ys).sum((1, 2)) / fg["Bounce"].sum((1, 2))
    assert cy.max() - cy.min() > 15
    assert np.count_nonzero(np.diff(np.sign(np.diff(cy)))) >= 2

    # Approach / Separate: horizontal spread of the pair mostly shrinks / grows.
    xs = np.arange(cfg.width)[None, None, :].astype(np.float32)

    def spread(m):
        n = m.sum((1, 2))
        mu = (m * xs).sum((1, 2)) / n
        return np.sqrt((m * (xs - mu[:, None, None]) ** 2).sum((1, 2)) / n)

    assert (np.diff(spread(fg["Approach"])) < 0).mean() > 0.7
    assert (np.diff(spread(fg["Separate"])) > 0).mean() > 0.7


def test_render_video_all_classes_shape_and_motion():
    cfg = replace(TINY, frames=16)
    for i, n in enumerate(CLASS_NAMES):
        v = render_video(n, np.random.default_rng(i), cfg)
        assert v.shape == (16, 32, 32, 3) and v.dtype == np.uint8
        # Something moves: consecutive frames differ by more than the noise.
        assert np.abs(np.diff(v.astype(np.float32), axis=0)).max() > 60
    with pytest.raises(ValueError):
        render_video("Dance", np.random.default_rng(0), cfg)


def test_progress_bar_on_a_terminal_only(tmp_path, capsys, monkeypatch):
    generate(tmp_path / "pipe", replace(TINY, num_classes=1, frames=4), progress=True)
    assert capsys.readouterr().err == ""  # stderr is no terminal here: no bar, no carriage returns in a log

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    generate(tmp_path / "tty", replace(TINY, num_classes=1, frames=4), progress=True)
    assert "synthetic videos" in terminal.getvalue() and "\r" in terminal.getvalue()


def test_shared_scenes_give_every_class_the_same_group_appearance():
    shared = SyntheticConfig(num_classes=3, groups=2, test_groups=1)
    own = SyntheticConfig(num_classes=3, groups=2, test_groups=1, shared_scenes=False)
    names = shared.class_names

    def look(cfg, name):
        return sample_appearance(np.random.default_rng(synthetic._scene_seed(cfg, name, 1)))

    assert look(shared, names[0]) == look(shared, names[1]) == look(shared, names[2])
    assert look(own, names[0]) != look(own, names[1])
