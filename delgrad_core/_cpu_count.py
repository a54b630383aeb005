"""How many CPUs this process may run on (its affinity mask, where the platform has one)."""

from __future__ import annotations

import os

__all__ = ["MAX_JOBS", "available_cpus"]

MAX_JOBS = 256  # processes (a sweep's trials) at a time


def available_cpus() -> int:
    """CPUs in this process's affinity mask (a container's or a batch job's share), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)
