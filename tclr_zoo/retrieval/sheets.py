"""Contact sheets: a PNG row of a query video's middle frame and its neighbours', for eyeballing search.

Separate from ``index.py`` because it is about pictures (Pillow, decoding one frame per hit), not
about vectors.

Captions are for reading at a glance, so their font grows with the tile (never under
``MIN_FONT_PX``), and a label never runs past its tile: a long id (often a path, whose end is what
tells videos apart) is wrapped over ``TITLE_LINES`` lines, broken after a ``/``, ``_``, ``-`` or
``.`` where one is near, and when it still does not fit its beginning gives way to an ellipsis --
whole characters only, measured with the font's own glyph boxes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .types import SearchHit

log = logging.getLogger(__name__)

MIN_FONT_PX = 12  # about the smallest size a caption is still read without squinting
FONT_SHARE = 0.09  # font size as a share of the tile's width: 14 px on the default 160 px tiles
TITLE_LINES = 2  # lines for the id (or the query's file name); one more for the score
ELLIPSIS = "\u2026"
_BREAKS = "/\\_-. #"  # a line may end after one of these


def _middle_frame(path: str | None, start: float | None, end: float | None) -> np.ndarray | None:
    """The middle frame (RGB) of the video, or of the window ``[start, end]`` when given."""
    from ..data.decode import VideoDecodeError, decode_frames, probe

    if path is None:
        return None
    try:
        info = probe(path)
        index = info.num_frames // 2
        if start is not None and end is not None and info.fps > 0:
            index = round((start + end) / 2 * info.fps)
        index = min(max(index, 0), max(info.num_frames - 1, 0))
        return decode_frames(path, [index], channel_order="rgb", info=info)[0]
    except VideoDecodeError as err:
        log.warning("contact sheet: no frame from %s (%s)", path, err.reason)
        return None


def caption_font(size: int):
    """The captions' font for tiles ``size`` pixels wide: Pillow's own scalable font (no font files
    to ship or find), ``FONT_SHARE`` of the tile, at least ``MIN_FONT_PX``. Pillow < 10.1 has no
    scalable default font: its bitmap font is used there."""
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=max(MIN_FONT_PX, round(size * FONT_SHARE)))
    except TypeError:  # Pillow < 10.1: load_default() takes no size
        return ImageFont.load_default()


def _line_height(font) -> int:
    ascent, descent = font.getmetrics()
    return ascent + descent + 2


def _padding(font) -> int:
    return max(3, _line_height(font) // 4)


def caption_height(size: int) -> int:
    """Height in pixels of the caption strip under tiles ``size`` pixels wide (title lines + score)."""
    font = caption_font(size)
    return 2 * _padding(font) + (TITLE_LINES + 1) * _line_height(font)


def _fits(font, width: int) -> Callable[[str], bool]:
    """Whether a text's drawn glyphs (not just its advance) fit in ``width`` pixels."""

    def fits(text: str) -> bool:
        left, _, right, _ = font.getbbox(text) if text else (0, 0, 0, 0)
        return left >= 0 and right <= width

    return fits


def _tail_start(text: str, fits: Callable[[str], bool], prefix: str = "") -> int:
    """Where the longest end of ``text`` that fits (after ``prefix``) begins (``len(text)``: none does)."""
    start = 0
    while start < len(text) and not fits(prefix + text[start:]):
        start += 1
    return start


