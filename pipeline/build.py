"""Build composition shards, manifests and the catalog from a source dataset: the orchestration.

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

An OUT holds one build. Before OUT is touched or any source decoded, a build compares itself
with the build OUT records (build.json): settings that would make another build are refused
naming the options, and with the same settings the scan and the sources' content hashes must
match the record; so a refused OUT is left byte for byte as it was. A build may add stages or
splits to the one in OUT (extend it: every shard is rendered again under the new id), and
`overwrite` replaces it.

Modules: config (BuildConfig, build id), sources (the dataset registry and readers), pool
(phase 2), plan (phases 1 and 3), render (phase 4, and `rerender`), catalog (phase 5), layout
(the files in OUT); this module runs the phases in order.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shlex
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from teminal.pipeline.audio import check_codec_rate
from teminal.pipeline.catalog import write_build_catalog
from teminal.pipeline.config import BuildConfig, compute_build_id
from teminal.manifests.digests import file_sha256
from teminal.pipeline.build_options import (build_flags, changed_args, command, record_changes)
from teminal.pipeline.layout import (CACHE_DIR, PARTS_DIR, build_record_path, read_build_record,
                                     write_json_atomic)
from teminal.pipeline.lock import build_lock, claim_lock
from teminal.pipeline.machine import human_bytes
from teminal.pipeline.plan import (check_splits, pairable_clips, plan_shards, scan_sources,
                                   root_of)
from teminal.pipeline.pool import decode_pool
from teminal.pipeline.progress import progress_bar
from teminal.pipeline.executors import check_executor, process_pool, run_local, run_ray
from teminal.pipeline.render import ShardContext, shard_done
from teminal.pipeline.shards import remove_temporaries
from teminal.pipeline.sources import dataset_spec
from teminal.pipeline.sources.base import Reject


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
    failed: list[dict] = field(default_factory=list)  # {"shard", "error", "attempts"} per failed shard
    executor: str = "local"
    render_seconds: float = 0.0    # the render phase alone (shards of this run)
    part: tuple[int, int] = (0, 1)

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
            f"  groups   {self.groups}   samples {self.samples}   bytes {human_bytes(self.bytes)}"
            f"   (source pool {human_bytes(self.pool_bytes)})",
            f"  time     {self.seconds:.1f} s   {self.members_per_s:.1f} members/s (rendered this run)",
        ]
        if self.rejects:
            lines.append("  rejects  " + ", ".join(f"{k}: {v}" for k, v in sorted(self.rejects.items())))
        else:
            lines.append("  rejects  none")
        lines.extend(f"  note     {note}" for note in self.notes)
        if self.failed:
            first = self.failed[0]
            lines.append(f"  FAILED   {len(self.failed)} shard(s) after {first['attempts']} attempt(s) "
                         f"each; first {first['shard']}: {first['error']}")
            again = ["--out", self.out] + (["--part", f"{self.part[0]}/{self.part[1]}"]
                                           if self.part[1] > 1 else [])
            lines.append(f"  rerun    `{command(again)}`: finished shards are skipped, the "
                         "failed ones are built again (all failures are in "
                         f"{self.out}/{PARTS_DIR}/failed*.json)")
        lines.append(f"  catalog  {self.catalog}" if self.catalog else
                     "  catalog  not written yet: other parts are unfinished; once every part "
                     f"is done, `{shlex.join(['pipeline', 'catalog', self.out])}` writes it")
        return "\n".join(lines)


def run_build(config: BuildConfig, progress: bool = True,
              log: Callable[[str], None] = print) -> BuildSummary:
    t0 = time.perf_counter()
    out = Path(config.out)
    check_codec_rate(config.codec, config.compose.sample_rate)
    check_executor(config.executor, config.ray_address)   # before OUT is touched
    check_splits(config)
    record = _check_record(out, config)   # refusals before OUT is touched or a source decoded
    scan, root = _scan(config, log)
    if record is not None and not config.overwrite:
        if record_changes(record["config"], config).same:
            _check_sources(out, record, config, scan)
        else:
            log(f"extending build {record['build_id']} in {out} ("
                f"{'; '.join(record_changes(record['config'], config).extends)}): every shard "
                f"is rendered again under the new build id")
    _prepare_out(out)
    with build_lock(out, config.part):
        return _run_build(config, out, t0, progress, log, scan, root)


def _run_build(config: BuildConfig, out: Path, t0: float, progress: bool,
               log: Callable[[str], None], scan, root) -> BuildSummary:
    """The phases after the scan (module docstring): decode and pair, claim OUT, render,
    catalog."""
    if config.part[1] == 1:
        # leftovers of a killed run; with --part another part may be writing right now
        remove_temporaries(out)
    with process_pool(config.workers) as pool:   # decodes; renders too with --executor local
        sources, accepted, rejects, notes = _decode_and_pair(config, scan, out, pool, progress,
                                                             log)
        build_id = compute_build_id(config, accepted, sources.digests)
        tasks = plan_shards(config, accepted)
        _claim(out, config, build_id, root, scan, accepted, sources.digests, rejects, tasks)
        rendering = _render(config, out, tasks, build_id, sources, pool, progress, log)
        _record_failures(out, config.part, build_id, rendering.failed)
    catalog = _write_catalog_when_complete(out, tasks, rendering.rows, build_id,
                                           config.keep_cache)
    rows = rendering.rows
    return BuildSummary(
        build_id=build_id, out=str(out), synthetic=bool(scan.synthetic),
        shards_total=rendering.shards, shards_built=rendering.built - len(rendering.failed),
        shards_skipped=rendering.shards - rendering.built,
        groups=sum(r["num_groups"] for r in rows), samples=sum(r["num_samples"] for r in rows),
        bytes=sum(r["bytes"] for r in rows),
        rejects=dict(Counter(_reason_kind(r.reason) for r in rejects)),
        seconds=time.perf_counter() - t0, catalog=catalog,
        pool_bytes=4 * sum(n for _, n in sources.index.values()), rendered=rendering.members,
        clips=len(accepted), notes=notes, failed=rendering.failed, executor=config.executor,
        render_seconds=rendering.seconds, part=config.part)


def _scan(config: BuildConfig, log: Callable[[str], None]):
    """(the dataset's scan, its root); no usable clip at all is an error saying how to get it."""
    scan, root = scan_sources(config)
    if scan.synthetic:
        log(f"NOTE: {root} is SYNTHETIC data (procedural sounds, not {config.dataset}); every "
            "record of this build is flagged synthetic.")
    log(f"scan: {len(scan.clips)} clips, {len(scan.rejects)} rejected at scan"
        + _reject_counts(scan.rejects))
    if not scan.clips:
        raise ValueError(f"{config.dataset}: no usable clip under {root} ({len(scan.rejects)} "
                         f"rejected at scan{_reject_counts(scan.rejects)}). {spec_how_to(config)}")
    return scan, root


def _decode_and_pair(config: BuildConfig, scan, out: Path, pool, progress: bool,
                     log: Callable[[str], None]):
    """(the decoded source pool, the clips that can be paired, every reject, notes): the pool
    is decoded, then the clips with a compatible partner in their split are kept."""
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
    return sources, accepted, rejects, notes


def _claim(out: Path, config: BuildConfig, build_id: str, root, scan, accepted, digests,
           rejects, tasks) -> None:
    """OUT becomes this build's (refused when it holds another): its build.json, the plan."""
    with claim_lock(out):  # check and write build.json as one step: parts may race here
        _claim_out(out, build_id, config)
        write_json_atomic(build_record_path(out), {
            "build_id": build_id,
            "config": config.identity() | {"root": str(Path(root).resolve())},
            "version": _version(), "synthetic": bool(scan.synthetic),
            "sources": [c.to_dict() for c in accepted],
            # the content hashes of the build id: a rerun compares the files with them before
            # decoding anything (_check_sources)
            "digests": {c.source_id: digests[c.source_id] for c in accepted},
            "rejects": [r.to_dict() for r in rejects],
            "shards": [t.relpath for t in tasks]})


@dataclass
class Rendering:
    """What the render phase of this part did: the `shards` rows of its finished shards (those
    done before included), its failures, counts and time."""
    rows: list[dict]
    failed: list[dict]
    shards: int          # shards of this part
    built: int           # shards this run rendered (or tried to)
    members: int         # members this run rendered
    seconds: float


def _render(config: BuildConfig, out: Path, tasks, build_id: str, sources, pool, progress: bool,
            log: Callable[[str], None]) -> Rendering:
    """Render this part's shards that are not done yet (a finished one is skipped: resume)."""
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
    rendered, failed = 0, []
    if config.executor == "ray":
        results = run_ray(jobs, config.ray_address, config.workers, config.retries)
    else:
        results = run_local(jobs, pool, config.retries)
    with progress_bar(len(jobs), "render", "shard", progress) as bar:
        for result in results:
            bar.update(1)
            if result.row is None:
                failed.append({"shard": result.relpath, "error": result.error,
                               "attempts": result.attempts})
                log(f"FAILED {result.relpath} after {result.attempts} attempt(s): {result.error}")
                continue
            rows.append(result.row)
            rendered += result.row["num_samples"]
            bar.set_postfix_str(f"{rendered / max(time.perf_counter() - t_render, 1e-9):.0f} members/s")
    failed.sort(key=lambda f: f["shard"])
    return Rendering(rows, failed, len(mine), len(todo), rendered,
                     time.perf_counter() - t_render)


def _record_failures(out: Path, part: tuple[int, int], build_id: str, failed: list[dict]) -> None:
    """OUT/manifests/parts/failed[-IofN].json lists the part's failed shards (removed when none
    failed): one record per part, so parts running at once never overwrite each other's."""
    i, n = part
    failed_file = out / PARTS_DIR / ("failed.json" if n == 1 else f"failed-{i}of{n}.json")
    if failed:
        write_json_atomic(failed_file, {"build_id": build_id, "failed": failed})
    elif failed_file.exists():
        failed_file.unlink()


def _write_catalog_when_complete(out: Path, tasks, rows: list[dict], build_id: str,
                                 keep_cache: bool) -> str | None:
    """The catalog, once every planned shard (of every part) is done; None until then."""
    # This run's shards were just written or checked at its start; other parts' are checked here.
    checked = {r["path"] for r in rows}
    if not all(t.relpath in checked or shard_done(out, t, build_id) for t in tasks):
        return None
    catalog = str(write_build_catalog(out))
    remove_temporaries(out / "shards")
    remove_temporaries(out / "manifests")
    if not keep_cache:
        shutil.rmtree(out / CACHE_DIR, ignore_errors=True)
    return catalog


def spec_how_to(config: BuildConfig) -> str:
    return dataset_spec(config.dataset).how_to_get


def _reject_counts(rejects: Sequence[Reject]) -> str:
    """": missing audio 120, truncated 2" (empty when there are none)."""
    counts = Counter(_reason_kind(r.reason) for r in rejects)
    return (": " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))) if counts else ""



