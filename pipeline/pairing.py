"""Pairs of source clips for compositions: per split, deterministic from the seed, balanced.

Every pair is drawn from the clips of one split only, so no clip ever reaches two splits (the
paper's code split at the pair level and leaked clips from train into test). Clips are used
about equally often: the clips are laid out as a stream of shuffled rounds (each clip once per
round) and each pair takes its first clip from the head of the stream and its partner from the
nearest compatible clip behind it. Random draws with replacement would leave some clips unused
and others used many times.
"""
from __future__ import annotations

import hashlib
from collections import deque
from typing import Callable, Sequence

import numpy as np

from teminal.pipeline.sources.base import SourceClip, different_labels

Compatible = Callable[[SourceClip, SourceClip], bool]

# How far behind the head of the stream a partner is searched for before looking further.
# Small keeps usage balanced; large enough to skip a run of clips of the same class.
_WINDOW = 64


def derive_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed from a base seed and any labels (split, group key ...), stable across runs,
    processes and Python versions (unlike hash())."""
    text = "/".join([str(int(seed))] + [str(p) for p in parts])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def draw_pairs(clips: Sequence[SourceClip], num_pairs: int, seed: int, key: str = "",
               compatible: Compatible = different_labels) -> list[tuple[SourceClip, SourceClip]]:
    """`num_pairs` ordered pairs (a, b) of distinct, compatible clips.

    Deterministic in (the set of clips, num_pairs, seed, key): the input order does not matter.
    `key` separates independent draws (for example "b/train" for stage B's train split).
    A clip is used 2 * num_pairs / len(clips) times, give or take one or two; the same unordered
    pair is repeated only when nearby alternatives run out.
    """
    if num_pairs <= 0:
        return []
    clips = sorted(clips, key=lambda c: c.source_id)
    if len({c.source_id for c in clips}) != len(clips):
        raise ValueError("draw_pairs: duplicate source_id in the clip list")
    if len(clips) < 2:
        raise ValueError(f"cannot draw pairs for {key or 'this split'}: it has {len(clips)} clip(s)")
    rng = np.random.default_rng(derive_seed(seed, "pairs", key))
    order = _Stream(len(clips), rng)
    uses = np.zeros(len(clips), dtype=np.int64)
    seen: set[tuple[int, int]] = set()

    def ok(i: int, j: int) -> bool:
        return i != j and compatible(clips[i], clips[j])

    pairs = []
    for _ in range(num_pairs):
        i = order.pop()
        j = order.take_partner(lambda j: ok(i, j) and _pair_id(i, j) not in seen)
        if j is None:
            j = order.take_partner(lambda j: ok(i, j))
        if j is None:  # nothing compatible left in the stream: least-used compatible clip
            candidates = [j for j in range(len(clips)) if ok(i, j)]
            if not candidates:
                raise ValueError(
                    f"cannot pair clip {clips[i].source_id} in {key or 'this split'}: no other clip "
                    "is compatible (a split needs clips of at least two classes)")
            j = min(candidates, key=lambda j: (uses[j], j))
        uses[i] += 1
        uses[j] += 1
        seen.add(_pair_id(i, j))
        pairs.append((clips[i], clips[j]))
    return pairs


def _pair_id(i: int, j: int) -> tuple[int, int]:
    return (i, j) if i < j else (j, i)


class _Stream:
    """Clip indices as consecutive shuffled rounds, consumed from the head."""

    def __init__(self, n: int, rng: np.random.Generator):
        self.n, self.rng, self.items = n, rng, deque()

    def _fill(self, size: int) -> None:
        while len(self.items) < size:
            self.items.extend(int(k) for k in self.rng.permutation(self.n))

    def pop(self) -> int:
        self._fill(1)
        return self.items.popleft()

    def take_partner(self, accept: Callable[[int], bool]) -> int | None:
        """Remove and return the first accepted index among the next few rounds' worth."""
        self._fill(max(_WINDOW, self.n))
        for pos, j in enumerate(self.items):
            if accept(j):
                del self.items[pos]
                return j
        return None
