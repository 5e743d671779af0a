"""Build composition shards, manifests and the catalog from a source dataset.

Phases, in one process or fanned out over `workers` spawned processes:
1. scan: the dataset reader lists clips from metadata and headers (scan rejects).
2. decode: every clip of the selected splits is decoded once, at the model's sample rate, into
   the *source pool*, a flat float32 file under OUT/.cache that every worker memory-maps. A clip
   that fails to decode becomes a reject (phase "decode") here, BEFORE pairing, so the pairs
   never depend on which worker met a bad file or when. Memory is bounded by the source pool
   (shared by all workers through the page cache), not by the number of pairs.
3. plan: per stage and split, pairs of the split's own clips (`pairing.draw_pairs`), cut into
   shards of `shard_size` groups. A shard's bytes depend only on (config, seed, shard index).
   Clips with no compatible partner in their split, and splits left with fewer than 2 clips,
   are rejects (phase "plan") and notes in the summary, not errors.
4. render: each shard renders its groups, encodes members, writes the tar atomically, then its
   manifest fragment (OUT/manifests/parts/...json). A shard whose tar and fragment both exist for
   this build id is skipped, so a killed build resumes where it stopped; `part=(i, n)` builds
   shards i, i+n, i+2n ... only, so machines can share one build.
5. catalog: once every shard of the plan is done, the fragments merge into
   OUT/manifests/{sources,samples,shards,rejects,builds}.parquet and catalog.duckdb.
   `teminal.pipeline.merge.merge_catalogs` unions finished builds into one catalog.

The build id is a hash of everything that shapes the bytes: the resolved config (not `root`,
`out`, `workers` or `part`) and the accepted sources with their content hashes.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import json
import multiprocessing as mp
import os
import re
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from teminal.pipeline.compose import (STAGE_RELATIONS, ComposeConfig, SampleRecipe, augment_json,
                                      make_group_recipes, render_detailed)
from teminal.pipeline.pairing import different_labels, draw_pairs
from teminal.pipeline.shards import remove_temporaries, shard_relpath, write_shard
from teminal.pipeline.sources.base import AudioError, Reject, SourceClip, SourceScan
from teminal.pipeline.sources.captioned import distinct_captions

PARTS_DIR = "manifests/parts"
BUILD_FILE = "build.json"
MERGE_FILE = "merge.json"     # marks an OUT that holds a merged catalog (teminal.pipeline.merge)
CACHE_DIR = ".cache"
CODECS = ("flac", "pcm")


# ---------------------------------------------------------------------------------------------
# Datasets the builder knows. A reader module exposes `scan(root, splits) -> SourceScan`.

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


# ---------------------------------------------------------------------------------------------
# Configuration

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

    def __post_init__(self):
        bad = [s for s in self.stages if s not in STAGE_RELATIONS]
        if bad or not self.stages:
            raise ValueError(f"stages {list(self.stages)}: choose from {sorted(STAGE_RELATIONS)}")
        if self.codec not in CODECS:
            raise ValueError(f"codec {self.codec!r}: choose one of {', '.join(CODECS)}")
        if self.shard_size < 1:
            raise ValueError("shard_size (groups per shard) must be at least 1")
        i, n = self.part
        if not (n >= 1 and 0 <= i < n):
            raise ValueError(f"part {i}/{n}: need 0 <= i < n")
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.groups_per_clip <= 0:
            raise ValueError("groups_per_clip must be positive")
        spec = DATASETS.get(self.dataset)
        if self.name_template and spec is not None and "name_template" not in spec.scan_options:
            takes = sorted(n for n, d in DATASETS.items() if "name_template" in d.scan_options)
            raise ValueError(f"--name-template applies to {', '.join(takes)}, not {self.dataset} "
                             "(whose file names are fixed by its metadata)")
        if self.compose.key_prefix != self.dataset:   # group keys name their dataset
            object.__setattr__(self, "compose",
                               dataclasses.replace(self.compose, key_prefix=self.dataset))

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


def parse_splits(text: str | None, value: Callable[[str], object] = str) -> dict[str, list] | None:
    """"test=5,val=4,train=1,2,3" -> {"test": [5], "val": [4], "train": [1, 2, 3]}.

    A bare value after a comma extends the split named before it; ";" separates as well."""
    if not text:
        return None
    out: dict[str, list] = {}
    current = None
    for token in re.split(r"[,;]", text):
        token = token.strip()
        if not token:
            continue
        if "=" in token:
            current, _, token = (t.strip() for t in token.partition("="))
            if not current or current in out:
                raise ValueError(f"--splits {text!r}: split name {current!r} empty or repeated")
            out[current] = []
        if current is None:
            raise ValueError(f"--splits {text!r}: expected name=value first, e.g. test=5,val=4,train=1,2,3")
        if token:
            try:
                out[current].append(value(token))
            except ValueError:
                raise ValueError(f"--splits {text!r}: bad value {token!r} for split {current!r}") from None
    return out


def parse_groups(text: str | None) -> int | dict[str, int] | None:
    """"2000" -> 2000; "train=2000,val=200,test=200" -> {...}; None/"" -> None."""
    if not text:
        return None
    text = text.strip()
    try:
        if "=" not in text:
            return int(text)
        out = {}
        for item in text.split(","):
            name, _, n = item.partition("=")
            out[name.strip()] = int(n)
        return out
    except ValueError:
        raise ValueError(f"--groups {text!r}: expected N or split=N,split=N (e.g. train=2000,val=200)") from None


def parse_part(text: str | None) -> tuple[int, int]:
    if not text:
        return (0, 1)
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m:
        raise ValueError(f"--part {text!r}: expected i/n, e.g. 0/4")
    return int(m.group(1)), int(m.group(2))


# ---------------------------------------------------------------------------------------------
# Phase 1-2: scan and the source pool

@dataclass
class SourcePool:
    """Decoded sources in one float32 file: source_id -> (offset, length) in samples."""
    path: Path
    index: dict[str, tuple[int, int]]
    digests: dict[str, str]              # source_id -> sha256 of the source file (16 hex)
    rejects: list[Reject]

    def waves(self, ids: Iterable[str]) -> dict[str, np.ndarray]:
        return _pool_waves(str(self.path), {s: self.index[s] for s in ids})


def scan_sources(config: BuildConfig) -> tuple[SourceScan, Path]:
    spec = dataset_spec(config.dataset)
    root = Path(config.root).expanduser() if config.root else spec.default_root()
    if not root.exists():
        raise FileNotFoundError(f"{config.dataset} data not found at {root}. {spec.how_to_get}")
    options = {name: getattr(config, name) for name in spec.scan_options
               if getattr(config, name) is not None}
    scan = spec.reader().scan(root, config.splits, **options)
    return scan, root


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


def decode_pool(clips: Sequence[SourceClip], sample_rate: int, out: Path, workers_pool=None,
                progress: bool = True) -> SourcePool:
    """Decode every clip once into OUT/.cache/pool-<key>.f32 (reused when the clip list, files
    and sample rate are unchanged, as after a killed build)."""
    key_text = json.dumps([sample_rate] + [(c.source_id, c.path, *_stat(c.path)) for c in clips])
    key = hashlib.sha256(key_text.encode()).hexdigest()[:16]
    cache = out / CACHE_DIR
    data_path, index_path = cache / f"pool-{key}.f32", cache / f"pool-{key}.json"
    if data_path.exists() and index_path.exists():
        saved = json.loads(index_path.read_text())
        return SourcePool(data_path, {k: tuple(v) for k, v in saved["index"].items()},
                          saved["digests"], [Reject(**r) for r in saved["rejects"]])
    cache.mkdir(parents=True, exist_ok=True)
    jobs = [(c.path, sample_rate) for c in clips]
    results = (workers_pool.imap(_decode_job, jobs, chunksize=4) if workers_pool
               else map(_decode_job, jobs))
    index, digests, rejects, offset = {}, {}, [], 0
    tmp = data_path.with_name(f"{data_path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f, _progress(len(jobs), "decode", "clip", progress) as bar:
        for clip, (wave, reason, digest) in zip(clips, results):
            bar.update(1)
            if wave is None:
                rejects.append(Reject(path=clip.path, reason=reason, dataset=clip.dataset,
                                      phase="decode"))
                continue
            f.write(wave.tobytes())
            index[clip.source_id] = (offset, len(wave))
            digests[clip.source_id] = digest
            offset += len(wave)
    os.replace(tmp, data_path)
    write_json_atomic(index_path, {"index": index, "digests": digests,
                                    "rejects": [r.to_dict() for r in rejects]})
    return SourcePool(data_path, index, digests, rejects)


def _decode_job(job: tuple[str, int]) -> tuple[np.ndarray | None, str, str]:
    from teminal.pipeline.audio import load_source

    path, sample_rate = job
    try:
        digest = _file_digest(path)
        with _one_thread():
            wave = load_source(path, sample_rate)
        return np.ascontiguousarray(wave, dtype=np.float32), "", digest
    except AudioError as e:
        return None, str(e), ""
    except (OSError, RuntimeError, ValueError) as e:  # a reader bug must not stop the build
        return None, f"undecodable: {type(e).__name__}: {' '.join(str(e).split())}", ""


_OPEN_POOLS: dict[str, np.ndarray] = {}


def _pool_waves(path: str, index: Mapping[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    pool = _OPEN_POOLS.get(path)
    if pool is None:
        pool = _OPEN_POOLS[path] = np.memmap(path, dtype=np.float32, mode="r")
    return {sid: pool[off:off + n] for sid, (off, n) in index.items()}


# ---------------------------------------------------------------------------------------------
# Phase 3: the plan

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
        return f"{PARTS_DIR}/{self.stage}/{self.split}-{self.index:06d}.json"


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


# ---------------------------------------------------------------------------------------------
# Phase 4: rendering one shard (runs in a worker or in the main process)

@dataclass(frozen=True)
class ShardContext:
    out: str
    build_id: str
    seed: int
    codec: str
    compose: dict
    pool_path: str


def build_shard(task: ShardTask, ctx: ShardContext, pool_index: Mapping[str, tuple[int, int]]) -> dict:
    """Render, encode and write one shard and its fragment; returns the `shards` row."""
    from teminal.pipeline.audio import encode_member

    compose = ComposeConfig.from_dict(ctx.compose)
    out = Path(ctx.out)
    groups, rows = [], []
    for i, (a, b) in enumerate(task.pairs):
        a, b = SourceClip.from_dict(a), SourceClip.from_dict(b)
        recipes = make_group_recipes(task.stage, task.split, task.first_group + i, a, b,
                                     compose, ctx.seed)
        waves = _pool_waves(ctx.pool_path, {s: pool_index[s] for s in (a.source_id, b.source_id)})
        members, parts = [], {}
        for recipe in recipes:
            data, ext = encode_member(_render_into(recipe, waves, parts), recipe.sample_rate,
                                      ctx.codec)
            recipe.shard, recipe.build_id = task.relpath, ctx.build_id
            recipe.sha256 = hashlib.sha256(data).hexdigest()
            members.append((f"{recipe.key}.{ext}", data))
        group_rows = [r.to_dict() for r in recipes]
        meta = {"group_key": recipes[0].group_key, "stage": task.stage, "split": task.split,
                "dataset": recipes[0].dataset, "build_id": ctx.build_id, "samples": group_rows}
        groups.append((recipes[0].group_key, meta, members))
        rows.extend(group_rows)
    written = write_shard(out / task.relpath, groups)
    shard_row = {"path": task.relpath, "stage": task.stage, "split": task.split,
                 "num_groups": written.num_groups, "num_samples": written.num_members,
                 "bytes": written.bytes, "sha256": written.sha256}
    write_json_atomic(out / task.fragment,
                       {"build_id": ctx.build_id, "shard": shard_row, "samples": rows})
    return shard_row


def _render_into(recipe: SampleRecipe, waves: Mapping[str, np.ndarray], parts: dict) -> np.ndarray:
    """Render and record in the recipe what rendering measured (gains, cuts, augmentation)."""
    r = render_detailed(recipe, waves, parts)
    recipe.gains_db, recipe.source_offsets = r.gains_db, r.source_offsets
    recipe.augment = augment_json(recipe, r.augment)
    return r.audio


def _shard_job(job: tuple[ShardTask, ShardContext, dict]) -> dict:
    with _one_thread():
        return build_shard(*job)


def shard_done(out: Path, task: ShardTask, build_id: str) -> dict | None:
    """The shard's row when its tar and fragment exist for this build (and agree), else None."""
    frag, tar = out / task.fragment, out / task.relpath
    if not (frag.exists() and tar.exists()):
        return None
    try:
        saved = json.loads(frag.read_text())
    except (OSError, ValueError):
        return None
    row = saved.get("shard") or {}
    if saved.get("build_id") != build_id or row.get("bytes") != tar.stat().st_size:
        return None
    return row


