"""What the machine has: the CPUs this process may run on and the memory available now. Every
count of processes or bytes a user asks for (build and decode workers, loader workers, batch
sizes) is bounded by these, with a message that says the limit."""
from __future__ import annotations

import os


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (MemAvailable), None when unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def memory_problem(flag: str, value, needed: float, what: str) -> str | None:
    """A one-line refusal when `needed` bytes (what `flag value` makes one process hold at
    once) exceed the memory available now; None when it fits or the memory is unknown."""
    free = available_memory()
    if free is None or needed <= free:
        return None
    return (f"{flag} {value}: {what} take about {human_bytes(needed)}, more than the "
            f"{human_bytes(free)} of memory available; lower {flag}")
