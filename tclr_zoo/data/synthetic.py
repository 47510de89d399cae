"""A tiny synthetic *action* dataset of real H.264 videos, laid out like UCF101, HMDB51 or Kinetics.

It exists so that the whole TCLR pipeline (decode -> sample clips -> augment -> pretrain ->
kNN retrieval) can run on a laptop CPU in minutes and show that self-supervised pretraining
learns something.  ``SyntheticConfig.layout`` picks one of the official layouts (the videos
are the same in all three; only their paths and the split files differ), written under
``root`` with ``root/manifest.json`` (generation parameters + generator version)::

    ucf101 (default)
        UCF-101/<Class>/v_<Class>_g<GG>_c<CC>.mp4
        ucfTrainTestlist/classInd.txt          "1 Class"  (1-based, sorted class names)
        ucfTrainTestlist/trainlist0{1,2,3}.txt "Class/v_Class_g03_c01.mp4 <label, 1-based>"
        ucfTrainTestlist/testlist0{1,2,3}.txt  "Class/v_Class_g01_c01.mp4"
    hmdb51
        hmdb51_org/<Class>/v_<Class>_g<GG>_c<CC>.mp4
        testTrainMulti_7030_splits/<Class>_test_split{1,2,3}.txt
                                               "v_Class_g01_c01.mp4 <id> " (1 train, 2 test, 0 unused)
    kinetics400 (one split: train and val)
        annotations/{train,val}.csv            "label,youtube_id,time_start,time_end,split,is_cc"
        {train,val}/<Class>/<youtube_id>_<start:06d>_<end:06d>.mp4

As in UCF101 the test split is made of whole groups (split 1: the first ``test_groups`` groups
of every class; splits 2 and 3 rotate to the next ``test_groups`` groups, see
:func:`split_role`) and the train split of the others.  Splits 2 and 3 also leave one clip per
class unused (HMDB51's id 0; absent from both UCF lists), so that every layout gives each
split the same train and test videos; split 1 uses every video.  A group is one "actor/scene": its clips
share the background, the object's shape, colour and texture and roughly its size, and
differ in position, speed, phase, rotation sense, camera shake and noise.  With
``shared_scenes`` (the default) group ``g`` is the *same* scene in every class, as if every
action had been filmed in every scene: appearance then carries no class information at all,
and a contrastive learner meets negatives that look alike and differ only in motion.

Class design
------------
A class is defined **only** by motion / temporal structure.  Appearance (background colour
and texture, object shape, colour, texture, size, position) is drawn from one distribution
shared by all classes, so a single frame does not tell the class but a clip does.  The
classes are chosen to stay distinct under TCLR's per-clip augmentation (horizontal flip,
60-100 % crops, colour jitter, grayscale, channel drop):

* nothing is decided by colour, and object/background contrast is large in *every* channel
  (one family is dark, the other light), so grayscale or a dropped channel keeps the object
  visible;
* no pair of classes is a horizontal mirror of each other (horizontal motion has a random
  direction, rotation a random sense);
* several pairs differ only by the direction of time (up/down, grow/shrink,
  approach/separate): temporal order matters;
* every motion is periodic or wraps around the frame edges, so any window of 16 frames at
  stride 1..4 (16..64 frames of the ~72) shows it; per-frame displacements are a few pixels
  (visible at stride 1) and stay well below half a period at stride 4 (no aliasing).

See :data:`CLASS_NAMES` for the classes (the first six are the most distinct).

Everything is deterministic for a given :class:`SyntheticConfig`: every video's pixels come
from a ``numpy`` generator seeded by ``(seed, class index, group, clip)``.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import math
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..atomic import staged_directory
from ..constants import DATASET_NAMES

__all__ = [
    "CLASS_NAMES",
    "GENERATOR_VERSION",
    "Appearance",
    "SyntheticConfig",
    "default_cache_dir",
    "generate",
    "LAYOUTS",
    "NUM_SPLITS",
    "layout_relpath",
    "read_manifest",
    "render_video",
    "sample_appearance",
    "split_role",
    "video_relpath",
    "youtube_id",
]

#: Bumped whenever the rendered pixels or the layout change; part of the manifest, so a cache
#: written by another version is rebuilt.
GENERATOR_VERSION = 3

#: The official dataset layouts the generator can write (see the module docstring).
LAYOUTS: tuple[str, ...] = tuple(DATASET_NAMES)

#: Splits written for the ucf101 and hmdb51 layouts (kinetics400 has one: train/val).
NUM_SPLITS = 3

_GENERATOR_ID = "tclr_zoo.data.synthetic"

#: Motion classes.  A config uses the first ``num_classes`` of them (the first six are the
#: most distinct); labels follow the *sorted* names of the classes used, like UCF101.
CLASS_NAMES: tuple[str, ...] = (
    "MoveUp",  # translates upwards, wrapping around the top/bottom edges
    "MoveDown",  # translates downwards, wrapping around
    "MoveSideways",  # translates horizontally (direction random: flip invariant), wrapping
    "Grow",  # stays in place, slowly grows then snaps back small (sawtooth)
    "Shrink",  # stays in place, slowly shrinks then snaps back big (sawtooth)
    "Blink",  # stays in place, periodically appears / disappears
    "Spin",  # stays in place, rotates (sense random: flip invariant)
    "Bounce",  # ball bouncing on a floor: |sin| vertical oscillation
    "Approach",  # two copies slide towards each other until they merge, then restart apart
    "Separate",  # two copies start merged and slide apart, then restart merged
)

_SHAPES = ("disc", "square", "triangle", "bar", "cross", "pacman", "halfdisc")
_OBJ_TEXTURES = ("solid", "stripes", "split")
_BG_TEXTURES = ("flat", "gradient", "stripes", "checker", "blobs")

# Colour families.  Background and object are always from opposite families, so every
# channel differs by >= ~60 levels even after texturing (see _object_colour_field).
_DARK = (0.0, 90.0)
_LIGHT = (165.0, 255.0)
_BG_CLIP_DARK = (0.0, 105.0)
_BG_CLIP_LIGHT = (150.0, 255.0)


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of the synthetic dataset (all of them go into the manifest)."""

    num_classes: int = 6
    groups: int = 6  # groups ("actors/scenes") per class
    clips_per_group: int = 3
    test_groups: int = 2  # the first N groups of every class form the test list (split 1)
    frames: int = 72
    height: int = 64
    width: int = 64
    fps: int = 25
    seed: int = 0
    shared_scenes: bool = True  # group g has the same appearance in every class
    layout: str = "ucf101"  # one of LAYOUTS: where the videos and split files go (not their pixels)

    def __post_init__(self) -> None:
        if not 1 <= self.num_classes <= len(CLASS_NAMES):
            raise ValueError(f"num_classes must be in [1, {len(CLASS_NAMES)}], got {self.num_classes}")
        if self.groups < 2 or self.groups > 99:
            raise ValueError(f"groups must be in [2, 99], got {self.groups}")
        if not 1 <= self.test_groups < self.groups:
            raise ValueError(f"test_groups must be in [1, groups - 1], got {self.test_groups}")
        if not 1 <= self.clips_per_group <= 99:
            raise ValueError(f"clips_per_group must be in [1, 99], got {self.clips_per_group}")
        if self.frames < 1:
            raise ValueError(f"frames must be >= 1, got {self.frames}")
        for name in ("height", "width"):
            v = getattr(self, name)
            if v < 16 or v % 2:
                raise ValueError(f"{name} must be even and >= 16 (yuv420p), got {v}")
        if self.fps < 1:
            raise ValueError(f"fps must be >= 1, got {self.fps}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")

    @property
    def class_names(self) -> tuple[str, ...]:
        """The classes used, sorted (label ``i`` is ``class_names[i]``, 0-based)."""
        return tuple(sorted(CLASS_NAMES[: self.num_classes]))

    @property
    def num_videos(self) -> int:
        return self.num_classes * self.groups * self.clips_per_group


