import dataclasses

import numpy as np
import pytest
import torch

from tclr_zoo.data.transforms import (
    AugmentConfig,
    ClipAugParams,
    augment_clip,
    eval_clip,
    normalize_clip,
    sample_clip_params,
)


def _plain(side, top=0, left=0, **kw):
    """ClipAugParams with every op off except what kw switches on."""
    base = dict(crop_top=top, crop_left=left, crop_side=side, contrast=None, hue=None,
                saturation=None, brightness=None, grayscale=False, gamma=None,
                drop_channel=None, flip=False, erase=None)
    base.update(kw)
    return ClipAugParams(**base)


def _random_frames(t, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (t, h, w, 3), dtype=torch.uint8, generator=g)


def _smooth_frames(t, h, w, seed=0):
    """Random but spatially smooth colour frames (upsampled noise)."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(t, 3, h // 8, w // 8, generator=g)
    big = torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    return (big * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


# ---------------------------------------------------------------- shape / dtype / range

@pytest.mark.parametrize("hw,size", [((240, 320), 112), ((90, 70), 48)])
def test_output_shape_dtype_range(hw, size):
    cfg = AugmentConfig(size=size)
    frames = _random_frames(4, *hw)
    rng = np.random.default_rng(0)
    for _ in range(30):
        p = sample_clip_params(hw, cfg, rng)
        out = augment_clip(frames, p, cfg)
        assert out.shape == (3, 4, size, size)
        assert out.dtype == torch.float32
        assert out.is_contiguous()
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_all_ops_on_range():
    cfg = AugmentConfig()
    frames = _random_frames(3, 120, 160)
    for gray in (True, False):
        p = _plain(100, 5, 7, contrast=1.25, hue=0.1, saturation=1.25, brightness=1.25,
                   grayscale=gray, gamma=0.75 if gray else None,
                   drop_channel=None if gray else 1, flip=True, erase=(100, 100, 18, 18))
        out = augment_clip(frames, p, cfg)
        assert out.shape == (3, 3, 112, 112)
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_input_validation():
    cfg = AugmentConfig()
    with pytest.raises(ValueError):
        augment_clip(torch.zeros(4, 60, 80, dtype=torch.uint8), _plain(60), cfg)  # no channel dim
    with pytest.raises(ValueError):
        augment_clip(torch.zeros(2, 60, 80, 3, dtype=torch.uint8), _plain(61), cfg)  # crop too big
    with pytest.raises(ValueError):
        AugmentConfig(crop_scale=(0.8, 0.6))
    with pytest.raises(ValueError):
        AugmentConfig(p_grayscale=0.6, p_channel_drop=0.6)
    with pytest.raises(ValueError):
        AugmentConfig(p_flip=1.5)


# ---------------------------------------------------------------- per-clip consistency

def test_same_params_for_all_frames():
    cfg = AugmentConfig(size=32)
    frame = _random_frames(1, 60, 80, seed=3)
    frames = frame.expand(5, -1, -1, -1).contiguous()
    rng = np.random.default_rng(1)
    for _ in range(150):
        p = sample_clip_params((60, 80), cfg, rng)
        out = augment_clip(frames, p, cfg)
        for t in range(1, 5):
            assert torch.equal(out[:, t], out[:, 0]), p


# ---------------------------------------------------------------- geometry

def test_flip_reverses_width():
    cfg = AugmentConfig(size=64)
    frames = _random_frames(2, 64, 64)
    a = augment_clip(frames, _plain(64), cfg)
    b = augment_clip(frames, _plain(64, flip=True), cfg)
    assert torch.equal(b, a.flip(-1))
    # known pattern: value grows with x, so after the flip it decreases with x
    ramp = torch.arange(64, dtype=torch.uint8).mul(3).view(1, 1, 64, 1).expand(1, 64, 64, 3)
    out = augment_clip(ramp.contiguous(), _plain(64, flip=True), cfg)
    assert torch.equal(out[0, 0, 0], torch.arange(63, -1, -1).float().mul(3) / 255)


def _coord_frames(t, h, w):
    """channel 0 = x, channel 1 = y, channel 2 = 7 (all < 256)."""
    y, x = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    f = torch.stack([x, y, torch.full_like(x, 7)], dim=-1).to(torch.uint8)
    return f.unsqueeze(0).expand(t, -1, -1, -1).contiguous()


def test_crop_exact_region_without_resize():
    cfg = AugmentConfig(size=50)
    frames = _coord_frames(2, 120, 160)
    out = augment_clip(frames, _plain(50, top=33, left=71), cfg)
    expect = frames[:, 33:83, 71:121].permute(3, 0, 1, 2).float() / 255
    assert torch.equal(out, expect)


def test_crop_region_with_resize():
    cfg = AugmentConfig(size=50)
    frames = _coord_frames(1, 200, 240)
    top, left, side = 20, 90, 100  # 2x downscale
    out = augment_clip(frames, _plain(side, top=top, left=left), cfg) * 255
    # output pixel j covers input x in [left + 2j, left + 2j + 2): centre left + 2j + 0.5
    centres = left + 2 * torch.arange(50).float() + 0.5
    assert torch.allclose(out[0, 0, 25, 1:-1], centres[1:-1], atol=0.6)
    ycentres = top + 2 * torch.arange(50).float() + 0.5
    assert torch.allclose(out[1, 0, 1:-1, 25], ycentres[1:-1], atol=0.6)
    assert torch.all(out[2] == 7)


def test_sampled_crop_fits_and_scale():
    cfg = AugmentConfig()
    rng = np.random.default_rng(5)
    sides = []
    for _ in range(500):
        p = sample_clip_params((240, 320), cfg, rng)
        assert 0 <= p.crop_top and p.crop_top + p.crop_side <= 240
        assert 0 <= p.crop_left and p.crop_left + p.crop_side <= 320
        sides.append(p.crop_side)
    assert min(sides) >= int(240 * 0.6) and max(sides) <= 240
    assert abs(np.mean(sides) / 240 - 0.8) < 0.02


# ---------------------------------------------------------------- erase / colour

def test_erase_zeroes_exactly_the_box():
    cfg = AugmentConfig(size=40)
    frames = torch.full((2, 40, 40, 3), 200, dtype=torch.uint8)
    out = augment_clip(frames, _plain(40, erase=(5, 10, 9, 12)), cfg)
    mask = torch.zeros(40, 40, dtype=torch.bool)
    mask[5:14, 10:22] = True
    assert torch.all(out[..., mask] == 0)
    assert torch.allclose(out[..., ~mask], torch.tensor(200 / 255))
    # clipped at the border
    out = augment_clip(frames, _plain(40, erase=(35, 38, 18, 18)), cfg)
    assert int((out[0, 0] == 0).sum()) == 5 * 2
    assert torch.all(out[:, :, 35:, 38:] == 0)


def test_grayscale_makes_channels_equal():
    cfg = AugmentConfig(size=32)
    frames = _smooth_frames(3, 64, 64)
    for gamma in (None, 0.8):
        out = augment_clip(frames, _plain(64, grayscale=True, gamma=gamma), cfg)
        assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])
        assert float(out.std()) > 0.01
    # grayscale (an expanded view internally) followed by an in-place erase
    out = augment_clip(frames, _plain(64, grayscale=True, erase=(0, 0, 9, 9)), cfg)
    assert torch.all(out[:, :, :9, :9] == 0) and torch.equal(out[0], out[2])


def test_colour_ops_use_decoded_channel_order():
    # No reordering: channel 0 is treated as "R" by the RGB-weighted grayscale, like the
    # reference applying PIL ops to OpenCV (BGR) arrays.
    cfg = AugmentConfig(size=16)
    frames = torch.zeros(1, 16, 16, 3, dtype=torch.uint8)
    frames[..., 0] = 255
    out = augment_clip(frames, _plain(16, grayscale=True), cfg)
    assert torch.allclose(out, torch.full_like(out, 0.2989), atol=1e-3)


def test_channel_drop_zeroes_one_channel():
    cfg = AugmentConfig(size=32)
    frames = _smooth_frames(2, 64, 64)
    base = augment_clip(frames, _plain(64), cfg)
    for ch in range(3):
        out = augment_clip(frames, _plain(64, drop_channel=ch), cfg)
        assert torch.all(out[ch] == 0)
        others = [c for c in range(3) if c != ch]
        assert torch.equal(out[others], base[others])


def test_colour_ops_change_values_but_identity_factors_do_not():
    cfg = AugmentConfig(size=32)
    frames = _smooth_frames(2, 64, 64)
    base = augment_clip(frames, _plain(64), cfg)
    ident = augment_clip(frames, _plain(64, contrast=1.0, saturation=1.0, brightness=1.0, hue=0.0), cfg)
    assert torch.allclose(ident, base, atol=1e-5)
    for kw in (dict(contrast=1.25), dict(contrast=1.25, contrast_late=True), dict(hue=0.1),
               dict(saturation=0.75), dict(brightness=0.75)):
        out = augment_clip(frames, _plain(64, **kw), cfg)
        assert (out - base).abs().mean() > 1e-3, kw


def test_matches_pil_reference_per_frame():
    """Cross-check one frame against the reference's PIL pipeline (uint8 rounding -> tolerance)."""
    import torchvision.transforms.functional as TF
    from PIL import Image

    cfg = AugmentConfig()
    frames = _smooth_frames(1, 240, 320, seed=7)
    p = _plain(192, top=20, left=60, contrast=1.2, hue=0.07, saturation=0.8, brightness=1.1,
               flip=True, erase=(50, 60, 10, 15))
    ours = augment_clip(frames, p, cfg)[:, 0]
    img = Image.fromarray(frames[0].numpy())
    img = TF.resized_crop(img, 20, 60, 192, 192, [112, 112], interpolation=TF.InterpolationMode.BILINEAR)
    img = TF.adjust_contrast(img, 1.2)
    img = TF.adjust_hue(img, 0.07)
    img = TF.adjust_saturation(img, 0.8)
    img = TF.adjust_brightness(img, 1.1)
    img = TF.hflip(img)
    ref = TF.to_tensor(img)
    ref = TF.erase(ref, 50, 60, 10, 15, v=0)
    diff = (ours - ref).abs()
    # PIL rounds to uint8 after every op and does hue in uint8 HSV: small mean, few larger outliers
    assert float(diff.mean()) < 3 / 255
    assert float(diff.max()) < 24 / 255


