"""Dataset readers. Each reader module exposes `scan(root, splits) -> SourceScan`.

Readers are imported lazily: `teminal.pipeline.audio` imports `sources.base`, and the readers
import `audio`, so an eager import here would be circular.
"""
from __future__ import annotations

import importlib

from teminal.pipeline.sources.base import AudioError, Reject, SourceClip, SourceScan, sanitize_id

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


__all__ = ["AudioError", "Reject", "SourceClip", "SourceScan", "sanitize_id", "READERS", "reader",
           "scan"]
