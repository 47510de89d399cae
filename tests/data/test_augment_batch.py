"""The batched, on-device augmentation equals the per-clip path (``augment_clip``).

With ``data.augment_on=device`` loader workers only decode; the training device crops and resizes
every clip (``crop_resize_batch``, uint8) and runs the rest of the augmentation for the whole batch
in one call (``augment_batch``). For the same parameters the result must be the per-clip
path's, up to float rounding, on CPU and on CUDA. (On CUDA torchvision resizes uint8 in float and
rounds, where the CPU has an integer kernel: a resized pixel may differ by one level, 1/255.)
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tclr_zoo.data.transforms import (
    AugmentConfig,
    ClipAugParams,
    augment_batch,
    augment_clip,
    crop_resize_batch,
    crop_resize_clip,
    normalize_clip,
    sample_clip_params,
)

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                  reason="no CUDA device"))]
# float32 rounding only; the uint8 crop and resize are the very same kernel on both paths
ATOL = 2e-5
CUDA_ATOL = 1e-4  # CUDA's float kernels (pow, division) round differently from the CPU's


def _frames(t=6, h=36, w=48, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(t, 3, h // 4, w // 4, generator=g)
    big = torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    noise = torch.rand(t, 3, h, w, generator=g) * 0.2
    return ((big * 0.8 + noise) * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def _params(cfg: AugmentConfig, count: int, seed: int, hw=(36, 48)) -> list[ClipAugParams]:
    rng = np.random.default_rng(seed)
    return [sample_clip_params(hw, cfg, rng) for _ in range(count)]


# Every op likely on half the clips: all combinations (and both contrast slots) show up in 24 clips.
HALF = AugmentConfig(size=16, p_contrast=0.6, p_hue=0.5, p_saturation=0.5, p_brightness=0.5, p_grayscale=0.35,
                     p_gamma_after_gray=0.6, p_channel_drop=0.35, p_flip=0.5, p_erase=0.5, erase_size=(20, 60))


def _both_paths(cfg, params, frames, device, mean=None, std=None):
    """Clip i uses rows ``positions[i]`` of ``frames[i]`` (6 decoded frames, 4 per clip, one twice)."""
    positions = [torch.tensor([4, 0, 2, 2]) if i % 2 else torch.tensor([0, 1, 3, 5]) for i in range(len(frames))]
    per_clip = torch.stack([normalize_clip(augment_clip(f[r], p, cfg), mean, std)
                            for f, r, p in zip(frames, positions, params)])
    dev = torch.device(device or "cpu")
    crops = crop_resize_batch([(f.to(dev), r.to(dev)) for f, r in zip(frames, positions)], params, cfg)
    expected = torch.stack([crop_resize_clip(f[r], p, cfg) for f, r, p in zip(frames, positions, params)])
    assert crops.dtype == torch.uint8 and crops.device == dev
    if dev.type == "cpu":
        assert torch.equal(crops, expected)  # the same integer resize kernel
    else:  # one level at most (see the module docstring); the colour ops are compared on equal crops
        assert (crops.cpu().int() - expected.int()).abs().max() <= 1
    batched = augment_batch(expected, params, cfg, device, mean=mean, std=std)
    return per_clip, batched


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cfg", [HALF, AugmentConfig(size=16)], ids=["every-op-often", "reference-probabilities"])
def test_batched_equals_per_clip(device, cfg):
    params = _params(cfg, 24, seed=3)
    frames = [_frames(seed=i) for i in range(len(params))]
    if cfg is HALF:  # the draws cover every operation and both contrast slots
        assert all(any(getattr(p, k) not in (None, False) for p in params)
                   for k in ("contrast", "hue", "saturation", "brightness", "grayscale", "gamma", "drop_channel",
                             "flip", "erase"))
        assert {p.contrast_late for p in params if p.contrast is not None} == {False, True}
    per_clip, batched = _both_paths(cfg, params, frames, device)
    assert batched.device.type == device and batched.dtype == torch.float32
    assert batched.shape == (24, 3, 4, cfg.size, cfg.size)
    torch.testing.assert_close(batched.cpu(), per_clip, atol=ATOL if device == "cpu" else CUDA_ATOL, rtol=0)


def test_each_operation_alone_and_normalisation():
    """One op per clip, so a wrong op is named by the failing clip; mean/std like normalize_clip."""
    cfg = AugmentConfig(size=16)
    base = dict(crop_top=2, crop_left=5, crop_side=30, contrast=None, hue=None, saturation=None, brightness=None,
                grayscale=False, gamma=None, drop_channel=None, flip=False, erase=None)
    ops = [{}, {"contrast": 1.2}, {"contrast": 0.8, "contrast_late": True}, {"hue": 0.07}, {"hue": -0.1},
           {"saturation": 1.2}, {"brightness": 0.8}, {"grayscale": True}, {"grayscale": True, "gamma": 1.2},
           {"drop_channel": 1}, {"flip": True}, {"erase": (10, 12, 9, 9)}, {"crop_side": 16}]
    params = [ClipAugParams(**{**base, **op}) for op in ops]
    frames = [_frames(seed=10 + i) for i in range(len(params))]
    mean, std = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]
    per_clip, batched = _both_paths(cfg, params, frames, None, mean, std)
    for i, op in enumerate(ops):
        torch.testing.assert_close(batched[i], per_clip[i], atol=ATOL, rtol=0, msg=lambda m: f"{op}: {m}")


def test_crop_resize_clip_is_uint8_and_checks_its_input():
    cfg = AugmentConfig(size=16)
    p = _params(cfg, 1, seed=0)[0]
    out = crop_resize_clip(_frames(t=4), p, cfg)
    assert out.dtype == torch.uint8 and out.shape == (4, 16, 16, 3)
    with pytest.raises(TypeError):
        crop_resize_clip(_frames().float() / 255, p, cfg)
    with pytest.raises(ValueError, match="does not fit"):
        crop_resize_clip(_frames(), dataclasses.replace(p, crop_top=30), cfg)
    with pytest.raises(ValueError, match="parameter sets"):
        augment_batch(out[None], [p, p], cfg)
    with pytest.raises(ValueError, match="does not fit"):
        crop_resize_batch([(_frames(), torch.arange(4))], [dataclasses.replace(p, crop_left=40)], cfg)


def _videos(tmp_path, count: int = 3):
    import av

    paths = []
    for i in range(count):
        rng = np.random.default_rng(i)
        path = tmp_path / f"v{i}.avi"
        with av.open(str(path), "w") as container:
            stream = container.add_stream("mpeg4", rate=25)
            stream.width, stream.height, stream.pix_fmt = 48, 36, "yuv420p"
            for _ in range(40):
                img = rng.integers(0, 256, (36, 48, 3), dtype=np.uint8)
                container.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
            container.mux(stream.encode())
        paths.append(path)
    return paths


def test_device_items_through_a_worker_give_the_worker_augmented_batch(tmp_path):
    """A loader worker sends the decoded uint8 frames and the parameters (drawn as in the per-clip
    mode, seeded by (seed, epoch, video)); augment_pretrain_batch then yields the per-clip mode's
    batch. A bad file comes back as the same BadSample from both modes."""
    from torch.utils.data import DataLoader

    from tclr_zoo.data.datasets import BadSample, TCLRPretrainDataset, augment_pretrain_batch, collate_pretrain
    from tclr_zoo.data.sampling import ClipSampling

    paths = _videos(tmp_path)
    (tmp_path / "bad.avi").write_bytes(b"not a video")
    paths.insert(1, tmp_path / "bad.avi")
    sampling = ClipSampling(frames=8, stride=2, num_local=2)
    kwargs = dict(sampling=sampling, augment=HALF, seed=5, mean=[0.5, 0.4, 0.3], std=[0.2, 0.3, 0.25])
    on_worker = TCLRPretrainDataset(paths, **kwargs)
    on_device = TCLRPretrainDataset(paths, augment_on="device", **kwargs)
    keys = [len(paths) + i for i in range(len(paths))]  # epoch 1
    expected = collate_pretrain([on_worker[k] for k in keys])
    loader = DataLoader(on_device, batch_size=len(keys), sampler=keys, num_workers=1, collate_fn=collate_pretrain)
    batch = next(iter(loader))
    assert [f.dtype for f in batch["frames"]] == [torch.uint8] * 3 and batch["frames"][0].shape[1:] == (36, 48, 3)
    assert [p.shape for p in batch["positions"]] == [(6, 8)] * 3 and [len(p) for p in batch["params"]] == [6] * 3
    assert batch["bad"] == expected["bad"] and isinstance(batch["bad"][0], BadSample)
    done = augment_pretrain_batch(batch, on_device)
    assert "params" not in done and done["videos"] == expected["videos"] == 3
    for key in ("global", "local"):
        assert done[key].shape == expected[key].shape
        torch.testing.assert_close(done[key], expected[key], atol=ATOL * 10, rtol=0)  # x 1/std
    with pytest.raises(ValueError, match="augment_on"):
        TCLRPretrainDataset(paths, augment_on="gpu")
