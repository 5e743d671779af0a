"""Parquet manifests and the DuckDB catalog of a build.

OUT/manifests/<table>.parquet holds each table with rows sorted by its key, written by DuckDB
with one thread, so equal rows give equal bytes. OUT/manifests/catalog.duckdb holds the same
tables for `duckdb OUT/manifests/catalog.duckdb` (in DuckDB's v1.2.0 storage format, which
1.x and 2.x clients both open); its `builds` table adds the `created` time, the one
non-deterministic field, which never reaches a Parquet file.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from teminal.manifests.schema import OPTIONAL_COLUMNS, SORT_KEYS, TABLES, columns, optional_columns
from teminal.manifests.vocabulary import (CATALOG_FILE, catalog_command,  # noqa: F401
                                          catalog_path, manifests_dir, remake_commands)
# The storage format catalog.duckdb is written in. duckdb 2.x writes version 69 by default,
# which every 1.x client (the newest `duckdb` command-line tool on the package index is 1.5.6)
# refuses to open; v1.2.0's format is read by duckdb >= 1.2 and by 2.x alike.
CATALOG_STORAGE_VERSION = "v1.2.0"


def write_table(table: str, rows: Iterable[Mapping], path: str | os.PathLike) -> Path:
    """Write rows (dicts with the table's columns) to a Parquet file, atomically."""
    import duckdb

    con = duckdb.connect()
    try:
        _configure(con)
        _load(con, table, rows)
        return _copy_to_parquet(con, table, Path(path))
    finally:
        con.close()


def _copy_to_parquet(con, table: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    order = ", ".join(SORT_KEYS[table])
    con.execute(f"COPY (SELECT * FROM {table} ORDER BY {order}) TO '{_sql_path(tmp)}' "
                "(FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 100000)")
    os.replace(tmp, path)
    return path


def read_table(path: str | os.PathLike) -> list[dict]:
    """Rows of a Parquet manifest as dicts (lists stay lists)."""
    import duckdb

    con = duckdb.connect()
    try:
        return fetch_dicts(con, f"SELECT * FROM read_parquet('{_sql_path(path)}')")
    finally:
        con.close()


def fetch_dicts(con, sql: str, params=()) -> list[dict]:
    """Rows of a query on a DuckDB connection as dicts keyed by column name."""
    cur = con.execute(sql, list(params))
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


def write_catalog(out: str | os.PathLike, tables: Mapping[str, Iterable[Mapping]],
                  created: _dt.datetime | None = None) -> Path:
    """Write every table to OUT/manifests/<table>.parquet and build catalog.duckdb from them."""
    import duckdb

    mdir = manifests_dir(out)
    mdir.mkdir(parents=True, exist_ok=True)
    missing = set(TABLES) - set(tables)
    if missing:
        raise ValueError(f"write_catalog: no rows given for table(s) {sorted(missing)}")
    created = created or _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    final = mdir / CATALOG_FILE
    tmp = mdir / f"{CATALOG_FILE}.tmp-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    con = duckdb.connect()
    try:
        _configure(con)
        for table in TABLES:
            _load(con, table, tables[table])
            _copy_to_parquet(con, table, mdir / f"{table}.parquet")
        con.execute(f"ATTACH '{_sql_path(tmp)}' AS catalog "
                    f"(STORAGE_VERSION '{CATALOG_STORAGE_VERSION}')")
        for table in TABLES:
            src = _sql_path(mdir / f"{table}.parquet")
            extra = ", TIMESTAMP '" + created.strftime("%Y-%m-%d %H:%M:%S") + "' AS created" \
                if table == "builds" else ""
            con.execute(f"CREATE TABLE catalog.{table} AS SELECT *{extra} FROM read_parquet('{src}')")
        con.execute("DETACH catalog")
    finally:
        con.close()
    os.replace(tmp, final)
    return final


# DuckDB's read_only=True still lets a query write files (`COPY ... TO`), install and load
# extensions and open URLs (`read_csv('https://...')`). These settings refuse all of that and
# `lock_configuration` stops the query from switching them back (docs/STACK-NOTES.md: "DuckDB
# read-only and offline"). File access is off altogether, which works because every catalog
# table lives inside catalog.duckdb (no views over the Parquet files).
READ_ONLY_OFFLINE = {"enable_external_access": False, "autoinstall_known_extensions": False,
                     "autoload_known_extensions": False, "lock_configuration": True}


class CatalogUnreadable(FileNotFoundError):
    """The catalog file is truncated, damaged or not a catalog; the message names the file and
    how to rewrite it (a FileNotFoundError, as a missing catalog is, so callers catch both)."""


# A DuckDB file is three 4 KiB headers, then `total_blocks` blocks of `block_size` bytes (checked
# on files of 1 to 70 blocks written by duckdb 2.0): a shorter file was cut off.
_FILE_HEADERS = 3 * 4096


def connect(out: str | os.PathLike, read_only: bool = True):
    """A read-only, offline DuckDB connection on OUT/manifests/catalog.duckdb: the one way the
    project reads a catalog (`pipeline query/info/verify/render`, trainers' --where/--query-file,
    evaluators). Queries on it cannot write a file, reach the network, or load an extension.

    A missing catalog is a FileNotFoundError; a truncated or damaged file, or a DuckDB file
    without the catalog's tables, a CatalogUnreadable naming the file and the fix. Damage inside
    a block shows only when a query reads it: run the project's own queries in `reading(out)`."""
    import duckdb

    if not read_only:
        raise ValueError("the catalog is only ever opened read-only; builds write it with "
                         "write_catalog")
    path = catalog_path(out)
    if not path.exists():
        raise FileNotFoundError(no_catalog_message(out))
    try:
        con = duckdb.connect(str(path), read_only=True, config=dict(READ_ONLY_OFFLINE))
    except duckdb.Error as e:
        raise _open_error(e, path, out) from None
    try:
        problem = _file_problem(con, path)
    except duckdb.Error as e:
        problem = " ".join(str(e).split())
    if problem:
        con.close()
        raise CatalogUnreadable(unreadable_message(out, problem))
    return con


@contextlib.contextmanager
def reading(out: str | os.PathLike):
    """`connect(out)` for the project's own queries, closed on exit: a DuckDB error inside the
    block (a block failing its checksum, a missing column) becomes one CatalogUnreadable naming
    the file and the fix, since none of those queries fails on a sound catalog."""
    import duckdb

    con = connect(out)
    try:
        yield con
    except duckdb.Error as e:
        raise CatalogUnreadable(unreadable_message(out, e)) from None
    finally:
        con.close()


def no_catalog_message(out: str | os.PathLike) -> str:
    """One line: OUT has no catalog, and the command that writes it from OUT's own record (a
    build: `pipeline build --out OUT`, which also finishes an unfinished one; a merged catalog:
    the merge that made it)."""
    path = catalog_path(out)
    remake = remake_commands(out)
    command = remake[0] if len(remake) == 1 else catalog_command(out)
    if command:
        return f"no catalog at {path}: `{command}` writes it (from the record in {out})"
    return (f"no catalog at {path}: {out} holds no build (give the folder that pipeline build "
            f"--out wrote)")


def unreadable_message(out: str | os.PathLike, error) -> str:
    """One line: which catalog cannot be read, why, and the command that writes it again."""
    detail = " ".join(str(error).split())[:300]
    command = catalog_command(out)
    fix = (f"write it again: `{command}` (the shards are kept)" if command else
           f"{out} holds no record of the build or merge that wrote it: build it again")
    return f"the catalog {catalog_path(out)} is damaged or not a catalog ({detail}); {fix}"


def is_damage(error) -> bool:
    """True when a DuckDB error from a query says the catalog file itself is bad (a short read,
    a failed checksum), not the query."""
    import duckdb

    text = str(error)
    return (isinstance(error, (duckdb.IOException, duckdb.InternalException))
            or "Corrupt database file" in text or "checksum" in text)


def _file_problem(con, path: Path) -> str | None:
    block_size, blocks = con.execute(
        "SELECT block_size, total_blocks FROM pragma_database_size() "
        "WHERE database_name = current_database()").fetchone()
    expected, size = _FILE_HEADERS + block_size * blocks, path.stat().st_size
    if size < expected:
        return f"truncated: {size} of {expected} bytes"
    present = {r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database()"
    ).fetchall()}
    missing = [t for t in TABLES if t not in present]
    return f"no table {', '.join(missing)}" if missing else None


class CatalogInUse(FileNotFoundError):
    """The catalog is held by another connection. A FileNotFoundError like every other "cannot
    open the catalog", so the commands that print those as one line print this one too."""


def _open_error(e: Exception, path: Path, out) -> FileNotFoundError:
    """What to do about a catalog DuckDB would not open: the file is fine when another
    connection holds it (close that one), damaged or foreign otherwise (rewrite it)."""
    message = " ".join(str(e).split())
    holder = re.search(r"Conflicting lock is held in (.*?)(?: \(PID (\d+)\))?\.?(?: See |$)", message)
    if holder:  # another process opened it for writing (e.g. duckdb.connect(path) in a notebook)
        who = f"{holder[1]} (PID {holder[2]})" if holder[2] else holder[1]
        return CatalogInUse(
            f"the catalog {path} is open for writing in another process, {who}: close that "
            f"connection (`con.close()`, or open it with `duckdb.connect(..., read_only=True)`, "
            f"which lets both read) and run again")
    if "different configuration" in message:  # this process already holds another connection
        return CatalogInUse(
            f"the catalog {path} is already open in this process with other settings: close "
            f"that connection (`con.close()`) first, or read it through "
            f"`teminal.manifests.catalog.connect({str(out)!r})` only")
    return CatalogUnreadable(unreadable_message(out, e))


def _configure(con) -> None:
    # One thread and insertion order kept: the Parquet bytes then depend on the rows only.
    con.execute("SET threads = 1")
    con.execute("SET preserve_insertion_order = true")


def _load(con, table: str, rows: Iterable[Mapping]) -> None:
    rows = list(rows)
    known = {n for n, _ in TABLES[table] + OPTIONAL_COLUMNS.get(table, [])}
    for row in rows:
        unknown = set(row) - known
        if unknown:
            raise ValueError(f"table {table}: unknown column(s) {sorted(unknown)}")
    # an optional column exists only when a row sets it (schema.OPTIONAL_COLUMNS)
    used = {n for n in optional_columns(table) if any(row.get(n) is not None for row in rows)}
    spec = TABLES[table] + [(n, t) for n, t in OPTIONAL_COLUMNS.get(table, []) if n in used]
    con.execute(f"CREATE TABLE {table} ({', '.join(f'{n} {t}' for n, t in spec)})")
    names = [n for n, _ in spec]
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8") as f:
        count = 0
        for row in rows:
            f.write(json.dumps({n: row.get(n) for n in names}, ensure_ascii=False))
            f.write("\n")
            count += 1
        tmp = f.name
    try:
        if count:
            cols = "{" + ", ".join(f"'{n}': '{t}'" for n, t in spec) + "}"
            con.execute(f"INSERT INTO {table} SELECT * FROM read_json('{_sql_path(tmp)}', "
                        f"format = 'newline_delimited', columns = {cols}, "
                        "maximum_object_size = 67108864)")
    finally:
        os.unlink(tmp)


def _sql_path(path) -> str:
    return str(path).replace("'", "''")


def select_group_keys(con, split: str, where: str | None = None, query: str | None = None,
                      stage: str | None = None) -> set[str] | None:
    """Group keys of `split` (and `stage`) chosen by SQL over the catalog; None: no restriction.

    `where` is a predicate on `samples` rows and a group is kept only when EVERY one of its rows
    matches, so a pair predicate such as `NOT (list_contains(labels,'dog') AND
    list_contains(labels,'siren'))` drops the whole stage-A group of that pair even though its
    `single` row names one class only. `query` is a whole query whose `group_key` column (or
    first column) lists groups; with both, the intersection. Trainers and evaluators share this
    so "what a run trained on" means the same thing to both."""
    if not where and query is None:
        return None
    keys = None
    if where:
        filters, params = ["split = ?"], [split]
        if stage:
            filters.append("stage = ?")
            params.append(stage)
        sql = (f"SELECT group_key FROM samples WHERE {' AND '.join(filters)} GROUP BY group_key "
               f"HAVING bool_and(coalesce(({where}), false))")
        keys = {r[0] for r in con.execute(sql, params).fetchall()}
    if query is not None:
        cur = con.execute(query) if query.strip() else None
        if cur is None or cur.description is None:
            raise ValueError(f"the query returns no rows to select groups from ({query!r}); "
                             f"give a SELECT whose group_key column lists the groups")
        names = [d[0] for d in cur.description]
        col = names.index("group_key") if "group_key" in names else 0
        chosen = {r[col] for r in cur.fetchall()}
        keys = chosen if keys is None else keys & chosen
    return keys


def selection_digest(group_keys) -> str:
    """sha256 of a set of group keys (sorted, one per line): equal selections, equal digests.
    What a run records of the groups it trained on (the trainer's index, its provenance)."""
    import hashlib

    return hashlib.sha256("\n".join(sorted(group_keys)).encode()).hexdigest()


# ---------------------------------------------------------------------------------------------
# The read side: every query the project runs on a catalog (the user's own `pipeline query`
# SQL aside), typed.

@dataclass(frozen=True)
class ShardRow:
    """A `shards` row: a tar of the build (path relative to OUT) and what the build recorded."""
    path: str
    stage: str
    split: str
    num_groups: int
    num_samples: int
    bytes: int | None
    sha256: str | None


@dataclass(frozen=True)
class BuildRow:
    """A `builds` row; `config` parsed ({} when it is not readable JSON)."""
    build_id: str
    config: dict
    version: str | None
    synthetic: bool


@dataclass(frozen=True)
class ShardContents:
    """What the catalog says one shard holds: its groups, each member's sha256 (by sample key)
    and the build that wrote it (None when its rows name none)."""
    groups: frozenset[str]
    digests: Mapping[str, str]
    build_id: str | None


@dataclass
class CatalogInfo:
    """Provenance of a catalog as results record it: the build id(s) of its rows, the
    synthetic flag, the (last) build's config."""
    path: str
    build_ids: list[str]
    synthetic: bool
    config: dict = field(default_factory=dict)

    @property
    def build_id(self) -> str | None:
        return ",".join(self.build_ids) if self.build_ids else None

    def to_dict(self) -> dict:
        return {"path": self.path, "build_id": self.build_id, "synthetic": self.synthetic}


@dataclass(frozen=True)
class Table:
    """A query's result for printing: column names and rows."""
    names: list[str]
    rows: list[tuple]


class Catalog:
    """A build's catalog, read-only and offline, through typed queries.

        with Catalog.open(out) as catalog:
            catalog.shards("b", "train")

    Opened through `reading(out)`: a missing catalog is a FileNotFoundError, a damaged one a
    CatalogUnreadable naming the file and the fix, whatever query meets the damage. Only
    `select_group_keys` runs SQL a user wrote (--where, --query-file): its errors are a
    ValueError saying so."""

    def __init__(self, con, out: str | os.PathLike):
        self.con, self.out = con, Path(out)

    @classmethod
    @contextlib.contextmanager
    def open(cls, out: str | os.PathLike):
        with reading(out) as con:
            yield cls(con, out)

    def _dicts(self, sql: str, params=()) -> list[dict]:
        return fetch_dicts(self.con, sql, params)

    def _values(self, sql: str, params=()) -> list:
        return [r[0] for r in self.con.execute(sql, list(params)).fetchall()]

    def _table(self, sql: str) -> Table:
        cur = self.con.execute(sql)
        return Table([d[0] for d in cur.description], cur.fetchall())

    # -- shards, groups and members (training, evaluation, verify) -------------------------------

    def shards(self, stage: str | None = None, split: str | None = None) -> list[ShardRow]:
        """`shards` rows in path order, of one stage and split or all."""
        where, params = _filters(stage=stage, split=split)
        return [ShardRow(**r) for r in self._dicts(
            f"SELECT path, stage, split, num_groups, num_samples, bytes, sha256 FROM shards "
            f"{where} ORDER BY path", params)]

    def shard_contents(self, stage: str | None = None,
                       split: str | None = None) -> dict[str, ShardContents]:
        """Per shard path, what its `samples` rows say it holds (see ShardContents)."""
        where, params = _filters(stage=stage, split=split)
        groups: dict[str, set] = {}
        digests: dict[str, dict] = {}
        builds: dict[str, str | None] = {}
        for shard, group, key, sha, build in self.con.execute(
                f"SELECT shard, group_key, key, sha256, build_id FROM samples {where}",
                params).fetchall():
            groups.setdefault(shard, set()).add(group)
            digests.setdefault(shard, {})[key] = sha or ""
            builds.setdefault(shard, build or None)
        return {s: ShardContents(frozenset(groups[s]), digests[s], builds[s]) for s in groups}

    def member_digests(self) -> dict[str, tuple[str, str]]:
        """sample key -> (shard, sha256) of every row."""
        return {k: (shard, sha) for k, shard, sha in
                self.con.execute("SELECT key, shard, sha256 FROM samples").fetchall()}

    def stages_splits(self, stage: str) -> list[str]:
        """The splits `stage` has shards of."""
        return self._values("SELECT DISTINCT split FROM shards WHERE stage = ? ORDER BY split",
                            [stage])

    def group_count(self, stage: str, split: str) -> int:
        return int(self._values("SELECT count(DISTINCT group_key) FROM samples WHERE stage = ? "
                                "AND split = ?", [stage, split])[0] or 0)

    def longest_member(self, stage: str, split: str) -> int:
        """Samples of the longest member of (stage, split); 0 when it has none."""
        return int(self._values("SELECT max(num_samples) FROM samples WHERE stage = ? AND "
                                "split = ?", [stage, split])[0] or 0)

    def render_settings(self, split: str) -> dict:
        """sample_rate, num_samples and pad of the split's members ({} without members)."""
        rows = self._dicts("SELECT sample_rate, num_samples, pad FROM samples WHERE split = ? "
                           "ORDER BY stage DESC, key LIMIT 1", [split])
        return rows[0] if rows else {}

    def pair_rows(self, split: str) -> list[dict]:
        """group_key, relation, labels and template_ids of every member of `split`: what a
        training run on it put in front of a model."""
        return self._dicts("SELECT group_key, relation, labels, template_ids FROM samples "
                           "WHERE split = ?", [split])

    def recipes(self, stage: str, split: str, relations) -> list[dict]:
        """Every column of the `samples` rows of (stage, split) whose relation is one of
        `relations`, in the order the shards hold them (shard, then sample key): the recipes a
        reader plans again (ZSTE's timing sweep re-renders them at other junctions)."""
        return self._dicts("SELECT * FROM samples WHERE stage = ? AND split = ? AND "
                           "list_contains(?, relation) ORDER BY shard, key",
                           [stage, split, list(relations)])

    def select_group_keys(self, split: str, where: str | None = None, query: str | None = None,
                          stage: str | None = None) -> set[str] | None:
        """`select_group_keys` (the one definition of a run's selection) on this catalog; a
        user's SQL that fails is a ValueError naming it, damage to the file is still
        CatalogUnreadable."""
        import duckdb

        try:
            return select_group_keys(self.con, split, where, query, stage=stage)
        except duckdb.Error as e:
            if is_damage(e):
                raise
            raise ValueError(f"SQL over the catalog failed: {e}\n  where: {where!r}  query: "
                             f"{query!r}\n  tables: {', '.join(TABLES)} (see "
                             f"docs/ARCHITECTURE.md)") from None

    def group_keys(self, stage: str, split: str) -> set[str]:
        return set(self._values("SELECT DISTINCT group_key FROM samples WHERE stage = ? AND "
                                "split = ?", [stage, split]))

    # -- sources, builds, vocabulary (evaluation, render) ----------------------------------------

    def builds(self) -> list[BuildRow]:
        # catalogs written before the synthetic flag existed lack its column: not synthetic
        cols = set(self._values("SELECT column_name FROM (DESCRIBE builds)"))
        synthetic = "synthetic" if "synthetic" in cols else "false"
        return [BuildRow(r["build_id"], _json_or_empty(r["config"]), r["version"],
                         bool(r["synthetic"])) for r in self._dicts(
            f"SELECT build_id, config, version, {synthetic} AS synthetic FROM builds "
            f"ORDER BY build_id")]

    def info(self, split: str | None = None) -> CatalogInfo:
        """The build id(s) of the rows of `split` (all rows: None; a catalog without rows: its
        builds), whether any of those builds is synthetic, and the last one's config."""
        ids = self.sample_build_ids(split)
        builds = self.builds()
        if not ids:
            ids = [b.build_id for b in builds]
        used = [b for b in builds if b.build_id in ids] or builds
        return CatalogInfo(str(self.out), ids, any(b.synthetic for b in used),
                           used[-1].config if used else {})

    def sample_build_ids(self, split: str | None = None) -> list[str]:
        """The distinct build ids of the `samples` rows (of one split), sorted."""
        where, params = _filters(split=split)
        return [b for b in self._values(f"SELECT DISTINCT build_id FROM samples {where} "
                                        f"ORDER BY build_id", params) if b]

    def datasets(self) -> list[str]:
        return self._values("SELECT DISTINCT dataset FROM sources ORDER BY dataset")

    def labels(self) -> list[str]:
        """Every class label of the sources (the class vocabulary), sorted."""
        return self._values("SELECT DISTINCT label FROM sources WHERE label IS NOT NULL "
                            "ORDER BY label")

    def labelled_sources(self, split: str) -> list[dict]:
        """source_id, path and label of the split's labelled sources, by source id."""
        return self._dicts("SELECT source_id, path, label FROM sources WHERE split = ? AND "
                           "label IS NOT NULL ORDER BY source_id", [split])

    def source_paths(self, source_ids) -> dict[str, str]:
        return dict(self.con.execute("SELECT source_id, path FROM sources WHERE "
                                     "list_contains(?, source_id)", [list(source_ids)]).fetchall())

    def sample(self, key: str) -> dict | None:
        """The `samples` row of `key` (every column), None when there is none."""
        rows = self._dicts("SELECT * FROM samples WHERE key = ?", [key])
        return rows[0] if rows else None

    def keys_like(self, key: str, limit: int = 5) -> list[str]:
        """Up to `limit` sample keys of the group `key` or starting with it (for "did you
        mean")."""
        return self._values("SELECT key FROM samples WHERE group_key = ? OR key LIKE ? ORDER BY "
                            "key LIMIT ?", [key, key + "%", limit])

    # -- verify: each table's rows as one digest -------------------------------------------------

    def table_digest(self, table: str) -> tuple[int, str]:
        """(rows, digest of the rows) of a catalog table; see `rows_digest_sql`."""
        return tuple(self.con.execute(rows_digest_sql(table, table)).fetchone())

    # -- `pipeline info` -------------------------------------------------------------------------

    def sources_summary(self) -> Table:
        return self._table("SELECT dataset, split, count(*) AS clips, count(DISTINCT label) AS "
                           "labels, coalesce(sum(len(captions)), 0) AS captions FROM sources "
                           "GROUP BY ALL ORDER BY ALL")

    def samples_summary(self) -> Table:
        return self._table("SELECT dataset, stage, split, relation, count(*) AS samples, "
                           "count(DISTINCT group_key) AS groups FROM samples GROUP BY ALL "
                           "ORDER BY ALL")

    def timing_summary(self) -> Table:
        """Where the second part of each two-part member starts (fraction of the clip) and, for
        a timed build's concatenations, the silence before it."""
        timed = "slot_lengths" in self._values("SELECT column_name FROM (DESCRIBE samples)")
        start = "offsets[2] * sample_rate / num_samples"
        gap = ("CASE WHEN relation IN ('double', 'forward', 'reversed') THEN "
               "coalesce(offsets[2] - offsets[1] - slot_lengths[1], 0) END")
        gaps = (f", round(min({gap}), 3) AS gap_min_s, round(max({gap}), 3) AS gap_max_s"
                if timed else "")
        return self._table(f"SELECT dataset, stage, relation, count(*) AS samples, "
                           f"round(min({start}), 3) AS start_min, round(avg({start}), 3) AS "
                           f"start_mean, round(max({start}), 3) AS start_max{gaps} "
                           "FROM samples WHERE len(offsets) = 2 GROUP BY ALL ORDER BY ALL")

    def shards_summary(self) -> Table:
        return self._table("SELECT stage, split, count(*) AS shards, sum(num_groups) AS groups, "
                           "sum(num_samples) AS samples, round(sum(bytes) / 1e6, 1) AS MB "
                           "FROM shards GROUP BY ALL ORDER BY ALL")

    def shard_totals(self) -> tuple[int, int]:
        """(bytes, shards) of every shard."""
        return tuple(self.con.execute("SELECT coalesce(sum(bytes), 0), count(*) FROM shards"
                                      ).fetchone())

    def reject_count(self) -> int:
        return int(self._values("SELECT count(*) FROM rejects")[0])

    def rejects_summary(self) -> Table:
        return self._table("SELECT phase, regexp_extract(reason, '^[^:(]*') AS reason, "
                           "count(*) AS n FROM rejects GROUP BY ALL ORDER BY n DESC, reason")


def rows_digest_sql(table: str, source: str) -> str:
    """(rows, sha256 over the sorted sha256 of each row's JSON) of `source` read as `table`:
    equal for equal multisets of rows, whatever their order (ties in a sort key included)."""
    row = "{" + ", ".join(f"'{c}': \"{c}\"" for c in columns(table)) + "}"
    return (f"SELECT count(*), sha256(coalesce(string_agg(h, '' ORDER BY h), '')) FROM "
            f"(SELECT sha256(to_json({row})) AS h FROM {source})")


def parquet_digest(path: str | os.PathLike, table: str) -> tuple[int, str]:
    """`Catalog.table_digest` of a Parquet manifest, on a private in-memory connection (the
    file is the project's own, read with the project's own SQL); duckdb.Error when unreadable."""
    import duckdb

    con = duckdb.connect()
    try:
        return tuple(con.execute(rows_digest_sql(
            table, f"read_parquet('{_sql_path(path)}')")).fetchone())
    finally:
        con.close()


def _filters(**equal) -> tuple[str, list]:
    """("WHERE a = ? AND b = ?", [values]) for the given columns whose value is not None."""
    used = [(k, v) for k, v in equal.items() if v is not None]
    if not used:
        return "", []
    return "WHERE " + " AND ".join(f"{k} = ?" for k, _ in used), [v for _, v in used]


def _json_or_empty(text) -> dict:
    try:
        value = json.loads(text) if text else {}
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
