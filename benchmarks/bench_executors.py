"""Members/s of the same stage-B build with `--workers 1`, `--workers 2` and `--executor ray`
(a local Ray instance with 2 CPUs), in one run, as ratios to the 1-worker build; plus Ray's
start-up time, the round trip of an empty Ray task, and Ray's overhead per shard.

    python benchmarks/bench_executors.py [--data ../shared/data/esc50-real] [--sample-rate 16000]

A first, untimed build decodes the source pool once (`--keep-cache`); every timed build starts
from an empty OUT holding a copy of that pool, so `seconds` covers scan, plan, render and
catalog, and `render_seconds` the render phase alone, where the executors differ. Overhead
per shard = (Ray render seconds - 2-worker render seconds) / shards. The three builds' shards
and manifests are checked to be byte-identical. The machine's cores may be shared with other
work: each configuration runs `--repeat` times, interleaved, and the fastest run counts.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "esc50-real"


def build(data: Path, out: Path, sample_rate: int, groups_per_clip: float, shard_size: int,
          pool: Path | None = None, **kw) -> dict:
    from teminal.pipeline.build import run_build
    from teminal.pipeline.compose import ComposeConfig
    from teminal.pipeline.config import BuildConfig

    config = BuildConfig(out=str(out), root=str(data), stages=("b",),
                         splits={"train": [1, 2, 3, 4, 5]}, groups_per_clip=groups_per_clip,
                         shard_size=shard_size, compose=ComposeConfig(sample_rate=sample_rate), **kw)
    if pool is not None:
        shutil.copytree(pool, out / ".cache")
    s = run_build(config, progress=False, log=lambda m: None)
    if s.failed or not s.catalog:
        sys.exit(f"bench_executors: build failed: {s.failed}")
    files = sorted(out.glob("shards/*/*.tar")) + sorted(out.glob("manifests/*.parquet"))
    digest = hashlib.sha256(b"".join(hashlib.sha256(p.read_bytes()).digest() for p in files))
    return {"seconds": s.seconds, "render_seconds": s.render_seconds, "members": s.rendered,
            "shards": s.shards_built, "members_per_s": s.rendered / s.seconds,
            "render_members_per_s": s.rendered / s.render_seconds, "digest": digest.hexdigest()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--sample-rate", type=int, default=16000)
    ap.add_argument("--groups-per-clip", type=float, default=2.0)
    ap.add_argument("--shard-size", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    if not (args.data / "meta" / "esc50.csv").exists():
        sys.exit(f"bench_executors: no ESC-50 clips at {args.data} (expected ../shared/data/esc50-real)")

    from teminal.pipeline.executors import ray_task_overhead, start_ray

    import ray

    common = dict(sample_rate=args.sample_rate, groups_per_clip=args.groups_per_clip,
                  shard_size=args.shard_size)
    runs: dict[str, list[dict]] = {"workers=1": [], "workers=2": [], "ray(2 CPUs)": []}
    warm = Path(tempfile.mkdtemp(prefix="bench-executors-pool-"))
    build(args.data, warm / "out", **common, keep_cache=True)     # decodes the pool once
    common["pool"] = warm / "out" / ".cache"
    ray_start, empty_task = [], []
    try:
        for _ in range(args.repeat):
            for name, kw in (("workers=1", dict(workers=1)), ("workers=2", dict(workers=2))):
                with tempfile.TemporaryDirectory(prefix="bench-executors-") as tmp:
                    runs[name].append(build(args.data, Path(tmp) / "out", **common, **kw))
            # Ray is started only for its own build: a first version that kept it running
            # during the local builds died once with SIGABRT (cause not found)
            t0 = time.perf_counter()
            start_ray(None, num_cpus=2)
            ray_start.append(time.perf_counter() - t0)
            try:
                with tempfile.TemporaryDirectory(prefix="bench-executors-") as tmp:
                    runs["ray(2 CPUs)"].append(build(args.data, Path(tmp) / "out", **common,
                                                     executor="ray", workers=2))
                empty_task.append(ray_task_overhead())
            finally:
                ray.shutdown()
    finally:
        shutil.rmtree(warm, ignore_errors=True)
    ray_start, empty_task = min(ray_start), min(empty_task)
    best = {k: min(v, key=lambda r: r["seconds"]) for k, v in runs.items()}
    if len({r["digest"] for r in best.values()}) != 1:
        sys.exit("bench_executors: the executors' builds differ")
    one = best["workers=1"]
    shards = best["ray(2 CPUs)"]["shards"]
    result = {
        "config": {**{k: v for k, v in common.items() if k != "pool"},
                   "data": str(args.data.resolve()), "stages": "b"},
        "builds": {k: {**{m: round(v, 3) if isinstance(v, float) else v for m, v in r.items()
                          if m != "digest"},
                       "ratio_to_1_worker": round(r["members_per_s"] / one["members_per_s"], 3),
                       "render_ratio_to_1_worker": round(r["render_members_per_s"]
                                                         / one["render_members_per_s"], 3)}
                   for k, r in best.items()},
        "byte_identical": True,
        "ray_start_seconds": round(ray_start, 2),
        "ray_empty_task_seconds": round(empty_task, 4),
        "ray_overhead_per_shard_seconds": round(
            (best["ray(2 CPUs)"]["render_seconds"] - best["workers=2"]["render_seconds"]) / shards, 3),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
