"""Contact sheets: captions big enough to read, and no label cut off by its tile --
long ids (paths) are wrapped and shortened from the left with an ellipsis, whole glyphs only."""

from __future__ import annotations

import numpy as np
import pytest
from hostile_videos import write_video
from PIL import Image, ImageDraw

from tclr_zoo.retrieval.sheets import ELLIPSIS, caption_font, caption_height, caption_lines, contact_sheet
from tclr_zoo.retrieval.types import SearchHit

LONG_ID = "/data/videos/UCF-101/PlayingCello/v_PlayingCello_g01_c01.mp4#12"
BACKGROUND = (24, 24, 24)


@pytest.mark.parametrize("size", [96, 160, 240])
def test_caption_font_is_readable_and_grows_with_the_tile(size):
    font = caption_font(size)
    _, top, _, bottom = font.getbbox("Hg")
    assert font.size >= 12 and bottom - top >= 12  # Pillow's old default: 10 px, 'Hg' 10 px of ink
    assert font.size >= round(0.085 * size)  # a bigger tile gets a bigger caption
    assert caption_height(size) >= 3 * (bottom - top)  # room for two title lines and the score


@pytest.mark.parametrize("size", [32, 96, 160, 240])
def test_every_label_fits_inside_its_tile_and_keeps_the_end_of_a_long_id(size):
    font = caption_font(size)
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines = caption_lines(LONG_ID, "0.937 1.0-3.2s", size, font)
    for xy, text in lines:
        left, top, right, bottom = draw.textbbox(xy, text, font=font)
        assert 0 <= left and right <= size, (size, text, right)  # inside the tile, left to right
        assert size <= top and bottom <= size + caption_height(size), (size, text, bottom)  # in the caption strip
    *title, score = [text for _, text in lines]
    shown = "".join(title)
    assert shown.startswith(ELLIPSIS) and LONG_ID.endswith(shown[1:]) and len(shown) > 4  # the end is kept
    if size >= 96:
        assert score == "0.937 1.0-3.2s" and title[-1].endswith("c01.mp4#12") and len(title) == 2


def test_a_short_id_is_shown_whole_on_one_line():
    font = caption_font(160)
    assert [text for _, text in caption_lines("clip_3.mp4", "0.500", 160, font)] == ["clip_3.mp4", "0.500"]


def test_rendered_sheet_has_no_ink_on_any_tile_border(tmp_path):
    """A label cut off by its tile shows as ink running into the tile's edge; none may."""
    video = write_video(tmp_path / "query_with_a_rather_long_file_name.mp4", 16)
    hits = [SearchHit(LONG_ID, 0.937, str(tmp_path / "gone.mp4"), 1.0, 3.25, 0, missing=True),
            SearchHit("W" * 60, 0.5, None, None, None, 1)]
    for size in (32, 96):
        sheet = np.asarray(Image.open(contact_sheet(video, hits, tmp_path / f"sheet{size}.png", size=size)))
        strip = sheet[size:]  # the captions under the frames
        assert strip.shape == (caption_height(size), size * 3, 3)
        for i in range(3):
            tile = strip[:, i * size:(i + 1) * size]
            edges = np.concatenate([tile[:, 0], tile[:, -1], tile[-1]])
            assert (edges == BACKGROUND).all(), (size, i)
            assert (tile != BACKGROUND).any(axis=2).sum() > 20  # and there is a caption
