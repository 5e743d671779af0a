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
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Iterator, Sequence

from teminal.pipeline.machine import usable_cpus

EXECUTORS = ("local", "ray")
# --workers beyond this many processes per CPU only adds memory (each holds its own imports and
# buffers): a pool of 819 spawned processes took 17 GB in 82 s (issue 23.9).
WORKERS_PER_CPU = 4


def max_workers() -> int:
    """The most processes `--workers` may ask for on this machine."""
    return WORKERS_PER_CPU * usable_cpus()


def check_workers(workers) -> None:
    """`--workers`: a whole number in 1..max_workers(), else a ValueError saying the limit."""
    cpus = usable_cpus()
    if not (isinstance(workers, int) and not isinstance(workers, bool)
            and 1 <= workers <= WORKERS_PER_CPU * cpus):
        raise ValueError(f"--workers {workers!r}: give 1..{WORKERS_PER_CPU * cpus} processes "
                         f"(at most {WORKERS_PER_CPU} per CPU; {cpus} here)")


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

# ray.init on an address where no cluster answers retries for minutes (measured: still waiting
# after 100 s with the port refused), and cannot be interrupted (not even by SIGALRM), so the
# address is probed first: a TCP connection, then ray.init in a child process that is killed
# when it takes too long.
RAY_CONNECT_TIMEOUT_S = 10.0
RAY_INIT_TIMEOUT_S = 30.0
_RAY_INIT_PROBE = ("import sys, ray; ray.init(address=sys.argv[1], include_dashboard=False, "
                   "log_to_driver=False, logging_level='ERROR'); ray.shutdown()")


def check_executor(executor: str, address: str | None = None) -> None:
    """Before a build claims OUT: with `ray`, Ray imports and a `--ray-address` answers within
    RAY_CONNECT_TIMEOUT_S; otherwise a RuntimeError says what to install or start."""
    if executor != "ray":
        return
    _import_ray()
    if address:
        _probe_ray_address(address)


def _import_ray():
    try:
        import ray
    except ImportError as e:
        raise RuntimeError(f"--executor ray needs Ray, which does not import here ({e}): "
                           f"pip install ray (or `make install`, which installs the project's "
                           f"ray extra), or build with --executor local") from None
    return ray


def _probe_ray_address(address: str) -> None:
    """A TCP connection to the cluster's head, bounded by RAY_CONNECT_TIMEOUT_S ("local" starts
    a new instance: nothing to probe; "auto" is looked up the way Ray does)."""
    import socket

    if address == "local":
        return
    target = address
    if address == "auto":
        try:
            from ray._private.services import canonicalize_bootstrap_address_or_die
        except ImportError:   # Ray moved its helper: let ray.init look it up
            return
        try:
            target = canonicalize_bootstrap_address_or_die(address)
        except (ConnectionError, ValueError) as e:
            raise RuntimeError(f"--ray-address auto: {' '.join(str(e).split())}") from None
    client = target.startswith("ray://")
    host, _, port = target.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        host, port = target.removeprefix("ray://"), ("10001" if client else "6379")
    host = host.strip("[]")
    fix = "start it (`ray start --head` on the head node) or fix the address"
    try:
        socket.create_connection((host, int(port)), timeout=RAY_CONNECT_TIMEOUT_S).close()
    except (OSError, ValueError) as e:
        raise RuntimeError(
            f"--ray-address {address}: no Ray cluster answers at {host}:{port} within "
            f"{RAY_CONNECT_TIMEOUT_S:g} s ({' '.join(str(e).split()) or type(e).__name__}); "
            f"{fix}") from None
    try:   # something answers: is it a Ray cluster this process can join?
        done = subprocess.run([sys.executable, "-c", _RAY_INIT_PROBE, address],
                              capture_output=True, text=True, timeout=RAY_INIT_TIMEOUT_S,
                              env=_ray_env(address))
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"--ray-address {address}: {host}:{port} answers, but joining it as a "
                           f"Ray cluster did not finish within {RAY_INIT_TIMEOUT_S:g} s (not a "
                           f"Ray head, or another Ray version?); {fix}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise RuntimeError(f"--ray-address {address}: cannot join the Ray cluster at "
                           f"{host}:{port} ({' '.join(last.split())[:300]}); {fix}")


def _ray_env(address: str | None) -> dict:
    """This process's environment with the build's Ray defaults: no token prompt, and on a local
    instance one OpenMP thread per worker, as in the process pool."""
    env = dict(os.environ)
    env.setdefault("RAY_AUTH_MODE", "disabled")
    if not address:
        env.setdefault("OMP_NUM_THREADS", "1")
    return env


def start_ray(address: str | None = None, num_cpus: int = 1) -> bool:
    """Connect to the Ray cluster at `address`, or start a local instance with `num_cpus`.
    Returns False when this process was already connected (the caller then leaves it so)."""
    ray = _import_ray()
    if ray.is_initialized():
        return False
    # no token prompt or dashboard for a build. A local instance's workers inherit this
    # environment (a runtime_env would need Ray's runtime-env agent, which hangs a minimal
    # install).
    os.environ.update(_ray_env(address))
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
