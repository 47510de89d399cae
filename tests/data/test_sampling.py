"""Frame indices of the TCLR sampler and of evenly spaced evaluation clips."""

from __future__ import annotations

import numpy as np
import pytest

from tclr_zoo.data.decode import VideoTooShortError
from tclr_zoo.data.sampling import ClipSampling, evenly_spaced_clips, mirror_indices, sample_tclr_indices

PAPER = ClipSampling()  # 16 frames, stride 4, 4 local clips


def test_paper_geometry_global_stride_4_and_local_clips_tile_its_span():
    idx = sample_tclr_indices(300, PAPER, np.random.default_rng(0))
    s = idx.global_clip[0]
    np.testing.assert_array_equal(idx.global_clip, s + 4 * np.arange(16))
    for k in range(4):
        np.testing.assert_array_equal(idx.local_clips[k], s + 16 * k + np.arange(16))
    # together the local clips cover exactly the global clip's span, without overlap
    np.testing.assert_array_equal(np.sort(idx.local_clips.ravel()), s + np.arange(64))
    # local clip k covers the frames of global time-step k (global frames 4k .. 4k+3)
    for k in range(4):
        assert set(idx.global_clip[4 * k:4 * k + 4]) <= set(idx.local_clips[k])


def test_start_is_uniform_over_the_reference_range():
    rng = np.random.default_rng(1)
    starts = {int(sample_tclr_indices(100, PAPER, rng).global_clip[0]) for _ in range(3000)}
    assert starts == set(range(0, 100 - 64))  # reference: randint(0, n - 64), high exclusive


def test_video_of_exactly_the_span_starts_at_zero():
    idx = sample_tclr_indices(64, PAPER, np.random.default_rng(0))
    assert idx.global_clip[0] == 0 and idx.local_clips.max() == 63


def test_short_video_is_mirrored_and_too_short_video_rejected():
    idx = sample_tclr_indices(60, PAPER, np.random.default_rng(0))
    assert idx.global_clip.max() <= 59 and idx.local_clips.max() <= 59
    np.testing.assert_array_equal(idx.local_clips[3][-4:], [58, 57, 56, 55])  # 60, 61, 62, 63 reflected
    assert PAPER.required_frames == 57  # the reference skips videos of <= 56 frames
    with pytest.raises(VideoTooShortError, match="has 56 frames"):
        sample_tclr_indices(56, PAPER, np.random.default_rng(0), "x.mp4")


def test_configurable_geometry_overlapping_local_clips():
    cfg = ClipSampling(frames=8, stride=2, num_local=4, min_frames=1)
    idx = sample_tclr_indices(200, cfg, np.random.default_rng(3))
    s = idx.global_clip[0]
    np.testing.assert_array_equal(idx.global_clip, s + 2 * np.arange(8))
    np.testing.assert_array_equal(idx.local_clips[:, 0], s + np.array([0, 4, 8, 12]))
    assert idx.local_clips.shape == (4, 8)


def test_unique_lists_each_needed_frame_once():
    idx = sample_tclr_indices(300, PAPER, np.random.default_rng(0))
    assert len(idx.unique()) == 64


def test_mirror_indices():
    np.testing.assert_array_equal(mirror_indices(np.arange(8), 4), [0, 1, 2, 3, 2, 1, 0, 1])
    np.testing.assert_array_equal(mirror_indices(np.arange(3), 1), [0, 0, 0])


def test_evenly_spaced_eval_clips():
    clips = evenly_spaced_clips(100, clips=9, frames=16, stride=2)
    assert clips.shape == (9, 16)
    assert clips[0, 0] == 0 and clips[-1, -1] == 99  # first starts at 0, last ends at the last frame
    np.testing.assert_array_equal(np.diff(clips, axis=1), 2)
    # span (16 - 1) * 2 + 1 = 31, so the last start is 100 - 31 = 69; ideal starts k * 69 / 8 =
    # 0, 8.625, 17.25, 25.875, 34.5, 43.125, 51.75, 60.375, 69, each rounded to the nearest frame
    # (34.5 may go either way)
    starts = clips[:, 0]
    ideal = np.arange(9) * 69 / 8
    assert np.all(np.abs(starts - ideal) <= 0.5)
    np.testing.assert_array_equal(np.delete(starts, 4), [0, 9, 17, 26, 43, 52, 60, 69])
    assert set(np.diff(starts)) <= {8, 9}  # as even as whole frames allow


@pytest.mark.parametrize("num_frames, clips, frames, stride, starts", [
    (100, 10, 16, 2, [0, 8, 15, 23, 31, 38, 46, 54, 61, 69]),  # 69 / 9 = 7.67 apart, no ties
    (95, 9, 16, 2, [0, 8, 16, 24, 32, 40, 48, 56, 64]),  # last start 64: exactly 8 apart
    (300, 5, 16, 1, [0, 71, 142, 213, 284]),  # span 16, last start 284: exactly 71 apart
    (31, 4, 16, 2, [0, 0, 0, 0]),  # exactly one span: every clip is the whole video
    (12, 3, 4, 1, [0, 4, 8]),  # the clips tile the video
])
def test_evenly_spaced_starts_hand_worked(num_frames, clips, frames, stride, starts):
    out = evenly_spaced_clips(num_frames, clips=clips, frames=frames, stride=stride)
    np.testing.assert_array_equal(out, np.array(starts)[:, None] + stride * np.arange(frames))
    assert out.max() <= num_frames - 1


def test_evenly_spaced_clips_of_a_short_video_start_at_zero_and_mirror():
    # 10 frames, span 31: every clip starts at 0; 0, 2, .., 18, .. reflect at frame 9 (period 18)
    short = evenly_spaced_clips(10, clips=3, frames=16, stride=2)
    expected = [0, 2, 4, 6, 8, 8, 6, 4, 2, 0, 2, 4, 6, 8, 8, 6]
    np.testing.assert_array_equal(short, np.tile(expected, (3, 1)))
