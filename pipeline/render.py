"""Rendering: one shard from its plan and the source pool (in any process), and one sample
again from its catalog row and the source files (`rerender`, to check a stored member).

A shard writes its tar atomically, then its manifest fragment; `shard_done` recognises a
finished shard of a build, so that a killed build resumes where it stopped.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from teminal.manifests.digests import file_sha256, sha256_hex
from teminal.manifests.shard_codec import encode_member
from teminal.manifests.vocabulary import member_name
from teminal.pipeline.audio import AudioError, load_source
from teminal.pipeline.compose import (ComposeConfig, SampleRecipe, make_group_recipes,
                                      render_detailed)
from teminal.pipeline.layout import write_json_atomic
from teminal.pipeline.paths import inside, relative_parts
from teminal.pipeline.plan import ShardTask
from teminal.pipeline.pool import pool_waves
from teminal.pipeline.shards import ShardWriter
from teminal.pipeline.sources.base import SourceClip


PART_CACHE_MAX = 128   # prepared parts kept per shard (each at most one member long)


@dataclass(frozen=True)
class ShardContext:
    out: str
    build_id: str
    seed: int
    codec: str
    compose: dict
    pool_path: str


def build_shard(task: ShardTask, ctx: ShardContext, pool_index: Mapping[str, tuple[int, int]]) -> dict:
    """Plan each group's recipes (cuts and augmentation chosen from the seed and the sources),
    render them from the recipes alone, encode, and write the shard and its fragment; returns
    the `shards` row."""
    compose = ComposeConfig.from_dict(ctx.compose)
    out = Path(ctx.out)
    rows = []
    parts: dict = {}   # prepared parts, shared by the shard's groups (render_detailed's cache)
    # the writer hashes each member into its row (and the shard) while the next group renders
    with ShardWriter(out / task.relpath) as writer:
        for i, (a, b) in enumerate(task.pairs):
            a, b = SourceClip.from_dict(a), SourceClip.from_dict(b)
            waves = pool_waves(ctx.pool_path, {s: pool_index[s] for s in (a.source_id, b.source_id)})
            recipes = make_group_recipes(task.stage, task.split, task.first_group + i, a, b,
                                         compose, ctx.seed, waves)
            members = []
            if len(parts) > PART_CACHE_MAX:
                parts.clear()     # bounded memory whatever the shard size; output is the same
            for recipe in recipes:
                rendering = render_detailed(recipe, waves, parts)
                recipe.gains_db = rendering.gains_db      # measured, for analysis; never read back
                data, ext = encode_member(rendering.audio, recipe.sample_rate, ctx.codec)
                recipe.shard, recipe.build_id = task.relpath, ctx.build_id
                members.append((member_name(recipe.group_key, recipe.relation, ext), data))
            group_rows = [r.to_dict() for r in recipes]   # sha256 filled in by the writer
            meta = {"group_key": recipes[0].group_key, "stage": task.stage, "split": task.split,
                    "dataset": recipes[0].dataset, "build_id": ctx.build_id, "samples": group_rows}
            writer.add(recipes[0].group_key, meta, members)
            rows.extend(group_rows)
    written = writer.written
    shard_row = {"path": task.relpath, "stage": task.stage, "split": task.split,
                 "num_groups": written.num_groups, "num_samples": written.num_members,
                 "bytes": written.bytes, "sha256": written.sha256}
    write_json_atomic(out / task.fragment,
                       {"build_id": ctx.build_id, "shard": shard_row, "samples": rows})
    return shard_row


def shard_job(job: tuple[ShardTask, ShardContext, dict]) -> dict:
    """`build_shard` for a process pool: one job tuple."""
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
    # Same size is not same bytes: a finished shard is trusted only when its hash still matches
    # (reading it costs far less than re-rendering it).
    if row.get("sha256") != file_sha256(tar):
        return None
    return row



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

    from teminal.manifests.catalog import Catalog

    out = Path(out)
    with Catalog.open(out) as catalog:
        row = catalog.sample(key)
        if row is None:
            near = catalog.keys_like(key)
            hint = f"; did you mean {', '.join(near)}?" if near else " (keys look like esc50-b-test-000000.forward)"
            raise KeyError(f"no sample {key!r} in {out}{hint}")
        recipe = SampleRecipe.from_dict(row)
        paths = catalog.source_paths(recipe.source_ids)
        config = next((b.config for b in catalog.builds() if b.build_id == recipe.build_id), {})
    shard = inside(out, recipe.shard, f"{out} catalog row {key}", what="shard path")
    waves = {}
    for sid in recipe.source_ids:
        path = source_file(paths[sid], config.get("root"), root, f"{out} sources table")
        if not path.exists():
            raise missing_source(key, sid, path, config.get("root"), root)
        try:
            waves[sid] = load_source(path, recipe.sample_rate)
        except AudioError as e:
            raise ValueError(f"{key}: source {path} cannot be used ({e}); it changed since "
                             f"the build") from None
    audio = render_detailed(recipe, waves).audio
    data, ext = encode_member(audio, recipe.sample_rate, config.get("codec", "flac"))
    member = member_name(recipe.group_key, recipe.relation, ext)
    with tarfile.open(shard, "r:") as tar:
        try:
            stored = sha256_hex(tar.extractfile(member).read())
        except KeyError:
            raise KeyError(f"shard {recipe.shard} has no member {member}") from None
    return Rerendered(recipe.key, audio, recipe.sample_rate, recipe.caption, recipe.source_ids,
                      recipe.sha256, stored, sha256_hex(data))


# -- where a build's sources are now (pipeline render / verify --rerender, ZSTE's timing sweep) --

def source_file(path: str | os.PathLike, build_root: str | None,
                root: str | os.PathLike | None, source: str) -> Path:
    """The file a `sources` row names (`path`, as the build recorded it), where it is now: the
    recorded path, or with `root` (`--root`: the dataset folder's current location) the same
    path relative to the build's root (`build_root`), under `root`. `source` names the table in
    the message of a path that climbs out."""
    path = Path(path)
    if root is None or not build_root:
        return path
    try:
        rel = path.relative_to(build_root)
    except ValueError:
        raise ValueError(f"source {path} is not under the build's root {build_root}, so --root "
                         f"cannot map it") from None
    # lexical only: a dataset may keep its audio behind links (git-annex, DVC)
    return Path(root) / relative_parts(rel.as_posix(), source, "source path")


def missing_source(what: str, sid: str, path: Path, build_root: str | None,
                   root: str | os.PathLike | None) -> FileNotFoundError:
    """The one message for a source that is not where the catalog (or --root) says: which
    file, and how to point at it."""
    hint = (f"pass --root with the dataset's new folder (the build read it from {build_root})"
            if root is None else f"--root {root} does not hold it either")
    return FileNotFoundError(f"{what}: source {sid} is not at {path} (the dataset moved or was "
                             f"deleted since the build); {hint}")
