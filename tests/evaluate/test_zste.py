"""ZSTE candidate construction and scoring on fake models whose answers are known."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from coded import FakeModel, OrderBlindModel, make_testset
from teminal.testing import VOCAB, RandomModel
from teminal.evaluate.testset import PairGroup
from teminal.evaluate.training_data import TrainingData
from teminal.evaluate.zste import (
    compositional_candidates, evaluate_zste, heldout_templates, paper_template,
)

PAIR_TASKS = ("task2_mixture", "task3_order", "task4_compositional", "task5_position")
TASKS = ("task1_single",) + PAIR_TASKS


def run(model, testset=None, **kwargs):
    return evaluate_zste(model, testset or make_testset(), progress=False, **kwargs)["metrics"]


# ---------------------------------------------------------------------------------------------
# Templates and candidates

def test_paper_wording_is_methods():
    t = paper_template()
    assert t.order("dog", "siren") == "dog before siren"
    assert t.together("dog", "siren") == "dog while siren"


def test_heldout_templates_include_inverted_after():
    held = {t.id: t for t, _ in heldout_templates(None)}
    assert {"ext.after", "ext.followed_by", "ext.then"} <= set(held)
    # "{b} after {a}" with a first means "a before b"
    assert held["ext.after"].order("dog", "siren") == "siren after dog"
    assert held["ext.followed_by"].order("dog", "siren") == "dog followed by siren"
    assert all(t.overlay_id != "paper.while" for t in held.values())


def test_heldout_templates_flag_training_wordings():
    flags = dict((t.id, used) for t, used in heldout_templates({"ext.after", "ext.at_the_same_time_as"}))
    assert flags["ext.after"] is True and flags["ext.then"] is False
    overlay = {t.overlay_id for t, _ in heldout_templates({"ext.at_the_same_time_as"})}
    assert overlay == {"ext.together"}      # the overlay wording used in training is avoided


def test_task4_candidates_contents():
    t = paper_template()
    g = PairGroup("g1", "dog", "siren")
    cands, true = compositional_candidates(g, VOCAB, t, seed=0)
    assert len(cands) == 50 and len(set(cands)) == 50
    assert cands[true] == "dog before siren"
    assert {"siren before dog", "dog while siren"} <= set(cands)
    assert all(" before " in c or " while " in c for c in cands)
    # deterministic per (seed, group), different for another seed
    assert compositional_candidates(g, VOCAB, t, seed=0) == (cands, true)
    assert compositional_candidates(g, VOCAB, t, seed=1)[0] != cands


def test_task4_candidates_with_few_classes():
    vocab = ["a", "b", "c"]
    cands, true = compositional_candidates(PairGroup("g", "a", "b"), vocab, paper_template(), 0)
    # 3 classes: 6 ordered "x before y" + 3 "x while y"
    assert len(cands) == 9 and cands[true] == "a before b"


def test_task4_true_caption_position_varies():
    t = paper_template()
    positions = {compositional_candidates(PairGroup(f"g{i}", "dog", "siren"), VOCAB, t, 0)[1]
                 for i in range(30)}
    assert len(positions) > 10


# ---------------------------------------------------------------------------------------------
# Fake models

def test_perfect_model_scores_one_everywhere():
    m = run(FakeModel())
    for task in TASKS:
        assert m[task]["accuracy"] == 1.0, task
    for task in ("task2_mixture", "task3_order", "task5_position"):
        for name, v in m[task]["variants"].items():
            assert v["accuracy"] == 1.0, (task, name)
    assert all(m["compa_order"][k]["accuracy"] == 1.0 for k in ("text", "audio", "group"))
    tg = m["template_generalisation"]
    assert tg["heldout"]["accuracy"] == 1.0
    assert all(v["accuracy"] == 1.0 for v in tg["templates"].values())
    conf = np.array(m["task3_order"]["confusion"]["counts"])
    assert (conf == np.diag(np.diag(conf))).all() and conf.trace() == 3 * 90


def test_item_counts():
    m = run(FakeModel())
    assert m["task1_single"]["n"] == 20            # 10 classes x 2 clips
    assert m["task2_mixture"]["n"] == 90           # 90 ordered pairs, overlay
    assert m["task2_mixture"]["variants"]["concatenation"]["n"] == 180
    assert m["task3_order"]["n"] == 180            # forward + reversed: 50/50
    assert m["task3_order"]["variants"]["forward"]["n"] == m["task3_order"]["variants"]["reversed"]["n"]
    assert m["task4_compositional"]["n"] == 90
    assert m["task5_position"]["n"] == 180
    assert m["task3_order"]["chance"] == pytest.approx(1 / 3, abs=1e-6)


def test_order_blind_model_cannot_tell_order():
    m = run(OrderBlindModel())
    order = m["task3_order"]
    assert order["accuracy"] <= 0.5
    assert order["variants"]["overlay"]["accuracy"] == 1.0   # it does know overlay from concatenation
    assert m["task1_single"]["accuracy"] == 1.0
    assert m["task2_mixture"]["accuracy"] == 1.0
    for k in ("text", "audio", "group"):
        assert m["compa_order"][k]["accuracy"] == 0.0, k
    assert m["task5_position"]["accuracy"] <= 0.5
    assert m["template_generalisation"]["heldout"]["accuracy"] <= 0.5
    # it never predicts the overlay caption for a concatenation
    conf = np.array(order["confusion"]["counts"])
    assert conf[0, 2] == conf[1, 2] == 0


def test_random_model_is_near_chance():
    m = run(RandomModel(), make_testset(repeats=3))
    assert 0.2 < m["task3_order"]["accuracy"] < 0.47          # chance 1/3, n = 540
    assert m["task1_single"]["accuracy"] < 0.5                 # chance 0.1, n = 20
    assert m["task2_mixture"]["accuracy"] < 0.15               # chance 1/45
    assert m["task4_compositional"]["accuracy"] < 0.15         # chance 1/50
    assert m["task5_position"]["accuracy"] < 0.1               # chance 1/100
    assert m["compa_order"]["group"]["accuracy"] < 0.35        # chance 1/6


def test_every_text_embedded_once():
    model = FakeModel()
    run(model)
    counts = Counter(model.text_calls)
    assert counts and max(counts.values()) == 1


def test_deterministic_and_batch_independent():
    a = run(RandomModel(), seed=3)
    b = evaluate_zste(RandomModel(), make_testset(), seed=3, batch_size=7, progress=False)["metrics"]
    assert a == b
    c = run(OrderBlindModel(), seed=4)
    assert c["task4_compositional"] != run(OrderBlindModel(), seed=5)["task4_compositional"]


def test_seen_unseen_split():
    seen_pairs = {frozenset(("dog", "siren")), frozenset(("cow", "rain"))}
    training = TrainingData(path="x", pairs=seen_pairs, template_ids={"paper.before", "paper.while"})
    m = run(FakeModel(), training=training)
    for task in PAIR_TASKS:
        assert m[task]["seen"]["n"] + m[task]["unseen"]["n"] == m[task]["n"], task
        assert m[task]["seen"]["accuracy"] == m[task]["unseen"]["accuracy"] == 1.0
    assert m["task2_mixture"]["seen"]["n"] == 4                  # 2 pairs x 2 orders
    assert m["task3_order"]["seen"]["n"] == 8                    # forward + reversed of each
    assert m["pairs"] == {"test_pairs": 45, "seen_pairs": 2, "seen_groups": 4, "unseen_groups": 86}
    assert m["compa_order"]["group"]["unseen"]["n"] == 86
    assert m["template_generalisation"]["heldout"]["verified_against_training"] is True


def test_no_seen_unseen_without_training_data():
    m = run(FakeModel(), training=TrainingData(reason="no catalog"))
    assert "seen" not in m["task3_order"] and "pairs" not in m
    assert m["template_generalisation"]["heldout"]["verified_against_training"] is False


def test_heldout_pool_leaves_out_training_wordings():
    training = TrainingData(path="x", pairs=set(), template_ids={"ext.after"})
    tg = run(FakeModel(), training=training)["template_generalisation"]
    assert "ext.after" not in tg["heldout"]["templates"]
    assert tg["templates"]["ext.after"]["in_training"] is True
    assert tg["heldout"]["n"] == len(tg["heldout"]["templates"]) * 180


def test_paper_only_templates_skip_generalisation():
    m = run(FakeModel(), templates="paper")
    assert "template_generalisation" not in m


def test_max_items_limits_the_test_set():
    out = evaluate_zste(FakeModel(), make_testset(max_items=5), progress=False)
    assert out["items"]["singles"] == 5 and out["items"]["groups"] == 5
    assert out["timing"]["audio_clips"] == 5 + 15
    assert out["timing"]["clips_per_s"] > 0


def test_evaluation_runs_in_eval_mode_and_restores_training():
    class Tracking(FakeModel):
        training = True
        modes = []

        def eval(self):
            self.training = False

        def train(self, mode=True):
            self.training = mode

        def embed_audio(self, wave, sample_rate):
            self.modes.append(self.training)
            return super().embed_audio(wave, sample_rate)

    model = Tracking()
    run(model)
    assert model.modes and not any(model.modes)
    assert model.training is True


def test_order_cosine_says_which_tower_is_blind_to_order():
    # FakeModel's "x before y" and its x-then-y clip share 3 of 5 unit coordinates with the
    # other order: cosine 0.6 on both sides; the order-blind model's clips are identical (1.0)
    perfect = run(FakeModel())["task3_order"]["order_cosine"]
    assert perfect["text"]["mean"] == pytest.approx(0.6) == perfect["audio"]["mean"]
    blind = run(OrderBlindModel())["task3_order"]["order_cosine"]
    assert blind["audio"]["mean"] == pytest.approx(1.0)
    assert blind["text"]["mean"] == pytest.approx(0.6)
    assert abs(run(RandomModel())["task3_order"]["order_cosine"]["text"]["mean"]) < 0.2


def test_order_cosine_splits_seen_and_unseen_pairs():
    training = TrainingData(path="x", pairs={frozenset(("dog", "siren"))},
                            template_ids={"paper.before", "paper.while"})
    cos = run(FakeModel(), training=training)["task3_order"]["order_cosine"]
    for side in ("text", "audio"):
        assert cos[side]["seen"] == pytest.approx(0.6) == cos[side]["unseen"]
    assert "seen" not in run(FakeModel())["task3_order"]["order_cosine"]["text"]
