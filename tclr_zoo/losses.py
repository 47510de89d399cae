"""TCLR pretraining losses (Dave et al., "TCLR: Temporal Contrastive Learning for Video
Representation", arXiv 2101.07974), vectorised.

Four terms, all on L2-normalised embeddings, similarity = dot product, temperature
``tau = 0.1``:

* ``ic_global``    instance contrast between the two augmentations of the global clip;
* ``ic_local``     instance contrast among the ``2K`` local-clip embeddings of each video;
* ``local_local``  (LL) temporal contrast between local clips of the *same* video;
* ``global_local`` (GL) temporal contrast between the time-steps of the global clip and
  the local clips covering the same time.

The *implicit scales* of the terms differ (``ic_local`` sums 56 NT-Xent terms and divides
by 4; ``local_local`` sums over the batch instead of averaging; ``global_local`` sums four
view combinations).  This is what the reference code (DAVEISHAN/TCLR @ 850efa9) does, and
where paper and code differ this project follows the code, so the scales are kept unchanged and
the default weights are all 1 (see the docstrings of each function for the details).

Unlike the reference, nothing here loops in Python over the batch, over clip pairs or over
(augmentation, clip) combinations: every term is one batched matrix product followed by
masked ``logsumexp`` reductions.  All arithmetic is done in at least float32 (half /
bfloat16 inputs are upcast, autocast is disabled inside), so the losses are safe to call
from a mixed-precision training step.

The inputs are *not* re-normalised here: the projection head already L2-normalises, and
the loss is defined on exactly those dot products.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, fields
from typing import Iterator

import torch
from torch import Tensor

__all__ = ["LossWeights", "nt_xent", "pairwise_nt_xent", "tclr_losses", "LOSS_KEYS"]

#: Keys of the dictionary returned by :func:`tclr_losses` (``total`` last).
LOSS_KEYS = ("ic_global", "ic_local", "local_local", "global_local", "total")


@dataclass(frozen=True)
class LossWeights:
    """Multipliers of the four TCLR loss terms in ``total``.

    The defaults (all 1) are the reference ("faithful") setting: the terms are simply added,
    with their different implicit scales left as they are.
    """

    ic_global: float = 1.0
    ic_local: float = 1.0
    local_local: float = 1.0
    global_local: float = 1.0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = float(getattr(self, f.name))
            if not (v == v and abs(v) != float("inf")):  # NaN / inf
                raise ValueError(f"LossWeights.{f.name} must be finite, got {v!r}")

    @classmethod
    def ic_only(cls) -> "LossWeights":
        """Ablation: instance-contrastive terms only (LL and GL weight 0)."""
        return cls(ic_global=1.0, ic_local=1.0, local_local=0.0, global_local=0.0)

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float16 / bfloat16 -> float32; float32 / float64 unchanged."""
    if not dtype.is_floating_point:
        raise TypeError(f"embeddings must be floating point, got {dtype}")
    return torch.promote_types(dtype, torch.float32)


@contextlib.contextmanager
def _no_autocast(device: torch.device) -> Iterator[None]:
    """Disable autocast so the matmuls below really run in the compute dtype."""
    try:
        ctx = torch.autocast(device_type=device.type, enabled=False)
    except (RuntimeError, ValueError):  # device type without autocast support
        ctx = contextlib.nullcontext()
    with ctx:
        yield


def _masked_fill_value(dtype: torch.dtype) -> float:
    # A finite "minus infinity": exp() of it underflows to exactly 0, but a row made only of
    # it (NT-Xent with N = 1 has no same-view negatives) still has a finite logsumexp, so
    # backward never produces (-inf) - (-inf) = NaN.  Masked entries get zero gradient.
    return torch.finfo(dtype).min


