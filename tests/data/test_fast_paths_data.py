"""Each fast path of the data pipeline tied to the simple one it replaces (benchmarks P2, P3, P6).

* decode: one swscale context per call instead of ``frame.to_ndarray`` per frame -- same bytes;
* augmentation: ``adjust_hue`` instead of torchvision's HSV round trip -- same to float rounding;
* pretraining sample: ``index_select`` and one stack per output instead of fancy indexing and nested
  stacks -- the same tensors as decoding every frame and indexing them;
* SDK windows: frames cropped and resized once as decoded, batches converted in one numpy pass in
  the channels_last_3d layout -- the same bits as ``VideoModel.preprocess`` per window.
"""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch
from real_videos import real_video
from torchvision.transforms.v2 import functional as F

import tclr_zoo
from tclr_zoo.data.datasets import TCLRPretrainDataset
from tclr_zoo.data.decode import _converter, decode_frames, probe
from tclr_zoo.data.sampling import ClipSampling, sample_tclr_indices
from tclr_zoo.data.transforms import AugmentConfig, adjust_hue, augment_clip, normalize_clip, sample_clip_params
from tclr_zoo.data.windows import WindowPlan, iter_tensor_windows, iter_video_windows
from tclr_zoo.inference.model import VideoModel

# ---------------------------------------------------------------- decode: shared swscale context

@pytest.mark.parametrize("name", ["bikes.mp4", "carphone_pristine.mp4"])
@pytest.mark.parametrize("order", ["rgb", "bgr"])
@pytest.mark.parametrize("size", [None, (112, 150), (61, 77)])
def test_converter_gives_the_bytes_of_to_ndarray(name, order, size):
    convert = _converter(order, size)
    kwargs = {} if size is None else {"height": size[0], "width": size[1]}
    with av.open(str(real_video(name))) as container:
        for i, frame in enumerate(container.decode(video=0)):
            expected = frame.to_ndarray(format=f"{order}24", **kwargs)
            got = convert(frame)
            assert got.shape == expected.shape and np.array_equal(got, expected), (name, i)
            if i == 12:
                break


def test_decode_frames_equals_decoding_every_frame():
    path = real_video("bikes.mp4")
    with av.open(str(path)) as container:
        every = np.stack([f.to_ndarray(format="bgr24") for f in container.decode(video=0)])
    for indices in ([0, 1, 2], [200, 3, 120, 120, 249], list(range(60, 124, 4))):
        assert np.array_equal(decode_frames(path, indices, channel_order="bgr"), every[indices])


# ---------------------------------------------------------------- augmentation: hue

def _colour_cases() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 40, 48, generator=g)
    x[:, :, :4] = x[:, :1, :4]  # grey pixels (no hue)
    x[:, 1, 4:8] = x[:, 0, 4:8]  # red == green ties
    x[:, 2, 8:12] = x[:, 1, 8:12]  # green == blue ties
    x[:, :, 12:14] = 0.0
    x[:, :, 14:16] = 1.0
    levels = torch.randint(0, 256, (2, 3, 30, 30), generator=g).float() / 255  # values of uint8 frames
    return [x, levels, torch.rand(3, 17, 23, generator=g)]


@pytest.mark.parametrize("factor", [0.0, 0.1, -0.1, 0.033, 0.25, -0.37, 0.5, -0.5])
def test_adjust_hue_matches_torchvision(factor):
    for x in _colour_cases():
        got, expected = adjust_hue(x, factor), F.adjust_hue(x, factor)
        assert got.shape == expected.shape and got.dtype == expected.dtype
        assert float((got - expected).abs().max()) < 1e-5, factor


def test_adjust_hue_rejects_what_torchvision_rejects():
    with pytest.raises(ValueError):
        adjust_hue(torch.rand(3, 4, 4), 0.6)
    with pytest.raises(ValueError):
        adjust_hue(torch.rand(4, 4), 0.1)


# ---------------------------------------------------------------- pretraining sample

def _decode_everything_sample(dataset: TCLRPretrainDataset, key: int) -> dict[str, torch.Tensor]:
    """The simple path: decode and convert every frame, fancy-index the clips, nested stacks."""
    epoch, index = divmod(key, len(dataset.paths))
    path = dataset.paths[index]
    rng = np.random.default_rng([dataset.seed, epoch, index])
    with av.open(path) as container:
        frames = torch.from_numpy(np.stack([f.to_ndarray(format="bgr24") for f in container.decode(video=0)]))
    indices = sample_tclr_indices(len(frames), dataset.sampling, rng, path)
    hw = (frames.shape[1], frames.shape[2])

    def augment(clip):
        return normalize_clip(augment_clip(clip, sample_clip_params(hw, dataset.augment, rng), dataset.augment),
                              dataset.mean, dataset.std)

    global_frames = frames[torch.from_numpy(indices.global_clip)]
    local_frames = frames[torch.from_numpy(indices.local_clips)]
    return {"global": torch.stack([augment(global_frames) for _ in range(2)]),
            "local": torch.stack([torch.stack([augment(c) for c in local_frames]) for _ in range(2)])}


