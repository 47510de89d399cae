"""Tests for tclr_zoo.losses against a plain, loop-based transcription of the TCLR losses as the reference
code computes them."""

from __future__ import annotations

import dataclasses
import math
import time

import pytest
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from tclr_zoo.losses import LOSS_KEYS, LossWeights, nt_xent, pairwise_nt_xent, tclr_losses

TAU = 0.1


# --------------------------------------------------------------------------------------
# independent reference: loops over batch and pairs, like the reference code
# --------------------------------------------------------------------------------------


def ref_nt_xent(a: torch.Tensor, b: torch.Tensor, tau: float = TAU) -> torch.Tensor:
    """SimCLR-style NT-Xent: 2N x 2N similarity of [b; a], positive of row r is r +- N."""
    n = a.shape[0]
    x = torch.cat([b, a], dim=0)
    sim = x @ x.t() / tau
    not_self = ~torch.eye(2 * n, dtype=torch.bool)
    total = sim.new_zeros(())
    for r in range(2 * n):
        pos = (r + n) % (2 * n)
        negatives = [sim[r, c] for c in range(2 * n) if c != r and c != pos]
        logits = torch.stack([sim[r, pos]] + negatives)  # positive first -> label 0
        total = total + F.cross_entropy(logits[None], torch.zeros(1, dtype=torch.long), reduction="sum")
        assert int(not_self[r].sum()) == len(negatives) + 1
    return total / (2 * n)


def ref_losses(gz, gsz, lz, tau: float = TAU) -> dict[str, torch.Tensor]:
    B, K = lz.shape[1], lz.shape[2]
    ic_global = ref_nt_xent(gz[0], gz[1], tau)

    ic_local = gz.new_zeros(())
    n_terms = 0
    for u in range(2):
        for v in range(2):
            for k in range(K):
                for l in range(K):
                    if u == v and k == l:
                        continue
                    ic_local = ic_local + ref_nt_xent(lz[u, :, k], lz[v, :, l], tau)
                    n_terms += 1
    assert n_terms == 2 * K * (2 * K - 1)
    ic_local = ic_local / 4

    local_local = gz.new_zeros(())
    for b in range(B):
        local_local = local_local + ref_nt_xent(lz[0, b], lz[1, b], tau)

    global_local = gz.new_zeros(())
    for u in range(2):
        for v in range(2):
            g, l_ = gsz[u], lz[v]
            s = torch.bmm(g, l_.transpose(1, 2))  # [B, K, K]
            logits = torch.cat([s, s.transpose(1, 2)], dim=0).reshape(2 * B * K, K) / tau
            labels = torch.arange(2 * B * K) % K
            global_local = global_local + F.cross_entropy(logits, labels, reduction="sum") / (2 * B)

    total = ic_global + ic_local + local_local + global_local
    return dict(
        ic_global=ic_global, ic_local=ic_local, local_local=local_local, global_local=global_local, total=total
    )


