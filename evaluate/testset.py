"""The ZSTE test set of a built catalog, and what a model's training catalog saw.

- Pair groups (forward / reversed / overlay of one pair a, b) come from the stage-B shards of
  the test split, exactly as built (`teminal.pipeline.shards.iter_groups`).
- Single sounds are the test split's source clips, each once, rendered by the pipeline's own
  `render` as a `single` recipe without augmentation (same fitting, loudness and limiter as
  every stage-A single), so task 1 neither repeats a clip nor depends on stage-A pairing.
- The class vocabulary is every label of the catalog's `sources` table (10 classes for the
  synthetic set, 50 for ESC-50); groups whose labels fall outside it (captioned datasets) are
  skipped and counted.
"""
from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np

RELATIONS = ("forward", "reversed", "overlay")


@dataclass(frozen=True)
class SingleItem:
    key: str          # source id
    label: str


@dataclass(frozen=True)
class PairGroup:
    group_key: str
    a: str            # label of the event that comes first in the forward member
    b: str

    @property
    def pair(self) -> frozenset[str]:
        return frozenset((self.a, self.b))


def _connect(out: Path):
    from teminal.manifests.catalog import connect

    return connect(out, read_only=True)


@contextlib.contextmanager
def _catalog(out: Path):
    """A read-only connection to OUT's catalog; a damaged file (truncated, overwritten) is one
    ValueError naming it and the fix, not DuckDB's traceback."""
    import duckdb

    con = None
    try:
        con = _connect(out)
        yield con
    except duckdb.Error as e:
        raise ValueError(f"{out / 'manifests' / 'catalog.duckdb'} cannot be read "
                         f"({' '.join(str(e).split())[:200]}): the catalog is damaged; rewrite "
                         f"it with `pipeline catalog {out}` or rerun the build") from None
    finally:
        if con is not None:
            con.close()