# ---------------------------------------------------------------- sampling statistics

def test_probabilities_over_2000_draws():
    cfg = AugmentConfig()
    rng = np.random.default_rng(123)
    ps = [sample_clip_params((240, 320), cfg, rng) for _ in range(2000)]
    frac = lambda f: np.mean([bool(f(p)) for p in ps])
    assert abs(frac(lambda p: p.flip) - 0.5) < 0.05
    assert abs(frac(lambda p: p.grayscale) - 0.175) < 0.03
    assert abs(frac(lambda p: p.drop_channel is not None) - 0.125) < 0.03
    assert not any(p.grayscale and p.drop_channel is not None for p in ps)
    assert abs(frac(lambda p: p.contrast is not None) - 0.25) < 0.04
    assert abs(frac(lambda p: p.contrast is not None and p.contrast_late) - 0.125) < 0.03
    assert not any(p.contrast_late and p.contrast is None for p in ps)
    for name in ("hue", "saturation", "brightness"):
        assert abs(frac(lambda p: getattr(p, name) is not None) - 0.3) < 0.04, name
    assert abs(frac(lambda p: p.erase is not None) - 0.5) < 0.05
    gray = [p for p in ps if p.grayscale]
    assert abs(np.mean([p.gamma is not None for p in gray]) - 0.75) < 0.08
    assert all(p.gamma is None for p in ps if not p.grayscale)
    # value ranges
    assert all(0.75 <= p.contrast <= 1.25 for p in ps if p.contrast is not None)
    assert all(-0.1 <= p.hue <= 0.1 for p in ps if p.hue is not None)
    assert all(0.75 <= p.gamma <= 1.25 for p in ps if p.gamma is not None)
    assert {p.drop_channel for p in ps if p.drop_channel is not None} == {0, 1, 2}
    hs = [p.erase[2] for p in ps if p.erase] + [p.erase[3] for p in ps if p.erase]
    assert min(hs) == 9 and max(hs) == 18
    tl = [p.erase[0] for p in ps if p.erase] + [p.erase[1] for p in ps if p.erase]
    assert min(tl) == 0 and max(tl) == 111


