"""Class pairs held out of post-training, so ZSTE can tell learned order from memorised pairs.

One definition, used by the demo (scripts/demo.sh) and the ablation (benchmarks/ablate_order.py):
`cycle_pairs(classes)` pairs every class with the next one in a fixed ring, so each class is in
exactly two held-out pairs (12 classes: 12 of 66 pairs, 18% >= 1/6) and every class still
appears in training with the other nine; `where_excluding(pairs)` is the `--where` predicate
that removes them from stages A and B (a group is kept only when every row matches, so the
stage-A groups of a held-out pair go too). ZSTE then reports those pairs as "unseen".
"""
from __future__ import annotations

import argparse
from typing import Iterable, Sequence

from teminal.manifests.vocabulary import label_text


def cycle_pairs(classes: Sequence[str], step: int = 1) -> list[tuple[str, str]]:
    """(c_i, c_{i+step}) around the ring of `classes` (in the given order), as label texts."""
    names = [label_text(c) for c in classes]
    if len(names) < 3:
        raise ValueError(f"a ring of held-out pairs needs >= 3 classes, got {len(names)}")
    return [(names[i], names[(i + step) % len(names)]) for i in range(len(names))]


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def where_excluding(pairs: Iterable[tuple[str, str]]) -> str:
    """SQL predicate on `samples` rows that is false for any row naming both classes of a pair
    (in either order)."""
    terms = [f"NOT (list_contains(labels, {_sql_string(a)}) AND list_contains(labels, "
             f"{_sql_string(b)}))" for a, b in pairs]
    if not terms:
        raise ValueError("no pairs to hold out")
    return "\n  AND ".join(terms)


def synthetic_holdout() -> list[tuple[str, str]]:
    """The held-out pairs of the synthetic default (pipeline synth esc50)."""
    from teminal.pipeline.sources.synth import CLASS_NAMES

    return cycle_pairs(CLASS_NAMES)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Print the --where predicate that holds the "
                                            "synthetic default's ring of class pairs out of "
                                            "training (or of --classes).")
    p.add_argument("--classes", nargs="+", help="class names in ring order (default: the "
                                                "synthetic default's 12)")
    args = p.parse_args(argv)
    pairs = cycle_pairs(args.classes) if args.classes else synthetic_holdout()
    print(where_excluding(pairs))


if __name__ == "__main__":
    main()
