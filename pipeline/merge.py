"""Several finished builds (one per dataset, each in its own OUT) in one catalog."""
from __future__ import annotations

import json
import os
import re
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from teminal.pipeline.layout import BUILD_FILE, MERGE_FILE, PARTS_DIR, write_json_atomic

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
    Rerunning a merge into the same OUT replaces it."""
    from teminal.manifests.catalog import manifests_dir, read_table, write_catalog
    from teminal.manifests.schema import TABLES

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

    tables: dict[str, list[dict]] = {t: [] for t in TABLES}
    links: list[tuple[Path, str]] = []          # (input tar, merged relpath)
    owner: dict[str, Path] = {}                 # sample key -> input folder
    rendered: dict[tuple, list[str]] = {}       # (sample_rate, num_samples) -> inputs
    datasets: dict[str, None] = {}
    for src in paths:
        mdir = manifests_dir(src)
        missing = [t for t in TABLES if not (mdir / f"{t}.parquet").is_file()]
        if missing:
            raise FileNotFoundError(
                f"{src} has no finished catalog (no {mdir / (missing[0] + '.parquet')}); finish "
                f"its build (`pipeline build` / `pipeline catalog {src}`) before merging")
        rows = {t: read_table(mdir / f"{t}.parquet") for t in TABLES}
        build_dataset = {b["build_id"]: json.loads(b["config"]).get("dataset", "") for b in rows["builds"]}
        shard_dataset = {r["shard"]: build_dataset.get(r["build_id"], r["dataset"]) for r in rows["samples"]}
        moved = {}
        for shard in rows["shards"]:
            dataset = sanitize_shard_tag(shard_dataset.get(shard["path"], "") or src.name)
            datasets[dataset] = None
            tar = src / shard["path"]
            if not tar.is_file() or tar.stat().st_size != shard["bytes"]:
                raise FileNotFoundError(f"{src}: shard {shard['path']} listed in its catalog is "
                                        "missing or changed; rebuild it before merging")
            moved[shard["path"]] = merged_shard_path(shard["path"], shard["split"], dataset)
            links.append((tar, moved[shard["path"]]))
            tables["shards"].append(shard | {"path": moved[shard["path"]]})
        for sample in rows["samples"]:
            if sample["key"] in owner:
                raise ValueError(
                    f"merge: sample {sample['key']} is in both {owner[sample['key']]} and {src}; "
                    "sample keys name their dataset (<dataset>-<stage>-<split>-NNNNNN), so two "
                    "builds of one dataset cannot share a catalog: merge builds of different "
                    "datasets")
            owner[sample["key"]] = src
            rendered.setdefault((sample["sample_rate"], sample["num_samples"]), [])
            if str(src) not in rendered[(sample["sample_rate"], sample["num_samples"])]:
                rendered[(sample["sample_rate"], sample["num_samples"])].append(str(src))
            tables["samples"].append(sample | {"shard": moved.get(sample["shard"], sample["shard"])})
        tables["sources"].extend(rows["sources"])
        tables["rejects"].extend(rows["rejects"])
        tables["builds"].extend(rows["builds"])
    if len(rendered) > 1:
        shown = "; ".join(f"{sr} Hz x {n / sr:g} s in {', '.join(ins)}"
                          for (sr, n), ins in sorted(rendered.items()))
        raise ValueError(f"merge: the builds were rendered differently ({shown}); a trainer reads "
                         "one rate and length: rebuild with equal --sample-rate and --clip-seconds")
    targets = [rel for _, rel in links]
    if len(set(targets)) != len(targets):
        raise ValueError("merge: two inputs hold shards of the same dataset and split; merge "
                         "builds of different datasets")
    tables["sources"] = list({r["source_id"]: r for r in reversed(tables["sources"])}.values())
    tables["builds"] = list({r["build_id"]: r for r in tables["builds"]}.values())

    shutil.rmtree(out / "shards", ignore_errors=True)   # an earlier merge's links
    counts: Counter = Counter()
    for tar, rel in links:
        counts[_place_shard(tar, out / rel, link)] += 1
    if counts.get("symlink") and link == "hard":
        log(f"NOTE: {counts['symlink']} shard(s) are on another file system than {out}: "
            "linked by relative symlink instead of a hard link")
    catalog = write_catalog(out, tables)
    write_json_atomic(manifests_dir(out) / MERGE_FILE,
                       {"inputs": [str(p) for p in paths], "link": link})
    return MergeSummary(str(out), [str(p) for p in paths], list(datasets),
                        len(tables["builds"]), len(tables["shards"]), len(tables["samples"]),
                        dict(counts), str(catalog))


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
