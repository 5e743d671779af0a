"""Zero-shot classification on ESC-50: each clip against "This is a sound of {label}.".

Protocol (written into every result): the clip is decoded to the model's rate (mono), padded to
the model's input length by repetition then zeros (LAION-CLAP's "repeatpad"; clips longer than
the input are split into windows whose embeddings are averaged), no loudness change; the class
vocabulary is every category in the dataset's CSV (50 for ESC-50, 10 for the synthetic set);
accuracy = top-1 argmax of cosine similarity, reported per fold and over the chosen folds.
LAION-CLAP reports fold 1 only (`--folds 1`); MS-CLAP reports all 2000 clips (`--folds all`).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from teminal.evaluate.embed import (AudioStats, TextCache, decoded_sources, embed_long_clips,
                                    eval_mode)
from teminal.evaluate.metrics import Score, argmax_first, rank_of
from teminal.evaluate.workers import DecodePool, decode_ahead, workers_for
from teminal.manifests.vocabulary import CLASS_PROMPT
ALL_FOLDS = (1, 2, 3, 4, 5)
FILL = "repeatpad"


def parse_folds(text: str) -> tuple[int, ...]:
    """"all" or a comma-separated list of fold numbers ("1", "1,2")."""
    text = str(text).strip().lower()
    if text == "all":
        return ALL_FOLDS
    try:
        folds = tuple(sorted({int(x) for x in text.split(",") if x.strip()}))
    except ValueError:
        raise ValueError(f"--folds {text!r}: use 'all' or fold numbers such as '1' or '1,2'") from None
    bad = [f for f in folds if f not in ALL_FOLDS]
    if not folds or bad:
        raise ValueError(f"--folds {text!r}: ESC-50 folds are 1-5")
    return folds


def scan_esc50(root, folds):
    """(every clip of the dataset, the clips of `folds`, rejects, synthetic flag)."""
    from teminal.pipeline.sources import esc50

    scan = esc50.scan(root, {"eval": list(ALL_FOLDS)})
    chosen = [c for c in scan.clips if c.fold in folds]
    return scan.clips, chosen, scan.rejects, scan.synthetic


def clip_score(hits: np.ndarray, top5: np.ndarray) -> dict:
    return {**Score.of(hits).to_dict(), "top5": Score.of(top5).to_dict()["accuracy"]}


def evaluate_zeroshot(model, clips, vocabulary, batch_size: int = 32, progress: bool = True,
                      workers: int | None = 0) -> dict:
    """Score labelled clips (objects with .source_id, .path, .label, .fold). Returns {"metrics",
    "items", "timing"}. `workers` decode processes (0: decode here) give the same numbers."""
    start = time.perf_counter()
    vocabulary = sorted(vocabulary)
    sr = int(model.sample_rate)
    length = int(model.clip_samples)
    skipped: dict[str, int] = {}

    stats = AudioStats()
    workers = workers_for(model, workers)
    with eval_mode(model), DecodePool(workers, ahead=decode_ahead(batch_size, workers)) as pool:
        decoded = decoded_sources(((c.source_id, c.path) for c in clips), sr, skipped, pool)
        audio = embed_long_clips(model, decoded, length, sr, batch_size, FILL, stats, progress,
                                 total=len(clips), desc="esc50")
        kept = [c for c in clips if c.source_id in audio]
        if not kept:
            raise ValueError(f"no clip could be decoded ({skipped or 'none given'})")
        cache = TextCache(model, max(batch_size, 64))
        prompts = cache.embed([CLASS_PROMPT.format(label=c) for c in vocabulary])
    sims = np.stack([audio[c.source_id] for c in kept]) @ prompts.T
    index = {c: i for i, c in enumerate(vocabulary)}
    truth = np.array([index[c.label] for c in kept])
    hits = argmax_first(sims) == truth
    top5 = rank_of(sims, truth) < 5
    folds = np.array([c.fold for c in kept])
    per_fold = {str(f): clip_score(hits[folds == f], top5[folds == f]) for f in sorted(set(folds.tolist()))}
    return {
        "metrics": {"folds": per_fold, "all": {**clip_score(hits, top5), "chance": round(1 / len(vocabulary), 6)}},
        "items": {"clips": len(kept), "classes": len(vocabulary), "skipped": skipped},
        "timing": {**stats.to_dict(), "texts_embedded": len(cache),
                   "wall_seconds": round(time.perf_counter() - start, 3), "decode": pool.timing()},
    }


def protocol(folds) -> dict:
    name = "fold 1 only (LAION-CLAP's protocol)" if tuple(folds) == (1,) else (
        "all 5 folds, 2000 clips for full ESC-50 (MS-CLAP's protocol)" if tuple(folds) == ALL_FOLDS
        else f"folds {','.join(map(str, folds))}")
    return {"benchmark": "ESC-50 zero-shot classification", "folds": list(folds),
            "description": name, "prompt": CLASS_PROMPT, "fill": FILL,
            "decision": "top-1 argmax of cosine similarity over the dataset's classes; no training"}


def run(model, spec: str, root, folds=ALL_FOLDS, batch_size: int = 32, seed: int = 0,
        label: str | None = None, argv=None, progress: bool = True,
        workers: int | None = 0) -> dict:
    from teminal.evaluate.report import new_result

    every, clips, rejects, synthetic = scan_esc50(root, folds)
    if not clips:
        present = sorted({c.fold for c in every})
        raise ValueError(f"no ESC-50 clips in fold(s) {list(folds)} under {root} (folds present: "
                         f"{present or 'none'}); choose --folds among those, e.g. --folds all")
    vocabulary = sorted({c.label for c in every})
    out = evaluate_zeroshot(model, clips, vocabulary, batch_size, progress, workers)
    out["items"]["rejected_at_scan"] = len(rejects)
    dataset = "esc50-synthetic" if synthetic else "esc50"
    return new_result("zeroshot", spec=spec, model=model, label=label, argv=argv, seed=seed,
                      data={"dataset": dataset, "root": str(Path(root)), "split": "folds",
                            "catalog_build_id": None, "synthetic": bool(synthetic)},
                      protocol=protocol(folds), metrics=out["metrics"], items=out["items"],
                      timing=out["timing"])