def _shard_members(shards) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(key, members) of every group of the shards; a tar that breaks mid-read (truncated) is
    CorruptShard naming the shard."""
    import tarfile

    from teminal.pipeline.shards import CorruptShard, iter_members

    for shard in shards:
        try:
            yield from iter_members([shard])
        except (tarfile.TarError, EOFError) as e:
            raise CorruptShard(f"{shard}: unreadable shard ({e}); `pipeline verify OUT` lists "
                               f"every damaged shard; rerunning the same `pipeline build` "
                               f"re-creates them") from None


def _rows(con, sql: str, params=()) -> list[dict]:
    from teminal.manifests.catalog import fetch_dicts

    return fetch_dicts(con, sql, params)


@dataclass
class CatalogInfo:
    """Provenance of a catalog: the build id(s) of its rows and the synthetic flag."""
    path: str
    build_ids: list[str]
    synthetic: bool
    config: dict = field(default_factory=dict)

    @property
    def build_id(self) -> str | None:
        return ",".join(self.build_ids) if self.build_ids else None

    def to_dict(self) -> dict:
        return {"path": self.path, "build_id": self.build_id, "synthetic": self.synthetic}


def catalog_info(con, out: Path, split: str | None = None) -> CatalogInfo:
    where, params = ("WHERE split = ?", [split]) if split else ("", [])
    ids = [r["build_id"] for r in _rows(
        con, f"SELECT DISTINCT build_id FROM samples {where} ORDER BY build_id", params)
        if r["build_id"]]
    builds = _rows(con, "SELECT build_id, config, synthetic FROM builds ORDER BY build_id")
    if not ids:
        ids = [b["build_id"] for b in builds]
    used = [b for b in builds if b["build_id"] in ids] or builds
    config = {}
    if used and used[-1].get("config"):
        try:
            config = json.loads(used[-1]["config"])
        except (TypeError, ValueError):
            config = {}
    return CatalogInfo(str(out), ids, any(bool(b["synthetic"]) for b in used), config)


class CatalogTestSet:
    """Test-split items of OUT (a `pipeline build` folder) for the ZSTE tasks."""

    def __init__(self, out, split: str = "test", max_items: int | None = None):
        self.out = Path(out)
        self.split = split
        self.max_items = max_items
        with _catalog(self.out) as con:
            self.info = catalog_info(con, self.out, split)
            self.datasets = [r["dataset"] for r in _rows(
                con, "SELECT DISTINCT dataset FROM sources ORDER BY dataset")]
            self.vocabulary = [r["label"] for r in _rows(
                con, "SELECT DISTINCT label FROM sources WHERE label IS NOT NULL ORDER BY label")]
            self._sources = _rows(
                con, "SELECT source_id, path, label FROM sources WHERE split = ? AND label IS NOT "
                     "NULL ORDER BY source_id", [split])
            shard_rows = _rows(con, "SELECT path FROM shards WHERE stage = 'b' AND split = ? "
                                    "ORDER BY path", [split])
            stage_b_splits = [r["split"] for r in _rows(
                con, "SELECT DISTINCT split FROM shards WHERE stage = 'b' ORDER BY split")]
            render_rows = _rows(
                con, "SELECT sample_rate, num_samples, pad FROM samples WHERE split = ? "
                     "ORDER BY stage DESC, key LIMIT 1", [split])
            self.num_groups_listed = _rows(
                con, "SELECT count(DISTINCT group_key) AS n FROM samples WHERE stage = 'b' AND "
                     "split = ?", [split])[0]["n"]
        if not self.vocabulary:
            raise ValueError(f"{self.out}: the catalog's sources have no class labels; ZSTE needs "
                             "a labelled dataset (ESC-50 or the synthetic set)")
        self.shards = [self.out / r["path"] for r in shard_rows]
        if not self.shards:
            self.shards = sorted((self.out / "shards" / "b").glob(f"{split}-*.tar"))
        if not self.shards and stage_b_splits:  # stage b was built, just not this split
            raise FileNotFoundError(
                f"{self.out}: stage B was built for split(s) {', '.join(stage_b_splits)} but has "
                f"no {split!r} split; rebuild with a {split} share (for example `pipeline build "
                f"--groups train=N,val=N,{split}=N` or --splits with {split}=...), or pass "
                f"--split {stage_b_splits[0]}")
        if not self.shards:
            raise FileNotFoundError(
                f"{self.out}: no stage-B shards of split {split!r} (looked in the shards table and "
                f"{self.out / 'shards' / 'b'}); build them with `pipeline build` including stage b")
        missing = [str(p) for p in self.shards if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"{self.out}: shard(s) listed in the catalog are missing: "
                                    f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
        render = render_rows[0] if render_rows else {}
        self.sample_rate = int(render.get("sample_rate") or 48000)
        self.num_samples = int(render.get("num_samples") or 10 * self.sample_rate)
        self.pad = render.get("pad") or "repeat"
        self.skipped: dict[str, int] = {}

    # -- sizes (for progress bars) --------------------------------------------------------------
    @property
    def num_singles(self) -> int:
        n = len(self._sources)
        return min(n, self.max_items) if self.max_items else n

    @property
    def num_groups(self) -> int:
        n = int(self.num_groups_listed or 0)
        return min(n, self.max_items) if self.max_items else n

    # -- items ----------------------------------------------------------------------------------
    def singles(self, pool=None) -> Iterator[tuple[SingleItem, np.ndarray]]:
        """Each labelled test source once, rendered as a stage-A `single` (no augmentation).
        Undecodable or missing sources are counted in `skipped['single: <reason>']`; when none
        decodes (a build moved away from its sources), the stage-A `single` members of the test
        shards stand in, one per source. `pool` (a `DecodePool`) decodes and renders in worker
        processes; without it, here, one after another (same items, same bits)."""
        from teminal.evaluate.workers import DecodePool

        vocab = set(self.vocabulary)
        jobs = [SingleJob(row["source_id"], row["path"], row["label"], self.split,
                          self.sample_rate, self.num_samples, self.pad)
                for row in self._sources if row["label"] in vocab]
        taken = 0
        for job, (wave, reason) in zip(jobs, (pool or DecodePool(0)).map(render_single, jobs)):
            if reason is not None:
                self._skip(f"single: {reason}")
                continue
            taken += 1
            yield SingleItem(job.source_id, job.label), wave
            if self.max_items and taken >= self.max_items:
                return
        if taken == 0:
            yield from self._stage_a_singles(vocab)

    def _stage_a_singles(self, vocab) -> Iterator[tuple[SingleItem, np.ndarray]]:
        from teminal.pipeline.shards import iter_groups

        shards = sorted((self.out / "shards" / "a").glob(f"{self.split}-*.tar"))
        seen: set[str] = set()
        for meta, waves in iter_groups(shards):
            row = next((r for r in meta.get("samples", []) if r.get("relation") == "single"), None)
            if row is None or "single" not in waves or not row.get("source_ids"):
                continue
            sid, label = row["source_ids"][0], (row.get("labels") or [None])[0]
            if sid in seen or label not in vocab:
                continue
            if self.max_items and len(seen) >= self.max_items:
                return
            seen.add(sid)
            self._skip("single: taken from stage-A shards instead")
            yield SingleItem(sid, label), waves["single"]

    def groups(self, pool=None) -> Iterator[tuple[PairGroup, dict[str, np.ndarray]]]:
        """Stage-B test groups with all three relations, in stored (group key) order. The shards
        are read here; `pool` (a `DecodePool`) decodes the members in worker processes."""
        from teminal.evaluate.workers import DecodePool

        pool = pool or DecodePool(0)
        # a group is three members: fewer groups in flight hold as many clips as the singles
        ahead = max(1, pool.ahead // len(RELATIONS))
        yield from pool.map(decode_group, self._group_jobs(), ahead=ahead)

    def _group_jobs(self) -> Iterator[tuple[PairGroup, dict[str, bytes]]]:
        """(group, encoded members) of the groups to evaluate; the others are counted."""
        vocab = set(self.vocabulary)
        taken = 0
        for _key, members in _shard_members(self.shards):
            if self.max_items and taken >= self.max_items:
                return
            group = group_of(json.loads(members.pop("json")))
            relations = {suffix.partition(".")[0]: suffix for suffix in members}
            if group is None or not set(RELATIONS) <= set(relations):
                self._skip("group: incomplete (needs forward, reversed and overlay)")
                continue
            if group.a not in vocab or group.b not in vocab:
                self._skip("group: labels outside the class vocabulary")
                continue
            taken += 1
            yield group, {relations[r]: members[relations[r]] for r in RELATIONS}

    def _skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


def group_of(meta: dict) -> PairGroup | None:
    """The pair of a stage-B group from its shard JSON ({"group_key", "samples": [rows]})."""
    rows = {r.get("relation"): r for r in meta.get("samples", [])}
    forward = rows.get("forward")
    if forward is None:
        return None
    labels = list(forward.get("labels") or [])
    if len(labels) != 2 or not all(labels) or labels[0] == labels[1]:
        return None
    key = meta.get("group_key") or forward.get("group_key")
    return PairGroup(str(key), str(labels[0]), str(labels[1]))


# ---------------------------------------------------------------------------------------------
# Decode jobs (module-level: `DecodePool` workers import them by name)

class SingleJob(NamedTuple):
    source_id: str
    path: str
    label: str
    split: str
    sample_rate: int
    num_samples: int
    pad: str


class Rendered(NamedTuple):
    wave: np.ndarray | None
    reason: str | None            # why the source was left out (None when it decoded)

    @property
    def clips(self) -> int:
        return int(self.wave is not None)


def render_single(job: SingleJob) -> Rendered:
    """A test source decoded and rendered as a stage-A `single` recipe without augmentation."""
    from teminal.pipeline.audio import load_source
    from teminal.pipeline.compose import SampleRecipe, plan_parts, render
    from teminal.pipeline.audio import AudioError

    try:
        wave = load_source(job.path, job.sample_rate)
    except AudioError as e:
        return Rendered(None, str(e).split(":")[0])
    recipe = SampleRecipe(
        key=f"{job.source_id}.single", group_key=job.source_id, stage="a", split=job.split,
        relation="single", source_ids=[job.source_id], labels=[job.label], offsets=[0.0],
        sample_rate=job.sample_rate, num_samples=job.num_samples, pad=job.pad)
    waves = {job.source_id: wave}  # recipes carry their cut (recipe_version 2): plan, render
    return Rendered(render(plan_parts(recipe, waves), waves), None)


class DecodedGroup(NamedTuple):
    group: PairGroup
    waves: dict[str, np.ndarray]

    @property
    def clips(self) -> int:
        return len(self.waves)


def decode_group(job: tuple[PairGroup, dict[str, bytes]]) -> DecodedGroup:
    from teminal.pipeline.shards import decode_members

    group, members = job
    waves = decode_members(members)
    return DecodedGroup(group, {r: waves[r] for r in RELATIONS})


# ---------------------------------------------------------------------------------------------
# What the model was trained on

# Relations whose rows put a class pair in front of the model, per training stage (pretraining
# sees stage-A singles only: no pair at all).
PAIR_RELATIONS = {"pretrain": (), "stage_a": ("double",), "stage_b": ("forward", "reversed", "overlay")}
ALL_PAIR_RELATIONS = ("double", "forward", "reversed", "overlay")
# Relations whose captions each stage reads (for the wordings it has seen).
CAPTION_RELATIONS = {"pretrain": ("single",), "stage_a": ("single", "double"),
                     "stage_b": ("forward", "reversed", "overlay")}
ALL_RELATIONS = ("single", "double", "forward", "reversed", "overlay")


@dataclass
class TrainingData:
    """Class pairs and caption templates the model was trained on."""
    path: str | None = None
    build_id: str | None = None
    pairs: set[frozenset[str]] = field(default_factory=set)
    template_ids: set[str] = field(default_factory=set)
    reason: str | None = None          # why it is unavailable (None when available)
    note: str | None = None
    chain: list[dict] = field(default_factory=list)   # the training runs it was gathered from

    @property
    def available(self) -> bool:
        return self.reason is None

    def to_dict(self) -> dict:
        d = {"available": self.available, "path": self.path, "build_id": self.build_id}
        if self.available:
            d.update(num_train_pairs=len(self.pairs), template_ids=sorted(self.template_ids))
        else:
            d["reason"] = self.reason
        if self.chain:
            d["chain"] = self.chain
        if self.note:
            d["note"] = self.note
        return d


def load_training_data(out, split: str = "train", relations=ALL_PAIR_RELATIONS,
                       where: str | None = None, query: str | None = None,
                       templates: list[str] | None = None, all_templates: bool = True,
                       caption_relations=ALL_RELATIONS) -> TrainingData:
    """Unordered class pairs of the composed `split` rows of `relations` in the catalog at OUT,
    optionally restricted as the trainer restricts groups (`where` predicate on samples rows,
    `query` returning group keys), and the template ids of the captions that rows of
    `caption_relations` offered: all of them (`all_templates`, the conservative default), those
    matching the trainer's `templates` prefixes, or only the canonical one (the trainer's
    default)."""
    out = Path(out)
    with _catalog(out) as con:
        info = catalog_info(con, out, split)
        keys = _selected_groups(con, split, where, query)
        rows = _rows(con, "SELECT group_key, relation, labels, template_ids FROM samples WHERE "
                          "split = ?", [split])
    pairs, ids = set(), set()
    for r in rows:
        if keys is not None and r["group_key"] not in keys:
            continue
        labels = [x for x in (r["labels"] or []) if x]
        if r["relation"] in relations and len(set(labels)) == 2:
            pairs.add(frozenset(labels))
        offered = [t for t in (r["template_ids"] or []) if t] \
            if r["relation"] in caption_relations else []
        if templates:
            ids.update(t for t in offered if t.startswith(tuple(templates)))
        elif all_templates:
            ids.update(offered)
        elif offered:
            ids.add(offered[0])
    return TrainingData(str(out), info.build_id, pairs, ids)


def _selected_groups(con, split: str, where: str | None, query: str | None) -> set[str] | None:
    from teminal.manifests.catalog import select_group_keys

    return select_group_keys(con, split, where, query)


def checkpoint_provenance(model):
    """What the model's checkpoint recorded at save time (teminal.models.TrainingProvenance)."""
    from teminal.models.provenance import TrainingProvenance

    return TrainingProvenance.of_model(model)


