"""Whole groups streamed from the pipeline's shards, in an order fixed by (seed, epoch, rank, worker).

A batch is N whole groups laid out in blocks, one block per relation: for stage B
[forward x N; reversed x N; overlay x N], so the losses see the block structure they expect.

The order of the stream is a pure function of the shard index, the seed, the number of ranks
and of loader workers ("slots"):

- every epoch the shard list is shuffled with ``webdataset.detshuffle`` seeded by (seed, epoch),
  the same on every rank;
- the shuffled list is split like ``split_by_node`` then ``split_by_worker`` (every world-th
  shard from the rank's offset, then every workers-th from the worker's). With fewer non-empty
  shards than slots the split falls back to groups: every slot reads all shards and keeps every
  slots-th group, so no slot is ever empty (an empty slot would hang the loader);
- inside a slot each epoch's groups go through a buffered ``detshuffle`` seeded by
  (seed, slot, epoch) on their raw bytes, before decoding.

Each slot's stream is endless (epoch after epoch), so every rank can take exactly the same
number of batches: the trainer decides how many, and uneven ranks cannot deadlock DDP. Because
the per-epoch group count of every slot is known from the index, a resumed run skips whole
epochs by arithmetic and the rest of one epoch by counting raw groups, without decoding them:
a stream cannot be rewound, but it can be replayed exactly.

The DataLoader asks its workers for batches round-robin and returns them in that order, so
rank batch k is batch k // W of worker k % W; ``skip_batches`` uses exactly that (and rotates
the workers' roles so the resumed loader's first request lands on the right one).
"""
from __future__ import annotations

import functools
import json
import logging
import random
import tarfile
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from teminal.manifests.catalog import Catalog, ShardContents, ShardRow, selection_digest
from teminal.manifests.shard_codec import (EXTENSIONS, CorruptShard, check_group_build,
                                           check_member, decode_member, repair_hint)
from teminal.manifests.vocabulary import (CLASS_PROMPT, catalog_path, commands_text, label_text,
                                          member_name, parse_member_name, remake_commands,
                                          sample_key)

log = logging.getLogger(__name__)

# A caption policy picks the text of one member: (rows of the group, relation, rng) -> str.
CaptionFn = Callable[[list, str, random.Random], str]
# A positive key names what a member's text means: rows with equal keys are positives of each
# other in the loss (teminal.train.losses, "Duplicate texts"). (rows, relation, text) -> str.
KeyFn = Callable[[list, str, str], str]


# Shards and their groups

@dataclass(frozen=True)
class CatalogShard:
    """A shard as the catalog lists it: its `shards` row and what its `samples` rows say it
    holds (groups, each member's sha256, the build that wrote it)."""
    row: ShardRow
    contents: ShardContents


def catalog_shards(data_dir, stage: str, split: str) -> list[CatalogShard]:
    """The catalog's shards of (stage, split), in path order, with what each holds."""
    try:
        with Catalog.open(data_dir) as catalog:
            rows = catalog.shards(stage, split)
            contents = catalog.shard_contents(stage, split)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{e}. Training reads its shard list from the catalog") from None
    if not rows:
        from teminal.pipeline.build_options import add_stage_hint

        raise FileNotFoundError(f"the catalog of {data_dir} lists no {stage}/{split} shards; "
                                f"build them first: {add_stage_hint(data_dir, stage)}")
    empty = ShardContents(frozenset(), {}, None)
    return [CatalogShard(r, contents.get(r.path, empty)) for r in rows]


def scan_shard(path: str | Path) -> list[str]:
    """Group keys of a shard in stored order, from the tar headers only (no member is read)."""
    keys: list[str] = []
    with tarfile.open(path, mode="r:") as tar:
        for info in tar:
            if info.isfile():
                key = parse_member_name(info.name).group_key
                if not keys or keys[-1] != key:
                    keys.append(key)
    return keys


def _shard_problem(path: Path, shard: CatalogShard) -> tuple[str | None, list[str]]:
    """(what is wrong with a catalog shard or None, its group keys in stored order)."""
    if not path.is_file():
        return "missing", []
    size = path.stat().st_size
    if shard.row.bytes is not None and size != shard.row.bytes:
        return f"{size} bytes, the catalog says {shard.row.bytes} (truncated or replaced)", []
    try:
        keys = scan_shard(path)
    except (tarfile.TarError, OSError) as e:
        return f"unreadable tar ({e})", []
    if set(keys) != shard.contents.groups:
        return (f"holds {len(keys)} groups, the catalog {len(shard.contents.groups)} (the shard "
                f"and the catalog come from different builds)"), []
    return None, keys