def wrap_label(text: str, fits: Callable[[str], bool], lines: int) -> list[str]:
    """``text`` on at most ``lines`` lines that each ``fits``, the end of the text kept.

    Filled from the last line up, each line breaking after a separator when one lies in the first
    half of what fits; when the text is still too long the first line starts with an ellipsis."""
    out: list[str] = []
    rest = text
    while rest and len(out) < lines:
        if fits(rest):
            out.insert(0, rest)
            return out
        if len(out) == lines - 1:  # the top line: what is left does not fit, so it is cut
            start = _tail_start(rest, fits, ELLIPSIS)
            out.insert(0, ELLIPSIS + rest[start:] if fits(ELLIPSIS) else "")
            return out
        start = _tail_start(rest, fits)
        if start == len(rest):  # not even one character fits this width
            return out
        breaks = [i for i in range(start, start + (len(rest) - start) // 2) if rest[i] in _BREAKS]
        start = breaks[0] + 1 if breaks else start
        out.insert(0, rest[start:])
        rest = rest[:start]
    return out


def caption_lines(title: str, detail: str, size: int, font) -> list[tuple[tuple[int, int], str]]:
    """The caption of a tile ``size`` pixels wide: ``title`` (an id or file name, wrapped) over
    ``detail`` (the score), each as ``((x, y), text)`` relative to the tile's top-left corner."""
    pad, step = _padding(font), _line_height(font)
    fits = _fits(font, size - 2 * pad)
    texts = wrap_label(title, fits, TITLE_LINES) + wrap_label(detail, fits, 1)
    return [((pad, size + pad + step * line), text) for line, text in enumerate(texts)]


def _tile(frame: np.ndarray | None, size: int, title: str, detail: str, font, blank: str = "no frame"):
    """A ``size`` wide tile: the frame letterboxed into ``size x size`` over a caption strip."""
    from PIL import Image, ImageDraw, ImageOps

    tile = Image.new("RGB", (size, size + caption_height(size)), (24, 24, 24))
    draw = ImageDraw.Draw(tile)
    if frame is None:
        pad = _padding(font)
        for text in wrap_label(blank, _fits(font, size - 2 * pad), 1):
            draw.text((pad, size // 2 - _line_height(font) // 2), text, fill=(200, 80, 80), font=font)
    else:
        image = ImageOps.contain(Image.fromarray(frame), (size, size))
        tile.paste(image, ((size - image.width) // 2, (size - image.height) // 2))
    for xy, text in caption_lines(title, detail, size, font):
        draw.text(xy, text, fill=(235, 235, 235), font=font)
    return tile


def contact_sheet(query_path: str | os.PathLike | None, hits: Sequence[SearchHit], out_png: str | os.PathLike, *,
                  size: int = 160) -> Path:
    """Save a PNG row: the query's middle frame, then each hit's, captioned with id and score.

    For eyeballing retrieval quality. Image size: ``size * (len(hits) + 1)`` by
    ``size + caption_height(size)`` (no query tile when ``query_path`` is None). Unreadable
    videos get a "no frame" tile, and hits whose file has gone a "missing file" one, instead of
    failing the sheet. The PNG is written atomically, under its writer lock.

    Args:
        query_path: the query video (its middle frame is the first tile), or None for no query tile.
        hits: one query's hits, e.g. ``index.search(q)[0]``.
        out_png: the PNG file to write (an existing one is replaced).
        size: the side of each square tile, in pixels (at least 16).

    Returns:
        ``out_png``, as a ``Path``.

    Raises:
        ValueError: ``size`` below 16.
        TypeError: ``hits`` holds something other than ``SearchHit`` objects.
        ImportError: Pillow is not installed.
        OutputInUseError: another process is writing ``out_png``.
    """
    try:
        from PIL import Image
    except ImportError as err:
        raise ImportError("contact_sheet needs Pillow: pip install pillow") from err
    from ..atomic import atomic_write, exclusive_output

    if size < 16:
        raise ValueError(f"size must be >= 16 pixels, got {size}")
    font = caption_font(size)
    tiles = []
    if query_path is not None:
        tiles.append(_tile(_middle_frame(os.fspath(query_path), None, None), size,
                           os.path.basename(os.fspath(query_path)), "query", font))
    for hit in hits:
        if not isinstance(hit, SearchHit):
            raise TypeError(f"hits must be SearchHit objects (one query's hits, e.g. search(q)[0]), "
                            f"got {type(hit).__name__}")
        times = f" {hit.start:.1f}-{hit.end:.1f}s" if hit.start is not None and hit.end is not None else ""
        frame = None if hit.missing else _middle_frame(hit.path, hit.start, hit.end)
        tiles.append(_tile(frame, size, hit.id, f"{hit.score:.3f}{times}", font,
                           blank="missing file" if hit.missing else "no frame"))
    sheet = Image.new("RGB", (max(1, size * len(tiles)), size + caption_height(size)), (24, 24, 24))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, (i * size, 0))
    out = Path(out_png)
    with exclusive_output(out):
        atomic_write(out, lambda f: sheet.save(f, format="PNG"))
    return out


__all__ = ["ELLIPSIS", "MIN_FONT_PX", "caption_font", "caption_height", "caption_lines", "contact_sheet",
           "wrap_label"]
