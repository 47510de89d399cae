"""Contact sheets: a PNG row of a query video's middle frame and its neighbours', for eyeballing search.

Separate from ``index.py`` because it is about pictures (Pillow, decoding one frame per hit), not
about vectors.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .types import SearchHit

log = logging.getLogger(__name__)

CAPTION_HEIGHT = 32


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


def _tile(frame: np.ndarray | None, size: int, caption: list[str], font):
    """A ``size`` wide tile: the frame letterboxed into ``size x size`` over a caption strip."""
    from PIL import Image, ImageDraw, ImageOps

    tile = Image.new("RGB", (size, size + CAPTION_HEIGHT), (24, 24, 24))
    draw = ImageDraw.Draw(tile)
    if frame is None:
        draw.text((6, size // 2 - 6), "no frame", fill=(200, 80, 80), font=font)
    else:
        image = ImageOps.contain(Image.fromarray(frame), (size, size))
        tile.paste(image, ((size - image.width) // 2, (size - image.height) // 2))
    for line, text in enumerate(caption):
        draw.text((4, size + 3 + 14 * line), _fit(draw, text, size - 8, font), fill=(235, 235, 235), font=font)
    return tile


def _fit(draw, text: str, width: int, font) -> str:
    """Shorten ``text`` from the left (ids are often long paths whose end matters) to ``width`` px."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength("..." + text, font=font) > width:
        text = text[1:]
    return "..." + text


def contact_sheet(query_path: str | os.PathLike | None, hits: Sequence[SearchHit], out_png: str | os.PathLike, *,
                  size: int = 160) -> Path:
    """Save a PNG row: the query's middle frame, then each hit's, captioned with id and score.

    For eyeballing retrieval quality. Image size: ``size * (len(hits) + 1)`` by
    ``size + CAPTION_HEIGHT`` (no query tile when ``query_path`` is None). Unreadable videos
    get a "no frame" tile instead of failing the sheet.
    """
    try:
        from PIL import Image, ImageFont
    except ImportError as err:
        raise ImportError("contact_sheet needs Pillow: pip install pillow") from err
    if size < 16:
        raise ValueError(f"size must be >= 16 pixels, got {size}")
    font = ImageFont.load_default()
    tiles = []
    if query_path is not None:
        tiles.append(_tile(_middle_frame(os.fspath(query_path), None, None), size,
                           ["query", os.path.basename(os.fspath(query_path))], font))
    for hit in hits:
        if not isinstance(hit, SearchHit):
            raise TypeError(f"hits must be SearchHit objects (one query's hits, e.g. search(q)[0]), "
                            f"got {type(hit).__name__}")
        times = f" {hit.start:.1f}-{hit.end:.1f}s" if hit.start is not None and hit.end is not None else ""
        tiles.append(_tile(_middle_frame(hit.path, hit.start, hit.end), size,
                           [hit.id, f"{hit.score:.3f}{times}"], font))
    sheet = Image.new("RGB", (max(1, size * len(tiles)), size + CAPTION_HEIGHT), (24, 24, 24))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, (i * size, 0))
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, format="PNG")
    return out
