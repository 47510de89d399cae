"""Per-clip augmentation for TCLR pretraining and the deterministic evaluation transform.

Semantics follow the authors' reference loader (``tclr_pretraining/dl_tclr.py``, method
``augmentation`` and the parameter draws in ``build_clip``):

* Parameters are drawn **once per clip** (:func:`sample_clip_params`) and applied identically
  to every frame of the clip (:func:`augment_clip`).
* Whole clips are processed as tensors, vectorised over frames, with
  ``torchvision.transforms.v2.functional``.  For speed the square crop is taken on the uint8
  frames, the cropped clip is resized (bilinear, antialias) to the output size while still
  uint8, and only then converted to float32 in [0, 1] for the colour operations.
* Order of operations (as in the reference)::

      crop -> resize -> [contrast (early slot)] -> hue -> saturation -> brightness
           -> [contrast (late slot)] -> grayscale (3 channels) [-> gamma]  |  drop one channel
           -> horizontal flip -> float [0, 1] -> random erase (fill 0)

  The reference applies contrast in one of two half-probability slots, before hue and after
  brightness, decided by a single uniform draw ``r``: ``r < p/2`` -> early, ``p/2 <= r < p``
  -> late.  We reproduce this exactly (``ClipAugParams.contrast_late``).  Grayscale and
  channel drop are mutually exclusive and decided by one uniform draw ``r``:
  ``r < p_grayscale`` -> grayscale, ``p_grayscale <= r < p_grayscale + p_channel_drop`` ->
  drop (the reference: ``0.7 < r < 0.875`` gray, ``r >= 0.875`` drop; same probabilities).
* **Channel order.**  Colour operations are applied to the frames *as decoded*.  The reference
  decodes with OpenCV (BGR) and applies PIL colour ops that assume RGB to those BGR arrays, so
  e.g. the grayscale weights and the hue rotation act on swapped channels.  Faithful mode keeps
  exactly that: this module never reorders channels.  Whoever decodes decides the order (and
  must record it with the weights: the authors' released weights expect BGR).
* Pixel scale [0, 1]; no mean/std normalisation in faithful mode (:func:`normalize_clip` is the
  identity when ``mean``/``std`` are ``None``).

Differences from the reference that are not semantic choices: the reference works on PIL
uint8 images, so it rounds to uint8 after every colour op; we keep float32 after the resize
(values differ by at most ~1/255 per op).  The reference draws the crop's left offset from
``[0, W - W*c]`` (a quirk: not every valid position is reachable, and it is not uniform over
them); we draw ``top`` and ``left`` uniformly over all positions that keep the crop inside the
frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

__all__ = [
    "AugmentConfig",
    "ClipAugParams",
    "sample_clip_params",
    "adjust_hue",
    "augment_clip",
    "augment_batch",
    "crop_resize_clip",
    "crop_resize_batch",
    "crop_resize_frames",
    "eval_clip",
    "normalize_clip",
]

#: Output side at which the reference erase box sizes (9..18 px) are defined.
_REFERENCE_SIZE = 112


def _check_prob(name: str, p: float) -> None:
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")


def _check_range(name: str, r: Sequence[float]) -> None:
    if len(r) != 2 or r[0] > r[1]:
        raise ValueError(f"{name} must be a (lo, hi) pair with lo <= hi, got {r!r}")


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation hyper-parameters for one clip (defaults = reference TCLR pretraining).

    ``erase_size`` is expressed in pixels **at the reference output size 112**.  For another
    ``size`` the effective box side range is ``round(lo * size / 112) .. round(hi * size / 112)``
    (at least 1), see :attr:`erase_size_px`; at ``size=112`` it is exactly ``(9, 18)``.
    """

    size: int = 112
    crop_scale: tuple[float, float] = (0.6, 1.0)  # square crop side = short_side * U(lo, hi)
    p_contrast: float = 0.25
    contrast: tuple[float, float] = (0.75, 1.25)
    p_hue: float = 0.3
    hue: tuple[float, float] = (-0.1, 0.1)
    p_saturation: float = 0.3
    saturation: tuple[float, float] = (0.75, 1.25)
    p_brightness: float = 0.3
    brightness: tuple[float, float] = (0.75, 1.25)
    p_grayscale: float = 0.175
    p_gamma_after_gray: float = 0.75
    gamma: tuple[float, float] = (0.75, 1.25)
    p_channel_drop: float = 0.125
    p_flip: float = 0.5
    p_erase: float = 0.5
    erase_size: tuple[int, int] = (9, 18)

    def __post_init__(self) -> None:
        if int(self.size) != self.size or self.size < 1:
            raise ValueError(f"size must be a positive int, got {self.size!r}")
        lo, hi = self.crop_scale
        if not (0.0 < lo <= hi <= 1.0):
            raise ValueError(f"crop_scale must satisfy 0 < lo <= hi <= 1, got {self.crop_scale!r}")
        for name in ("p_contrast", "p_hue", "p_saturation", "p_brightness", "p_grayscale",
                     "p_gamma_after_gray", "p_channel_drop", "p_flip", "p_erase"):
            _check_prob(name, getattr(self, name))
        if self.p_grayscale + self.p_channel_drop > 1.0 + 1e-12:
            raise ValueError("p_grayscale + p_channel_drop must be <= 1 (they are mutually exclusive)")
        for name in ("contrast", "hue", "saturation", "brightness", "gamma", "erase_size"):
            _check_range(name, getattr(self, name))
        if self.contrast[0] < 0 or self.saturation[0] < 0 or self.brightness[0] < 0:
            raise ValueError("contrast/saturation/brightness factors must be non-negative")
        if self.gamma[0] <= 0:
            raise ValueError("gamma must be positive")
        if not (-0.5 <= self.hue[0] and self.hue[1] <= 0.5):
            raise ValueError("hue factors must lie in [-0.5, 0.5]")
        if self.erase_size[0] < 1:
            raise ValueError("erase_size must be >= 1")

    @property
    def erase_size_px(self) -> tuple[int, int]:
        """Inclusive (lo, hi) range of the erase box side in output pixels at ``self.size``."""
        s = self.size / _REFERENCE_SIZE
        lo = max(1, int(round(self.erase_size[0] * s)))
        hi = max(lo, int(round(self.erase_size[1] * s)))
        return lo, hi

    @classmethod
    def light(cls, size: int = 112) -> "AugmentConfig":
        """Reduced augmentation for linear-evaluation training.

        Taken from the reference linear-eval loader (``linear_eval/dl_linear.py``): the same
        random crop (c ~ U(0.6, 1)); contrast p=0.125 with U[0.9, 1.1]; hue p=0.15 with
        U[-0.05, 0.05]; saturation and brightness p=0.15 with U[0.9, 1.1]; grayscale p=0.1
        followed by gamma (p=0.75) U[0.85, 1.15]; no channel drop; flip p=0.5; erase p=0.25
        with the same box sizes.
        """
        return cls(
            size=size,
            p_contrast=0.125, contrast=(0.9, 1.1),
            p_hue=0.15, hue=(-0.05, 0.05),
            p_saturation=0.15, saturation=(0.9, 1.1),
            p_brightness=0.15, brightness=(0.9, 1.1),
            p_grayscale=0.1, p_gamma_after_gray=0.75, gamma=(0.85, 1.15),
            p_channel_drop=0.0,
            p_flip=0.5,
            p_erase=0.25,
        )

    @classmethod
    def none(cls, size: int = 112) -> "AugmentConfig":
        """Random crop (+ resize) only: no colour jitter, grayscale, channel drop, flip or erase."""
        return cls(
            size=size,
            p_contrast=0.0, p_hue=0.0, p_saturation=0.0, p_brightness=0.0,
            p_grayscale=0.0, p_gamma_after_gray=0.0, p_channel_drop=0.0,
            p_flip=0.0, p_erase=0.0,
        )


