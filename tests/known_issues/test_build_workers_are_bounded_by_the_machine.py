"""Issue 23.9 (build part): the largest accepted `pipeline build --workers` (1024) spawned every
process up front (819 processes, 17 GB gone in 82 s). --workers is now at most
WORKERS_PER_CPU x the CPUs this process may use (`executors.max_workers`), checked with the other
options before any work, and the message says the limit and why."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from teminal.pipeline import executors
from teminal.pipeline.cli import main
from teminal.pipeline.config import BuildConfig


@pytest.mark.parametrize("extra", [1, 100, 1024, 10**6, 2**63])
def test_more_workers_than_the_machine_allows_is_refused_before_any_work(small_source,
                                                                         tmp_path, extra):
    workers = executors.max_workers() + extra
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["build", "--root", str(small_source), "--out", str(out),
                                       "--no-progress", "--workers", str(workers)])
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    assert f"--workers {workers}: give 1..{executors.max_workers()} processes" in result.output
    assert f"{executors.usable_cpus()} here" in result.output and not out.exists()


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_the_limit_applies_to_every_executor_and_follows_the_cpus(monkeypatch, executor):
    monkeypatch.setattr(executors, "usable_cpus", lambda: 3)
    BuildConfig(out="x", workers=12, executor=executor)
    with pytest.raises(ValueError, match=r"--workers 13: give 1\.\.12 processes \(at most 4 per "
                                         r"CPU; 3 here\)"):
        BuildConfig(out="x", workers=13, executor=executor)


def test_usable_cpus_is_what_this_process_may_run_on():
    import os

    assert 1 <= executors.usable_cpus() <= (os.cpu_count() or 1)
    assert executors.max_workers() == executors.WORKERS_PER_CPU * executors.usable_cpus()
