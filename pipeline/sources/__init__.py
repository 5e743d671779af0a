"""Dataset readers and the one registry of the datasets the builder knows (`DATASETS`).

Each reader module exposes `scan(root, splits) -> SourceScan`. Readers are imported lazily
(`DatasetSpec.reader()`), so that listing the datasets imports no reader.
"""
from __future__ import annotations

import importlib

from teminal.pipeline.sources.base import AudioError, Reject, SourceClip, SourceScan, sanitize_id
from teminal.pipeline.sources.captioned import distinct_captions
from teminal.pipeline.sources.spec import DatasetSpec

DATASETS: dict[str, DatasetSpec] = {
    "esc50": DatasetSpec(
        name="esc50", module="teminal.pipeline.sources.esc50", env_subdir="esc50",
        fallback_root="data/ESC-50-master",
        how_to_get=("Get ESC-50 from https://github.com/karolpiczak/ESC-50 (clone or unzip it "
                    "into data/ESC-50-master, or set TEMINAL_DATA=DIR holding DIR/esc50), or "
                    "write the clearly-labelled synthetic stand-in and build from it: "
                    "`pipeline synth esc50 data/esc50-synthetic` then "
                    "`pipeline build --root data/esc50-synthetic ...`."),
        split_values=int),
    # Captioned datasets: clips carry captions and no label; a pair joins two clips whose
    # captions do not already describe each other (captioned.near_duplicate). Splits are the
    # official ones (AudioCaps train/val/test; Clotho development/validation/evaluation as
    # train/val/test); --splits maps them otherwise, e.g. train=train,val;test=test.
    "audiocaps": DatasetSpec(
        name="audiocaps", module="teminal.pipeline.sources.audiocaps", env_subdir="audiocaps",
        fallback_root="data/audiocaps",
        how_to_get=("AudioCaps distributes captions only: `pipeline download audiocaps-captions "
                    "data/audiocaps` fetches them, and `pipeline download audiocaps` explains how "
                    "to obtain the audio and where to put it (clips without audio are rejected "
                    "as \"missing audio\" and the build uses the rest)."),
        compatible=distinct_captions, scan_options=("name_template",)),
    "clotho": DatasetSpec(
        name="clotho", module="teminal.pipeline.sources.clotho", env_subdir="clotho",
        fallback_root="data/clotho",
        how_to_get=("Get Clotho v2.1 (captions and audio) with `pipeline download clotho "
                    "data/clotho`, or point --root at a copy holding clotho_csv_files/ and "
                    "clotho_audio_files/<split>/."),
        compatible=distinct_captions, scan_options=("name_template",)),
}


def dataset_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


# dataset name -> module under teminal.pipeline.sources
READERS = {"esc50": "esc50", "esc50-synthetic": "esc50", "audiocaps": "audiocaps", "clotho": "clotho"}


def reader(dataset: str):
    """The reader module of `dataset` (has `scan(root, splits)`)."""
    if dataset not in READERS:
        raise ValueError(f"no reader for dataset {dataset!r}; available: {', '.join(READERS)}")
    return importlib.import_module(f"teminal.pipeline.sources.{READERS[dataset]}")


def scan(dataset: str, root, splits: dict | None = None) -> SourceScan:
    """Scan `root` with the reader of `dataset`; `splits` maps split -> the reader's units
    (ESC-50 folds; official split names for AudioCaps/Clotho)."""
    return reader(dataset).scan(root, splits)


__all__ = ["AudioError", "Reject", "SourceClip", "SourceScan", "sanitize_id", "DATASETS",
           "DatasetSpec", "dataset_spec", "READERS", "reader", "scan"]
