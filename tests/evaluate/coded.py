"""Coded test sets and the fakes of teminal.testing bound to the evaluators' own wordings
(teminal.testing knows no evaluator: its fakes take the wordings they understand)."""
from __future__ import annotations

from itertools import permutations

from teminal.testing import SAMPLE_RATE, VOCAB, Wordings, encode, fakes


def evaluator_wordings() -> Wordings:
    """Every wording ZSTE and zero-shot ask about: the pipeline's extended template set plus
    the evaluation-only ones, the class prompt and the position prompts."""
    from teminal.evaluate.zste import (CLASS_PROMPT, EVAL_ONLY_ORDER, EVAL_ONLY_OVERLAY,
                                       POSITION_PROMPTS)
    from teminal.pipeline.captions import templates_for

    order = [t.text for t in templates_for("forward", "extended")] + [t for _, t in EVAL_ONLY_ORDER]
    overlay = [t.text for t in templates_for("overlay", "extended")] + [EVAL_ONLY_OVERLAY[1]]
    return Wordings(CLASS_PROMPT, tuple(POSITION_PROMPTS), tuple(order), tuple(overlay))


WORDINGS = evaluator_wordings()


class FakeModel(fakes.FakeModel):
    wordings = WORDINGS


class OrderBlindModel(fakes.OrderBlindModel):
    wordings = WORDINGS


class OracleModel(fakes.OracleModel):
    wordings = WORDINGS


def make_testset(vocab=VOCAB, singles_per_class=2, repeats=1, sweep=None, **kwargs):
    """An evaluate ItemTestSet of coded clips: every class `singles_per_class` times; every
    ordered pair of classes `repeats` times. `sweep` ({junction: predicate of a PairGroup}):
    timing-sweep members at those junctions, where the forward member of each group the
    predicate picks is coded as its reverse (a perfect model then gets that group wrong)."""
    from teminal.evaluate.testset import ItemTestSet, PairGroup, SingleItem

    singles, groups, nonce = [], [], 0
    for c, label in enumerate(vocab):
        for i in range(singles_per_class):
            nonce += 1
            singles.append((SingleItem(f"src-{c}-{i}", label), encode("single", c, nonce=nonce)))
    for r in range(repeats):
        for x, y in permutations(range(len(vocab)), 2):
            nonce += 1
            key = f"g-{r}-{x:02d}-{y:02d}"
            waves = {rel: encode(rel, x, y, nonce) for rel in ("forward", "reversed", "overlay")}
            groups.append((PairGroup(key, vocab[x], vocab[y]), waves))
    swept = {j: {g.group_key: {"forward": encode("reversed" if wrong(g) else "forward",
                                                 vocab.index(g.a), vocab.index(g.b), 10_000),
                               "reversed": waves["reversed"]}
                 for g, waves in groups}
             for j, wrong in (sweep or {}).items()}
    return ItemTestSet(vocab, singles, groups, SAMPLE_RATE, sweep=swept, **kwargs)