def default_cache_dir() -> Path:
    """``$TCLR_ZOO_CACHE/synthetic``, or ``~/.cache/tclr_zoo/synthetic``."""
    base = os.environ.get("TCLR_ZOO_CACHE")
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "tclr_zoo"
    return root / "synthetic"


def video_relpath(class_name: str, group: int, clip: int) -> str:
    """``"<Class>/v_<Class>_gGG_cCC.mp4"`` (group and clip 1-based), relative to ``UCF-101/``."""
    return f"{class_name}/v_{class_name}_g{group:02d}_c{clip:02d}.mp4"


def split_role(config: SyntheticConfig, split: int, group: int, clip: int) -> str:
    """``"train"``, ``"test"`` or ``"unused"``: the part a video plays in ``split`` (1-based).

    The test groups of split ``s`` are the ``test_groups`` groups after those of split ``s - 1``
    (wrapping around), like UCF101's three splits; split 1 takes groups ``1..test_groups``.
    Splits 2 and 3 leave the last clip of the first train group unused (when a group has
    several clips), as HMDB51 leaves clips out of each split.
    """
    if not 1 <= split <= NUM_SPLITS:
        raise ValueError(f"split must be in [1, {NUM_SPLITS}], got {split}")
    k, groups = config.test_groups, config.groups
    test = {((split - 1) * k + j) % groups + 1 for j in range(k)}
    if group in test:
        return "test"
    first_train = min(set(range(1, groups + 1)) - test)
    if split > 1 and config.clips_per_group > 1 and group == first_train and clip == config.clips_per_group:
        return "unused"
    return "train"


