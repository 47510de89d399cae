"""The SDK's input contract: what ``VideoModel.embed`` / ``classify`` / ``embed_windows`` /
``preprocess`` take, checked in one place, before either backend (torch or onnxruntime) runs.

Accepted, as torch tensors or numpy arrays alike:

* a video path (``str`` / ``os.PathLike``), or a list of them (a 1-d numpy array of strings too);
* one video as uint8 RGB frames ``[T, H, W, 3]``; a list may mix such videos with paths;
* preprocessed float clips ``[B, 3, T, H, W]`` (float16, float32 or float64; run in float32) with
  the model's ``T`` and size, finite, and with values in the range the model's preprocessing
  produces (``Preprocessing.clip_range``).

Why the range check: a float clip carries no unit. Clips of 0..255 pixels, or clips normalised
with a mean/std the model was not trained with, run without error and give embeddings that look
fine and mean nothing, so they are refused with a message that says the range expected and how
to get there; uint8 frames, which the model preprocesses itself, stay the easy path.

Decided by type first: a numpy array becomes a tensor sharing its memory (or a list, for an array
of path strings) before anything looks inside it -- an array is never walked element by element.

Every refusal is a :class:`VideoInputError` naming what was given (dtype, shape, value range) and
what is expected; it is a ``BackendError``, so the CLI turns it into exit status 2.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from ..models.preprocessing import Preprocessing
from .backends import BackendError

#: How far a preprocessed value may lie outside the range the preprocessing produces, as a fraction
#: of the pixel ``value_range`` (1/100 of [0, 1]: 2.55 grey levels; divided by ``std`` per channel
#: when the model normalises). Measured on black/white 1-pixel checkerboards, stripes, steps and
#: single dots (and their inverses) at 7 frame sizes, 57x200 to 1920x1080 (the test of this
#: module repeats the checkerboard and step cases): ``VideoModel.preprocess`` stays exactly in
#: [0, 1] (it resizes uint8, or clamps float frames); torchvision's float bilinear antialiased resize
#: overshoots by 4.8e-7; bfloat16 rounding of ImageNet-normalised values moves them by up to 1.8e-3
#: (float16: 2.2e-4) in pixel units. Bicubic resizes overshoot by up to 0.43 on such patterns and are
#: refused (the message says to clamp); the mistakes this check is for -- 0..255 pixels, [-1, 1]
#: scaling, a mean/std the model does not use -- are a whole unit or more away.
RANGE_TOLERANCE = 0.01


class VideoInputError(BackendError):
    """Input that the SDK cannot take (type, rank, dtype, shape or values); the message names what
    was given and what is expected. A ``BackendError`` (so a ``ValueError``): the CLI exits 2."""


def describe(x: torch.Tensor) -> str:
    """``float32 shape (2, 3, 16, 112, 112)``: what a refusal says was given."""
    return f"{str(x.dtype).removeprefix('torch.')} shape {tuple(x.shape)}"


def _from_array(array: np.ndarray) -> torch.Tensor | list[Any]:
    """A numpy array as what it stands for, without looking at its elements: numbers -> a tensor
    sharing its memory; a 1-d array of strings or objects -> a list (paths)."""
    if array.dtype.kind in "USO":
        if array.ndim != 1:
            raise VideoInputError(f"a numpy array of {array.dtype} must be 1-d (a list of video paths), "
                                  f"got shape {array.shape}")
        return array.tolist()
    if array.dtype.kind not in "biufc":
        raise VideoInputError(f"expected uint8 frames [T, H, W, 3] or float clips [B, 3, T, H, W], got a numpy "
                              f"array of {array.dtype} shape {array.shape}")
    if not array.dtype.isnative:  # torch reads native byte order only
        array = array.astype(array.dtype.newbyteorder("="))
    if any(stride < 0 for stride in array.strides):  # e.g. frames[..., ::-1]: torch cannot view it
        array = np.ascontiguousarray(array)
    with warnings.catch_warnings():  # a read-only array (np.load mmap, a decoder's buffer): never written
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(array)


def unarray(value: Any) -> Any:
    """``value`` with a numpy array turned into a tensor (or a list of paths); anything else as is."""
    return _from_array(value) if isinstance(value, np.ndarray) else value


def clip_batch(videos: Any) -> torch.Tensor | None:
    """``videos`` as a preprocessed float batch when it is one float tensor or array (validated later
    by :func:`check_clips`), else None (videos: :func:`video_list`)."""
    videos = unarray(videos)
    if isinstance(videos, torch.Tensor) and videos.is_floating_point():
        return videos
    return None


def video_list(videos: Any, *, _nested: bool = False) -> list[str | torch.Tensor]:
    """The accepted video inputs as a list of paths (str) and uint8 RGB frame tensors ``[T, H, W, 3]``."""
    videos = unarray(videos)
    if isinstance(videos, (str, os.PathLike)):
        return [os.fspath(videos)]
    if isinstance(videos, torch.Tensor):
        return [_frames_or_refusal(videos, _nested)]
    if isinstance(videos, Iterable) and not isinstance(videos, (bytes, dict)):
        items = list(videos)
        if not items:
            raise VideoInputError("no videos given (an empty list)")
        return [v for item in items for v in video_list(item, _nested=True)]
    raise VideoInputError(f"expected a video path, a list of paths, uint8 RGB frames [T, H, W, 3] or float clips "
                          f"[B, 3, T, H, W] (torch or numpy), got {type(videos).__name__}")


def _frames_or_refusal(x: torch.Tensor, nested: bool) -> torch.Tensor:
    """One video's uint8 RGB frames ``[T, H, W, 3]``, or a refusal that says what ``x`` is instead."""
    if x.dtype == torch.uint8 and x.ndim == 4 and x.shape[-1] == 3 and min(x.shape) > 0:
        return x
    given = describe(x)
    if x.dtype == torch.uint8 and x.ndim == 4 and x.shape[-1] == 3:
        raise VideoInputError(f"video frames: got {given}, an empty video")
    if x.is_floating_point() and nested:  # on its own, a float tensor is a clip batch (clip_batch)
        raise VideoInputError(f"got {given} inside a list: a list holds videos (paths or uint8 RGB frames "
                              "[T, H, W, 3]); pass preprocessed clips as one float batch [B, 3, T, H, W]")
    if x.is_floating_point():
        raise VideoInputError(f"video frames must be uint8 RGB [T, H, W, 3], got {given} (preprocessed float clips "
                              "[B, 3, T, H, W] go to embed or classify)")
    if x.dtype == torch.uint8:
        raise VideoInputError(f"video frames must be uint8 RGB [T, H, W, 3], got {given}"
                              + ("; preprocessed clips [B, 3, T, H, W] are float" if x.ndim == 5 else ""))
    what = "a list's videos" if nested else "videos"
    raise VideoInputError(f"{what} must be uint8 RGB frames [T, H, W, 3] or float clips [B, 3, T, H, W], got {given}"
                          "; frames of 0..255 values: convert them with .astype(np.uint8) / .to(torch.uint8)")


