"""Several finished builds (one per dataset, each in its own OUT) in one catalog."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from teminal.manifests.catalog import manifests_dir, read_table, write_catalog
from teminal.manifests.schema import TABLES
from teminal.manifests.vocabulary import STAGE_RELATIONS, commands_text, remake_commands
from teminal.pipeline.layout import BUILD_FILE, MERGE_FILE, PARTS_DIR, write_json_atomic
from teminal.pipeline.paths import UnsafePath, inside, no_symlinks_at, relative_parts, safe_name
from teminal.pipeline.verify import OUTSIDE, manifest_problems, shard_problem

LINK_MODES = ("hard", "symlink", "copy")


@dataclass
class MergeSummary:
    out: str
    inputs: list[str]
    datasets: list[str]
    builds: int
    shards: int
    samples: int
    links: dict[str, int]          # how each shard reached OUT/shards: hard, symlink, copy
    catalog: str

    def format(self) -> str:
        return "\n".join([
            f"merged {len(self.inputs)} catalogs ({', '.join(self.datasets)}) -> {self.out}",
            f"  builds   {self.builds}   shards {self.shards}   samples {self.samples}",
            "  shards   " + ", ".join(f"{k} {v}" for k, v in sorted(self.links.items())),
            f"  catalog  {self.catalog}"])


def merge_catalogs(inputs: Sequence[str | os.PathLike], out: str | os.PathLike,
                   link: str = "hard", log: Callable[[str], None] = print) -> MergeSummary:
    """One catalog over several finished builds (each built into its own OUT, e.g. one per
    dataset), so that SQL and trainers see them together.

    OUT gets the union of the inputs' tables (every row keeps its `dataset` and `build_id`;
    `builds` holds one row per input build) and OUT/shards/<stage>/<split>-<dataset>-NNNNNN.tar,
    one entry per input shard, so OUT reads like any build: `samples.shard` and `shards.path`
    stay relative to OUT and `shards/<stage>/<split>-*.tar` finds every dataset's shards.
    `link`: "hard" links (no extra space; fall back to a relative symlink across file systems),
    "symlink" (relative, so OUT and the inputs can move together) or "copy". A hard link or copy
    keeps the merged catalog valid even if an input is rebuilt later; a symlink follows it.
    The group JSON inside each tar still names the shard's path in its own build.

    Refuses inputs whose sample keys collide (two builds of one dataset: rebuild one with another
    key prefix, or merge builds of different datasets), inputs rendered at different sample
    rates or lengths (a trainer reads one), incomplete builds, and an OUT that holds a build.
    Rerunning a merge into the same OUT replaces it.

    An input's manifests may come from anyone, so before anything is written every input must
    verify (its Parquet manifests equal its catalog, every shard its recorded size and sha256;
    `pipeline verify` checks the members too), and every shard path and split name it names
    must stay inside it and inside OUT: `..`, absolute paths, names that are not plain names
    and shards that are symlinks leading out of the input are refused, naming the file and the
    value. (So the output of a `--link symlink` merge cannot be merged again: merge the builds
    it came from.)"""
    out, paths = _checked_locations(inputs, out, link)
    plan = _MergePlan(out)
    for src in paths:
        plan.add(src)
    plan.check()
    shutil.rmtree(out / "shards", ignore_errors=True)   # an earlier merge's links
    counts: Counter = Counter()
    for tar, rel in plan.links:
        counts[_place_shard(tar, out / rel, link)] += 1
    if counts.get("symlink") and link == "hard":
        log(f"NOTE: {counts['symlink']} shard(s) are on another file system than {out}: "
            "linked by relative symlink instead of a hard link")
    catalog = write_catalog(out, plan.tables)
    write_json_atomic(manifests_dir(out) / MERGE_FILE,
                       {"inputs": [str(p) for p in paths], "link": link})
    return MergeSummary(str(out), [str(p) for p in paths], list(plan.datasets),
                        len(plan.tables["builds"]), len(plan.tables["shards"]),
                        len(plan.tables["samples"]), dict(counts), str(catalog))


def _checked_locations(inputs, out, link: str) -> tuple[Path, list[Path]]:
    """(OUT, the input folders), absolute, once the link mode is known, every input is given
    once, OUT is none of them and holds no build, and OUT/shards, OUT/manifests are no links."""
    if link not in LINK_MODES:
        raise ValueError(f"link mode {link!r}: choose one of {', '.join(LINK_MODES)}")
    out = Path(out).absolute()
    paths = [Path(p).absolute() for p in inputs]
    if not paths:
        raise ValueError("merge: give at least one build folder to merge")
    if len(set(paths)) != len(paths):
        raise ValueError("merge: the same build folder is given twice")
    if out in paths:
        raise ValueError(f"merge: the output {out} is also an input; merge into a new folder")
    if (out / PARTS_DIR / BUILD_FILE).exists():
        raise FileExistsError(f"{out} holds a pipeline build; merge into a new or empty folder "
                              "(or a folder an earlier merge wrote)")
    no_symlinks_at(out, ("shards", "manifests"), "merge --out")
    return out, paths


class _MergePlan:
    """The merged tables and the shard links, input by input, each input checked before any
    of its rows is taken (see merge_catalogs)."""

    def __init__(self, out: Path):
        self.out = out
        self.tables: dict[str, list[dict]] = {t: [] for t in TABLES}
        self.links: list[tuple[Path, str]] = []          # (input tar, merged relpath)
        self.owner: dict[str, Path] = {}                 # sample key -> input folder
        self.rendered: dict[tuple, list[str]] = {}       # (sample_rate, num_samples) -> inputs
        self.datasets: dict[str, None] = {}

    def add(self, src: Path) -> None:
        rows = _verified_tables(src)
        moved = self._add_shards(src, rows)
        self._add_samples(src, rows["samples"], moved)
        for table in ("sources", "rejects", "builds"):
            self.tables[table].extend(rows[table])

    def _add_shards(self, src: Path, rows: dict) -> dict[str, str]:
        """Plan a link per input shard, tagged with its dataset; returns input -> merged path."""
        mdir = manifests_dir(src)
        build_dataset = {b["build_id"]: _config_dataset(b, mdir) for b in rows["builds"]}
        shard_dataset = {r["shard"]: build_dataset.get(r["build_id"], r["dataset"])
                         for r in rows["samples"]}
        moved = {}
        for shard in rows["shards"]:
            dataset = sanitize_shard_tag(shard_dataset.get(shard["path"], "") or src.name)
            self.datasets[dataset] = None
            tar = _input_shard(src, shard, mdir / "shards.parquet")
            moved[shard["path"]] = merged_shard_path(shard["path"], shard["split"], dataset)
            inside(self.out, moved[shard["path"]], f"{mdir / 'shards.parquet'}", write=True,
                   what="merged shard path")
            self.links.append((tar, moved[shard["path"]]))
            self.tables["shards"].append(shard | {"path": moved[shard["path"]]})
        return moved

    def _add_samples(self, src: Path, samples: list[dict], moved: dict[str, str]) -> None:
        mdir = manifests_dir(src)
        for sample in samples:
            if sample["shard"] not in moved:
                raise UnsafePath(f"{mdir / 'samples.parquet'}: sample {sample['key']!r} names "
                                 f"shard {sample['shard']!r}, which its shards table does not "
                                 f"list; refusing to merge {src}")
            if sample["key"] in self.owner:
                raise ValueError(
                    f"merge: sample {sample['key']} is in both {self.owner[sample['key']]} and "
                    f"{src}; sample keys name their dataset (<dataset>-<stage>-<split>-NNNNNN), "
                    "so two builds of one dataset cannot share a catalog: merge builds of "
                    "different datasets")
            self.owner[sample["key"]] = src
            inputs = self.rendered.setdefault((sample["sample_rate"], sample["num_samples"]), [])
            if str(src) not in inputs:
                inputs.append(str(src))
            self.tables["samples"].append(sample | {"shard": moved[sample["shard"]]})

    def check(self) -> None:
        """One rendering (rate and length) and one merged path per shard; then the sources and
        builds that several inputs share are kept once."""
        if len(self.rendered) > 1:
            shown = "; ".join(f"{sr} Hz x {n / sr:g} s in {', '.join(ins)}"
                              for (sr, n), ins in sorted(self.rendered.items()))
            raise ValueError(f"merge: the builds were rendered differently ({shown}); a trainer "
                             "reads one rate and length: rebuild with equal --sample-rate and "
                             "--clip-seconds")
        targets = [rel for _, rel in self.links]
        if len(set(targets)) != len(targets):
            raise ValueError("merge: two inputs hold shards of the same dataset and split; merge "
                             "builds of different datasets")
        self.tables["sources"] = list({r["source_id"]: r
                                       for r in reversed(self.tables["sources"])}.values())
        self.tables["builds"] = list({r["build_id"]: r for r in self.tables["builds"]}.values())


def _verified_tables(src: Path) -> dict[str, list[dict]]:
    """The rows of an input's Parquet manifests, once its catalog is finished and verifies."""
    mdir = manifests_dir(src)
    missing = [t for t in TABLES if not (mdir / f"{t}.parquet").is_file()]
    if missing:
        remake = remake_commands(src)
        raise FileNotFoundError(
            f"{src} has no finished catalog (no {mdir / (missing[0] + '.parquet')}); " +
            (f"finish it before merging: {commands_text(remake)}" if remake else
             "it holds no build record: give each folder that pipeline build --out wrote"))
    _refuse_unverified(src, manifest_problems(src))
    return {t: read_table(mdir / f"{t}.parquet") for t in TABLES}


