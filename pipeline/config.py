"""The settings of a build (`BuildConfig`), how many groups each split gets, and the build id."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from teminal.manifests.shard_codec import CODECS
from teminal.manifests.vocabulary import STAGE_RELATIONS
from teminal.pipeline.compose import ComposeConfig
from teminal.pipeline.augment import check_chain
from teminal.pipeline.executors import EXECUTORS, check_workers
from teminal.pipeline.paths import safe_name
from teminal.pipeline.sources import DATASETS
from teminal.pipeline.sources.base import SourceClip


@dataclass(frozen=True)
class BuildConfig:
    out: str
    dataset: str = "esc50"
    root: str | None = None                          # None: the dataset's default location
    stages: tuple[str, ...] = ("a", "b")
    splits: Mapping[str, Sequence] | None = None     # split -> reader units (ESC-50: folds)
    groups: int | Mapping[str, int] | None = None    # see resolve_group_counts
    groups_per_clip: float = 1.0
    seed: int = 0
    shard_size: int = 100                            # groups per shard
    codec: str = "flac"
    compose: ComposeConfig = field(default_factory=ComposeConfig)
    workers: int = 1
    part: tuple[int, int] = (0, 1)
    overwrite: bool = False
    keep_cache: bool = False
    name_template: str | None = None                 # extra audio file-name form (captioned readers)
    executor: str = "local"                          # local (process pool) or ray (teminal.pipeline.executors)
    ray_address: str | None = None                   # --executor ray: a cluster; None: a local instance
    retries: int = 2                                 # extra attempts of a failing shard

    def __post_init__(self):
        bad = [s for s in self.stages if s not in STAGE_RELATIONS]
        if bad or not self.stages:
            raise ValueError(f"stages {list(self.stages)}: choose from {sorted(STAGE_RELATIONS)}")
        if self.codec not in CODECS:
            raise ValueError(f"codec {self.codec!r}: choose one of {', '.join(CODECS)}")
        if not _whole(self.shard_size, 1, 1_000_000):
            raise ValueError(f"--shard-size {self.shard_size!r}: give whole groups per shard in "
                             f"1..1000000")
        i, n = self.part
        if not (_whole(n, 1, 1_000_000) and _whole(i, 0, n - 1)):
            raise ValueError(f"--part {i}/{n}: need whole numbers with 0 <= i < n, e.g. 0/4")
        check_workers(self.workers)
        for name in self.splits or ():
            safe_name(name, "--splits", "split name")   # becomes shards/<stage>/<split>-N.tar
        if not _whole(self.seed, 0, 2**63 - 1):
            raise ValueError(f"--seed {self.seed!r}: give a whole number >= 0")
        if not (isinstance(self.groups_per_clip, (int, float)) and
                math.isfinite(self.groups_per_clip) and 0 < self.groups_per_clip <= 1000):
            raise ValueError(f"--groups-per-clip {self.groups_per_clip!r}: give a finite number "
                             f"in (0, 1000]")
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor {self.executor!r}: choose one of {', '.join(EXECUTORS)}")
        if self.ray_address and self.executor != "ray":
            raise ValueError("--ray-address applies to --executor ray only")
        if self.retries < 0:
            raise ValueError(f"--retries {self.retries!r}: give 0 or more")
        spec = DATASETS.get(self.dataset)
        self._check_groups(spec)
        if self.name_template and spec is not None and "name_template" not in spec.scan_options:
            takes = sorted(n for n, d in DATASETS.items() if "name_template" in d.scan_options)
            raise ValueError(f"--name-template applies to {', '.join(takes)}, not {self.dataset} "
                             "(whose file names are fixed by its metadata)")
        # last: the one check that may import audiomentations and run it on a test signal
        check_chain(self.compose.augment, self.compose.sample_rate)
        if self.compose.key_prefix != self.dataset:   # group keys name their dataset
            object.__setattr__(self, "compose",
                               dataclasses.replace(self.compose, key_prefix=self.dataset))

    def _check_groups(self, spec) -> None:
        """--groups: N >= 1 (train), or split=N with known split names, N >= 0, not all 0."""
        groups = self.groups
        if groups is None:
            return
        if not isinstance(groups, Mapping):
            if not _whole(groups, 1, 100_000_000):
                raise ValueError(f"--groups {groups!r}: give a whole number of groups >= 1, or "
                                 f"split=N,... (e.g. train=2000,val=200,test=200)")
            return
        known = list(self.splits) if self.splits else list(
            getattr(spec, "default_splits", None) or ())
        unknown = [k for k in groups if known and k not in known]
        if unknown:
            raise ValueError(f"--groups: unknown split name(s) {', '.join(map(repr, unknown))}; "
                             f"this build's splits are {', '.join(known)}")
        bad = [f"{k}={v!r}" for k, v in groups.items() if not _whole(v, 0, 100_000_000)]
        if bad or not groups or not any(groups.values()):
            raise ValueError(f"--groups {', '.join(bad) or groups}: each count must be a whole "
                             f"number >= 0 and at least one split must get groups")

    def identity(self) -> dict:
        """The settings that shape the output bytes (hashed into the build id)."""
        groups = dict(sorted(self.groups.items())) if isinstance(self.groups, Mapping) else self.groups
        splits = {k: list(v) for k, v in sorted(self.splits.items())} if self.splits else None
        out = {
            "dataset": self.dataset, "stages": sorted(self.stages), "splits": splits,
            "groups": groups, "groups_per_clip": self.groups_per_clip, "seed": self.seed,
            "shard_size": self.shard_size, "codec": self.codec, "compose": self.compose.to_dict(),
        }
        if self.name_template:  # only when set, so that earlier build ids stay valid
            out["name_template"] = self.name_template
        return out


def _whole(v, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def resolve_group_counts(groups: int | Mapping[str, int] | None, clip_counts: Mapping[str, int],
                         groups_per_clip: float = 1.0) -> dict[str, int]:
    """Groups per split.

    - None: round(groups_per_clip x clips) per split, so each clip sits in about
      2 x groups_per_clip groups of each stage (once as a, once as b).
    - an int N: N groups for "train" (for every split when there is no "train"), and the other
      splits scaled by their clip count relative to train.
    - a mapping {split: N}: those counts; splits it does not name follow groups_per_clip.
    A split with clips never gets 0 groups unless the mapping says so."""
    out = {}
    for split, n in clip_counts.items():
        if isinstance(groups, Mapping):
            out[split] = int(groups[split]) if split in groups else _at_least_one(groups_per_clip * n, n)
        elif groups is None:
            out[split] = _at_least_one(groups_per_clip * n, n)
        elif "train" not in clip_counts or split == "train":
            out[split] = int(groups)
        else:
            out[split] = _at_least_one(int(groups) * n / max(clip_counts["train"], 1), n)
    return out


def _at_least_one(value: float, clips: int) -> int:
    return max(int(round(value)), 1 if clips >= 2 else 0)


def compute_build_id(config: BuildConfig, clips: Sequence[SourceClip], digests: Mapping[str, str]) -> str:
    """A hash of everything that shapes the bytes: the config's identity (not `root`, `out`,
    `workers` or `part`) and the accepted sources with their content hashes."""
    sources = [(c.source_id, c.split, c.fold, c.label, list(c.captions), digests[c.source_id])
               for c in sorted(clips, key=lambda c: c.source_id)]
    text = json.dumps({"config": config.identity(), "sources": sources}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
