"""``Preprocessing``: one set of defaults, config.json in and out (old files too), and one clip recipe
that the SDK's paths, the user's ``VideoModel.transform`` and the training augmentation share."""

from __future__ import annotations

import dataclasses
import json
import pickle

import numpy as np
import pytest
import torch

import tclr_zoo
from tclr_zoo.data.decode import decode_frames
from tclr_zoo.data.transforms import AugmentConfig, ClipAugParams, augment_batch, normalize_clip
from tclr_zoo.hub.format import ModelLoadError, read_config, save_pretrained
from tclr_zoo.hub.resolve import random_init_model
from tclr_zoo.inference.model import VideoModel
from tclr_zoo.models.preprocessing import EvalProtocol, Preprocessing, PreprocessingError

ARCH = "r3d_10_025"

# The preprocessing section of config.json as the code of commit b94133d wrote it (save_pretrained of
# a random-init model), and of a classifier saved by `eval --protocol linear --save` from an RGB
# mean/std encoder: files on users' disks and on the Hub that must keep loading to the same values.
OLD_CONFIG_JSON = """{
  "library": "tclr_zoo",
  "library_version": "0.1.0",
  "architecture": "r3d_10_025",
  "model_args": {"kind": "r3d", "widths": [16, 32, 64, 128], "depths": [1, 1, 1, 1]},
  "head_dim": 128,
  "embedding_dims": {"backbone": 128, "retrieval": 512, "projection": 128},
  "labels": null,
  "preprocessing": {
    "channel_order": "bgr",
    "value_range": [
      0.0,
      1.0
    ],
    "mean": null,
    "std": null,
    "size": 112,
    "crop_fraction": 0.8,
    "frames": 16,
    "eval_frame_stride": 2,
    "pretrain_frame_stride": 4,
    "eval_protocol": {
      "clips": 9,
      "pooling": "temporal",
      "similarity": "cosine"
    }
  }
}"""
OLD_RGB_SECTION = {"channel_order": "rgb", "value_range": [0.0, 1.0], "mean": [0.43, 0.39, 0.37],
                   "std": [0.23, 0.22, 0.22], "size": 32, "crop_fraction": 0.875, "frames": 8,
                   "eval_frame_stride": 1, "pretrain_frame_stride": 4,
                   "eval_protocol": {"clips": 5, "pooling": "temporal", "similarity": "cosine"}}
MEAN, STD = (0.1, 0.2, 0.3), (0.5, 0.25, 0.125)


def small_model(device: str = "cpu", **preprocessing) -> VideoModel:
    """A random-init r3d_10_025 reading small clips (8 frames at 32 px unless ``preprocessing`` says)."""
    torch.manual_seed(0)
    model = tclr_zoo.load_model(ARCH, pretrained=False, device=device)
    pre = Preprocessing(**{"size": 32, "frames": 8, **preprocessing})
    return VideoModel(model.backend, pre.store(model.config), model.source)


# ---------------------------------------------------------------- one set of defaults, config.json I/O

def test_the_defaults_are_tclrs_and_the_only_ones():
    """Known answer: the reference's evaluation input (BGR, pixels / 255, no mean/std, 16 frames at
    stride 2, centre crop 0.8, 112 px, 9 clips). A random-init model and the loaders of a section with
    keys left out get exactly these."""
    expected = json.loads(OLD_CONFIG_JSON)["preprocessing"]
    # The one change from the old file: eval_protocol names the SDK head it averages, not a "pooling".
    expected["eval_protocol"] = {"clips": 9, "head": "retrieval", "similarity": "cosine"}
    assert Preprocessing().to_config() == expected
    assert random_init_model(ARCH)[1]["preprocessing"] == expected
    assert Preprocessing.from_config(json.loads(OLD_CONFIG_JSON)) == Preprocessing()
    assert Preprocessing.from_config({}) == Preprocessing() == Preprocessing.from_config({"eval_protocol": None})
    partial = Preprocessing.from_config({"size": 32, "eval_protocol": {"clips": 5}})
    assert partial == dataclasses.replace(Preprocessing(), size=32, eval_protocol=EvalProtocol(clips=5))


@pytest.mark.parametrize("pre", [Preprocessing(), Preprocessing.from_config(OLD_RGB_SECTION),
                                 Preprocessing(channel_order="rgb", frames=4, eval_frame_stride=3, size=48,
                                               crop_fraction=1.0, eval_protocol=EvalProtocol(7, "pooled", "dot"))],
                         ids=["defaults", "rgb-mean-std", "other-geometry"])
def test_to_config_and_from_config_round_trip(pre):
    section = json.loads(json.dumps(pre.to_config()))  # through the file's JSON
    assert Preprocessing.from_config(section) == pre
    whole = pre.store({"library": "tclr_zoo", "architecture": ARCH, "labels": None})
    assert list(whole) == ["library", "architecture", "labels", "preprocessing"] and whole["preprocessing"] == section
    assert Preprocessing.from_config(whole) == pre and Preprocessing.from_config(pre) is pre


