"""Loss math against naive references written from the formulas in docs/METHOD.md."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from teminal.train.losses import (info_nce, positive_ids, positive_mask, row_weights,
                                  stage_a_nce, tnce, tnce_log_alpha)

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


# Duplicate texts: identical captions are positives of each other (issue: a batch of 16 clips of
# 12 classes repeats "This is a sound of siren."; plain InfoNCE put a floor under the loss).

def naive_multi_positive(a, t, scale, keys, n=None, alphas=(1.0, 1.0, 1.0, 1.0), beta_rows=None):
    """-sum_{j in P_i} 1/|P_i| log softmax_j, P_i = the rows whose key equals row i's, both
    directions; with `n`, TNCE's alpha weights on negatives only (positives are never
    negatives). Loops over the formula."""
    m = len(keys)
    ast, act, aso, aco = alphas
    sim = [[scale * float(a[i] @ t[j]) for j in range(m)] for i in range(m)]

    def weight(i, j):
        if keys[i] == keys[j] or n is None:
            return 1.0
        bi, bj, same = i // n, j // n, i % n == j % n
        if bi == bj:
            return 1.0
        if {bi, bj} == {0, 1}:
            return ast if same else act
        return aso if same else aco

    def direction(s):
        out = []
        for i in range(m):
            z = sum(weight(i, j) * math.exp(s[i][j]) for j in range(m))
            pos = [j for j in range(m) if keys[j] == keys[i]]
            out.append(-sum(math.log(math.exp(s[i][j]) / z) for j in pos) / len(pos))
        return out

    w = beta_rows or [1.0] * m
    ra, rt = direction(sim), direction([list(c) for c in zip(*sim)])
    return 0.5 * (sum(x * y for x, y in zip(w, ra)) + sum(x * y for x, y in zip(w, rt))) / sum(w)


def test_duplicate_captions_are_positives_in_info_nce_matching_a_naive_reference():
    keys = ["siren", "dog", "siren", "rain", "dog", "siren"]
    a, t = embeddings(len(keys), seed=7)
    got = float(info_nce(a, t, 7.0, positive_mask(keys)))
    assert got == pytest.approx(naive_multi_positive(a, t, 7.0, keys), rel=1e-6)


def test_without_duplicates_the_mask_changes_nothing():
    a, t = embeddings(6, seed=8)
    keys = list("abcdef")
    assert float(info_nce(a, t, 5.0, positive_mask(keys))) == pytest.approx(
        float(info_nce(a, t, 5.0)), rel=1e-7)
    a, t = embeddings(3 * N, seed=9)
    assert float(tnce(a, t, 5.0, N, 0.0, 0.5, 2.0, 1.0, positives=positive_mask(
        [str(i) for i in range(3 * N)]))) == pytest.approx(float(tnce(a, t, 5.0, N, 0.0, 0.5,
                                                                       2.0, 1.0)), rel=1e-7)


def test_identical_captions_have_a_zero_loss_floor_only_with_the_mask():
    # every text of a class is the same embedding as its clips: perfect, yet plain InfoNCE
    # still charges log(copies) for the duplicates
    keys = ["siren", "siren", "dog", "dog"]
    base = F.normalize(torch.eye(D, dtype=torch.float64)[:2], dim=-1)
    a = t = base[[0, 0, 1, 1]]
    assert float(info_nce(a, t, 100.0)) == pytest.approx(math.log(2), rel=1e-6)
    # with the mask the floor is the entropy of the target (two equal positives): reached, and
    # the gradient there is zero
    a = a.clone().requires_grad_(True)
    loss = info_nce(a, t, 100.0, positive_mask(keys))
    loss.backward()
    assert float(loss) == pytest.approx(math.log(2), rel=1e-6)
    assert float(a.grad.abs().max()) < 1e-12


@pytest.mark.parametrize("alphas", [(1.0, 1.0, 1.0, 1.0), (0.0, 0.5, 0.0, 2.0),
                                    (0.0, 0.0, 0.0, 0.0)])
def test_tnce_with_duplicate_captions_matches_a_naive_reference(alphas):
    # groups 0 and 2 are the same pair (a, b): identical forward, reversed and overlay texts;
    # group 1 is (b, a), so its forward caption equals the reversed caption of groups 0 and 2
    n = 3
    keys = ["a<b", "b<a", "a<b",  "b<a", "a<b", "b<a",  "a+b", "b+a", "a+b"]
    a, t = embeddings(3 * n, seed=10)
    got = float(tnce(a, t, 6.0, n, *alphas, beta=0.5, positives=positive_mask(keys)))
    rows = [1.0] * n + [0.5] * (2 * n)
    assert got == pytest.approx(naive_multi_positive(a, t, 6.0, keys, n, alphas, rows), rel=1e-6)


def test_positive_ids_are_stable_across_calls_and_processes():
    ids = positive_ids(["This is a sound of siren.", "dog", "This is a sound of siren."])
    assert ids.dtype == torch.long and ids[0] == ids[2] and ids[0] != ids[1]
    # blake2b of the text, not Python's salted hash(): the same on every rank and run
    assert int(ids[1]) == int.from_bytes(__import__("hashlib").blake2b(
        b"dog", digest_size=8).digest(), "little", signed=True)
    with pytest.raises(ValueError, match="diagonal"):
        info_nce(*embeddings(3), 1.0, torch.zeros(3, 3, dtype=torch.bool))
