"""What the project needs to know about a dataset, declared once, by its reader module.

Each `teminal.pipeline.sources.<dataset>` module declares `SPEC = DatasetSpec(...)` beside its
`scan`; `teminal.pipeline.sources.DATASETS` collects them. The builder (default root, layout
check, split values, pairing rule), `pipeline download` (remote files, checksums) and
`evaluate retrieval` (captioned test items) all read the spec, so adding a dataset is one module.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from teminal.pipeline.sources.base import SourceClip, different_labels


@dataclass(frozen=True)
class RemoteFile:
    name: str                  # file name on the server and in DEST/.downloads
    url: str
    target: str                # "file": its path under DEST; "zip"/"7z": folder under DEST
    kind: str = "file"         # "file" | "zip" | "7z"
    md5: str | None = None
    sha256: str | None = None
    header: str | None = None  # a CSV's expected first line (catches an HTML error page)


@dataclass(frozen=True)
class RemoteDataset:
    """The files `pipeline download NAME` fetches (generic code: teminal.pipeline.download)."""
    name: str
    files: tuple[RemoteFile, ...]


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    module: str                          # reader module with scan(root, splits) (and SPEC)
    env_subdir: str                      # default root: $TEMINAL_DATA/<env_subdir>
    fallback_root: str                   # default root without $TEMINAL_DATA (relative to cwd)
    how_to_get: str
    # layout check: why `root` is not this dataset's folder (None when it looks right)
    layout_problem: Callable[[Path], str | None] = lambda root: None
    compatible: Callable[[SourceClip, SourceClip], bool] = different_labels
    split_values: Callable[[str], object] = str   # parses one value of --splits (fold -> int)
    # (root, --splits or None) -> None; raises ValueError on a split or unit the data lacks,
    # reading metadata only, so a build refuses it before any work
    check_splits: Callable[[Path, object], None] = lambda root, splits: None
    scan_options: tuple[str, ...] = ()            # BuildConfig fields passed to scan() by name
    default_splits: tuple[str, ...] = ("train", "val", "test")   # what a build without --splits makes
    aliases: tuple[str, ...] = ()        # other `dataset` values its rows carry (esc50-synthetic)
    remote: RemoteDataset | None = None  # what `pipeline download <remote.name>` fetches
    # datasets that cannot be fetched in bulk: `pipeline download <name> [DEST]` prints this
    manual_download: Callable[[object], str] | None = None
    retrieval: bool = False              # captioned: the reader has retrieval_items(scan, split)

    def default_root(self) -> Path:
        base = os.environ.get("TEMINAL_DATA")
        return Path(base) / self.env_subdir if base else Path(self.fallback_root)

    def reader(self):
        return importlib.import_module(self.module)

    def root_problem(self, root: Path) -> str | None:
        """`layout_problem`, plus the child folder to use when `root` holds the dataset one
        level down (the folder an archive or a clone made inside it)."""
        problem = self.layout_problem(root)
        if problem is None or not root.is_dir():
            return problem
        inside = sorted(c for c in root.iterdir() if c.is_dir() and self.layout_problem(c) is None)
        if inside:
            problem += f"; {inside[0]} is one: pass --root {inside[0]}"
        return problem
