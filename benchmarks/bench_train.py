"""Training throughput and data stall of the small CLAP on CPU, next to the loader alone.

    python benchmarks/bench_train.py [--data OUT] [--steps 20] [--workers 2] [--json R.json]

Without --data it builds a small synthetic stage-B set (16 kHz, 10 s, FLAC) in a temporary
folder first. Then, in one process:
1. the loader alone: batches of the stage-B stream decoded by `--workers` processes, as fast as
   they come (after one warm-up batch);
2. training: `--steps` stage-B steps of the small model through the real trainer, with the same
   loader; data stall = time the step loop waited for the next batch / wall time, from the
   per-step metrics (the first step, which starts the workers, is left out).
Targets (issue 3): stall < 5 %, loader >= 4x what training consumes. The last line is one JSON
object with every figure.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path


def build_data(out: Path, seconds: float, rate: int, source: str | None = None) -> Path:
    """A stage-B build of `source` (an ESC-50 folder; default: a synthetic one written here)."""
    from teminal.pipeline.build import run_build
    from teminal.pipeline.config import BuildConfig
    from teminal.pipeline.compose import ComposeConfig
    from teminal.pipeline.sources.synth import write_synthetic_esc50

    root = source or write_synthetic_esc50(out / "src", clips_per_class_per_fold=2)
    run_build(BuildConfig(out=str(out / "data"), root=str(root), stages=("b",), shard_size=16,
                          compose=ComposeConfig(sample_rate=rate, clip_seconds=seconds)),
              progress=False, log=lambda *_: None)
    return out / "data"


def loader_throughput(data: Path, workers: int, groups: int, batches: int) -> float:
    """Clips per second the loader alone delivers."""
    from teminal.train.stage_b import STAGE
    from teminal.train.streaming import GroupStream, ShardIndex, StreamPlan, make_loader

    stream = GroupStream(StreamPlan(ShardIndex.build(data, "b"), 0, 0, 1, workers),
                         STAGE.relations, groups, STAGE.caption)
    it = iter(make_loader(stream))
    next(it)  # workers started, first batch decoded
    t0 = time.perf_counter()
    clips = sum(b["audio"].shape[0] for b in islice(it, batches))
    return clips / (time.perf_counter() - t0)


def train_throughput(data: Path, out: Path, workers: int, groups: int, steps: int,
                     model: str = "small", **settings) -> dict:
    """Stage-B training figures; `settings` are further TrainConfig fields (mixed_precision)."""
    from teminal.train.run_config import TrainConfig
    from teminal.train.stage_b import STAGE
    from teminal.train.trainer import run

    cfg = TrainConfig(model=model, data=str(data), out=str(out), max_steps=steps,
                      groups_per_batch=groups, num_workers=workers, save_every=0, log_every=1,
                      tensorboard=False, progress=False, **settings)
    result = run(cfg, STAGE)
    rows = [json.loads(ln) for ln in (out / "metrics.jsonl").read_text().splitlines()]
    spans = [(b["time"] - a["time"], b["data_wait"]) for a, b in zip(rows, rows[1:])]
    wall = sum(d for d, _ in spans)
    waited = sum(d * w for d, w in spans)
    clips = groups * len(STAGE.relations) * len(spans)
    return {"samples_per_s": clips / wall, "data_stall": waited / wall,
            "step_s": wall / len(spans), "run_samples_per_s": result.samples_per_s}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", help="a pipeline OUT with stage-B train shards (default: build one)")
    p.add_argument("--source", help="ESC-50 folder to build from (default: write a synthetic one)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--groups-per-batch", type=int, default=8)
    p.add_argument("--loader-batches", type=int, default=30)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = Path(args.data) if args.data else build_data(tmp, args.seconds, args.sample_rate,
                                                            args.source)
        loader = loader_throughput(data, args.workers, args.groups_per_batch, args.loader_batches)
        train = train_throughput(data, tmp / "run", args.workers, args.groups_per_batch,
                                 args.steps)
    ratio = loader / train["samples_per_s"]
    figures = {"workers": args.workers, "groups_per_batch": args.groups_per_batch,
               "clips_per_step": args.groups_per_batch * 3, "steps": args.steps,
               "loader_clips_per_s": loader, "train_clips_per_s": train["samples_per_s"],
               "step_s": train["step_s"], "data_stall": train["data_stall"],
               "loader_over_train": ratio}
    print(f"loader alone        {loader:8.1f} clips/s ({args.workers} workers)")
    print(f"training            {train['samples_per_s']:8.1f} clips/s "
          f"({train['step_s']:.2f} s per step of {figures['clips_per_step']} clips)")
    print(f"loader / training   {ratio:8.1f}x   (target >= 4x)  "
          f"{'ok' if ratio >= 4 else 'BELOW TARGET'}")
    print(f"data stall          {train['data_stall']:8.1%}    (target < 5%)  "
          f"{'ok' if train['data_stall'] < 0.05 else 'ABOVE TARGET'}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
