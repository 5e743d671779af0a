"""Issue 9.6: `pipeline query` (and training's --where / --query-file, which share the
connection) could write files (`COPY ... TO`, over the manifests too) and open network
connections (`INSTALL httpfs`, `read_csv('https://...')`). Every catalog read is now read-only
and offline, and a query cannot switch that back."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from teminal.manifests.catalog import connect, write_catalog
from teminal.pipeline.cli import main
from teminal.train import streaming

ROW = {"key": "g1.forward", "group_key": "g1", "stage": "b", "split": "train",
       "relation": "forward", "source_ids": ["s1", "s2"], "labels": ["dog", "cat"]}


@pytest.fixture()
def out(tmp_path):
    write_catalog(tmp_path / "out", {"samples": [ROW], "sources": [], "shards": [], "rejects": [],
                                     "builds": [{"build_id": "b1", "config": "{}"}]})
    return tmp_path / "out"


def _files(root):
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def hostile(tmp):
    m = (tmp / "out" / "manifests").as_posix()
    return [
        f"COPY samples TO '{m}/samples.parquet' (FORMAT parquet)",   # over a manifest
        f"COPY (SELECT 1) TO '{tmp.as_posix()}/elsewhere.csv'",
        f"EXPORT DATABASE '{tmp.as_posix()}/dump'",
        f"ATTACH '{tmp.as_posix()}/new.duckdb' AS w",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SELECT * FROM read_csv('https://example.com/a.csv')",
        "SELECT * FROM read_parquet('s3://bucket/x.parquet')",
        "SELECT * FROM read_text('/etc/hostname')",
        "SELECT * FROM glob('/*')",
        "SET enable_external_access = true",
        "SET autoinstall_known_extensions = true",
        "RESET enable_external_access",
        "DELETE FROM samples",
        "CREATE TABLE samples2 AS SELECT * FROM samples",
    ]


def test_pipeline_query_refuses_every_write_and_network_statement(out, tmp_path):
    before = _files(tmp_path)
    for sql in hostile(tmp_path):
        result = CliRunner().invoke(main, ["query", sql, "--data", str(out)])
        assert result.exit_code != 0, (sql, result.output)
        assert "query failed" in result.output and "Traceback" not in result.output, sql
    assert _files(tmp_path) == before


def test_settings_cannot_be_switched_back_within_one_call(out, tmp_path):
    sql = (f"SET enable_external_access = true; "
           f"COPY (SELECT 1) TO '{tmp_path.as_posix()}/x.csv'")
    result = CliRunner().invoke(main, ["query", sql, "--data", str(out)])
    assert result.exit_code != 0 and not (tmp_path / "x.csv").exists()


def test_reading_the_catalog_still_works(out):
    result = CliRunner().invoke(main, ["query", "SELECT group_key FROM samples", "--data", str(out)])
    assert result.exit_code == 0 and "g1" in result.output
    con = connect(out)
    try:
        assert con.execute("SELECT count(*) FROM builds").fetchone() == (1,)
    finally:
        con.close()


@pytest.mark.parametrize("sql", ["", "   ", ";", " ; ;", "-- only a comment"])
def test_an_empty_query_is_one_clear_message(out, sql):
    result = CliRunner().invoke(main, ["query", "--data", str(out), "--", sql])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "the query is empty" in result.output or "no statement" in result.output


def test_training_selection_sql_is_read_only_and_offline_too(out, tmp_path):
    before = _files(tmp_path)
    for sql in hostile(tmp_path):
        with pytest.raises(ValueError, match="SQL over the catalog failed"):
            streaming.select_group_keys(out, "b", query=sql)
    target = tmp_path / "w.csv"
    with pytest.raises(ValueError):
        streaming.select_group_keys(
            out, "b", where="(SELECT count(*) FROM read_csv('https://example.com/x')) > 0")
    assert _files(tmp_path) == before and not target.exists()


@pytest.mark.parametrize("query", ["", "  \n", "-- nothing"])
def test_an_empty_query_file_is_refused_not_read_as_no_selection(out, query):
    with pytest.raises(ValueError, match="no rows to select"):
        streaming.select_group_keys(out, "b", query=query)


def test_connect_refuses_to_open_a_writable_catalog(out):
    with pytest.raises(ValueError, match="read-only"):
        connect(out, read_only=False)
