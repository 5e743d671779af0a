"""Evaluation throughput of `evaluate zste` (clips/s), split into data, audio and text costs.

    python benchmarks/bench_eval.py [--model small] [--data OUT] [--groups 60] [--json R.json]

Without --data it builds a synthetic stage-B set (16 kHz, 10 s, FLAC, the demo's format) in a
temporary folder first. Then, in one process with one thread:
1. data alone: read the test groups from the shards (decode) and render the test singles, as the
   evaluator does, without a model;
2. the whole ZSTE evaluation of `--model` on the same items (every task, both template sets):
   audio clips embedded per second of embedding, texts embedded and their time, and clips per
   second end to end (data + embedding + scoring).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def build_data(out: Path, seconds: float, rate: int, groups: int) -> Path:
    from teminal.pipeline.build import run_build
    from teminal.pipeline.config import BuildConfig
    from teminal.pipeline.compose import ComposeConfig
    from teminal.pipeline.sources.synth import write_synthetic_esc50

    root = write_synthetic_esc50(out / "src", clips_per_class_per_fold=4)
    run_build(BuildConfig(out=str(out / "data"), root=str(root), stages=("b",),
                          groups={"train": 2, "val": 1, "test": groups},
                          compose=ComposeConfig(sample_rate=rate, clip_seconds=seconds)),
              progress=False, log=lambda *_: None)
    return out / "data"


def data_alone(data: Path, max_items: int | None) -> dict:
    from teminal.evaluate.testset import CatalogTestSet

    ts = CatalogTestSet(data, max_items=max_items)
    t0 = time.perf_counter()
    clips = sum(1 for _ in ts.singles()) + 3 * sum(1 for _ in ts.groups())
    seconds = time.perf_counter() - t0
    return {"clips": clips, "seconds": seconds, "clips_per_s": clips / seconds}


def evaluation(spec: str, data: Path, max_items: int | None, batch_size: int) -> dict:
    import torch

    from teminal.evaluate.testset import CatalogTestSet
    from teminal.evaluate.zste import evaluate_zste
    from teminal.models import load_model

    torch.manual_seed(0)
    model = load_model(spec, device="cpu")
    if hasattr(model, "eval"):
        model.eval()
    ts = CatalogTestSet(data, max_items=max_items)
    t0 = time.perf_counter()
    out = evaluate_zste(model, ts, batch_size=batch_size, progress=False)
    wall = time.perf_counter() - t0
    t = out["timing"]
    return {"audio_clips": t["audio_clips"], "embed_clips_per_s": t["clips_per_s"],
            "audio_embed_seconds": t["audio_embed_seconds"], "texts": t["texts_embedded"],
            "text_seconds": t["text_embed_seconds"], "wall_seconds": wall,
            "end_to_end_clips_per_s": t["audio_clips"] / wall,
            "order_accuracy": out["metrics"]["task3_order"]["accuracy"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="small", help="model spec (default: small)")
    p.add_argument("--data", help="a pipeline OUT with stage-B test shards (default: build one)")
    p.add_argument("--groups", type=int, default=60, help="test groups to build (default 60)")
    p.add_argument("--max-items", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        data = Path(args.data) if args.data else build_data(Path(tmp), args.seconds,
                                                            args.sample_rate, args.groups)
        built = time.perf_counter() - t0
        alone = data_alone(data, args.max_items)
        ev = evaluation(args.model, data, args.max_items, args.batch_size)
    figures = {"model": args.model, "batch_size": args.batch_size, "threads": torch.get_num_threads(),
               "data_build_seconds": built if not args.data else None, "data": alone, "zste": ev}
    print(f"data alone (decode shards + render singles) {alone['clips_per_s']:8.1f} clips/s "
          f"({alone['clips']} clips)")
    print(f"audio embedding ({args.model})               {ev['embed_clips_per_s']:8.1f} clips/s "
          f"(batch {args.batch_size})")
    print(f"texts: {ev['texts']} embedded once in {ev['text_seconds']:.1f} s")
    print(f"zste end to end                             {ev['end_to_end_clips_per_s']:8.1f} clips/s "
          f"({ev['audio_clips']} clips in {ev['wall_seconds']:.1f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
