"""`teminal.train.catalog_groups`: a build's stage-A/B groups as a torch IterableDataset that a
plain torch DataLoader reads (issue 26, "A data API for other training loops")."""
from __future__ import annotations

from collections import Counter
from itertools import islice

import pytest
from torch.utils.data import DataLoader

from teminal.train import CatalogGroups, catalog_groups


def read(dataset, workers=0):
    return list(DataLoader(dataset, batch_size=None, num_workers=workers))


@pytest.mark.parametrize("workers", [0, 2])
def test_a_plain_dataloader_reads_every_group_once_per_epoch_in_block_layout(tiny_data, workers):
    groups = catalog_groups(tiny_data, "b", groups_per_batch=4)
    assert isinstance(groups, CatalogGroups) and groups.num_groups == 24
    batches = read(groups, workers)
    assert len(batches) == 6
    seen = Counter(k for b in batches for k in b["keys"])
    assert len(seen) == 24 and set(seen.values()) == {1}
    batch = batches[0]
    assert batch["audio"].shape == (12, 32000) and batch["sample_rate"] == 16000
    for i in range(4):   # forward x 4, reversed x 4, overlay x 4
        a, b = batch["texts"][i].split(" before ")
        assert batch["texts"][4 + i] == f"{b} before {a}" and batch["texts"][8 + i] == f"{a} while {b}"
    assert batch["positive_ids"].shape == (12,)


def test_where_selects_groups_and_epochs_repeat_them_in_a_new_order(tiny_data):
    label = "rising chirp"
    groups = catalog_groups(tiny_data, "b", where=f"list_contains(labels, '{label}')", epochs=2)
    batches = read(groups)
    assert 0 < groups.num_groups < 24 and len(batches) == 2 * groups.num_groups
    assert all(label in b["texts"][0] for b in batches)
    keys = [b["keys"][0] for b in batches]
    first, second = keys[:groups.num_groups], keys[groups.num_groups:]
    assert sorted(first) == sorted(second) and first != second
    assert keys == [b["keys"][0] for b in read(groups)]   # the seed fixes the order


def test_stage_a_and_an_endless_stream(tiny_data):
    groups = catalog_groups(tiny_data, "a", groups_per_batch=5, epochs=None, seed=3)
    batches = list(islice(iter(DataLoader(groups, batch_size=None)), 7))  # 35 > 24 groups
    assert batches[0]["audio"].shape[0] == 10 and batches[0]["texts"][0].startswith("Single sound of")
    assert {b["epoch"] for b in batches} == {0, 1}


@pytest.mark.parametrize("kwargs,message", [
    ({"stage": "c"}, "choose 'a'"), ({"groups_per_batch": 0}, "groups_per_batch"),
    ({"epochs": 0}, "epochs"), ({"rank": 2, "world": 2}, "rank 2 of world 2"),
    ({"where": "no_such_column = 1"}, "SQL over the catalog failed"),
])
def test_bad_arguments_are_one_message(tiny_data, kwargs, message):
    with pytest.raises(ValueError, match=message):
        catalog_groups(tiny_data, **kwargs)


def test_the_readme_example_runs_as_written(tiny_data, tmp_path, monkeypatch):
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Your own training loop", 1)[1]
    example = section.split("```python", 1)[1].split("```", 1)[0]
    assert "catalog_groups(" in example and "DataLoader(" in example
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "esc50-shards").symlink_to(tiny_data, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(example, "README.md", "exec"), scope)
    assert scope["audio"].shape == (24, 32000) and len(scope["texts"]) == 24
