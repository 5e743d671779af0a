"""Device benchmark: the LAION-shaped model on a CUDA GPU, its loader, stall and evaluation.

    python benchmarks/bench_device.py [--steps 20] [--groups-per-batch 32] [--workers 4,8]
                                      [--eval-workers 8] [--audio-head temporal] [--json R.json]
    python benchmarks/bench_device.py --cpu-dry-run     # every phase, tiny, on CPU (code check)

Needs no weights and no hub: HTSAT-tiny + the roberta-base-shaped text tower of
630k-audioset-best.pt, randomly initialised (`models.laion.checkpoint.random_laion_config`), with
a byte-level tokenizer written on the fly (LAION pads every text to 77 tokens, so the text
tower's cost is the real one). Data: a synthetic stage-B set at 48 kHz, 10 s members, built
twice (FLAC and PCM shards). Phases, in one process on one GPU:
1. loader alone: clips/s of the training stream with each `--workers` count, FLAC and PCM;
2. training: `--steps` bf16 stage-B steps of `--groups-per-batch` groups (3 clips each) through
   the real trainer (default trainable subset), FLAC shards, `--train-workers` loader workers:
   steps/s, clips/s, data stall (time waiting for data / step time), peak GPU memory;
3. ZSTE: the test split decoded in `--eval-workers` processes while the GPU embeds, end to end
   vs the embedding alone (clips decoded beforehand), peak GPU memory.
Ratios: loader / training consumption per codec and worker count (target >= 4 on the CPU
benchmark; below 1 the GPU waits), ZSTE end to end / embedding alone (target >= 0.9), and the
decode rate of one worker, so the workers a GPU needs = embedding clips/s / that rate.
The last line is one JSON object with every figure. Without CUDA it says so, prints a JSON line
with "measured": false and exits 0: no CPU figure is passed off as a device figure.

`--audio-head` adds the order-aware temporal head where the model code has one (ClapModel.
add_audio_head); on a tree without it, the flag stops with a message instead of silently
benchmarking the pooled model.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARK = "device: LAION-shaped CLAP (random init) training, loader and ZSTE on one GPU"


def no_cuda_reason() -> str | None:
    """Why this machine cannot run the benchmark, or None when a CUDA device is usable."""
    try:
        import torch
    except ImportError as e:
        return f"torch does not import ({e})"
    if not torch.cuda.is_available():
        return "no CUDA device (torch.cuda.is_available() is False)"
    return None


def write_model_config(folder: Path, audio: str, audio_head: str | None) -> Path:
    """A random-init LAION-shaped spec (JSON) that `load_model` and the trainer accept."""
    from teminal.models.laion.checkpoint import random_laion_config
    from teminal.models.laion.tokenizers import write_byte_level_tokenizer

    tokenizer = write_byte_level_tokenizer(folder / "tokenizer")
    config = random_laion_config(audio, tokenizer_dir=str(tokenizer))
    if audio_head:
        config["audio_head"] = head_value(audio_head)
    path = folder / "model.json"
    path.write_text(json.dumps(config, indent=1))
    return path


def head_value(text: str):
    return json.loads(text) if text.lstrip().startswith("{") else text


def check_audio_head(spec: Path, device: str) -> str | None:
    """None when the model code builds the head the spec asks for, else the reason it cannot."""
    from teminal.models import load_model
    from teminal.models.laion import ClapModel

    if not hasattr(ClapModel, "add_audio_head"):
        return ("this tree's ClapModel has no temporal audio head (add_audio_head / config "
                "'audio_head', models/heads.py); run without --audio-head")
    model = load_model(str(spec), device=device)
    if getattr(model, "audio_head", None) is None:
        return "the model config's 'audio_head' was ignored by this tree's ClapModel"
    return None


def build_sets(out: Path, train_groups: int, test_groups: int, seconds: float, rate: int,
               workers: int) -> dict[str, Path]:
    """The same stage-B groups as FLAC and as PCM shards."""
    from teminal.pipeline.build import run_build
    from teminal.pipeline.config import BuildConfig
    from teminal.pipeline.compose import ComposeConfig
    from teminal.pipeline.sources.synth import write_synthetic_esc50

    root = write_synthetic_esc50(out / "src", clips_per_class_per_fold=2)
    sets = {}
    for codec in ("flac", "pcm"):
        run_build(BuildConfig(out=str(out / codec), root=str(root), stages=("b",), codec=codec,
                              groups={"train": train_groups, "val": 1, "test": test_groups},
                              shard_size=32, workers=workers,
                              compose=ComposeConfig(sample_rate=rate, clip_seconds=seconds)),
                  progress=False, log=lambda *_: None)
        sets[codec] = out / codec
    return sets


def peak_gpu_mb(reset: bool = False) -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    peak = torch.cuda.max_memory_allocated() / 2**20
    if reset:
        torch.cuda.reset_peak_memory_stats()
    return round(peak, 1)


def evaluation_figures(spec: Path, data: Path, device: str, batch_size: int, workers: int,
                       audio_head: bool) -> dict:
    import bench_eval
    import torch

    from teminal.evaluate.testset import CatalogTestSet
    from teminal.models import load_model

    torch.manual_seed(0)
    model = load_model(str(spec), device=device).eval()
    if audio_head and getattr(model, "audio_head", None) is None:
        raise SystemExit("bench_device: the model was built without its audio head")
    peak_gpu_mb(reset=True)
    serial_data, waves = bench_eval.data_alone(data, None, 0, batch_size, keep=True)
    pooled_data, _ = bench_eval.data_alone(data, None, workers, batch_size)
    sr = CatalogTestSet(data).sample_rate
    bench_eval.embedding_alone(model, waves[:batch_size], sr, batch_size)   # warm-up (kernels)
    embed = bench_eval.embedding_alone(model, waves, sr, batch_size)
    del waves
    zste = bench_eval.evaluation(model, data, None, batch_size, workers)
    zste.pop("metrics")
    return {"data_serial": serial_data, "data_workers": pooled_data, "embedding_alone": embed,
            "zste": zste, "peak_gpu_mb": peak_gpu_mb(),
            "end_to_end_to_embedding": round(zste["audio_pass_clips_per_s"]
                                             / embed["clips_per_s"], 3),
            "workers_needed": (round(embed["clips_per_s"] / serial_data["clips_per_s_per_worker"],
                                     2) if serial_data["clips_per_s_per_worker"] else None)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=20, help="training steps measured (default 20)")
    p.add_argument("--groups-per-batch", type=int, default=32)
    p.add_argument("--workers", default="4,8", help="loader worker counts to measure (4,8)")
    p.add_argument("--train-workers", type=int, default=None,
                   help="loader workers while training (default: the largest of --workers)")
    p.add_argument("--eval-workers", type=int, default=None,
                   help="ZSTE decode workers (default: CPUs - 1, at most 8)")
    p.add_argument("--eval-batch-size", type=int, default=64)
    p.add_argument("--loader-batches", type=int, default=10)
    p.add_argument("--train-groups", type=int, default=384)
    p.add_argument("--test-groups", type=int, default=48)
    p.add_argument("--mixed-precision", default="bf16", choices=["no", "fp16", "bf16"])
    p.add_argument("--audio", default="HTSAT-tiny", help="laion audio config (HTSAT-tiny)")
    p.add_argument("--audio-head", default=None,
                   help="'temporal' or a JSON head spec, where the model code has the head")
    p.add_argument("--cpu-dry-run", action="store_true",
                   help="run every phase tiny on CPU to check the code; figures are not "
                        "device figures")
    p.add_argument("--json", help="also write the figures here")
    args = p.parse_args(argv)

    reason = no_cuda_reason()
    if reason and not args.cpu_dry_run:
        print(f"bench_device: {reason}; nothing measured. Run it on a CUDA machine "
              "(`--cpu-dry-run` checks the code path on CPU, with no device figures).")
        print(json.dumps({"benchmark": BENCHMARK, "measured": False, "cuda": False,
                          "reason": reason}), flush=True)
        return 0
    if args.cpu_dry_run:
        args.steps, args.groups_per_batch, args.workers = 2, 2, "1"
        args.loader_batches, args.train_groups, args.test_groups = 2, 8, 2
        args.eval_batch_size, args.mixed_precision = 4, "no"
    device = "cpu" if args.cpu_dry_run else "cuda"
    sys.path.insert(0, str(HERE))
    import bench_train
    import torch

    from teminal.evaluate.workers import default_workers

    worker_counts = sorted({int(w) for w in str(args.workers).split(",") if w.strip()})
    train_workers = args.train_workers if args.train_workers is not None else max(worker_counts)
    eval_workers = args.eval_workers if args.eval_workers is not None else default_workers()
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    figures: dict = {"benchmark": BENCHMARK, "measured": True, "dry_run": args.cpu_dry_run,
                     "cuda": reason is None, "device": device,
                     "gpu": torch.cuda.get_device_name(0) if reason is None else None,
                     "torch": torch.__version__, "cpus": cpus, "audio": args.audio,
                     "audio_head": args.audio_head, "mixed_precision": args.mixed_precision,
                     "groups_per_batch": args.groups_per_batch,
                     "clips_per_step": 3 * args.groups_per_batch, "sample_rate": 48000}
    with tempfile.TemporaryDirectory(prefix="bench-device-") as tmp:
        tmp = Path(tmp)
        spec = write_model_config(tmp, args.audio, args.audio_head)
        if args.audio_head:
            problem = check_audio_head(spec, device)
            if problem:
                print(f"bench_device: --audio-head {args.audio_head}: {problem}")
                return 2
        t0 = time.perf_counter()
        sets = build_sets(tmp / "data", args.train_groups, args.test_groups, 10.0, 48000,
                          workers=max(1, min(cpus, 8)))
        figures["data_build_seconds"] = round(time.perf_counter() - t0, 1)

        loader = {codec: {str(w): round(bench_train.loader_throughput(
            data, w, args.groups_per_batch, args.loader_batches), 1) for w in worker_counts}
            for codec, data in sets.items()}
        figures["loader_clips_per_s"] = loader

        peak_gpu_mb(reset=True)
        train = bench_train.train_throughput(
            sets["flac"], tmp / "run", train_workers, args.groups_per_batch, args.steps,
            model=str(spec), mixed_precision=args.mixed_precision, cpu=args.cpu_dry_run)
        figures["train"] = {"workers": train_workers, "steps": args.steps,
                            "steps_per_s": round(1.0 / train["step_s"], 3),
                            "clips_per_s": round(train["samples_per_s"], 1),
                            "data_stall": round(train["data_stall"], 4),
                            "peak_gpu_mb": peak_gpu_mb()}
        figures["loader_over_train"] = {
            codec: {w: round(rate / train["samples_per_s"], 2) for w, rate in rates.items()}
            for codec, rates in loader.items()}
        figures["eval"] = evaluation_figures(spec, sets["flac"], device, args.eval_batch_size,
                                             eval_workers, bool(args.audio_head))

    ev = figures["eval"]
    print(f"{'GPU' if reason is None else 'CPU DRY RUN (not device figures)'}: "
          f"{figures['gpu'] or 'cpu'}; {cpus} CPUs; {args.audio} + RoBERTa-base shape, random init")
    print(f"training ({args.mixed_precision}, {3 * args.groups_per_batch} clips/step)  "
          f"{figures['train']['steps_per_s']:8.3f} steps/s  {figures['train']['clips_per_s']:8.1f} "
          f"clips/s  stall {figures['train']['data_stall']:.1%}  peak "
          f"{figures['train']['peak_gpu_mb']} MB")
    for codec, rates in loader.items():
        for w, rate in rates.items():
            print(f"loader {codec:4s} {w:>2} workers  {rate:8.1f} clips/s  = "
                  f"{figures['loader_over_train'][codec][w]:.2f}x training consumption")
    print(f"zste: embedding alone {ev['embedding_alone']['clips_per_s']:.1f} clips/s, audio pass "
          f"with {eval_workers} workers {ev['zste']['audio_pass_clips_per_s']:.1f} clips/s "
          f"(ratio {ev['end_to_end_to_embedding']:.3f}); one worker decodes "
          f"{ev['data_serial']['clips_per_s_per_worker']} clips/s -> about {ev['workers_needed']} "
          f"workers keep up; peak {ev['peak_gpu_mb']} MB")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1) + "\n")
    print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
