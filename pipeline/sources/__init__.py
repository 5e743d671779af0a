"""Dataset readers and the one registry of the datasets the project knows (`DATASETS`).

Each reader module (`esc50`, `audiocaps`, `clotho`) exposes `scan(root, splits) -> SourceScan`
and declares its `SPEC` (`teminal.pipeline.sources.spec.DatasetSpec`): layout check, split
values, pairing rule, how to obtain it and its remote files. The builder, `pipeline download`
and `evaluate retrieval` read this registry only. Adding a dataset = one module + one line here.
"""
from __future__ import annotations

from teminal.pipeline.sources import audiocaps, clotho, esc50
from teminal.pipeline.sources.base import AudioError, Reject, SourceClip, SourceScan, sanitize_id
from teminal.pipeline.sources.spec import DatasetSpec, RemoteDataset, RemoteFile

DATASETS: dict[str, DatasetSpec] = {m.SPEC.name: m.SPEC for m in (esc50, audiocaps, clotho)}


def dataset_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def retrieval_datasets() -> tuple[str, ...]:
    """The captioned datasets (their readers have retrieval_items): `evaluate retrieval`'s."""
    return tuple(name for name, spec in DATASETS.items() if spec.retrieval)


def reader(dataset: str):
    """The reader module of `dataset`, also by a name its rows carry (esc50-synthetic)."""
    for spec in DATASETS.values():
        if dataset == spec.name or dataset in spec.aliases:
            return spec.reader()
    known = sorted([*DATASETS, *(a for s in DATASETS.values() for a in s.aliases)])
    raise ValueError(f"no reader for dataset {dataset!r}; available: {', '.join(known)}")


def scan(dataset: str, root, splits: dict | None = None) -> SourceScan:
    """Scan `root` with the reader of `dataset`; `splits` maps split -> the reader's units
    (ESC-50 folds; official split names for AudioCaps/Clotho)."""
    return reader(dataset).scan(root, splits)


__all__ = ["AudioError", "Reject", "SourceClip", "SourceScan", "sanitize_id", "DATASETS",
           "DatasetSpec", "RemoteDataset", "RemoteFile", "dataset_spec", "reader",
           "retrieval_datasets", "scan"]