@dataclass(frozen=True)
class ClipAugParams:
    """Everything drawn for one clip.  ``None`` / ``False`` means "op not applied".

    ``crop_*`` are in input-frame pixels; ``erase`` is ``(top, left, h, w)`` in output pixels
    (the box may extend past the border, it is then clipped).  ``contrast_late`` selects the
    reference's second contrast slot (after brightness) instead of the first (before hue).
    """

    crop_top: int
    crop_left: int
    crop_side: int
    contrast: float | None
    hue: float | None
    saturation: float | None
    brightness: float | None
    grayscale: bool
    gamma: float | None
    drop_channel: int | None
    flip: bool
    erase: tuple[int, int, int, int] | None
    contrast_late: bool = False


def sample_clip_params(
    frame_hw: tuple[int, int], cfg: AugmentConfig, rng: np.random.Generator
) -> ClipAugParams:
    """Draw the augmentation parameters of one clip whose frames are ``frame_hw = (H, W)``.

    The number of values drawn from ``rng`` does not depend on the outcomes, so a given seed
    always yields the same parameters and consumes the same amount of the stream.
    """
    h, w = int(frame_hw[0]), int(frame_hw[1])
    if h < 1 or w < 1:
        raise ValueError(f"frame_hw must be positive, got {frame_hw!r}")
    short = min(h, w)

    c = rng.uniform(cfg.crop_scale[0], cfg.crop_scale[1])
    side = min(short, max(1, int(short * c)))
    top = int(rng.integers(0, h - side + 1))
    left = int(rng.integers(0, w - side + 1))

    u = rng.random(8)  # decision draws, one per op slot (as the reference's random_array)
    contrast_f = float(rng.uniform(*cfg.contrast))
    hue_f = float(rng.uniform(*cfg.hue))
    sat_f = float(rng.uniform(*cfg.saturation))
    bright_f = float(rng.uniform(*cfg.brightness))
    gamma_f = float(rng.uniform(*cfg.gamma))
    drop_ch = int(rng.integers(0, 3))
    e_lo, e_hi = cfg.erase_size_px
    e_top = int(rng.integers(0, cfg.size))
    e_left = int(rng.integers(0, cfg.size))
    e_h = int(rng.integers(e_lo, e_hi + 1))
    e_w = int(rng.integers(e_lo, e_hi + 1))

    use_contrast = u[0] < cfg.p_contrast
    contrast_late = bool(use_contrast and u[0] >= cfg.p_contrast / 2)
    grayscale = bool(u[4] < cfg.p_grayscale)
    drop = (not grayscale) and u[4] < cfg.p_grayscale + cfg.p_channel_drop
    gamma = gamma_f if (grayscale and u[5] < cfg.p_gamma_after_gray) else None

    return ClipAugParams(
        crop_top=top,
        crop_left=left,
        crop_side=side,
        contrast=contrast_f if use_contrast else None,
        hue=hue_f if u[1] < cfg.p_hue else None,
        saturation=sat_f if u[2] < cfg.p_saturation else None,
        brightness=bright_f if u[3] < cfg.p_brightness else None,
        grayscale=grayscale,
        gamma=gamma,
        drop_channel=drop_ch if drop else None,
        flip=bool(u[6] < cfg.p_flip),
        erase=(e_top, e_left, e_h, e_w) if u[7] < cfg.p_erase else None,
        contrast_late=contrast_late,
    )