def _prepare_out(out: Path) -> None:
    """Create OUT, or say in one line why it cannot be a build folder."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except FileExistsError:
        raise FileExistsError(f"--out {out} is a file, not a folder; choose a folder") from None
    except NotADirectoryError:
        above = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
        raise FileExistsError(f"--out {out}: {above or 'a parent'} is a file, not a folder; "
                              f"choose a folder path") from None
    except PermissionError:
        raise PermissionError(f"--out {out} is not writable (permission denied or read-only "
                              f"file system); choose a folder you can write, or fix its "
                              f"permissions") from None
    except OSError as e:
        raise PermissionError(f"--out {out} cannot be written ({e.strerror or e}); choose "
                              f"another folder") from None


# What may sit in OUT before its build.json exists: the decode cache and the lock files.
_UNCLAIMED_OK = re.compile(r"^(\.cache|\.build-lock.*|\.write-test-\d+)$")


def _check_record(out: Path, config: BuildConfig) -> dict | None:
    """The build OUT records (None: none), after refusing a config that would make another
    build there: changed settings (naming each option), an unreadable record, or an OUT holding
    other files and no record. Reads OUT only."""
    if not out.is_dir():
        return None   # a new OUT (or a file in its place, which _prepare_out reports)
    try:
        record = read_build_record(out)
    except ValueError as e:
        if config.overwrite:
            return None
        raise FileExistsError(
            f"{e}: {out} holds a build whose settings cannot be read. Nothing was changed. "
            f"Replace it: `{command(build_flags(config) + ['--overwrite'])}`") from None
    if record is None:
        _refuse_unclaimed(out, config)
        return None
    changes = record_changes(record["config"], config)
    if changes.refused and not config.overwrite:
        had = record["config"].get("stages") or []
        extend = ""
        if [c.split()[0] for c in changes.refused] == ["--stages"]:   # a stage dropped:
            # adding one was likely meant (`--stages b` on a build of stage a)
            stages = ",".join(sorted(set(had) | set(config.stages)))
            extend = f" To add to it instead: `{command(['--out', str(out), '--stages', stages])}`."
        raise FileExistsError(_another_build(
            out, record, config, f"made with other settings ({'; '.join(changes.refused)}); a "
                                 f"build there may only add stages or splits") + extend)
    return record


def _refuse_unclaimed(out: Path, config: BuildConfig) -> None:
    """An OUT holding anything but a decode cache and no build record (leftovers of an unknown
    build, a merged catalog, other files) is refused unless overwrite."""
    foreign = sorted(p.name for p in out.iterdir() if not _UNCLAIMED_OK.match(p.name))
    if foreign and not config.overwrite:
        raise FileExistsError(
            f"{out} is not empty ({', '.join(foreign[:5])}) but holds no build record "
            f"({PARTS_DIR}/{build_record_path(out).name}): leftovers of another build, a merged "
            f"catalog or other files. Nothing was changed. Use an empty or new --out, or replace "
            f"its shards/ and manifests/: `{command(build_flags(config) + ['--overwrite'])}`")


def _check_sources(out: Path, record: dict, config: BuildConfig, scan) -> None:
    """With the recorded settings, the build id changes only with the sources: refuse, before
    decoding, when the scan or the content hashes of the recorded sources differ from the
    record. (A file rejected at decode that now decodes is found only after decoding, by
    _claim_out.)"""
    recorded = {s["source_id"]: s for s in record.get("sources", [])}
    now = {c.source_id: c for c in scan.clips}
    problems = []
    removed = sorted(set(recorded) - set(now))
    if removed:
        problems.append(f"{len(removed)} source(s) gone, e.g. {removed[0]}")
    relabelled = sorted(sid for sid in set(recorded) & set(now)
                        if _clip_fields(now[sid].to_dict()) != _clip_fields(recorded[sid]))
    if relabelled:
        problems.append(f"{len(relabelled)} source(s) with another split, fold, label or "
                        f"captions, e.g. {relabelled[0]}")
    rejected = Counter(Path(r["path"]).name for r in record.get("rejects", [])
                       if r.get("phase") in ("decode", "plan"))
    added = sorted((Counter(Path(c.path).name for sid, c in now.items()
                            if sid not in recorded) - rejected).elements())
    if added:
        problems.append(f"{len(added)} source(s) new, e.g. {added[0]}")
    digests = record.get("digests") or {}
    changed = [sid for sid in sorted(set(digests) & set(now))
               if not problems and _digest(now[sid].path, len(digests[sid])) != digests[sid]]
    if changed:
        problems.append(f"{len(changed)} source file(s) changed, e.g. {now[changed[0]].path}")
    if problems:
        raise FileExistsError(_another_build(
            out, record, config, f"from other sources than the dataset holds now "
                                 f"({'; '.join(problems)})"))


def _clip_fields(clip: dict) -> tuple:
    return (clip.get("split"), clip.get("fold"), clip.get("label"),
            tuple(clip.get("captions") or ()))


def _digest(path: str, length: int) -> str | None:
    try:
        return file_sha256(path)[:length]
    except OSError:
        return None


def _another_build(out: Path, record: dict, config: BuildConfig, why: str) -> str:
    """The refusal of a build that would replace the one in OUT: why, and the two commands that
    do what the user may have meant (replace it; build beside it), each runnable as printed."""
    replace = command(changed_args(record["config"], config, root_of(config)) +
                      ["--overwrite"])
    beside = command(build_flags(config, out=_free_folder(out)))
    return (f"{out} holds build {record['build_id']}, {why}. Nothing was changed. Replace it: "
            f"`{replace}`; or build beside it: `{beside}`")


def _free_folder(out: Path) -> Path:
    """OUT-2, OUT-3, ...: the first that does not exist."""
    n = 2
    while out.with_name(f"{out.name}-{n}").exists():
        n += 1
    return out.with_name(f"{out.name}-{n}")


def _claim_out(out: Path, build_id: str, config: BuildConfig) -> None:
    """OUT becomes this build's, under the claim lock (parts may race here): the check of
    _check_record again, now with the build id. An OUT of the same build is kept (resume); one
    this build extends, or replaces with overwrite, loses its shards/ and manifests/."""
    try:
        record, unreadable = read_build_record(out), None
    except ValueError as e:
        record, unreadable = {"build_id": "(unknown)", "config": {}}, str(e)
    if record is None:
        _refuse_unclaimed(out, config)   # what it lets pass holds no shards/ or manifests/
    elif record["build_id"] == build_id:
        return
    elif not config.overwrite:
        changes = None if unreadable else record_changes(record["config"], config)
        if changes is None or changes.refused or changes.same:
            why = (f"made with other settings or sources ({unreadable})" if changes is None else
                   f"made with other settings ({'; '.join(changes.refused)})" if changes.refused
                   else f"made from other sources than the dataset holds now (they make build "
                        f"{build_id})")
            raise FileExistsError(_another_build(out, record, config, why))
    for sub in ("shards", "manifests"):
        shutil.rmtree(out / sub, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Helpers

def _reason_kind(reason: str) -> str:
    """"truncated: 10 of 20 frames decoded" -> "truncated" (for counting rejects by reason)."""
    return re.split(r"[:(]", reason, maxsplit=1)[0].strip() or reason


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("teminal")
    except Exception:  # pragma: no cover - not installed
        return "0+unknown"
