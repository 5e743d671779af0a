#!/usr/bin/env bash
# Every benchmark of the project, one per line. `make bench` runs this with the Makefile's
# MALLOC_* tuning exported (see docs/STACK-NOTES.md: large numpy buffers otherwise page-fault heavily).
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
: "${MALLOC_MMAP_THRESHOLD_:=67108864}" "${MALLOC_TRIM_THRESHOLD_:=4294967296}" "${MALLOC_TOP_PAD_:=67108864}"
export MALLOC_MMAP_THRESHOLD_ MALLOC_TRIM_THRESHOLD_ MALLOC_TOP_PAD_

python benchmarks/bench_pipeline.py          # stage-B build vs cost floor, real ESC-50, 48 kHz FLAC
python benchmarks/bench_eval.py             # ZSTE evaluation throughput (clips/s), small model, 16 kHz 10 s
python benchmarks/bench_train.py            # training clips/s and data stall, small model on CPU, 2 loader workers
python benchmarks/bench_executors.py          # stage-B build: --workers 1 / 2 / --executor ray, members/s and Ray overhead
python benchmarks/bench_library_swaps.py      # filelock vs the build lock, swa_utils vs WeightAverage (small model)