@dataclass(frozen=True)
class ShardIndex:
    """The shards a run reads and, per shard, the selected group keys in stored order and what
    the catalog says the shard holds (each member is checked against it as it is decoded);
    `skipped` lists catalog shards left out with skip_missing, `skipped_groups` their groups;
    `catalog_sha256` digests the catalog's (path, sha256) rows of the stage and split: another
    build under the same path (another seed, the same keys) has another digest."""
    shards: tuple[str, ...]
    groups: tuple[tuple[str, ...], ...]
    skipped: tuple[str, ...] = ()
    skipped_groups: int = 0
    catalog_sha256: str = ""
    contents: tuple[ShardContents, ...] = field(default=(), compare=False, repr=False)

    @property
    def num_groups(self) -> int:
        return sum(len(g) for g in self.groups)

    def digest(self) -> str:
        """sha256 of the selected group keys (sorted): equal selections, equal digests."""
        return selection_digest(k for g in self.groups for k in g)

    def expected(self) -> dict[str, ShardContents]:
        """shard path -> what the catalog says it holds."""
        return dict(zip(self.shards, self.contents))

    @classmethod
    def build(cls, data_dir, stage: str, split: str = "train", keep: set[str] | None = None,
              skip_missing: bool = False) -> "ShardIndex":
        """Index the catalog's shards of (stage, split); `keep` restricts to those group keys.

        A catalog shard that is missing, of the wrong size, unreadable or holding other groups
        stops the run with a message naming every such shard, unless `skip_missing`: then the
        run trains on the rest and the index counts what it left out."""
        shards, groups, contents, seen, problems, lost = [], [], [], 0, [], 0
        listed = catalog_shards(data_dir, stage, split)
        for shard in listed:
            path = Path(data_dir) / shard.row.path
            problem, keys = _shard_problem(path, shard)
            if problem:
                problems.append(f"{path}: {problem}")
                held = shard.contents.groups
                lost += len(held if keep is None else held & keep)
                continue
            seen += len(keys)
            if keep is not None:
                keys = [k for k in keys if k in keep]
            if keys:  # a shard with nothing selected is never opened
                shards.append(str(path))
                groups.append(tuple(keys))
                contents.append(shard.contents)
        if problems and not skip_missing:
            raise FileNotFoundError(
                f"{len(problems)} shard(s) of the catalog of {data_dir} cannot be read:\n  "
                + "\n  ".join(problems) + f"\n{repair_hint(Path(data_dir) / listed[0].row.path)}, "
                "or pass --skip-missing-shards to train on the rest (the count goes to the "
                "metrics and the summary)")
        if problems:
            log.warning("--skip-missing-shards: leaving out %d shard(s) (%d groups): %s",
                        len(problems), lost, "; ".join(problems))
        index = cls(tuple(shards), tuple(groups), tuple(problems), lost,
                    _rows_digest([s.row for s in listed]), tuple(contents))
        if index.num_groups == 0:
            raise ValueError(f"no groups to train on in the {stage}/{split} shards of "
                             f"{data_dir} ({seen} groups before selection)")
        return index


def _rows_digest(rows: list[ShardRow]) -> str:
    import hashlib

    text = "\n".join(f"{r.path} {r.sha256 or ''}" for r in rows)
    return hashlib.sha256(text.encode()).hexdigest()


# Selection over the catalog

def select_group_keys(data_dir, stage: str, split: str = "train", where: str | None = None,
                      query: str | None = None) -> set[str] | None:
    """Group keys chosen by SQL over the catalog, or None when nothing restricts the set.

    `where` is a predicate on `samples` rows; a group is kept when every one of its rows matches
    (see `teminal.manifests.catalog.select_group_keys`). `query` is a whole query whose
    `group_key` column (or first column) lists the groups; both given: the intersection."""
    if not where and query is None:
        return None
    path = catalog_path(data_dir)
    if not path.exists():
        remake = remake_commands(data_dir)
        raise FileNotFoundError(f"--where/--query-file need the catalog {path}; "
                                + (f"{commands_text(remake)} writes it" if remake else
                                   "give --data the folder a pipeline build wrote"))
    with Catalog.open(data_dir) as catalog:
        keys = catalog.select_group_keys(split, where, query, stage=stage)
    if not keys:
        raise ValueError(f"the selection (where={where!r}, query={query!r}) matches no "
                         f"{stage}/{split} group in {path}")
    return keys