def test_erase_size_scales_with_output_size():
    assert AugmentConfig().erase_size_px == (9, 18)
    assert AugmentConfig(size=224).erase_size_px == (18, 36)
    assert AugmentConfig.light(224).erase_size_px == (18, 36)


def test_light_and_none_configs():
    light = AugmentConfig.light()
    assert light.p_channel_drop == 0 and light.p_grayscale < AugmentConfig().p_grayscale
    assert light.p_erase < AugmentConfig().p_erase
    none = AugmentConfig.none(64)
    rng = np.random.default_rng(0)
    for _ in range(200):
        p = sample_clip_params((120, 160), none, rng)
        assert p.contrast is None and p.hue is None and p.saturation is None
        assert p.brightness is None and p.gamma is None and p.drop_channel is None
        assert not p.grayscale and not p.flip and p.erase is None


def test_none_leaves_colours_unchanged():
    cfg = AugmentConfig.none(48)
    frames = torch.empty(3, 120, 160, 3, dtype=torch.uint8)
    frames[..., 0], frames[..., 1], frames[..., 2] = 10, 100, 200
    rng = np.random.default_rng(9)
    for _ in range(20):
        out = augment_clip(frames, sample_clip_params((120, 160), cfg, rng), cfg)
        for c, v in enumerate((10, 100, 200)):
            assert torch.all(out[c] == v / 255)


