"""Would a well-kept library do what the project's own code does, at equal speed and with the
same bytes? Two candidates a reviewer named (issue 26, "Docs and CLI"):

1. `filelock.FileLock` for the build lock (`teminal.pipeline.lock.build_lock`): acquire +
   release, microseconds each, the project's lock against filelock's on the same folder.
2. `torch.optim.swa_utils.AveragedModel` for weight averaging (`teminal.train.averaging`):
   per snapshot, the seconds of `WeightAverage.add` (float64 sums of the trainable weights)
   and of `AveragedModel.update_parameters` (a running mean in a copy of the whole model), the
   bytes each keeps, and whether the averaged weights come out bit for bit the same.

    python benchmarks/bench_library_swaps.py [--model small|laion] [--snapshots 5] [--locks 200]

`--model laion` builds the random-init LAION shape (HTSAT-tiny + roberta-base, about 150 M
parameters; no weights needed) on the CPU. Prints a table, then one JSON object."""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

BENCHMARK = "library swaps: filelock vs the build lock, swa_utils vs WeightAverage"


def time_locks(n: int) -> dict:
    """Mean microseconds of one acquire + release, each lock on its own temporary folder."""
    from filelock import FileLock

    from teminal.pipeline.lock import _exclusive, build_lock

    def mean_us(run) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            run()
        return (time.perf_counter() - t0) / n * 1e6

    with tempfile.TemporaryDirectory() as tmp:
        ours, theirs = Path(tmp, "ours"), Path(tmp, "theirs")
        ours.mkdir()
        theirs.mkdir()
        lock = FileLock(str(theirs / ".build-lock"))

        def project():   # the flock, the readers' probe and the holder's record
            with build_lock(ours):
                pass

        def flock():     # the flock alone: what filelock would replace
            with _exclusive(ours / ".flock-only", "busy"):
                pass

        def filelock():
            with lock:
                pass

        project(), flock(), filelock()   # the files exist from here on, as for a later build
        return {"project_build_lock_us": round(mean_us(project), 1),
                "project_flock_us": round(mean_us(flock), 1),
                "filelock_us": round(mean_us(filelock), 1)}


def load(name: str):
    from teminal.models import load_model

    if name == "toy":    # the suite's smoke run: seconds, not a figure
        from teminal.testing import toy_factory

        return toy_factory("toy")
    if name == "small":
        return load_model("small", device="cpu")
    from teminal.models.laion.checkpoint import random_laion_config
    from teminal.models.laion.tokenizers import write_byte_level_tokenizer

    folder = Path(tempfile.mkdtemp())
    config = random_laion_config(tokenizer_dir=str(write_byte_level_tokenizer(folder / "tok")))
    (folder / "model.json").write_text(json.dumps(config))
    return load_model(str(folder / "model.json"), device="cpu")


def time_averaging(name: str, snapshots: int) -> dict:
    """The same `snapshots` weight states (the trainable ones perturbed between snapshots, as
    optimizer steps would), averaged by both; the trainer's default trainable subset."""
    import torch
    from torch.optim.swa_utils import AveragedModel

    from teminal.train.averaging import WeightAverage

    model = load(name)
    trained, total = model.set_trainable(None)
    params = [p for p in model.parameters() if p.requires_grad]
    ours = WeightAverage(params, first=1, every=1)
    t0 = time.perf_counter()
    theirs = AveragedModel(model)    # deep-copies the model: every weight, frozen ones too
    copy_s = time.perf_counter() - t0
    generator = torch.Generator().manual_seed(0)
    seconds = {"project": 0.0, "swa_utils": 0.0}
    with torch.no_grad():
        for step in range(1, snapshots + 1):
            for p in params:
                p.add_(torch.randn(p.shape, generator=generator) * 1e-3)
            t0 = time.perf_counter()
            ours.add(step)
            seconds["project"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            theirs.update_parameters(model)
            seconds["swa_utils"] += time.perf_counter() - t0
        raw = [p.detach().clone() for p in params]
        ours.copy_to_params()
        mean_ours = [p.detach().clone() for p in params]
        for p, r in zip(params, raw):
            p.copy_(r)
    averaged = dict(theirs.module.named_parameters())
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    differ = sum(not torch.equal(a, averaged[n]) for n, a in zip(names, mean_ours))
    largest = max(float((a - averaged[n].detach()).abs().max()) for n, a in zip(names, mean_ours))
    kept = {"project": sum(s.numel() * s.element_size() for s in ours.sums),
            "swa_utils": sum(t.numel() * t.element_size() for t in theirs.module.state_dict()
                             .values())}
    return {"model": name, "parameters": total, "trainable": trained, "snapshots": snapshots,
            "ms_per_snapshot": {k: round(v / snapshots * 1e3, 2) for k, v in seconds.items()},
            "swa_utils_copy_s": round(copy_s, 2),
            "bytes_kept": kept, "identical_tensors": len(names) - differ, "tensors": len(names),
            "largest_difference": largest}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=("small", "laion", "toy"), default="small")
    ap.add_argument("--snapshots", type=int, default=5)
    ap.add_argument("--locks", type=int, default=200)
    args = ap.parse_args(argv)
    locks = time_locks(args.locks)
    avg = time_averaging(args.model, args.snapshots)
    print(f"{BENCHMARK}")
    print(f"  build lock, acquire + release: project {locks['project_build_lock_us']} us "
          f"(the flock alone {locks['project_flock_us']} us), filelock "
          f"{locks['filelock_us']} us ({args.locks} times each)")
    print(f"  averaging, {avg['model']} ({avg['trainable']:,} of {avg['parameters']:,} "
          f"parameters train): per snapshot project {avg['ms_per_snapshot']['project']} ms, "
          f"swa_utils {avg['ms_per_snapshot']['swa_utils']} ms; kept "
          f"{avg['bytes_kept']['project'] / 2**20:.0f} MiB vs "
          f"{avg['bytes_kept']['swa_utils'] / 2**20:.0f} MiB; identical tensors "
          f"{avg['identical_tensors']} of {avg['tensors']} (largest difference "
          f"{avg['largest_difference']:.3g})")
    print(json.dumps({"benchmark": BENCHMARK, "locks": locks, "averaging": avg}))
    return 0


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)   # here, not in main(): a caller's process keeps its threads
    raise SystemExit(main())
