"""Loss math against naive references written from the formulas in docs/METHOD.md."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from teminal.train.losses import info_nce, row_weights, stage_a_nce, tnce, tnce_log_alpha

N, D = 4, 8


def embeddings(rows: int, seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    a = F.normalize(torch.randn(rows, D, generator=g, dtype=dtype), dim=-1)
    t = F.normalize(torch.randn(rows, D, generator=g, dtype=dtype), dim=-1)
    return a, t


def naive_info_nce(a, t, scale) -> float:
    s = [[scale * float(a[i] @ t[j]) for j in range(len(t))] for i in range(len(a))]
    m = len(s)
    a2t = sum(-math.log(math.exp(s[i][i]) / sum(math.exp(s[i][j]) for j in range(m)))
              for i in range(m)) / m
    t2a = sum(-math.log(math.exp(s[i][i]) / sum(math.exp(s[j][i]) for j in range(m)))
              for i in range(m)) / m
    return 0.5 * (a2t + t2a)


def naive_tnce(a, t, scale, n, ast=1.0, act=1.0, aso=1.0, aco=1.0, beta_rows=None) -> float:
    """TNCE(u, t) = -log e^{s(u,t)} / (sum over u's own block + C_time + C_overlap), with the
    blocks [forward; reversed; overlay]: forward<->reversed are time, anything<->overlay is
    overlap. Loops over the formula, both directions, beta-weighted mean over rows."""
    m = 3 * n
    sim = [[scale * float(a[i] @ t[j]) for j in range(m)] for i in range(m)]

    def weight(i, j):
        bi, bj, same = i // n, j // n, i % n == j % n
        if bi == bj:
            return 1.0
        if {bi, bj} == {0, 1}:  # time: the other order
            return ast if same else act
        return aso if same else aco  # overlap: anything <-> overlay

    def direction(s):
        out = []
        for i in range(m):
            own = sum(math.exp(s[i][j]) for j in range(m) if j // n == i // n)
            c_time = sum(weight(i, j) * math.exp(s[i][j]) for j in range(m)
                         if {i // n, j // n} == {0, 1})
            c_overlap = sum(weight(i, j) * math.exp(s[i][j]) for j in range(m)
                            if i // n != j // n and 2 in (i // n, j // n))
            out.append(-math.log(math.exp(s[i][i]) / (own + c_time + c_overlap)))
        return out

    w = beta_rows or [1.0] * m
    rows_a = direction(sim)
    rows_t = direction([list(col) for col in zip(*sim)])
    return 0.5 * (sum(wi * x for wi, x in zip(w, rows_a)) +
                  sum(wi * x for wi, x in zip(w, rows_t))) / sum(w)


def test_info_nce_matches_naive_reference():
    a, t = embeddings(6)
    assert float(info_nce(a, t, 7.0)) == pytest.approx(naive_info_nce(a, t, 7.0), rel=1e-6)


def test_info_nce_is_symmetric_and_small_for_aligned_pairs():
    a, t = embeddings(6)
    assert float(info_nce(a, t, 5.0)) == pytest.approx(float(info_nce(t, a, 5.0)), rel=1e-6)
    assert float(info_nce(a, a, 100.0)) < 1e-6


def test_tnce_with_unit_weights_equals_info_nce_over_3n():
    a, t = embeddings(3 * N)
    assert float(tnce(a, t, 10.0, N)) == pytest.approx(float(info_nce(a, t, 10.0)), rel=1e-6)
    assert float(tnce(a, t, 10.0, N, beta=1.0)) == pytest.approx(float(info_nce(a, t, 10.0)),
                                                                 rel=1e-6)


@pytest.mark.parametrize("alphas", [(0.5, 2.0, 3.0, 0.25), (0.0, 1.0, 1.0, 1.0),
                                    (1.0, 1.0, 0.0, 1.0), (0.0, 0.3, 0.0, 0.7)])
def test_tnce_matches_naive_reference(alphas):
    a, t = embeddings(3 * N, seed=1)
    got = float(tnce(a, t, 6.0, N, *alphas))
    assert got == pytest.approx(naive_tnce(a, t, 6.0, N, *alphas), rel=1e-6)


def test_alpha_same_zero_equals_masking_the_same_group_hard_negatives():
    a, t = embeddings(3 * N, seed=2)
    logits = 8.0 * a.float() @ t.float().T
    mask = torch.zeros_like(logits, dtype=torch.bool)
    for i in range(3 * N):
        for j in range(3 * N):
            mask[i, j] = i != j and i % N == j % N  # same pair, other relation
    masked = logits.masked_fill(mask, float("-inf"))
    target = torch.arange(3 * N)
    expected = 0.5 * (F.cross_entropy(masked, target) + F.cross_entropy(masked.T, target))
    got = tnce(a, t, 8.0, N, alpha_same_time=0.0, alpha_same_overlap=0.0)
    assert float(got) == pytest.approx(float(expected), rel=1e-5)


def test_time_and_overlap_blocks_are_where_method_md_puts_them():
    w = tnce_log_alpha(2, alpha_same_time=2.0, alpha_cross_time=3.0, alpha_same_overlap=5.0,
                       alpha_cross_overlap=7.0).exp()
    f, r, o = slice(0, 2), slice(2, 4), slice(4, 6)
    for block in (f, r, o):
        assert torch.equal(w[block, block], torch.ones(2, 2))
    for rows, cols in ((f, r), (r, f)):
        assert torch.allclose(w[rows, cols], torch.tensor([[2.0, 3.0], [3.0, 2.0]]))
    for rows, cols in ((f, o), (o, f), (r, o), (o, r)):
        assert torch.allclose(w[rows, cols], torch.tensor([[5.0, 7.0], [7.0, 5.0]]))


@pytest.mark.parametrize("scale", [1e-3, 1.0, 100.0, 1e4])
@pytest.mark.parametrize("alpha", [1.0, 0.0])
def test_gradients_are_finite_for_extreme_scales_and_zero_alpha(scale, alpha):
    a, t = embeddings(3 * N, seed=3, dtype=torch.float32)
    a.requires_grad_(True)
    t.requires_grad_(True)
    log_scale = torch.tensor(math.log(scale), requires_grad=True)
    loss = tnce(a, t, log_scale.exp(), N, alpha_same_time=alpha, alpha_cross_time=alpha,
                alpha_same_overlap=alpha, alpha_cross_overlap=alpha, beta=0.5)
    loss.backward()
    assert torch.isfinite(loss)
    for g in (a.grad, t.grad, log_scale.grad):
        assert torch.isfinite(g).all()
    a2, t2 = embeddings(2 * N, seed=4, dtype=torch.float32)
    a2.requires_grad_(True)
    loss2 = stage_a_nce(a2, t2, torch.tensor(scale), N)
    loss2.backward()
    assert torch.isfinite(loss2) and torch.isfinite(a2.grad).all()


def test_beta_weights_rows():
    a, t = embeddings(3 * N, seed=5)
    # scalar: forward rows 1, reversed and overlay rows beta (TACT convention)
    rows = [1.0] * N + [0.25] * (2 * N)
    assert float(tnce(a, t, 5.0, N, beta=0.25)) == pytest.approx(
        naive_tnce(a, t, 5.0, N, beta_rows=rows), rel=1e-6)
    # per block, and per row
    rows = [2.0] * N + [0.0] * N + [1.0] * N
    assert float(tnce(a, t, 5.0, N, 0.5, 1.0, 1.0, 2.0, beta=(2.0, 0.0, 1.0))) == pytest.approx(
        naive_tnce(a, t, 5.0, N, 0.5, 1.0, 1.0, 2.0, beta_rows=rows), rel=1e-6)
    rows = [float(i + 1) for i in range(3 * N)]
    assert float(tnce(a, t, 5.0, N, beta=torch.tensor(rows))) == pytest.approx(
        naive_tnce(a, t, 5.0, N, beta_rows=rows), rel=1e-6)
    assert row_weights(None, N) is None


def test_stage_a_is_weighted_info_nce_over_singles_and_doubles():
    a, t = embeddings(2 * N, seed=6)
    assert float(stage_a_nce(a, t, 9.0, N, weight=0.8)) == pytest.approx(
        0.8 * naive_info_nce(a, t, 9.0), rel=1e-6)


def test_bad_inputs_are_refused_with_clear_errors():
    a, t = embeddings(3 * N)
    with pytest.raises(ValueError, match="rows"):
        tnce(a, t, 1.0, N + 1)
    with pytest.raises(ValueError, match="alpha_same_time"):
        tnce(a, t, 1.0, N, alpha_same_time=-1.0)
    with pytest.raises(ValueError, match="beta"):
        tnce(a, t, 1.0, N, beta=(0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="same shape"):
        info_nce(a, t[:-1], 1.0)
    with pytest.raises(ValueError, match="blocks"):
        stage_a_nce(a[:5], t[:5], 1.0)
