"""A pool of worker processes for sweeps whose lifetime follows the parent's.

Workers die with their parent (Linux: the kernel sends SIGTERM when the parent dies; elsewhere a
watchdog thread notices the orphaning within a second), ignore Ctrl-C (the parent decides), and
see a shared stop event that asks running work to end at its next epoch boundary.  A worker
announces each piece of work it starts, so that the parent knows what was running when a worker
ended abruptly (killed, e.g. for lack of memory) and broke the pool.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any, NamedTuple

__all__ = ["WorkerPool", "announce_start", "stop_requested", "worker_pool"]

_PR_SET_PDEATHSIG = 1
_stop_event = None
_started = None


def _die_with_parent(parent_pid: int) -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass

    def watch():
        while True:
            if os.getppid() != parent_pid:
                os._exit(1)
            time.sleep(1.0)

    if os.getppid() != parent_pid:  # the parent died before the prctl took effect
        os._exit(1)
    threading.Thread(target=watch, name="delgrad-parent-watch", daemon=True).start()


def _initialise(stop_event, started, parent_pid: int) -> None:
    global _stop_event, _started
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # (the sweep stops its workers itself; SIGTERM kills them)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # (a forked worker would inherit the command's handler)
    _stop_event, _started = stop_event, started
    _die_with_parent(parent_pid)


def stop_requested() -> bool:
    """True in a worker once the parent asked running work to stop."""
    return _stop_event is not None and _stop_event.is_set()


def announce_start(name: str) -> None:
    """In a worker: tell the parent that this worker starts the work called `name`."""
    if _started is not None:
        _started.put(name)


class WorkerPool(NamedTuple):
    """A pool of workers set up as described above, its stop event and the queue of started work."""

    pool: ProcessPoolExecutor
    stop_event: Any
    started: Any

    def started_names(self) -> set[str]:
        """The names of the work the workers announced so far and not yet collected."""
        names = set()
        while not self.started.empty():
            names.add(self.started.get())
        return names


def worker_pool(max_workers: int) -> WorkerPool:
    """A `WorkerPool` of `max_workers` worker processes."""
    context = multiprocessing.get_context()
    stop_event, started = context.Event(), context.SimpleQueue()
    pool = ProcessPoolExecutor(max_workers=max_workers, mp_context=context, initializer=_initialise,
                               initargs=(stop_event, started, os.getpid()))
    return WorkerPool(pool, stop_event, started)
