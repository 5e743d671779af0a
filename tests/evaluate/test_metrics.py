"""Metric definitions on hand-made numbers whose answers are worked out by hand."""
from __future__ import annotations

import numpy as np
import pytest

from teminal.evaluate.metrics import (
    Score, argmax_first, audio_to_text_metrics, audio_to_text_ranks, average_precision_at,
    rank_of, text_to_audio_metrics, text_to_audio_ranks, top_k_sets, wilson_interval,
)


@pytest.mark.parametrize("correct,n,lo,hi", [
    (0, 10, 0.0, 0.27753),
    (5, 10, 0.23659, 0.76341),
    (8, 10, 0.49016, 0.94332),
    (10, 10, 0.72247, 1.0),
    (50, 100, 0.40383, 0.59617),
])
def test_wilson_interval_known_values(correct, n, lo, hi):
    got = wilson_interval(correct, n)
    assert got[0] == pytest.approx(lo, abs=1e-4)
    assert got[1] == pytest.approx(hi, abs=1e-4)


def test_wilson_interval_empty_and_invalid():
    assert wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_score_dict():
    d = Score.of([True, False, True, True]).to_dict()
    assert d["accuracy"] == 0.75 and d["n"] == 4 and d["correct"] == 3
    assert 0 <= d["ci95"][0] < 0.75 < d["ci95"][1] <= 1
    empty = Score.of([]).to_dict()
    assert empty["accuracy"] is None and empty["n"] == 0 and empty["ci95"] is None


def test_ties_go_to_the_earlier_candidate():
    s = np.array([[1.0, 1.0, 1.0], [0.2, 0.9, 0.9]])
    assert rank_of(s, np.array([2, 2])).tolist() == [2, 1]
    assert rank_of(s, 0).tolist() == [0, 2]
    assert argmax_first(s).tolist() == [0, 1]
    assert top_k_sets(np.array([[0.1, 0.5, 0.5, 0.5]]), 2) == [frozenset({1, 2})]


# 3 clips; captions c0, c1 -> clip 0; c2 -> clip 1; c3, c4 -> clip 2 (variable counts)
SIM = np.array([
    [0.9, 0.1, 0.5, 0.3, 0.2],
    [0.2, 0.8, 0.7, 0.1, 0.0],
    [0.1, 0.6, 0.3, 0.4, 0.95],
])
OWNER = [0, 0, 1, 2, 2]


def test_text_to_audio_by_hand():
    assert text_to_audio_ranks(SIM, OWNER).tolist() == [0, 2, 0, 0, 0]
    m = text_to_audio_metrics(SIM, OWNER)
    assert m["R@1"] == pytest.approx(0.8)
    assert m["R@5"] == m["R@10"] == 1.0
    assert m["mAP@10"] == pytest.approx((4 + 1 / 3) / 5, abs=1e-6)
    assert m["n"] == 5


def test_audio_to_text_by_hand():
    ranks = audio_to_text_ranks(SIM, OWNER)
    assert [r.tolist() for r in ranks] == [[0, 4], [1], [0, 2]]
    m = audio_to_text_metrics(SIM, OWNER)
    assert m["R@1"] == pytest.approx(2 / 3, abs=1e-6)
    assert m["R@5"] == 1.0
    # AP: clip0 (1/1 + 2/5)/2 = 0.7; clip1 (1/2)/1; clip2 (1/1 + 2/3)/2
    assert m["mAP@10"] == pytest.approx((0.7 + 0.5 + 5 / 6) / 3, abs=1e-6)
    assert m["n"] == 3


def test_average_precision_counts_captions_beyond_the_cutoff():
    assert average_precision_at(np.array([3, 12])) == pytest.approx(0.25 / 2)
    assert average_precision_at(np.array([10, 11])) == 0.0
    assert average_precision_at(np.array([0, 1, 2, 3, 4])) == 1.0


def _laion_reference(sim: np.ndarray, per_clip: int = 5):
    """LAION-CLAP / Xinhao Mei's loops for exactly `per_clip` captions per clip."""
    n = sim.shape[0]
    # text->audio: one round per caption column, then the average
    r1 = []
    maps = []
    for j in range(per_clip):
        cols = sim[:, j::per_clip]                        # [clips, clips] for caption j of each
        ranking = np.argsort(-cols.T, axis=1, kind="stable")
        preds = np.array([np.where(ranking[i] == i)[0][0] for i in range(n)])
        r1.append(np.mean(preds < 1))
        maps.append(np.mean(np.where(preds < 10, 1 / (preds + 1), 0.0)))
    t2a = (np.mean(r1), np.mean(maps))
    # audio->text
    ranks, ap = np.zeros(n), np.zeros(n)
    for i in range(n):
        inds = np.argsort(-sim[i], kind="stable")
        pos = [np.where(inds == k)[0][0] for k in range(per_clip * i, per_clip * i + per_clip)]
        ranks[i] = min(pos)
        hit = np.sort(np.array([p + 1 for p in pos if p < 10]))
        ap[i] = np.sum(np.arange(1, len(hit) + 1) / hit) / per_clip if len(hit) else 0.0
    a2t = (np.mean(ranks < 1), np.mean(ap))
    return t2a, a2t


def test_matches_laion_reference_with_five_captions():
    rng = np.random.default_rng(0)
    n = 30
    audio = rng.standard_normal((n, 8))
    text = np.repeat(audio, 5, axis=0) + 1.5 * rng.standard_normal((5 * n, 8))
    sim = audio @ text.T
    owner = np.repeat(np.arange(n), 5)
    (t_r1, t_map), (a_r1, a_map) = _laion_reference(sim)
    t2a, a2t = text_to_audio_metrics(sim, owner), audio_to_text_metrics(sim, owner)
    assert 0 < t2a["R@1"] < 1 and 0 < a2t["R@1"] < 1       # a non-trivial case
    assert t2a["R@1"] == pytest.approx(t_r1, abs=1e-6)
    assert t2a["mAP@10"] == pytest.approx(t_map, abs=1e-6)
    assert a2t["R@1"] == pytest.approx(a_r1, abs=1e-6)
    assert a2t["mAP@10"] == pytest.approx(a_map, abs=1e-6)


def test_clip_without_caption_is_an_error():
    with pytest.raises(ValueError, match="at least one caption"):
        audio_to_text_metrics(np.ones((2, 2)), [0, 0])
