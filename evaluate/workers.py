"""Decoding and rendering of evaluation inputs in worker processes, overlapped with embedding.

`DecodePool(workers).map(fn, jobs)` yields `fn(job)` for every job, in job order, while the
workers keep up to `ahead` jobs in flight: the evaluator embeds one batch while the next ones
are being decoded. With `workers=0` the jobs run in the calling process, one after another (the
serial path). Both paths run the same function on the same jobs in the same order, so an
evaluation's numbers do not depend on the number of workers.

Workers are forked where the platform allows (as torch's DataLoader does): they inherit the
imported modules, whereas a spawned worker spends seconds importing torch for the resampler
before its first clip. Like DataLoader workers, each is limited to one thread (a decode is
single-threaded work, and more threads would only compete with the embedding). They start on
the first `map` and live until `close`, so the singles and the groups of one ZSTE run share them.

Every job's time inside the worker is summed into `stats`: `clips_per_s_per_worker` is the
decode rate of one worker, so the workers an accelerator needs can be read off as
(embedding clips/s) / (clips/s per worker).
"""
from __future__ import annotations

import os
import time
from collections import deque
from typing import Callable, Iterable, Iterator

MAX_DEFAULT_WORKERS = 8


# What the machine has (teminal.pipeline.machine) bounds every count of processes.
from teminal.pipeline.machine import (available_memory, human_bytes, memory_problem,  # noqa: F401
                                      usable_cpus)


def worker_limit() -> int:
    """The most decode or loader processes one command may start: two per CPU (a worker waits
    on I/O part of the time), at least MAX_DEFAULT_WORKERS so the defaults hold on any machine.
    More only thrash: 819 workers took 17 GB in 82 s."""
    return max(MAX_DEFAULT_WORKERS, 2 * usable_cpus())


def workers_problem(flag: str, workers: int) -> str | None:
    """A one-line refusal of a worker count outside 0..worker_limit()."""
    limit = worker_limit()
    if 0 <= workers <= limit:
        return None
    return (f"{flag} must be 0 (decode in the main process) to {limit} (two per CPU, at least "
            f"{MAX_DEFAULT_WORKERS}; this machine has {usable_cpus()}), got {workers}")


def default_workers(device=None) -> int:
    """Decode processes when --workers is not given. A model on an accelerator: one per CPU the
    process may use, minus one for the embedding loop, at most 8. A model on the CPU: none, the
    main process decodes: its embedding is far slower than decoding (measured on 2 cores: the
    serial audio pass ran at 0.98 of the embedding-alone rate, one worker at 0.81, the worker
    taking CPU time from the model; BENCHMARKS.md, "Decoding in worker processes")."""
    if device is not None and str(device).split(":")[0] == "cpu":
        return 0
    return max(1, min(MAX_DEFAULT_WORKERS, usable_cpus() - 1))


def workers_for(model, workers: int | None) -> int:
    """`workers`, or the default for where `model` runs."""
    return default_workers(model.device) if workers is None else int(workers)


def decode_ahead(batch_size: int, workers: int | None) -> int:
    """Clips in flight: one embedding batch, so that the workers keep decoding the next batch
    while the model embeds this one, plus two per worker so none waits for a job."""
    workers = default_workers() if workers is None else workers
    return max(1, int(batch_size)) + 2 * max(1, int(workers))


class DecodeStats:
    """Jobs, decoded clips and worker busy time of a pool (all its maps together)."""

    def __init__(self):
        self.jobs = 0
        self.clips = 0
        self.busy_seconds = 0.0

    def add(self, clips: int, seconds: float) -> None:
        self.jobs += 1
        self.clips += clips
        self.busy_seconds += seconds

    def to_dict(self, workers: int) -> dict:
        rate = self.clips / self.busy_seconds if self.busy_seconds > 0 else None
        return {"workers": workers, "clips": self.clips, "busy_seconds": round(self.busy_seconds, 3),
                "clips_per_s_per_worker": round(rate, 1) if rate else None}


def _timed(fn: Callable, job) -> tuple[object, int, float]:
    """fn(job), the number of clips it produced (its `clips` attribute, else 1) and its time."""
    start = time.perf_counter()
    out = fn(job)
    return out, int(getattr(out, "clips", 1)), time.perf_counter() - start


def _init_worker() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    import sys

    if "torch" in sys.modules:   # forked from a process that imported it
        sys.modules["torch"].set_num_threads(1)


class DecodePool:
    """An ordered, bounded map over worker processes (see the module docstring)."""

    def __init__(self, workers: int | None = None, ahead: int | None = None):
        self.workers = default_workers() if workers is None else int(workers)
        problem = workers_problem("--workers", self.workers)
        if problem:
            raise ValueError(problem)
        # enough in flight for the workers to stay busy while the main process embeds a batch
        self.ahead = max(1, int(ahead) if ahead else 4 * max(1, self.workers))
        self.stats = DecodeStats()
        self._executor = None

    def __enter__(self) -> "DecodePool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def _pool(self):
        if self._executor is None:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor

            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            self._executor = ProcessPoolExecutor(self.workers, mp_context=mp.get_context(method),
                                                 initializer=_init_worker)
        return self._executor

    def map(self, fn: Callable, jobs: Iterable, ahead: int | None = None) -> Iterator:
        """fn(job) for each job, in order. `fn` must be a module-level function (workers import
        it by name); its results travel back pickled. Stopping early (a generator closed by the
        caller) leaves at most `ahead` jobs wasted; an exception in a job is raised here, at that
        job's place in the order."""
        if self.workers == 0:
            for job in jobs:
                out, clips, seconds = _timed(fn, job)
                self.stats.add(clips, seconds)
                yield out
            return
        pool, window = self._pool(), deque()
        limit = max(1, ahead or self.ahead)
        try:
            for job in jobs:
                window.append(pool.submit(_timed, fn, job))
                if len(window) >= limit:
                    yield self._collect(window.popleft())
            while window:
                yield self._collect(window.popleft())
        finally:
            for future in window:
                future.cancel()

    def _collect(self, future):
        from concurrent.futures.process import BrokenProcessPool

        try:
            out, clips, seconds = future.result()
        except BrokenProcessPool as e:
            raise RuntimeError(
                f"a decode worker died ({e}); if the machine ran out of memory, use fewer "
                "workers (--workers N, 0 decodes in the main process)") from None
        self.stats.add(clips, seconds)
        return out

    def timing(self) -> dict:
        return self.stats.to_dict(self.workers)
