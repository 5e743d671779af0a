"""End-to-end builds on a tiny synthetic ESC-50: consistency, determinism, resume, parts, rejects."""
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from teminal.manifests.catalog import connect, fetch_dicts
from teminal.pipeline.build import run_build
from teminal.pipeline.catalog import write_build_catalog
from teminal.pipeline.build_options import parse_groups, parse_part, parse_splits
from teminal.pipeline.config import BuildConfig, resolve_group_counts
from teminal.pipeline.render import rerender
from teminal.pipeline.compose import ComposeConfig
from teminal.pipeline.shards import iter_groups

SR = 16000
REQUIRED = {
    "sources": {"source_id", "dataset", "path", "split", "fold", "label", "captions", "sample_rate", "duration"},
    "samples": {"key", "group_key", "stage", "split", "relation", "shard", "source_ids", "labels",
                "caption", "captions", "template_ids", "offsets", "gains_db", "snr_db", "augment",
                "seed", "sample_rate", "num_samples", "sha256", "dataset", "build_id"},
    "shards": {"path", "stage", "split", "num_groups", "num_samples", "bytes", "sha256"},
    "rejects": {"path", "reason", "dataset", "phase"},
    "builds": {"build_id", "config", "version", "synthetic", "created"},
}


def make_config(out, root, **kw) -> BuildConfig:
    kw.setdefault("shard_size", 3)
    return BuildConfig(out=str(out), root=str(root),
                       compose=ComposeConfig(sample_rate=SR, clip_seconds=4.0), **kw)


def build(out, root, **kw):
    return run_build(make_config(out, root, **kw), progress=False, log=lambda m: None)


def digests(out: Path) -> dict[str, str]:
    """sha256 of every shard and Parquet manifest (the deterministic outputs of a build)."""
    files = sorted(out.glob("shards/*/*.tar")) + sorted(out.glob("manifests/*.parquet"))
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def rows(out: Path, sql: str, params=()) -> list[dict]:
    con = connect(out)
    try:
        return fetch_dicts(con, sql, params)
    finally:
        con.close()


pytestmark = pytest.mark.filterwarnings("ignore:WebDataset\\(shardshuffle")


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    """4 classes x 5 folds x 1 clip: test 4 clips, val 4, train 12."""
    from teminal.pipeline.sources.synth import CLASS_NAMES, write_synthetic_esc50

    return write_synthetic_esc50(tmp_path_factory.mktemp("tiny") / "esc50", seed=0,
                                 clips_per_class_per_fold=1, classes=CLASS_NAMES[:4])


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_root):
    out = tmp_path_factory.mktemp("reference")
    summary = build(out, tiny_root)
    return out, summary, digests(out)


def test_reference_build_summary(reference):
    out, summary, files = reference
    assert summary.synthetic and summary.catalog
    # groups per split = clips (groups_per_clip 1): 12 + 4 + 4 per stage
    assert summary.groups == 40 and summary.samples == 20 * 2 + 20 * 3
    assert summary.shards_built == summary.shards_total == len([f for f in files if f.endswith(".tar")])
    assert "SYNTHETIC" in summary.format()
    assert not (out / ".cache").exists()


def test_catalog_opens_with_duckdb_and_has_the_required_columns(reference):
    out = reference[0]
    for table, needed in REQUIRED.items():
        cols = {r["column_name"] for r in rows(out, f"DESCRIBE {table}")}
        assert needed <= cols, f"{table} lacks {needed - cols}"
    (build_row,) = rows(out, "SELECT * FROM builds")
    assert build_row["synthetic"] is True and build_row["build_id"] == reference[1].build_id