# ---------------------------------------------------------------------------------------------
# The whole build

@dataclass
class BuildSummary:
    build_id: str
    out: str
    synthetic: bool
    shards_total: int
    shards_built: int
    shards_skipped: int
    groups: int
    samples: int
    bytes: int
    rejects: dict[str, int]
    seconds: float
    catalog: str | None
    pool_bytes: int = 0            # decoded source pool: what bounds the build's memory
    rendered: int = 0              # members rendered by this run (skipped shards excluded)
    clips: int = 0                 # source clips the build uses (the `sources` table)
    notes: list[str] = field(default_factory=list)   # splits skipped, clips left unpaired

    @property
    def members_per_s(self) -> float:
        return self.rendered / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {"members_per_s": self.members_per_s}

    def format(self) -> str:
        lines = [
            f"build {self.build_id} -> {self.out}" + ("   [SYNTHETIC input]" if self.synthetic else ""),
            f"  shards   {self.shards_built} built, {self.shards_skipped} already done, "
            f"{self.shards_total} in this part",
            f"  sources  {self.clips} clips",
            f"  groups   {self.groups}   samples {self.samples}   bytes {_human_bytes(self.bytes)}"
            f"   (source pool {_human_bytes(self.pool_bytes)})",
            f"  time     {self.seconds:.1f} s   {self.members_per_s:.1f} members/s (rendered this run)",
        ]
        if self.rejects:
            lines.append("  rejects  " + ", ".join(f"{k}: {v}" for k, v in sorted(self.rejects.items())))
        else:
            lines.append("  rejects  none")
        lines.extend(f"  note     {note}" for note in self.notes)
        lines.append(f"  catalog  {self.catalog}" if self.catalog else
                     "  catalog  not written yet: other parts are unfinished; run "
                     f"`pipeline catalog {self.out}` once every part is done")
        return "\n".join(lines)


