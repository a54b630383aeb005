"""A pool of worker processes for sweeps whose lifetime follows the parent's.

Workers die with their parent (Linux: the kernel sends SIGTERM when the parent dies; elsewhere a
watchdog thread notices the orphaning within a second), ignore Ctrl-C (the parent decides), and
see a shared stop event that asks running work to end at its next epoch boundary.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor

__all__ = ["worker_pool", "stop_requested"]

_PR_SET_PDEATHSIG = 1
_stop_event = None


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


def _initialise(stop_event, parent_pid: int) -> None:
    global _stop_event
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # (the sweep stops its workers itself; SIGTERM kills them)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # (a forked worker would inherit the command's handler)
    _stop_event = stop_event
    _die_with_parent(parent_pid)


def stop_requested() -> bool:
    """True in a worker once the parent asked running work to stop."""
    return _stop_event is not None and _stop_event.is_set()


def worker_pool(max_workers: int):
    """(pool, stop_event): a `ProcessPoolExecutor` of workers set up as described above."""
    context = multiprocessing.get_context()
    stop_event = context.Event()
    pool = ProcessPoolExecutor(max_workers=max_workers, mp_context=context, initializer=_initialise,
                               initargs=(stop_event, os.getpid()))
    return pool, stop_event
