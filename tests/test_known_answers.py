"""Known-answer tests for the evaluation numbers users compare with the paper.

Each test builds a small case whose answer is worked out by hand (or by an independent few-line
numpy reference written here), instead of only checking ranges and shapes:

* ``topk_accuracy`` on hand-made scores;
* ``multi_clip_test``: video level = softmax averaged over all views, clip level = per view;
* ``extract_features`` (retrieval, head="retrieval") and ``retrieval_recall`` / ``knn_retrieval``;
* ``VideoModel.classify``: softmax averaged over a video's windows, top-k labels from config["labels"];
* ``run_protocol`` linear / finetune end to end on a tiny colour-coded dataset, once with the true
  test labels (top1 == 1) and once with some test labels deliberately swapped (exact top1 < 1).

Where a network output must be known, the network is a real ``r3d_10_025`` whose weights are set
by hand (``wired_r3d``): every convolution is zero except the centre tap of the stem and the 1x1x1
downsampling shortcuts of layers 2-4, which copy the R, G, B input channels straight through, and
eval-mode BatchNorm is exactly the identity. The backbone then *samples* its input: output
``[c, t, y, x]`` = input ``[c, 4t, 16y, 16x]`` for c < 3, 0 for the other channels. It survives
the SDK's BatchNorm folding unchanged, so no piece of the evaluated code path is mocked.

Test videos are written losslessly (FFV1 in Matroska, decoded bit-exactly) and every frame is one
uniform colour, so what each clip sees -- and hence every feature and logit -- is known exactly.
All protocol settings are passed explicitly (the defaults are about to change).
"""

from __future__ import annotations

import csv
import math
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tclr_zoo.data.datasets import EvalClipsDataset, VideoItem
from tclr_zoo.hub.format import model_config, save_pretrained
from tclr_zoo.inference.model import load_model
from tclr_zoo.models.registry import create_model, resolve_model_args
from tclr_zoo.train.evaluate import extract_features, knn_retrieval, retrieval_recall
from tclr_zoo.train.finetune import ClassifyConfig, VideoClassifier, multi_clip_test, topk_accuracy
from tclr_zoo.train.protocols import run_protocol

ARCH = "r3d_10_025"
FEATURE_DIM = 128  # r3d_10_025's layer4 width
HEIGHT, WIDTH = 32, 40  # non-square, so the centre crop (and 3-crop testing) really crops
# A model's preprocessing (config.json) whose clip geometry differs from the settings the tests pass
# explicitly: those must win.
RGB_PREPROCESSING = {"channel_order": "rgb", "value_range": [0.0, 1.0], "mean": None, "std": None, "size": 112,
                     "crop_fraction": 1.0, "frames": 16, "eval_frame_stride": 1, "pretrain_frame_stride": 4}


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------

def write_video(path: Path, colours, *, height: int = HEIGHT, width: int = WIDTH) -> Path:
    """A lossless video whose frame ``i`` is uniformly the RGB colour ``colours[i]``."""
    colours = np.asarray(colours, dtype=np.uint8).reshape(-1, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "bgr0"
        for i, colour in enumerate(colours):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.broadcast_to(colour, (height, width, 3))),
                                               format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, 25)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def segments(*runs: tuple[int, tuple[int, int, int]]) -> np.ndarray:
    """Frame colours from ``(frame count, RGB colour)`` runs."""
    return np.concatenate([np.tile(np.asarray(colour, np.uint8), (count, 1)) for count, colour in runs])


def gray(level: int) -> tuple[int, int, int]:
    return (level, level, level)


def wired_r3d(num_classes: int | None = None) -> torch.nn.Module:
    """A real r3d_10_025 whose backbone samples its input (see the module docstring)."""
    torch.manual_seed(0)
    model = create_model(ARCH, num_classes=num_classes, head_dim=32)
    backbone = model.backbone
    with torch.no_grad():
        for m in backbone.modules():
            if isinstance(m, nn.Conv3d):
                m.weight.zero_()
            elif isinstance(m, nn.BatchNorm3d):
                # eval mode: (x - 0) / sqrt((1 - eps) + eps) * 1 + 0 == x
                m.running_mean.zero_()
                m.running_var.fill_(1.0 - m.eps)
                m.weight.fill_(1.0)
                m.bias.zero_()
        for c in range(3):
            backbone.stem[0].weight[c, c, 1, 3, 3] = 1.0  # 3x7x7 conv, padding (1,3,3): centre tap = input[t, 2y, 2x]
            for layer in (backbone.layer2, backbone.layer3, backbone.layer4):
                layer[0].downsample[0].weight[c, c, 0, 0, 0] = 1.0  # 1x1x1, stride (2,2,2) / (1,2,2) in layer4
    return model.eval()