def run_build(config: BuildConfig, progress: bool = True,
              log: Callable[[str], None] = print) -> BuildSummary:
    t0 = time.perf_counter()
    out = Path(config.out)
    scan, root = scan_sources(config)
    if scan.synthetic:
        log(f"NOTE: {root} is SYNTHETIC data (procedural sounds, not {config.dataset}); every "
            "record of this build is flagged synthetic.")
    log(f"scan: {len(scan.clips)} clips, {len(scan.rejects)} rejected at scan"
        + _reject_counts(scan.rejects))
    if not scan.clips:
        raise ValueError(f"{config.dataset}: no usable clip under {root} ({len(scan.rejects)} "
                         f"rejected at scan{_reject_counts(scan.rejects)}). {spec_how_to(config)}")
    out.mkdir(parents=True, exist_ok=True)
    if config.part[1] == 1:
        # leftovers of a killed run; with --part another part may be writing right now
        remove_temporaries(out)

    with _workers(config.workers) as pool:
        sources = decode_pool(scan.clips, config.compose.sample_rate, out, pool, progress)
        decoded = [c for c in scan.clips if c.source_id in sources.index]
        accepted, unpaired, notes = pairable_clips(decoded, dataset_spec(config.dataset).compatible)
        present = {c.split for c in decoded}
        notes[:0] = [f"split {s}: no usable clip (no metadata, or every clip rejected); skipped"
                     for s in (config.splits or dataset_spec(config.dataset).default_splits)
                     if s not in present]
        for note in notes:
            log(f"NOTE: {note}")
        rejects = list(scan.rejects) + sources.rejects + unpaired
        if not accepted:
            raise ValueError(
                f"{config.dataset}: no split has 2 clips that can be paired ({len(decoded)} "
                f"decoded, {len(rejects)} rejected{_reject_counts(rejects)}). {spec_how_to(config)}")
        build_id = compute_build_id(config, accepted, sources.digests)
        _claim_out(out, build_id, config.overwrite)
        tasks = plan_shards(config, accepted)
        write_json_atomic(out / PARTS_DIR / BUILD_FILE, {
            "build_id": build_id,
            "config": config.identity() | {"root": str(Path(root).resolve())},
            "version": _version(), "synthetic": bool(scan.synthetic),
            "sources": [c.to_dict() for c in accepted],
            "rejects": [r.to_dict() for r in rejects],
            "shards": [t.relpath for t in tasks]})
        i, n = config.part
        mine = [t for t in tasks if t.order % n == i]
        done = {t.relpath: shard_done(out, t, build_id) for t in mine}
        todo = [t for t in mine if done[t.relpath] is None]
        ctx = ShardContext(str(out), build_id, config.seed, config.codec,
                           config.compose.to_dict(), str(sources.path))
        jobs = [(t, ctx, {s: sources.index[s] for pair in t.pairs for s in
                          (pair[0]["source_id"], pair[1]["source_id"])}) for t in todo]
        rows = [r for r in done.values() if r is not None]
        if len(rows):
            log(f"resume: {len(rows)} of {len(mine)} shards already done for build {build_id}")
        t_render = time.perf_counter()
        rendered = 0
        results = pool.imap_unordered(_shard_job, jobs) if pool else map(_shard_job, jobs)
        total_groups = sum(len(t.pairs) for t in todo)
        with _progress(total_groups, "render", "group", progress) as bar:
            for row in results:
                rows.append(row)
                rendered += row["num_samples"]
                bar.update(row["num_groups"])
                bar.set_postfix_str(f"{rendered / max(time.perf_counter() - t_render, 1e-9):.0f} members/s")

    catalog = None
    if all(shard_done(out, t, build_id) for t in tasks):
        catalog = str(write_build_catalog(out))
        remove_temporaries(out / "shards")
        remove_temporaries(out / "manifests")
        if not config.keep_cache:
            shutil.rmtree(out / CACHE_DIR, ignore_errors=True)
    return BuildSummary(
        build_id=build_id, out=str(out), synthetic=bool(scan.synthetic), shards_total=len(mine),
        shards_built=len(todo), shards_skipped=len(mine) - len(todo),
        groups=sum(r["num_groups"] for r in rows), samples=sum(r["num_samples"] for r in rows),
        bytes=sum(r["bytes"] for r in rows), rejects=dict(Counter(_reason_kind(r.reason) for r in rejects)),
        seconds=time.perf_counter() - t0, catalog=catalog,
        pool_bytes=4 * sum(n for _, n in sources.index.values()), rendered=rendered,
        clips=len(accepted), notes=notes)


