"""Stop signals held back to the places that can take them: the sweep executors' waits.

A Python signal handler runs between two bytecodes of the main thread, wherever that is.  The
`KeyboardInterrupt` of Ctrl-C (or of the command line's SIGTERM and SIGHUP handlers) raised
inside `concurrent.futures.wait`, which takes the locks of the futures it waits on one by one,
left a lock taken, and the process pool's thread that hands out the calls waited for it for
ever (a sweep of thousands of queued trials hung after SIGTERM); raised inside Dask's waits, it
printed Dask's own tracebacks.  Within `stop_signals_deferred` such a signal is recorded, and
the executor handles it between two waits.
"""

from __future__ import annotations

import contextlib
import signal
import threading

__all__ = ["DeferredSignals", "stop_signals_deferred"]

_STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


class DeferredSignals:
    """The stop signals received within `stop_signals_deferred` and not handled yet."""

    def __init__(self):
        self._pending: list[tuple[int, object]] = []  # (signal, the handler it was taken from)

    def _record(self, signum: int, handler) -> None:
        self._pending.append((signum, handler))

    def __bool__(self) -> bool:
        return bool(self._pending)

    def handle(self) -> None:
        """Call the handler of the first signal recorded and not handled yet (Ctrl-C's, and the
        command line's, raise `KeyboardInterrupt`); a second one stays for the next call (a
        second Ctrl-C ends a sweep's running trials at once)."""
        if self._pending:
            signum, handler = self._pending.pop(0)
            handler(signum, None)

    def drop(self) -> None:
        """Forget the signals recorded and not handled (a stop request already being carried out)."""
        self._pending.clear()


@contextlib.contextmanager
def stop_signals_deferred():
    """Within: SIGINT, SIGTERM and SIGHUP, where their handlers are Python functions (Ctrl-C's
    `KeyboardInterrupt`, the command line's), are recorded instead of handled; yields the
    `DeferredSignals`, whose `handle()` the caller calls where it can take the handler's
    exception.  One left unhandled at the end of the block is handled then, also when the block
    ends in an exception (e.g. a Dask cluster whose workers the same Ctrl-C stopped as they
    started): the stop, which the exception follows from, is what is said.  Outside the main
    thread, where no handler runs, nothing changes."""
    deferred = DeferredSignals()
    replaced = {}
    if threading.current_thread() is threading.main_thread():
        for name in _STOP_SIGNALS:
            number = getattr(signal, name, None)
            handler = None if number is None else signal.getsignal(number)
            if callable(handler):
                replaced[number] = signal.signal(
                    number, lambda signum, frame, handler=handler: deferred._record(signum, handler))
    try:
        yield deferred
    finally:
        for number, handler in replaced.items():
            signal.signal(number, handler)
        deferred.handle()
