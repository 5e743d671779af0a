"""Metric definitions: accuracy with a Wilson interval, ranks, and retrieval metrics.

Everything here is a pure function of counts or similarity matrices, so every definition can
be checked on hand-made numbers (tests/evaluate/test_metrics.py).

Retrieval follows LAION-CLAP's `evaluate_clotho_audiocaps` (itself from Xinhao Mei's
audio-text_retrieval), generalised to any number of captions per clip:
- text->audio: every caption is ranked on its own against all clips (LAION runs the five
  caption columns separately and averages; with one relevant clip per caption that equals the
  mean over all captions). R@k = share of captions whose clip ranks < k; mAP@10 = mean of
  1/(rank+1) over captions, 0 when rank >= 10.
- audio->text: every clip ranks all captions; R@k counts the best-ranked of its captions;
  AP@10 = sum over its captions ranked < 10 (sorted) of j/(rank_j+1), divided by the clip's
  number of captions (5 in LAION, variable here).
Ranks are 0-based and ties are broken by position (the earlier candidate wins), as a stable
descending argsort would.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

Z95 = 1.959963984540054  # two-sided 95% normal quantile


def wilson_interval(correct: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """Wilson score interval for a binomial proportion; None when n == 0.

    Unlike the normal approximation it stays inside [0, 1] and is honest at 0 or n successes,
    which small ZSTE subsets (unseen pairs) hit often."""
    if n <= 0:
        return None
    if not 0 <= correct <= n:
        raise ValueError(f"wilson_interval: correct={correct} outside 0..n={n}")
    p = correct / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Score:
    """An accuracy: `correct` of `n` items."""
    correct: int
    n: int

    @classmethod
    def of(cls, hits: Sequence[bool] | np.ndarray) -> "Score":
        hits = np.asarray(hits, dtype=bool)
        return cls(int(hits.sum()), int(hits.size))

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.n if self.n else None

    @property
    def ci95(self) -> tuple[float, float] | None:
        return wilson_interval(self.correct, self.n)

    def to_dict(self) -> dict:
        ci = self.ci95
        return {"accuracy": _round(self.accuracy), "n": self.n, "correct": self.correct,
                "ci95": [_round(ci[0]), _round(ci[1])] if ci else None}

    @classmethod
    def from_dict(cls, d: dict) -> "Score":
        return cls(int(d["correct"]), int(d["n"]))


def _round(x: float | None, digits: int = 6) -> float | None:
    return None if x is None else round(float(x), digits)


# ---------------------------------------------------------------------------------------------
# Ranks

def rank_of(scores: np.ndarray, target: np.ndarray | int) -> np.ndarray:
    """0-based rank of column `target[i]` in row `scores[i]`, ties broken by column index.

    scores: [R, C]; target: [R] column indices (or one int for every row). Rank = number of
    columns scoring strictly higher, plus equal-scoring columns that come earlier."""
    scores = np.asarray(scores)
    rows = np.arange(scores.shape[0])
    target = np.broadcast_to(np.asarray(target), rows.shape)
    own = scores[rows, target][:, None]
    cols = np.arange(scores.shape[1])[None, :]
    ahead = (scores > own) | ((scores == own) & (cols < target[:, None]))
    return ahead.sum(axis=1)


def argmax_first(scores: np.ndarray) -> np.ndarray:
    """Row-wise argmax; ties go to the first column (numpy's rule, stated because tasks rely
    on it: an order-blind model that scores both orders equally picks the first candidate)."""
    return np.asarray(scores).argmax(axis=1)


def top_k_sets(scores: np.ndarray, k: int) -> list[frozenset[int]]:
    """The k best columns of each row (stable: ties keep column order)."""
    order = np.argsort(-np.asarray(scores), axis=1, kind="stable")[:, :k]
    return [frozenset(int(c) for c in row) for row in order]


# ---------------------------------------------------------------------------------------------
# Retrieval

RECALL_KS = (1, 5, 10)
MAP_K = 10


def text_to_audio_ranks(sim: np.ndarray, caption_clip: Sequence[int]) -> np.ndarray:
    """Rank of each caption's own clip. sim: [clips, captions]; caption_clip[j] = clip index."""
    return rank_of(np.asarray(sim).T, np.asarray(caption_clip, dtype=np.int64))


def audio_to_text_ranks(sim: np.ndarray, caption_clip: Sequence[int]) -> list[np.ndarray]:
    """Per clip, the sorted ranks of all its captions among every caption."""
    sim = np.asarray(sim)
    caption_clip = np.asarray(caption_clip, dtype=np.int64)
    order = np.argsort(-sim, axis=1, kind="stable")           # ties: earlier caption first
    position = np.empty_like(order)
    rows = np.arange(sim.shape[0])[:, None]
    position[rows, order] = np.arange(sim.shape[1])[None, :]
    return [np.sort(position[i, caption_clip == i]) for i in range(sim.shape[0])]


def text_to_audio_metrics(sim: np.ndarray, caption_clip: Sequence[int]) -> dict:
    ranks = text_to_audio_ranks(sim, caption_clip)
    out = {f"R@{k}": _round(np.mean(ranks < k)) for k in RECALL_KS}
    out[f"mAP@{MAP_K}"] = _round(np.mean(np.where(ranks < MAP_K, 1.0 / (ranks + 1), 0.0)))
    out.update(mean_rank=_round(ranks.mean() + 1), median_rank=_round(np.floor(np.median(ranks)) + 1),
               n=int(ranks.size))
    return out


def audio_to_text_metrics(sim: np.ndarray, caption_clip: Sequence[int]) -> dict:
    per_clip = audio_to_text_ranks(sim, caption_clip)
    if any(r.size == 0 for r in per_clip):
        raise ValueError("audio_to_text_metrics: every clip needs at least one caption")
    best = np.array([r[0] for r in per_clip])
    out = {f"R@{k}": _round(np.mean(best < k)) for k in RECALL_KS}
    out[f"mAP@{MAP_K}"] = _round(np.mean([average_precision_at(r, MAP_K) for r in per_clip]))
    out.update(mean_rank=_round(best.mean() + 1), median_rank=_round(np.floor(np.median(best)) + 1),
               n=int(best.size))
    return out


def average_precision_at(ranks: np.ndarray, k: int = MAP_K) -> float:
    """AP@k of one query whose relevant items sit at 0-based `ranks`; normalised by the number
    of relevant items (all of them, not only those retrieved), as LAION-CLAP does."""
    ranks = np.sort(np.asarray(ranks))
    if ranks.size == 0:
        return 0.0
    hit = ranks[ranks < k]
    precision = np.arange(1, hit.size + 1) / (hit + 1)
    return float(precision.sum() / ranks.size)
