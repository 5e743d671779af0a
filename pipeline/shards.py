"""WebDataset shards written byte-for-byte deterministically, and a plain reader for them.

A shard is a POSIX ustar archive (no PAX headers, so no timestamps) whose members carry fixed
metadata (mtime 0, uid/gid 0, empty owner names, mode 0644) in a fixed order: groups in key
order, each group's members sorted by name. It is written under a temporary name and renamed
into place, so a shard path either does not exist or holds a complete shard.

Layout (teminal.manifests.vocabulary): OUT/shards/<stage>/<split>-NNNNNN.tar; per group
`<group_key>.json` and one `<group_key>.<relation>.<ext>` per member (teminal.manifests.
shard_codec: ext "flac", or "npy" for raw int16 PCM).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import queue
import tarfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

import numpy as np

from teminal.manifests.catalog import ShardContents
from teminal.manifests.shard_codec import (CorruptShard, check_group_build, check_member,  # noqa: F401
                                           decode_member, unreadable_shard)
from teminal.manifests.vocabulary import GROUP_META, parse_member_name

TMP_MARK = ".tmp-"
QUEUED_GROUPS = 2   # groups rendered ahead of the writer thread (each a few MB at most)


@dataclass(frozen=True)
class WrittenShard:
    path: Path
    bytes: int
    sha256: str
    num_groups: int
    num_members: int


Group = tuple[str, dict, Sequence[tuple[str, bytes]]]   # (group key, meta, [(member name, bytes)])


class ShardWriter:
    """One shard, written while its caller renders the next group.

    `add(key, meta, members)` checks the group and hands it to a writer thread, which hashes
    each member into the sha256 of its row in `meta["samples"]` (matched by sample key, before
    the group's JSON is written), then writes the group's entries in name order through a sink
    that hashes the whole stream as it passes. So each member and the shard are hashed in the
    pass that writes them, on a core of their own (hashing and file writes release the GIL),
    and nothing is read back. `close()` renames the shard into place and returns what was
    written; leaving a `with` block by an exception removes the temporary file instead."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f"{self.path.name}{TMP_MARK}{os.getpid()}")
        self._last_key: str | None = None
        self._groups = self._members = 0
        self._error: BaseException | None = None
        self.written: WrittenShard | None = None
        self._queue: queue.Queue = queue.Queue(maxsize=QUEUED_GROUPS)
        self._raw = open(self._tmp, "wb")
        self._sink = _HashingWriter(self._raw, hashlib.sha256())
        self._tar = tarfile.open(fileobj=self._sink, mode="w", format=tarfile.USTAR_FORMAT,
                                 copybufsize=4 << 20)
        self._thread = threading.Thread(target=self._write_groups, name="shard-writer",
                                        daemon=True)
        self._thread.start()

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, kind, error, tb) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()

    def add(self, key: str, meta: dict, members: Sequence[tuple[str, bytes]]) -> None:
        """Queue one group. Keys must be sanitised ids (no dot: webdataset splits a key at its
        first one), unique and added in sorted order; member names start with the key and a
        dot."""
        if "." in key:
            raise ValueError(f"group key {key!r} has a dot; keys must be sanitised ids")
        if self._last_key is not None and key <= self._last_key:
            raise ValueError(f"{self.path}: group keys must be unique and sorted ({key!r} after "
                             f"{self._last_key!r})")
        for name, _ in members:
            if not name.startswith(key + "."):
                raise ValueError(f"member {name!r} does not belong to group {key!r}")
        self._last_key = key
        self._groups += 1
        self._members += len(members)
        self._queue.put((key, meta, list(members)))

    def close(self) -> WrittenShard:
        if self.written is not None:
            return self.written
        self._stop()
        try:
            if self._error is not None:
                raise self._error
            self._tar.close()
            self._raw.close()
            # No fsync: the rename makes a shard appear whole to a rerun after a killed process;
            # after a power loss the resume check (size and sha256 in the fragment) catches it.
            os.replace(self._tmp, self.path)
        except BaseException:
            self._discard()
            raise
        self.written = WrittenShard(self.path, self._sink.size, self._sink.digest.hexdigest(),
                                    self._groups, self._members)
        return self.written

    def abort(self) -> None:
        self._stop()
        self._discard()

    def _stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _discard(self) -> None:
        self._raw.close()
        self._tmp.unlink(missing_ok=True)

    def _write_groups(self) -> None:
        while (group := self._queue.get()) is not None:
            if self._error is None:    # after a failure, drain the queue so `add` never blocks
                try:
                    self._write_group(*group)
                except BaseException as e:   # raised in the caller's thread by close()
                    self._error = e

    def _write_group(self, key: str, meta: dict, members: list[tuple[str, bytes]]) -> None:
        rows = {row.get("key"): row for row in meta.get("samples", ())
                if isinstance(row, dict)} if isinstance(meta, dict) else {}
        for name, data in members:
            row = rows.get(parse_member_name(name).sample_key)
            if row is not None:
                row["sha256"] = hashlib.sha256(data).hexdigest()
        entries = [(f"{key}.{GROUP_META}", _json_bytes(meta))] + members
        for name, data in sorted(entries):
            self._tar.addfile(_tarinfo(name, len(data)), io.BytesIO(data))