def make_inputs(B, K, D=16, dtype=torch.float64, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    gz = F.normalize(torch.randn(2, B, D, generator=g, dtype=torch.float64), dim=-1)
    gsz = F.normalize(torch.randn(2, B, K, D, generator=g, dtype=torch.float64), dim=-1)
    lz = F.normalize(torch.randn(2, B, K, D, generator=g, dtype=torch.float64), dim=-1)
    out = [t.to(dtype) for t in (gz, gsz, lz)]
    if requires_grad:
        out = [t.requires_grad_() for t in out]
    return out


# --------------------------------------------------------------------------------------
# agreement with the reference
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("B,K", [(1, 4), (2, 4), (3, 4), (5, 4), (8, 4), (4, 2), (3, 3)])
def test_matches_loop_reference_float64(B, K):
    gz, gsz, lz = make_inputs(B, K, seed=B * 10 + K)
    got = tclr_losses(gz, gsz, lz)
    want = ref_losses(gz, gsz, lz)
    assert tuple(got) == LOSS_KEYS
    for key in LOSS_KEYS:
        assert got[key].shape == ()
        assert got[key].dtype == torch.float64
        torch.testing.assert_close(got[key], want[key], atol=1e-5, rtol=1e-7, msg=key)


@pytest.mark.parametrize("B,K", [(2, 4), (5, 4), (8, 2)])
def test_matches_loop_reference_float32(B, K):
    gz, gsz, lz = make_inputs(B, K, seed=3 + B)
    got = tclr_losses(*(t.float() for t in (gz, gsz, lz)))
    want = ref_losses(gz, gsz, lz)
    for key in LOSS_KEYS:
        assert got[key].dtype == torch.float32
        # float32 vs float64 reference; terms are sums of up to ~60 NT-Xent values
        torch.testing.assert_close(got[key].double(), want[key], atol=1e-5, rtol=1e-5, msg=key)


def test_other_temperature():
    gz, gsz, lz = make_inputs(3, 4, seed=7)
    got = tclr_losses(gz, gsz, lz, temperature=0.5)
    want = ref_losses(gz, gsz, lz, tau=0.5)
    for key in LOSS_KEYS:
        torch.testing.assert_close(got[key], want[key], atol=1e-5, rtol=1e-7, msg=key)


# --------------------------------------------------------------------------------------
# nt_xent itself
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("N", [1, 2, 3, 7])
def test_nt_xent_matches_reference_and_is_symmetric(N):
    g = torch.Generator().manual_seed(N)
    a = F.normalize(torch.randn(N, 8, generator=g, dtype=torch.float64), dim=-1)
    b = F.normalize(torch.randn(N, 8, generator=g, dtype=torch.float64), dim=-1)
    got = nt_xent(a, b)
    assert got.shape == ()
    torch.testing.assert_close(got, ref_nt_xent(a, b), atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(nt_xent(b, a), got, atol=1e-12, rtol=1e-12)


def test_nt_xent_single_pair_is_zero():
    # N = 1: no negatives at all, the only logit is the positive -> CE = 0 (and finite grads)
    a = F.normalize(torch.randn(1, 5), dim=-1).requires_grad_()
    b = F.normalize(torch.randn(1, 5), dim=-1).requires_grad_()
    loss = nt_xent(a, b)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()


def test_nt_xent_batched_leading_dims():
    g = torch.Generator().manual_seed(1)
    a = F.normalize(torch.randn(3, 2, 4, 6, generator=g, dtype=torch.float64), dim=-1)
    b = F.normalize(torch.randn(3, 2, 4, 6, generator=g, dtype=torch.float64), dim=-1)
    got = nt_xent(a, b)
    assert got.shape == (3, 2)
    for i in range(3):
        for j in range(2):
            torch.testing.assert_close(got[i, j], ref_nt_xent(a[i, j], b[i, j]), atol=1e-10, rtol=1e-10)


def test_nt_xent_closed_form_orthogonal_identical_views():
    # identical views, mutually orthogonal rows: positive logit 1/tau, 2N-2 negatives at 0
    N = 3
    a = torch.eye(N, 5, dtype=torch.float64)
    expected = math.log(1.0 + (2 * N - 2) * math.exp(-1.0 / TAU))
    torch.testing.assert_close(nt_xent(a, a.clone()), torch.tensor(expected, dtype=torch.float64))


def test_pairwise_nt_xent_matrix():
    g = torch.Generator().manual_seed(2)
    views = F.normalize(torch.randn(4, 3, 5, generator=g, dtype=torch.float64), dim=-1)
    pair = pairwise_nt_xent(views)
    assert pair.shape == (4, 4)
    assert torch.all(pair.diagonal() == 0)
    for m in range(4):
        for n in range(4):
            if m != n:
                torch.testing.assert_close(pair[m, n], ref_nt_xent(views[m], views[n]), atol=1e-10, rtol=1e-10)


def test_nt_xent_shape_mismatch_raises():
    with pytest.raises(ValueError):
        nt_xent(torch.randn(3, 4), torch.randn(2, 4))


# --------------------------------------------------------------------------------------
# weights
# --------------------------------------------------------------------------------------


def test_loss_weights_defaults_and_frozen():
    w = LossWeights()
    assert (w.ic_global, w.ic_local, w.local_local, w.global_local) == (1.0, 1.0, 1.0, 1.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        w.ic_global = 2.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        LossWeights(ic_local=float("nan"))


def test_ic_only_total_and_graph():
    gz, gsz, lz = make_inputs(4, 4, dtype=torch.float32, requires_grad=True)
    out = tclr_losses(gz, gsz, lz, weights=LossWeights.ic_only())
    assert LossWeights.ic_only() == LossWeights(1.0, 1.0, 0.0, 0.0)
    torch.testing.assert_close(out["total"], out["ic_global"] + out["ic_local"])
    # zero-weight terms are still reported (with their true value) but detached
    full = tclr_losses(gz, gsz, lz)
    torch.testing.assert_close(out["local_local"], full["local_local"])
    torch.testing.assert_close(out["global_local"], full["global_local"])
    assert out["local_local"].item() > 0 and out["global_local"].item() > 0
    assert not out["local_local"].requires_grad and not out["global_local"].requires_grad
    # total does not depend on the GL-only input at all
    grads = torch.autograd.grad(out["total"], [gz, gsz, lz], allow_unused=True)
    assert grads[1] is None
    assert grads[0] is not None and grads[2] is not None


def test_custom_weights_total():
    gz, gsz, lz = make_inputs(3, 4)
    w = LossWeights(ic_global=2.0, ic_local=0.5, local_local=3.0, global_local=0.25)
    out = tclr_losses(gz, gsz, lz, weights=w)
    expected = 2.0 * out["ic_global"] + 0.5 * out["ic_local"] + 3.0 * out["local_local"] + 0.25 * out["global_local"]
    torch.testing.assert_close(out["total"], expected)
    torch.testing.assert_close(out["ic_global"], tclr_losses(gz, gsz, lz)["ic_global"])


def test_all_zero_weights():
    gz, gsz, lz = make_inputs(2, 2)
    out = tclr_losses(gz, gsz, lz, weights=LossWeights(0.0, 0.0, 0.0, 0.0))
    assert out["total"].item() == 0.0 and out["ic_global"].item() > 0


# --------------------------------------------------------------------------------------
# gradients
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("B", [1, 3])
def test_backward_finite(B):
    gz, gsz, lz = make_inputs(B, 4, dtype=torch.float32, requires_grad=True)
    out = tclr_losses(gz, gsz, lz)
    out["total"].backward()
    for t in (gz, gsz, lz):
        assert t.grad is not None and torch.isfinite(t.grad).all()
    # with B = 1 IC-global has no negatives (loss identically 0), so only local inputs move
    assert gsz.grad.abs().sum() > 0 and lz.grad.abs().sum() > 0
    assert (gz.grad.abs().sum() > 0) == (B > 1)


def test_gradcheck_small():
    gz, gsz, lz = make_inputs(2, 2, D=3, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: tclr_losses(a, b, c)["total"], (gz, gsz, lz))


def test_gradient_matches_reference():
    gz, gsz, lz = make_inputs(3, 3, requires_grad=True)
    g_got = torch.autograd.grad(tclr_losses(gz, gsz, lz)["total"], [gz, gsz, lz])
    g_ref = torch.autograd.grad(ref_losses(gz, gsz, lz)["total"], [gz, gsz, lz])
    for x, y in zip(g_got, g_ref):
        torch.testing.assert_close(x, y, atol=1e-8, rtol=1e-8)


# --------------------------------------------------------------------------------------
# sanity values
# --------------------------------------------------------------------------------------


def test_aligned_orthogonal_embeddings_give_near_minimal_loss():
    B, K = 3, 4
    n_vec = B * K + B
    basis = torch.eye(n_vec, dtype=torch.float64)
    gz = basis[:B].expand(2, B, n_vec).clone()  # both augmentations identical
    lz = basis[B:].reshape(B, K, n_vec).expand(2, B, K, n_vec).clone()
    gsz = lz.clone()  # time-step k of the global clip == local clip k
    aligned = tclr_losses(gz, gsz, lz)

    e = math.exp(-1.0 / TAU)
    torch.testing.assert_close(aligned["ic_global"].item(), math.log(1 + (2 * B - 2) * e))
    torch.testing.assert_close(aligned["local_local"].item(), B * math.log(1 + (2 * K - 2) * e))
    torch.testing.assert_close(aligned["global_local"].item(), 4 * K * math.log(1 + (K - 1) * e))

    rnd = tclr_losses(*make_inputs(B, K, D=n_vec, seed=5))
    for key in ("ic_global", "local_local", "global_local", "total"):
        assert aligned[key] < rnd[key], key

    # temporally permuted global time-steps: GL positives now at similarity 0 -> large loss
    perm = torch.tensor([1, 2, 3, 0])
    shuffled = tclr_losses(gz, gsz[:, :, perm], lz)
    assert shuffled["global_local"] > aligned["global_local"] + 4 * K * 5.0
    torch.testing.assert_close(shuffled["ic_global"], aligned["ic_global"])


# --------------------------------------------------------------------------------------
# dtypes / devices
# --------------------------------------------------------------------------------------


def test_bf16_inputs_give_float32_outputs():
    gz, gsz, lz = make_inputs(5, 4, dtype=torch.float32, seed=11)
    low = [t.bfloat16() for t in (gz, gsz, lz)]
    out = tclr_losses(*low)
    exact_on_rounded = tclr_losses(*(t.float() for t in low))
    ref32 = tclr_losses(gz, gsz, lz)
    for key in LOSS_KEYS:
        assert out[key].dtype == torch.float32
        torch.testing.assert_close(out[key], exact_on_rounded[key], atol=1e-5, rtol=1e-6)
        torch.testing.assert_close(out[key], ref32[key], atol=0.5, rtol=0.05)  # bf16 rounding of inputs
    assert nt_xent(low[0][0], low[0][1]).dtype == torch.float32
    assert nt_xent(gz[0].half(), gz[1].half()).dtype == torch.float32


def test_autocast_does_not_lower_precision():
    gz, gsz, lz = make_inputs(4, 4, dtype=torch.float32, seed=12)
    ref = tclr_losses(gz, gsz, lz)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        out = tclr_losses(gz, gsz, lz)
    for key in LOSS_KEYS:
        assert out[key].dtype == torch.float32
        torch.testing.assert_close(out[key], ref[key], atol=1e-5, rtol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    gz, gsz, lz = make_inputs(6, 4, dtype=torch.float32, seed=13)
    cpu = tclr_losses(gz, gsz, lz)
    cuda_in = [t.cuda().requires_grad_() for t in (gz, gsz, lz)]
    with torch.autocast(device_type="cuda", dtype=torch.float16):
        out = tclr_losses(*cuda_in)
    out["total"].backward()
    for key in LOSS_KEYS:
        assert out[key].device.type == "cuda" and out[key].dtype == torch.float32
        torch.testing.assert_close(out[key].cpu(), cpu[key], atol=1e-4, rtol=1e-5)
    assert all(torch.isfinite(t.grad).all() for t in cuda_in)
    bf = tclr_losses(*(t.detach().bfloat16() for t in cuda_in))
    assert bf["total"].dtype == torch.float32


# --------------------------------------------------------------------------------------
# shapes
# --------------------------------------------------------------------------------------


def test_bad_shapes_raise():
    gz, gsz, lz = make_inputs(2, 4)
    with pytest.raises(ValueError):
        tclr_losses(gz[:1], gsz, lz)
    with pytest.raises(ValueError):
        tclr_losses(gz, gsz[:, :, :3], lz)
    with pytest.raises(ValueError):
        tclr_losses(gz, gsz[:, :, :1], lz[:, :, :1])  # K = 1
    with pytest.raises(ValueError):
        tclr_losses(gz[:, :1], gsz, lz)


# --------------------------------------------------------------------------------------
# vectorisation
# --------------------------------------------------------------------------------------


class _CountTorchCalls(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.n = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.n += 1
        return func(*args, **(kwargs or {}))


def _n_torch_calls(B, K):
    gz, gsz, lz = make_inputs(B, K, dtype=torch.float32)
    with _CountTorchCalls() as mode:
        tclr_losses(gz, gsz, lz)
    return mode.n


def test_number_of_torch_ops_independent_of_batch_and_k():
    # a Python loop over the batch, over clip pairs or over (u, v, k, l) would make the
    # number of torch calls grow with B or K
    base = _n_torch_calls(2, 2)
    assert _n_torch_calls(9, 2) == base
    assert _n_torch_calls(2, 5) == base
    assert _n_torch_calls(7, 4) == base


def _best_time(fn, repeats=3):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def test_faster_than_loops_and_quick_at_b256():
    gz, gsz, lz = make_inputs(64, 4, D=128, dtype=torch.float32)
    with torch.no_grad():
        t_vec = _best_time(lambda: tclr_losses(gz, gsz, lz))
        t_loop = _best_time(lambda: ref_losses(gz, gsz, lz), repeats=1)
    assert t_vec * 5 < t_loop, (t_vec, t_loop)

    big = make_inputs(256, 4, D=128, dtype=torch.float32, requires_grad=True)
    t0 = time.perf_counter()
    out = tclr_losses(*big)
    out["total"].backward()
    assert time.perf_counter() - t0 < 5.0
