"""The data contract's words and places (teminal.manifests.vocabulary), defined once."""
from __future__ import annotations

import pytest

from teminal.manifests.vocabulary import (CLASS_PROMPT, PAIR_RELATIONS, RELATIONS,
                                          STAGE_RELATIONS, catalog_path, label_text, member_name,
                                          parse_member_name, sample_key, shard_relpath, stage_of)

# ESC-50 categories with underscores, and the synthetic default's
LABELS = ["chirping_birds", "door_wood_knock", "vacuum_cleaner", "dog", "can_opening",
          "rising_chirp", "click_train"]


@pytest.mark.parametrize("label", LABELS)
def test_label_text_is_the_old_readers_text_for_every_dataset_label(label):
    """The trainer's and holdout's readers replaced underscores without collapsing blanks;
    the one definition (the pipeline's) gives the same text for real labels."""
    assert label_text(label) == label.replace("_", " ")


@pytest.mark.parametrize("label,text", [("a__b", "a b"), (" dog ", "dog"), ("_x_", "x")])
def test_label_text_collapses_blanks(label, text):
    assert label_text(label) == text


def test_relations_per_stage_in_block_order():
    assert STAGE_RELATIONS == {"a": ("single", "double"), "b": ("forward", "reversed", "overlay")}
    assert RELATIONS == ("single", "double", "forward", "reversed", "overlay")
    assert PAIR_RELATIONS == ("double", "forward", "reversed", "overlay")
    assert stage_of(("single",)) == "a" and stage_of(("forward", "overlay")) == "b"
    assert stage_of(("single", "forward")) is None and stage_of(None) is None
    assert CLASS_PROMPT.format(label="dog") == "This is a sound of dog."


@pytest.mark.parametrize("name,parts", [
    ("esc50-b-test-000001.forward.flac", ("esc50-b-test-000001", "forward", "flac")),
    ("esc50-a-train-000000.single.npy", ("esc50-a-train-000000", "single", "npy")),
    ("dir/clotho-b-val-000002.overlay.flac", ("clotho-b-val-000002", "overlay", "flac")),
])
def test_member_names_round_trip(name, parts):
    parsed = parse_member_name(name)
    assert (parsed.group_key, parsed.relation, parsed.ext) == parts
    assert member_name(*parts) == name.rsplit("/", 1)[-1]
    assert parsed.sample_key == sample_key(parts[0], parts[1]) and not parsed.is_meta


def test_the_group_json_and_the_layout():
    meta = parse_member_name("esc50-b-test-000001.json")
    assert meta.is_meta and meta.group_key == "esc50-b-test-000001" and meta.relation == ""
    assert shard_relpath("b", "train", 12) == "shards/b/train-000012.tar"
    assert catalog_path("OUT").as_posix() == "OUT/manifests/catalog.duckdb"