def spec_how_to(config: BuildConfig) -> str:
    return dataset_spec(config.dataset).how_to_get


def _reject_counts(rejects: Sequence[Reject]) -> str:
    """": missing audio 120, truncated 2" (empty when there are none)."""
    counts = Counter(_reason_kind(r.reason) for r in rejects)
    return (": " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))) if counts else ""


def compute_build_id(config: BuildConfig, clips: Sequence[SourceClip], digests: Mapping[str, str]) -> str:
    sources = [(c.source_id, c.split, c.fold, c.label, list(c.captions), digests[c.source_id])
               for c in sorted(clips, key=lambda c: c.source_id)]
    text = json.dumps({"config": config.identity(), "sources": sources}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_build_catalog(out: str | os.PathLike) -> Path:
    """Merge the build's fragments into the Parquet manifests and catalog.duckdb.

    Refuses when a planned shard is missing or belongs to another build."""
    from teminal.manifests.catalog import write_catalog

    out = Path(out)
    build_file = out / PARTS_DIR / BUILD_FILE
    if not build_file.exists():
        if (out / "manifests" / MERGE_FILE).exists():
            raise FileNotFoundError(f"{out} holds a merged catalog, not a build: rerun "
                                    f"`pipeline catalog --merge OUT1 OUT2 ... --out {out}`")
        raise FileNotFoundError(f"{build_file} is missing: {out} holds no pipeline build "
                                "(run `pipeline build --out ...` first)")
    build = json.loads(build_file.read_text())
    samples, shards, missing = [], [], []
    for relpath in build["shards"]:
        stage, name = Path(relpath).parent.name, Path(relpath).stem
        frag = out / PARTS_DIR / stage / f"{name}.json"
        tar = out / relpath
        saved = json.loads(frag.read_text()) if frag.exists() else None
        if (saved is None or saved.get("build_id") != build["build_id"] or not tar.exists()
                or tar.stat().st_size != saved["shard"]["bytes"]):
            missing.append(relpath)
            continue
        shards.append(saved["shard"])
        samples.extend(saved["samples"])
    if missing:
        raise RuntimeError(
            f"build {build['build_id']} in {out} is incomplete: {len(missing)} of "
            f"{len(build['shards'])} shards missing or stale (first: {missing[0]}). Rerun "
            "`pipeline build` with the same arguments (and every --part) to finish it.")
    sources = [{k: v for k, v in s.items()} for s in build["sources"]]
    for s in sources:
        s["captions"] = list(s.get("captions") or [])
    builds = [{"build_id": build["build_id"], "config": json.dumps(build["config"], sort_keys=True),
               "version": build["version"], "synthetic": build["synthetic"]}]
    return write_catalog(out, {"sources": sources, "samples": samples, "shards": shards,
                               "rejects": build["rejects"], "builds": builds})


@dataclass
class Rerendered:
    key: str
    audio: np.ndarray
    sample_rate: int
    caption: str
    source_ids: list[str]
    expected: str        # sha256 in the samples row
    stored: str          # sha256 of the member in the shard
    actual: str          # sha256 of the re-rendered, re-encoded member

    @property
    def match(self) -> bool:
        return self.expected == self.stored == self.actual


def rerender(out: str | os.PathLike, key: str, root: str | os.PathLike | None = None) -> Rerendered:
    """Re-render one sample from its catalog row and the source files, and hash it as stored.

    `root`: the dataset folder's current location when it moved since the build (paths are
    mapped from the build's root to it)."""
    import tarfile

    from teminal.manifests.catalog import connect
    from teminal.pipeline.audio import encode_member, load_source

    out = Path(out)
    con = connect(out)
    try:
        cur = con.execute("SELECT * FROM samples WHERE key = ?", [key])
        names = [d[0] for d in cur.description]
        found = cur.fetchone()
        if found is None:
            near = [r[0] for r in con.execute(
                "SELECT key FROM samples WHERE group_key = ? OR key LIKE ? ORDER BY key LIMIT 5",
                [key, key + "%"]).fetchall()]
            hint = f"; did you mean {', '.join(near)}?" if near else " (keys look like esc50-b-test-000000.forward)"
            raise KeyError(f"no sample {key!r} in {out}{hint}")
        row = dict(zip(names, found))
        recipe = SampleRecipe.from_dict(row)
        paths = dict(con.execute(
            "SELECT source_id, path FROM sources WHERE list_contains(?, source_id)",
            [recipe.source_ids]).fetchall())
        config = json.loads(con.execute("SELECT config FROM builds WHERE build_id = ?",
                                        [recipe.build_id]).fetchone()[0])
    finally:
        con.close()
    waves = {}
    for sid in recipe.source_ids:
        path = Path(paths[sid])
        if root is not None and config.get("root"):
            path = Path(root) / path.relative_to(config["root"])
        with _one_thread():
            waves[sid] = load_source(path, recipe.sample_rate)
    audio = render_detailed(recipe, waves).audio
    data, ext = encode_member(audio, recipe.sample_rate, config.get("codec", "flac"))
    member = f"{recipe.key}.{ext}"
    with tarfile.open(out / recipe.shard, "r:") as tar:
        try:
            stored = hashlib.sha256(tar.extractfile(member).read()).hexdigest()
        except KeyError:
            raise KeyError(f"shard {recipe.shard} has no member {member}") from None
    return Rerendered(recipe.key, audio, recipe.sample_rate, recipe.caption, recipe.source_ids,
                      recipe.sha256, stored, hashlib.sha256(data).hexdigest())


def _claim_out(out: Path, build_id: str, overwrite: bool) -> None:
    """OUT holds one build. Another build's results are kept unless overwrite says otherwise."""
    build_file = out / PARTS_DIR / BUILD_FILE
    if not build_file.exists():
        return
    previous = json.loads(build_file.read_text()).get("build_id")
    if previous == build_id:
        return
    if not overwrite:
        raise FileExistsError(
            f"{out} holds build {previous}, made with other settings or sources than this one "
            f"({build_id}). Use another --out, or --overwrite to replace it.")
    for sub in ("shards", "manifests"):
        shutil.rmtree(out / sub, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Helpers

@contextlib.contextmanager
def _workers(n: int):
    """A spawn pool of n processes (None for n == 1: everything runs in this process)."""
    if n <= 1:
        yield None
        return
    ctx = mp.get_context("spawn")
    pool = ctx.Pool(n, initializer=_init_worker)
    try:
        yield pool
        pool.close()
        pool.join()
    finally:
        pool.terminate()


def _init_worker() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@contextlib.contextmanager
def _one_thread():
    """Resample with one torch thread, in workers and in the main process alike, so that the
    decoded sources do not depend on how many threads or processes a build uses."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _progress(total: int, desc: str, unit: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, dynamic_ncols=True,
                smoothing=0.1)


def write_json_atomic(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
    os.replace(tmp, path)


def _stat(path: str) -> tuple[int, int]:
    try:
        st = os.stat(path)
        return st.st_size, st.st_mtime_ns
    except OSError:
        return -1, -1


def _file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _reason_kind(reason: str) -> str:
    """"truncated: 10 of 20 frames decoded" -> "truncated" (for counting rejects by reason)."""
    return re.split(r"[:(]", reason, maxsplit=1)[0].strip() or reason


def _human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("teminal")
    except Exception:  # pragma: no cover - not installed
        return "0+unknown"
