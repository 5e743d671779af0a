"""One build at a time in an OUT folder: an exclusive lock on OUT/.build-lock.

The lock is a `fcntl.flock` on the file, which the kernel releases when the process ends in
any way (exit, exception, kill -9), so a lock can never outlive its build; a lock file left
behind by a dead build is stale and is simply taken over. The file records who holds it (pid,
host, start time, part) for the message the second build prints. Parts of one build
(`--part i/n`) take one lock each, so machines can share one build; they agree on the build
through OUT/manifests/parts/build.json, which is claimed under the lock.

Lock files are opened with O_NOFOLLOW: a `.build-lock` that is a symlink is refused naming it,
never followed, so a build cannot truncate the file it points to.

Runs that read OUT hold a shared lock on OUT/.build-lock.readers (`read_lock`): a build refuses
while one is held, a reader refuses while a build runs. A training run folder has its own
exclusive lock, RUN_DIR/.run-lock (`run_lock`).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import socket
from pathlib import Path

from teminal.pipeline.paths import open_nofollow

LOCK_FILE = ".build-lock"


@contextlib.contextmanager
def build_lock(out: Path, part: tuple[int, int] = (0, 1)):
    """Hold the lock of OUT (of one part of it) for the `with` block; FileExistsError naming
    the holder when another live process has it."""
    i, n = part
    path = out / (LOCK_FILE if n == 1 else f"{LOCK_FILE}.part-{i}-of-{n}")
    busy = (f"{out} is being built right now by another process ({{}}); wait for it to finish, "
            f"or build into another --out")
    with _exclusive(path, busy) as fd:
        refuse_while_read(out)  # a training or evaluation reading OUT keeps it as it is
        _record_holder(fd, part=f"{i}/{n}")
        yield path


@contextlib.contextmanager
def _exclusive(path: Path, busy: str):
    """An exclusive flock on `path` (never through a symlink) for the `with` block, yielding its
    descriptor; FileExistsError with `busy` (its {} filled with the holder) when it is taken."""
    import fcntl

    fd = open_nofollow(path, os.O_RDWR | os.O_CREAT)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FileExistsError(busy.format(_holder(path))) from None
        yield fd
    finally:
        os.close(fd)  # releases the flock; the file stays, stale, for the next holder to take


def _record_holder(fd: int, **extra) -> None:
    """Who holds the lock (pid, host, start time, `extra`), for the next one's message."""
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps({
        "pid": os.getpid(), "host": socket.gethostname(), **extra,
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}).encode())


@contextlib.contextmanager
def claim_lock(out: Path):
    """A short lock around checking and writing OUT's build.json, shared by all parts."""
    import fcntl

    fd = open_nofollow(out / f"{LOCK_FILE}.claim", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _holder(path: Path) -> str:
    """The holder recorded in a lock file, else the pids holding it (from /proc/locks)."""
    try:
        info = json.loads(path.read_text() or "{}")
        part = f", part {info['part']}" if "part" in info else ""
        return f"pid {info['pid']} on {info['host']}{part}, since {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        pids = lock_holders(path)
        return f"pid {', '.join(map(str, pids))}" if pids else "holder unknown"


# A run that reads OUT (a training, an evaluation) holds a SHARED lock on OUT/.build-lock.readers
# for as long as it reads; a build writing into OUT refuses while one is held, and a reader
# refuses while a build holds OUT/.build-lock (or a part's lock). Readers never write OUT, so a
# read-only OUT is read without a lock.
READERS_FILE = f"{LOCK_FILE}.readers"
RUN_LOCK_FILE = ".run-lock"
PROBES = 20               # a build probes the readers' lock this many times, 50 ms apart:
PROBE_INTERVAL_S = 0.05   # other builds' parts hold it for an instant while they probe


def _open_no_follow(path: Path, create: bool) -> int | None:
    """A read descriptor of `path` (never through a symlink), None when it cannot be opened
    (a read-only build folder, a lock file that does not exist yet)."""
    try:
        return open_nofollow(path, os.O_RDONLY | (os.O_CREAT if create else 0))
    except OSError:
        return None


@contextlib.contextmanager
def read_lock(out: Path, reader: str = "a training"):
    """Hold a shared lock on OUT while reading it (see above); FileExistsError naming the
    build's holder when a build is writing OUT right now."""
    import fcntl

    out = Path(out)
    fd = _open_no_follow(out / READERS_FILE, create=True)
    if fd is None:  # a read-only build folder: nothing can build into it either
        yield None
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH)  # a build holds it only for an instant (it probes)
        busy = _building(out)
        if busy:
            raise FileExistsError(f"{out} is being built right now ({busy}); {reader} cannot "
                                  f"read it until the build has finished")
        yield out / READERS_FILE
    finally:
        os.close(fd)


def _building(out: Path) -> str | None:
    """The holder of a build lock of OUT (whole or part) held right now, else None."""
    import fcntl

    for path in sorted([out / LOCK_FILE, *out.glob(f"{LOCK_FILE}.part-*")]):
        fd = _open_no_follow(path, create=False)
        if fd is None:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder(path)
        finally:
            os.close(fd)
    return None


def refuse_while_read(out: Path) -> None:
    """FileExistsError when a reader holds OUT's shared lock (called by a build that holds its
    own lock, before it writes anything)."""
    import fcntl
    import time

    fd = _open_no_follow(out / READERS_FILE, create=False)
    if fd is None:
        return
    try:
        for _ in range(PROBES):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                time.sleep(PROBE_INTERVAL_S)
        pids = lock_holders(out / READERS_FILE)
        who = f" (pid {', '.join(map(str, pids))})" if pids else ""
        raise FileExistsError(
            f"{out} is being read right now by a training or an evaluation{who}; a build into "
            f"it would change the data under it: wait for it to finish, or build into another "
            f"--out")
    finally:
        os.close(fd)


def lock_holders(path: Path) -> list[int]:
    """Pids holding a flock on `path`, from /proc/locks (Linux; empty elsewhere or unknown)."""
    try:
        st = os.stat(path)
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return []
    key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    pids = {int(f[4]) for f in (ln.split() for ln in lines)
            if len(f) > 5 and f[1] == "FLOCK" and f[5] == key and f[4].isdigit()}
    return sorted(pids)


@contextlib.contextmanager
def run_lock(run_dir: Path, what: str = "training"):
    """One training at a time in a run folder: an exclusive lock on RUN_DIR/.run-lock, held
    for the `with` block and released however the process ends; FileExistsError naming the
    holder (pid, host, start time) when another live process has it."""
    path = Path(run_dir) / RUN_LOCK_FILE
    busy = (f"{run_dir} is in use by another {what} right now ({{}}); wait for it to finish, "
            f"or choose another --out")
    with _exclusive(path, busy) as fd:
        _record_holder(fd)
        yield path
