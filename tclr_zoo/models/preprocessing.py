"""``Preprocessing``: how a model's weights want their frames, as one typed object.

Weights only mean something for input prepared the way they were trained. TCLR's reference code reads
frames with OpenCV, so the published weights expect **BGR** frames scaled to [0, 1] with no mean/std;
RGB input gives worse embeddings without any error. So the preprocessing is part of the model: it is
stored in ``config.json`` (the ``preprocessing`` section), read once into a :class:`Preprocessing`
when the model loads, and carried by it (``VideoModel.preprocessing``). Everything that prepares or
describes input -- the SDK's CPU and GPU paths, export and int8 calibration, the Triton repository,
the app, ``tclr-zoo info``, the evaluation protocols and the model card -- reads it from there, so
none of them keeps defaults of its own (the dataclass's defaults are the only ones: TCLR's).

:meth:`Preprocessing.transform` gives users the exact clip transform for their own data loaders, as
torchvision's ``weights.transforms()`` does. Mean/std normalisation is
:func:`tclr_zoo.data.transforms.normalize_clip`, shared with the training augmentation.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..constants import EMBED_HEADS, POOLING_HEADS
from ..data.transforms import eval_clip, normalize_clip

#: The key of the section in ``config.json``.
CONFIG_KEY = "preprocessing"
CHANNEL_ORDERS = ("rgb", "bgr")
#: What uint8 pixels are scaled to (pixels / 255); the only range the SDK produces.
PIXEL_RANGE = (0.0, 1.0)


class PreprocessingError(ValueError):
    """A ``preprocessing`` section that cannot describe a model's input: an unknown key or a bad value.
    The message names the key and the value; readers of a file prefix its path."""


@dataclass(frozen=True)
class EvalProtocol:
    """How the model's kNN retrieval numbers are measured (``eval_protocol`` in ``config.json``): the
    number of evenly spaced clips per video, the head (the SDK's name: ``retrieval``, ``backbone`` or
    ``projection``) whose clip features are averaged into the video's embedding, and the similarity.

    Files written before the protocols took the SDK's head names say ``pooling`` (``temporal``,
    ``pooled``, ``projection``); they read as the head of that name (:data:`~tclr_zoo.constants.POOLING_HEADS`).
    """

    clips: int = 9
    head: str = "retrieval"
    similarity: str = "cosine"

    def __post_init__(self) -> None:
        object.__setattr__(self, "clips", _integer("eval_protocol.clips", self.clips))
        head = POOLING_HEADS.get(self.head, self.head)
        if head not in EMBED_HEADS:
            raise PreprocessingError(f"eval_protocol.head must be one of {', '.join(EMBED_HEADS)}, got {self.head!r}")
        object.__setattr__(self, "head", head)
        if not isinstance(self.similarity, str):
            raise PreprocessingError(f"eval_protocol.similarity must be a string, got {self.similarity!r}")

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> "EvalProtocol":
        """The ``eval_protocol`` mapping; keys it leaves out take the defaults (an old ``pooling`` key
        names the head)."""
        section = dict(section)
        if "pooling" in section and "head" not in section:
            section["head"] = section.pop("pooling")
        return cls(**_known_keys(section, cls, "eval_protocol"))

    def to_config(self) -> dict[str, Any]:
        """The ``eval_protocol`` mapping of ``config.json``."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Preprocessing:
    """How frames become the network's input. The defaults are TCLR's (its reference code's evaluation).

    Attributes:
        channel_order: ``"bgr"`` or ``"rgb"``: the order of the colour channels the network expects.
        value_range: what uint8 pixels are scaled to; always ``(0.0, 1.0)`` (pixels / 255).
        mean, std: per channel (in ``channel_order``), applied as ``(x - mean) / std`` after scaling;
            both ``None`` for no normalisation (TCLR).
        size: the side of the square input, in pixels.
        crop_fraction: the centre crop's side as a fraction of the frame's short side, before resizing.
        frames: frames per clip.
        eval_frame_stride: decoded frames between two frames of a clip at inference and evaluation.
        pretrain_frame_stride: the same during pretraining (recorded; inference does not use it).
        eval_protocol: how the model's retrieval numbers are measured.
    """

    channel_order: str = "bgr"
    value_range: tuple[float, float] = PIXEL_RANGE
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    size: int = 112
    crop_fraction: float = 0.8
    frames: int = 16
    eval_frame_stride: int = 2
    pretrain_frame_stride: int = 4
    eval_protocol: EvalProtocol = field(default_factory=EvalProtocol)

    def __post_init__(self) -> None:
        order = self.channel_order.lower() if isinstance(self.channel_order, str) else self.channel_order
        if order not in CHANNEL_ORDERS:
            raise PreprocessingError(f"channel_order must be one of {', '.join(CHANNEL_ORDERS)}, "
                                     f"got {self.channel_order!r}")
        value_range = _numbers("value_range", self.value_range, 2)
        if value_range != PIXEL_RANGE:
            raise PreprocessingError(f"value_range must be {list(PIXEL_RANGE)} (uint8 pixels / 255), got "
                                     f"{list(value_range)}")
        mean, std = self._checked_mean_std()
        for name in ("size", "frames", "eval_frame_stride", "pretrain_frame_stride"):
            object.__setattr__(self, name, _integer(name, getattr(self, name)))
        crop = _number("crop_fraction", self.crop_fraction)
        if not 0.0 < crop <= 1.0:
            raise PreprocessingError(f"crop_fraction must be in (0, 1], got {self.crop_fraction!r}")
        protocol = EvalProtocol() if self.eval_protocol is None else self.eval_protocol
        if isinstance(protocol, Mapping):
            protocol = EvalProtocol.from_config(protocol)
        if not isinstance(protocol, EvalProtocol):
            raise PreprocessingError(f"eval_protocol must be a mapping, got {protocol!r}")
        for name, value in (("channel_order", order), ("value_range", value_range), ("mean", mean), ("std", std),
                            ("crop_fraction", crop), ("eval_protocol", protocol)):
            object.__setattr__(self, name, value)

    def _checked_mean_std(self) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
        if self.mean is None and self.std is None:
            return None, None
        if self.mean is None or self.std is None:
            raise PreprocessingError(f"mean and std must both be given or both be null, got mean={self.mean!r}, "
                                     f"std={self.std!r}")
        mean, std = _numbers("mean", self.mean, 3), _numbers("std", self.std, 3)
        if not all(s > 0 for s in std):
            raise PreprocessingError(f"std must be positive, got {list(std)}")
        return mean, std

    # ---- config.json ----------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: Any) -> "Preprocessing":
        """Read a whole ``config.json`` dict, or its ``preprocessing`` section (a ``Preprocessing`` is
        returned as it is). Keys the section leaves out take the defaults; an unknown key or a bad
        value is a :class:`PreprocessingError`.

        Args:
            config: the ``config.json`` content (a mapping with a ``preprocessing``, ``library`` or
                ``architecture`` key), the section itself, or a ``Preprocessing``.

        Returns:
            The preprocessing.

        Raises:
            PreprocessingError: a whole config without a ``preprocessing`` section, a section that is
                not a mapping, an unknown key, or a bad value (the message names the key).
        """
        if isinstance(config, Preprocessing):
            return config
        if isinstance(config, Mapping) and (CONFIG_KEY in config or "library" in config or "architecture" in config):
            if CONFIG_KEY not in config:  # a whole config.json without the section
                raise PreprocessingError(f"no {CONFIG_KEY!r} section")
            config = config[CONFIG_KEY]
        if not isinstance(config, Mapping):
            raise PreprocessingError(f"{CONFIG_KEY} must be a mapping, got {type(config).__name__}")
        try:
            return cls(**_known_keys(config, cls))
        except PreprocessingError as err:
            raise PreprocessingError(f"{CONFIG_KEY}: {err}") from None

    def to_config(self) -> dict[str, Any]:
        """The ``preprocessing`` section of ``config.json`` (JSON-ready: lists, not tuples).

        Returns:
            A new dict; ``Preprocessing.from_config`` of it gives this preprocessing back.
        """
        section = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        section.update(value_range=list(self.value_range), eval_protocol=self.eval_protocol.to_config(),
                       mean=None if self.mean is None else list(self.mean),
                       std=None if self.std is None else list(self.std))
        return section

    def store(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of the ``config.json`` content ``config`` whose ``preprocessing`` section is this one."""
        return {**config, CONFIG_KEY: self.to_config()}

    # ---- preparing input ----------------------------------------------------------------
    def to_model_order(self, rgb_frames: torch.Tensor) -> torch.Tensor:
        """RGB frames ``[..., 3]`` in the channel order the network expects (BGR: flipped)."""
        return rgb_frames.flip(-1) if self.channel_order == "bgr" else rgb_frames

    def normalize(self, x: torch.Tensor, *, channel_dim: int) -> torch.Tensor:
        """``(x - mean) / std`` over the channel axis ``channel_dim`` of clips scaled to [0, 1]; ``x``
        itself when the model uses no mean/std (:func:`~tclr_zoo.data.transforms.normalize_clip`)."""
        return normalize_clip(x, self.mean, self.std, channel_dim=channel_dim)

    def to_clip(self, frames: torch.Tensor) -> torch.Tensor:
        """One clip's frames ``[T, H, W, 3]`` already in the model's channel order (uint8, or float in
        [0, 1]) -> the float clip ``[3, T, size, size]``: centre crop, resize, scale, mean/std."""
        return self.normalize(eval_clip(frames, size=self.size, crop_fraction=self.crop_fraction), channel_dim=0)

    def transform(self, input_order: str = "rgb") -> "ClipTransform":
        """The clip transform for your own data loaders (picklable, so DataLoader workers can run it).

        Args:
            input_order: the channel order of the frames you will pass: ``"rgb"`` (PyAV, torchvision.io,
                PIL, decord) or ``"bgr"`` (OpenCV).

        Returns:
            A callable: uint8 frames ``[T, H, W, 3]`` -> float ``[3, T, size, size]``, the bits
            ``VideoModel.embed`` feeds the network for those frames.

        Raises:
            ValueError: ``input_order`` is neither ``"rgb"`` nor ``"bgr"``.
        """
        return ClipTransform(self, input_order)

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """Per channel, ``(mean, std)`` as float64 ``[3]`` arrays (0 and 1 when the model uses none)."""
        return (np.broadcast_to(np.asarray(0.0 if self.mean is None else self.mean, dtype=np.float64), (3,)),
                np.broadcast_to(np.asarray(1.0 if self.std is None else self.std, dtype=np.float64), (3,)))

    def clip_range(self) -> tuple[np.ndarray, np.ndarray]:
        """Per channel (in the model's channel order), the lowest and highest value of a prepared clip:
        ``value_range`` through ``(x - mean) / std`` (float64 ``[3]`` each)."""
        lo, hi = self.value_range
        mean, std = self.mean_std()
        return (lo - mean) / std, (hi - mean) / std


@dataclass(frozen=True)
class ClipTransform:
    """:meth:`Preprocessing.transform`: frames ``[T, H, W, 3]`` in ``input_order`` -> the network's clip.

    Pass the clip's frames already sampled (``preprocessing.frames`` of them, one every
    ``eval_frame_stride`` decoded frames), as uint8 tensors or numpy arrays; the result is float32
    ``[3, T, size, size]``; stack clips into the ``[B, 3, T, size, size]`` batch ``embed`` takes.
    """

    preprocessing: Preprocessing
    input_order: str = "rgb"

    def __post_init__(self) -> None:
        if self.input_order not in CHANNEL_ORDERS:
            raise ValueError(f"input_order must be one of {', '.join(CHANNEL_ORDERS)}, got {self.input_order!r}")

    def __call__(self, frames: torch.Tensor | np.ndarray) -> torch.Tensor:
        if isinstance(frames, np.ndarray):
            frames = torch.from_numpy(np.ascontiguousarray(frames))
        if self.input_order != self.preprocessing.channel_order:
            frames = frames.flip(-1)
        return self.preprocessing.to_clip(frames)


def _known_keys(section: Mapping[str, Any], kind: type, where: str = "") -> dict[str, Any]:
    """``section`` as keyword arguments of the dataclass ``kind``; an unknown key is refused by name."""
    known = [f.name for f in dataclasses.fields(kind)]
    unknown = [str(key) for key in section if key not in known]
    if unknown:
        raise PreprocessingError(f"{where + ': ' if where else ''}unknown key(s) {', '.join(map(repr, unknown))} "
                                 f"(known: {', '.join(known)})")
    return dict(section)


def _integer(name: str, value: Any) -> int:
    """A positive whole number (``16`` or ``16.0``; not ``True``, ``"16"`` or ``16.5``)."""
    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
            or value != int(value) or value < 1):
        raise PreprocessingError(f"{name} must be a positive whole number, got {value!r}")
    return int(value)


def _number(name: str, value: Any) -> float:
    """A finite number, as a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise PreprocessingError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _numbers(name: str, values: Any, count: int) -> tuple[float, ...]:
    """``count`` finite numbers (a list, tuple or array) as a tuple of floats."""
    items = list(values) if isinstance(values, (list, tuple, np.ndarray)) else None
    if items is None or len(items) != count:
        raise PreprocessingError(f"{name} must be a list of {count} numbers, got {values!r}")
    return tuple(_number(name, v) for v in items)


__all__ = ["CHANNEL_ORDERS", "CONFIG_KEY", "ClipTransform", "EvalProtocol", "PIXEL_RANGE", "Preprocessing",
           "PreprocessingError"]