def test_an_old_config_json_loads_to_the_same_values(tmp_path):
    """A folder whose config.json was written by the code before Preprocessing existed: the model
    carries the same values, and its config (and saving it again) keeps the section as it was, but for
    the evaluation protocol's old word for the head ("pooling": "temporal" -> "head": "retrieval")."""
    network, _ = random_init_model(ARCH)
    folder = save_pretrained(network, tmp_path / "old", random_init_model(ARCH)[1])
    old = json.loads(OLD_CONFIG_JSON) | {"weights_sha256": read_config(folder)["weights_sha256"]}
    (folder / "config.json").write_text(json.dumps(old, indent=2))

    model = tclr_zoo.load_model(folder, device="cpu")
    assert model.preprocessing == Preprocessing(channel_order="bgr", value_range=(0.0, 1.0), mean=None, std=None,
                                                size=112, crop_fraction=0.8, frames=16, eval_frame_stride=2,
                                                pretrain_frame_stride=4, eval_protocol=EvalProtocol(9, "retrieval",
                                                                                                    "cosine"))
    canonical = old["preprocessing"] | {"eval_protocol": {"clips": 9, "head": "retrieval", "similarity": "cosine"}}
    assert model.config["preprocessing"] == canonical
    assert (model.frames, model.size, model.plan.frames, model.plan.stride) == (16, 112, 16, 2)
    resaved = model.save_pretrained(tmp_path / "resaved")
    assert json.loads((resaved / "config.json").read_text())["preprocessing"] == canonical

    rgb = Preprocessing.from_config(OLD_RGB_SECTION)
    assert (rgb.channel_order, rgb.mean, rgb.std, rgb.size, rgb.crop_fraction, rgb.frames, rgb.eval_frame_stride,
            rgb.eval_protocol.clips) == ("rgb", (0.43, 0.39, 0.37), (0.23, 0.22, 0.22), 32, 0.875, 8, 1, 5)
    assert rgb.to_config() == OLD_RGB_SECTION | {"eval_protocol": {"clips": 5, "head": "retrieval",
                                                                   "similarity": "cosine"}}


@pytest.mark.parametrize("change,message", [
    ({"crop_frac": 0.8}, "unknown key(s) 'crop_frac'"),
    ({"channel_order": "yuv"}, "channel_order must be one of rgb, bgr, got 'yuv'"),
    ({"mean": [0.5, 0.5, 0.5]}, "mean and std must both be given"),
    ({"mean": [0.5, 0.5], "std": [0.2, 0.2]}, "mean must be a list of 3 numbers"),
    ({"mean": [0.5] * 3, "std": [0.2, 0.0, 0.2]}, "std must be positive"),
    ({"value_range": [0, 255]}, "value_range must be [0.0, 1.0]"),
    ({"size": 0}, "size must be a positive whole number, got 0"),
    ({"frames": 16.5}, "frames must be a positive whole number"),
    ({"crop_fraction": 1.5}, "crop_fraction must be in (0, 1]"),
    ({"eval_protocol": {"clip": 9}}, "eval_protocol: unknown key(s) 'clip'"),
])
def test_a_bad_section_is_one_line_naming_the_file_and_the_key(tmp_path, change, message):
    network, config = random_init_model(ARCH)
    folder = save_pretrained(network, tmp_path / "m", config)
    bad = dict(config, preprocessing={**config["preprocessing"], **change})
    (folder / "config.json").write_text(json.dumps(bad))
    with pytest.raises(ModelLoadError) as err:
        read_config(folder)
    text = str(err.value)
    assert text.startswith(f"{folder / 'config.json'}: preprocessing: ") and message in text and "\n" not in text
    with pytest.raises(PreprocessingError, match="no 'preprocessing' section"):
        Preprocessing.from_config({"library": "tclr_zoo", "architecture": ARCH})


# ---------------------------------------------------------------- the clip recipe, on every path

def spied(model: VideoModel) -> list[torch.Tensor]:
    """The clip batches ``model``'s backend is fed from now on."""
    fed, run = [], model.backend.run
    model.backend.run = lambda clips, head: fed.append(clips.clone()) or run(clips, head)
    return fed


@pytest.mark.parametrize("preprocessing", [{}, {"channel_order": "rgb", "mean": MEAN, "std": STD}],
                         ids=["bgr", "rgb-mean-std"])