def test_every_sample_row_matches_its_shard_member(reference):
    out = reference[0]
    samples = rows(out, "SELECT key, shard, sha256, relation FROM samples")
    members: dict[str, str] = {}
    for tar_path in out.glob("shards/*/*.tar"):
        with tarfile.open(tar_path) as tar:
            for info in tar:
                if not info.name.endswith(".json"):
                    key = info.name.rsplit(".", 1)[0]
                    members[key] = hashlib.sha256(tar.extractfile(info).read()).hexdigest()
    assert {s["key"]: s["sha256"] for s in samples} == members
    shards = rows(out, "SELECT * FROM shards")
    assert {s["path"] for s in shards} == {str(p.relative_to(out)) for p in out.glob("shards/*/*.tar")}
    for s in shards:
        data = (out / s["path"]).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (s["bytes"], s["sha256"])
    per_shard = rows(out, "SELECT shard, count(*) AS n, count(DISTINCT group_key) AS g FROM samples GROUP BY shard")
    assert {r["shard"]: (r["n"], r["g"]) for r in per_shard} == \
        {s["path"]: (s["num_samples"], s["num_groups"]) for s in shards}


def test_no_clip_crosses_splits_and_pairs_differ_in_class(reference):
    out = reference[0]
    leaks = rows(out, """
        SELECT s.key, s.split, src.split AS source_split
        FROM (SELECT key, split, unnest(source_ids) AS sid FROM samples) s
        JOIN sources src ON src.source_id = s.sid WHERE src.split <> s.split""")
    assert leaks == []
    pairs = rows(out, "SELECT labels FROM samples WHERE len(labels) = 2")
    assert pairs and all(r["labels"][0] != r["labels"][1] for r in pairs)
    splits = {r["split"]: r["folds"] for r in rows(
        out, "SELECT split, list(DISTINCT fold ORDER BY fold) AS folds FROM sources GROUP BY split")}
    assert splits == {"test": [5], "val": [4], "train": [1, 2, 3]}


def test_group_json_carries_the_catalog_rows(reference):
    out = reference[0]
    shard = sorted(out.glob("shards/b/test-*.tar"))[0]
    meta, waves = next(iter_groups([shard]))
    catalog = {r["key"]: r for r in rows(out, "SELECT * FROM samples WHERE group_key = ?", [meta["group_key"]])}
    assert {r["key"] for r in meta["samples"]} == set(catalog)
    for r in meta["samples"]:
        assert r["sha256"] == catalog[r["key"]]["sha256"] and r["gains_db"] == catalog[r["key"]]["gains_db"]
    assert set(waves) == {"forward", "reversed", "overlay"}
    assert all(w.shape == (4 * SR,) for w in waves.values())


def test_plain_webdataset_reads_the_built_shards(reference):
    wds = pytest.importorskip("webdataset")
    out = reference[0]
    urls = [str(p) for p in sorted(out.glob("shards/b/train-*.tar"))]
    samples = list(wds.WebDataset(urls))
    assert len(samples) == 12
    assert all({"forward.flac", "reversed.flac", "overlay.flac", "json"} <= set(s) for s in samples)


@pytest.mark.parametrize("relation", ["forward", "overlay", "single"])
def test_render_from_recipe_matches_the_stored_member(reference, relation):
    out = reference[0]
    (row,) = rows(out, "SELECT key FROM samples WHERE relation = ? ORDER BY key LIMIT 1", [relation])
    result = rerender(out, row["key"])
    assert result.match, (result.expected, result.stored, result.actual)
    assert result.audio.shape == (4 * SR,)


def test_a_second_build_is_byte_identical(tmp_path, reference, tiny_root):
    build(tmp_path / "again", tiny_root)
    assert digests(tmp_path / "again") == reference[2]


def test_parallel_build_is_byte_identical_to_serial(tmp_path, reference, tiny_root):
    summary = build(tmp_path / "parallel", tiny_root, workers=2)
    assert summary.build_id == reference[1].build_id
    assert digests(tmp_path / "parallel") == reference[2]


def test_rerun_skips_finished_shards(tmp_path, reference, tiny_root):
    out = tmp_path / "out"
    shutil.copytree(reference[0], out)
    summary = build(out, tiny_root)
    assert summary.shards_built == 0 and summary.shards_skipped == summary.shards_total
    assert digests(out) == reference[2]


