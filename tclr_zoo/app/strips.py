"""Frame strips: a few frames spread over a result's window, side by side in one PNG -- the picture a
result card shows, and what the page shows instead of a player for formats the browser cannot play.

Apart from the service because it is about pictures (Pillow, decoding a few frames), not searching.
"""

from __future__ import annotations

import io
import os

from ..data.decode import VideoDecodeError, VideoInfo, decode_frames, probe

STRIP_FRAMES = 4
STRIP_HEIGHT = 90
GAP = 2


def strip_indices(info: VideoInfo, start: float | None, end: float | None, frames: int = STRIP_FRAMES) -> list[int]:
    """Frame indices at the centres of ``frames`` equal parts of ``[start, end)`` seconds (the whole
    video when there is no window), within the video, in order, without repeats."""
    last_frame = max(info.num_frames - 1, 0)
    first, last = 0, last_frame
    if start is not None and end is not None and info.fps > 0:
        first = min(max(round(start * info.fps), 0), last_frame)
        last = min(max(round(end * info.fps) - 1, first), last_frame)
    span = last - first + 1
    return sorted({first + min(int((i + 0.5) * span / frames), span - 1) for i in range(frames)})


def frame_strip(path: str | os.PathLike, start: float | None, end: float | None, *, frames: int = STRIP_FRAMES,
                height: int = STRIP_HEIGHT) -> bytes:
    """PNG bytes: :func:`strip_indices` frames of ``path`` scaled to ``height`` pixels, left to right.

    Raises ``VideoDecodeError`` (naming the file and the reason) for a file that cannot be decoded.
    """
    from PIL import Image

    info = probe(path)
    if info.num_frames < 1:
        raise VideoDecodeError(path, "has no video frames")
    pictures = [Image.fromarray(f) for f in decode_frames(path, strip_indices(info, start, end, frames),
                                                            channel_order="rgb", info=info)]
    tiles = [p.resize((max(1, round(p.width * height / p.height)), height)) for p in pictures]
    strip = Image.new("RGB", (sum(t.width for t in tiles) + GAP * (len(tiles) - 1), height), (24, 24, 24))
    x = 0
    for tile in tiles:
        strip.paste(tile, (x, 0))
        x += tile.width + GAP
    out = io.BytesIO()
    strip.save(out, format="PNG")
    return out.getvalue()


__all__ = ["STRIP_FRAMES", "STRIP_HEIGHT", "frame_strip", "strip_indices"]