def pairwise_nt_xent(views: Tensor, temperature: float = 0.1) -> Tensor:
    """NT-Xent between every ordered pair of views, in one batched computation.

    ``views``: ``[..., M, N, D]`` (M views of the same N instances).  Returns ``[..., M, M]``
    whose entry ``[m, n]`` (m != n) equals ``nt_xent(views[..., m, :, :], views[..., n, :, :])``;
    the matrix is symmetric (NT-Xent is symmetric in its two arguments) and its diagonal is
    meaningless (set to 0).

    How: one Gram matrix ``G = V V^T / tau`` of shape ``[..., M, N, M, N]``.  For NT-Xent(a=V_m,
    b=V_n) the row of anchor ``V_m[i]`` sees the ``N`` entries of block ``(m, n)`` (its positive
    ``G[m,i,n,i]`` and ``N-1`` cross-view negatives) plus the ``N-1`` non-self entries of block
    ``(m, m)``, so its log-partition is ``logaddexp(lse(G[m,i,n,:]), lse(G[m,i,m,:] \\ self))``.
    Per-block logsumexps are shared by all pairs, so the cost is that of the Gram matrix.
    """
    if views.dim() < 3:
        raise ValueError(f"views must be [..., M, N, D], got shape {tuple(views.shape)}")
    cdt = _compute_dtype(views.dtype)
    with _no_autocast(views.device):
        v = views.to(cdt)
        M, N = v.shape[-3], v.shape[-2]
        flat = v.reshape(*v.shape[:-3], M * N, v.shape[-1])
        gram = (flat @ flat.transpose(-1, -2)) / temperature  # [..., M*N, M*N]
        gram = gram.reshape(*v.shape[:-3], M, N, M, N)  # [..., m, i, n, j]

        eye_m = torch.eye(M, dtype=torch.bool, device=v.device)
        eye_n = torch.eye(N, dtype=torch.bool, device=v.device)
        self_mask = eye_m[:, None, :, None] & eye_n[None, :, None, :]  # [m, i, n, j]
        masked = gram.masked_fill(self_mask, _masked_fill_value(cdt))

        lse_block = torch.logsumexp(masked, dim=-1)  # [..., m, i, n]
        lse_self = torch.diagonal(lse_block, dim1=-3, dim2=-1)  # [..., i, m]
        lse_self = lse_self.transpose(-1, -2).unsqueeze(-1)  # [..., m, i, 1]
        log_z = torch.logaddexp(lse_block, lse_self)  # [..., m, i, n]
        positive = torch.diagonal(gram, dim1=-3, dim2=-1)  # [..., m, n, i]
        rows = log_z - positive.transpose(-1, -2)  # [..., m, i, n]
        per_anchor = rows.sum(dim=-2)  # [..., m, n]: sum of the N rows anchored in view m
        pair = (per_anchor + per_anchor.transpose(-1, -2)) / (2 * N)
        return pair.masked_fill(eye_m, 0.0)


