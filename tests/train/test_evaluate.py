"""Retrieval recall@k on hand-made features, where the answer is known; the heads evaluation embeds with."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tclr_zoo.constants import EMBED_HEADS
from tclr_zoo.models.outputs import head_forward
from tclr_zoo.models.registry import create_model
from tclr_zoo.train.evaluate import extract_features, retrieval_recall


def test_recall_at_k_counts_a_query_when_its_class_is_among_the_k_nearest():
    gallery = F.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7], [-1.0, 0.0]]), dim=1)
    gallery_labels = torch.tensor([0, 1, 2, 3])
    query = F.normalize(torch.tensor([[0.9, 0.1], [0.1, 0.9], [-0.2, 1.0]]), dim=1)
    query_labels = torch.tensor([0, 2, 3])
    r = retrieval_recall(query, query_labels, gallery, gallery_labels, ks=(1, 2, 5))
    # query 0: nearest is class 0 (hit at 1); query 1: order 1, 2 (hit at 2); query 2: class 3 is far
    assert r == pytest.approx({"R@1": 1 / 3, "R@2": 2 / 3, "R@5": 1.0})  # k past the gallery = all of it


def test_recall_is_the_same_in_chunks():
    g = torch.Generator().manual_seed(0)
    gallery = F.normalize(torch.randn(50, 8, generator=g), dim=1)
    query = F.normalize(torch.randn(30, 8, generator=g), dim=1)
    gl, ql = torch.randint(0, 5, (50,), generator=g), torch.randint(0, 5, (30,), generator=g)
    assert retrieval_recall(query, ql, gallery, gl, chunk=7) == retrieval_recall(query, ql, gallery, gl)


@pytest.mark.parametrize("head", EMBED_HEADS)
def test_evaluation_embeds_each_clip_with_the_sdks_head_of_that_name(head):
    """One vocabulary: ``extract_features(head=...)`` of a one-clip video is the SDK's (and the exported
    graph's) output of that head, L2-normalised."""
    torch.manual_seed(0)
    model = create_model("r3d_10_025", head_dim=32).eval()
    clips = torch.rand(3, 3, 16, 32, 32, generator=torch.Generator().manual_seed(1))
    videos = [(clips[i:i + 1], i, i) for i in range(len(clips))]  # (clips [1,3,T,H,W], label, index) per video
    features, labels, bad = extract_features(model, videos, batch_size=2, head=head)
    with torch.no_grad():
        expected = F.normalize(head_forward(model, head, clips), dim=1)
    assert bad == [] and labels.tolist() == [0, 1, 2]
    torch.testing.assert_close(features, expected, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="head must be one of backbone, retrieval, projection, got 'temporal'"):
        extract_features(model, videos, head="temporal")
