"""Audio-text retrieval on AudioCaps (test) and Clotho (evaluation) with LAION-CLAP's metrics.

Protocol (written into every result):
- the clips of the split whose audio exists locally (AudioCaps copies usually miss 5-10% of
  the clips: found and missing counts are reported and only found clips are evaluated);
- each clip decoded to the model's rate (mono); a clip longer than the model's input is cut
  into consecutive windows (the last aligned to the end) whose embeddings are averaged and
  re-normalised (deterministic, unlike LAION-CLAP's random crop); shorter clips are padded by
  repetition then zeros ("repeatpad");
- every caption of every clip is a query/target (any number of captions per clip);
- metrics as defined in `teminal.evaluate.metrics` (text->audio: each caption ranked on its own;
  audio->text: best rank of the clip's captions for R@k, AP@10 over all its captions);
- coverage: the share of the split's listed clips that were evaluated; below MIN_COVERAGE the
  result carries a warning (in `warnings` and above the printed table).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np

from teminal.evaluate.embed import (AudioStats, TextCache, decoded_sources, embed_long_clips,
                                    eval_mode)
from teminal.evaluate.metrics import audio_to_text_metrics, text_to_audio_metrics
from teminal.evaluate.workers import DecodePool, decode_ahead, workers_for
from teminal.pipeline.sources import retrieval_datasets

FILL = "repeatpad"
# Below this share of the split's clips, R@k and mAP say little about the model: with 7 of
# Clotho's 1,045 evaluation clips, R@10 ranks each caption among 7 candidates and reads 1.000.
MIN_COVERAGE = 0.5


DATASETS = retrieval_datasets()


def scan_split(dataset: str, root, split: str = "test"):
    """(items [(source_id, path, captions)], rejects, synthetic) of one split."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown retrieval dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    from teminal.pipeline.sources import dataset_spec

    reader = dataset_spec(dataset).reader()
    scan = reader.scan(root, [split])
    items = reader.retrieval_items(scan, split)
    return items, scan.rejects, bool(scan.synthetic)


def caption_index(items: Sequence[tuple[str, str, Sequence[str]]]) -> tuple[list[str], np.ndarray]:
    """All captions in clip order and, for each, the index of its clip."""
    captions, owner = [], []
    for i, (_sid, _path, caps) in enumerate(items):
        captions.extend(caps)
        owner.extend([i] * len(caps))
    return captions, np.asarray(owner, dtype=np.int64)


def retrieval_metrics(audio: np.ndarray, text: np.ndarray, caption_clip: np.ndarray) -> dict:
    """Both directions from L2-normalised embeddings: audio [clips, D], text [captions, D]."""
    sim = audio @ text.T
    return {"text_to_audio": text_to_audio_metrics(sim, caption_clip),
            "audio_to_text": audio_to_text_metrics(sim, caption_clip)}


def evaluate_retrieval(model, items, batch_size: int = 32, progress: bool = True,
                       workers: int | None = 0) -> dict:
    """Embed the clips that decode and their captions; returns {"metrics", "items", "timing"}.
    `workers` decode processes (0: decode here) give the same numbers."""

    start = time.perf_counter()
    sr = int(model.sample_rate)
    length = int(model.clip_samples)
    failed: dict[str, int] = {}

    stats = AudioStats()
    workers = workers_for(model, workers)
    with eval_mode(model), DecodePool(workers, ahead=decode_ahead(batch_size, workers)) as pool:
        decoded = decoded_sources(((sid, path) for sid, path, _caps in items), sr, failed, pool)
        audio = embed_long_clips(model, decoded, length, sr, batch_size, FILL, stats, progress,
                                 total=len(items), desc="retrieval audio")
        kept = [it for it in items if it[0] in audio and it[2]]
        if not kept:
            raise ValueError(f"no clip with captions could be decoded ({failed or 'no clips given'})")
        captions, owner = caption_index(kept)
        cache = TextCache(model, max(batch_size, 64))
        text = cache.embed(captions)
    metrics = retrieval_metrics(np.stack([audio[sid] for sid, _, _ in kept]), text, owner)
    counts = np.bincount(owner)
    wall = time.perf_counter() - start
    return {
        "metrics": metrics,
        "items": {"evaluated": len(kept), "decode_failed": failed, "captions": len(captions),
                  "captions_per_clip": {"min": int(counts.min()), "max": int(counts.max())}},
        "timing": {**stats.to_dict(), "clips": len(kept),
                   "clips_per_s_end_to_end": round(len(kept) / wall, 2) if wall > 0 else None,
                   "texts_embedded": len(cache), "wall_seconds": round(wall, 3),
                   "decode": pool.timing()},
    }


def protocol(dataset: str, split: str) -> dict:
    return {"benchmark": f"{dataset} audio-text retrieval", "split": split, "fill": FILL,
            "long_clips": "mean of consecutive window embeddings, re-normalised",
            "text_to_audio": "each caption ranked on its own against all evaluated clips",
            "audio_to_text": "R@k: best rank of the clip's captions; mAP@10: AP@10 over all its "
                             "captions divided by their number (LAION-CLAP)",
            "ties": "broken by position (stable sort)"}


def run(model, spec: str, dataset: str, root, split: str = "test", batch_size: int = 32,
        seed: int = 0, max_items: int | None = None, label: str | None = None, argv=None,
        progress: bool = True, workers: int | None = 0) -> dict:
    from teminal.evaluate.report import new_result

    items, rejects, synthetic = scan_split(dataset, root, split)
    missing = sum(1 for r in rejects if r.reason == "missing audio")
    other: dict[str, int] = {}
    for r in rejects:
        if r.reason != "missing audio":
            kind = r.reason.split(":")[0]
            other[kind] = other.get(kind, 0) + 1
    if not items:
        raise ValueError(f"{dataset} {split} under {root}: no clip with audio found ({missing} "
                         "missing); put the audio where the reader looks (see "
                         f"teminal.pipeline.sources.{dataset})")
    found = len(items)
    if max_items:
        items = items[:max_items]
    out = evaluate_retrieval(model, items, batch_size, progress, workers)
    out["items"].update(listed=found + missing, found=found, missing=missing, rejected_other=other,
                        max_items=max_items)
    warnings = coverage_warnings(out["items"], f"{dataset} {split}")
    return new_result("retrieval", spec=spec, model=model, label=label, argv=argv, seed=seed,
                      data={"dataset": dataset, "root": str(Path(root)), "split": split,
                            "catalog_build_id": None, "synthetic": synthetic},
                      protocol=protocol(dataset, split), metrics=out["metrics"],
                      items=out["items"], warnings=warnings, timing=out["timing"])


def coverage_warnings(items: dict, what: str) -> list[str]:
    """Records the coverage in `items` and returns the warning when it is below MIN_COVERAGE."""
    listed, evaluated = items["listed"], items["evaluated"]
    coverage = evaluated / listed if listed else 0.0
    items.update(coverage=round(coverage, 4), min_coverage=MIN_COVERAGE)
    if coverage >= MIN_COVERAGE:
        return []
    why = [f"{items['missing']} without audio here"] if items.get("missing") else []
    if items.get("max_items"):
        why.append(f"--max-items {items['max_items']}")
    return [f"only {evaluated} of {listed} {what} clips evaluated ({coverage:.1%}"
            f"{': ' + ', '.join(why) if why else ''}), below the minimum coverage of "
            f"{MIN_COVERAGE:.0%}: each caption is ranked among {evaluated} clips, so these figures "
            f"are not comparable to published ones"]
