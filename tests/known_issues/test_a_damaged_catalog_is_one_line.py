"""Issue 23.10 (catalog part): a truncated or corrupt `catalog.duckdb` gave tracebacks in
`pipeline info` and `pipeline verify` (DuckDB reads most blocks only when a query needs them, so
opening it succeeded). `teminal.manifests.catalog.connect`, the one way a catalog is opened,
now refuses a file shorter than its own block count says or without the catalog's tables, and
`reading(out)` turns a block that fails its checksum into the same one-line message naming the
file and how to write it again."""
from __future__ import annotations

import shutil
from pathlib import Path

import duckdb
import pytest
from click.testing import CliRunner

from build_helpers import quick_build
from teminal.manifests.catalog import CatalogUnreadable, catalog_path, connect, reading
from teminal.pipeline.cli import main

BLOCK = 262144
HEADERS = 3 * 4096


@pytest.fixture(scope="module")
def built(small_source, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("built") / "out"
    quick_build(small_source, out)
    return out


@pytest.fixture()
def data(built, tmp_path) -> Path:
    return Path(shutil.copytree(built, tmp_path / "data"))


def truncate_to(n):
    def damage(path: Path):
        path.write_bytes(path.read_bytes()[:n(path.stat().st_size)])
    return damage


def flip_data_blocks(path: Path):
    raw = bytearray(path.read_bytes())
    for start in range(HEADERS + BLOCK, len(raw), BLOCK):   # every block after the first
        for i in range(start + 64, min(start + 20000, len(raw)), 7):
            raw[i] ^= 0xFF
    path.write_bytes(bytes(raw))


def foreign_duckdb(path: Path):
    path.unlink()
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE notes AS SELECT 1 AS x")
    con.close()


DAMAGE = {
    "empty": truncate_to(lambda n: 0),
    "cut in the headers": truncate_to(lambda n: 4096),
    "cut in half": truncate_to(lambda n: n // 2),
    "last block cut short": truncate_to(lambda n: n - 1000),
    "data blocks corrupted": flip_data_blocks,
    "zeros": lambda p: p.write_bytes(b"\0" * p.stat().st_size),
    "a parquet file": lambda p: shutil.copy(p.parent / "samples.parquet", p),
    "another duckdb database": foreign_duckdb,
}


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("command", [["info", "{out}"], ["verify", "{out}"],
                                     ["query", "--data", "{out}",
                                      "SELECT max(caption), count(*) FROM samples"]])
def test_a_damaged_catalog_is_one_line_naming_file_and_fix(data, damage, command):
    DAMAGE[damage](catalog_path(data))
    result = CliRunner().invoke(main, [a.format(out=data) for a in command])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.output.count("\n") == 1, result.output
    assert str(catalog_path(data)) in result.output and "pipeline catalog" in result.output


@pytest.mark.parametrize("damage", ["cut in half", "another duckdb database"])
def test_connect_is_the_place_that_refuses_it(data, damage):
    DAMAGE[damage](catalog_path(data))
    with pytest.raises(CatalogUnreadable, match="damaged or not a catalog"):
        connect(data)
    assert issubclass(CatalogUnreadable, FileNotFoundError)   # callers catching a missing one


def test_render_names_a_damaged_catalog(data):
    flip_data_blocks(catalog_path(data))
    result = CliRunner().invoke(main, ["render", "esc50-b-test-000000.forward", "--data",
                                       str(data)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "damaged or not a catalog" in result.output, result.output


def test_a_sound_catalog_still_opens_and_reads(data):
    with reading(data) as con:
        assert con.execute("SELECT count(*) FROM samples").fetchone()[0] == 45
    result = CliRunner().invoke(main, ["info", str(data)])
    assert result.exit_code == 0 and "SYNTHETIC" in result.output


def test_a_query_error_is_still_a_query_error(data):
    result = CliRunner().invoke(main, ["query", "--data", str(data), "SELECT nope FROM samples"])
    assert result.exit_code == 1 and "query failed" in result.output
    assert "damaged" not in result.output
