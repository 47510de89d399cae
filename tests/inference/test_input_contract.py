"""The SDK's input contract (``tclr_zoo/inference/inputs.py``): numpy arrays are taken wherever tensors
are, with the same results; float clips outside the range the model's preprocessing produces are
refused with the range and the way to get there; rank, dtype and range errors name what was given.
The onnx backend's half (the same checks before onnxruntime) is in test_sdk.py, beside its export."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
import torch
from hostile_videos import write_video
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

import tclr_zoo
from tclr_zoo.inference.backends import BackendError

ARCH = "r3d_10_025"  # the SDK tests' tiny network: 16 frames at 112x112, BGR, [0, 1], no mean/std
CLIP = (3, 16, 112, 112)
# Per channel, ranges [(0 - mean) / std, (1 - mean) / std] of [-2, 2], [-1, 3] and [-1, 1].
MEAN, STD = [0.5, 0.25, 0.5], [0.25, 0.25, 0.5]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return tclr_zoo.load_model(ARCH, pretrained=False, device="cpu")


@pytest.fixture(scope="module")
def normalising_model(model, tmp_path_factory):
    """The same weights saved with a mean/std in config.json's preprocessing."""
    from tclr_zoo.hub.format import save_pretrained

    config = dict(model.config, preprocessing=dict(model.config["preprocessing"], mean=MEAN, std=STD))
    folder = save_pretrained(model.torch_model, tmp_path_factory.mktemp("meanstd") / "saved", config)
    return tclr_zoo.load_model(folder, device="cpu")