def write_shard(path: str | os.PathLike, groups: Sequence[Group]) -> WrittenShard:
    """Write groups [(group_key, meta, [(member name, bytes), ...]), ...] to `path` atomically
    (`ShardWriter`: each row of `meta["samples"]` gets its member's sha256). `meta` becomes
    `<group_key>.json` (sorted keys, compact)."""
    keys = [g[0] for g in groups]
    if keys != sorted(keys) or len(set(keys)) != len(keys):
        raise ValueError(f"{path}: group keys must be unique and sorted")
    with ShardWriter(path) as writer:
        for key, meta, members in groups:
            writer.add(key, meta, members)
    return writer.close()


def remove_temporaries(root: str | os.PathLike) -> list[Path]:
    """Delete leftovers of interrupted writes (`*.tmp-<pid>`) under root; returns what went."""
    gone = []
    root = Path(root)
    if root.exists():
        for p in sorted(root.rglob(f"*{TMP_MARK}*")):
            if p.is_file():
                p.unlink(missing_ok=True)
                gone.append(p)
    return gone


def iter_members(paths: Iterable[str | os.PathLike]) -> Iterator[tuple[str, dict[str, bytes]]]:
    """(group_key, {suffix: bytes}) per group, suffix being "json" or "<relation>.<ext>"; a tar
    that breaks mid-read (truncated, not a tar) is CorruptShard naming it."""
    for path in paths:
        try:
            with tarfile.open(path, mode="r:") as tar:
                key, members = None, {}
                for info in tar:
                    if not info.isfile():
                        continue
                    name = parse_member_name(info.name)
                    if name.group_key != key:
                        if key is not None:
                            yield key, members
                        key, members = name.group_key, {}
                    members[name.suffix] = tar.extractfile(info).read()
                if key is not None:
                    yield key, members
        except (tarfile.TarError, EOFError) as e:
            raise unreadable_shard(path, e) from None


def iter_groups(paths: Iterable[str | os.PathLike],
                expected: Mapping[str, ShardContents] | None = None
                ) -> Iterator[tuple[dict, dict[str, np.ndarray]]]:
    """(meta, {relation: float32 waveform}) for every group of the shards, in stored order.

    `meta` is the group's JSON: {"group_key", "stage", "split", "build_id", "samples": [rows]}.
    With `expected` (shard path -> what the catalog says it holds, `Catalog.shard_contents`,
    as the evaluator passes it) every group's build and every member's sha256 are checked
    against the catalog; without, against the sha256 in the group's own rows (a plain reader
    for tests and notebooks: a shard replaced whole passes that). A truncated or damaged shard,
    or a member that does not match, raises CorruptShard naming it."""
    for path in paths:
        contents = None if expected is None else expected.get(str(path), _UNLISTED)
        try:
            for key, members in iter_members([path]):
                if GROUP_META not in members:
                    raise tarfile.ReadError(f"group {key} has no {key}.{GROUP_META}")
                meta = json.loads(members.pop(GROUP_META))
                if contents is not None:
                    check_group_build(meta, contents.build_id, path)
                digests = contents.digests if contents is not None else {
                    r.get("key"): r.get("sha256") or "" for r in meta.get("samples", [])}
                waves = {}
                for suffix, data in members.items():
                    name = parse_member_name(f"{key}.{suffix}")
                    default = None if contents is not None else ""   # own rows: none to check
                    check_member(data, digests.get(name.sample_key, default), f"{key}.{suffix}",
                                 path)
                    x, _sr = decode_member(data, name.ext, f"{key}.{suffix} in {path}", path)
                    waves[name.relation] = np.asarray(x, dtype=np.float32)
                yield meta, waves
        except (tarfile.TarError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise unreadable_shard(path, e) from None


# a shard the catalog does not list: none of its members has a row to match
_UNLISTED = ShardContents(frozenset(), {}, None)


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


def _json_bytes(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class _HashingWriter(io.RawIOBase):
    """A write-only file that hashes and counts what passes through it."""

    def __init__(self, raw, digest):
        self.raw, self.digest, self.size = raw, digest, 0

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.size

    def write(self, b) -> int:
        self.digest.update(b)
        self.raw.write(b)
        self.size += len(b)
        return len(b)
