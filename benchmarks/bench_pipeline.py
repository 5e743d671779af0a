"""Throughput of a stage-B build against the cost floor of the same output, on real ESC-50 clips.

    python benchmarks/bench_pipeline.py [--data ../shared/data/esc50-real] [--groups-per-clip 3]

Two phases, each in a fresh process (so peak memory is its own), with one core each:
- floor: decode every source once (load_source at 48 kHz), encode as many 10 s members as the
  build renders (a plain concatenation of two sources, FLAC) and write them to a tar;
- build: `run_build` of stage B (forward, reversed, overlay) with every clip in one split, one
  worker, everything included (scan, decode, pairing, rendering, encoding, shards, manifests,
  catalog).
- parallel (`--parallel 2`): the same build with 2 workers, for the speed-up over 1 worker.
Reported: composites per second per core for both, their ratio (target <= 1.10), peak RSS of each
phase (ru_maxrss; most of it is the interpreter with torch imported, given as rss_after_imports)
and the size of the decoded source pool that bounds the build's memory. The machine's cores may
be shared: each phase runs `--repeat` times, interleaved, and the fastest run of each counts;
the CPU-time ratio (process + its workers) is given beside the wall-time one, as it stays
meaningful when other work holds the cores (the 2-worker speed-up needs 2 idle cores). The last
line is one JSON object with every figure.
Run it with the MALLOC_* settings of the Makefile (docs/STACK-NOTES.md: page faults on large numpy
buffers otherwise cost about 25%); `make bench` exports them.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "esc50-real"
MALLOC = {"MALLOC_MMAP_THRESHOLD_": "67108864", "MALLOC_TRIM_THRESHOLD_": "4294967296",
          "MALLOC_TOP_PAD_": "67108864"}


def phase_floor(data: Path, members: int, sample_rate: int, workdir: Path) -> dict:
    import io

    import numpy as np

    from teminal.pipeline.audio import encode_member, load_source
    from teminal.pipeline.sources.esc50 import scan

    clips = scan(data, {"train": [1, 2, 3, 4, 5]}).clips
    load_source(clips[0].path, sample_rate)          # warm up imports and the resampler
    baseline = _maxrss_mb()
    t0, c0 = time.perf_counter(), _cpu()
    waves = [load_source(c.path, sample_rate) for c in clips]
    t_decode = time.perf_counter() - t0
    n = len(waves)
    with tarfile.open(workdir / "floor.tar", "w") as tar:
        for i in range(members):
            x = np.concatenate([waves[i % n], waves[(i + 1) % n]])
            data_, ext = encode_member(x, sample_rate, "flac")
            info = tarfile.TarInfo(f"{i:06d}.{ext}")
            info.size = len(data_)
            tar.addfile(info, io.BytesIO(data_))
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "cpu_seconds": _cpu() - c0, "decode_seconds": t_decode,
            "sources": n, "members": members,
            "bytes": (workdir / "floor.tar").stat().st_size, "maxrss_mb": _maxrss_mb(),
            "baseline_mb": baseline}


def phase_build(data: Path, groups_per_clip: float, sample_rate: int, workdir: Path,
                shard_size: int, workers: int = 1) -> dict:
    from teminal.pipeline.audio import load_source
    from teminal.pipeline.build import run_build
    from teminal.pipeline.config import BuildConfig
    from teminal.pipeline.compose import ComposeConfig
    from teminal.pipeline.sources.esc50 import scan

    load_source(scan(data, {"train": [1, 2, 3, 4, 5]}).clips[0].path, sample_rate)  # as the floor
    import duckdb  # noqa: F401  (import cost is not pipeline work)
    baseline = _maxrss_mb()
    config = BuildConfig(out=str(workdir / "build"), root=str(data), stages=("b",),
                         splits={"train": [1, 2, 3, 4, 5]}, groups_per_clip=groups_per_clip,
                         shard_size=shard_size, workers=workers,
                         compose=ComposeConfig(sample_rate=sample_rate))
    t0, c0 = time.perf_counter(), _cpu()
    summary = run_build(config, progress=False, log=lambda m: None)
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "cpu_seconds": _cpu() - c0, "members": summary.samples, "groups": summary.groups,
            "bytes": summary.bytes, "maxrss_mb": _maxrss_mb(), "baseline_mb": baseline,
            "pool_mb": summary.pool_bytes / 2**20}


def _cpu() -> float:
    """CPU seconds of this process and its finished children (a build's worker pool): unlike
    wall time, not stretched by other work waiting for the same cores."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(args, phase: str, workdir: Path, members: int = 0, workers: int = 1) -> dict:
    cmd = [sys.executable, __file__, "--phase", phase, "--data", str(args.data),
           "--groups-per-clip", str(args.groups_per_clip), "--sample-rate", str(args.sample_rate),
           "--shard-size", str(args.shard_size), "--members", str(members), "--workdir", str(workdir),
           "--workers", str(workers)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", **{k: os.environ.get(k, v) for k, v in MALLOC.items()}}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"bench_pipeline: the {phase} phase failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--groups-per-clip", type=float, default=3.0)
    ap.add_argument("--sample-rate", type=int, default=48000)
    ap.add_argument("--shard-size", type=int, default=20,
                    help="groups per shard (default 20: enough shards for 2 workers to share "
                         "evenly; a shard is the unit of parallel work)")
    ap.add_argument("--workers", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--parallel", type=int, default=2,
                    help="also build with this many workers (0: skip); its speed-up over 1 "
                         "worker is reported (target >= 1.8 with 2)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="rounds (build, floor, parallel build back to back): the best of each "
                         "phase and the median of the per-round ratios are reported")
    ap.add_argument("--phase", choices=["floor", "build"], help=argparse.SUPPRESS)
    ap.add_argument("--members", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.phase == "floor":
        print(json.dumps(phase_floor(args.data, args.members, args.sample_rate, args.workdir)))
        return
    if args.phase == "build":
        print(json.dumps(phase_build(args.data, args.groups_per_clip, args.sample_rate,
                                     args.workdir, args.shard_size, args.workers)))
        return

    if not (args.data / "meta" / "esc50.csv").exists():
        sys.exit(f"bench_pipeline: no ESC-50 clips at {args.data} (expected ../shared/data/esc50-real)")
    builds, floors, parallel = [], [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
            build = _child(args, "build", Path(tmp))
            builds.append(build)
        with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
            floors.append(_child(args, "floor", Path(tmp), members=build["members"]))
        if args.parallel > 1:
            with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
                parallel.append(_child(args, "build", Path(tmp), workers=args.parallel))
    build = min(builds, key=lambda r: r["seconds"])
    floor = min(floors, key=lambda r: r["seconds"])
    b_rate, f_rate = build["members"] / build["seconds"], floor["members"] / floor["seconds"]
    best_parallel = min(parallel, key=lambda r: r["seconds"]) if parallel else None
    # Paired rounds: this machine's single-core speed drifts by 10-20 % within minutes (shared
    # hosts), which moves "best of each phase" by as much; the ratio of the phases of one round
    # (run back to back) drifts far less, and its median over rounds is the figure to quote.
    paired = [b["seconds"] / f["seconds"] for b, f in zip(builds, floors)]
    paired_speedup = [b["seconds"] / p["seconds"] for b, p in zip(builds, parallel)]
    result = {
        "benchmark": "pipeline stage-B build vs cost floor (1 core, 48 kHz FLAC, real ESC-50)",
        "sources": floor["sources"], "groups": build["groups"], "members": build["members"],
        "build_members_per_s_per_core": round(b_rate, 1),
        "floor_members_per_s_per_core": round(f_rate, 1),
        "ratio_build_to_floor": round(floor_rate_ratio(b_rate, f_rate), 3),
        "ratio_paired_median": round(statistics.median(paired), 3),
        "ratio_paired_rounds": [round(r, 3) for r in paired],
        "target_ratio": 1.10,
        "ratio_build_to_floor_cpu": round(build["cpu_seconds"] / floor["cpu_seconds"], 3),
        "build_seconds": round(build["seconds"], 2), "floor_seconds": round(floor["seconds"], 2),
        "build_cpu_seconds": round(build["cpu_seconds"], 2),
        "floor_cpu_seconds": round(floor["cpu_seconds"], 2),
        "floor_decode_seconds": round(floor["decode_seconds"], 2),
        "build_peak_rss_mb": round(build["maxrss_mb"], 1),
        "floor_peak_rss_mb": round(floor["maxrss_mb"], 1),
        "rss_after_imports_mb": round(build["baseline_mb"], 1),
        "source_pool_mb": round(build["pool_mb"], 1),
        "shard_bytes_mb": round(build["bytes"] / 2**20, 1),
        "malloc_tuned": all(k in os.environ for k in MALLOC),
        "shard_size": args.shard_size, "repeat": args.repeat,
        "load_average_1min": round(os.getloadavg()[0], 2), "cpus": os.cpu_count(),
    }
    if best_parallel is not None:
        result.update({
            "parallel_workers": args.parallel,
            "parallel_members_per_s": round(best_parallel["members"] / best_parallel["seconds"], 1),
            "parallel_seconds": round(best_parallel["seconds"], 2),
            "parallel_speedup": round(build["seconds"] / best_parallel["seconds"], 3),
            "parallel_speedup_paired_median": round(statistics.median(paired_speedup), 3),
            "parallel_speedup_paired_rounds": [round(r, 3) for r in paired_speedup],
            "parallel_cpu_seconds": round(best_parallel["cpu_seconds"], 2),
            "parallel_cpu_over_serial": round(best_parallel["cpu_seconds"] / build["cpu_seconds"], 3),
            "target_speedup": 1.8,
        })
    width = max(len(k) for k in result)
    for k, v in result.items():
        print(f"{k.ljust(width)}  {v}")
    print(json.dumps(result), flush=True)


def floor_rate_ratio(build_rate: float, floor_rate: float) -> float:
    """Time ratio of the build to the floor for the same output (1.0 = at the floor)."""
    return floor_rate / build_rate if build_rate else float("inf")


if __name__ == "__main__":
    main()
