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


def test_rendering_and_encoding_never_import_torch(tmp_path, tiny_root):
    """Regression (issue 12): every spawned render worker used to import torch (~2 CPU s each,
    a sixth of a small build) only to pin its thread count. Torch is for the resampler alone: a
    build at the sources' own rate, run in a fresh interpreter, never imports it."""
    import subprocess
    import sys

    from teminal.pipeline.sources.synth import SAMPLE_RATE

    code = f"""
import sys
from teminal.pipeline.build import run_build
from teminal.pipeline.compose import ComposeConfig
from teminal.pipeline.config import BuildConfig
run_build(BuildConfig(out={str(tmp_path / 'b')!r}, root={str(tiny_root)!r}, stages=("b",),
                      shard_size=2, groups=4,
                      compose=ComposeConfig(sample_rate={SAMPLE_RATE}, clip_seconds=2.0)),
          progress=False, log=lambda m: None)
print("torch" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"
    assert list((tmp_path / "b" / "shards" / "b").glob("*.tar"))


def test_a_small_source_pool_is_decoded_in_the_main_process(tmp_path, tiny_root):
    """Below PARALLEL_DECODE_MIN_CLIPS the pool is decoded here, so workers need no torch; the
    pool file is the same either way."""
    from teminal.pipeline import pool as P
    from teminal.pipeline.sources.esc50 import scan

    clips = scan(tiny_root, {"train": [1, 2, 3, 4, 5]}).clips

    class Refuses:
        def imap(self, *a, **k):
            raise AssertionError("a small pool was sent to the workers")

    here = P.decode_pool(clips, SR, tmp_path / "a", Refuses(), progress=False)
    serial = P.decode_pool(clips, SR, tmp_path / "b", None, progress=False)
    assert len(clips) < P.PARALLEL_DECODE_MIN_CLIPS
    assert here.path.read_bytes() == serial.path.read_bytes() and here.index == serial.index