def _check_frames(frames: torch.Tensor) -> None:
    if not isinstance(frames, torch.Tensor):
        raise TypeError(f"frames must be a torch.Tensor, got {type(frames).__name__}")
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3], got shape {tuple(frames.shape)}")
    if frames.dtype != torch.uint8 and not frames.is_floating_point():
        raise TypeError(f"frames must be uint8 (or float in [0, 1]), got {frames.dtype}")


def _crop_resize_to_float(
    frames: torch.Tensor, top: int, left: int, side: int, size: int
) -> torch.Tensor:
    """[T,H,W,3] -> square crop -> resize to size -> contiguous float32 [T,3,size,size] in [0,1]."""
    return _to_unit_float(_crop_resize(frames, top, left, side, size))


def _crop_resize(frames: torch.Tensor, top: int, left: int, side: int, size: int) -> torch.Tensor:
    """[T,H,W,3] -> square crop -> resize to size, in the input's dtype: a [T,3,size,size] view."""
    _check_crop(top, left, side, frames.shape[1], frames.shape[2])
    # A [T,H,W,3] tensor seen as [T,3,H,W] is channels-last in memory: torchvision's uint8
    # antialiased bilinear kernel is fastest on exactly that layout.
    return _resize_square(frames.permute(0, 3, 1, 2)[:, :, top:top + side, left:left + side], size)


