"""Proof that a refactor kept every output byte: builds, a short training and ZSTE, hashed.

    python scripts/contract_proof.py WORK --write proof.json     # record (before the change)
    python scripts/contract_proof.py WORK --against proof.json   # rerun and compare (after)

In WORK (a new folder each time, at the path the recorded run used: the manifests name their
sources' paths, so a comparison is between two runs in one WORK path): a
synthetic ESC-50 (2 clips per class per fold), three stage A+B builds at 16 kHz with one
worker (pcm; flac; pcm timed with --junction 0.3,0.7 --gap 0,0.5), a small model trained
a few steps of stage A then stage B (with --where and --query-file, so the provenance and the
seen/unseen split have a selection to carry), and `evaluate zste` of `small` and of that
checkpoint. Recorded: the sha256 of every shard and Parquet manifest, of the checkpoints'
tensors, and of each ZSTE JSON without the fields that differ between identical runs
(timing, created, and the weights file's sha256: see `tensors_sha256`). Exit status 1 when anything differs from --against.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

BUILDS = {
    "pcm": ["--codec", "pcm"],
    "flac": ["--codec", "flac"],
    "timed": ["--codec", "pcm", "--junction", "0.3,0.7", "--gap", "0,0.5"],
}
# stage B trains on every group except those of one class pair (a --where) and only groups whose
# forward caption names a class (a --query-file): both kinds of selection reach the provenance
WHERE = "NOT (list_contains(labels, 'rising chirp') AND list_contains(labels, 'falling chirp'))"
QUERY = "SELECT group_key FROM samples WHERE relation = 'forward' AND caption LIKE '%o%'"
VOLATILE = ("timing", "created")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("work", type=Path, help="a new folder for the builds, runs and results")
    p.add_argument("--write", type=Path, help="write the digests here")
    p.add_argument("--against", type=Path, help="compare the digests with this file")
    p.add_argument("--digests-only", action="store_true",
                   help="hash what an earlier run left in WORK instead of running again")
    args = p.parse_args(argv)
    work = args.work.absolute()
    digests = digests_of(work) if args.digests_only else run_all(work)
    if args.write:
        record = {"work": str(work), "digests": digests}
        args.write.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        print(f"wrote {len(digests)} digests to {args.write}")
    if args.against:
        record = json.loads(args.against.read_text())
        if record["work"] != str(work):
            print(f"{args.against} was recorded in {record['work']}, not {work}: the manifests "
                  f"name their sources' paths, so run in {record['work']}")
            return 2
        return compare(record["digests"], digests)
    return 0


def run_all(work: Path) -> dict[str, str]:
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}

    def run(*cmd) -> None:
        subprocess.run([str(c) for c in cmd], check=True, env=env, cwd=work)

    work.mkdir(parents=True, exist_ok=True)
    src = work / "src"
    run(bin_dir / "pipeline", "synth", "esc50", src, "--seed", "0", "--clips-per-class-per-fold", "2")
    for name, extra in BUILDS.items():
        run(bin_dir / "pipeline", "build", "--dataset", "esc50", "--root", src, "--out",
            work / name, "--stages", "a,b", "--sample-rate", "16000", "--groups",
            "train=64,val=16,test=48", "--seed", "0", "--workers", "1", "--no-progress", *extra)
    train = Path(__file__).resolve().parent.parent / "train"
    (work / "query.sql").write_text(QUERY)
    common = ["--data", work / "pcm", "--max-steps", "3", "--groups-per-batch", "4",
              "--num-workers", "0", "--no-tensorboard", "--no-progress"]
    run(sys.executable, train / "stage_a.py", "--config", train / "configs/small_stage_a.yaml",
        "--model", "small", "--out", work / "runs/stage_a", "--where", WHERE, *common)
    run(sys.executable, train / "stage_b.py", "--config", train / "configs/small_stage_b.yaml",
        "--model", "runs/stage_a/final", "--out", work / "runs/stage_b", "--where", WHERE,
        "--query-file", "query.sql", "--retain-singles", "1", *common)
    for label, spec in (("small", "small"), ("stage_b", work / "runs/stage_b/final")):
        run(bin_dir / "evaluate", "zste", "--model", spec, "--data", work / "pcm", "--label",
            label, "--out", work / f"zste_{label}.json", "--quiet")
    return digests_of(work)


def digests_of(work: Path) -> dict[str, str]:
    out = {}
    for name in BUILDS:
        for path in sorted((work / name / "shards").rglob("*.tar")) + \
                sorted((work / name / "manifests").glob("*.parquet")):
            out[path.relative_to(work).as_posix()] = sha256(path.read_bytes())
    for path in sorted((work / "runs").rglob("final/*.safetensors")):
        out[path.relative_to(work).as_posix()] = tensors_sha256(path)
    for path in sorted(work.glob("zste_*.json")):
        result = {k: v for k, v in json.loads(path.read_text()).items() if k not in VOLATILE}
        # the weights file's bytes: its header's metadata order varies between identical saves
        result["model"].pop("checkpoint_sha256")
        out[path.name] = sha256(json.dumps(result, sort_keys=True).encode())
    return out


def tensors_sha256(path: Path) -> str:
    """sha256 over a safetensors file's tensors (names sorted, then bytes): safetensors writes
    its header's metadata in an order that varies between identical saves, so the file's own
    hash does not say whether the weights changed."""
    from safetensors.numpy import load_file

    h = hashlib.sha256()
    for name, array in sorted(load_file(path).items()):
        h.update(f"{name} {array.dtype} {array.shape}\n".encode())
        h.update(array.tobytes())
    return h.hexdigest()


def compare(before: dict[str, str], after: dict[str, str]) -> int:
    changed = sorted(k for k in before.keys() & after.keys() if before[k] != after[k])
    gone, new = sorted(before.keys() - after.keys()), sorted(after.keys() - before.keys())
    for k in changed:
        print(f"DIFFERS  {k}")
    for k in gone:
        print(f"MISSING  {k}")
    for k in new:
        print(f"NEW      {k}")
    same = len(before.keys() & after.keys()) - len(changed)
    print(f"{same} of {len(before)} identical; {len(changed)} differ, {len(gone)} missing, "
          f"{len(new)} new")
    return 1 if changed or gone or new else 0


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


if __name__ == "__main__":
    sys.exit(main())
