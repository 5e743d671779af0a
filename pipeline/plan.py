"""Planning: the clips a build can use, and the shards it will write.

Per stage and split, pairs of the split's own clips (`pairing.draw_pairs`) are cut into shards
of `shard_size` groups; a shard's bytes depend only on (config, seed, shard index). Clips with
no compatible partner in their split, and splits left with fewer than 2 clips, are rejects
(phase "plan") and notes in the summary, not errors.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from teminal.pipeline.config import BuildConfig, resolve_group_counts
from teminal.pipeline.layout import fragment_relpath
from teminal.pipeline.pairing import draw_pairs
from teminal.manifests.vocabulary import shard_relpath
from teminal.pipeline.sources import dataset_spec
from teminal.pipeline.sources.base import Reject, SourceClip, SourceScan


def root_of(config: BuildConfig) -> Path:
    """The dataset folder a build reads: --root, else the dataset's default location."""
    return Path(config.root).expanduser() if config.root else dataset_spec(config.dataset).default_root()


def source_root(config: BuildConfig) -> Path:
    """The dataset folder of a build (--root, else the dataset's default); raises when it is
    missing or not laid out as the dataset, saying how to get it or which folder to use."""
    spec, root = dataset_spec(config.dataset), root_of(config)
    if not root.exists():
        raise FileNotFoundError(f"{config.dataset} data not found at {root}. {spec.how_to_get}")
    problem = spec.root_problem(root)
    if problem:
        raise FileNotFoundError(f"{problem}. {spec.how_to_get}")
    return root


def check_splits(config: BuildConfig) -> None:
    """--splits (or the default layout) against the splits and folds the data has, from its
    metadata alone, so a build refuses them before it touches OUT. A missing or misplaced
    dataset folder is left to `scan_sources` to report."""
    spec, root = dataset_spec(config.dataset), root_of(config)
    if root.exists() and spec.root_problem(root) is None:
        spec.check_splits(root, config.splits)


def scan_sources(config: BuildConfig) -> tuple[SourceScan, Path]:
    spec = dataset_spec(config.dataset)
    root = source_root(config)
    options = {name: getattr(config, name) for name in spec.scan_options
               if getattr(config, name) is not None}
    scan = spec.reader().scan(root, config.splits, **options)
    scan.clips, clashes = _without_id_clashes(scan.clips)
    scan.rejects.extend(clashes)
    return scan, root


def _without_id_clashes(clips: Sequence[SourceClip]) -> tuple[list[SourceClip], list[Reject]]:
    """Two files whose names sanitise to one source id (`a b.wav`, `a_b.wav`) cannot both be
    sources: the first by path is kept, each other one is a scan reject naming both files."""
    first: dict[str, SourceClip] = {}
    kept, rejects = [], []
    for clip in sorted(clips, key=lambda c: (c.source_id, c.path)):
        other = first.get(clip.source_id)
        if other is None:
            first[clip.source_id] = clip
            kept.append(clip)
        elif other.path == clip.path:
            rejects.append(Reject(path=clip.path, reason="duplicate entry: listed twice",
                                  dataset=clip.dataset, phase="scan"))
        else:
            rejects.append(Reject(
                path=clip.path, reason=f"source id clash: {clip.path} and {other.path} both map "
                                       f"to id {clip.source_id!r}; rename one of them",
                dataset=clip.dataset, phase="scan"))
    order = {id(c): i for i, c in enumerate(clips)}
    return sorted(kept, key=lambda c: order[id(c)]), rejects


def pairable_clips(clips: Sequence[SourceClip], compatible: Callable[[SourceClip, SourceClip], bool]
                   ) -> tuple[list[SourceClip], list[Reject], list[str]]:
    """The clips that can be paired within their split, the rejects (phase "plan") of those
    that cannot, and one note per split left out.

    A clip is dropped when no other clip of its split is compatible with it (one class only, or
    captions that near-duplicate every other clip's); a split with fewer than 2 clips left is
    skipped whole, so one small split (Clotho v1 has no validation; local AudioCaps copies miss
    audio) does not stop the build. The rules are symmetric, so one pass suffices."""
    by_split: dict[str, list[SourceClip]] = {}
    for clip in clips:
        by_split.setdefault(clip.split, []).append(clip)
    keep: set[str] = set()
    rejects: list[Reject] = []
    notes: list[str] = []
    for split, members in sorted(by_split.items()):
        ordered = sorted(members, key=lambda c: c.source_id)
        n = len(ordered)
        # partners are searched from the clip's neighbours on: the first few almost always fit
        alone = [c for i, c in enumerate(ordered)
                 if not any(compatible(c, ordered[(i + k) % n]) for k in range(1, n))]
        left = n - len(alone)
        if left < 2:
            notes.append(f"split {split}: {n} usable clip(s), a pair needs 2; skipped" if n < 2 else
                         f"split {split}: only {left} of {n} clips have a compatible partner; skipped")
            reason = f"unpaired: split {split} has fewer than 2 pairable clips"
            rejects.extend(Reject(c.path, reason, c.dataset, "plan") for c in ordered)
            continue
        for c in alone:
            rejects.append(Reject(c.path, f"unpaired: no other clip of split {split} is "
                                  "compatible (same class, or near-duplicate captions)",
                                  c.dataset, "plan"))
        if alone:
            notes.append(f"split {split}: {len(alone)} clip(s) without a compatible partner left out")
        lonely = {c.source_id for c in alone}
        keep.update(c.source_id for c in ordered if c.source_id not in lonely)
    return [c for c in clips if c.source_id in keep], rejects, notes


@dataclass(frozen=True)
class ShardTask:
    """One unit of work: a shard and everything needed to render it in any process."""
    order: int                                 # position in the full plan (for --part)
    stage: str
    split: str
    index: int                                 # shard number within (stage, split)
    first_group: int                           # group index of the shard's first group
    pairs: tuple[tuple[dict, dict], ...]       # (clip a, clip b) as SourceClip dicts
    relpath: str

    @property
    def fragment(self) -> str:
        return fragment_relpath(self.stage, self.split, self.index)


def plan_shards(config: BuildConfig, clips: Sequence[SourceClip]) -> list[ShardTask]:
    spec = dataset_spec(config.dataset)
    by_split: dict[str, list[SourceClip]] = {}
    for clip in clips:
        by_split.setdefault(clip.split, []).append(clip)
    counts = resolve_group_counts(config.groups, {s: len(c) for s, c in sorted(by_split.items())},
                                  config.groups_per_clip)
    tasks: list[ShardTask] = []
    for stage in sorted(config.stages):
        for split in sorted(by_split):
            pairs = draw_pairs(by_split[split], counts[split], config.seed, key=f"{stage}/{split}",
                               compatible=spec.compatible)
            for index, start in enumerate(range(0, len(pairs), config.shard_size)):
                chunk = pairs[start:start + config.shard_size]
                tasks.append(ShardTask(
                    order=len(tasks), stage=stage, split=split, index=index, first_group=start,
                    pairs=tuple((a.to_dict(), b.to_dict()) for a, b in chunk),
                    relpath=shard_relpath(stage, split, index)))
    return tasks
