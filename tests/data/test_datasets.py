"""UCF101-style split reading (``read_ucf_split``), the pretraining dataset (real files), bad files, eval clips.

The other official layouts and ``load_split`` are tested in test_layouts.py."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch

from tclr_zoo.data.datasets import (
    BadSample,
    EpochShuffleSampler,
    EvalClipsDataset,
    TCLRPretrainDataset,
    collate_pretrain,
    read_ucf_split,
)
from tclr_zoo.data.sampling import ClipSampling
from tclr_zoo.data.transforms import AugmentConfig

SAMPLING = ClipSampling(frames=16, stride=2, num_local=4)
AUGMENT = AugmentConfig(size=32)


def _write_avi(path: Path, frames: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 40, 30, "yuv420p"
        for _ in range(frames):
            img = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        container.mux(stream.encode())


def test_official_ucf101_layout(tmp_path):
    root = tmp_path / "UCF101"
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Archery\n")
    (lists / "trainlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nArchery/v_Archery_g08_c01.avi 2\n")
    (lists / "testlist01.txt").write_text("Archery/v_Archery_g01_c01.avi\n")
    for i, rel in enumerate(["ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", "Archery/v_Archery_g08_c01.avi",
                             "Archery/v_Archery_g01_c01.avi"]):
        _write_avi(root / "UCF-101" / rel, 48, i)
    train, classes = read_ucf_split(root, 1, "train")
    test, _ = read_ucf_split(root, 1, "test")
    assert classes == ["ApplyEyeMakeup", "Archery"]
    assert [i.label for i in train] == [0, 1] and [i.label for i in test] == [1]
    assert all(i.path.is_file() for i in train + test)
    sample = TCLRPretrainDataset([train[0].path], SAMPLING, AUGMENT)[0]
    assert sample["global"].shape == (2, 3, 16, 32, 32)


def test_split_errors_name_the_file(tmp_path, tiny_dataset):
    with pytest.raises(FileNotFoundError, match="classInd.txt"):
        read_ucf_split(tmp_path, 1, "train")
    with pytest.raises(FileNotFoundError, match="trainlist04.txt"):
        read_ucf_split(tiny_dataset, 4, "train")
    with pytest.raises(ValueError, match="subset"):
        read_ucf_split(tiny_dataset, 1, "val")


def test_synthetic_layout_and_pretrain_item(tiny_dataset):
    train, classes = read_ucf_split(tiny_dataset, 1, "train")
    assert len(train) == 12 and len(classes) == 3
    assert all(i.path.parent.parent.name == "UCF-101" for i in train)  # the official layout by default
    ds = TCLRPretrainDataset([i.path for i in train], SAMPLING, AUGMENT)
    item = ds[0]
    assert item["global"].shape == (2, 3, 16, 32, 32)
    assert item["local"].shape == (2, 4, 3, 16, 32, 32)
    assert item["global"].dtype == torch.float32 and 0 <= item["global"].min() and item["global"].max() <= 1
    batch = collate_pretrain([ds[0], ds[1], BadSample("x.mp4", "broken")])
    assert batch["global"].shape == (2, 2, 3, 16, 32, 32) and batch["local"].shape == (2, 4, 2, 3, 16, 32, 32)
    assert batch["videos"] == 2 and batch["bad"] == [BadSample("x.mp4", "broken")]


def test_augmentation_randomness_depends_only_on_seed_epoch_index(tiny_dataset):
    train, _ = read_ucf_split(tiny_dataset, 1, "train")
    paths = [i.path for i in train]
    a, b = TCLRPretrainDataset(paths, SAMPLING, AUGMENT, seed=5), TCLRPretrainDataset(paths, SAMPLING, AUGMENT, seed=5)
    torch.testing.assert_close(a[3]["local"], b[3]["local"])
    assert not torch.allclose(a[3]["local"], b[len(paths) + 3]["local"])  # same video, epoch 1
    # the two augmentations of a clip differ, the clip content is shared
    assert not torch.allclose(a[3]["global"][0], a[3]["global"][1])


def test_bad_and_short_files_become_bad_samples(tiny_dataset, tmp_path):
    train, _ = read_ucf_split(tiny_dataset, 1, "train")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00not a video" * 50)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(Path(train[0].path).read_bytes()[:600])
    ds = TCLRPretrainDataset([broken, truncated, tmp_path / "missing.mp4", train[0].path],
                             ClipSampling(frames=16, stride=4, num_local=4), AUGMENT)  # needs 57 of 40 frames
    for i in range(4):
        sample = ds[i]
        assert isinstance(sample, BadSample), i
        assert sample.path == str(ds.paths[i]) and sample.reason
    assert "frames" in ds[3].reason


def test_eval_clips_dataset(tiny_dataset):
    test, _ = read_ucf_split(tiny_dataset, 1, "test")
    ds = EvalClipsDataset(test, clips=3, frames=16, stride=2, size=32)
    clips, label, index = ds[1]
    assert clips.shape == (3, 3, 16, 32, 32) and label == test[1].label and index == 1
    bad = EvalClipsDataset([type(test[0])(Path("/nonexistent.mp4"), 0)], clips=2, size=32)[0]
    assert isinstance(bad, BadSample) and "not found" in bad.reason


def test_channel_order_bgr_reverses_rgb(tiny_dataset):
    test, _ = read_ucf_split(tiny_dataset, 1, "test")
    rgb = EvalClipsDataset(test[:1], clips=1, size=32, channel_order="rgb")[0][0]
    bgr = EvalClipsDataset(test[:1], clips=1, size=32, channel_order="bgr")[0][0]
    torch.testing.assert_close(rgb.flip(1), bgr)


def test_epoch_sampler_tags_keys_with_the_epoch_and_reshuffles():
    sampler = EpochShuffleSampler(10, seed=3)
    first = list(sampler)
    assert sorted(first) == list(range(10))
    sampler.set_epoch(2)
    second = list(sampler)
    assert sorted(second) == list(range(20, 30)) and [k - 20 for k in second] != first
    assert list(sampler) == second  # deterministic for (seed, epoch)


def test_three_crop_eval_clips(tiny_dataset):
    test, _ = read_ucf_split(tiny_dataset, 1, "test")
    one = EvalClipsDataset(test[:1], clips=2, size=32)[0][0]
    three = EvalClipsDataset(test[:1], clips=2, size=32, crops=3)[0][0]
    assert three.shape == (6, 3, 16, 32, 32)
    torch.testing.assert_close(three[1], one[0])  # clip-major: the middle view is the centre crop
    with pytest.raises(ValueError, match="crops"):
        EvalClipsDataset(test, crops=2)
