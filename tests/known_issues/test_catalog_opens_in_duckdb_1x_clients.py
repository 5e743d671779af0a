"""Issue 26.2: catalog.duckdb was written in duckdb 2.x's own storage format (version 69), which
the newest `duckdb` command-line tool on the package index (1.5.6) refuses ("we can only read
versions between 64 and 68"), while the README promises "any DuckDB / Parquet client". The
catalog is now written in the v1.2.0 storage format, which 1.2+ and 2.x clients both read."""
from __future__ import annotations

import shutil
import struct
import subprocess

import pytest

from teminal.manifests.catalog import CATALOG_STORAGE_VERSION, catalog_path, connect, write_catalog

ROW = {"key": "g1.forward", "group_key": "g1", "stage": "b", "split": "train",
       "relation": "forward", "source_ids": ["s1", "s2"], "labels": ["dog", "cat"],
       "captions": ["dog before cat"], "offsets": [0.0, 5.0]}
# DuckDB's numbering of its storage formats: v1.2.0 writes 65, duckdb 1.5.6 reads 64-68
V1_2_0_STORAGE_NUMBER = 65


@pytest.fixture()
def out(tmp_path):
    write_catalog(tmp_path, {"samples": [ROW], "sources": [], "shards": [], "rejects": [],
                             "builds": [{"build_id": "b1", "config": "{}"}]})
    return tmp_path


def test_the_catalog_file_declares_the_v1_2_storage_format(out):
    assert CATALOG_STORAGE_VERSION == "v1.2.0"
    header = catalog_path(out).read_bytes()[:20]
    # main header: 8-byte checksum, the magic "DUCK", then the storage version number
    assert header[8:12] == b"DUCK"
    assert struct.unpack("<Q", header[12:20])[0] == V1_2_0_STORAGE_NUMBER
    con = connect(out)
    try:
        (tags,) = con.execute("SELECT tags FROM duckdb_databases() "
                              "WHERE NOT internal AND database_name <> 'memory'").fetchone()
        assert tags["storage_version"].startswith("v1.2.0")
        assert con.execute("SELECT labels FROM samples").fetchall() == [(["dog", "cat"],)]
    finally:
        con.close()


def test_a_duckdb_1x_command_line_tool_opens_the_catalog(out):
    """Runs only where a 1.x `duckdb` program is on PATH (`pip install duckdb-cli==1.5.6`)."""
    program = shutil.which("duckdb")
    if program is None:
        pytest.skip("no duckdb command-line tool on PATH (pip install duckdb-cli==1.5.6)")
    version = subprocess.run([program, "--version"], capture_output=True, text=True).stdout
    if not version.strip().startswith("v1."):
        pytest.skip(f"the duckdb on PATH is {version.strip()!r}, not a 1.x client")
    done = subprocess.run([program, "-readonly", "-csv", str(catalog_path(out)), "-c",
                           "SELECT count(*) AS n FROM samples"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["n", "1"]