def test_resume_after_an_interrupted_build(tmp_path, reference, tiny_root):
    out = tmp_path / "out"
    shutil.copytree(reference[0], out)
    tars = sorted(out.glob("shards/*/*.tar"))
    tars[0].unlink()                                               # never written
    (out / "manifests/parts/b" / (tars[-1].stem + ".json")).unlink()  # killed before its fragment
    tars[3].write_bytes(tars[3].read_bytes()[:1000])              # damaged after the fact
    (tars[5].parent / (tars[5].name + ".tmp-999")).write_bytes(b"half")   # killed mid-write
    for p in out.glob("manifests/*.parquet"):
        p.unlink()
    (out / "manifests" / "catalog.duckdb").unlink()
    summary = build(out, tiny_root)
    assert summary.shards_built == 3
    assert digests(out) == reference[2]
    assert not list(out.rglob("*.tmp-*"))


def test_resume_after_killing_the_build_process(tmp_path, reference, tiny_root):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "teminal.pipeline.cli", "build", "--root", str(tiny_root),
           "--out", str(out), "--sample-rate", str(SR), "--clip-seconds", "4", "--shard-size", "3",
           "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(out.glob("manifests/parts/*/*.json"))) >= 2:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_early = not (out / "manifests" / "catalog.duckdb").exists()
    summary = build(out, tiny_root)
    assert digests(out) == reference[2]
    if killed_early:
        assert summary.shards_skipped >= 2


def test_parts_build_disjoint_shards_and_merge_into_the_full_build(tmp_path, reference, tiny_root):
    out = tmp_path / "parts"
    first = build(out, tiny_root, part=(0, 2))
    assert first.catalog is None
    with pytest.raises(RuntimeError, match="incomplete"):
        write_build_catalog(out)
    second = build(out, tiny_root, part=(1, 2))
    assert first.shards_total + second.shards_total == reference[1].shards_total
    assert second.catalog is not None
    assert digests(out) == reference[2]


def test_bad_sources_become_rejects_and_the_build_completes(tmp_path, tiny_root):
    root = tmp_path / "esc50"
    shutil.copytree(tiny_root, root)
    audio = sorted((root / "audio").glob("*.wav"))
    train = [p for p in audio if p.name.split("-")[0] in "123"]
    train[0].unlink()                                                   # missing
    data = train[1].read_bytes()
    train[1].write_bytes(data[: len(data) // 2])                        # truncated
    sf.write(train[2], np.zeros(5 * 44100, dtype=np.int16), 44100, subtype="PCM_16")   # silent
    train[3].write_bytes(b"this is not a wav file" * 10)                # corrupt header
    sf.write(train[4], np.zeros(0, dtype=np.int16), 44100, subtype="PCM_16")          # empty
    summary = build(tmp_path / "out", root)
    assert summary.catalog
    rejects = {Path(r["path"]).name: r for r in rows(tmp_path / "out", "SELECT * FROM rejects")}
    assert set(rejects) == {p.name for p in train[:5]}
    assert rejects[train[0].name]["reason"] == "missing file"
    assert rejects[train[0].name]["phase"] == "scan"
    assert rejects[train[1].name]["reason"].startswith("truncated") and rejects[train[1].name]["phase"] == "decode"
    assert rejects[train[2].name]["reason"].startswith("silent") and rejects[train[2].name]["phase"] == "decode"
    assert rejects[train[3].name]["reason"].startswith("unreadable header")
    used = rows(tmp_path / "out", "SELECT DISTINCT unnest(source_ids) AS sid FROM samples")
    assert rejects[train[4].name]["reason"].startswith("empty")
    bad_ids = {f"esc50synth-{p.stem}" for p in train[:5]}
    assert not bad_ids & {r["sid"] for r in used}
    assert not bad_ids & {r["source_id"] for r in rows(tmp_path / "out", "SELECT source_id FROM sources")}
    assert summary.rejects == {"missing file": 1, "truncated": 1, "silent": 1, "unreadable header": 1,
                               "empty": 1}


def test_another_build_in_the_same_out_is_refused_unless_overwritten(tmp_path, reference, tiny_root):
    out = tmp_path / "out"
    shutil.copytree(reference[0], out)
    with pytest.raises(FileExistsError, match="--overwrite"):
        build(out, tiny_root, seed=1)
    summary = build(out, tiny_root, seed=1, overwrite=True)
    assert summary.build_id != reference[1].build_id and summary.catalog


def test_missing_root_says_how_to_get_the_data(tmp_path):
    with pytest.raises(FileNotFoundError, match="pipeline synth esc50"):
        build(tmp_path / "out", tmp_path / "nowhere")


def test_build_id_follows_the_output_settings_only(tmp_path, tiny_root):
    from teminal.pipeline.config import compute_build_id

    base = make_config(tmp_path, tiny_root)
    clips, digest = [], {}
    same = compute_build_id(make_config(tmp_path / "x", tiny_root, workers=2, part=(1, 3)), clips, digest)
    assert compute_build_id(base, clips, digest) == same
    assert compute_build_id(make_config(tmp_path, tiny_root, seed=1), clips, digest) != same
    for louder in (dict(target_db=-14.0), dict(ceiling=0.9)):
        compose = ComposeConfig(sample_rate=SR, clip_seconds=4.0, **louder)
        other = BuildConfig(out=str(tmp_path), root=str(tiny_root), shard_size=3, compose=compose)
        assert compute_build_id(other, clips, digest) != same


def test_catalog_rows_carry_the_recipe_version_and_loudness(reference):
    from teminal.pipeline.compose import CEILING, RECIPE_VERSION, TARGET_DB

    out = reference[0]
    con = connect(out)
    try:
        rows = con.execute("SELECT DISTINCT recipe_version, target_db, ceiling FROM samples").fetchall()
    finally:
        con.close()
    assert rows == [(RECIPE_VERSION, TARGET_DB, CEILING)]


def test_option_parsers():
    assert parse_splits("test=5,val=4,train=1,2,3", int) == {"test": [5], "val": [4], "train": [1, 2, 3]}
    assert parse_splits(None) is None
    with pytest.raises(ValueError):
        parse_splits("5,4", int)
    assert parse_groups("200") == 200
    assert parse_groups("train=100,val=10") == {"train": 100, "val": 10}
    assert parse_part("1/4") == (1, 4)
    with pytest.raises(ValueError):
        parse_part("4")
    counts = {"train": 1200, "val": 400, "test": 400}
    assert resolve_group_counts(None, counts) == counts
    assert resolve_group_counts(600, counts) == {"train": 600, "val": 200, "test": 200}
    assert resolve_group_counts({"test": 50}, counts, 0.5) == {"train": 600, "val": 200, "test": 50}
    with pytest.raises(ValueError):
        BuildConfig(out="x", part=(2, 2))


@pytest.mark.realdata
def test_real_esc50_clips_build_and_re_render(tmp_path, esc50_real):
    """Real 44.1 kHz ESC-50 clips: resampled once, composed, stored and re-rendered bit for bit."""
    summary = build(tmp_path / "out", esc50_real, stages=("b",), splits={"train": [1, 2, 3, 4, 5]},
                    groups=6, shard_size=6)
    assert not summary.synthetic and summary.rejects == {} and summary.samples == 18
    (build_row,) = rows(tmp_path / "out", "SELECT synthetic FROM builds")
    assert build_row["synthetic"] is False
    (row,) = rows(tmp_path / "out", "SELECT key FROM samples WHERE relation = 'overlay' ORDER BY key LIMIT 1")
    assert rerender(tmp_path / "out", row["key"]).match
