"""A build's catalog: its manifest fragments (one per shard, from every --part) merged into the
Parquet manifests and catalog.duckdb once every planned shard is done."""
from __future__ import annotations

import json
import os
from pathlib import Path

from teminal.manifests.vocabulary import catalog_command
from teminal.pipeline.build_options import command
from teminal.pipeline.layout import BUILD_FILE, MERGE_FILE, PARTS_DIR
from teminal.pipeline.paths import inside


def write_build_catalog(out: str | os.PathLike) -> Path:
    """Merge the build's fragments into the Parquet manifests and catalog.duckdb.

    Refuses when a planned shard is missing or belongs to another build."""
    from teminal.manifests.catalog import manifests_dir, write_catalog

    out = Path(out)
    build_file = out / PARTS_DIR / BUILD_FILE
    if not build_file.exists():
        if (manifests_dir(out) / MERGE_FILE).exists():
            merge = catalog_command(out)
            raise FileNotFoundError(f"{out} holds a merged catalog, not a build: "
                                    + (f"merge again with `{merge}`" if merge else
                                       "merge its builds again"))
        raise FileNotFoundError(f"{build_file} is missing: {out} holds no pipeline build (the "
                                f"catalog of a build is written in the --out that "
                                f"pipeline build wrote)")
    build = json.loads(build_file.read_text())
    samples, shards, missing = [], [], []
    for relpath in build["shards"]:
        tar = inside(out, relpath, str(build_file), what="shard path")   # read from a file
        stage, name = Path(relpath).parent.name, Path(relpath).stem
        frag = out / PARTS_DIR / stage / f"{name}.json"
        saved = json.loads(frag.read_text()) if frag.exists() else None
        if (saved is None or saved.get("build_id") != build["build_id"] or not tar.exists()
                or saved["shard"].get("path") != relpath
                or tar.stat().st_size != saved["shard"]["bytes"]):
            missing.append(relpath)
            continue
        shards.append(saved["shard"])
        samples.extend(saved["samples"])
    if missing:
        raise RuntimeError(
            f"build {build['build_id']} in {out} is incomplete: {len(missing)} of "
            f"{len(build['shards'])} shards missing or stale (first: {missing[0]}). "
            f"`{command(['--out', str(out)])}` finishes it here, every part at once (its "
            f"recorded settings; or finish each --part i/n on its own machine).")
    sources = [{k: v for k, v in s.items()} for s in build["sources"]]
    for s in sources:
        s["captions"] = list(s.get("captions") or [])
    builds = [{"build_id": build["build_id"], "config": json.dumps(build["config"], sort_keys=True),
               "version": build["version"], "synthetic": build["synthetic"]}]
    return write_catalog(out, {"sources": sources, "samples": samples, "shards": shards,
                               "rejects": build["rejects"], "builds": builds})