def catalog_builds(data_dir) -> list[dict]:
    """build_id and synthetic flag of every build in the catalog (empty without a catalog)."""
    if not catalog_path(data_dir).exists():
        return []
    with Catalog.open(data_dir) as catalog:
        return [{"build_id": b.build_id, "synthetic": b.synthetic} for b in catalog.builds()]


def member_samples(data_dir, stage: str, split: str) -> int:
    """The length of the longest member of (stage, split) in samples (0 when unknown)."""
    try:
        with Catalog.open(data_dir) as catalog:
            return catalog.longest_member(stage, split)
    except FileNotFoundError:
        return 0


# The plan: which groups each slot reads in each epoch

def shuffled_shards(shards: Sequence[str], seed: int, epoch: int) -> list[str]:
    """The epoch's shard order, identical on every rank and worker."""
    stage = wds.detshuffle(bufsize=len(shards), initial=len(shards), seed=seed, epoch=epoch - 1)
    return list(stage.run(iter(shards)))


@dataclass(frozen=True)
class StreamPlan:
    index: ShardIndex
    seed: int = 0
    rank: int = 0
    world: int = 1
    workers: int = 1  # loader workers per rank; 0 and 1 both mean one slot

    def __post_init__(self):
        if self.index.num_groups < self.slots:
            raise ValueError(f"{self.index.num_groups} groups cannot feed {self.world} rank(s) x "
                             f"{max(1, self.workers)} loader worker(s): every worker needs at "
                             f"least one group; use fewer --num-workers or more data")

    @property
    def slots(self) -> int:
        return self.world * max(1, self.workers)

    @property
    def by_shard(self) -> bool:
        return len(self.index.shards) >= self.slots

    def epoch_plan(self, worker: int, epoch: int) -> list[tuple[str, tuple[str, ...]]]:
        """[(shard, group keys this slot keeps from it)] in reading order."""
        groups = dict(zip(self.index.shards, self.index.groups))
        order = shuffled_shards(self.index.shards, self.seed, epoch)
        workers = max(1, self.workers)
        if self.by_shard:  # split_by_node, then split_by_worker
            mine = islice(islice(order, self.rank, None, self.world), worker, None, workers)
            return [(s, groups[s]) for s in mine]
        slot, plan, pos = self.rank + self.world * worker, [], 0
        for s in order:  # every slots-th group of the epoch, counted across shards
            keys = tuple(k for i, k in enumerate(groups[s], pos) if i % self.slots == slot)
            pos += len(groups[s])
            if keys:
                plan.append((s, keys))
        return plan

    def epoch_count(self, worker: int, epoch: int) -> int:
        return sum(len(k) for _, k in self.epoch_plan(worker, epoch))

    def slot_seed(self, worker: int) -> int:
        # Spaced so that detshuffle's seed + epoch never collides between slots.
        return self.seed * 1_000_003 + (self.rank * max(1, self.workers) + worker) * 1_000_000_007


