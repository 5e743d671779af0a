"""Executors of a build: a Ray build equals the local one byte for byte; a failing shard is
retried, then recorded without losing the others, and a rerun finishes the build."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from teminal.pipeline import render
from teminal.pipeline.build import run_build
from teminal.pipeline.cli import main
from teminal.pipeline.compose import ComposeConfig
from teminal.pipeline.config import BuildConfig

SR = 8000


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    from teminal.pipeline.sources.synth import CLASS_NAMES, write_synthetic_esc50

    return write_synthetic_esc50(tmp_path_factory.mktemp("tiny") / "esc50", seed=0,
                                 clips_per_class_per_fold=1, classes=CLASS_NAMES[:3])


def config(out, root, **kw) -> BuildConfig:
    return BuildConfig(out=str(out), root=str(root), stages=("b",), shard_size=2, groups=6,
                       compose=ComposeConfig(sample_rate=SR, clip_seconds=2.0), **kw)


def digests(out: Path) -> dict[str, str]:
    files = sorted(out.glob("shards/*/*.tar")) + sorted(out.glob("manifests/*.parquet"))
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def quiet(cfg: BuildConfig):
    return run_build(cfg, progress=False, log=lambda m: None)


def test_ray_build_is_byte_identical_to_the_local_build(tmp_path, tiny_root):
    local = quiet(config(tmp_path / "local", tiny_root))
    ray = quiet(config(tmp_path / "ray", tiny_root, executor="ray", workers=2))
    assert ray.executor == "ray" and not ray.failed and ray.catalog
    assert ray.build_id == local.build_id and ray.shards_built == local.shards_built > 1
    assert digests(tmp_path / "ray") == digests(tmp_path / "local")
    again = quiet(config(tmp_path / "ray", tiny_root, executor="ray", workers=2))
    assert again.shards_built == 0 and again.shards_skipped == local.shards_total   # resume


def test_a_failing_shard_is_retried_then_recorded_and_a_rerun_finishes(tmp_path, tiny_root,
                                                                        monkeypatch):
    real, calls = render.build_shard, []

    def flaky(task, ctx, index):
        calls.append(task.relpath)
        if task.relpath.endswith("train-000001.tar"):
            raise OSError("disk full (injected)")
        return real(task, ctx, index)

    monkeypatch.setattr(render, "build_shard", flaky)
    out = tmp_path / "out"
    summary = quiet(config(out, tiny_root, retries=1))
    bad = "shards/b/train-000001.tar"
    assert calls.count(bad) == 2                          # 1 try + 1 retry
    assert [f["shard"] for f in summary.failed] == [bad] and summary.catalog is None
    assert summary.failed[0]["error"] == "OSError: disk full (injected)"
    assert summary.shards_built == summary.shards_total - 1
    assert "FAILED" in summary.format() and "rerun" in summary.format()
    recorded = json.loads((out / "manifests/parts/failed.json").read_text())
    assert recorded["failed"][0]["shard"] == bad

    args = ["build", "--root", str(tiny_root), "--out", str(out), "--stages", "b",
            "--shard-size", "2", "--groups", "6", "--sample-rate", str(SR), "--clip-seconds", "2",
            "--retries", "0", "--no-progress"]
    failing = CliRunner().invoke(main, args)
    assert failing.exit_code == 1 and "FAILED   1 shard(s)" in failing.output

    monkeypatch.setattr(render, "build_shard", real)
    done = CliRunner().invoke(main, args)
    assert done.exit_code == 0, done.output
    assert "1 built" in done.output and not (out / "manifests/parts/failed.json").exists()
    assert digests(out) == digests_of_clean_build(tmp_path / "clean", tiny_root)


def digests_of_clean_build(out: Path, root: Path) -> dict[str, str]:
    quiet(config(out, root))
    return digests(out)


def test_executor_options_are_checked():
    with pytest.raises(ValueError, match="executor 'spark'"):
        BuildConfig(out="x", executor="spark")
    with pytest.raises(ValueError, match="--ray-address applies to --executor ray"):
        BuildConfig(out="x", ray_address="auto")
    with pytest.raises(ValueError, match="retries"):
        BuildConfig(out="x", retries=-1)
