"""The pixels of the synthetic action dataset: its classes, their motions and the frames of one video.

No files here: :func:`render_video` returns a ``[frames, height, width, 3]`` uint8 array, and
:mod:`.write` encodes the videos and lays out the dataset. A change to the pixels must bump
``write.GENERATOR_VERSION`` (cached datasets are then rebuilt).

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
from a ``numpy`` generator seeded by ``(seed, class index, group, clip)`` (:func:`_video_seed`;
its group's look from :func:`_scene_seed`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...constants import DATASET_NAMES

#: The official dataset layouts the generator can write (see :mod:`.write`).
LAYOUTS: tuple[str, ...] = tuple(DATASET_NAMES)

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


def _trajectories(class_name: str, rng: np.random.Generator, T: int, H: int, W: int, s: float,
                  size: float) -> list[_Obj]:
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
# Seeds: which generator draws which video and which group's look
# --------------------------------------------------------------------------------------------


def _video_seed(config: SyntheticConfig, class_name: str, group: int, clip: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([config.seed, CLASS_NAMES.index(class_name), group, clip])


def _scene_seed(config: SyntheticConfig, class_name: str, group: int) -> np.random.SeedSequence:
    """The appearance of a group: shared by all classes with ``shared_scenes``, else per class."""
    if config.shared_scenes:
        return np.random.SeedSequence([config.seed, len(CLASS_NAMES), group])
    return np.random.SeedSequence([config.seed, CLASS_NAMES.index(class_name), group])


__all__ = ["Appearance", "CLASS_NAMES", "LAYOUTS", "SyntheticConfig", "render_video", "sample_appearance"]