def crop_resize_frames(frames: torch.Tensor, top: int, left: int, side: int, size: int) -> torch.Tensor:
    """uint8 ``[T, H, W, 3]`` -> the square crop resized to ``size``, still uint8, ``[T, size, size, 3]``
    (the resize kernel's own memory layout: no copy). Every crop-and-resize of frames goes through
    here: augmentation, evaluation, and the SDK's windows (``inference/loader.CropResize``)."""
    return _crop_resize(frames, top, left, side, size).permute(0, 2, 3, 1)


def _check_crop(top: int, left: int, side: int, h: int, w: int) -> None:
    if not (0 <= top and 0 <= left and side >= 1 and top + side <= h and left + side <= w):
        raise ValueError(f"crop (top={top}, left={left}, side={side}) does not fit a {h}x{w} frame")


def _resize_square(x: torch.Tensor, size: int) -> torch.Tensor:
    """Square ``[..., 3, side, side]`` crops (channels-last in memory) -> ``[..., 3, size, size]``."""
    if x.shape[-1] != size:
        x = F.resize(x, [size, size], interpolation=InterpolationMode.BILINEAR, antialias=True)
    return x


def _to_unit_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 (or float) ``[..., 3, H, W]`` -> a new contiguous float32 tensor in [0, 1]."""
    if x.dtype == torch.uint8:
        x = x.to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)
    else:
        x = x.to(torch.float32, memory_format=torch.contiguous_format, copy=True).clamp_(0.0, 1.0)
    return x


def adjust_hue(x: torch.Tensor, hue_factor: float) -> torch.Tensor:
    """``F.adjust_hue`` for float RGB ``[..., 3, H, W]`` in [0, 1], faster (BENCHMARKS.md, P2; same result
    to ~2e-6).

    A hue shift keeps each pixel's maximum ``mx`` and minimum (so ``span = mx - min``) and moves it
    along the edge of the HSV hexagon: with ``h`` the hue in sixths of a turn, channel ``n`` (R: 5,
    G: 3, B: 1) becomes ``mx - span * clamp(min(k, 4 - k), 0, 1)``, ``k = (n + h) mod 6``. Written
    with arithmetic only (no ``where``/``gather``/``remainder``, which are slow on CPU), ties
    broken like HSV (red, then green). torchvision converts to HSV and back; the result is the
    same up to float rounding (tests/data/test_fast_paths_data.py).
    """
    if not -0.5 <= hue_factor <= 0.5:
        raise ValueError(f"hue_factor must be in [-0.5, 0.5], got {hue_factor!r}")
    if x.ndim < 3 or x.shape[-3] != 3 or not x.is_floating_point():
        raise ValueError(f"expected float RGB [..., 3, H, W], got {x.dtype} {tuple(x.shape)}")
    return _hue_shift(x, [n - 2.0 + 6.0 * hue_factor for n in _HUE_CHANNELS])


_HUE_CHANNELS = (5.0, 3.0, 1.0)  # R, G, B: channel n's trapezoid in adjust_hue's docstring


def _hue_shift(x: torch.Tensor, offsets) -> torch.Tensor:
    """adjust_hue's arithmetic; ``offsets[c] = n_c - 2 + 6 * hue_factor`` for channel c, a float or a
    tensor broadcasting against ``x[..., c, :, :]`` (one hue factor per clip in :func:`augment_batch`)."""
    r, g, b = (c.contiguous() for c in x.unbind(-3))
    mx = torch.maximum(torch.maximum(r, g), b)
    span = mx - torch.minimum(torch.minimum(r, g), b)
    # 0/1 masks of the channel holding the maximum (first of r, g, b on ties).
    r_max = (r == mx).to(x.dtype)
    g_max = (g == mx).to(x.dtype).mul_(1.0 - r_max)
    b_max = 1.0 - r_max - g_max
    # Hue in sixths of a turn, in [-1, 5): (g-b)/span, 2 + (b-r)/span or 4 + (r-g)/span.
    h = (g - b).mul_(r_max)
    h.addcmul_((b - r).add_(span, alpha=2.0), g_max)
    h.addcmul_((r - g).add_(span, alpha=4.0), b_max)
    h.div_(span.clamp_min(1e-12))  # grey pixels: span 0, any hue gives mx
    out = torch.empty_like(x)
    for channel, offset in enumerate(offsets):
        # u = k - 2 wrapped into [-3, 3): the trapezoid clamp(min(k, 4-k), 0, 1) is clamp(2 - |u|, 0, 1).
        u = h + offset
        u.sub_(torch.floor(u.mul(1.0 / 6.0).add_(0.5)), alpha=6.0)
        weight = u.abs_().neg_().add_(2.0).clamp_(0.0, 1.0)
        out.select(-3, channel).copy_(torch.addcmul(mx, span, weight, value=-1.0))
    return out


def augment_clip(frames: torch.Tensor, params: ClipAugParams, cfg: AugmentConfig) -> torch.Tensor:
    """Apply one clip's augmentation to all its frames.

    Args:
        frames: uint8 ``[T, H, W, 3]`` as decoded (channel order as decoded -- colour ops are
            applied to it as is, like the reference applies PIL ops to OpenCV BGR arrays).
            Float frames in [0, 1] are accepted too.
        params: from :func:`sample_clip_params` (drawn for frames of this H, W).
        cfg: the config (only ``cfg.size`` is used here; probabilities live in ``params``).

    Returns:
        float32 ``[3, T, size, size]`` with values in [0, 1].
    """
    _check_frames(frames)
    x = _crop_resize_to_float(frames, params.crop_top, params.crop_left, params.crop_side, cfg.size)

    if params.contrast is not None and not params.contrast_late:
        x = F.adjust_contrast(x, params.contrast)
    if params.hue is not None:
        x = adjust_hue(x, params.hue)
    if params.saturation is not None:
        x = F.adjust_saturation(x, params.saturation)
    if params.brightness is not None:
        x = F.adjust_brightness(x, params.brightness)
    if params.contrast is not None and params.contrast_late:
        x = F.adjust_contrast(x, params.contrast)

    if params.grayscale:
        x = F.rgb_to_grayscale(x, num_output_channels=3)
        if params.gamma is not None:
            x = F.adjust_gamma(x, params.gamma, gain=1.0)
    elif params.drop_channel is not None:
        x[:, params.drop_channel] = 0.0

    if params.flip:
        x = F.horizontal_flip(x)

    if params.erase is not None:
        e_top, e_left, e_h, e_w = params.erase
        if not x.is_contiguous():  # rgb_to_grayscale(..., 3) returns an expanded view
            x = x.contiguous()
        # Slicing clips the box at the bottom/right border, as the reference allows.
        x = F.erase(x, e_top, e_left, e_h, e_w, v=torch.zeros((), dtype=x.dtype), inplace=True)

    return x.permute(1, 0, 2, 3).contiguous()


def crop_resize_clip(frames: torch.Tensor, params: ClipAugParams, cfg: AugmentConfig) -> torch.Tensor:
    """The first step of :func:`augment_clip` alone: the clip's square crop resized to ``cfg.size``,
    still uint8, as ``[T, size, size, 3]`` (the resize kernel's own memory layout: no copy).

    ``augment_batch(stack([crop_resize_clip(f, p, cfg)]), [p], cfg)`` equals ``augment_clip(f, p, cfg)``
    up to float rounding; :func:`crop_resize_batch` does this for a whole batch.
    """
    _check_frames(frames)
    if frames.dtype != torch.uint8:
        raise TypeError(f"crop_resize_clip takes uint8 frames, got {frames.dtype}")
    return crop_resize_frames(frames, params.crop_top, params.crop_left, params.crop_side, cfg.size)


def crop_resize_batch(sources: Sequence[tuple[torch.Tensor, torch.Tensor]], params: Sequence[ClipAugParams],
                      cfg: AugmentConfig) -> torch.Tensor:
    """:func:`crop_resize_clip` for a batch of clips, where their frames are (the training device).

    Clip i is ``sources[i] = (frames, positions)``: the rows ``positions`` (``[T]``, int64) of the
    decoded uint8 ``frames [U, H, W, 3]``, cropped and resized as ``params[i]`` says. Clips whose
    crops have the same side share one resize call (the resize works frame by frame, so this is
    the per-clip result). Returns uint8 ``[N, T, size, size, 3]``, the input of :func:`augment_batch`.
    """
    if len(sources) != len(params) or not sources:
        raise ValueError(f"got {len(sources)} clips and {len(params)} parameter sets")
    first, positions = sources[0]
    length, size = positions.shape[0], cfg.size
    out = torch.empty(len(sources), length, size, size, 3, dtype=first.dtype, device=first.device)
    groups: dict[int, list[int]] = {}
    for i, p in enumerate(params):
        groups.setdefault(p.crop_side, []).append(i)
    for side, members in groups.items():
        crops = []
        for i in members:
            frames, rows = sources[i]
            _check_frames(frames)
            top, left = params[i].crop_top, params[i].crop_left
            _check_crop(top, left, side, frames.shape[1], frames.shape[2])
            crops.append(frames[:, top:top + side, left:left + side].index_select(0, rows))
        x = _resize_square(torch.stack(crops).flatten(0, 1).permute(0, 3, 1, 2), size)  # channels-last
        index = torch.tensor(members).to(out.device, non_blocking=True)
        out.index_copy_(0, index, x.permute(0, 2, 3, 1).unflatten(0, (len(members), length)))
    return out


def augment_batch(clips: torch.Tensor, params: Sequence[ClipAugParams], cfg: AugmentConfig,
                  device: torch.device | str | None = None, *, mean: Sequence[float] | None = None,
                  std: Sequence[float] | None = None) -> torch.Tensor:
    """:func:`augment_clip` (then :func:`normalize_clip`) for a whole batch of clips in one call, on ``device``.

    Args:
        clips: uint8 ``[N, T, size, size, 3]``, each clip already cropped and resized
            (:func:`crop_resize_batch`); float in [0, 1] is accepted too.
        params: the N clips' parameters, as drawn by :func:`sample_clip_params`.
        cfg: the config the parameters were drawn with.
        device: where to run (the clips are copied there, ``non_blocking``); default: where they are.

    Returns:
        float32 ``[N, 3, T, size, size]``, equal to stacking the per-clip path's results up to
        float rounding (tests/data/test_augment_batch.py). Each operation runs once, on the clips
        that drew it, in the reference's order, so every clip sees its own operations in that order.
    """
    if not isinstance(clips, torch.Tensor) or clips.ndim != 5 or clips.shape[-1] != 3:
        raise ValueError(f"clips must be a [N, T, H, W, 3] tensor, got {getattr(clips, 'shape', type(clips))}")
    n = clips.shape[0]
    if len(params) != n:
        raise ValueError(f"got {n} clips but {len(params)} parameter sets")
    if device is not None:
        clips = clips.to(device, non_blocking=True)
    x = _to_unit_float(clips.permute(0, 1, 4, 2, 3))  # [N, T, 3, S, S]
    dev = x.device

    def subset(values: list):
        """Indices of the clips whose value is not None/False, and their values."""
        chosen = [(i, v) for i, v in enumerate(values) if v is not None and v is not False]
        if not chosen:
            return None, []
        return torch.tensor([i for i, _ in chosen], device=dev), [v for _, v in chosen]

    def per_clip(values: list) -> torch.Tensor:  # [M, 1, 1, 1, 1], float32 like a Python scalar op
        return torch.tensor(values, dtype=torch.float32).view(-1, 1, 1, 1, 1).to(dev, non_blocking=True)

    def apply(index, fn) -> None:
        if index is not None:
            x.index_copy_(0, index, fn(x.index_select(0, index)))

    def contrast(values: list):
        def fn(y):
            mean = _grayscale(y).mean(dim=(-3, -2, -1), keepdim=True)
            return y.mul(per_clip(values)).add_(mean.mul_(per_clip([1.0 - v for v in values]))).clamp_(0.0, 1.0)
        return fn

    def blend_gray(values: list):  # adjust_saturation
        return lambda y: y.mul(per_clip(values)).add_(_grayscale(y).mul_(per_clip([1.0 - v for v in values]))).clamp_(
            0.0, 1.0)

    early = [p.contrast if not p.contrast_late else None for p in params]
    late = [p.contrast if p.contrast_late else None for p in params]
    index, values = subset(early)
    apply(index, contrast(values))
    index, values = subset([p.hue for p in params])
    # per_clip(...)[..., 0] is [M, 1, 1, 1]: it broadcasts against the hue map [M, T, S, S].
    apply(index, lambda y: _hue_shift(y, [per_clip([n - 2.0 + 6.0 * v for v in values])[..., 0]
                                          for n in _HUE_CHANNELS]))
    index, values = subset([p.saturation for p in params])
    apply(index, blend_gray(values))
    index, values = subset([p.brightness for p in params])
    apply(index, lambda y: y.mul(per_clip(values)).clamp_(0.0, 1.0))
    index, values = subset(late)
    apply(index, contrast(values))

    index, _ = subset([p.grayscale for p in params])
    apply(index, lambda y: _grayscale(y).expand(y.shape))
    index, values = subset([p.gamma if p.grayscale else None for p in params])
    apply(index, lambda y: y.pow(per_clip(values)))
    drops = [i for i, p in enumerate(params) if p.drop_channel is not None and not p.grayscale]
    if drops:
        mask = torch.zeros(n, 1, 3, 1, 1, dtype=torch.bool)
        for i in drops:
            mask[i, 0, params[i].drop_channel] = True
        x.masked_fill_(mask.to(dev, non_blocking=True), 0.0)

    index, _ = subset([p.flip for p in params])
    apply(index, lambda y: y.flip(-1))

    boxes = [(i, p.erase) for i, p in enumerate(params) if p.erase is not None]
    if boxes:  # one mask for all boxes; a box past the border is clipped, as F.erase's slicing does
        box = torch.zeros(n, 4, dtype=torch.long)
        box[:, 2:] = -1  # no box: an empty range
        for i, (top, left, h, w) in boxes:
            box[i] = torch.tensor([top, left, top + h - 1, left + w - 1])
        box = box.to(dev, non_blocking=True)
        rows = torch.arange(x.shape[-2], device=dev)
        cols = torch.arange(x.shape[-1], device=dev)
        inside_rows = (rows >= box[:, 0:1]) & (rows <= box[:, 2:3])  # [N, S]
        inside_cols = (cols >= box[:, 1:2]) & (cols <= box[:, 3:4])
        x.masked_fill_((inside_rows[:, :, None] & inside_cols[:, None, :])[:, None, None], 0.0)

    return normalize_clip(x, mean, std, channel_dim=2).permute(0, 2, 1, 3, 4).contiguous()


def _grayscale(x: torch.Tensor) -> torch.Tensor:
    """``[..., 3, H, W] -> [..., 1, H, W]`` with torchvision's weights and arithmetic (rgb_to_grayscale)."""
    r, g, b = x.unbind(dim=-3)
    return r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114).unsqueeze(-3)