def worker_skip(batches: int, worker: int, workers: int) -> int:
    """How many of the rank's first `batches` batches came from `worker` (round-robin)."""
    workers = max(1, workers)
    return max(0, (batches - worker + workers - 1) // workers)


# The stream

@dataclass
class GroupStream(IterableDataset):
    """Endless stream of batches of N whole groups for one rank; see the module docstring."""
    plan: StreamPlan
    relations: tuple[str, ...]
    groups_per_batch: int
    caption: CaptionFn
    skip_batches: int = 0  # batches this rank consumed before (resume)
    shuffle_buffer: int = 64
    sample_rate: int | None = None  # expected rate; None: take it from the shards
    caption_seed: int = 0             # seeds per-group caption choices (with epoch and key)
    positive_key: KeyFn | None = None  # None: the text itself (identical captions are positives)
    replay: str | None = None  # a relation whose first half is replayed as a single clip
    _contents: dict | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        super().__init__()

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        if workers != max(1, self.plan.workers):
            raise RuntimeError(f"GroupStream planned for {self.plan.workers} workers runs in "
                               f"{workers}; build the plan with the loader's num_workers")
        # The loader's first request goes to worker 0, but the rank's next batch belongs to
        # worker skip_batches % W of the unbroken run: rotate the roles to match.
        worker = (worker + self.skip_batches) % workers
        skip = worker_skip(self.skip_batches, worker, workers) * self.groups_per_batch
        batch = []
        for raw in self._raw_groups(worker, skip):
            batch.append(self._decode(raw))
            if len(batch) == self.groups_per_batch:
                yield self._collate(batch)
                batch = []

    def _raw_groups(self, worker: int, skip: int) -> Iterator[dict]:
        epoch = 0
        while True:
            count = self.plan.epoch_count(worker, epoch)
            if skip >= count:  # skip a whole epoch without reading it
                skip -= count
                epoch += 1
                continue
            for raw in islice(self._epoch_groups(worker, epoch), skip, None):
                yield raw
            skip = 0
            epoch += 1

    def _epoch_groups(self, worker: int, epoch: int) -> Iterator[dict]:
        plan = self.plan.epoch_plan(worker, epoch)
        wanted = {k for _, keys in plan for k in keys}
        urls = iter([{"url": s} for s, _ in plan])
        raw = (s for s in wds.tarfile_samples(urls, handler=functools.partial(
                   _shard_error, plan[0][0] if plan else None))
               if s["__key__"] in wanted)
        shuffle = wds.detshuffle(bufsize=self.shuffle_buffer, initial=self.shuffle_buffer,
                                 seed=self.plan.slot_seed(worker), epoch=epoch - 1)
        for sample in shuffle.run(raw):
            sample["__epoch__"] = epoch
            yield sample

    def _decode(self, raw: dict) -> dict:
        meta = json.loads(raw["json"])
        rows = meta["samples"] if isinstance(meta, dict) else meta
        key, shard = raw["__key__"], raw["__url__"]
        # checked against the catalog, not the group's own JSON: a shard replaced whole (another
        # build, the same keys) brings a JSON that agrees with its own bytes
        expected = self._expected().get(shard)
        if expected is None:   # an index made by hand, not from the catalog
            raise CorruptShard(f"{shard}: the stream's index holds no catalog contents for it; "
                               f"build the index with ShardIndex.build(data_dir, stage, split)")
        check_group_build(meta, expected.build_id, shard)
        rng = random.Random(f"{self.caption_seed}:{raw['__epoch__']}:{key}")
        waves, texts, keys, rate = [], [], [], None
        for relation in self.relations:
            ext = next((e for e in EXTENSIONS if f"{relation}.{e}" in raw), None)
            if ext is None:
                raise KeyError(f"group {key} in {shard} has no {relation!r} member "
                               f"(members: {sorted(k for k in raw if not k.startswith('__'))})")
            row = next((r for r in rows if r.get("relation") == relation), {})
            data, name = raw[f"{relation}.{ext}"], member_name(key, relation, ext)
            check_member(data, expected.digests.get(sample_key(key, relation)), name, shard)
            wave, sr = decode_member(data, ext, f"{name} in {shard}", shard)
            rate = sr or row.get("sample_rate") or rate
            waves.append(wave)
            texts.append(self.caption(rows, relation, rng))
            keys.append(self.positive_key(rows, relation, texts[-1]) if self.positive_key
                        else texts[-1])
        if self.replay:
            wave, text = replay_single(waves[self.relations.index(self.replay)],
                                       _row(rows, self.replay))
            waves.append(wave)
            texts.append(text)
            keys.append(text)
        return {"key": key, "waves": waves, "texts": texts, "keys": keys, "sample_rate": rate,
                "epoch": raw["__epoch__"]}

    def _expected(self) -> dict[str, ShardContents]:
        if self._contents is None:   # built once per worker, from the plan it was given
            self._contents = self.plan.index.expected()
        return self._contents

    def _collate(self, groups: list[dict]) -> dict:
        rates = {g["sample_rate"] for g in groups}
        if len(rates) != 1 or None in rates:
            raise ValueError(f"groups {[g['key'] for g in groups]} mix or lack sample rates "
                             f"{sorted(map(str, rates))}")
        rate = rates.pop()
        if self.sample_rate and rate != self.sample_rate:
            raise ValueError(f"shards hold {rate} Hz audio, this run expects {self.sample_rate}")
        # Block layout: relation-major, so rows [r*N, (r+1)*N) are relation r of groups 0..N-1
        # (a replayed single, if any, is one more block at the end).
        blocks = range(len(groups[0]["waves"]))
        waves = [g["waves"][r] for r in blocks for g in groups]
        length = max(len(w) for w in waves)
        audio = np.zeros((len(waves), length), dtype=np.float32)
        for i, w in enumerate(waves):
            audio[i, :len(w)] = w
        texts = [g["texts"][r] for r in blocks for g in groups]
        from teminal.train.losses import positive_ids

        return {"audio": torch.from_numpy(audio), "texts": texts,
                "positive_ids": positive_ids([g["keys"][r] for r in blocks for g in groups]),
                "keys": [g["key"] for g in groups], "sample_rate": rate,
                "epoch": groups[0]["epoch"]}


def _shard_error(shard, exn: Exception) -> bool:
    """webdataset's handler: a tar that breaks mid-read is one message naming the shard, with
    the commands that repair the build folder of `shard` (one of the shards read)."""
    raise CorruptShard(f"reading a shard failed ({' '.join(str(a) for a in exn.args)}); the "
                       f"shard is corrupt: {repair_hint(shard)}") from None


def _worker_init(_worker_id: int) -> None:
    # Decoding is single-threaded work; torch's intra-op threads only fight the trainer.
    torch.set_num_threads(1)


def make_loader(stream: GroupStream, prefetch: int = 2, pin_memory: bool = False) -> DataLoader:
    """A DataLoader that decodes in `stream.plan.workers` worker processes.

    The loader has its own generator so creating it never draws from the global torch RNG
    (which the checkpoint restores): a resumed run sees the same dropout as an unbroken one."""
    workers = stream.plan.workers
    return DataLoader(stream, batch_size=None, num_workers=workers,
                      worker_init_fn=_worker_init if workers else None,
                      prefetch_factor=prefetch if workers else None,
                      generator=torch.Generator().manual_seed(stream.plan.seed),
                      pin_memory=pin_memory, persistent_workers=False)


# Caption policies (top-level functions so loader workers can pickle them)

def canonical_caption(rows: list, relation: str, rng: random.Random) -> str:
    """The member's canonical caption (the paper's wording for the `paper` template set)."""
    return _row(rows, relation)["caption"]


def class_label_key(rows: list, relation: str, text: str) -> str:
    """Positive key of a single clip: its class, so "siren", "This is a sound of siren." and
    "Single sound of siren" of different siren clips are all positives of each other."""
    row = _row(rows, relation)
    return "label:" + (label_text(row["labels"][0]) if row.get("labels") else text)


def replay_single(concatenation: np.ndarray, row: dict) -> tuple[np.ndarray, str]:
    """The first sound of a concatenation (its slot as the recipe planned it: half the clip
    at the paper's midpoint, anywhere with `--junction`), repeat-padded to the full length as
    the pipeline pads singles, with its class prompt. Stage B replays these so post-training
    keeps the single-sound skill."""
    from teminal.pipeline.audio import fit_to_length
    from teminal.pipeline.compose import SampleRecipe, part_slots

    start, end = part_slots(SampleRecipe.from_dict(row))[0]
    wave = fit_to_length(concatenation[start:end], len(concatenation), "repeat")
    label = label_text(row["labels"][0]) if row.get("labels") else row["caption"]
    return wave, CLASS_PROMPT.format(label=label)


def class_prompt_mix(rows: list, relation: str, rng: random.Random) -> str:
    """Pretraining text for a single clip: one of "This is a sound of {label}.", the bare label,
    or the stage-A caption ("Single sound of {label}"), uniformly, seeded per group and epoch.
    The prompt is the zero-shot prompt, so pretraining teaches the classes the way they are
    asked for; the other two keep the text tower from keying on one phrasing."""
    row = _row(rows, relation)
    label = label_text(row["labels"][0]) if row.get("labels") else row["caption"]
    return rng.choice([CLASS_PROMPT.format(label=label), label, row["caption"]])


@dataclass(frozen=True)
class TemplateCaption:
    """A caption drawn from the member's renderings whose template id starts with one of
    `prefixes` (for example ("paper.", "ext.before")), so templates can be held out."""
    prefixes: tuple[str, ...]

    def __call__(self, rows: list, relation: str, rng: random.Random) -> str:
        row = _row(rows, relation)
        pairs = [(c, t) for c, t in zip(row.get("captions") or [], row.get("template_ids") or [])
                 if t.startswith(self.prefixes)]
        if not pairs:
            raise ValueError(f"{row.get('key')}: no caption with a template id starting with "
                             f"{self.prefixes}; it has {row.get('template_ids')}")
        return rng.choice(pairs)[0]


def _row(rows: list, relation: str) -> dict:
    for r in rows:
        if r.get("relation") == relation:
            return r
    raise KeyError(f"no {relation!r} row in the group's JSON (relations: "
                   f"{[r.get('relation') for r in rows]})")