def training_chain(model, max_depth: int = 8) -> list:
    """The checkpoint's provenance, then that of the checkpoint it was initialised from, and
    so on (stage B <- stage A <- pretraining)."""
    from teminal.models.provenance import TrainingProvenance

    chain, prov = [], checkpoint_provenance(model)
    while prov is not None and prov.recorded and len(chain) < max_depth:
        chain.append(prov)
        prov = TrainingProvenance.of_checkpoint(prov.init)
    return chain


def resolve_training_data(model, train_data=None) -> TrainingData:
    """Class pairs the model has heard and caption wordings it has read.

    With `train_data` (--train-data): every composed train group of that catalog, every template
    its captions offered. Otherwise from the checkpoint: for each run of its chain (stage B, the
    stage A it started from, ...), the pairs of the relations that stage trains on, restricted
    by the run's recorded `where` / `query_file`, and the captions its `templates` selected."""
    if train_data:
        path = Path(train_data)
        if not (path / "manifests" / "catalog.duckdb").is_file():
            return TrainingData(str(path), reason=f"no catalog at {path / 'manifests' / 'catalog.duckdb'}")
        data = load_training_data(path)
        recorded = checkpoint_provenance(model).build_ids
        if recorded and data.build_id and recorded != data.build_id:
            data.note = (f"checkpoint records build {recorded} but --train-data holds "
                         f"{data.build_id}; seen/unseen refers to the latter")
        return data
    chain = training_chain(model)
    if not chain or not any(p.data for p in chain):
        return TrainingData(reason="the checkpoint records no training catalog (`data` in its "
                                   "extra); pass --train-data OUT_TRAIN",
                            build_id=chain[0].build_ids if chain else None)
    merged = TrainingData()
    notes, paths, builds = [], [], []
    for prov in chain:
        stage, path, cfg = prov.stage, prov.data, prov.train_config
        link = {"stage": stage, "data": path, "build_id": prov.build_ids}
        merged.chain.append(link)
        if not path:
            continue
        catalog = Path(path) / "manifests" / "catalog.duckdb"
        if not catalog.is_file():
            return TrainingData(str(path), prov.build_ids, chain=merged.chain,
                                reason=f"no catalog at {catalog} (recorded by the {stage or 'model'} "
                                       "checkpoint); pass --train-data pointing at the build the "
                                       "model was trained on")
        # a run resumed with --resume-changed trained on the earlier settings' selection too
        earlier = [h.get("train_config") or {} for h in prov.earlier_train_configs or []]
        for cfg in [cfg] + earlier:
            query = None
            if cfg.get("query_file") and Path(cfg["query_file"]).is_file():
                query = Path(cfg["query_file"]).read_text(encoding="utf-8")
            elif cfg.get("query_file"):
                notes.append(f"{stage}: query file {cfg['query_file']} is gone; all its groups "
                             f"counted")
            data = load_training_data(path, cfg.get("split") or "train",
                                      PAIR_RELATIONS.get(stage, ALL_PAIR_RELATIONS),
                                      cfg.get("where"), query, cfg.get("templates"),
                                      all_templates=stage not in PAIR_RELATIONS,
                                      caption_relations=CAPTION_RELATIONS.get(stage, ALL_RELATIONS))
            merged.pairs |= data.pairs
            merged.template_ids |= data.template_ids
        paths.append(str(path))
        builds.append(data.build_id)
        recorded = prov.build_ids
        if recorded and data.build_id and recorded != data.build_id:
            notes.append(f"{stage}: checkpoint records build {recorded} but {path} holds "
                         f"{data.build_id}")
    merged.path = ",".join(dict.fromkeys(paths))
    merged.build_id = ",".join(dict.fromkeys(b for b in builds if b)) or None
    merged.note = "; ".join(notes) or None
    return merged


class ItemTestSet:
    """A test set from hand-made item lists (tests, notebooks); same interface as
    CatalogTestSet."""

    def __init__(self, vocabulary, singles, groups, sample_rate: int, synthetic: bool = True,
                 build_id: str | None = None, max_items: int | None = None):
        self.vocabulary = sorted(vocabulary)
        self._singles = list(singles)[:max_items] if max_items else list(singles)
        self._groups = list(groups)[:max_items] if max_items else list(groups)
        self.sample_rate = sample_rate
        self.info = CatalogInfo("(items)", [build_id] if build_id else [], synthetic)
        self.skipped: dict[str, int] = {}

    @property
    def num_singles(self) -> int:
        return len(self._singles)

    @property
    def num_groups(self) -> int:
        return len(self._groups)

    def singles(self, pool=None):
        yield from self._singles          # already in memory: nothing to decode

    def groups(self, pool=None):
        yield from self._groups
