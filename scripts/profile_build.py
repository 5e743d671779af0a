"""CPU-time profile of a 1-worker stage-B build of the real ESC-50 clips at 48 kHz (issue 12).

    python scripts/profile_build.py [GROUPS_PER_CLIP] [--data DIR]

A CPU-time clock (not wall time), so the shares stay meaningful when other work holds the cores.
"""
import argparse
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

ap = argparse.ArgumentParser()
ap.add_argument("groups_per_clip", nargs="?", type=float, default=1.0)
ap.add_argument("--data", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
                                      / "esc50-real"))
ap.add_argument("--sort", default="tottime")
args = ap.parse_args()
SORT = args.sort

import duckdb  # noqa: E402,F401  (import cost is not build work)

from teminal.pipeline.audio import load_source  # noqa: E402
from teminal.pipeline.build import run_build  # noqa: E402
from teminal.pipeline.compose import ComposeConfig  # noqa: E402
from teminal.pipeline.config import BuildConfig  # noqa: E402
from teminal.pipeline.sources.esc50 import scan  # noqa: E402

load_source(scan(args.data, {"train": [1, 2, 3, 4, 5]}).clips[0].path, 48000)  # warm up
with tempfile.TemporaryDirectory() as tmp:
    cfg = BuildConfig(out=tmp + "/b", root=args.data, stages=("b",), splits={"train": [1, 2, 3, 4, 5]},
                      groups_per_clip=args.groups_per_clip, compose=ComposeConfig(sample_rate=48000))
    profile = cProfile.Profile(time.process_time)
    wall, cpu = time.perf_counter(), time.process_time()
    profile.enable()
    summary = run_build(cfg, progress=False, log=lambda m: None)
    profile.disable()
    print(f"wall {time.perf_counter() - wall:.1f} s, cpu {time.process_time() - cpu:.1f} s, "
          f"{summary.samples} members")
    pstats.Stats(profile).sort_stats(SORT).print_stats(45)
