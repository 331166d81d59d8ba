"""Process memory, sampled into metrics.csv (``memory_interval``) to show that a long run stays flat."""

from __future__ import annotations

import os
import resource
import sys


def rss_mb() -> float:
    """Resident set size of this process (MiB): ``/proc/self/statm`` on Linux; elsewhere the peak RSS
    (``getrusage``), an upper bound."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10   # bytes on macOS, KiB on Linux


def memory_row() -> dict[str, float]:
    """``rss_mb`` and ``py_heap_blocks`` (``sys.getallocatedblocks()``: blocks held by Python's object
    allocator, a leak of Python objects grows it; cheap, unlike ``tracemalloc``)."""
    return {"rss_mb": round(rss_mb(), 2), "py_heap_blocks": sys.getallocatedblocks()}


__all__ = ["rss_mb", "memory_row"]