def nt_xent(a: Tensor, b: Tensor, temperature: float = 0.1) -> Tensor:
    """NT-Xent (SimCLR) loss as TCLR uses it, batched over leading dimensions.

    ``a``, ``b``: ``[..., N, D]``, L2-normalised, row ``i`` of ``a`` and of ``b`` are two views
    of instance ``i``.  The ``2N`` rows ``[b; a]`` are stacked; each row's positive is its
    partner in the other view and the other ``2N - 2`` rows are its negatives (self-similarity
    excluded); logits are dot products / ``temperature``; the cross-entropy is **summed over
    the 2N rows and divided by 2N** (i.e. a mean over rows, as in the reference).

    Returns the loss per leading index (shape ``a.shape[:-2]``; a scalar for 2-D inputs), in
    float32 (or float64 for float64 inputs).  With ``N == 1`` there are no negatives and the
    loss is exactly 0.  The loss is symmetric: ``nt_xent(a, b) == nt_xent(b, a)``.
    """
    if a.shape != b.shape or a.dim() < 2:
        raise ValueError(
            f"a and b must have the same shape [..., N, D], got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    cdt = torch.promote_types(_compute_dtype(a.dtype), _compute_dtype(b.dtype))
    pair = pairwise_nt_xent(torch.stack([a.to(cdt), b.to(cdt)], dim=-3), temperature)
    return pair[..., 0, 1]


def _ic_local(local_z: Tensor, temperature: float) -> Tensor:
    """IC local: all 2K local-clip views, every ordered pair except a view with itself.

    The reference loops over (u, v) in {0,1}^2 and (k, l) in {0..K-1}^2, skips u==v and k==l,
    and adds ``nt_xent(local[u][k], local[v][l])``: 2K(2K-1) terms (56 for K=4).  That also
    counts pairs of *different* local clips of the same video (even of the same augmentation)
    as positives, and each unordered pair twice; the sum is divided by 4 (the number of
    (u, v) augmentation combinations).  We keep exactly that: the off-diagonal sum of the
    pairwise NT-Xent matrix of the 2K views, divided by 4.
    """
    two, B, K, D = local_z.shape
    views = local_z.permute(0, 2, 1, 3).reshape(two * K, B, D)  # view index u*K + k
    pair = pairwise_nt_xent(views, temperature)  # [2K, 2K], diagonal already 0
    return pair.sum() / 4.0


def _local_local(local_z: Tensor, temperature: float) -> Tensor:
    """LL: per video, NT-Xent with N = K between aug-0 and aug-1 local embeddings.

    Positive: the same local clip in the other augmentation; negatives: the other local clips
    of the same video (both augmentations).  The reference **sums** over the batch (it loops
    over videos and adds), so this term grows linearly with the batch size; kept as is.
    """
    return nt_xent(local_z[0], local_z[1], temperature).sum()


def _global_local(global_steps_z: Tensor, local_z: Tensor, temperature: float) -> Tensor:
    """GL: time-step k of the global clip <-> local clip k, for all 4 (global, local) augs.

    For one global view g [B,K,D] and local view l [B,K,D]: ``S = g @ l^T`` [B,K,K]; the
    reference concatenates ``S`` and ``S^T`` into ``[2B*K, K]`` logits with label ``r mod K``
    (i.e. the diagonal), applies cross-entropy with reduction *sum* and divides by ``2B``
    (number of K x K blocks), i.e. the loss per block is a sum over its K rows.  The four
    (u, v) combinations are summed.  Here all four are one batched matmul; rows of ``S`` are
    reduced along the last dim, rows of ``S^T`` (= columns of ``S``) along the one before.
    """
    cdt = torch.promote_types(_compute_dtype(global_steps_z.dtype), _compute_dtype(local_z.dtype))
    with _no_autocast(local_z.device):
        g = global_steps_z.to(cdt)
        l = local_z.to(cdt)
        B = g.shape[1]
        s = torch.einsum("ubkd,vbjd->uvbkj", g, l) / temperature  # [2, 2, B, K, K]
        diag = torch.diagonal(s, dim1=-2, dim2=-1)  # [2, 2, B, K]
        rows = torch.logsumexp(s, dim=-1) - diag  # CE of rows of S
        cols = torch.logsumexp(s, dim=-2) - diag  # CE of rows of S^T
        return (rows.sum() + cols.sum()) / (2 * B)


def _check_shapes(global_z: Tensor, global_steps_z: Tensor, local_z: Tensor) -> None:
    if global_z.dim() != 3 or global_z.shape[0] != 2:
        raise ValueError(f"global_z must be [2, B, D], got {tuple(global_z.shape)}")
    if local_z.dim() != 4 or local_z.shape[0] != 2:
        raise ValueError(f"local_z must be [2, B, K, D], got {tuple(local_z.shape)}")
    if global_steps_z.shape != local_z.shape:
        raise ValueError(
            "global_steps_z and local_z must both be [2, B, K, D], got "
            f"{tuple(global_steps_z.shape)} and {tuple(local_z.shape)}"
        )
    _, B, K, D = local_z.shape
    if global_z.shape[1:] != (B, D):
        raise ValueError(f"global_z {tuple(global_z.shape)} does not match local_z {tuple(local_z.shape)}")
    if K < 2:
        raise ValueError(f"need K >= 2 local clips, got {K}")
    if B < 1:
        raise ValueError("empty batch")


def tclr_losses(
    global_z: Tensor,
    global_steps_z: Tensor,
    local_z: Tensor,
    *,
    temperature: float = 0.1,
    weights: LossWeights | None = None,
) -> dict[str, Tensor]:
    """All TCLR losses for one step.

    Args:
        global_z: ``[2, B, D]`` pooled global-clip embedding, dim 0 = augmentation.
        global_steps_z: ``[2, B, K, D]`` embedding of each of the K time-steps of the global clip.
        local_z: ``[2, B, K, D]`` pooled embedding of each of the K local clips.
        temperature: softmax temperature (0.1 in the reference, for every term).
        weights: multipliers in ``total``; default all 1 (reference).

    All embeddings must already be L2-normalised.

    Returns:
        A dict of scalar tensors with the keys :data:`LOSS_KEYS`:
        ``ic_global, ic_local, local_local, global_local, total``, where
        ``total = sum(weight * term)`` over the terms with **non-zero** weight.

        Terms whose weight is 0 are still computed and reported (useful for logging ablations),
        but under ``torch.no_grad()``: they are detached, cost no autograd memory, and ``total``
        does not depend on them at all (not even through a ``0 * nan``).

    Raises:
        ValueError: shapes that are not ``[2, B, D]`` / ``[2, B, K, D]`` or do not agree with each
            other, fewer than 2 local clips (``K < 2``), or an empty batch.
    """
    _check_shapes(global_z, global_steps_z, local_z)
    w = weights if weights is not None else LossWeights()
    terms = {
        "ic_global": lambda: nt_xent(global_z[0], global_z[1], temperature),
        "ic_local": lambda: _ic_local(local_z, temperature),
        "local_local": lambda: _local_local(local_z, temperature),
        "global_local": lambda: _global_local(global_steps_z, local_z, temperature),
    }
    out: dict[str, Tensor] = {}
    total: Tensor | None = None
    for name, fn in terms.items():  # 4 named terms, not a loop over data
        weight = float(getattr(w, name))
        if weight == 0.0:
            with torch.no_grad():
                out[name] = fn()
            continue
        value = fn()
        out[name] = value
        contrib = value if weight == 1.0 else value * weight
        total = contrib if total is None else total + contrib
    if total is None:  # every weight is 0
        total = torch.zeros((), dtype=out["ic_global"].dtype, device=out["ic_global"].device)
    out["total"] = total
    return out