def check_clips(clips: Any, preprocessing: Preprocessing) -> torch.Tensor:
    """Validate preprocessed clips for a model with this ``preprocessing``: float
    ``[B, 3, frames, size, size]``, finite, in its :meth:`~Preprocessing.clip_range`.

    Returns:
        The clips as float32 (the same tensor when they already are).
    """
    frames, size = preprocessing.frames, preprocessing.size
    want = f"[batch, 3, {frames}, {size}, {size}]"
    clips = unarray(clips)
    if not isinstance(clips, torch.Tensor):
        raise VideoInputError(f"preprocessed clips must be a float tensor or array {want}, got {type(clips).__name__}")
    if not clips.is_floating_point():
        raise VideoInputError(f"preprocessed clips must be float {want}, got {describe(clips)} (pass uint8 frames "
                              "as one video [T, H, W, 3], or preprocess them first)")
    if clips.ndim != 5 or tuple(clips.shape[1:]) != (3, frames, size, size) or clips.shape[0] < 1:
        raise VideoInputError(f"preprocessed clips must be float {want}, got {describe(clips)}"
                              f"{_shape_hint(clips, frames, size)}")
    dims = (0, 2, 3, 4)
    low = clips.amin(dim=dims).double().cpu().numpy()  # NaN propagates into the channel's min and max
    high = clips.amax(dim=dims).double().cpu().numpy()
    if not (np.isfinite(low).all() and np.isfinite(high).all()):
        raise VideoInputError(f"preprocessed clips {describe(clips)} contain NaN or Inf")
    _check_range(low, high, preprocessing)
    return clips.float()


def _shape_hint(clips: torch.Tensor, frames: int, size: int) -> str:
    """What a clip batch of the wrong shape probably is, and how to make it right."""
    shape = tuple(clips.shape)
    if shape == (3, frames, size, size):
        return "; that is one clip: add the batch axis (clip[None])"
    if clips.ndim == 4 and shape[-1] == 3:
        return "; video frames [T, H, W, 3] must be uint8 RGB (0..255), the model preprocesses them"
    if clips.ndim == 5 and shape[-1] == 3 and shape[1] != 3:
        return "; clips are channels-first: permute(0, 4, 1, 2, 3)"
    if clips.ndim == 5 and shape[0] == 0:
        return " (an empty batch)"
    if clips.ndim == 5 and shape[1] == 3:
        return f"; this model takes clips of {frames} frames at {size}x{size}: model.preprocess(frames) makes them"
    return ""


