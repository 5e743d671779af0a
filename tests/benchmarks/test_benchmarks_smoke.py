"""Seconds-long smoke runs of every benchmark: each runs to the end on a tiny input and prints
its figures as one JSON object on its last line. The figures themselves are not checked here
(benchmarks measure, tests do not time; see BENCHMARKS.md)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def run_bench(name: str, *args: str) -> tuple[dict, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(BENCH / name), *args], env=env,
                         capture_output=True, text=True, timeout=600)  # a hang guard only
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    return json.loads(lines[-1]), out.stdout


def test_eval_benchmark_prints_ratios_and_same_metrics(synthetic_esc50):
    figures, table = run_bench("bench_eval.py", "--source", str(synthetic_esc50), "--groups", "2",
                               "--max-items", "2", "--seconds", "1", "--workers", "1")
    assert figures["same_metrics"] is True
    assert figures["zste_workers"]["decode"]["workers"] == 1
    assert {"audio_pass_to_embedding", "end_to_end_to_model"} <= set(figures["ratios"])
    assert "audio pass / embedding alone" in table


def test_train_benchmark_prints_stall_and_loader_ratio(synthetic_esc50):
    figures, _ = run_bench("bench_train.py", "--source", str(synthetic_esc50), "--steps", "2",
                           "--loader-batches", "2", "--groups-per-batch", "2", "--workers", "1",
                           "--seconds", "1")
    assert figures["steps"] == 2 and figures["loader_over_train"] > 0


def test_pipeline_benchmark_prints_build_to_floor_ratio(synthetic_esc50):
    figures, _ = run_bench("bench_pipeline.py", "--data", str(synthetic_esc50),
                           "--groups-per-clip", "0.1", "--repeat", "1", "--sample-rate", "8000")
    assert figures["ratio_build_to_floor"] > 0 and figures["members"] > 0


def test_device_benchmark_without_cuda_says_so_and_exits_0(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("on a CUDA machine bench_device.py is a real run, not a smoke test")
    sys.path.insert(0, str(BENCH))
    try:
        import bench_device
    finally:
        sys.path.remove(str(BENCH))
    assert bench_device.main([]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "no CUDA device" in lines[0] and "nothing measured" in lines[0]
    assert json.loads(lines[-1]) == {"benchmark": bench_device.BENCHMARK, "measured": False,
                                     "cuda": False, "reason": bench_device.no_cuda_reason()}


def test_library_swaps_benchmark_compares_both_candidates(capsys):
    sys.path.insert(0, str(BENCH))   # in this process: no second interpreter to start
    try:
        import bench_library_swaps
    finally:
        sys.path.remove(str(BENCH))
    assert bench_library_swaps.main(["--model", "toy", "--snapshots", "2", "--locks", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    figures, table = json.loads(lines[-1]), "\n".join(lines[:-1])
    assert {"project_build_lock_us", "project_flock_us", "filelock_us"} <= set(figures["locks"])
    averaging = figures["averaging"]
    assert averaging["tensors"] > 0 and set(averaging["ms_per_snapshot"]) == {"project",
                                                                              "swa_utils"}
    assert "filelock" in table and "swa_utils" in table
