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
from pathlib import Path
from typing import Iterable, Mapping

from teminal.manifests.schema import OPTIONAL_COLUMNS, SORT_KEYS, TABLES, optional_columns

CATALOG_FILE = "catalog.duckdb"
# The storage format catalog.duckdb is written in. duckdb 2.x writes version 69 by default,
# which every 1.x client (the newest `duckdb` command-line tool on the package index is 1.5.6)
# refuses to open; v1.2.0's format is read by duckdb >= 1.2 and by 2.x alike.
CATALOG_STORAGE_VERSION = "v1.2.0"


def manifests_dir(out: str | os.PathLike) -> Path:
    return Path(out) / "manifests"


def catalog_path(out: str | os.PathLike) -> Path:
    return manifests_dir(out) / CATALOG_FILE


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
        raise FileNotFoundError(
            f"no catalog at {path}: build one with `pipeline build --out {out}` (or run "
            f"`pipeline catalog {out}` if the build's shards are complete)")
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


def unreadable_message(out: str | os.PathLike, error) -> str:
    """One line: which catalog cannot be read, why, and how to write it again."""
    detail = " ".join(str(error).split())[:300]
    return (f"the catalog {catalog_path(out)} is damaged or not a catalog ({detail}); write it "
            f"again: `pipeline catalog {out}` for a build (its shards are kept), or rerun the "
            f"`pipeline catalog --merge ... --out {out}` that made a merged one")


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