def frames_array(t: int = 24, h: int = 40, w: int = 56, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def clip_array(batch: int = 2, seed: int = 1, dtype=np.float32) -> np.ndarray:
    return np.random.default_rng(seed).random((batch, *CLIP)).astype(dtype)


def test_numpy_uint8_frames_embed_exactly_like_the_equal_tensor(model):
    frames = frames_array()
    expected = model.embed(torch.from_numpy(frames.copy()))
    torch.testing.assert_close(model.embed(frames), expected, rtol=0, atol=0)
    read_only = frames.copy()
    read_only.setflags(write=False)  # np.load(mmap_mode="r"), a decoder's buffer
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "not writable" warning would be an error here
        torch.testing.assert_close(model.embed(read_only), expected, rtol=0, atol=0)
    bgr = frames[..., ::-1]  # a negative-stride view, which torch.from_numpy cannot take
    torch.testing.assert_close(model.embed(bgr), model.embed(torch.from_numpy(frames).flip(-1)), rtol=0, atol=0)


def test_lists_of_numpy_frames_and_arrays_of_paths_embed_like_their_torch_and_list_forms(model, tmp_path):
    path = str(write_video(tmp_path / "v.mp4", 24))
    a, b = frames_array(seed=2), frames_array(t=40, seed=3)
    expected = model.embed([torch.from_numpy(a), path, torch.from_numpy(b)])
    torch.testing.assert_close(model.embed([a, path, b]), expected, rtol=0, atol=0)
    paths = np.array([path, path])  # an array of path strings is a list of paths, not numbers
    torch.testing.assert_close(model.embed(paths), expected[[1, 1]], rtol=1e-4, atol=1e-5)  # other batch: rounding
    windows = model.embed_windows(b)
    torch.testing.assert_close(windows.embeddings, model.embed_windows(torch.from_numpy(b)).embeddings, rtol=0, atol=0)


def test_numpy_float_clips_embed_exactly_like_torch_float_clips(model):
    clips = clip_array()
    torch.testing.assert_close(model.embed(clips), model.embed(torch.from_numpy(clips)), rtol=0, atol=0)


def test_float64_clip_array_is_embedded_as_float32(model):
    """Documented choice: float16/32/64 clips are accepted and run in float32 (as float64 tensors were)."""
    clips = clip_array(dtype=np.float64)
    out = model.embed(clips)
    assert out.dtype == torch.float32 and out.shape == (2, model.config["embedding_dims"]["retrieval"])
    torch.testing.assert_close(out, model.embed(torch.from_numpy(clips.astype(np.float32))), rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["tensor", "numpy"])
def test_255_scaled_float_clips_are_refused_naming_the_range_and_the_fix(model, kind):
    clips = clip_array(seed=4) * np.float32(254.9)
    clips[0, 0, 0, 0, 0], clips[1, 2, 15, 111, 111] = 0.0, 254.9  # the known min and max
    given = torch.from_numpy(clips) if kind == "tensor" else clips
    expected = (r"preprocessed clips: float values in \[0, 254\.9\]; this model expects values in \[0, 1\] "
                r"\(pixels / 255, channel order BGR, no mean/std\); pass uint8 RGB frames \[T, H, W, 3\] to let the "
                r"model preprocess them, or divide by 255")
    with pytest.raises(BackendError, match=expected):
        model.embed(given)
    with pytest.raises(BackendError, match=r"float values in \[0, 1\.1\]; this model expects values in \[0, 1\]"):
        model.embed(given / 254.9 * 1.1)  # 10% above: further than any resize of [0, 1] pixels overshoots
    model.embed(given / 254.9)  # the same clips divided by their scale pass


def test_clips_in_another_convention_are_refused_with_what_to_undo(model):
    rng = torch.Generator().manual_seed(5)
    symmetric = torch.rand(1, *CLIP, generator=rng) * 2 - 1  # [-1, 1] scaling
    with pytest.raises(BackendError, match=r"float values in \[-1, 1\].*undo the scaling or mean/std normalisation"):
        model.embed(symmetric)
    overshoot = torch.rand(1, *CLIP, generator=rng) * 1.2 - 0.1  # a bicubic resize's overshoot
    with pytest.raises(BackendError, match=r"float values in \[-0\.1, 1\.1\].*clamp them to that range"):
        model.embed(overshoot)
    model.embed(overshoot.clamp(0, 1))


def test_the_range_comes_from_the_models_mean_std_per_channel(model, normalising_model):
    """Ranges [-2, 2], [-1, 3], [-1, 1] (channels 0..2); the tolerance, 0.01 of the pixel range, is
    0.04, 0.04 and 0.02 there (divided by std)."""
    white = normalising_model.preprocess(np.full((16, 40, 56, 3), 255, np.uint8))[None]
    black = normalising_model.preprocess(np.zeros((16, 40, 56, 3), np.uint8))[None]
    assert white[0, :, 0, 0, 0].tolist() == [2.0, 3.0, 1.0] and black[0, :, 0, 0, 0].tolist() == [-2.0, -1.0, -1.0]
    normalising_model.embed(torch.cat([white, black]))  # the model's own extremes are accepted
    with pytest.raises(BackendError, match=r"float values in \[-2, 3\]; this model expects values in \[0, 1\]"):
        model.embed(torch.cat([white, black]))  # the same clips, for the weights saved without mean/std

    clip = torch.zeros(1, *CLIP)
    clip[:, 1] = 2.9  # inside channel 1's range, outside channels 0 and 2's
    normalising_model.embed(clip)
    clip[:, 1], clip[:, 2] = 0.0, 1.019  # within channel 2's tolerance of 0.02
    normalising_model.embed(clip)
    clip[:, 2] = 1.021
    expected = (r"float values in \[0, 1\.021\]; this model expects values in \[-2, 2\], \[-1, 3\], \[-1, 1\] per "
                r"channel \(\(pixels / 255 - mean\) / std, mean \[0\.5, 0\.25, 0\.5\], std \[0\.25, 0\.25, 0\.5\], "
                r"channel order BGR\)")
    with pytest.raises(BackendError, match=expected):
        normalising_model.embed(clip)
    with pytest.raises(BackendError, match=r"divide by 255 and normalise with the mean/std above"):
        normalising_model.embed(torch.full((1, *CLIP), 200.0))


def test_the_tolerance_covers_the_projects_preprocessing_and_not_a_bicubic_overshoot(model):
    """The measurement behind RANGE_TOLERANCE: ``preprocess`` of black/white 1-pixel checkerboards and
    steps (the worst cases for a resize), uint8 or float frames, stays exactly in [0, 1]; a float
    bilinear antialiased resize overshoots by float rounding only; a bicubic one by more than the
    tolerance, and is refused."""
    from tclr_zoo.inference.inputs import RANGE_TOLERANCE

    assert RANGE_TOLERANCE == 0.01
    lows, highs, bilinear_overshoot, bicubic_overshoot = [], [], [], []
    for h, w in ((113, 150), (60, 80)):
        rows, cols = np.indices((h, w))
        for grid in ((rows + cols) % 2, cols >= w // 2):
            grey = (grid * 255).astype(np.uint8)
            frames = np.repeat(np.stack([grey, 255 - grey, grey], axis=-1)[None], 16, axis=0)
            for given in (frames, frames.astype(np.float32) / 255):
                clip = model.preprocess(given)
                lows.append(clip.min().item())
                highs.append(clip.max().item())
            planar = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
            bilinear = TF.resize(planar, [112, 112], interpolation=InterpolationMode.BILINEAR, antialias=True)
            bilinear_overshoot.append(max(-bilinear.min().item(), bilinear.max().item() - 1))
            bicubic = TF.resize(planar, [112, 112], interpolation=InterpolationMode.BICUBIC, antialias=True)
            bicubic_overshoot.append(max(-bicubic.min().item(), bicubic.max().item() - 1))
    assert min(lows) == 0.0 and max(highs) == 1.0  # reached, never passed
    assert max(bilinear_overshoot) < 1e-6
    assert max(bicubic_overshoot) > RANGE_TOLERANCE
    model.embed(bilinear.permute(1, 0, 2, 3)[None])
    with pytest.raises(BackendError, match="clamp them to that range"):
        model.embed(bicubic.permute(1, 0, 2, 3)[None])


REFUSALS = {  # case: (input, what the refusal must say: what was given, what is expected)
    "one clip without the batch axis": (
        np.zeros(CLIP, np.float32), r"got float32 shape \(3, 16, 112, 112\); that is one clip: add the batch axis"),
    "rank 6 clips": (
        np.zeros((1, 1, *CLIP), np.float32),
        r"must be float \[batch, 3, 16, 112, 112\], got float32 shape \(1, 1, 3, 16, 112, 112\)"),
    "channels-last clips": (
        np.zeros((2, 16, 112, 112, 3), np.float32),
        r"got float32 shape \(2, 16, 112, 112, 3\); clips are channels-first"),
    "float frames": (
        np.zeros((16, 112, 112, 3), np.float64),
        r"got float64 shape \(16, 112, 112, 3\); video frames \[T, H, W, 3\] must be uint8"),
    "uint8 clips": (
        np.zeros((2, *CLIP), np.uint8),
        r"video frames must be uint8 RGB \[T, H, W, 3\], got uint8 shape \(2, 3, 16, 112, 112\)"),
    "int32 frames": (
        np.zeros((16, 112, 112, 3), np.int32),
        r"got int32 shape \(16, 112, 112, 3\); frames of 0\.\.255 values: convert them with \.astype\(np\.uint8\)"),
    "NaN clips": (np.full((1, *CLIP), np.nan, np.float32), r"float32 shape \(1, 3, 16, 112, 112\) contain NaN or Inf"),
    "float clips in a list": (
        [np.zeros((1, *CLIP), np.float32)], r"got float32 shape \(1, 3, 16, 112, 112\) inside a list"),
    "2-d array of paths": (
        np.zeros((2, 2), "U4"), r"a numpy array of <U4 must be 1-d \(a list of video paths\), got shape \(2, 2\)"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_rank_dtype_and_value_errors_name_what_was_given(model, case):
    given, message = REFUSALS[case]
    with pytest.raises(BackendError, match=message):
        model.embed(given)


def test_a_float32_array_of_another_shape_is_refused_by_type_in_well_under_a_tenth_of_a_second(model):
    """Decided by type: the array is never walked element by element (that took ~0.2 s for this one)."""
    array = np.zeros((4_000_000, 3), np.float32)
    start = time.perf_counter()
    with pytest.raises(BackendError, match=r"must be float \[batch, 3, 16, 112, 112\], got float32 shape "
                                           r"\(4000000, 3\)"):
        model.embed(array)
    assert time.perf_counter() - start < 0.05


def test_preprocess_takes_numpy_frames_and_refuses_0_to_255_floats(model):
    frames = frames_array()
    torch.testing.assert_close(model.preprocess(frames), model.preprocess(torch.from_numpy(frames)), rtol=0, atol=0)
    # float frames in [0, 1] are taken too: the same clip up to the uint8 resize's rounding
    torch.testing.assert_close(model.preprocess(frames.astype(np.float32) / 255), model.preprocess(frames),
                               rtol=0, atol=1.5 / 255)
    with pytest.raises(BackendError, match=r"frames: float values in \[0, 255\]; float frames must be in \[0, 1\]: "
                                           r"divide by 255, or pass uint8 frames"):
        model.preprocess(frames.astype(np.float32))
    with pytest.raises(BackendError, match=r"frames must be uint8 \[T, H, W, 3\], got uint8 shape \(24, 40, 56\)"):
        model.preprocess(frames[..., 0])


def test_input_errors_are_one_type_that_the_cli_turns_into_exit_2():
    from tclr_zoo.cli.errors import user_errors
    from tclr_zoo.inference.inputs import VideoInputError

    assert issubclass(VideoInputError, BackendError) and issubclass(VideoInputError, ValueError)
    assert issubclass(VideoInputError, user_errors())
