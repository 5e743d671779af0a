"""ZSTE: the five zero-shot temporal evaluation tasks of docs/METHOD.md, plus CompA-order scores.

Prediction is always the argmax of cosine similarity (ties go to the first candidate) and the
metric is accuracy with a 95% Wilson interval. Audio is embedded once per item (singles and the
forward / reversed / overlay members of each stage-B test group); every distinct text once per
run (`TextCache`). All random choices (task 4's distractor classes) come from generators seeded
by (seed, group key), so results do not depend on item order or batch size.

Tasks, on test-split items:
1. single: a single clip against "This is a sound of {label}." over the class vocabulary.
2. mixture: the overlay (variant: the concatenations) against the same prompts; correct when
   the top-2 classes are exactly {a, b}.
3. order: forward and reversed concatenations (50/50 by construction: both members of every
   group) against "{a} before {b}", "{b} before {a}", "{a} while {b}". The overlay member
   against the same 3 captions is reported as a variant and fills the 3x3 confusion.
4. compositional: the forward concatenation against up to 50 captions "x before y" /
   "x while y" over a, b and up to 5 random other classes; "{a} before {b}", "{b} before {a}"
   and "{a} while {b}" are always included. With fewer classes (7 are needed for 50) the set is
   every such caption over the available classes.
5. position: "In this concatenated sound, the first sound is {c}" / "... the second sound is
   {c}" over the vocabulary, for forward and reversed members; correct when both are right.
CompA-order (Winoground-style) over each forward/reversed pair with T_f = "{a} before {b}",
T_r = "{b} before {a}": text score s(A_f,T_f) > s(A_f,T_r) and s(A_r,T_r) > s(A_r,T_f); audio
score s(A_f,T_f) > s(A_r,T_f) and s(A_r,T_r) > s(A_f,T_r); group score both (strict: ties fail).
Timing sweep (`junctions`, this project's addition): task 3 (the paper's wording) and CompA-order
again on the same test groups with the second event at each junction (a fraction of the clip;
the reversed member mirrored), re-planned from the catalog's recipes and rendered from the
sources (`CatalogTestSet.swept_groups`); the overlay member is the stored one (it has no
junction). Its summary, the timing-robust order, is the held-out-pair order accuracy at the
worst junction: a model that learned "what fills the first half" rather than order scores well
at the midpoint it trained on and near the order-blind ceiling elsewhere.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from itertools import combinations
from typing import Sequence

import numpy as np
from teminal.pipeline.progress import progress_bar

from teminal.evaluate.embed import AudioStats, TextCache, embed_stream, eval_mode, normalize
from teminal.evaluate.metrics import Score, argmax_first, top_k_sets
from teminal.evaluate.options import TEMPLATE_CHOICES, parse_junctions
from teminal.evaluate.testset import GROUP_RELATIONS, SWEPT_RELATIONS, PairGroup, SingleItem
from teminal.evaluate.training_data import TrainingData
from teminal.manifests.vocabulary import CLASS_PROMPT
from teminal.evaluate.workers import DecodePool, decode_ahead, workers_for

POSITION_PROMPTS = ("In this concatenated sound, the first sound is {c}",
                    "In this concatenated sound, the second sound is {c}")
TASK4_SIZE = 50
TASK4_OTHER_CLASSES = 5
ORDER_LABELS = GROUP_RELATIONS   # rows: true relation; columns: caption type


# ---------------------------------------------------------------------------------------------
# Templates

@dataclass(frozen=True)
class OrderTemplate:
    """One wording of the order task: `before` says a happens first (it may read "{b} after
    {a}"), `overlay` says both at once."""
    id: str
    before: str
    overlay_id: str
    overlay: str

    def order(self, first: str, second: str) -> str:
        return self.before.format(a=first, b=second)

    def together(self, a: str, b: str) -> str:
        return self.overlay.format(a=a, b=b)

    def to_dict(self) -> dict:
        return {"id": self.id, "before": self.before, "overlay_id": self.overlay_id,
                "overlay": self.overlay}


# Wordings that no template set of the pipeline offers, so they are held out of any training.
EVAL_ONLY_ORDER = (("eval.and_then", "{a} and then {b}"), ("eval.following", "{b} following {a}"))
EVAL_ONLY_OVERLAY = ("eval.simultaneously", "{a} and {b} simultaneously")


def paper_template() -> OrderTemplate:
    """The paper's wording, taken from the pipeline's caption set so it matches training."""
    from teminal.pipeline.captions import templates_for

    before = templates_for("forward", "paper")[0]
    overlay = templates_for("overlay", "paper")[0]
    return OrderTemplate(before.id, before.text, overlay.id, overlay.text)


def heldout_templates(train_ids: set[str] | None) -> list[tuple[OrderTemplate, bool | None]]:
    """Non-paper order wordings ("after", "followed by", "then", ...; "{b} after {a}" means
    "{a} before {b}") with whether the training catalog's captions used them (None: unknown).

    Each is paired with an overlay wording the training catalog did not use, so the while-
    distractor is not a lexical give-away either."""
    from teminal.pipeline.captions import templates_for

    paper = paper_template()
    order = [(t.id, t.text) for t in templates_for("forward", "extended") if t.id != paper.id]
    order += list(EVAL_ONLY_ORDER)
    overlays = [(t.id, t.text) for t in templates_for("overlay", "extended")
                if t.id != paper.overlay_id and "{b}" not in t.text.split("{a}")[0]]
    overlays.append(EVAL_ONLY_OVERLAY)
    known = train_ids is not None
    overlay_id, overlay = next(((i, t) for i, t in overlays if not known or i not in train_ids),
                               EVAL_ONLY_OVERLAY)
    return [(OrderTemplate(i, text, overlay_id, overlay), (i in train_ids) if known else None)
            for i, text in order]


def compositional_candidates(group: PairGroup, vocabulary: Sequence[str], template: OrderTemplate,
                             seed: int, size: int = TASK4_SIZE,
                             n_other: int = TASK4_OTHER_CLASSES) -> tuple[list[str], int]:
    """Task 4's captions for one group and the index of the true one ("{a} before {b}")."""
    rng = random.Random(f"{seed}/task4/{group.group_key}")
    a, b = group.a, group.b
    others = [c for c in vocabulary if c not in (a, b)]
    pool = [a, b] + rng.sample(others, min(n_other, len(others)))
    must = [template.order(a, b), template.order(b, a), template.together(a, b)]
    rest = [template.order(x, y) for x in pool for y in pool if x != y]
    rest += [template.together(x, y) for x, y in combinations(pool, 2)]
    rest = [t for t in dict.fromkeys(rest) if t not in must]
    rng.shuffle(rest)
    candidates = must + rest[:max(0, size - len(must))]
    rng.shuffle(candidates)   # the true caption's place must not favour any tie-breaking rule
    return candidates, candidates.index(must[0])


# ---------------------------------------------------------------------------------------------
# Embedding the test set

@dataclass
class ZsteEmbeddings:
    singles: list[SingleItem]
    single: np.ndarray                  # [N, D]
    groups: list[PairGroup]
    members: dict[str, np.ndarray]      # relation -> [G, D]


def embed_testset(model, testset, batch_size: int = 32, stats: AudioStats | None = None,
                  progress: bool = True, pool=None) -> ZsteEmbeddings:
    """Embeddings of every single and group member; `pool` (a `DecodePool`) decodes the inputs
    in worker processes while this process embeds (None: decode here, in turn)."""
    sr = testset.sample_rate
    singles, single_vecs = [], []
    with progress_bar(testset.num_singles, "zste singles", "clip", enabled=progress,
                      leave=False) as bar:
        for item, vec in embed_stream(model, testset.singles(pool), sr, batch_size, stats):
            singles.append(item)
            single_vecs.append(vec)
            bar.update(1)

    def members():
        for group, waves in testset.groups(pool):
            for relation in GROUP_RELATIONS:
                yield (group, relation), waves[relation]

    groups, vecs = [], {r: [] for r in GROUP_RELATIONS}
    with progress_bar(testset.num_groups, "zste groups", "group", enabled=progress,
                      leave=False) as bar:
        for (group, relation), vec in embed_stream(model, members(), sr, batch_size, stats):
            if relation == GROUP_RELATIONS[0]:
                groups.append(group)
                bar.update(1)
            vecs[relation].append(vec)
    dim = (single_vecs or vecs["forward"] or [np.zeros(0, np.float32)])[0].shape[0]
    stack = lambda v: np.stack(v) if v else np.zeros((0, dim), np.float32)  # noqa: E731
    return ZsteEmbeddings(singles, stack(single_vecs), groups, {r: stack(v) for r, v in vecs.items()})


def embed_sweep(model, testset, emb: ZsteEmbeddings, junctions: Sequence[float],
                n_groups: int, batch_size: int = 32, stats: AudioStats | None = None,
                progress: bool = True, pool=None) -> dict[float, ZsteEmbeddings]:
    """The first `n_groups` of `emb.groups` with their forward and reversed members rendered
    at each junction and embedded (a member that is the stored one keeps its embedding from
    `emb`), the overlay as stored: {junction: embeddings of those groups}."""
    groups = emb.groups[:n_groups]

    def members():
        for i, swept in enumerate(testset.swept_groups(groups, junctions, pool)):
            for junction in junctions:
                for relation in SWEPT_RELATIONS:
                    waves = swept.waves[junction]
                    if waves is not None:
                        yield (i, junction, relation), waves[relation]
            bar.update(1)

    vecs = {(j, r): [v for v in emb.members[r][:n_groups]] for j in junctions
            for r in SWEPT_RELATIONS}
    with progress_bar(len(groups), "zste timing sweep", "group", enabled=progress,
                      leave=False) as bar:
        for (i, junction, relation), vec in embed_stream(model, members(), testset.sample_rate,
                                                         batch_size, stats):
            vecs[junction, relation][i] = vec
    stack = lambda v, r: np.stack(v) if v else emb.members[r][:0]  # noqa: E731
    return {j: ZsteEmbeddings([], emb.single[:0], groups,
                              {**{r: stack(vecs[j, r], r) for r in SWEPT_RELATIONS},
                               "overlay": emb.members["overlay"][:n_groups]})
            for j in junctions}


# ---------------------------------------------------------------------------------------------
# Scoring helpers

def _rowdot(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.einsum("nd,nd->n", x, y)


def _texts(cache: TextCache, texts: Sequence[str]) -> np.ndarray:
    return cache.embed(list(texts))


def scored(hits: np.ndarray, seen: np.ndarray | None = None, chance: float | None = None) -> dict:
    """Score dict of boolean hits, split into seen/unseen class pairs when the mask is known."""
    hits = np.asarray(hits, dtype=bool)
    d = Score.of(hits).to_dict()
    if chance is not None:
        d["chance"] = round(float(chance), 6)
    if seen is not None:
        seen = np.asarray(seen, dtype=bool)
        d["seen"] = Score.of(hits[seen]).to_dict()
        d["unseen"] = Score.of(hits[~seen]).to_dict()
    return d


def _tile(mask: np.ndarray | None, times: int) -> np.ndarray | None:
    return None if mask is None else np.tile(mask, times)


# ---------------------------------------------------------------------------------------------
# The tasks (pure functions of embeddings and the text cache)

def task1_single(emb: ZsteEmbeddings, vocab: list[str], cache: TextCache) -> dict:
    prompts = _texts(cache, [CLASS_PROMPT.format(label=c) for c in vocab])
    index = {c: i for i, c in enumerate(vocab)}
    truth = np.array([index[s.label] for s in emb.singles], dtype=np.int64)
    pred = argmax_first(emb.single @ prompts.T) if len(truth) else truth
    return {"description": "single clip vs class prompts", **scored(pred == truth, chance=1 / len(vocab))}


def task2_mixture(emb: ZsteEmbeddings, vocab: list[str], cache: TextCache,
                  seen: np.ndarray | None) -> dict:
    prompts = _texts(cache, [CLASS_PROMPT.format(label=c) for c in vocab])
    index = {c: i for i, c in enumerate(vocab)}
    truth = [frozenset((index[g.a], index[g.b])) for g in emb.groups]
    hits = {}
    for relation in GROUP_RELATIONS:
        x = emb.members[relation]
        top2 = top_k_sets(x @ prompts.T, 2) if len(x) else []
        hits[relation] = np.array([t == p for t, p in zip(truth, top2)], dtype=bool)
    k = len(vocab)
    chance = 2 / (k * (k - 1)) if k > 1 else 1.0
    concat = np.concatenate([hits["forward"], hits["reversed"]])
    return {
        "description": "overlay vs class prompts, top-2 == {a, b}",
        **scored(hits["overlay"], seen, chance),
        "variants": {
            "overlay": scored(hits["overlay"], seen),
            "concatenation": scored(concat, _tile(seen, 2)),
            "forward": scored(hits["forward"], seen),
            "reversed": scored(hits["reversed"], seen),
        },
    }


def order_predictions(emb: ZsteEmbeddings, cache: TextCache, template: OrderTemplate) -> dict:
    """Predicted caption type (0 forward, 1 reversed, 2 overlay) per relation's member."""
    a = [g.a for g in emb.groups]
    b = [g.b for g in emb.groups]
    captions = [
        _texts(cache, [template.order(x, y) for x, y in zip(a, b)]),
        _texts(cache, [template.order(y, x) for x, y in zip(a, b)]),
        _texts(cache, [template.together(x, y) for x, y in zip(a, b)]),
    ]
    out = {}
    for relation in GROUP_RELATIONS:
        x = emb.members[relation]
        sims = np.stack([_rowdot(x, c) for c in captions], axis=1)
        out[relation] = argmax_first(sims)
    return out


def _order_hits(pred: dict) -> dict[str, np.ndarray]:
    return {r: pred[r] == i for i, r in enumerate(ORDER_LABELS)}


def _mean_cosine(x: np.ndarray, y: np.ndarray, seen: np.ndarray | None) -> dict:
    cos = _rowdot(normalize(x), normalize(y))
    out = {"mean": round(float(cos.mean()), 6) if len(cos) else None}
    if seen is not None:
        for name, mask in (("seen", seen), ("unseen", ~seen)):
            out[name] = round(float(cos[mask].mean()), 6) if mask.any() else None
    return out


def order_cosines(emb: ZsteEmbeddings, cache: TextCache, template: OrderTemplate,
                  seen: np.ndarray | None) -> dict:
    """Which tower tells the two orders apart: the mean cosine of "{a} before {b}" with
    "{b} before {a}" (text) and of the forward clip with the reversed one (audio), over all,
    seen and unseen pairs. 1.0 on a side means that side cannot see order, so task 3 fails
    whatever the other side learns; a side that is lower on seen than on unseen pairs has
    learned order per pair rather than one that carries to new pairs."""
    ab = _texts(cache, [template.order(g.a, g.b) for g in emb.groups])
    ba = _texts(cache, [template.order(g.b, g.a) for g in emb.groups])
    return {"description": "mean cosine between the two orders (1 = indistinguishable)",
            "text": _mean_cosine(ab, ba, seen),
            "audio": _mean_cosine(emb.members["forward"], emb.members["reversed"], seen)}


def task3_order(emb: ZsteEmbeddings, cache: TextCache, template: OrderTemplate,
                seen: np.ndarray | None) -> dict:
    pred = order_predictions(emb, cache, template)
    hits = _order_hits(pred)
    main = np.concatenate([hits["forward"], hits["reversed"]])
    confusion = np.zeros((3, 3), dtype=np.int64)
    for i, relation in enumerate(ORDER_LABELS):
        np.add.at(confusion[i], pred[relation], 1)
    return {
        "description": "forward/reversed (50/50) vs {a} before {b}, {b} before {a}, {a} while {b}",
        **scored(main, _tile(seen, 2), 1 / 3),
        "order_blind_ceiling": 0.5,
        "template": template.to_dict(),
        "variants": {r: scored(hits[r], seen) for r in GROUP_RELATIONS},
        "confusion": {"labels": list(ORDER_LABELS), "rows": "true relation",
                      "columns": "predicted caption", "counts": confusion.tolist()},
        "order_cosine": order_cosines(emb, cache, template, seen),
    }


def task4_compositional(emb: ZsteEmbeddings, vocab: list[str], cache: TextCache,
                        template: OrderTemplate, seed: int, seen: np.ndarray | None) -> dict:
    sets = [compositional_candidates(g, vocab, template, seed) for g in emb.groups]
    unique = list(dict.fromkeys(t for cands, _ in sets for t in cands))
    matrix = _texts(cache, unique)
    where = {t: i for i, t in enumerate(unique)}
    hits, sizes = [], []
    for (cands, true), audio in zip(sets, emb.members["forward"]):
        sims = matrix[[where[t] for t in cands]] @ audio
        hits.append(int(np.argmax(sims)) == true)
        sizes.append(len(cands))
    sizes = np.array(sizes or [0])
    return {
        "description": "forward vs 'x before y' / 'x while y' captions (true, reversed and "
                       "while-distractor always included)",
        **scored(np.array(hits, dtype=bool), seen,
                 float(np.mean(1.0 / sizes)) if sizes.min() > 0 else None),
        "candidates": {"min": int(sizes.min()), "max": int(sizes.max()),
                       "target": TASK4_SIZE, "other_classes": TASK4_OTHER_CLASSES},
    }


def task5_position(emb: ZsteEmbeddings, vocab: list[str], cache: TextCache,
                   seen: np.ndarray | None) -> dict:
    first = _texts(cache, [POSITION_PROMPTS[0].format(c=c) for c in vocab])
    second = _texts(cache, [POSITION_PROMPTS[1].format(c=c) for c in vocab])
    index = {c: i for i, c in enumerate(vocab)}
    a = np.array([index[g.a] for g in emb.groups], dtype=np.int64)
    b = np.array([index[g.b] for g in emb.groups], dtype=np.int64)
    hits, firsts, seconds = {}, [], []
    for relation, (p, q) in (("forward", (a, b)), ("reversed", (b, a))):
        x = emb.members[relation]
        f_ok = argmax_first(x @ first.T) == p if len(x) else np.zeros(0, bool)
        s_ok = argmax_first(x @ second.T) == q if len(x) else np.zeros(0, bool)
        hits[relation] = f_ok & s_ok
        firsts.append(f_ok)
        seconds.append(s_ok)
    main = np.concatenate([hits["forward"], hits["reversed"]])
    k = len(vocab)
    return {
        "description": "first and second sound vs position prompts; both must be right",
        **scored(main, _tile(seen, 2), 1 / (k * k)),
        "variants": {
            "forward": scored(hits["forward"], seen),
            "reversed": scored(hits["reversed"], seen),
            "first_only": scored(np.concatenate(firsts), _tile(seen, 2)),
            "second_only": scored(np.concatenate(seconds), _tile(seen, 2)),
        },
    }


def compa_order(emb: ZsteEmbeddings, cache: TextCache, template: OrderTemplate,
                seen: np.ndarray | None) -> dict:
    a = [g.a for g in emb.groups]
    b = [g.b for g in emb.groups]
    t_f = _texts(cache, [template.order(x, y) for x, y in zip(a, b)])
    t_r = _texts(cache, [template.order(y, x) for x, y in zip(a, b)])
    f, r = emb.members["forward"], emb.members["reversed"]
    s_ff, s_fr, s_rf, s_rr = _rowdot(f, t_f), _rowdot(f, t_r), _rowdot(r, t_f), _rowdot(r, t_r)
    text = (s_ff > s_fr) & (s_rr > s_rf)
    audio = (s_ff > s_rf) & (s_rr > s_fr)
    return {
        "description": "Winoground-style scores over each forward/reversed pair (strict >)",
        "text": scored(text, seen, 0.25),
        "audio": scored(audio, seen, 0.25),
        "group": scored(text & audio, seen, 1 / 6),
    }


def template_generalisation(emb: ZsteEmbeddings, cache: TextCache, paper: dict,
                            heldout: list[tuple[OrderTemplate, bool | None]],
                            seen: np.ndarray | None) -> dict:
    """Task 3 under each held-out wording, and pooled over the wordings training never used."""
    per, pooled = {}, []
    for template, in_training in heldout:
        hits = _order_hits(order_predictions(emb, cache, template))
        main = np.concatenate([hits["forward"], hits["reversed"]])
        per[template.id] = {**scored(main, _tile(seen, 2), 1 / 3),
                            "template": template.to_dict(), "in_training": in_training,
                            "variants": {r: scored(hits[r], seen) for r in GROUP_RELATIONS}}
        if in_training is not True:
            pooled.append(main)
    heldout_hits = np.concatenate(pooled) if pooled else np.zeros(0, bool)
    n_groups = 2 * len(emb.groups)
    pooled_seen = None if seen is None else np.tile(np.tile(seen, 2), len(pooled))
    verified = all(t is not None for _, t in heldout)
    return {
        "description": "order task (3) with the paper's wording vs wordings held out of training",
        "paper": {k: paper[k] for k in ("accuracy", "n", "correct", "ci95", "seen", "unseen")
                  if k in paper},
        "heldout": {**scored(heldout_hits, pooled_seen, 1 / 3),
                    "templates": [t.id for t, used in heldout if used is not True],
                    "items_per_template": n_groups,
                    "verified_against_training": verified},
        "templates": per,
    }


def timing_sweep(sweep: dict[float, ZsteEmbeddings], cache: TextCache, template: OrderTemplate,
                 seen: np.ndarray | None, of_groups: int) -> dict:
    """Task 3 and CompA-order at each junction of the sweep, and the timing-robust order: the
    held-out-pair order at the worst junction (all pairs when seen/unseen is unknown)."""
    points = []
    for junction, emb in sorted(sweep.items()):
        mask = None if seen is None else seen[:len(emb.groups)]
        order = task3_order(emb, cache, template, mask)
        points.append({
            "junction": junction,
            "order": {k: order[k] for k in ("accuracy", "n", "correct", "ci95", "chance",
                                            "seen", "unseen") if k in order},
            "order_blind_ceiling": order["order_blind_ceiling"],
            "confusion": order["confusion"],
            "compa_order": {k: v for k, v in compa_order(emb, cache, template, mask).items()
                            if k != "description"}})
    groups = len(next(iter(sweep.values())).groups) if sweep else 0
    return {
        "description": "task 3 (forward/reversed vs {a} before {b}, {b} before {a}, {a} while "
                       "{b}) and CompA-order on the test groups re-rendered with the second "
                       "event at each junction (fraction of the clip; reversed mirrored; the "
                       "overlay as built)",
        "junctions": [p["junction"] for p in points],
        "groups": groups, "of_groups": of_groups,
        "template": template.to_dict(),
        "points": points,
        "timing_robust": timing_robust(points, seen is not None),
    }


def timing_robust(points: list[dict], split_known: bool) -> dict:
    """The worst junction's held-out-pair order (the lowest accuracy; ties: the lowest
    junction) and the CompA group score at that junction."""
    part = "unseen" if split_known else None
    scored_points = [(p, p["order"][part] if part else p["order"]) for p in points]
    scored_points = [(p, s) for p, s in scored_points if s.get("accuracy") is not None]
    if not scored_points:
        return {"junction": None, "pairs": part or "all", "order": Score.of(np.zeros(0, bool)).to_dict(),
                "compa_group": Score.of(np.zeros(0, bool)).to_dict()}
    point, score = min(scored_points, key=lambda ps: (ps[1]["accuracy"], ps[0]["junction"]))
    return {"junction": point["junction"], "pairs": part or "all",
            "order": {**score, "chance": point["order"]["chance"],
                      "order_blind_ceiling": point["order_blind_ceiling"]},
            "compa_group": point["compa_order"]["group"]}


# ---------------------------------------------------------------------------------------------
# The whole evaluation

def seen_mask(groups: list[PairGroup], training: TrainingData | None) -> np.ndarray | None:
    if training is None or not training.available:
        return None
    return np.array([g.pair in training.pairs for g in groups], dtype=bool)


def score_zste(emb: ZsteEmbeddings, vocab: list[str], cache: TextCache, *, seed: int = 0,
               templates: str = "all", training: TrainingData | None = None,
               sweep: dict[float, ZsteEmbeddings] | None = None) -> dict:
    """Every task's metrics from embeddings; the text cache supplies (and counts) text vectors.
    `sweep` (`embed_sweep`): the timing sweep's embeddings per junction."""
    if templates not in TEMPLATE_CHOICES:
        raise ValueError(f"templates must be one of {TEMPLATE_CHOICES}, got {templates!r}")
    vocab = sorted(vocab)
    seen = seen_mask(emb.groups, training)
    paper = paper_template()
    metrics = {"task1_single": task1_single(emb, vocab, cache)}
    if emb.groups:
        metrics["task2_mixture"] = task2_mixture(emb, vocab, cache, seen)
        metrics["task3_order"] = task3_order(emb, cache, paper, seen)
        metrics["task4_compositional"] = task4_compositional(emb, vocab, cache, paper, seed, seen)
        metrics["task5_position"] = task5_position(emb, vocab, cache, seen)
        metrics["compa_order"] = compa_order(emb, cache, paper, seen)
        if templates in ("heldout", "all"):
            train_ids = training.template_ids if training is not None and training.available else None
            metrics["template_generalisation"] = template_generalisation(
                emb, cache, metrics["task3_order"], heldout_templates(train_ids), seen)
        if sweep:
            metrics["timing_sweep"] = timing_sweep(sweep, cache, paper, seen, len(emb.groups))
    if seen is not None:
        metrics["pairs"] = {"test_pairs": len({g.pair for g in emb.groups}),
                            "seen_pairs": len({g.pair for g, s in zip(emb.groups, seen) if s}),
                            "seen_groups": int(seen.sum()), "unseen_groups": int((~seen).sum())}
    return metrics


def evaluate_zste(model, testset, *, seed: int = 0, batch_size: int = 32, templates: str = "all",
                  training: TrainingData | None = None, progress: bool = True,
                  workers: int | None = 0, junctions: Sequence[float] = (),
                  sweep_items: int | None = None) -> dict:
    """Embed a test set with `model` and score every task. Returns {"metrics", "timing",
    "items"}; `teminal.evaluate.report` wraps it with provenance. `workers` decode processes
    (0: decode in this process; None: `default_workers()`) give the same numbers. `junctions`
    (fractions of the clip) add the timing sweep on the first `sweep_items` groups (None:
    all); its junctions and sources are checked before any work."""
    start = time.perf_counter()
    junctions = parse_junctions(junctions) if junctions else ()
    if sweep_items is not None and sweep_items < 1:
        raise ValueError(f"--sweep-items {sweep_items}: give a number of test groups >= 1")
    if junctions:
        testset.check_sweep(junctions, sweep_items)
    stats = AudioStats()
    workers = workers_for(model, workers)
    with eval_mode(model), DecodePool(workers, ahead=decode_ahead(batch_size, workers)) as pool:
        emb = embed_testset(model, testset, batch_size, stats, progress, pool)
        audio_pass = time.perf_counter() - start
        if not emb.singles and not emb.groups:
            raise ValueError("the test set yielded no items (see skipped counts: "
                             f"{testset.skipped or 'none'})")
        n_swept = min(len(emb.groups), sweep_items or len(emb.groups)) if junctions else 0
        sweep = embed_sweep(model, testset, emb, junctions, n_swept, batch_size, stats,
                            progress, pool) if n_swept else None
        sweep_pass = time.perf_counter() - start - audio_pass
        cache = TextCache(model, batch_size=max(batch_size, 64))
        metrics = score_zste(emb, testset.vocabulary, cache, seed=seed, templates=templates,
                             training=training, sweep=sweep)
    wall = time.perf_counter() - start
    return {
        "metrics": metrics,
        "items": {"singles": len(emb.singles), "groups": len(emb.groups),
                  "classes": len(testset.vocabulary), "skipped": dict(testset.skipped),
                  **({"swept_groups": n_swept} if junctions else {})},
        "timing": {**stats.to_dict(), "texts_embedded": len(cache),
                   "text_embed_seconds": round(cache.seconds, 3), "wall_seconds": round(wall, 3),
                   "audio_pass_seconds": round(audio_pass, 3),
                   **({"sweep_seconds": round(sweep_pass, 3)} if junctions else {}),
                   "decode": pool.timing()},
    }


def protocol(templates: str, seed: int, split: str, junctions: Sequence[float] = (),
             sweep_items: int | None = None) -> dict:
    out = {
        "benchmark": "ZSTE (zero-shot temporal evaluation, docs/METHOD.md)",
        "split": split,
        "decision": "argmax of cosine similarity, ties to the first candidate; accuracy with a "
                    "95% Wilson interval",
        "items": "singles: each test source clip once, rendered as a stage-A single without "
                 "augmentation; pairs: every stage-B test group (forward, reversed, overlay)",
        "class_prompt": CLASS_PROMPT,
        "position_prompts": list(POSITION_PROMPTS),
        "order_template": paper_template().to_dict(),
        "task4": {"size": TASK4_SIZE, "other_classes": TASK4_OTHER_CLASSES,
                  "always": ["{a} before {b}", "{b} before {a}", "{a} while {b}"]},
        "templates": templates,
        "seen_pairs": "unordered class pairs of composed train samples of the model's training "
                      "catalog",
        "seed": seed,
    }
    if junctions:
        out["timing_sweep"] = {
            "junctions": list(junctions), "sweep_items": sweep_items,
            "members": "forward and reversed of the first sweep_items test groups (all: null) "
                       "planned again with the second event at each junction (compose.retime: "
                       "as a build with that fixed --junction and the recipe's gap plans it; "
                       "reversed mirrored), rendered from the sources and stored with the "
                       "build's codec; the overlay as built",
            "timing_robust": "order accuracy on held-out (unseen) pairs at the worst junction"}
    return out


def run(model, spec: str, data, *, seed: int = 0, batch_size: int = 32, templates: str = "all",
        train_data=None, max_items: int | None = None, split: str = "test",
        label: str | None = None, argv=None, progress: bool = True,
        workers: int | None = 0, junctions: Sequence[float] = (), sweep_items: int | None = None,
        root=None) -> dict:
    """`evaluate zste` as a function: the full result object (see teminal.evaluate.report).
    `root`: where the build's sources are now, if they moved (the singles and the timing sweep
    render from them)."""
    from teminal.evaluate.report import new_result
    from teminal.evaluate.testset import CatalogTestSet
    from teminal.evaluate.training_data import resolve_training_data
    from teminal.models.provenance import find_checkpoint

    junctions = parse_junctions(junctions) if junctions else ()
    testset = CatalogTestSet(data, split=split, max_items=max_items, root=root)
    training = resolve_training_data(model, train_data, near=find_checkpoint(spec))
    out = evaluate_zste(model, testset, seed=seed, batch_size=batch_size, templates=templates,
                        training=training, progress=progress, workers=workers,
                        junctions=junctions, sweep_items=sweep_items)
    dataset = ",".join(testset.datasets) or testset.info.config.get("dataset")
    return new_result(
        "zste", spec=spec, model=model, label=label, argv=argv, seed=seed,
        data={"path": str(data), "dataset": dataset, "split": split,
              "catalog_build_id": testset.info.build_id, "synthetic": testset.info.synthetic,
              "sample_rate": testset.sample_rate, "num_samples": testset.num_samples,
              "max_items": max_items},
        protocol=protocol(templates, seed, split, junctions, sweep_items), metrics=out["metrics"],
        items=out["items"],
        training_data=training.to_dict(), timing=out["timing"])