def youtube_id(class_name: str, group: int, clip: int) -> str:
    """A made-up, stable 11-character YouTube-style id (``[A-Za-z0-9_-]``) for the kinetics400 layout."""
    digest = hashlib.sha1(f"{class_name}/{group}/{clip}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:11]


def _kinetics_times(config: SyntheticConfig, group: int, clip: int) -> tuple[int, int]:
    start = 10 * (clip - 1) + group
    return start, start + max(1, math.ceil(config.frames / config.fps))


def layout_relpath(config: SyntheticConfig, class_name: str, group: int, clip: int) -> str:
    """Where the video goes under ``root`` in ``config.layout`` (POSIX separators)."""
    if config.layout == "ucf101":
        return f"UCF-101/{video_relpath(class_name, group, clip)}"
    if config.layout == "hmdb51":
        return f"hmdb51_org/{video_relpath(class_name, group, clip)}"
    subset = "val" if split_role(config, 1, group, clip) == "test" else "train"
    start, end = _kinetics_times(config, group, clip)
    return f"{subset}/{class_name}/{youtube_id(class_name, group, clip)}_{start:06d}_{end:06d}.mp4"


# --------------------------------------------------------------------------------------------
# Appearance
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Appearance:
    """What a group ("actor/scene") looks like; shared by the clips of a group."""

    bg_colour: tuple[float, float, float]
    bg_dark: bool
    bg_texture: str
    bg_params: tuple[float, ...]  # texture parameters (meaning depends on bg_texture)
    shape: str
    obj_colour: tuple[float, float, float]
    obj_texture: str
    obj_texture_period: float  # stripe period, in units of the object radius
    size: float  # object "radius" in pixels at 64 px frames, before per-clip jitter


def _uniform3(rng: np.random.Generator, lo_hi: tuple[float, float]) -> tuple[float, float, float]:
    return tuple(float(v) for v in rng.uniform(lo_hi[0], lo_hi[1], size=3))  # type: ignore[return-value]


def sample_appearance(rng: np.random.Generator) -> Appearance:
    """Draw a group's appearance; the distribution is the same for every class."""
    bg_dark = bool(rng.random() < 0.5)
    bg_colour = _uniform3(rng, _DARK if bg_dark else _LIGHT)
    obj_colour = _uniform3(rng, _LIGHT if bg_dark else _DARK)
    bg_texture = _BG_TEXTURES[int(rng.integers(len(_BG_TEXTURES)))]
    # Generic parameter vector; each texture reads what it needs (angles, periods, amplitudes).
    bg_params = tuple(float(v) for v in rng.random(12))
    shape = _SHAPES[int(rng.integers(len(_SHAPES)))]
    if shape == "disc":  # a plain disc would hide rotation: always textured
        obj_texture = _OBJ_TEXTURES[1 + int(rng.integers(2))]
    else:
        obj_texture = _OBJ_TEXTURES[int(rng.integers(len(_OBJ_TEXTURES)))]
    return Appearance(
        bg_colour=bg_colour,
        bg_dark=bg_dark,
        bg_texture=bg_texture,
        bg_params=bg_params,
        shape=shape,
        obj_colour=obj_colour,
        obj_texture=obj_texture,
        obj_texture_period=float(rng.uniform(0.6, 1.0)),
        size=float(rng.uniform(8.5, 12.5)),
    )


def _background(app: Appearance, ys: np.ndarray, xs: np.ndarray, s: float) -> np.ndarray:
    """Background in world coordinates ``ys`` [T,H,1], ``xs`` [T,1,W] -> [T,H,W,3] float32."""
    p = app.bg_params
    t = app.bg_texture
    if t == "flat":
        mod = np.zeros(np.broadcast_shapes(ys.shape, xs.shape), np.float32)
    elif t == "gradient":
        a = 2 * math.pi * p[0]
        amp = 12 + 10 * p[1]
        span = 64.0 * s
        mod = amp * ((math.cos(a) * xs + math.sin(a) * ys) / span * 2 - 1)
    elif t == "stripes":
        a = math.pi * p[0]
        period = (6 + 10 * p[1]) * s
        amp = 8 + 8 * p[2]
        mod = amp * np.sin(2 * math.pi * (math.cos(a) * xs + math.sin(a) * ys) / period + 6.3 * p[3])
    elif t == "checker":
        cell = (5 + 7 * p[0]) * s
        amp = 8 + 6 * p[1]
        mod = amp * np.sign(np.sin(math.pi * (xs + 9 * p[2]) / cell) * np.sin(math.pi * (ys + 9 * p[3]) / cell))
    elif t == "blobs":
        mod = 0.0
        for k in range(3):
            a = 2 * math.pi * p[3 * k]
            period = (18 + 30 * p[3 * k + 1]) * s
            mod = mod + 7 * np.sin(2 * math.pi * (math.cos(a) * xs + math.sin(a) * ys) / period + 6.3 * p[3 * k + 2])
    else:  # pragma: no cover - guarded by sample_appearance
        raise ValueError(t)
    mod = np.asarray(mod, np.float32)
    # Slightly different gain per channel so textures are not perfectly gray.
    gains = np.asarray([0.85 + 0.3 * p[9], 0.85 + 0.3 * p[10], 0.85 + 0.3 * p[11]], np.float32)
    bg = np.asarray(app.bg_colour, np.float32) + mod[..., None] * gains
    lo, hi = _BG_CLIP_DARK if app.bg_dark else _BG_CLIP_LIGHT
    return np.clip(bg, lo, hi)


# --------------------------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------------------------


def _shape_sdf(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Approximate signed distance (in radius units, < 0 inside) of a unit-size shape."""
    if shape == "disc":
        return np.hypot(u, v) - 1.0
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) - 0.82
    if shape == "triangle":  # equilateral, circumradius ~1.2, apex towards +v
        d = None
        for phi in (-math.pi / 2, math.pi / 6, 5 * math.pi / 6):
            h = -(u * math.cos(phi) + v * math.sin(phi))  # flip so the apex points to +v
            d = h if d is None else np.maximum(d, h)
        return d - 0.6
    if shape == "bar":
        return np.maximum(np.abs(u) - 1.05, np.abs(v) - 0.42)
    if shape == "cross":
        arm_a = np.maximum(np.abs(u) - 1.0, np.abs(v) - 0.34)
        arm_b = np.maximum(np.abs(u) - 0.34, np.abs(v) - 1.0)
        return np.minimum(arm_a, arm_b)
    if shape == "pacman":  # disc with a 70 degree mouth towards +u
        rho = np.hypot(u, v)
        ang = np.abs(np.arctan2(v, u)) - math.radians(35)
        d_mouth = rho * np.sin(np.clip(ang, -math.pi / 2, math.pi / 2))  # > 0 outside the mouth
        return np.maximum(rho - 1.05, -d_mouth)
    if shape == "halfdisc":  # flat side through the centre, bulge towards +v
        return np.maximum(np.hypot(u, v) - 1.15, -v - 0.15)
    raise ValueError(shape)  # pragma: no cover


@dataclass
class _Obj:
    """One object's trajectory: arrays of length T (radius in pixels, angle in radians)."""

    cy: np.ndarray
    cx: np.ndarray
    radius: np.ndarray
    angle: np.ndarray
    visible: np.ndarray  # bool
    wrap_y: bool = False
    wrap_x: bool = False


def _object_colour_field(app: Appearance, u: np.ndarray, v: np.ndarray, tint: np.ndarray) -> np.ndarray:
    """Colour of the object surface in object coordinates -> [..., 3]."""
    family = _LIGHT if app.bg_dark else _DARK
    c1 = np.clip(np.asarray(app.obj_colour, np.float32) + tint, *family).astype(np.float32)
    # Second tone: 45 levels brighter or darker (same sign in every channel, towards the middle
    # of the family), so the texture survives grayscale (>= ~30 gray levels) and the background
    # stays >= ~60 levels away in every channel.
    step = np.float32(45.0 if c1.mean() <= (family[0] + family[1]) / 2 else -45.0)
    c2 = np.clip(c1 + step, *family).astype(np.float32)
    if app.obj_texture == "solid":
        return np.broadcast_to(c1, u.shape + (3,))
    if app.obj_texture == "stripes":
        w = (np.sin(math.pi * u / app.obj_texture_period) > 0).astype(np.float32)
    else:  # split: one half of the object in each tone
        w = (v > 0).astype(np.float32)
    w = w[..., None]
    return c1 * (1 - w) + c2 * w


def _draw(img: np.ndarray, obj: _Obj, app: Appearance, ys: np.ndarray, xs: np.ndarray, tint: np.ndarray) -> None:
    """Composite ``obj`` onto ``img`` [T,H,W,3] in place (anti-aliased edge)."""
    H, W = img.shape[1:3]
    f32 = np.float32
    dy = ys - obj.cy.astype(f32)[:, None, None]
    dx = xs - obj.cx.astype(f32)[:, None, None]
    if obj.wrap_y:
        dy = (dy + H / 2) % H - H / 2
    if obj.wrap_x:
        dx = (dx + W / 2) % W - W / 2
    dy, dx = np.broadcast_arrays(dy, dx)
    r = np.maximum(obj.radius, 1e-3).astype(f32)[:, None, None]
    ca = np.cos(obj.angle).astype(f32)[:, None, None]
    sa = np.sin(obj.angle).astype(f32)[:, None, None]
    # Object coordinates (image y points down; +v is "up" on screen at angle 0).
    u = (ca * dx + sa * dy) / r
    v = (sa * dx - ca * dy) / r
    sd_px = _shape_sdf(app.shape, u, v) * r
    cover = np.clip(0.5 - sd_px, 0.0, 1.0) * obj.visible.astype(f32)[:, None, None]
    cover = cover[..., None]
    colour = _object_colour_field(app, u, v, tint)
    img *= 1 - cover
    img += cover * colour


# --------------------------------------------------------------------------------------------
# Motions
# --------------------------------------------------------------------------------------------


def _sawtooth(t: np.ndarray, period: float, phase: float) -> np.ndarray:
    """Rises linearly from 0 to 1 over ``period`` frames, then snaps back to 0."""
    return np.mod(t / period + phase, 1.0)


def _trajectories(class_name: str, rng: np.random.Generator, T: int, H: int, W: int, s: float, size: float) -> list[_Obj]:
    t = np.arange(T, dtype=np.float64)
    ones = np.ones(T)
    r0 = size * s * rng.uniform(0.88, 1.12)  # per-clip size jitter around the group's size
    angle0 = rng.uniform(0, 2 * math.pi)
    visible = np.ones(T, bool)

    def centre(margin: float) -> tuple[float, float]:
        my, mx = min(margin, H / 2), min(margin, W / 2)
        return float(rng.uniform(my, H - my)), float(rng.uniform(mx, W - mx))

    def speed() -> float:  # px / frame: 24..44 px over 16 frames, 6..11 px per step at stride 4
        return rng.uniform(1.5, 2.75) * s

    if class_name in ("MoveUp", "MoveDown"):
        cy0, cx = centre(r0 + 2 * s)
        sign = -1.0 if class_name == "MoveUp" else 1.0
        cy = cy0 + sign * speed() * t
        return [_Obj(cy, cx * ones, r0 * ones, angle0 * ones, visible, wrap_y=True)]
    if class_name == "MoveSideways":
        cy, cx0 = centre(r0 + 2 * s)
        sign = 1.0 if rng.random() < 0.5 else -1.0
        return [_Obj(cy * ones, cx0 + sign * speed() * t, r0 * ones, angle0 * ones, visible, wrap_x=True)]
    if class_name in ("Grow", "Shrink"):
        r_max = min(1.55 * r0, 0.42 * min(H, W))
        r_min = 0.3 * r0
        cy, cx = centre(r_max + 1)
        period = rng.uniform(20, 32)
        ramp = _sawtooth(t, period, rng.random())
        if class_name == "Shrink":
            ramp = 1.0 - ramp
        return [_Obj(cy * ones, cx * ones, r_min + (r_max - r_min) * ramp, angle0 * ones, visible)]
    if class_name == "Blink":
        cy, cx = centre(r0 + 2 * s)
        period = rng.uniform(10, 16)  # > 2 x the largest stride (4): no aliasing
        duty = rng.uniform(0.4, 0.6)
        on = _sawtooth(t, period, rng.random()) < duty
        return [_Obj(cy * ones, cx * ones, r0 * ones, angle0 * ones, on)]
    if class_name == "Spin":
        r = 1.15 * r0
        cy, cx = centre(r + 2 * s)
        sign = 1.0 if rng.random() < 0.5 else -1.0
        omega = math.radians(rng.uniform(5.0, 9.0))  # <= 36 deg per step at stride 4
        return [_Obj(cy * ones, cx * ones, r * ones, angle0 + sign * omega * t, visible)]
    if class_name == "Bounce":
        floor = H - r0 - 2 * s
        height = min(rng.uniform(0.38, 0.52) * H, floor - r0 - s)
        _, cx = centre(r0 + 2 * s)
        period = rng.uniform(16, 26)
        cy = floor - height * np.abs(np.sin(math.pi * (t / period + rng.random())))
        return [_Obj(cy, cx * ones, r0 * ones, angle0 * ones, visible)]
    if class_name in ("Approach", "Separate"):
        r = 0.8 * r0
        cy, _ = centre(r + 2 * s)
        cx = W / 2 + rng.uniform(-2, 2) * s
        d_max = W - 2 * r - 4 * s
        period = rng.uniform(24, 36)
        ramp = _sawtooth(t, period, rng.random())
        gap = d_max * (1.0 - ramp if class_name == "Approach" else ramp)
        # Mirror-symmetric pair (second one rotated by 180 degrees), so a flip maps the class
        # onto itself.
        return [
            _Obj(cy * ones, cx - gap / 2, r * ones, angle0 * ones, visible),
            _Obj(cy * ones, cx + gap / 2, r * ones, (angle0 + math.pi) * ones, visible),
        ]
    raise ValueError(f"unknown class {class_name!r}; expected one of {CLASS_NAMES}")


def render_video(
    class_name: str,
    rng: np.random.Generator,
    config: SyntheticConfig = SyntheticConfig(),
    *,
    appearance: Appearance | None = None,
) -> np.ndarray:
    """Render one video of ``class_name``: ``[frames, height, width, 3]`` uint8 RGB.

    ``appearance`` (the group's look) is drawn from ``rng`` when not given; everything
    clip-specific (position, speed, phase, rotation sense, camera shake, noise) always comes
    from ``rng``.  Geometry scales with ``min(height, width) / 64``; periods are in frames.
    """
    if class_name not in CLASS_NAMES:
        raise ValueError(f"unknown class {class_name!r}; expected one of {CLASS_NAMES}")
    T, H, W = config.frames, config.height, config.width
    s = min(H, W) / 64.0
    app = appearance if appearance is not None else sample_appearance(rng)
    objs = _trajectories(class_name, rng, T, H, W, s, app.size)

    # Small camera shake: a smooth random walk squashed to +-1.5 px (scaled).
    walk = np.cumsum(rng.normal(0.0, 0.35, size=(T, 2)), axis=0)
    cam = 1.5 * s * np.tanh(walk / 1.5)
    ys = (np.arange(H, dtype=np.float32)[None, :, None] + cam[:, 0, None, None]).astype(np.float32)
    xs = (np.arange(W, dtype=np.float32)[None, None, :] + cam[:, 1, None, None]).astype(np.float32)

    img = np.array(np.broadcast_to(_background(app, ys, xs, s), (T, H, W, 3)), dtype=np.float32)
    tint = rng.uniform(-10, 10, size=3).astype(np.float32)  # per-clip lighting of the object
    for obj in objs:
        _draw(img, obj, app, ys, xs, tint)
    sigma = np.float32(rng.uniform(1.5, 4.0))
    img += rng.standard_normal(size=img.shape, dtype=np.float32) * sigma
    np.rint(img, out=img)
    np.clip(img, 0, 255, out=img)
    return img.astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Writing the dataset
# --------------------------------------------------------------------------------------------


def _write_mp4(path: Path, frames: np.ndarray, fps: int) -> None:
    import av

    T, H, W, _ = frames.shape
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width = W
        stream.height = H
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = fps  # a keyframe per second, for cheap seeking
        # One thread and no macroblock-tree rate control: with mbtree, x264 (core 165, as bundled
        # with PyAV 18) was seen to give different bitstreams for identical input in one process.
        stream.options = {"crf": "18", "preset": "veryfast", "threads": "1", "mbtree": "0"}
        tb = Fraction(1, fps)
        for i in range(T):
            frame = av.VideoFrame.from_ndarray(frames[i], format="rgb24")
            frame.pts = i
            frame.time_base = tb
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def _video_seed(config: SyntheticConfig, class_name: str, group: int, clip: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([config.seed, CLASS_NAMES.index(class_name), group, clip])


def _scene_seed(config: SyntheticConfig, class_name: str, group: int) -> np.random.SeedSequence:
    """The appearance of a group: shared by all classes with ``shared_scenes``, else per class."""
    if config.shared_scenes:
        return np.random.SeedSequence([config.seed, len(CLASS_NAMES), group])
    return np.random.SeedSequence([config.seed, CLASS_NAMES.index(class_name), group])


def _manifest(config: SyntheticConfig) -> dict:
    return {
        "generator": _GENERATOR_ID,
        "version": GENERATOR_VERSION,
        "config": asdict(config),
        "classes": list(config.class_names),
        "num_videos": config.num_videos,
        "codec": "libx264",
        "pix_fmt": "yuv420p",
    }


def read_manifest(root: str | os.PathLike) -> dict | None:
    """The manifest of the dataset at ``root``, or ``None`` if absent/unreadable."""
    try:
        with open(Path(root) / "manifest.json", encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_synthetic_root(root: str | os.PathLike) -> bool:
    """Whether ``root`` holds a dataset written by this generator (whatever its layout)."""
    manifest = read_manifest(root)
    return manifest is not None and manifest.get("generator") == _GENERATOR_ID


def _split_files(config: SyntheticConfig) -> dict[str, str]:
    """The split/annotation files of ``config.layout``: path under ``root`` -> text."""
    classes = config.class_names
    videos = [(label, name, g, c) for label, name in enumerate(classes)
              for g in range(1, config.groups + 1) for c in range(1, config.clips_per_group + 1)]
    files: dict[str, str] = {}
    if config.layout == "ucf101":
        files["ucfTrainTestlist/classInd.txt"] = "".join(f"{i + 1} {n}\n" for i, n in enumerate(classes))
        for s in range(1, NUM_SPLITS + 1):
            roles = [(split_role(config, s, g, c), label, video_relpath(name, g, c)) for label, name, g, c in videos]
            files[f"ucfTrainTestlist/trainlist{s:02d}.txt"] = "".join(
                f"{rel} {label + 1}\n" for role, label, rel in roles if role == "train")
            files[f"ucfTrainTestlist/testlist{s:02d}.txt"] = "".join(
                f"{rel}\n" for role, _, rel in roles if role == "test")
    elif config.layout == "hmdb51":
        ids = {"train": 1, "test": 2, "unused": 0}
        for s in range(1, NUM_SPLITS + 1):
            for name in classes:
                # The official files end each line with a blank: "<video> <id> ".
                files[f"testTrainMulti_7030_splits/{name}_test_split{s}.txt"] = "".join(
                    f"{video_relpath(n, g, c).split('/')[1]} {ids[split_role(config, s, g, c)]} \n"
                    for _, n, g, c in videos if n == name)
    else:  # kinetics400: split 1, test groups -> val
        for subset in ("train", "val"):
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(["label", "youtube_id", "time_start", "time_end", "split", "is_cc"])
            for _, name, g, c in videos:
                if ("val" if split_role(config, 1, g, c) == "test" else "train") == subset:
                    writer.writerow([name, youtube_id(name, g, c), *_kinetics_times(config, g, c), subset, 0])
            files[f"annotations/{subset}.csv"] = out.getvalue()
    return files


def _is_complete(root: Path, config: SyntheticConfig) -> bool:
    m = read_manifest(root)
    if m is None:
        return False
    want = _manifest(config)
    if any(m.get(k) != want[k] for k in ("generator", "version", "config")):
        return False
    return all((root / rel).is_file() for rel in _split_files(config))


def _write_dataset(out: Path, config: SyntheticConfig, progress: bool) -> None:
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(name, g, c) for name in config.class_names
            for g in range(1, config.groups + 1) for c in range(1, config.clips_per_group + 1)]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(jobs), desc="synthetic videos", unit="video", disable=None)  # None: terminals only
    try:
        for name, g, c in jobs:
            app = sample_appearance(np.random.default_rng(_scene_seed(config, name, g)))
            rng = np.random.default_rng(_video_seed(config, name, g, c))
            frames = render_video(name, rng, config, appearance=app)
            path = out / layout_relpath(config, name, g, c)
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_mp4(path, frames, config.fps)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    for rel, text in _split_files(config).items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text, encoding="utf-8", newline="\n")
    # The manifest is written last: its presence marks a complete dataset.
    roles = [split_role(config, 1, g, c) for _, g, c in jobs]
    manifest = dict(_manifest(config), num_train=roles.count("train"), num_test=roles.count("test"))
    tmp = out / "manifest.json.part"
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, out / "manifest.json")


