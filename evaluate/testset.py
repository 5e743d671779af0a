"""The ZSTE test set of a built catalog (what a model was trained on: `training_data`).

- Pair groups (forward / reversed / overlay of one pair a, b) come from the stage-B shards the
  catalog lists for the test split, exactly as built; every member is checked against the
  sha256 the catalog records for it, and every group's build against the catalog's, so a
  replaced or damaged test shard is refused naming the shard and the member, never scored.
- Single sounds are the test split's source clips, each once, rendered by the pipeline's own
  `render` as a `single` recipe without augmentation (same fitting, loudness and limiter as
  every stage-A single), so task 1 neither repeats a clip nor depends on stage-A pairing.
- The class vocabulary is every label of the catalog's `sources` table (10 classes for the
  synthetic set, 50 for ESC-50); groups whose labels fall outside it (captioned datasets) are
  skipped and counted.
- The timing sweep (`evaluate zste --junctions`): the forward and reversed members of the test
  groups planned again with the second event at other junctions (`compose.retime`, from the
  catalog's recipes) and rendered from the sources, each source decoded once per group, then
  stored and read back with the build's codec, so that a swept member is bit for bit what a
  build made with that fixed `--junction` stores. The sources are found where the catalog's
  `sources` table says, or, with `root`, under the dataset's new folder (`pipeline render`'s
  `--root`); a missing one stops the evaluation before any work, naming it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np

from teminal.manifests.catalog import Catalog, CatalogInfo, ShardContents
from teminal.manifests.vocabulary import CONCATENATIONS, STAGE_RELATIONS, parse_member_name

# the members of a ZSTE pair group, in the order the tasks read them
GROUP_RELATIONS = STAGE_RELATIONS["b"]
# the members the timing sweep renders again: those with a junction (an overlay has none)
SWEPT_RELATIONS = tuple(r for r in GROUP_RELATIONS if r in CONCATENATIONS)


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


class CatalogTestSet:
    """Test-split items of OUT (a `pipeline build` folder) for the ZSTE tasks."""

    def __init__(self, out, split: str = "test", max_items: int | None = None,
                 root=None):
        self.out = Path(out)
        self.split = split
        self.max_items = max_items
        self.root = root        # where the sources are now, if they moved since the build
        self._swept_rows: dict | None = None   # the timing sweep's recipes, read on first use
        self._paths: dict | None = None        # and their sources' paths
        with Catalog.open(self.out) as catalog:
            self.info = catalog.info(split)
            self._builds = {b.build_id: b.config for b in catalog.builds()}
            self.datasets = catalog.datasets()
            self.vocabulary = catalog.labels()
            self._sources = catalog.labelled_sources(split)
            shard_rows = catalog.shards("b", split)
            stage_b_splits = catalog.stages_splits("b")
            render = catalog.render_settings(split)
            self._stage_a_shards = [self.out / r.path for r in catalog.shards("a", split)]
            self.num_groups_listed = catalog.group_count("b", split)
            # what every shard holds by the catalog: each member is checked against it
            self._expected = {str(self.out / p): c for p, c in
                              catalog.shard_contents(split=split).items()}
        if not self.vocabulary:
            raise ValueError(f"{self.out}: the catalog's sources have no class labels; ZSTE needs "
                             "a labelled dataset (ESC-50 or the synthetic set)")
        self.shards = [self.out / r.path for r in shard_rows]
        if not self.shards and stage_b_splits:  # stage b was built, just not this split
            from teminal.pipeline.build_options import add_split_command

            add = add_split_command(self.out, split)
            raise FileNotFoundError(
                f"{self.out}: stage B was built for split(s) {', '.join(stage_b_splits)} but has "
                f"no {split!r} split; "
                + (f"`{add}` adds one, " if add else
                   f"rebuild it with a {split} split (its --splits and --groups), ")
                + f"or pass --split {stage_b_splits[0]}")
        if not self.shards:
            from teminal.pipeline.build_options import add_stage_hint

            raise FileNotFoundError(f"{self.out}: no stage-B shards of split {split!r} in its "
                                    f"catalog; {add_stage_hint(self.out, 'b')}")
        missing = [str(p) for p in self.shards if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"{self.out}: shard(s) listed in the catalog are missing: "
                                    f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
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
        jobs = [SingleJob(row["source_id"], str(self._source_file(row["path"])), row["label"],
                          self.split, self.sample_rate, self.num_samples, self.pad)
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

        seen: set[str] = set()
        for meta, waves in iter_groups(self._stage_a_shards, self._expected):
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
        are read here; `pool` (a `DecodePool`) checks each member against the catalog's sha256
        and decodes it in worker processes."""
        from teminal.evaluate.workers import DecodePool

        pool = pool or DecodePool(0)
        # a group is three members: fewer groups in flight hold as many clips as the singles
        ahead = max(1, pool.ahead // len(GROUP_RELATIONS))
        yield from pool.map(decode_group, self._group_jobs(), ahead=ahead)

    def _group_jobs(self) -> Iterator["GroupJob"]:
        """The groups to evaluate, their members still encoded; the others are counted. Each
        group's build is checked against the catalog's here (a JSON member is small)."""
        from teminal.manifests.shard_codec import check_group_build
        from teminal.pipeline.shards import iter_members

        vocab = set(self.vocabulary)
        taken = 0
        for shard in self.shards:
            contents = self._expected.get(str(shard), ShardContents(frozenset(), {}, None))
            for key, members in iter_members([shard]):
                if self.max_items and taken >= self.max_items:
                    return
                meta = json.loads(members.pop("json"))
                check_group_build(meta, contents.build_id, shard)
                group = group_of(meta)
                names = {n.relation: n for n in (parse_member_name(f"{key}.{s}") for s in members)}
                if group is None or not set(GROUP_RELATIONS) <= set(names):
                    self._skip("group: incomplete (needs forward, reversed and overlay)")
                    continue
                if group.a not in vocab or group.b not in vocab:
                    self._skip("group: labels outside the class vocabulary")
                    continue
                taken += 1
                chosen = [names[r] for r in GROUP_RELATIONS]
                yield GroupJob(group, str(shard), {n.suffix: members[n.suffix] for n in chosen},
                               {n.suffix: contents.digests.get(n.sample_key) for n in chosen})

    def _skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    # -- the timing sweep -----------------------------------------------------------------------
    def check_sweep(self, junctions, limit: int | None = None) -> None:
        """Before any work: each junction leaves every event of the groups to sweep (the first
        `limit` the evaluation reads) its least length, given the recipes' gaps, and every
        source of those groups is where the catalog says (or under `root`)."""
        from teminal.pipeline.compose import SampleRecipe, check_timing, part_slots
        from teminal.pipeline.render import missing_source

        rows = self._sweep_rows()
        vocab = set(self.vocabulary)
        keys = [k for k, (fwd, _) in rows.items() if set(fwd["labels"]) <= vocab]
        limit = min(x for x in (limit, self.max_items, len(keys)) if x is not None)
        recipes = [SampleRecipe.from_dict(rows[k][0]) for k in keys[:limit]]
        gaps = [second[0] - first[1] for r in recipes for first, second in [part_slots(r)]]
        gap = max(gaps, default=0) / self.sample_rate
        clip = self.num_samples / self.sample_rate
        for j in junctions:
            try:
                check_timing(j, gap, 0.0, clip)
            except ValueError:
                raise ValueError(f"--junctions {j:g}: the test groups' gap of up to {gap:g} s "
                                 f"leaves one of the events too short in a {clip:g} s clip; "
                                 f"choose junctions nearer 0.5") from None
        for recipe in recipes:
            for sid, path in self._sweep_sources(recipe.source_ids, recipe.build_id):
                if not Path(path).exists():
                    raise missing_source(
                        f"{self.out}: the timing sweep renders {recipe.key} from its sources",
                        sid, path, self._build_root(recipe.build_id), self.root)

    def swept_groups(self, groups, junctions, pool=None) -> Iterator["SweptGroup"]:
        """Each of `groups` (in order) with its forward and reversed members rendered at each
        junction; `pool` (a `DecodePool`) renders them in worker processes."""
        from teminal.evaluate.workers import DecodePool

        pool = pool or DecodePool(0)
        rows = self._sweep_rows()
        jobs = (self._sweep_job(rows[g.group_key], tuple(junctions)) for g in groups)
        # a job is 2 members per junction: keep about as many clips in flight as a batch
        ahead = max(1, pool.ahead // (len(SWEPT_RELATIONS) * max(1, len(junctions))))
        yield from pool.map(render_sweep, jobs, ahead=ahead)

    def _sweep_rows(self) -> dict[str, tuple[dict, dict]]:
        """group key -> its (forward, reversed) catalog rows, in the order the shards hold
        them (read once)."""
        if self._swept_rows is None:
            with Catalog.open(self.out) as catalog:
                rows = catalog.recipes("b", self.split, SWEPT_RELATIONS)
            by_group: dict[str, dict] = {}
            for row in rows:
                by_group.setdefault(row["group_key"], {})[row["relation"]] = row
            self._swept_rows = {k: tuple(v[r] for r in SWEPT_RELATIONS)
                                for k, v in by_group.items() if len(v) == len(SWEPT_RELATIONS)}
        return self._swept_rows

    def _sweep_job(self, rows: tuple[dict, dict], junctions: tuple[float, ...]) -> "SweepJob":
        fwd = rows[0]
        codec = self._builds.get(fwd["build_id"], {}).get("codec", "flac")  # as pipeline render
        sources = tuple(self._sweep_sources(fwd["source_ids"], fwd["build_id"]))
        return SweepJob(fwd["group_key"], rows, sources, junctions, codec,
                        self._build_root(fwd["build_id"]),
                        None if self.root is None else str(self.root), str(self.out))

    def _sweep_sources(self, source_ids, build_id) -> list[tuple[str, str]]:
        paths = self._source_paths()
        return [(sid, str(self._source_file(paths[sid], build_id))) for sid in source_ids]

    def _source_paths(self) -> dict[str, str]:
        if self._paths is None:
            with Catalog.open(self.out) as catalog:
                ids = {sid for fwd, _ in self._sweep_rows().values() for sid in fwd["source_ids"]}
                self._paths = catalog.source_paths(sorted(ids))
        return self._paths

    def _build_root(self, build_id: str | None = None) -> str | None:
        config = self._builds.get(build_id) if build_id else None
        return (config if config is not None else self.info.config).get("root")

    def _source_file(self, path: str, build_id: str | None = None) -> Path:
        """A source's file as the catalog names it, or under `root` when the dataset moved."""
        from teminal.pipeline.render import source_file

        return source_file(path, self._build_root(build_id), self.root,
                           f"{self.out} sources table")


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


class GroupJob(NamedTuple):
    group: PairGroup
    shard: str
    members: dict[str, bytes]             # "<relation>.<ext>" -> the member's bytes
    expected: dict[str, str | None]       # "<relation>.<ext>" -> its sha256 in the catalog


def decode_group(job: GroupJob) -> DecodedGroup:
    """The group's members, each checked against the catalog's sha256 (a replaced or damaged
    test shard is refused, naming it and the member, never scored), then decoded."""
    from teminal.manifests.shard_codec import check_member, decode_member

    waves = {}
    for suffix, data in job.members.items():
        name = parse_member_name(f"{job.group.group_key}.{suffix}")
        where = f"{name.group_key}.{suffix}"
        check_member(data, job.expected[suffix], where, job.shard)
        wave, _sr = decode_member(data, name.ext, f"{where} in {job.shard}", job.shard)
        waves[name.relation] = np.asarray(wave, dtype=np.float32)
    return DecodedGroup(job.group, {r: waves[r] for r in GROUP_RELATIONS})


class SweepJob(NamedTuple):
    group_key: str
    rows: tuple[dict, ...]                  # the forward and reversed catalog rows
    sources: tuple[tuple[str, str], ...]    # (source id, file) of each part
    junctions: tuple[float, ...]
    codec: str                              # the build's --codec: members as it stores them
    build_root: str | None                  # for the message of a missing source
    root: str | None
    out: str


class SweptGroup(NamedTuple):
    group_key: str
    # junction -> relation -> wave; None where the member planned at that junction is the one
    # stored (the build's own timing), whose embedding the evaluation already has
    waves: dict[float, dict[str, np.ndarray] | None]

    @property
    def clips(self) -> int:
        return sum(len(w) for w in self.waves.values() if w)


def render_sweep(job: SweepJob) -> SweptGroup:
    """The group's forward and reversed members planned at each junction (`compose.retime`)
    and rendered from the sources (each decoded once), then encoded and decoded with the
    build's codec: what a build with that fixed `--junction` would store."""
    from teminal.manifests.shard_codec import decode_member, encode_member
    from teminal.pipeline.compose import SampleRecipe, render_detailed, retime

    stored = [SampleRecipe.from_dict(row) for row in job.rows]
    waves = _sweep_sources(job, stored[0].sample_rate)
    out, parts = {}, {}   # prepared parts: forward and reversed at one junction share theirs
    for junction in job.junctions:
        planned = [retime(r, junction, waves) for r in stored]
        if all(_same_plan(p, r) for p, r in zip(planned, stored)):
            out[junction] = None
            continue
        out[junction] = {}
        for recipe in planned:
            audio = render_detailed(recipe, waves, parts).audio
            data, ext = encode_member(audio, recipe.sample_rate, job.codec)
            out[junction][recipe.relation] = decode_member(data, ext, recipe.key)[0]
    return SweptGroup(job.group_key, out)


def _sweep_sources(job: SweepJob, sample_rate: int) -> dict[str, np.ndarray]:
    from teminal.pipeline.audio import AudioError, load_source
    from teminal.pipeline.render import missing_source

    waves = {}
    for sid, path in job.sources:
        if not Path(path).exists():
            raise missing_source(f"{job.out}: the timing sweep renders {job.group_key} from its "
                                 f"sources", sid, path, job.build_root, job.root)
        try:
            waves[sid] = load_source(path, sample_rate)
        except AudioError as e:
            raise ValueError(f"{job.out}: the timing sweep cannot use source {path} of "
                             f"{job.group_key} ({e}); it changed since the build") from None
    return waves


def _same_plan(planned, stored) -> bool:
    """Whether a re-planned member is the stored one (same layout and cuts: same audio)."""
    return all(getattr(planned, f) == getattr(stored, f) for f in
               ("offsets", "slot_lengths", "source_offsets", "recipe_version", "augment"))


class ItemTestSet:
    """A test set from hand-made item lists (tests, notebooks); same interface as
    CatalogTestSet."""

    def __init__(self, vocabulary, singles, groups, sample_rate: int, synthetic: bool = True,
                 build_id: str | None = None, max_items: int | None = None, sweep=None):
        self.vocabulary = sorted(vocabulary)
        self._singles = list(singles)[:max_items] if max_items else list(singles)
        self._groups = list(groups)[:max_items] if max_items else list(groups)
        self.sample_rate = sample_rate
        self.info = CatalogInfo("(items)", [build_id] if build_id else [], synthetic)
        self.skipped: dict[str, int] = {}
        # the timing sweep's members, made by hand: junction -> group key -> relation -> wave
        self._sweep = dict(sweep or {})

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

    def check_sweep(self, junctions, limit: int | None = None) -> None:
        missing = [j for j in junctions if j not in self._sweep]
        if missing:
            raise ValueError(f"--junctions: this test set has no members at {missing} (it has "
                             f"{sorted(self._sweep) or 'none'})")

    def swept_groups(self, groups, junctions, pool=None):
        for group in groups:
            yield SweptGroup(group.group_key, {j: self._sweep[j][group.group_key]
                                               for j in junctions})
