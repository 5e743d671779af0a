"""Where the shards of a build are rendered: `local` (this process, or a spawn pool of
`workers` processes) or `ray` (one Ray task per shard, on a local instance or a cluster).

Both take the same jobs (`render.shard_job` arguments) and yield `ShardResult`s as shards
finish, in any order; the build's bytes do not depend on the executor, because each shard's
bytes depend only on its job. A shard that raises is retried up to `retries` times and then
yielded with its error, so one bad shard never loses the others.

With Ray, every node must see OUT (the decoded source pool in OUT/.cache and the shards are
read and written there) and the same installed teminal: use a shared filesystem.
"""
from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from typing import Iterator, Sequence

EXECUTORS = ("local", "ray")


@dataclass
class ShardResult:
    relpath: str
    row: dict | None          # the `shards` row, None when the shard failed
    error: str = ""           # the last attempt's error when it failed
    attempts: int = 1


def one_line(e: BaseException) -> str:
    cause = getattr(e, "cause", None)     # RayTaskError wraps the task's own exception
    e = cause if isinstance(cause, BaseException) else e
    return f"{type(e).__name__}: {' '.join(str(e).split())}"[:500]


# ---------------------------------------------------------------------------------------------
# local

def _attempts(job_retries: tuple) -> tuple[str, dict | None, str, int]:
    """Run one shard job up to 1 + retries times (in a pool worker or in this process)."""
    from teminal.pipeline import render

    job, retries = job_retries
    for attempt in range(1, retries + 2):
        try:
            return job[0].relpath, render.shard_job(job), "", attempt
        except Exception as e:  # noqa: BLE001 - recorded with the shard, the build goes on
            error = one_line(e)
    return job[0].relpath, None, error, retries + 1


def run_local(jobs: Sequence[tuple], pool=None, retries: int = 2) -> Iterator[ShardResult]:
    items = [(job, retries) for job in jobs]
    results = pool.imap_unordered(_attempts, items) if pool else map(_attempts, items)
    for relpath, row, error, attempts in results:
        yield ShardResult(relpath, row, error, attempts)


@contextlib.contextmanager
def process_pool(n: int):
    """A spawn pool of n processes (None for n == 1: everything runs in this process)."""
    if n <= 1:
        yield None
        return
    ctx = mp.get_context("spawn")
    pool = ctx.Pool(n, initializer=_init_worker)
    try:
        yield pool
        pool.close()
        pool.join()
    finally:
        pool.terminate()


def _init_worker() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")


# ---------------------------------------------------------------------------------------------
# ray

def start_ray(address: str | None = None, num_cpus: int = 1) -> bool:
    """Connect to the Ray cluster at `address`, or start a local instance with `num_cpus`.
    Returns False when this process was already connected (the caller then leaves it so)."""
    try:
        import ray
    except ImportError:
        raise RuntimeError("--executor ray needs Ray: pip install -e '.[ray]' (or "
                           "pip install 'ray[default]')") from None
    if ray.is_initialized():
        return False
    # no token prompt or dashboard for a build. A local instance's workers inherit this
    # environment: one OpenMP thread each, as in the process pool (a runtime_env would need
    # Ray's runtime-env agent, which hangs a minimal install).
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if not address:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    kwargs = dict(include_dashboard=False, log_to_driver=False)
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=num_cpus, **kwargs)
    return True


def run_ray(jobs: Sequence[tuple], address: str | None = None, num_cpus: int = 1,
            retries: int = 2) -> Iterator[ShardResult]:
    """One Ray task per shard; Ray retries a task that raises or whose worker dies."""
    import ray

    started = start_ray(address, num_cpus)
    try:
        from teminal.pipeline.render import shard_job

        task = ray.remote(num_cpus=1, max_retries=retries, retry_exceptions=True)(shard_job)
        pending = {task.remote(job): job[0].relpath for job in jobs}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                relpath = pending.pop(ref)
                try:
                    yield ShardResult(relpath, ray.get(ref))
                except Exception as e:  # noqa: BLE001 - recorded with the shard
                    yield ShardResult(relpath, None, one_line(e), retries + 1)
    finally:
        if started:
            ray.shutdown()


def ray_task_overhead(n: int = 20) -> float:
    """Seconds per round trip of an empty Ray task on the connected instance (benchmarks)."""
    import ray

    noop = ray.remote(num_cpus=1)(lambda: None)
    ray.get(noop.remote())
    t0 = time.perf_counter()
    ray.get([noop.remote() for _ in range(n)])
    return (time.perf_counter() - t0) / n
