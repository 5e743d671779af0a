"""`pipeline verify OUT`: check a build's files against its catalog, byte for byte.

Every shard listed in the catalog must exist with its recorded size and sha256; every member in
it must have its `samples` row with the same sha256; every row must have its member; shard
files the catalog does not list are reported too. With `rerender=N`, N recipes (a fixed sample
by key) are re-rendered from the source files and must give the stored bytes again.
`pipeline info` reads only the catalog; this reads every byte.
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
    from teminal.manifests.catalog import connect

    out = Path(out)
    con = connect(out)
    try:
        shards = con.execute("SELECT path, bytes, sha256 FROM shards ORDER BY path").fetchall()
        rows = {k: (shard, sha) for k, shard, sha in con.execute(
            "SELECT key, shard, sha256 FROM samples").fetchall()}
    finally:
        con.close()
    report = VerifyReport(str(out), shards=len(shards))
    seen: set[str] = set()
    readable: set[str] = set()
    for path, size, sha in shards:
        problem = _check_shard(out / path, size, sha)
        if problem:
            report.problems.append(f"{path}: {problem}")
        try:
            report.members += _check_members(out / path, path, rows, seen, report.problems)
            readable.add(path)
        except (tarfile.TarError, OSError, EOFError) as e:
            if not problem:
                report.problems.append(f"{path}: unreadable tar ({e})")
    for key, (shard, _sha) in sorted(rows.items()):
        if key not in seen and shard in readable:
            report.problems.append(f"{shard}: no member for catalog row {key}")
    listed = {p for p, _, _ in shards}
    for tar in sorted((out / "shards").rglob("*.tar")) if (out / "shards").is_dir() else []:
        rel = tar.relative_to(out).as_posix()
        if rel not in listed:
            report.problems.append(f"{rel}: shard file not in the catalog (left from another "
                                   f"build?)")
    if rerender:
        _rerender_sample(out, sorted(rows), rerender, root, seed, report)
    return report


def _check_shard(path: Path, size, sha) -> str | None:
    if not path.is_file():
        return "missing"
    actual = path.stat().st_size
    if size is not None and actual != size:
        return f"{actual} bytes, the catalog says {size}"
    from teminal.pipeline.shards import file_sha256

    if sha and file_sha256(path) != sha:
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