def test_transform_of_rgb_frames_is_exactly_what_embed_feeds_the_network(preprocessing):
    model = small_model(**preprocessing)
    rgb = torch.randint(0, 256, (24, 40, 52, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(4))
    windows = model.plan.indices(len(rgb))
    assert windows[:, 0].tolist() == [0, 9] and windows[0].tolist() == list(range(0, 16, 2))  # 8 frames, stride 2
    fed = spied(model)
    model.embed(rgb, batch_size=8)
    expected = torch.stack([model.transform(rgb[torch.from_numpy(w)]) for w in windows])
    assert len(fed) == 1 and torch.equal(fed[0], expected)
    # the transform really flips a BGR model's RGB frames: not the clip of the unflipped frames
    unflipped = model.preprocessing.to_clip(rgb[torch.from_numpy(windows[0])])
    assert torch.equal(unflipped, expected[0]) == (model.preprocessing.channel_order == "rgb")
    # DataLoader workers get it pickled; numpy frames give the same clip
    again = pickle.loads(pickle.dumps(model.transform))
    assert torch.equal(again(rgb[torch.from_numpy(windows[1])].numpy()), expected[1])


def test_transform_of_a_users_own_decoded_frames_is_what_embed_feeds_for_the_file(video):
    """A user decoding RGB frames themselves (PyAV, torchvision.io) and applying ``model.transform``
    gets the bits ``embed(path)`` gives the network: BGR model, OpenCV's order included."""
    model = small_model()
    fed = spied(model)
    model.embed(str(video), workers=0)
    windows = model.plan.indices(24)
    clips = [model.transform(torch.from_numpy(decode_frames(str(video), w.tolist(), channel_order="rgb")))
             for w in windows]
    assert len(fed) == 1 and torch.equal(fed[0], torch.stack(clips))
    bgr = model.preprocessing.transform("bgr")
    assert torch.equal(bgr(decode_frames(str(video), windows[0].tolist(), channel_order="bgr")), clips[0])


def _known_clip() -> tuple[torch.Tensor, torch.Tensor]:
    """Frames of one colour, (51, 102, 204) in the model's order, at the model's size after the 0.8 crop
    (40 -> 32 px, no resize), and the clip every path must give: ``(pixel / 255 - mean) / std`` per
    channel in float32, about (0.2, 0.8, 4.0)."""
    frames = torch.tensor([51, 102, 204], dtype=torch.uint8).expand(8, 40, 40, 3).contiguous()
    value = (np.array([51, 102, 204], np.float32) / np.float32(255) - np.array(MEAN, np.float32)) / np.array(
        STD, np.float32)
    np.testing.assert_allclose(value, [0.2, 0.8, 4.0], rtol=1e-6)
    return frames, torch.from_numpy(value).view(3, 1, 1, 1).expand(3, 8, 32, 32)


def test_normalisation_gives_the_known_clip_on_every_path(monkeypatch):
    frames, expected = _known_clip()
    model = small_model(channel_order="rgb", mean=MEAN, std=STD)
    crops = model._crop_resize(frames)  # the windows' uint8 crop: [8, 32, 32, 3]
    paths = {
        "preprocess": model.preprocess(frames),
        "transform": model.transform(frames),
        "cpu windows": model._batch([crops])[0],
        "training augmentation": augment_batch(crops[None], [_no_op(32)], AugmentConfig(size=32), mean=MEAN,
                                               std=STD)[0],
        "normalize_clip": normalize_clip(frames.permute(3, 0, 1, 2)[:, :, 4:36, 4:36].float() / 255, MEAN, STD),
    }
    # The GPU path's own code on this CPU: only the pinned copy needs a GPU.
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: self)
    paths["gpu windows (on cpu)"] = model._batch_on_gpu([crops])[0]
    for name, clip in paths.items():
        assert clip.dtype == torch.float32 and torch.equal(clip, expected), name


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_normalisation_on_a_gpu_gives_the_known_clip():
    frames, expected = _known_clip()
    model = small_model("cuda", channel_order="rgb", mean=MEAN, std=STD)
    assert torch.equal(model._batch([model._crop_resize(frames)])[0].cpu(), expected)


def _no_op(size: int) -> ClipAugParams:
    """Augmentation parameters that crop the whole (already cropped) clip and apply nothing else."""
    return ClipAugParams(crop_top=0, crop_left=0, crop_side=size, contrast=None, hue=None, saturation=None,
                         brightness=None, grayscale=False, gamma=None, drop_channel=None, flip=False, erase=None)


@pytest.mark.parametrize(("old", "head"), [("temporal", "retrieval"), ("pooled", "backbone"),
                                           ("projection", "projection")])
def test_an_old_eval_protocol_pooling_reads_as_the_sdk_head_of_that_name(old, head):
    """Known answer: the protocols' old words for the heads map to the SDK's names, and a word that
    names no head is refused by name."""
    pre = Preprocessing.from_config({"eval_protocol": {"clips": 5, "pooling": old, "similarity": "cosine"}})
    assert pre.eval_protocol == EvalProtocol(clips=5, head=head)
    assert pre.to_config()["eval_protocol"] == {"clips": 5, "head": head, "similarity": "cosine"}
    with pytest.raises(PreprocessingError,
                       match="eval_protocol.head must be one of backbone, retrieval, projection, got .max."):
        Preprocessing.from_config({"eval_protocol": {"pooling": "max"}})
