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

import hashlib
import os
import random
import tarfile
from dataclasses import dataclass, field
from pathlib import Path


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
                     f"{len(self.problems)} problem(s); rerunning the same `pipeline build` "
                     f"re-creates damaged shards")
        return "\n".join(lines)


def verify_build(out, rerender: int = 0, root=None, seed: int = 0) -> VerifyReport:
    from teminal.manifests.catalog import reading

    out = Path(out)
    with reading(out) as con:
        shards = con.execute("SELECT path, bytes, sha256 FROM shards ORDER BY path").fetchall()
        rows = {k: (shard, sha) for k, shard, sha in con.execute(
            "SELECT key, shard, sha256 FROM samples").fetchall()}
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

    from teminal.manifests.catalog import manifests_dir, reading
    from teminal.manifests.schema import TABLES

    mdir = manifests_dir(out)
    with reading(out) as con:
        expected = {t: con.execute(_digest_sql(t, t)).fetchone() for t in TABLES}
    problems = []
    files = duckdb.connect()   # the Parquet files: a private connection, only our own SQL
    try:
        for table in TABLES:
            path = mdir / f"{table}.parquet"
            if not path.is_file() or path.is_symlink():
                problems.append(f"{path}: missing (or a link); rewrite the manifests with "
                                f"`pipeline catalog {out}`")
                continue
            sql_path = str(path).replace("'", "''")
            try:
                found = files.execute(_digest_sql(table, f"read_parquet('{sql_path}')")).fetchone()
            except duckdb.Error as e:
                problems.append(f"{path}: unreadable as the {table} table "
                                f"({' '.join(str(e).split())[:200]})")
                continue
            if found != expected[table]:
                problems.append(
                    f"{path}: its rows differ from the catalog's {table} table ({found[0]} rows "
                    f"vs {expected[table][0]}; edited after the build?); rebuild the manifests "
                    f"with `pipeline catalog {out}`, or rebuild")
    finally:
        files.close()
    return problems


def _digest_sql(table: str, source: str) -> str:
    """(rows, sha256 over the sorted sha256 of each row's JSON) of `source` as `table`: equal
    for equal multisets of rows, whatever their order (ties in a sort key included)."""
    from teminal.manifests.schema import columns

    row = "{" + ", ".join(f"'{c}': \"{c}\"" for c in columns(table)) + "}"
    return (f"SELECT count(*), sha256(coalesce(string_agg(h, '' ORDER BY h), '')) FROM "
            f"(SELECT sha256(to_json({row})) AS h FROM {source})")


def _check_shard(path: Path, size, sha) -> str | None:
    if not path.is_file():
        return "missing"
    if size is None or not sha:   # a build always records both: nothing to check against
        return "the catalog records no size or sha256 for it"
    actual = path.stat().st_size
    if actual != size:
        return f"{actual} bytes, the catalog says {size}"
    from teminal.pipeline.shards import file_sha256

    if file_sha256(path) != sha:
        return "sha256 differs from the catalog (same size: bytes changed)"
    return None


def _check_members(path: Path, rel: str, rows: dict, seen: set, problems: list) -> int:
    n = 0
    with tarfile.open(path, mode="r:") as tar:
        for info in tar:
            if not info.isfile():
                continue
            name = os.path.basename(info.name)
            group, _, suffix = name.partition(".")
            if suffix == "json":
                continue
            relation = suffix.rsplit(".", 1)[0]
            key = f"{group}.{relation}"
            data = tar.extractfile(info).read()
            n += 1
            if key not in rows:
                problems.append(f"{rel}: member {name} has no catalog row")
                continue
            seen.add(key)
            shard, sha = rows[key]
            if shard != rel:
                problems.append(f"{rel}: member {name} belongs to {shard} in the catalog")
            elif sha and hashlib.sha256(data).hexdigest() != sha:
                problems.append(f"{rel}: member {name} sha256 differs from its catalog row")
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
