"""Retrieval recall@k on hand-made features, where the answer is known."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tclr_zoo.train.evaluate import retrieval_recall


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
