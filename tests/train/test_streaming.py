"""The group stream: whole groups in block layout, a fixed order per (seed, epoch, rank, worker),
exact replay after a skip, and SQL selection over the catalog."""
from __future__ import annotations

import random
from collections import Counter
from itertools import islice

import pytest

from teminal.train.streaming import (GroupStream, ShardIndex, StreamPlan, TemplateCaption,
                                     canonical_caption, catalog_builds, class_prompt_mix,
                                     make_loader, select_group_keys, worker_skip)


def _plan_keys(plan: StreamPlan, epoch: int) -> list[list[str]]:
    return [[k for _, keys in plan.epoch_plan(w, epoch) for k in keys]
            for w in range(max(1, plan.workers))]


@pytest.mark.parametrize("world,workers", [(1, 0), (1, 2), (2, 2), (2, 3), (4, 2)])
def test_every_group_once_per_epoch_over_all_slots(tiny_data, world, workers):
    index = ShardIndex.build(tiny_data, "b")
    assert index.num_groups == 24 and len(index.shards) == 6
    for epoch in (0, 1):
        slots = [keys for rank in range(world)
                 for keys in _plan_keys(StreamPlan(index, 7, rank, world, workers), epoch)]
        assert all(slots), "a slot without groups would hang its loader worker"
        seen = Counter(k for keys in slots for k in keys)
        assert sorted(seen) == sorted(k for g in index.groups for k in g)
        assert set(seen.values()) == {1}
    # more slots than shards (8 > 6) switches to splitting groups
    assert StreamPlan(index, 7, 0, 4, 2).by_shard is False
    assert StreamPlan(index, 7, 0, 2, 3).by_shard is True


def test_shard_order_is_reseeded_per_epoch_and_identical_on_every_rank(tiny_data):
    index = ShardIndex.build(tiny_data, "b")
    plans = [StreamPlan(index, 3, rank, 2, 1) for rank in range(2)]
    order = [[s for s, _ in p.epoch_plan(0, e)] for p in plans for e in (0, 1, 2)]
    assert order[0] != order[1] or order[1] != order[2]
    again = StreamPlan(index, 3, 0, 2, 1)
    assert [s for s, _ in again.epoch_plan(0, 1)] == order[1]


def test_worker_skip_matches_round_robin():
    # rank batches 0..9 from 3 workers: worker w served w, w+3, ...
    for batches in range(12):
        counts = Counter(k % 3 for k in range(batches))
        assert [worker_skip(batches, w, 3) for w in range(3)] == [counts[w] for w in range(3)]


def _keys(loader, n):
    return [tuple(b["keys"]) for b in islice(iter(loader), n)]


@pytest.mark.parametrize("rank,world,workers", [(0, 1, 0), (0, 1, 2), (1, 4, 2)])
def test_skipping_replays_the_exact_continuation(tiny_data, rank, world, workers):
    """Resume: a stream told it consumed m batches continues exactly where the first one was,
    across epoch boundaries, splitting by shard (6 shards) or by group (8 slots)."""
    index = ShardIndex.build(tiny_data, "b")
    per_epoch = 24 // world // 3

    def stream(skip):
        plan = StreamPlan(index, 5, rank, world, workers)
        return GroupStream(plan, ("forward", "reversed", "overlay"), 3, canonical_caption,
                           skip_batches=skip, shuffle_buffer=4)
    full = _keys(make_loader(stream(0)), 20)
    assert len({k for b in full[:per_epoch] for k in b}) == 3 * per_epoch  # no repeats in an epoch
    assert _keys(make_loader(stream(7)), 13) == full[7:]
    assert _keys(make_loader(stream(7)), 13) == full[7:]  # deterministic


def test_batch_holds_whole_groups_in_block_layout(tiny_data):
    index = ShardIndex.build(tiny_data, "b")
    stream = GroupStream(StreamPlan(index, 0, 0, 1, 0), ("forward", "reversed", "overlay"), 4,
                         canonical_caption)
    batch = next(iter(make_loader(stream)))
    assert batch["audio"].shape == (12, 32000) and batch["sample_rate"] == 16000
    texts, keys = batch["texts"], batch["keys"]
    assert len(set(keys)) == 4
    for i in range(4):
        fwd, rev, ovl = texts[i], texts[4 + i], texts[8 + i]
        a, b = fwd.split(" before ")
        assert rev == f"{b} before {a}" and ovl == f"{a} while {b}"


def test_raw_pcm_members_decode_at_the_catalog_rate(tmp_path):
    from tiny_build import build_tiny_data

    data = build_tiny_data(tmp_path, classes=2, per_fold=1, codec="pcm", seconds=1.0)
    index = ShardIndex.build(data, "a")
    stream = GroupStream(StreamPlan(index, 0, 0, 1, 0), ("single", "double"), 2,
                         canonical_caption)
    batch = next(iter(make_loader(stream)))
    assert batch["audio"].shape == (4, 16000) and batch["sample_rate"] == 16000
    assert batch["texts"][0].startswith("Single sound of")


def test_where_selects_groups_through_the_catalog(tiny_data):
    label = "rising chirp"
    keys = select_group_keys(tiny_data, "b", "train", where=f"list_contains(labels, '{label}')")
    assert keys and len(keys) < 24
    index = ShardIndex.build(tiny_data, "b", keep=keys)
    assert index.num_groups == len(keys) and len(index.shards) <= 6
    stream = GroupStream(StreamPlan(index, 0, 0, 1, 0), ("forward", "reversed", "overlay"), 2,
                         canonical_caption)
    for batch in islice(iter(make_loader(stream)), 6):
        assert all(label in t for t in batch["texts"][:2])
    query = "SELECT group_key FROM samples WHERE stage = 'b' AND relation = 'overlay' LIMIT 3"
    assert len(select_group_keys(tiny_data, "b", query=query)) == 3
    assert select_group_keys(tiny_data, "b") is None


def test_selection_errors_are_clear(tiny_data, tmp_path):
    with pytest.raises(ValueError, match="SQL over the catalog failed.*no_such_column"):
        select_group_keys(tiny_data, "b", where="no_such_column = 1")
    with pytest.raises(ValueError, match="matches no"):
        select_group_keys(tiny_data, "b", where="split = 'nope'")
    with pytest.raises(FileNotFoundError, match="catalog"):
        select_group_keys(tmp_path, "b", where="true")
    with pytest.raises(FileNotFoundError, match="pipeline build"):
        ShardIndex.build(tmp_path, "b")


def test_catalog_build_id_and_synthetic_flag(tiny_data):
    (build,) = catalog_builds(tiny_data)
    assert build["build_id"] and build["synthetic"] is True


def test_caption_policies():
    rows = [{"relation": "single", "caption": "Single sound of dog", "labels": ["dog"],
             "captions": ["Single sound of dog"], "template_ids": ["paper.single"]},
            {"relation": "forward", "caption": "dog before cat", "labels": ["dog", "cat"],
             "captions": ["dog before cat", "cat after dog"],
             "template_ids": ["paper.before", "ext.after"]}]
    texts = {class_prompt_mix(rows, "single", random.Random(i)) for i in range(50)}
    assert texts == {"This is a sound of dog.", "dog", "Single sound of dog"}
    assert class_prompt_mix(rows, "single", random.Random("0:1:k")) == \
        class_prompt_mix(rows, "single", random.Random("0:1:k"))
    assert TemplateCaption(("ext.",))(rows, "forward", random.Random(0)) == "cat after dog"
    with pytest.raises(ValueError, match="template id"):
        TemplateCaption(("nope",))(rows, "forward", random.Random(0))