def _refuse_unverified(src: Path, problems: list[str]) -> None:
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ValueError(f"merge: {src} does not verify: {problems[0]}{more}; {_repair(src)}")


def _repair(src: Path) -> str:
    """How to repair an input that does not verify: the commands made from its own record."""
    remake = remake_commands(src)
    verify = f"`{shlex.join(['pipeline', 'verify', '--data', str(src)])}` lists every problem"
    return (f"{verify} and {commands_text(remake)} repair{'s' * (len(remake) == 1)} it; then "
            f"merge again" if remake else f"{verify}; build it again, then merge again")


def _config_dataset(build: dict, mdir: Path) -> str:
    try:
        return str(json.loads(build["config"]).get("dataset", ""))
    except (TypeError, ValueError, AttributeError):
        raise ValueError(f"{mdir / 'builds.parquet'}: build {build.get('build_id')!r} has no "
                         f"readable config; {_repair(mdir.parent)}") from None


def _input_shard(src: Path, shard: dict, source: Path) -> Path:
    """The tar of an input's `shards` row, once its path is shards/<stage>/<name>.tar inside
    `src` (no link leading out), its split a plain name, and its size and sha256 as recorded."""
    rel = relative_parts(shard["path"], str(source), "shard path")
    safe_name(shard["split"], str(source), "split name")
    if (shard["stage"] not in STAGE_RELATIONS or len(rel.parts) != 3
            or rel.parts[:2] != ("shards", shard["stage"]) or rel.suffix != ".tar"):
        raise UnsafePath(f"{source}: shard path {shard['path']!r} is not "
                         f"shards/<stage>/<split>-NNNNNN.tar with a stage of "
                         f"{', '.join(STAGE_RELATIONS)}; refusing to merge {src}")
    problem = shard_problem(src, shard["path"], shard["bytes"], shard["sha256"])
    if problem:
        hint = (" (an output of `--link symlink`: merge the builds it came from)"
                if (src / rel).is_symlink() else f"; {_repair(src)}")
        raise (UnsafePath if problem.startswith(OUTSIDE) else FileNotFoundError)(
            f"{src}: shard {shard['path']} listed in its catalog: {problem}{hint}")
    return src / rel


def sanitize_shard_tag(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_") or "data"


def merged_shard_path(relpath: str, split: str, dataset: str) -> str:
    """shards/b/train-000001.tar -> shards/b/train-clotho-000001.tar (a path already tagged
    with its dataset, from an earlier merge, is kept)."""
    path = Path(relpath)
    rest = path.name[len(split) + 1:] if path.name.startswith(f"{split}-") else path.name
    if not rest.startswith(f"{dataset}-"):
        rest = f"{dataset}-{rest}"
    return (path.parent / f"{split}-{rest}").as_posix()


def _place_shard(src: Path, dst: Path, link: str) -> str:
    dst.parent.mkdir(parents=True, exist_ok=True)
    src = src.resolve()   # a shard of an earlier merge may itself be a symlink
    if link == "hard":
        try:
            os.link(src, dst)
            return "hard"
        except OSError:
            link = "symlink"   # another file system (or one without hard links)
    if link == "symlink":
        os.symlink(os.path.relpath(src, dst.parent), dst)
        return "symlink"
    tmp = dst.with_name(f"{dst.name}.tmp-{os.getpid()}")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    return "copy"