def test_pretrain_sample_equals_decoding_every_frame():
    path = str(real_video("bikes.mp4"))
    dataset = TCLRPretrainDataset([path], ClipSampling(frames=8, stride=4, num_local=4), AugmentConfig(size=48),
                                  seed=3)
    for key in (0, 1, 5):
        fast, simple = dataset[key], _decode_everything_sample(dataset, key)
        assert fast["global"].shape == simple["global"].shape == (2, 3, 8, 48, 48)
        assert fast["local"].shape == simple["local"].shape == (2, 4, 3, 8, 48, 48)
        assert torch.equal(fast["global"], simple["global"]) and torch.equal(fast["local"], simple["local"])


# ---------------------------------------------------------------- SDK windows

@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return tclr_zoo.load_model("r3d_10_025", pretrained=False, device="cpu")


def _simple_batch(model, windows) -> torch.Tensor:
    return torch.stack([model.preprocess(w.frames) for w in windows])


@pytest.mark.parametrize("name,hop", [("bikes.mp4", None), ("bikes.mp4", 40), ("carphone_pristine.mp4", None),
                                      ("carphone_pristine.mp4", 7)])
def test_sdk_windows_give_the_bits_of_preprocess(model, name, hop):
    path = real_video(name)
    plan = WindowPlan(model.plan.frames, model.plan.stride, hop)
    simple = list(iter_video_windows(path, plan, channel_order="bgr"))
    fast = list(model._windows(str(path), hop))
    assert [(w.start, w.end) for w in fast] == [(w.start, w.end) for w in simple]
    batch = model._batch([w.frames for w in fast])
    assert batch.is_contiguous(memory_format=torch.channels_last_3d)
    assert torch.equal(batch, _simple_batch(model, simple))


@pytest.mark.parametrize("shape", [(40, 101, 77), (20, 64, 64), (18, 140, 140), (33, 90, 300)])
def test_sdk_tensor_windows_give_the_bits_of_preprocess(model, shape):
    frames = torch.randint(0, 256, shape + (3,), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    bgr = frames.flip(-1)
    simple = _simple_batch(model, iter_tensor_windows(bgr, model.plan))
    fast = model._batch([w.frames for w in model._windows(frames, None)])
    assert torch.equal(fast, simple)


def test_sdk_batch_normalises_like_normalize_clip(model):
    frames = torch.randint(0, 256, (16, 120, 160, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    config = dict(model.config, preprocessing=dict(model.config["preprocessing"], mean=[0.43, 0.39, 0.37],
                                                   std=[0.23, 0.22, 0.22]))
    normalising = VideoModel(model.backend, config, model.source)  # the preprocessing is read once, here
    assert torch.equal(normalising._batch([normalising._crop_resize(frames)])[0], normalising.preprocess(frames))


def test_crop_resize_is_per_frame(model):
    """The FrameTransform contract windows rely on: a frame's result does not depend on its batch."""
    frames = torch.randint(0, 256, (9, 100, 130, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    together = model._crop_resize(frames)
    alone = torch.cat([model._crop_resize(frames[i:i + 1]) for i in range(len(frames))])
    assert together.shape == (9, model.size, model.size, 3) and torch.equal(together, alone)


def test_embed_windows_equal_the_simple_path(model):
    path = real_video("bikes.mp4")
    simple = list(iter_video_windows(path, model.plan, channel_order="bgr"))
    expected = torch.cat([model.run(_simple_batch(model, simple[i:i + 8]), "retrieval")
                          for i in range(0, len(simple), 8)])
    got = model.embed_windows(path).embeddings
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


def test_window_transform_is_applied_once_per_frame_with_overlaps():
    path = real_video("carphone_pristine.mp4")
    seen: list[int] = []

    def halve(frames: torch.Tensor) -> torch.Tensor:
        seen.append(len(frames))
        return frames[:, ::2, ::2].contiguous()

    plan = WindowPlan(16, 2, hop=5)  # heavy overlap: each frame sits in several windows
    plain = list(iter_video_windows(path, plan, channel_order="rgb"))
    halved = list(iter_video_windows(path, plan, channel_order="rgb", transform=halve))
    assert len(plain) == len(halved)
    for a, b in zip(plain, halved):
        assert torch.equal(a.frames[:, ::2, ::2], b.frames)
    assert sum(seen) == len(np.unique(plan.indices(probe(path).num_frames)))
