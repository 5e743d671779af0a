"""Evaluation throughput of `evaluate zste` (clips/s): decoding, embedding and end to end.

    python benchmarks/bench_eval.py [--model small] [--data OUT] [--groups 60] [--workers N]

Without --data it builds a synthetic stage-B set (16 kHz, 10 s, FLAC, the demo's format) in a
temporary folder first. Then, in one process whose model runs on one thread (OMP_NUM_THREADS):
1. data alone: the test singles rendered and the test groups decoded, as the evaluator does,
   in this process (the decode rate of one worker) and with `--workers` processes;
2. embedding alone: the same clips, decoded beforehand, embedded in batches (the model's rate);
3. the whole ZSTE evaluation of `--model` (every task, both template sets) with 0 workers (the
   serial path) and with `--workers`; the audio pass (decode + audio embedding) and the whole
   evaluation (plus texts and scoring) are timed.
Ratios (issue 12, target >= 0.9), each within one evaluation so that a shared machine's load
moves both sides: audio embedding time / audio pass time (decode + embed), and model time (audio
+ text embedding) / whole evaluation time; the embedding-alone phase (2) is a cross-check. Both
evaluations must give the same metrics (checked). The last line is one JSON object.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path


def build_data(out: Path, seconds: float, rate: int, groups: int, source: str | None = None) -> Path:
    """A stage-B build of `source` (an ESC-50 folder; default: a synthetic one written here)."""
    from teminal.pipeline.build import run_build
    from teminal.pipeline.config import BuildConfig
    from teminal.pipeline.compose import ComposeConfig
    from teminal.pipeline.sources.synth import write_synthetic_esc50

    root = source or write_synthetic_esc50(out / "src", clips_per_class_per_fold=4)
    run_build(BuildConfig(out=str(out / "data"), root=str(root), stages=("b",),
                          groups={"train": 2, "val": 1, "test": groups},
                          compose=ComposeConfig(sample_rate=rate, clip_seconds=seconds)),
              progress=False, log=lambda *_: None)
    return out / "data"


def data_alone(data: Path, max_items: int | None, workers: int, batch_size: int,
               keep: bool = False) -> tuple[dict, list]:
    """Decode/render every test clip through a DecodePool of `workers` (0: this process)."""
    from teminal.evaluate.testset import CatalogTestSet
    from teminal.evaluate.workers import DecodePool, decode_ahead

    ts = CatalogTestSet(data, max_items=max_items)
    kept, clips = [], 0
    t0 = time.perf_counter()
    with DecodePool(workers, ahead=decode_ahead(batch_size, workers)) as pool:
        for _item, wave in ts.singles(pool):
            clips += 1
            if keep:
                kept.append(wave)
        for _group, waves in ts.groups(pool):
            clips += len(waves)
            if keep:
                kept.extend(waves.values())
        seconds = time.perf_counter() - t0
        timing = pool.timing()
    return {"workers": workers, "clips": clips, "seconds": round(seconds, 3),
            "clips_per_s": round(clips / seconds, 1),
            "clips_per_s_per_worker": timing["clips_per_s_per_worker"]}, kept


def embedding_alone(model, waves: list, sample_rate: int, batch_size: int) -> dict:
    from teminal.evaluate.embed import AudioStats, embed_batch

    stats = AudioStats()
    t0 = time.perf_counter()
    for i in range(0, len(waves), batch_size):
        embed_batch(model, waves[i:i + batch_size], sample_rate, stats)
    seconds = time.perf_counter() - t0
    return {"clips": stats.clips, "seconds": round(seconds, 3),
            "clips_per_s": round(stats.clips / seconds, 1)}


def evaluation(model, data: Path, max_items: int | None, batch_size: int, workers: int) -> dict:
    from teminal.evaluate.testset import CatalogTestSet
    from teminal.evaluate.zste import evaluate_zste

    ts = CatalogTestSet(data, max_items=max_items)
    t0 = time.perf_counter()
    out = evaluate_zste(model, ts, batch_size=batch_size, progress=False, workers=workers)
    wall = time.perf_counter() - t0
    t = out["timing"]
    return {"workers": workers, "audio_clips": t["audio_clips"],
            "audio_embed_seconds": t["audio_embed_seconds"],
            "audio_pass_seconds": t["audio_pass_seconds"],
            "audio_pass_clips_per_s": round(t["audio_clips"] / t["audio_pass_seconds"], 1),
            "texts": t["texts_embedded"], "text_seconds": t["text_embed_seconds"],
            "wall_seconds": round(wall, 3),
            "end_to_end_clips_per_s": round(t["audio_clips"] / wall, 1),
            "decode": t["decode"], "metrics": out["metrics"]}


def main(argv=None) -> int:
    from teminal.evaluate.workers import default_workers

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="small", help="model spec (default: small)")
    p.add_argument("--data", help="a pipeline OUT with stage-B test shards (default: build one)")
    p.add_argument("--source", help="ESC-50 folder to build from (default: write a synthetic one)")
    p.add_argument("--groups", type=int, default=60, help="test groups to build (default 60)")
    p.add_argument("--max-items", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument("--workers", type=int, default=default_workers(),
                   help=f"decode workers (default here: {default_workers()}, CPUs - 1)")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    from teminal.models import load_model

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        data = Path(args.data) if args.data else build_data(Path(tmp), args.seconds,
                                                            args.sample_rate, args.groups,
                                                            args.source)
        built = time.perf_counter() - t0
        torch.manual_seed(0)
        model = load_model(args.model, device="cpu")
        model.eval()
        serial_data, waves = data_alone(data, args.max_items, 0, args.batch_size, keep=True)
        pooled_data, _ = data_alone(data, args.max_items, args.workers, args.batch_size)
        from teminal.evaluate.testset import CatalogTestSet

        embed = embedding_alone(model, waves, CatalogTestSet(data).sample_rate, args.batch_size)
        del waves
        serial = evaluation(model, data, args.max_items, args.batch_size, 0)
        pooled = evaluation(model, data, args.max_items, args.batch_size, args.workers)
    same = json.dumps(serial.pop("metrics"), sort_keys=True) == json.dumps(pooled.pop("metrics"),
                                                                           sort_keys=True)
    # Ratios within each evaluation: the model's own time (inside embed_audio / embed_text) is
    # measured in the same seconds as the pass around it, so a load change on a shared machine
    # moves both sides; the separate embedding-alone phase is reported as a cross-check.
    def audio_ratio(ev):
        return round(ev["audio_embed_seconds"] / ev["audio_pass_seconds"], 3)

    def model_ratio(ev):
        return round((ev["audio_embed_seconds"] + ev["text_seconds"]) / ev["wall_seconds"], 3)

    ratios = {
        "audio_pass_to_embedding": audio_ratio(pooled),
        "audio_pass_to_embedding_serial": audio_ratio(serial),
        "end_to_end_to_model": model_ratio(pooled),
        "end_to_end_to_model_serial": model_ratio(serial),
        "audio_pass_to_embedding_alone_phase": round(pooled["audio_pass_clips_per_s"]
                                                     / embed["clips_per_s"], 3),
        "target": 0.9,
    }
    figures = {"benchmark": "zste evaluation throughput", "model": args.model,
               "batch_size": args.batch_size, "threads": torch.get_num_threads(),
               "cpus": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2),
               "data_build_seconds": round(built, 1) if not args.data else None,
               "data_serial": serial_data, "data_workers": pooled_data, "embedding_alone": embed,
               "zste_serial": serial, "zste_workers": pooled, "ratios": ratios,
               "same_metrics": same}
    print(f"data alone, this process          {serial_data['clips_per_s']:8.1f} clips/s "
          f"({serial_data['clips']} clips; one worker's decode rate)")
    print(f"data alone, {args.workers} worker(s)            {pooled_data['clips_per_s']:8.1f} clips/s "
          f"({pooled_data['clips_per_s_per_worker']} clips/s per worker, busy time)")
    print(f"audio embedding alone ({args.model})     {embed['clips_per_s']:8.1f} clips/s "
          f"(batch {args.batch_size})")
    for name, ev in (("serial", serial), (f"{args.workers} workers", pooled)):
        print(f"zste {name:10s} audio pass        {ev['audio_pass_clips_per_s']:8.1f} clips/s; "
              f"end to end {ev['end_to_end_clips_per_s']:.1f} clips/s ({ev['audio_clips']} clips, "
              f"{ev['texts']} texts in {ev['text_seconds']:.1f} s, {ev['wall_seconds']:.1f} s)")
    print(f"audio pass / embedding alone      {ratios['audio_pass_to_embedding']:8.3f} "
          f"(serial {ratios['audio_pass_to_embedding_serial']:.3f}; target >= 0.9)")
    print(f"end to end / model (audio+text)   {ratios['end_to_end_to_model']:8.3f} "
          f"(serial {ratios['end_to_end_to_model_serial']:.3f}; target >= 0.9)")
    print(f"same metrics serial vs workers    {same}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
    print(json.dumps(figures), flush=True)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