# ---------------------------------------------------------------- determinism

def test_determinism_for_a_seed():
    cfg = AugmentConfig()
    frames = _random_frames(4, 120, 160)
    a = [sample_clip_params((120, 160), cfg, np.random.default_rng(42)) for _ in range(2)]
    assert a[0] == a[1]
    outs = [augment_clip(frames, p, cfg) for p in a]
    assert torch.equal(outs[0], outs[1])
    seq1 = [sample_clip_params((120, 160), cfg, r) for r in [np.random.default_rng(7)] for _ in range(10)]
    r = np.random.default_rng(7)
    seq2 = [sample_clip_params((120, 160), cfg, r) for _ in range(10)]
    assert seq1 == seq2
    assert sample_clip_params((120, 160), cfg, np.random.default_rng(43)) != a[0]
    assert dataclasses.is_dataclass(a[0])
    with pytest.raises(dataclasses.FrozenInstanceError):
        a[0].flip = True  # type: ignore[misc]


# ---------------------------------------------------------------- eval / normalisation

def test_eval_clip_centre_crop_exact():
    frames = _coord_frames(2, 240, 320)
    out = eval_clip(frames, size=192, crop_fraction=0.8)  # side int(240*0.8)=192 -> no resize
    expect = frames[:, 24:216, 64:256].permute(3, 0, 1, 2).float() / 255
    assert out.shape == (3, 2, 192, 192) and out.dtype == torch.float32
    assert torch.equal(out, expect)
    # resized: only the centre square contributes
    f = torch.zeros(2, 240, 320, 3, dtype=torch.uint8)
    f[:, 24:216, 64:256] = 255
    out = eval_clip(f, size=112)
    assert out.shape == (3, 2, 112, 112)
    assert torch.all(out == 1.0)
    # the two ends of the long side (3-crop testing): the crop touches the left / right border
    assert torch.equal(eval_clip(frames, size=192, position=0.0), frames[:, 24:216, 0:192].permute(3, 0, 1, 2) / 255)
    assert torch.equal(eval_clip(frames, size=192, position=1.0),
                       frames[:, 24:216, 128:320].permute(3, 0, 1, 2) / 255)
    with pytest.raises(ValueError):
        eval_clip(frames, crop_fraction=1.2)


def test_eval_clip_resized_coordinates_known_values():
    """240x320 -> centre crop 192 (rows 24..215, columns 64..255) -> 64: a 3x downscale, so output
    pixel j is centred on crop pixel 3j + 1; the antialiased bilinear filter is symmetric, so on a
    linear ramp it gives exactly the centre's value: x = 64 + 3j + 1, y = 24 + 3i + 1."""
    out = eval_clip(_coord_frames(2, 240, 320), size=64) * 255
    j = torch.arange(64, dtype=torch.float32)
    assert torch.equal(out[0].round(), (65 + 3 * j).expand(2, 64, 64))
    assert torch.equal(out[1].round(), (25 + 3 * j).view(64, 1).expand(2, 64, 64))
    assert torch.equal(out[2].round(), torch.full((2, 64, 64), 7.0))


