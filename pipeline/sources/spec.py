"""What the builder needs to know about a dataset, declared once per dataset."""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from teminal.pipeline.sources.base import SourceClip, different_labels


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    module: str                          # reader module with scan(root, splits)
    env_subdir: str                      # default root: $TEMINAL_DATA/<env_subdir>
    fallback_root: str                   # default root without $TEMINAL_DATA (relative to cwd)
    how_to_get: str
    compatible: Callable[[SourceClip, SourceClip], bool] = different_labels
    split_values: Callable[[str], object] = str   # parses one value of --splits (fold -> int)
    scan_options: tuple[str, ...] = ()            # BuildConfig fields passed to scan() by name
    default_splits: tuple[str, ...] = ("train", "val", "test")   # what a build without --splits makes

    def default_root(self) -> Path:
        base = os.environ.get("TEMINAL_DATA")
        return Path(base) / self.env_subdir if base else Path(self.fallback_root)

    def reader(self):
        return importlib.import_module(self.module)
