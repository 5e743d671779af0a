"""Where a build keeps its working files in OUT, and how they are written (atomically).

    OUT/shards/<stage>/<split>-NNNNNN.tar         the WebDataset shards  } what readers see:
    OUT/manifests/{sources,...}.parquet, catalog.duckdb   the catalog  } teminal.manifests.vocabulary
    OUT/manifests/parts/build.json                the build's plan: id, config, sources, shards
    OUT/manifests/parts/<stage>/<split>-NNNNNN.json  one fragment per finished shard
    OUT/manifests/merge.json                      instead of build.json: a merged catalog
    OUT/.cache/pool-<key>.{f32,json}              the decoded source pool (teminal.pipeline.pool)
"""
from __future__ import annotations

import json
import os
from pathlib import Path

# the records (build.json; merge.json marks an OUT holding a merged catalog,
# teminal.pipeline.merge) are part of the contract: readers' hints remake OUT from them
from teminal.manifests.vocabulary import BUILD_FILE, MERGE_FILE, PARTS_DIR  # noqa: F401

CACHE_DIR = ".cache"


def fragment_relpath(stage: str, split: str, index: int) -> str:
    """OUT-relative path of the manifest fragment of shard `index` of (stage, split)."""
    return f"{PARTS_DIR}/{stage}/{split}-{index:06d}.json"


def build_record_path(out) -> Path:
    return Path(out) / PARTS_DIR / BUILD_FILE


def read_build_record(out) -> dict | None:
    """OUT's build.json (the build's id, settings, sources and plan), None when OUT holds none;
    a ValueError naming the file when it cannot be read. Reading never writes OUT."""
    path = build_record_path(out)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is unreadable ({e})") from None
    try:
        record = json.loads(text)
    except ValueError as e:
        raise ValueError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(record, dict) or not isinstance(record.get("config"), dict) or \
            "build_id" not in record:
        raise ValueError(f"{path} is not a build record (no build_id and config)")
    return record


def write_json_atomic(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
    os.replace(tmp, path)
