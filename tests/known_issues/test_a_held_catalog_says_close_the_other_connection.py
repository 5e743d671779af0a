"""Issue 26.7: with the catalog open in a notebook (a read-write DuckDB connection holds its
lock), every catalog read failed with "rebuild it with `pipeline catalog OUT`", which does not
help and would rewrite a good catalog. The message now says to close the other connection."""
from __future__ import annotations

import subprocess
import sys

import duckdb
import pytest
from click.testing import CliRunner

from teminal.manifests.catalog import CatalogInUse, catalog_path, connect, write_catalog
from teminal.pipeline.cli import main

HOLD = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])   # read-write, as a notebook opens it
print("ready", flush=True)
sys.stdin.read()                     # hold the lock until the test closes stdin
"""


@pytest.fixture()
def out(tmp_path):
    write_catalog(tmp_path, {"samples": [], "sources": [], "shards": [], "rejects": [],
                             "builds": [{"build_id": "b1", "config": "{}"}]})
    return tmp_path


@pytest.fixture()
def held(out):
    """Another process holding a read-write connection on the catalog."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(catalog_path(out))],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def test_a_catalog_held_by_another_process_says_close_that_connection(out, held):
    with pytest.raises(CatalogInUse) as e:
        connect(out)
    message = str(e.value)
    assert "open for writing in another process" in message and f"PID {held.pid}" in message
    assert "close that connection" in message and "read_only=True" in message
    assert "rebuild" not in message and "pipeline catalog" not in message

    result = CliRunner().invoke(main, ["info", str(out)])
    assert result.exit_code == 1 and "close that connection" in result.output
    assert "Traceback" not in result.output


def test_a_catalog_held_in_this_process_with_other_settings_says_close_it(out):
    mine = duckdb.connect(str(catalog_path(out)))
    try:
        with pytest.raises(CatalogInUse, match=r"already open in this process.*con\.close\(\)"):
            connect(out)
    finally:
        mine.close()
    connect(out).close()  # closed, it opens again


def test_a_damaged_catalog_still_says_rewrite_it(out):
    # the hint is made from the folder's record (issue 26.3): a build's is its build.json
    record = out / "manifests" / "parts" / "build.json"
    record.parent.mkdir(parents=True)
    record.write_text("{}")
    catalog_path(out).write_bytes(b"not a database" * 100)
    with pytest.raises(FileNotFoundError, match=r"write it again: `pipeline catalog") as e:
        connect(out)
    assert not isinstance(e.value, CatalogInUse)