@pytest.mark.parametrize("t,h,w,size,fraction", [(2, 240, 320, 112, 0.8), (3, 90, 70, 48, 0.8),
                                                 (2, 120, 160, 112, 1.0), (1, 101, 203, 50, 0.7),
                                                 (2, 203, 101, 40, 0.7)])
def test_eval_clip_equals_centre_crop_then_torchvision_resize(t, h, w, size, fraction):
    """The evaluation transform computed independently: torchvision's ``center_crop`` of a square of
    side int(fraction * short side), then torchvision's bilinear antialiased resize of the uint8
    crop (channels-first, contiguous), scaled to [0, 1]. Bit for bit: the same uint8 kernel."""
    import torchvision.transforms.v2.functional as TF

    frames = _random_frames(t, h, w, seed=h + w)
    side = int(min(h, w) * fraction)
    crop = TF.center_crop(frames.permute(0, 3, 1, 2).contiguous(), [side, side])
    assert crop.shape[-2:] == (side, side)
    expect = TF.resize(crop, [size, size], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    expect = (expect.float() / 255).permute(1, 0, 2, 3)
    out = eval_clip(frames, size=size, crop_fraction=fraction)
    assert out.shape == (3, t, size, size)
    assert torch.equal(out, expect)


def test_normalize_clip():
    clip = torch.rand(3, 2, 8, 8)
    assert normalize_clip(clip, None, None) is clip
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.5)
    out = normalize_clip(clip, mean, std)
    for c in range(3):
        assert torch.allclose(out[c], (clip[c] - mean[c]) / std[c])
    with pytest.raises(ValueError):
        normalize_clip(clip, mean, None)


# ---------------------------------------------------------------- fast path vs plain torchvision

@pytest.mark.parametrize("gray", [False, True])
def test_augment_clip_equals_plain_torchvision_ops(gray):
    """augment_clip's fast paths (a channels-last uint8 crop view resized in place of a contiguous
    copy, the arithmetic ``adjust_hue``, one batched call for all frames) against torchvision's ops
    applied one after the other to each frame, in the documented order. Everything but hue is the
    same arithmetic; hue matches torchvision's HSV round trip to float rounding."""
    import torchvision.transforms.v2.functional as TF

    cfg = AugmentConfig()
    frames = _smooth_frames(3, 120, 160, seed=11)
    p = _plain(96, top=13, left=41, contrast=1.2, contrast_late=gray, hue=-0.07, saturation=0.8,
               brightness=1.15, grayscale=gray, gamma=0.8 if gray else None, drop_channel=None if gray else 2,
               flip=True, erase=(30, 100, 12, 17))
    out = augment_clip(frames, p, cfg)
    assert out.shape == (3, 3, 112, 112)
    for t in range(3):
        x = frames[t, 13:13 + 96, 41:41 + 96].permute(2, 0, 1).contiguous()
        x = TF.resize(x, [112, 112], interpolation=TF.InterpolationMode.BILINEAR, antialias=True).float() / 255
        if not p.contrast_late:
            x = TF.adjust_contrast(x, p.contrast)
        x = TF.adjust_hue(x, p.hue)
        x = TF.adjust_saturation(x, p.saturation)
        x = TF.adjust_brightness(x, p.brightness)
        if p.contrast_late:
            x = TF.adjust_contrast(x, p.contrast)
        if gray:
            x = TF.adjust_gamma(TF.rgb_to_grayscale(x, num_output_channels=3), p.gamma)
        else:
            x[2] = 0.0
        x = TF.erase(TF.horizontal_flip(x), 30, 100, 12, 17, torch.tensor(0.0))
        assert float((out[:, t] - x).abs().max()) < 1e-5, t
        assert torch.all(out[:, t, 30:42, 100:] == 0)


def test_eval_clip_positions_along_the_long_side():
    from tclr_zoo.data.transforms import eval_clip

    ramp = torch.arange(40, dtype=torch.uint8).view(1, 1, 40, 1).expand(2, 20, 40, 3).contiguous()
    left, centre, right = (eval_clip(ramp, size=16, crop_fraction=0.8, position=p) for p in (0.0, 0.5, 1.0))
    assert left.shape == (3, 2, 16, 16)
    assert left[0, 0, 0, 0] < centre[0, 0, 0, 0] < right[0, 0, 0, 0]
    torch.testing.assert_close(centre, eval_clip(ramp, size=16, crop_fraction=0.8))
