"""Parquet manifests and the DuckDB catalog: schema, exact values, deterministic bytes."""
from __future__ import annotations

import datetime as dt

import duckdb
import pytest

from teminal.manifests.catalog import connect, read_table, write_catalog, write_table
from teminal.manifests.schema import SORT_KEYS, TABLES, columns


def sample(key: str, **kw) -> dict:
    return {"key": key, "group_key": key.split(".")[0], "stage": "b", "split": "test",
            "relation": key.split(".")[1], "source_ids": ["s1", "s2"], "labels": ["dog", None],
            "offsets": [0.0, 5.0], "gains_db": [0.1 + 0.2, -1 / 3], "snr_db": None,
            "seed": 2**62 + 1, "captions": ["dog before cat"], **kw}


def tables(samples) -> dict:
    return {"samples": samples, "sources": [], "shards": [], "rejects": [],
            "builds": [{"build_id": "b1", "config": "{}", "version": "0.1.0", "synthetic": True}]}


def test_values_round_trip_exactly(tmp_path):
    path = write_table("samples", [sample("g1.forward", snr_db=1 / 7)], tmp_path / "s.parquet")
    (row,) = read_table(path)
    assert row["gains_db"] == [0.1 + 0.2, -1 / 3] and row["snr_db"] == 1 / 7
    assert row["seed"] == 2**62 + 1 and row["labels"] == ["dog", None]
    assert list(row) == columns("samples")


def test_same_rows_in_any_order_give_the_same_bytes(tmp_path):
    rows = [sample(f"g{i}.forward") for i in range(50)]
    a = write_table("samples", rows, tmp_path / "a.parquet").read_bytes()
    b = write_table("samples", list(reversed(rows)), tmp_path / "b.parquet").read_bytes()
    assert a == b
    assert [r["key"] for r in read_table(tmp_path / "a.parquet")] == sorted(r["key"] for r in rows)


def test_empty_tables_keep_their_schema(tmp_path):
    path = write_table("rejects", [], tmp_path / "r.parquet")
    con = duckdb.connect()
    cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM read_parquet('{path}')").fetchall()]
    assert cols == columns("rejects")


def test_unknown_columns_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown column"):
        write_table("shards", [{"path": "x", "colour": "red"}], tmp_path / "x.parquet")


def test_an_optional_column_is_written_only_when_a_row_sets_it(tmp_path):
    # slot_lengths (timed builds, issue 25): a build without it keeps its earlier bytes
    plain = [sample(f"g{i}.forward") for i in range(3)]
    before = write_table("samples", plain, tmp_path / "a.parquet").read_bytes()
    with_none = [r | {"slot_lengths": None} for r in plain]
    assert write_table("samples", with_none, tmp_path / "b.parquet").read_bytes() == before
    mixed = plain[:2] + [plain[2] | {"slot_lengths": [3.0, 7.0]}]
    rows = read_table(write_table("samples", mixed, tmp_path / "c.parquet"))
    assert list(rows[0]) == columns("samples") + ["slot_lengths"]
    assert [r["slot_lengths"] for r in rows] == [None, None, [3.0, 7.0]]


def test_catalog_holds_every_table_and_opens_read_only(tmp_path):
    created = dt.datetime(2026, 1, 2, 3, 4, 5)
    write_catalog(tmp_path, tables([sample("g1.forward")]), created=created)
    assert sorted(p.name for p in (tmp_path / "manifests").iterdir()) == sorted(
        [f"{t}.parquet" for t in TABLES] + ["catalog.duckdb"])
    con = connect(tmp_path)
    try:
        names = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
        assert names == set(TABLES)
        assert con.execute("SELECT created FROM builds").fetchone()[0] == created
        with pytest.raises(duckdb.Error, match="read-only"):
            con.execute("DELETE FROM samples")
    finally:
        con.close()
    # the creation time lives in the DuckDB file only, never in the Parquet manifests
    assert "created" not in read_table(tmp_path / "manifests" / "builds.parquet")[0]


def test_connect_without_a_catalog_explains(tmp_path):
    with pytest.raises(FileNotFoundError, match="pipeline build"):
        connect(tmp_path)


def test_schema_sort_keys_are_columns():
    for table, keys in SORT_KEYS.items():
        assert set(keys) <= set(columns(table))


def test_plain_pyarrow_and_pandas_read_the_manifests(tmp_path):
    # Regression: pyarrow >= 22 refuses NumPy < 2 at import; the pin in constraints.txt keeps
    # every Parquet consumer (pyarrow, pandas) working beside laion-clap's NumPy 1.x.
    import pandas as pd
    import pyarrow.parquet as pq

    path = write_table("samples", [sample("g1.forward"), sample("g1.reversed")], tmp_path / "s.parquet")
    table = pq.read_table(path)
    assert table.num_rows == 2 and table.column("source_ids").to_pylist()[0] == ["s1", "s2"]
    assert list(pd.read_parquet(path)["key"]) == ["g1.forward", "g1.reversed"]


def test_group_selection_keeps_a_group_only_when_every_row_matches(tmp_path):
    # Regression: with "any row matches", a pair hold-out still trained stage A on the pair,
    # because the group's `single` row names one class only.
    from teminal.manifests.catalog import select_group_keys

    rows = [sample("g1.single", stage="a", labels=["dog"]), sample("g1.double", stage="a", labels=["dog", "siren"]),
            sample("g2.single", stage="a", labels=["dog"]), sample("g2.double", stage="a", labels=["dog", "cat"])]
    write_catalog(tmp_path, tables(rows))
    con = connect(tmp_path)
    holdout = "NOT (list_contains(labels,'dog') AND list_contains(labels,'siren'))"
    assert select_group_keys(con, "test", holdout, stage="a") == {"g2"}
    assert select_group_keys(con, "test", "list_contains(labels,'cat')") == set()
    assert select_group_keys(con, "test", None) is None
    assert select_group_keys(con, "test", None, "SELECT 'g1' AS group_key") == {"g1"}