def eval_clip(frames: torch.Tensor, size: int = 112, crop_fraction: float = 0.8,
              position: float = 0.5) -> torch.Tensor:
    """Deterministic evaluation transform (reference linear-eval / retrieval test loaders).

    Square crop of side ``int(crop_fraction * short_side)``, centred on the short side and placed at
    ``position`` along the long side (0.5: the centre crop, offsets rounded like torchvision's
    ``center_crop``; 0 and 1: the two ends, for 3-crop testing), bilinear antialiased resize to
    ``size``; returns float32 ``[3, T, size, size]`` in [0, 1], channel order as decoded.
    """
    _check_frames(frames)
    if not 0.0 < crop_fraction <= 1.0:
        raise ValueError(f"crop_fraction must be in (0, 1], got {crop_fraction!r}")
    if not 0.0 <= position <= 1.0:
        raise ValueError(f"position must be in [0, 1], got {position!r}")
    top, left, side = eval_crop_box(frames.shape[1], frames.shape[2], crop_fraction, position)
    x = _crop_resize_to_float(frames, top, left, side, int(size))
    return x.permute(1, 0, 2, 3).contiguous()


def eval_crop_box(h: int, w: int, crop_fraction: float, position: float = 0.5) -> tuple[int, int, int]:
    """``(top, left, side)`` of :func:`eval_clip`'s square crop in an ``h x w`` frame."""
    side = max(1, int(min(h, w) * crop_fraction))
    top = int(round((h - side) * (position if h > w else 0.5)))
    left = int(round((w - side) * (position if w >= h else 0.5)))
    return top, left, side


