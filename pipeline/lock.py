"""One build at a time in an OUT folder: an exclusive lock on OUT/.build-lock.

The lock is a `fcntl.flock` on the file, which the kernel releases when the process ends in
any way (exit, exception, kill -9), so a lock can never outlive its build; a lock file left
behind by a dead build is stale and is simply taken over. The file records who holds it (pid,
host, start time, part) for the message the second build prints. Parts of one build
(`--part i/n`) take one lock each, so machines can share one build; they agree on the build
through OUT/manifests/parts/build.json, which is claimed under the lock.

Lock files are opened with O_NOFOLLOW: a `.build-lock` that is a symlink is refused naming it,
never followed, so a build cannot truncate the file it points to.
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
    import fcntl

    i, n = part
    path = out / (LOCK_FILE if n == 1 else f"{LOCK_FILE}.part-{i}-of-{n}")
    fd = open_nofollow(path, os.O_RDWR | os.O_CREAT)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FileExistsError(
                f"{out} is being built right now by another process ({_holder(path)}); wait "
                f"for it to finish, or build into another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({
            "pid": os.getpid(), "host": socket.gethostname(), "part": f"{i}/{n}",
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}).encode())
        yield path
    finally:
        os.close(fd)  # releases the flock; the file stays, stale, for the next build to take


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
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "holder unknown"
    return (f"pid {info.get('pid')} on {info.get('host')}, part {info.get('part')}, since "
            f"{info.get('started')}")