def sampled(x: torch.Tensor) -> torch.Tensor:
    """What ``wired_r3d``'s backbone gives for ``x [B, 3, T, H, W]``: ``[B, 128, T/4, H/16, W/16]``."""
    out = x[:, :, ::4, ::16, ::16]
    return torch.cat([out, out.new_zeros(out.shape[0], FEATURE_DIM - 3, *out.shape[2:])], dim=1)


def _quiet(_msg: str) -> None:
    pass


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny convolutions: on a busy 2-core machine torch's second intra-op thread costs ~10x (measured)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------------
# 0. the hand-wired network does what the known answers below assume
# ------------------------------------------------------------------------------------------------

def test_wired_backbone_samples_its_input():
    model = wired_r3d()
    x = torch.rand(2, 3, 8, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.allclose(model.backbone(x), sampled(x), atol=1e-6)
        assert torch.allclose(model.temporal_features(x), sampled(x).mean(dim=(3, 4)), atol=1e-6)


# ------------------------------------------------------------------------------------------------
# 1. top-k accuracy
# ------------------------------------------------------------------------------------------------

def test_topk_accuracy_hand_made_scores():
    scores = torch.tensor([
        [9.0, 1.0, 2.0, 3.0, 4.0, 5.0],  # label 0: ranked 1st
        [1.0, 2.0, 8.0, 7.0, 3.0, 4.0],  # label 3: ranked 2nd (behind class 2)
        [6.0, 5.0, 4.0, 3.0, 2.0, 2.5],  # label 5: ranked 5th (behind 0, 1, 2, 3)
        [0.5, 0.0, 0.9, 0.8, 0.7, 0.6],  # label 1: ranked last (6th)
    ])
    labels = torch.tensor([0, 3, 5, 1])
    # hits: top1 {row0} = 1/4; top2 {row0, row1} = 2/4; top5 {row0, row1, row2} = 3/4; top6: all
    assert topk_accuracy(scores, labels, ks=(1, 2, 5, 6)) == pytest.approx(
        {"top1": 0.25, "top2": 0.5, "top5": 0.75, "top6": 1.0})
    # probabilities rank like the logits; the prefix only renames
    assert topk_accuracy(scores.softmax(1), labels, prefix="clip_") == pytest.approx(
        {"clip_top1": 0.25, "clip_top5": 0.75})
    # with fewer classes than k, top-k counts every class: 3 classes -> top5 == 1
    three = torch.tensor([[0.2, 0.7, 0.1], [0.5, 0.3, 0.2], [0.1, 0.1, 0.8]])
    assert topk_accuracy(three, torch.tensor([0, 0, 1])) == pytest.approx({"top1": 1 / 3, "top5": 1.0})


def test_topk_accuracy_matches_a_rank_count_reference():
    g = torch.Generator().manual_seed(0)
    scores, labels = torch.randn(60, 9, generator=g), torch.randint(0, 9, (60,), generator=g)
    # reference: the label's rank = how many classes score strictly higher (no ties in random floats)
    rank = (scores > scores.gather(1, labels[:, None])).sum(1)
    expected = {f"top{k}": float((rank < k).float().mean()) for k in (1, 3, 5)}
    assert 0 < expected["top1"] < expected["top5"] < 1
    assert topk_accuracy(scores, labels, ks=(1, 3, 5)) == pytest.approx(expected)


# ------------------------------------------------------------------------------------------------
# 2. multi-clip testing
# ------------------------------------------------------------------------------------------------

# Videos of 21 frames made of three 7-frame gray segments. With 3 test clips of 4 frames at stride 2
# (span 7), the evenly spaced starts are 0, 7, 14: clip c lies in segment c, and the wired network's
# pooled feature (channels 0-2) is that segment's gray level m = level / 255.
# Classifier (set by hand): logit0 = 0, logit1 = s * (m - 0.5), s = 20, so p1 = sigmoid(20 (m - 0.5)).
MULTI_CLIP_VIDEOS = [
    # (label, segment gray levels)        per-clip m         clip argmax  p1 per clip               mean p1 -> video
    (1, (51, 204, 230)),    # 0.20 0.80 0.90   0 1 1   .0025 .9975 .9997  .666  -> 1 (right)
    (0, (153, 25, 25)),     # 0.60 0.10 0.10   1 0 0   .881  .0003 .0003  .294  -> 0 (right)
    (0, (230, 230, 230)),   # 0.90 0.90 0.90   1 1 1   .9997 x3           .9997 -> 1 (wrong)
    (1, (13, 153, 153)),    # 0.05 0.60 0.60   0 1 1   .0001 .881  .881   .587  -> 1 (right;
    #                         averaging logits instead would give mean m = 0.417 -> 0)
]
# video top1 = 3/4; clip top1 = (2 + 2 + 0 + 2) / 12 = 1/2; only 2 classes, so top5 = 1.
# Using the first clip only would give video top1 = 0/4 (every first clip votes wrong).


@pytest.fixture(scope="module")
def multi_clip_items(tmp_path_factory):
    root = tmp_path_factory.mktemp("multi_clip")
    return [VideoItem(write_video(root / f"v{i}.mkv", segments(*[(7, gray(level)) for level in levels])), label)
            for i, (label, levels) in enumerate(MULTI_CLIP_VIDEOS)]


def _threshold_classifier(s: float = 20.0) -> VideoClassifier:
    encoder = wired_r3d(num_classes=2)
    with torch.no_grad():
        encoder.classifier.weight.zero_()
        encoder.classifier.bias.zero_()
        encoder.classifier.weight[1, :3] = s / 3  # gray input: the three channels carry m each
        encoder.classifier.bias[1] = -s / 2
    return VideoClassifier(encoder)


@pytest.mark.parametrize("crops", [1, 3])
def test_multi_clip_test_averages_softmax_over_clips(multi_clip_items, crops):
    cfg = ClassifyConfig(protocol="linear", frames=4, stride=2, size=32, test_clips=3, test_crops=crops,
                         crop_fraction=0.8, workers=0)
    result = multi_clip_test(_threshold_classifier(), multi_clip_items, cfg, preprocessing=RGB_PREPROCESSING,
                             device=torch.device("cpu"), batch_size=3)  # batches of 3 + 1 videos
    assert result["videos"] == 4 and result["bad_videos"] == 0
    assert result["top1"] == pytest.approx(0.75)
    assert result["clip_top1"] == pytest.approx(0.5)  # the same fraction for 3 identical crops per clip
    assert result["top5"] == result["clip_top5"] == 1.0


# ------------------------------------------------------------------------------------------------
# 3. retrieval features and recall
# ------------------------------------------------------------------------------------------------

RETRIEVAL_FRAMES, RETRIEVAL_STRIDE, RETRIEVAL_CLIPS = 8, 2, 4  # span 15; T' = 8 / 4 = 2 time-steps


def _ramp_colours(num_frames: int, seed: int) -> np.ndarray:
    """Frame ``i``: a colour that changes with ``i`` (non-linearly in blue), distinct per video."""
    i = np.arange(num_frames)
    return np.stack([20 + 5 * i + seed, 230 - 4 * i - seed, (37 * i + 11 * seed) % 200 + 30], axis=1).astype(np.uint8)


def reference_retrieval_feature(colours: np.ndarray, channel_order: str) -> np.ndarray:
    """The paper's nearest-neighbour retrieval feature by hand for the wired network (numpy only, independent of
    the package's code)."""
    span = (RETRIEVAL_FRAMES - 1) * RETRIEVAL_STRIDE + 1
    last_start = len(colours) - span
    assert last_start % (RETRIEVAL_CLIPS - 1) == 0  # the evenly spaced starts are whole frames
    per_clip = []
    for start in range(0, last_start + 1, last_start // (RETRIEVAL_CLIPS - 1)):
        clip_frames = start + RETRIEVAL_STRIDE * np.arange(RETRIEVAL_FRAMES)
        seen = colours[clip_frames[::4]].astype(np.float64) / 255  # the wired backbone keeps clip frames 0, 4
        if channel_order == "bgr":
            seen = seen[:, ::-1]
        temporal = np.zeros((FEATURE_DIM, len(seen)))  # [C, T'] spatially pooled map (frames are uniform)
        temporal[:3] = seen.T
        per_clip.append(temporal.reshape(-1))  # flattened channel-major
    mean = np.mean(per_clip, axis=0)
    return mean / np.linalg.norm(mean)


RETRIEVAL_LENGTHS = (27, 33, 45, 39)  # starts (0,4,8,12), (0,6,12,18), (0,10,20,30), (0,8,16,24)


@pytest.fixture(scope="module")
def retrieval_videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("retrieval")
    videos = []
    for i, n in enumerate(RETRIEVAL_LENGTHS):
        colours = _ramp_colours(n, seed=3 * i)
        videos.append((VideoItem(write_video(root / f"v{i}.mkv", colours), label=(2, 0, 1, 0)[i]), colours))
    return videos


@pytest.mark.parametrize("channel_order", ["bgr", "rgb"])
def test_extract_features_averages_clips_then_normalises(retrieval_videos, channel_order):
    dataset = EvalClipsDataset([item for item, _ in retrieval_videos], clips=RETRIEVAL_CLIPS,
                               frames=RETRIEVAL_FRAMES, stride=RETRIEVAL_STRIDE, size=32, crop_fraction=0.8,
                               channel_order=channel_order)
    feats, labels, bad = extract_features(wired_r3d(), dataset, batch_size=3, workers=0, head="retrieval")
    expected = np.stack([reference_retrieval_feature(c, channel_order) for _, c in retrieval_videos])
    assert bad == [] and labels.tolist() == [2, 0, 1, 0]
    assert feats.shape == (4, FEATURE_DIM * 2)
    np.testing.assert_allclose(feats.numpy(), expected, rtol=0, atol=2e-6)
    # the answer really depends on averaging: the first clip alone points elsewhere
    first_only = np.stack([_first_clip_feature(c, channel_order) for _, c in retrieval_videos])
    assert np.abs(first_only - expected).max() > 0.05


def _first_clip_feature(colours: np.ndarray, channel_order: str) -> np.ndarray:
    seen = colours[RETRIEVAL_STRIDE * np.arange(0, RETRIEVAL_FRAMES, 4)].astype(np.float64) / 255
    seen = seen[:, ::-1] if channel_order == "bgr" else seen
    temporal = np.zeros((FEATURE_DIM, len(seen)))
    temporal[:3] = seen.T
    flat = temporal.reshape(-1)
    return flat / np.linalg.norm(flat)


def test_retrieval_recall_hand_made_and_brute_force():
    # 2-D unit vectors at angles (degrees); cosine order = angular distance order
    def at(*degrees):
        return torch.tensor([[math.cos(math.radians(d)), math.sin(math.radians(d))] for d in degrees])

    gallery, gallery_labels = at(0, 20, 45, 90, 180), torch.tensor([0, 1, 2, 1, 0])
    query, query_labels = at(5, 50, 170, 100), torch.tensor([1, 0, 2, 1])
    # query 5 deg:   order 0(l0) 20(l1) ...           -> first hit at rank 2
    # query 50 deg:  order 45(l2) 20(l1) 90(l1) 0(l0) -> first hit at rank 4
    # query 170 deg: order 180(l0) 90(l1) 45(l2)      -> first hit at rank 3
    # query 100 deg: order 90(l1)                      -> hit at rank 1
    r = retrieval_recall(query, query_labels, gallery, gallery_labels, ks=(1, 2, 3, 4, 50))
    assert r == pytest.approx({"R@1": 0.25, "R@2": 0.5, "R@3": 0.75, "R@4": 1.0, "R@50": 1.0})
    # independent brute force on random features, several chunks
    g = torch.Generator().manual_seed(0)
    gal, qry = F.normalize(torch.randn(40, 6, generator=g), dim=1), F.normalize(torch.randn(25, 6, generator=g), dim=1)
    gl, ql = torch.randint(0, 6, (40,), generator=g), torch.randint(0, 6, (25,), generator=g)
    ks = (1, 5, 10)
    nearest = [sorted(range(40), key=lambda j: -float(qry[q] @ gal[j])) for q in range(25)]
    expected = {f"R@{k}": sum(int(ql[q]) in [int(gl[j]) for j in nearest[q][:k]] for q in range(25)) / 25 for k in ks}
    assert retrieval_recall(qry, ql, gal, gl, ks=ks, chunk=7) == pytest.approx(expected)


def test_knn_retrieval_end_to_end_on_coloured_videos(tmp_path):
    # Constant-colour videos: the wired feature of a video is its colour (repeated over T'), so cosine
    # similarity is that of the colours. Gallery colours are permutations of (200, 20, 20): equal norms,
    # so ranking by dot product with the query colour is ranking by cosine.
    gallery = [((200, 20, 20), 0), ((20, 200, 20), 1), ((20, 20, 200), 2)]
    queries = [((200, 40, 20), 0),    # dots: red 40800, green 12400, blue 9200  -> red first: hit @1
               ((30, 60, 200), 1),    # dots: red 11200, green 16600, blue 41800 -> green 2nd: hit @2
               ((100, 90, 80), 2)]    # dots: red 23400, green 21600, blue 19800 -> blue 3rd: hit @3
    def items(rows, tag):
        return [VideoItem(write_video(tmp_path / f"{tag}{i}.mkv", segments((20, colour))), label)
                for i, (colour, label) in enumerate(rows)]
    result = knn_retrieval(wired_r3d(), items(gallery, "g"), items(queries, "q"), ks=(1, 2, 3), batch_size=2,
                           workers=0, head="retrieval", clips=2, frames=8, stride=2, size=32,
                           crop_fraction=0.8, channel_order="bgr")
    assert result["R@1"] == pytest.approx(1 / 3) and result["R@2"] == pytest.approx(2 / 3) and result["R@3"] == 1.0
    assert result["queries"] == 3 and result["gallery"] == 3 and result["feature_dim"] == FEATURE_DIM * 2


# ------------------------------------------------------------------------------------------------
# 4. VideoModel.classify
# ------------------------------------------------------------------------------------------------

LABELS = ["walk", "run", "jump", "swim"]
# The wired classifier: with frames of 4 (T' = 1) a window's feature is the colour of its first frame
# in the model's channel order (BGR). For the pure colours below the feature is a one-hot vector, and
# the classifier's column for that channel holds log(p), so the window's softmax is exactly p.
P_RED = np.array([0.10, 0.20, 0.30, 0.40])
P_GREEN = np.array([0.70, 0.15, 0.10, 0.05])
P_BLUE = np.array([0.04, 0.06, 0.60, 0.30])
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
SDK_PREPROCESSING = {"channel_order": "bgr", "value_range": [0.0, 1.0], "mean": None, "std": None, "size": 32,
                     "crop_fraction": 0.8, "frames": 4, "eval_frame_stride": 2, "pretrain_frame_stride": 4,
                     "eval_protocol": {"clips": 9, "pooling": "temporal", "similarity": "cosine"}}


@pytest.fixture(scope="module")
def classify_model(tmp_path_factory):
    """The wired network with a hand-set classifier, saved and loaded back through the SDK (torch backend)."""
    model = wired_r3d(num_classes=len(LABELS))
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
        for channel, p in ((0, P_BLUE), (1, P_GREEN), (2, P_RED)):  # BGR input channels
            model.classifier.weight[:, channel] = torch.tensor(np.log(p), dtype=torch.float32)
    config = model_config(model, arch=ARCH, model_args=resolve_model_args(ARCH), preprocessing=SDK_PREPROCESSING,
                          labels=LABELS)
    folder = save_pretrained(model, tmp_path_factory.mktemp("sdk") / "wired", config)
    return load_model(str(folder), device="cpu")


def test_classify_averages_softmax_over_windows(classify_model, tmp_path):
    # Windows: 4 frames at stride 2 (span 7), back to back; a tail window ends at the last frame.
    video_x = torch.from_numpy(segments((7, RED), (7, GREEN))).view(14, 1, 1, 3).expand(14, HEIGHT, WIDTH, 3)
    # 14 frames: windows start at 0, 7 -> red, green
    path_y = write_video(tmp_path / "y.mkv", segments((14, RED), (7, BLUE)))
    # 21 frames: windows start at 0, 7, 14 -> red, red, blue
    video_z = torch.from_numpy(segments((7, BLUE), (10, GREEN))).view(17, 1, 1, 3).expand(17, HEIGHT, WIDTH, 3)
    # 17 frames: windows start at 0, 7 and the tail window at 10 -> blue, green, green
    out = classify_model.classify([video_x.contiguous(), str(path_y), video_z.contiguous()], top_k=3, batch_size=2)
    expected_probs = [(P_RED + P_GREEN) / 2,            # [.40 .175 .20 .225]    -> walk .40, swim .225, jump .20
                      (2 * P_RED + P_BLUE) / 3,         # [.08 .1533 .40 .3667]  -> jump .40, swim .3667, run .1533
                      (P_BLUE + 2 * P_GREEN) / 3]       # [.48 .12 .2667 .1333]  -> walk .48, jump .2667, swim .1333
    assert [[label for label, _ in row] for row in out] == [["walk", "swim", "jump"], ["jump", "swim", "run"],
                                                            ["walk", "jump", "swim"]]
    for row, probs in zip(out, expected_probs):
        for label, value in row:
            assert value == pytest.approx(probs[LABELS.index(label)], abs=1e-5)
    assert [v for _, v in out[0]] == pytest.approx([0.40, 0.225, 0.20], abs=1e-5)  # by hand


def test_classify_a_preprocessed_batch_is_per_clip(classify_model):
    clips = torch.zeros(3, 3, 4, 32, 32)
    clips[0, 2] = 1.0  # model input channel 2 = red (BGR)
    clips[1, 1] = 1.0  # green
    clips[2, 0] = 1.0  # blue
    out = classify_model.classify(clips, top_k=10)  # more than the 4 labels: all of them, best first
    assert [[label for label, _ in row] for row in out] == [["swim", "jump", "run", "walk"],
                                                            ["walk", "run", "jump", "swim"],
                                                            ["jump", "swim", "run", "walk"]]
    for row, probs in zip(out, (P_RED, P_GREEN, P_BLUE)):
        assert sum(v for _, v in row) == pytest.approx(1.0, abs=1e-5)
        assert [v for _, v in row] == pytest.approx(sorted(probs, reverse=True), abs=1e-5)


# ------------------------------------------------------------------------------------------------
# 5. linear probe and fine-tuning end to end (run_protocol) on a tiny colour-coded dataset
# ------------------------------------------------------------------------------------------------

CLASS_COLOURS = {"blue": (20, 20, 220), "green": (20, 220, 20), "red": (220, 20, 20)}  # sorted = label order
PROTOCOL_PREPROCESSING = {"channel_order": "bgr", "value_range": [0.0, 1.0], "mean": None, "std": None, "size": 16,
                          "crop_fraction": 0.8, "frames": 4, "eval_frame_stride": 2, "pretrain_frame_stride": 4,
                          "eval_protocol": {"clips": 9, "pooling": "temporal", "similarity": "cosine"}}
COMMON_SETTINGS = {"size": 16, "frames": 4, "stride": 2, "test_clips": 2, "test_crops": 1, "crop_fraction": 0.8,
                   "epochs": 5, "batch_size": 4, "workers": 0, "augment": "none", "seed": 0}
PROTOCOL_SETTINGS = {
    "linear": {**COMMON_SETTINGS, "lr": 1e-2, "frozen_bn": "train"},
    "finetune": {**COMMON_SETTINGS, "lr": 1e-3, "dropout": 0.5},
}
# Test videos (true class, index); two of the six are deliberately listed under a wrong class.
TEST_VIDEOS = [(name, k) for name in CLASS_COLOURS for k in range(2)]
SWAPPED = {("blue", 0): "red", ("red", 1): "green"}


@pytest.fixture(scope="module")
def colour_videos(tmp_path_factory):
    """Train (4 per class) and test (2 per class) videos of one colour per class, slightly jittered
    per video and per frame, in a ``folder`` layout (true and swapped test labels) and a ``csv`` one."""
    rng = np.random.default_rng(0)
    pool = tmp_path_factory.mktemp("colour_videos")

    def video(subset, name, k):
        base = np.array(CLASS_COLOURS[name]) + rng.integers(-15, 16, size=3)
        colours = np.clip(base[None] + rng.integers(-5, 6, size=(16, 3)), 0, 255)
        return write_video(pool / "videos" / subset / f"{name}{k}.mkv", colours)

    train = {(name, k): video("train", name, k) for name in CLASS_COLOURS for k in range(4)}
    test = {key: video("test", *key) for key in TEST_VIDEOS}
    roots = {}
    for variant in ("true", "swapped"):
        root = roots[variant] = pool / f"folder_{variant}"
        for (name, k), path in train.items():
            _copy(path, root / "train" / name / path.name)
        for key, path in test.items():
            listed = SWAPPED.get(key, key[0]) if variant == "swapped" else key[0]
            _copy(path, root / "test" / listed / path.name)
    for variant in ("true", "swapped"):
        root = roots[f"csv_{variant}"] = pool / f"csv_{variant}"
        root.mkdir()
        _write_csv(root / "train.csv", [(p, name) for (name, _), p in train.items()])
        _write_csv(root / "test.csv", [(p, SWAPPED.get(key, key[0]) if variant == "swapped" else key[0])
                                       for key, p in test.items()])
    roots["test_paths"] = test
    return roots


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


def _write_csv(path: Path, rows) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        writer.writerows((str(p), label) for p, label in rows)


@pytest.fixture(scope="module")
def colour_encoder(tmp_path_factory):
    """A random r3d_10_025 encoder whose BatchNorm running statistics are those of the class colours.

    A freshly initialised encoder keeps BatchNorm's (0, 1) running statistics, far from the batch
    statistics its BatchNorm layers see in train mode, so a few training steps leave the test-time
    (eval-mode) features unlike the training ones. A pretrained encoder has running statistics of
    its data; we give this one those of the three colours (one cumulative pass in train mode).
    """
    torch.manual_seed(0)
    model = create_model(ARCH, head_dim=32)
    clips = torch.stack([torch.tensor(c[::-1], dtype=torch.float32).div(255).view(3, 1, 1, 1).expand(3, 4, 16, 16)
                         for c in CLASS_COLOURS.values()])  # BGR, as the model is fed
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: the running statistics become this batch's
    with torch.no_grad():
        model.train().backbone(clips)
    for m in norms:
        m.momentum = 0.1
    config = model_config(model.eval(), arch=ARCH, model_args=resolve_model_args(ARCH),
                          preprocessing=PROTOCOL_PREPROCESSING)
    return save_pretrained(model, tmp_path_factory.mktemp("encoder") / "encoder", config)


@pytest.mark.parametrize("protocol,layout", [("linear", "folder"), ("finetune", "csv")])
@pytest.mark.parametrize("labels", ["true", "swapped"])
def test_protocol_end_to_end_known_accuracy(colour_encoder, colour_videos, tmp_path, protocol, layout, labels):
    root = colour_videos[f"{layout}_{labels}" if layout == "csv" else labels]
    save_dir = tmp_path / "trained"
    result = run_protocol(str(colour_encoder), protocol, layout, root, overrides=PROTOCOL_SETTINGS[protocol],
                          log=_quiet, save_dir=save_dir)
    assert result["videos"] == 6 and result["classes"] == 3 and result["bad_videos"] == 0
    assert len(result["history"]) == PROTOCOL_SETTINGS[protocol]["epochs"]
    # every test video is classified as its colour; with 2 of the 6 listed under a wrong class
    # exactly 4/6 of the videos (and of their clips) count as right
    expected = 1.0 if labels == "true" else 4 / 6
    assert result["top1"] == pytest.approx(expected) and result["clip_top1"] == pytest.approx(expected)
    assert result["top5"] == 1.0  # 3 classes
    # the saved classifier, through the SDK, names every test video's true colour
    model = load_model(str(save_dir), device="cpu")
    assert model.labels == list(CLASS_COLOURS)
    paths = colour_videos["test_paths"]
    predicted = [row[0][0] for row in model.classify([str(paths[key]) for key in TEST_VIDEOS], top_k=1)]
    assert predicted == [name for name, _ in TEST_VIDEOS]
