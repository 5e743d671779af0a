"""Issue 9.2: two builds into one OUT mixed silently (a decode cache in OUT/.cache let both pass
the "OUT holds another build" check; both exited 0 with groups of both seeds and no catalog),
and two identical builds at once killed each other's temp files. A build now holds a lock on
OUT for its whole run (released however it ends; a stale lock file is taken over), build.json
is checked and written under a second lock, and the "same build" check cannot be bypassed by
leftover files."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from build_helpers import quick_build
from teminal.pipeline.build import _claim_out
from teminal.pipeline.config import BuildConfig
from teminal.pipeline.lock import LOCK_FILE, build_lock


@pytest.mark.parametrize("seed", [0, 1])  # an identical build as well as another one
def test_a_second_build_while_one_runs_refuses_naming_the_holder(small_source, tmp_path, seed):
    out = tmp_path / "out"
    out.mkdir()
    with build_lock(out):
        with pytest.raises(FileExistsError, match=rf"being built right now .*pid {os.getpid()}"):
            quick_build(small_source, out, seed=seed)
    assert not (out / "shards").exists() and not (out / ".cache").exists()


def test_a_build_in_another_process_holds_the_lock(small_source, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from teminal.pipeline.lock import build_lock\n"
         f"with build_lock(Path({str(out)!r})):\n    print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FileExistsError, match=rf"pid {holder.pid}"):
            quick_build(small_source, out)
    finally:
        holder.kill()
        holder.wait()
    with build_lock(out):  # the kernel released the dead holder's lock: it is stale now
        pass


def test_the_lock_is_released_when_a_build_fails(small_source, tmp_path, monkeypatch):
    from teminal.pipeline import build

    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError):
        quick_build(tmp_path / "no-such-root", out)
    assert not out.exists()   # a missing dataset is found before OUT is made

    def fail(*args, **kwargs):
        raise RuntimeError("a failure while the build holds the lock")

    monkeypatch.setattr(build, "_decode_and_pair", fail)
    with pytest.raises(RuntimeError, match="holds the lock"):
        quick_build(small_source, out)
    with build_lock(out):
        pass


def test_a_stale_lock_file_is_taken_over(tmp_path):
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": 999999, "host": "gone"}))
    with build_lock(tmp_path):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()


def test_parts_of_one_build_take_separate_locks(tmp_path):
    with build_lock(tmp_path, (0, 2)):
        with build_lock(tmp_path, (1, 2)):
            with pytest.raises(FileExistsError):
                with build_lock(tmp_path, (1, 2)):
                    pass


@pytest.mark.parametrize("leftover", [
    "shards/b/train-000000.tar",          # shards of an unknown build, no build record
    "manifests/samples.parquet",
    "manifests/merge.json",               # a merged catalog
    "notes.txt",                          # anything else
    "manifests/parts/b/train-000000.json",
])
def test_leftover_files_without_a_build_record_are_refused(tmp_path, leftover):
    (tmp_path / ".cache").mkdir()
    (tmp_path / leftover).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / leftover).write_bytes(b"x")
    with pytest.raises(FileExistsError, match="holds no build record.*--overwrite"):
        _claim_out(tmp_path, "abc", BuildConfig(out=str(tmp_path)))
    assert (tmp_path / leftover).read_bytes() == b"x"
    _claim_out(tmp_path, "abc", BuildConfig(out=str(tmp_path), overwrite=True))
    assert not (tmp_path / "shards").exists() and not (tmp_path / "manifests").exists()


def test_only_a_decode_cache_and_locks_may_precede_the_build_record(tmp_path):
    (tmp_path / ".cache").mkdir()
    (tmp_path / LOCK_FILE).write_text("")
    _claim_out(tmp_path, "abc", BuildConfig(out=str(tmp_path)))  # nothing to protect: accepted


@pytest.mark.parametrize("record", ['{"build_id": "other"}', "{not json", '{"build_id": null}'])
def test_another_or_unreadable_build_record_is_refused(tmp_path, record):
    (tmp_path / "manifests" / "parts").mkdir(parents=True)
    (tmp_path / "manifests" / "parts" / "build.json").write_text(record)
    (tmp_path / ".cache").mkdir()
    with pytest.raises(FileExistsError, match="made with other settings"):
        _claim_out(tmp_path, "abc", BuildConfig(out=str(tmp_path)))


def test_the_lock_records_who_holds_it(tmp_path):
    with build_lock(tmp_path, (1, 3)):
        info = json.loads((tmp_path / f"{LOCK_FILE}.part-1-of-3").read_text())
    assert info["pid"] == os.getpid() and info["part"] == "1/3" and info["started"] <= \
        time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() + 1))
