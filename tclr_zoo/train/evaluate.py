"""Nearest-neighbour retrieval, the TCLR paper's protocol: clip-averaged features, cosine, recall@k.

A video's feature is one of the model's heads (the SDK's names), averaged over evenly spaced clips
and L2-normalised. The paper's is the ``retrieval`` head: the backbone's spatially averaged temporal
map ``[C, T']`` flattened to ``C*T'`` (2048-D for R3D-18: no projection, no averaging over time).
Queries are the test split, the gallery is the train split; R@k is the fraction of queries whose
class is among the labels of their k nearest gallery videos.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..constants import EMBED_HEADS
from ..data.datasets import BadSample, EvalClipsDataset, VideoItem, split_bad


def collate_eval(batch: list) -> dict:
    good, bad = split_bad(batch)
    if not good:
        return {"bad": bad}
    clips, labels, indices = zip(*good)
    return {"clips": torch.stack(clips), "labels": torch.tensor(labels), "indices": torch.tensor(indices), "bad": bad}


@torch.no_grad()
def extract_features(model: torch.nn.Module, dataset: EvalClipsDataset, *, batch_size: int = 4, workers: int = 0,
                     device: torch.device | str = "cpu", head: str = "retrieval", progress: bool = False,
                     desc: str = "features", log: Callable[[str], None] | None = None,
                     ) -> tuple[torch.Tensor, torch.Tensor, list[BadSample]]:
    """L2-normalised video features ``[N, D]``, labels ``[N]`` and the videos that failed to decode.

    ``progress`` shows a tqdm bar on a terminal; ``log``, when given, also gets a line ``"  DESC
    n/N videos"`` at every tenth of the videos, for output that is not a terminal (a pipe, a log
    file), where the bar stays silent.

    ``head="retrieval"`` keeps the time-steps (TCLR's protocol, ``C*T'``-D); ``"backbone"`` averages
    them too (``C``-D, the convention of most other video SSL zoos); ``"projection"`` embeds each
    clip with the projection head (``head_dim``-D, what the contrastive losses saw). The same
    numbers as the SDK's ``VideoModel.embed(head=...)`` of each clip, before the clips are averaged.
    """
    if head not in EMBED_HEADS:
        raise ValueError(f"head must be one of {', '.join(EMBED_HEADS)}, got {head!r}")
    was_training = model.training
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=collate_eval)
    feats, labels, bad = [], [], []
    report = _ProgressLines(desc, len(dataset), log)
    try:
        for batch in tqdm(loader, desc=desc, disable=None if progress else True, leave=False):
            report.advance(len(batch["bad"]) + (len(batch["labels"]) if "labels" in batch else 0))
            bad += batch["bad"]
            if "clips" not in batch:
                continue
            clips = batch["clips"].to(device)  # [B, N, 3, T, H, W]
            videos, per_video = clips.shape[:2]
            temporal = model.temporal_features(clips.flatten(0, 1)).float()  # [B*N, C, T']
            per_clip = _head_features(model, temporal, head)
            feats.append(F.normalize(per_clip.view(videos, per_video, -1).mean(1), dim=1).cpu())
            labels.append(batch["labels"])
    finally:
        model.train(was_training)
    if not feats:
        raise ValueError("no video could be decoded for feature extraction")
    return torch.cat(feats), torch.cat(labels), bad


class _ProgressLines:
    """``"  DESC n/N videos"`` lines to ``log`` each time another tenth of the N videos is done (and at
    the end): a few lines per pass, however long it takes."""

    def __init__(self, desc: str, total: int, log: Callable[[str], None] | None) -> None:
        self.desc, self.total, self.log, self.done, self.tenths = desc, total, log, 0, 0

    def advance(self, videos: int) -> None:
        self.done += videos
        tenths = self.done * 10 // max(self.total, 1)
        if self.log is not None and tenths > self.tenths:
            self.tenths = tenths
            self.log(f"  {self.desc} {self.done}/{self.total} videos")


def _head_features(model: torch.nn.Module, temporal: torch.Tensor, head: str) -> torch.Tensor:
    """The ``head`` rows of clips whose spatially averaged feature maps are ``temporal [N, C, T']``."""
    if head == "retrieval":
        return temporal.flatten(1)
    if head == "backbone":
        return temporal.mean(-1)
    return model.projection(temporal.mean(-1))


def retrieval_recall(query: torch.Tensor, query_labels: torch.Tensor, gallery: torch.Tensor,
                     gallery_labels: torch.Tensor, ks: Sequence[int] = (1, 5, 10, 20, 50),
                     chunk: int = 4096) -> dict[str, float]:
    """``{"R@k": fraction}`` for cosine retrieval of L2-normalised ``query`` rows among ``gallery`` rows."""
    k_max = min(max(ks), gallery.shape[0])
    hits = []
    for start in range(0, query.shape[0], chunk):
        sims = query[start:start + chunk] @ gallery.T
        nearest = sims.topk(k_max, dim=1).indices  # sorted by decreasing similarity
        hits.append(gallery_labels[nearest] == query_labels[start:start + chunk, None])
    hit = torch.cat(hits)
    return {f"R@{k}": hit[:, :min(k, k_max)].any(dim=1).float().mean().item() for k in ks}


def knn_retrieval(model: torch.nn.Module, train_items: Sequence[VideoItem], test_items: Sequence[VideoItem], *,
                  ks: Sequence[int] = (1, 5, 10, 20, 50), device="cpu", batch_size: int = 4, workers: int = 0,
                  progress: bool = False, head: str = "retrieval", log: Callable[[str], None] | None = None,
                  **clip_args) -> dict:
    """The paper's nearest-neighbour retrieval of the test split against the train split; returns
    recalls and counts.

    ``log``: progress lines for output that is not a terminal (see :func:`extract_features`).
    """
    extract = dict(batch_size=batch_size, workers=workers, device=device, head=head, progress=progress, log=log)
    gallery, gallery_labels, bad_g = extract_features(model, EvalClipsDataset(train_items, **clip_args),
                                                      desc="gallery", **extract)
    query, query_labels, bad_q = extract_features(model, EvalClipsDataset(test_items, **clip_args),
                                                  desc="queries", **extract)
    result = retrieval_recall(query, query_labels, gallery, gallery_labels, ks)
    result.update(queries=int(query.shape[0]), gallery=int(gallery.shape[0]), bad_videos=len(bad_g) + len(bad_q),
                  feature_dim=int(query.shape[1]))
    return result


__all__ = ["collate_eval", "extract_features", "knn_retrieval", "retrieval_recall"]