@contextmanager
def _lock(root: Path) -> Iterator[None]:
    """Exclusive lock on a sibling lock file (POSIX); a no-op where ``fcntl`` is missing."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    lock_path = root.parent / f".{root.name}.lock"
    with open(lock_path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def generate(
    root: str | os.PathLike | None = None,
    config: SyntheticConfig = SyntheticConfig(),
    *,
    progress: bool = False,
) -> Path:
    """Write the dataset under ``root`` (default :func:`default_cache_dir`) and return ``root``.

    Nothing is written when ``root/manifest.json`` already describes the same config and
    generator version.  Otherwise the dataset is built in a temporary sibling directory and
    renamed into place (an existing older dataset is swapped out and deleted), so an
    interrupted run never leaves a half-written dataset that looks complete.  ``root`` must
    be missing, empty, or a dataset written by this module.
    """
    root = Path(root).expanduser() if root is not None else default_cache_dir()
    root = root.absolute()
    if _is_complete(root, config):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with _lock(root):
        if _is_complete(root, config):  # another process finished it meanwhile
            return root
        if root.exists():
            if not root.is_dir():
                raise FileExistsError(f"{root} exists and is not a directory")
            ours = (read_manifest(root) or {}).get("generator") == _GENERATOR_ID
            if not ours and any(root.iterdir()):
                raise FileExistsError(
                    f"{root} is not empty and holds no synthetic-dataset manifest; refusing to replace it"
                )
        # Built in a hidden sibling that replaces root when complete; leftovers of killed runs go.
        with staged_directory(root) as staging:
            _write_dataset(staging, config, progress)
    return root


def _main(argv: Sequence[str] | None = None) -> None:  # pragma: no cover - convenience CLI
    import argparse

    p = argparse.ArgumentParser(description="Generate the synthetic TCLR action dataset.")
    p.add_argument("root", nargs="?", default=None, help="output directory (default: cache dir)")
    for f, v in asdict(SyntheticConfig()).items():
        if f == "layout":
            p.add_argument("--layout", choices=LAYOUTS, default=v)
        else:
            p.add_argument(f"--{f.replace('_', '-')}", type=int, default=v)
    a = p.parse_args(argv)
    cfg = SyntheticConfig(**{f: getattr(a, f) for f in asdict(SyntheticConfig())})
    t0 = time.perf_counter()
    out = generate(a.root, cfg, progress=True)
    print(f"{out} ({cfg.num_videos} videos, {time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":  # pragma: no cover
    _main()
