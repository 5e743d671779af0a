"""Issue 23.5: `pipeline verify` read only catalog.duckdb, so edited `samples.parquet` rows
(hashes, labels) passed and `pipeline catalog --merge` copied them. Verify now compares every
Parquet manifest with the catalog's table of that name (a digest of the rows), and a merge
refuses an input that does not verify (manifests and shard sha256) before writing anything."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from build_helpers import quick_build
from teminal.manifests.catalog import read_table, write_table
from teminal.pipeline.cli import main
from teminal.pipeline.merge import merge_catalogs
from teminal.pipeline.verify import manifest_problems, verify_build


@pytest.fixture(scope="module")
def built(small_source, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("built") / "out"
    quick_build(small_source, out)
    return out


@pytest.fixture()
def data(built, tmp_path) -> Path:
    return Path(shutil.copytree(built, tmp_path / "data"))


def edit_parquet(out: Path, table: str, change) -> Path:
    """Rewrite one Parquet manifest with `change(rows)` applied; the catalog is left alone."""
    path = out / "manifests" / f"{table}.parquet"
    rows = read_table(path)
    change(rows)
    write_table(table, rows, path)
    return path


def relabel(rows):
    rows[3]["labels"] = ["siren", "dog"]


def rehash(rows):
    rows[0]["sha256"] = "0" * 64


def drop_row(rows):
    del rows[-1]


def add_row(rows):
    rows.append(dict(rows[0], source_id="esc50synth-extra"))


def reorder_only(rows):
    rows.reverse()


EDITS = [("samples", relabel), ("samples", rehash), ("shards", drop_row), ("sources", add_row),
         ("rejects", lambda rows: rows.append({"path": "x", "reason": "y", "dataset": "z",
                                               "phase": "scan"})),
         ("builds", lambda rows: rows[0].update(synthetic=False))]


@pytest.mark.parametrize("table,change", EDITS,
                         ids=[f"{t}-{getattr(c, '__name__', 'edit')}" for t, c in EDITS])
def test_verify_reports_an_edited_parquet_manifest(data, table, change):
    path = edit_parquet(data, table, change)
    result = CliRunner().invoke(main, ["verify", str(data)])
    assert result.exit_code == 1, result.output
    assert f"{path}: its rows differ from the catalog's {table} table" in result.output


def test_rows_written_in_another_order_are_the_same_manifest(data):
    edit_parquet(data, "samples", reorder_only)
    assert manifest_problems(data) == []


@pytest.mark.parametrize("damage", ["missing", "garbage", "other table"])
def test_a_missing_or_unreadable_manifest_is_reported(data, damage):
    path = data / "manifests" / "samples.parquet"
    if damage == "missing":
        path.unlink()
    elif damage == "garbage":
        path.write_bytes(b"PAR1 not parquet")
    else:
        shutil.copy(data / "manifests" / "shards.parquet", path)
    problems = verify_build(data).problems
    assert any(p.startswith(str(path)) for p in problems), problems


def test_a_catalog_row_naming_an_unlisted_shard_is_reported(data):
    from teminal.manifests.catalog import write_catalog
    from teminal.manifests.schema import TABLES

    tables = {t: read_table(data / "manifests" / f"{t}.parquet") for t in TABLES}
    tables["samples"][0]["shard"] = "shards/b/nowhere-000000.tar"
    write_catalog(data, tables)
    problems = verify_build(data).problems
    assert any("names shard 'shards/b/nowhere-000000.tar', which the shards table does not list"
               in p for p in problems), problems


@pytest.mark.parametrize("damage", ["relabel in samples.parquet", "hash in shards.parquet",
                                    "same-size shard bytes"])
def test_merge_refuses_an_input_that_does_not_verify(data, tmp_path, damage):
    if damage == "relabel in samples.parquet":
        edit_parquet(data, "samples", relabel)
    elif damage == "hash in shards.parquet":
        edit_parquet(data, "shards", rehash)
    else:
        shard = sorted((data / "shards" / "b").glob("*.tar"))[0]
        raw = bytearray(shard.read_bytes())
        raw[len(raw) // 2] ^= 1
        shard.write_bytes(bytes(raw))
    merged = tmp_path / "merged"
    result = CliRunner().invoke(main, ["catalog", "--merge", str(data), "--out", str(merged)])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert str(data) in result.output and ("does not verify" in result.output
                                           or "sha256 differs" in result.output), result.output
    assert not merged.exists()


def test_merge_of_a_build_that_verifies_is_unchanged(data, tmp_path):
    summary = merge_catalogs([data], tmp_path / "merged", log=lambda m: None)
    assert summary.samples == len(read_table(data / "manifests" / "samples.parquet"))
    assert verify_build(tmp_path / "merged").ok
