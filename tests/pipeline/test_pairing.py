"""Pairing: per split, different classes, balanced use of clips, deterministic."""
from __future__ import annotations

from collections import Counter

import pytest

from teminal.pipeline.pairing import derive_seed, different_labels, draw_pairs
from teminal.pipeline.sources.base import SourceClip


def clips(n_classes: int, per_class: int, split: str = "train", prefix: str = "c") -> list[SourceClip]:
    return [SourceClip(source_id=f"{prefix}{k:02d}-{i}", dataset="esc50", path=f"/x/{prefix}{k}-{i}.wav",
                       split=split, label=f"class {k}")
            for k in range(n_classes) for i in range(per_class)]


def test_pairs_join_two_different_classes():
    pairs = draw_pairs(clips(5, 4), 200, seed=0)
    assert len(pairs) == 200
    assert all(a.label != b.label and a.source_id != b.source_id for a, b in pairs)


def test_every_clip_is_used_about_equally_often():
    pool = clips(10, 8)                      # 80 clips, 3 uses each on average
    pairs = draw_pairs(pool, 120, seed=3)
    uses = Counter(c.source_id for pair in pairs for c in pair)
    assert set(uses) == {c.source_id for c in pool}
    assert max(uses.values()) - min(uses.values()) <= 2


def test_balanced_even_when_one_class_dominates():
    pool = clips(1, 30, prefix="big") + clips(3, 4, prefix="small")
    pairs = draw_pairs(pool, 40, seed=0)
    assert all(a.label != b.label for a, b in pairs)
    uses = Counter(c.source_id for pair in pairs for c in pair)
    assert max(uses.values()) <= 6            # small classes absorb the partners, within reason


def test_pairs_stay_inside_the_split_they_are_drawn_from():
    train, test = clips(4, 5, "train", "tr"), clips(4, 2, "test", "te")
    for split_clips in (train, test):
        pairs = draw_pairs(split_clips, 30, seed=1, key=split_clips[0].split)
        ids = {c.source_id for c in split_clips}
        assert all(a.source_id in ids and b.source_id in ids for a, b in pairs)


def test_deterministic_and_independent_of_input_order():
    pool = clips(6, 5)
    first = draw_pairs(pool, 50, seed=7, key="b/train")
    again = draw_pairs(list(reversed(pool)), 50, seed=7, key="b/train")
    assert [(a.source_id, b.source_id) for a, b in first] == [(a.source_id, b.source_id) for a, b in again]
    other = draw_pairs(pool, 50, seed=7, key="a/train")
    assert [(a.source_id, b.source_id) for a, b in first] != [(a.source_id, b.source_id) for a, b in other]


def test_no_repeated_pair_while_fresh_pairs_exist():
    pool = clips(4, 6)                        # 24 clips: 216 distinct cross-class pairs
    pairs = draw_pairs(pool, 24, seed=0)
    assert len({frozenset((a.source_id, b.source_id)) for a, b in pairs}) == 24


def test_a_single_class_split_cannot_be_paired():
    with pytest.raises(ValueError, match="no other clip is compatible"):
        draw_pairs(clips(1, 5), 3, seed=0, key="val")


def test_captioned_clips_pair_by_the_callers_rule():
    caps = [SourceClip(source_id=f"cap{i}", dataset="clotho", path=f"/x/{i}.wav", split="train",
                       captions=(f"sound number {i % 3}",)) for i in range(9)]
    with pytest.raises(ValueError, match="no label"):
        draw_pairs(caps, 4, seed=0)
    pairs = draw_pairs(caps, 12, seed=0, compatible=lambda a, b: a.captions != b.captions)
    assert all(a.captions != b.captions for a, b in pairs)


def test_derive_seed_is_stable_across_runs():
    # a regression pin: seeds must not depend on PYTHONHASHSEED or the Python version
    assert derive_seed(0, "esc50-b-train-000000") == derive_seed(0, "esc50-b-train-000000")
    assert derive_seed(0, "x") != derive_seed(1, "x")
    assert derive_seed(0, "x") == 2577286459889807959
    assert 0 <= derive_seed(2**40, "y") < 2**63


def test_different_labels_rule():
    a, b = clips(2, 1)
    assert different_labels(a, b) and not different_labels(a, a)