def normalize_clip(
    clip: torch.Tensor, mean: Sequence[float] | None, std: Sequence[float] | None, *, channel_dim: int = 0
) -> torch.Tensor:
    """Per-channel ``(clip - mean) / std`` (a new tensor): the one mean/std normalisation of the project.

    The per-clip datasets (a ``[3, T, H, W]`` clip, ``channel_dim=0``), :func:`augment_batch` (a batch
    ``[N, T, 3, H, W]``) and the SDK's windows on the CPU and on a GPU (channels-last ``[N, T, H, W, 3]``,
    ``channel_dim=-1``) all normalise here, so every path computes the same float32 operations and
    gives the same bits. The values are checked on the Python side, so a clip on a GPU is not waited for.

    Identity (returns ``clip`` itself) when both ``mean`` and ``std`` are ``None`` -- the faithful TCLR
    setting (no mean/std normalisation).
    """
    if mean is None and std is None:
        return clip
    if mean is None or std is None:
        raise ValueError("mean and std must both be given or both be None")
    channels = clip.shape[channel_dim]
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"mean/std must have {channels} entries (the clip's channel axis {channel_dim} of shape "
                         f"{tuple(clip.shape)}), got {len(mean)} and {len(std)}")
    if any(float(s) == 0.0 for s in std):
        raise ValueError("std must be non-zero")
    shape = [1] * clip.ndim
    shape[channel_dim] = channels
    m = torch.as_tensor(mean, dtype=clip.dtype, device=clip.device).reshape(shape)
    s = torch.as_tensor(std, dtype=clip.dtype, device=clip.device).reshape(shape)
    return clip.sub(m).div_(s)