def _check_range(low: np.ndarray, high: np.ndarray, preprocessing: Preprocessing) -> None:
    """Refuse clips whose per-channel ``[low, high]`` leaves the clip range by more than the tolerance."""
    lo, hi = preprocessing.clip_range()
    pixel_lo, pixel_hi = preprocessing.value_range
    slack = RANGE_TOLERANCE * (pixel_hi - pixel_lo) / np.abs(preprocessing.mean_std()[1])
    if (low >= lo - slack).all() and (high <= hi + slack).all():
        return
    hint = _range_hint(low, high, lo, hi, preprocessing)
    raise VideoInputError(f"preprocessed clips: float values in [{low.min():.4g}, {high.max():.4g}]; this model "
                          f"expects values in {_expected(lo, hi, preprocessing)}; pass uint8 RGB frames "
                          f"[T, H, W, 3] to let the model preprocess them{hint}")


def _expected(lo: np.ndarray, hi: np.ndarray, preprocessing: Preprocessing) -> str:
    """``[0, 1] (pixels / 255, channel order BGR, no mean/std)``, or per channel with a mean/std."""
    pixel_lo, pixel_hi = preprocessing.value_range
    scaled = "pixels / 255" if (pixel_lo, pixel_hi) == (0.0, 1.0) else f"pixels scaled to [{pixel_lo:g}, {pixel_hi:g}]"
    order = preprocessing.channel_order.upper()
    mean, std = preprocessing.mean, preprocessing.std
    if mean is None and std is None:
        return f"[{lo[0]:g}, {hi[0]:g}] ({scaled}, channel order {order}, no mean/std)"
    ranges = ", ".join(f"[{a:.4g}, {b:.4g}]" for a, b in zip(lo, hi))
    return f"{ranges} per channel (({scaled} - mean) / std, mean {list(mean)}, std {list(std)}, channel order {order})"


def _range_hint(low: np.ndarray, high: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                preprocessing: Preprocessing) -> str:
    """How clips of this range probably came about, said as the step that fixes them (a guess from
    the values alone: 0..255 pixels, a resize overshoot, a scaling the model does not use)."""
    pixel_lo, pixel_hi = preprocessing.value_range
    span = pixel_hi - pixel_lo
    normalised = preprocessing.mean is not None
    if (low.min() >= pixel_lo - RANGE_TOLERANCE * span
            and pixel_lo + 2 * span < high.max() <= pixel_lo + 255 * span * (1 + RANGE_TOLERANCE)):
        return (", or divide by 255" + (" and normalise with the mean/std above" if normalised else "")
                + " (the values look like 0..255 pixels)")
    reach = 0.5 * span / np.abs(preprocessing.mean_std()[1])  # a resize overshoot, not another convention
    if (low >= lo - reach).all() and (high <= hi + reach).all():
        return ", or clamp them to that range (a bicubic resize overshoots it)"
    if not normalised:
        return ", or undo the scaling or mean/std normalisation applied to them (this model uses none)"
    return ", or make them as model.preprocess(frames) does"


def check_frames(frames: Any) -> torch.Tensor:
    """``VideoModel.preprocess``'s input: one video's frames ``[T, H, W, 3]`` (tensor or array), uint8,
    or float in [0, 1] (a 0..255 float video would be clamped to white: refused)."""
    frames = unarray(frames)
    if not isinstance(frames, torch.Tensor):
        raise VideoInputError(f"frames must be a uint8 tensor or array [T, H, W, 3], got {type(frames).__name__}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or min(frames.shape) == 0:
        raise VideoInputError(f"frames must be uint8 [T, H, W, 3], got {describe(frames)}")
    if frames.dtype == torch.uint8:
        return frames
    if not frames.is_floating_point():
        raise VideoInputError(f"frames must be uint8 [T, H, W, 3] (or float in [0, 1]), got {describe(frames)}; "
                              "convert 0..255 values with .astype(np.uint8) / .to(torch.uint8)")
    low, high = float(frames.min()), float(frames.max())
    if not (np.isfinite(low) and np.isfinite(high)):
        raise VideoInputError(f"frames {describe(frames)} contain NaN or Inf")
    if low < -RANGE_TOLERANCE or high > 1.0 + RANGE_TOLERANCE:
        hint = "divide by 255, or " if low >= -RANGE_TOLERANCE and high <= 255.0 * (1 + RANGE_TOLERANCE) else ""
        raise VideoInputError(f"frames: float values in [{low:.4g}, {high:.4g}]; float frames must be in [0, 1]: "
                              f"{hint}pass uint8 frames [T, H, W, 3]")
    return frames


__all__ = ["RANGE_TOLERANCE", "VideoInputError", "check_clips", "check_frames", "clip_batch", "describe", "unarray",
           "video_list"]
