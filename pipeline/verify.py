"""`pipeline verify OUT`: check a build's files against its catalog, byte for byte.

Every Parquet manifest must hold the same rows as the catalog's table of that name (compared by
a digest of the rows, so an edited `samples.parquet` is caught); every shard listed in the
catalog must lie inside OUT and exist with its recorded size and sha256; every member in it must
have its `samples` row with the same sha256; every row must have its member in a listed shard;
shard files the catalog does not list are reported too. With `rerender=N`, N recipes (a fixed
sample by key) are re-rendered from the source files and must give the stored bytes again.
`pipeline info` reads only the catalog; this reads every byte. `pipeline catalog --merge` runs
the manifest and shard checks (not the member ones) on every input before merging it.
"""
from __future__ import annotations

import random
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from teminal.manifests.catalog import Catalog, manifests_dir, parquet_digest
from teminal.manifests.digests import file_sha256
from teminal.manifests.shard_codec import CorruptShard, check_member
from teminal.manifests.schema import TABLES
from teminal.manifests.vocabulary import (catalog_command, commands_text, parse_member_name,
                                          remake_commands)


@dataclass
class VerifyReport:
    out: str
    shards: int = 0
    members: int = 0
    rerendered: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self, limit: int = 50) -> str:
        lines = [f"verify {self.out}: {self.shards} shards, {self.members} members checked"
                 + (f", {self.rerendered} recipes re-rendered" if self.rerendered else "")]
        lines += [f"  PROBLEM {p}" for p in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"  ... and {len(self.problems) - limit} more")
        lines.append("OK: every shard, member and row agrees with the catalog" if self.ok else
                     f"{len(self.problems)} problem(s)" + _remake_text(self.out))
        return "\n".join(lines)


def _remake_text(out) -> str:
    """"; `pipeline build --out OUT` re-creates damaged shards" (the commands of OUT's record)."""
    remake = remake_commands(out)
    return f"; {commands_text(remake)} re-create damaged shards" if remake else ""


def _catalog_text(out) -> str:
    command = catalog_command(out)
    return f" with `{command}`" if command else ""


def verify_build(out, rerender: int = 0, root=None, seed: int = 0) -> VerifyReport:
    out = Path(out)
    with Catalog.open(out) as catalog:
        shards = [(r.path, r.bytes, r.sha256) for r in catalog.shards()]
        rows = catalog.member_digests()
    report = VerifyReport(str(out), shards=len(shards))
    report.problems += manifest_problems(out)
    seen: set[str] = set()
    readable: set[str] = set()
    for path, size, sha in shards:
        problem = shard_problem(out, path, size, sha)
        if problem:
            report.problems.append(f"{path}: {problem}")
        if problem and problem.startswith(OUTSIDE):
            continue      # never opened
        try:
            report.members += _check_members(out / path, path, rows, seen, report.problems)
            readable.add(path)
        except (tarfile.TarError, OSError, EOFError) as e:
            if not problem:
                report.problems.append(f"{path}: unreadable tar ({e})")
    listed = {p for p, _, _ in shards}
    for key, (shard, _sha) in sorted(rows.items()):
        if shard not in listed:
            report.problems.append(f"catalog row {key} names shard {shard!r}, which the shards "
                                   f"table does not list")
        elif key not in seen and shard in readable:
            report.problems.append(f"{shard}: no member for catalog row {key}")
    for tar in sorted((out / "shards").rglob("*.tar")) if (out / "shards").is_dir() else []:
        rel = tar.relative_to(out).as_posix()
        if rel not in listed:
            report.problems.append(f"{rel}: shard file not in the catalog (left from another "
                                   f"build?)")
    if rerender:
        _rerender_sample(out, sorted(rows), rerender, root, seed, report)
    return report


OUTSIDE = "refused:"   # a shard path that leaves OUT: reported, never opened


def shard_problem(out: Path, relpath, size, sha) -> str | None:
    """What is wrong with shard `relpath` of the build in `out` against its catalog row (None:
    nothing): outside OUT (by `..`, an absolute path or a symlink), missing, another size, or
    another sha256."""
    from teminal.pipeline.paths import UnsafePath, inside

    try:
        path = inside(out, relpath, f"{out}/manifests shards table", what="shard path")
    except UnsafePath as e:
        return f"{OUTSIDE} {e}"
    return _check_shard(path, size, sha)


def manifest_problems(out) -> list[str]:
    """One problem per Parquet manifest whose rows differ from the catalog's table of the same
    name (or that is missing or unreadable): both are reduced to a count and a digest of their
    rows, so the check reads every row once and holds none in Python."""
    import duckdb

    mdir = manifests_dir(out)
    with Catalog.open(out) as catalog:
        expected = {t: catalog.table_digest(t) for t in TABLES}
    problems = []
    for table in TABLES:
        path = mdir / f"{table}.parquet"
        if not path.is_file() or path.is_symlink():
            problems.append(f"{path}: missing (or a link); rewrite the manifests"
                            + _catalog_text(out))
            continue
        try:
            found = parquet_digest(path, table)
        except duckdb.Error as e:
            problems.append(f"{path}: unreadable as the {table} table "
                            f"({' '.join(str(e).split())[:200]})")
            continue
        if found != expected[table]:
            problems.append(
                f"{path}: its rows differ from the catalog's {table} table ({found[0]} rows "
                f"vs {expected[table][0]}; edited after the build?); rewrite the manifests"
                + _catalog_text(out))
    return problems


def _check_shard(path: Path, size, sha) -> str | None:
    if not path.is_file():
        return "missing"
    if size is None or not sha:   # a build always records both: nothing to check against
        return "the catalog records no size or sha256 for it"
    actual = path.stat().st_size
    if actual != size:
        return f"{actual} bytes, the catalog says {size}"
    if file_sha256(path) != sha:
        return "sha256 differs from the catalog (same size: bytes changed)"
    return None


def _check_members(path: Path, rel: str, rows: dict, seen: set, problems: list) -> int:
    """Every member of the shard against its catalog row (sample key -> (shard, sha256)), with
    the shard codec's check that the training stream and the evaluator use too."""
    n = 0
    with tarfile.open(path, mode="r:") as tar:
        for info in tar:
            if not info.isfile():
                continue
            name = parse_member_name(info.name)
            if name.is_meta:
                continue
            member = f"{name.group_key}.{name.suffix}"
            data = tar.extractfile(info).read()
            n += 1
            if name.sample_key not in rows:
                problems.append(f"{rel}: member {member} has no catalog row")
                continue
            seen.add(name.sample_key)
            shard, sha = rows[name.sample_key]
            if shard != rel:
                problems.append(f"{rel}: member {member} belongs to {shard} in the catalog")
                continue
            try:
                check_member(data, sha, member, rel)
            except CorruptShard:
                problems.append(f"{rel}: member {member} sha256 differs from its catalog row")
    return n


def _rerender_sample(out: Path, keys: list[str], n: int, root, seed: int,
                     report: VerifyReport) -> None:
    from teminal.pipeline.render import rerender

    for key in random.Random(seed).sample(keys, min(n, len(keys))):
        try:
            result = rerender(out, key, root=root)
        except (FileNotFoundError, KeyError, ValueError) as e:
            report.problems.append(f"re-render {key}: {str(e).strip(chr(39))}")
            continue
        report.rerendered += 1
        if not result.match:
            report.problems.append(f"re-render {key}: sha256 catalog {result.expected[:12]}, "
                                   f"stored {result.stored[:12]}, re-rendered "
                                   f"{result.actual[:12]} differ")
