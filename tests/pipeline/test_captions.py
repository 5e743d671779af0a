from __future__ import annotations

import pytest

from teminal.pipeline import captions as C
from teminal.pipeline.sources.base import SourceClip


def test_paper_wording_is_exact():
    """docs/METHOD.md's table, word for word."""
    assert C.render_captions("single", "dog")[0] == "Single sound of dog"
    assert C.render_captions("double", "dog", "rain")[0] == "Combined sound of dog and rain"
    assert C.render_captions("forward", "dog", "rain")[0] == "dog before rain"
    assert C.render_captions("reversed", "dog", "rain")[0] == "rain before dog"
    assert C.render_captions("overlay", "dog", "rain")[0] == "dog while rain"


def test_paper_set_has_one_template_per_relation():
    for relation in C.RELATIONS:
        caption, captions, ids = C.render_captions(relation, "dog", "rain", "paper")
        assert captions == [caption] and len(ids) == 1 and ids[0].startswith("paper.")
    assert C.render_captions("forward", "dog", "rain")[2] == ["paper.before"]


def test_labels_become_text():
    assert C.label_text("chirping_birds") == "chirping birds"
    assert C.render_captions("forward", "chirping_birds", "door_wood_knock")[0] == \
        "chirping birds before door wood knock"


def test_extended_set_starts_with_paper_and_keeps_meaning():
    caption, captions, ids = C.render_captions("forward", "dog", "rain", "extended")
    assert caption == "dog before rain" and ids[0] == "paper.before"
    assert dict(zip(ids, captions)) == {
        "paper.before": "dog before rain",
        "ext.after": "rain after dog",
        "ext.followed_by": "dog followed by rain",
        "ext.then": "dog then rain",
        "ext.first_then": "first dog, then rain",
    }
    _, over, over_ids = C.render_captions("overlay", "dog", "rain", "extended")
    assert over[0] == "dog while rain" and "rain while dog" in over
    assert "dog at the same time as rain" in over and "dog and rain together" in over
    assert "ext.while_swapped" in over_ids
    _, double, _ = C.render_captions("double", "dog", "rain", "extended")
    assert "dog and rain" in double
    _, single, _ = C.render_captions("single", "dog", None, "extended")
    assert single[:3] == ["Single sound of dog", "dog", "the sound of dog"]


def test_the_position_set_names_one_events_place_and_reversed_names_the_other():
    _, captions, ids = C.render_captions("forward", "dog", "rain", "extended-position")
    assert ids[:5] == [t.id for t in C.templates_for("forward", "extended")]
    assert dict(zip(ids, captions))["pos.comes_first"] == "dog comes first"
    assert {i: c for i, c in zip(ids, captions) if i.startswith("pos.")} == {
        "pos.comes_first": "dog comes first", "pos.comes_last": "rain comes last",
        "pos.starts_with": "it starts with dog", "pos.ends_with": "it ends with rain"}
    _, reversed_, _ = C.render_captions("reversed", "dog", "rain", "extended-position")
    assert reversed_[5:] == ["rain comes first", "dog comes last", "it starts with rain",
                             "it ends with dog"]
    for relation in ("single", "double", "overlay"):
        assert C.templates_for(relation, "extended-position") == C.templates_for(relation, "extended")
    # captioned datasets get the same four places in their own flavour
    assert C.resolve_template_set("extended-position", captioned=True) == "captioned-extended-position"
    _, caps, cap_ids = C.render_captions("forward", "A dog barks.", "Rain falls",
                                         "captioned-extended-position")
    assert dict(zip(cap_ids, caps))["cap.starts_with"] == "It starts with this: a dog barks"


def test_no_training_caption_is_zstes_position_prompt_and_none_counts_as_a_held_out_wording():
    from teminal.evaluate.zste import POSITION_PROMPTS, heldout_templates

    every = {t.text for relations in C.TEMPLATE_SETS.values() for ts in relations.values() for t in ts}
    assert not {p.replace("{c}", "{a}") for p in POSITION_PROMPTS} & every
    assert not [t for t, _ in heldout_templates(None) if t.id.startswith("pos.")]


def test_reversed_is_forward_with_parts_swapped():
    for template_set in C.TEMPLATE_SETS:
        fwd = C.render_captions("forward", "rain", "dog", template_set)
        rev = C.render_captions("reversed", "dog", "rain", template_set)
        assert fwd == rev
        assert [t.id for t in C.templates_for("reversed", template_set)] == fwd[2]


def test_template_ids_are_unique_and_stable():
    for name, relations in C.TEMPLATE_SETS.items():
        ids = [t.id for r in relations.values() for t in r]
        assert len(ids) == len(set(ids)), name
        assert C.template_ids(name) == list(dict.fromkeys(ids))
    assert C.template_ids("paper") == ["paper.single", "paper.combined", "paper.before", "paper.while"]
    assert set(C.template_ids("paper")) < set(C.template_ids("extended"))


def test_templates_for_lets_evaluators_hold_templates_out():
    held_out = {"ext.after"}
    kept = [t for t in C.templates_for("forward", "extended") if t.id not in held_out]
    assert [t.id for t in kept] == ["paper.before", "ext.followed_by", "ext.then", "ext.first_then"]
    assert C.templates_for("forward", "extended")[1].to_dict() == {"id": "ext.after", "text": "{b} after {a}"}


def test_captioned_flavour_reads_naturally():
    a, b = "A dog barks repeatedly.", "Rain falls on a roof. "
    caption, captions, ids = C.render_captions("forward", a, b, "captioned-extended")
    assert caption == "A dog barks repeatedly, followed by rain falls on a roof"
    assert dict(zip(ids, captions))["cap.after"] == "Rain falls on a roof, after a dog barks repeatedly"
    assert dict(zip(ids, captions))["cap.first_then"] == \
        "First a dog barks repeatedly, then rain falls on a roof"
    assert C.render_captions("overlay", a, b, "captioned")[0] == \
        "A dog barks repeatedly, while rain falls on a roof"
    assert C.render_captions("single", a, None, "captioned")[0] == "A dog barks repeatedly"
    # acronyms and "I" keep their case
    assert C.render_captions("forward", "a man talks", "TV plays", "captioned")[0] == \
        "A man talks, followed by TV plays"


def test_caption_text_of_clips():
    labelled = SourceClip("esc50-x", "esc50", "/x.wav", "test", 1, label="chirping birds")
    assert C.caption_text(labelled) == "chirping birds" and not C.is_captioned(labelled)
    captioned = SourceClip("clotho-x", "clotho", "/x.wav", "test", captions=("Birds sing.", "Wind  blows."))
    assert C.caption_text(captioned) == "Birds sing"
    assert C.caption_text(captioned, 3) == "Wind blows"
    assert C.is_captioned(captioned)
    with pytest.raises(ValueError, match="neither a label nor captions"):
        C.caption_text(SourceClip("x", "x", "/x", "test"))


def test_resolve_template_set():
    assert C.resolve_template_set("paper", captioned=False) == "paper"
    assert C.resolve_template_set("paper", captioned=True) == "captioned"
    assert C.resolve_template_set("extended", captioned=True) == "captioned-extended"


def test_errors_name_the_choices():
    with pytest.raises(ValueError, match="unknown template set 'fancy'; choose one of paper"):
        C.render_captions("forward", "a", "b", "fancy")
    with pytest.raises(ValueError, match="unknown relation 'backward'"):
        C.render_captions("backward", "a", "b")
    with pytest.raises(ValueError, match="needs two parts"):
        C.render_captions("overlay", "a", None)
