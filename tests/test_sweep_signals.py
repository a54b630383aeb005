"""A sweep's stop signals held back for its executor, and the names of the work its workers
started (kept apart from test_sweep_executors.py, which needs Dask to be collected at all)."""

import signal


def test_stop_signals_held_back_are_handled_in_the_order_they_came():
    """(DeferredSignals.handle: the first recorded first, e.g. a SIGTERM before a Ctrl-C; each
    with the handler it was taken from)"""
    from delgrad_core.training._signals import stop_signals_deferred

    called = []
    previous = {number: signal.signal(number, lambda signum, frame: called.append(signum))
                for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        with stop_signals_deferred() as signals:
            signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)  # (as if delivered: the handler runs)
            signal.getsignal(signal.SIGINT)(signal.SIGINT, None)
            assert called == []
            signals.handle()
            assert called == [signal.SIGTERM]
        assert called == [signal.SIGTERM, signal.SIGINT]  # (the one left: at the end of the block)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def test_a_stop_signal_held_back_in_a_block_that_fails_is_what_is_raised():
    """(Ctrl-C to the process group while the embedded Dask cluster started: its workers, stopped
    by it, failed the start, and the sweep ended in that RuntimeError's traceback with status 1)"""
    import pytest

    from delgrad_core.training._signals import stop_signals_deferred

    with pytest.raises(KeyboardInterrupt) as raised:
        with stop_signals_deferred():
            signal.getsignal(signal.SIGINT)(signal.SIGINT, None)  # (as if delivered: recorded)
            raise RuntimeError("Nanny failed to start.")
    assert isinstance(raised.value.__context__, RuntimeError)
    with pytest.raises(RuntimeError):  # (no signal: the block's own exception)
        with stop_signals_deferred():
            raise RuntimeError("Nanny failed to start.")


def test_the_names_of_all_work_started_are_collected_at_once():
    """(WorkerPool.started_names: every name announced since the last look, so that work a
    broken pool ended is named whole)"""
    from delgrad_core.training._workers import WorkerPool

    class Queue:
        def __init__(self, items):
            self.items = list(items)

        def empty(self):
            return not self.items

        def get(self):
            return self.items.pop(0)

    pool = WorkerPool(None, None, Queue(["a", "b", "a", "c"]))
    assert pool.started_names() == {"a", "b", "c"}
    assert pool.started_names() == set()
