"""Sweeps on Dask (optional extra ``delgrad[dask]``): an embedded local cluster or any existing
one, from a laptop to a SLURM cluster (dask-jobqueue).

Each trial is one task whose key is the trial id, so a scheduler never runs the same trial twice
at once and a rerun finds finished trials on disk.  A worker that dies mid-trial is replaced
and the trial, rescheduled, resumes from its last checkpoint (bit for bit the result of an
uninterrupted run); the sweep says which trials a lost worker held.  The embedded cluster runs
one single-threaded worker process per core on loopback and is closed with the sweep.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import threading
import uuid

try:
    from distributed import WorkerPlugin as _WorkerPlugin
except ImportError:  # (the extra is not installed: `require_distributed` says how to get it)
    _WorkerPlugin = object

from delgrad_core._cpu_count import available_cpus
from delgrad_core._errors import BackendUnavailable, DelgradError, InvalidValueError, described
from delgrad_core.training._executors import STOP_CHECK_S, Unfinished, report
from delgrad_core._options import first_few
from delgrad_core.training._signals import stop_signals_deferred
from delgrad_core.training._trials import Trial, train_trial

__all__ = ["DaskExecutor", "refuse_in_process_address", "require_distributed"]

#: How long a scheduler's address may stay silent on a new connection, in seconds: a Dask
#: scheduler sends its handshake at once, and Dask's own connect waits for it without a bound.
GREETING_WAIT_S = 20.0


def require_distributed():
    """The `distributed` module, or an error saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise InvalidValueError("--executor dask needs dask.distributed: pip install 'delgrad[dask]'") from None
    if not hasattr(distributed.Client, "register_plugin"):  # (new in 2023.9.2; the sweep's workers need it)
        raise InvalidValueError(f"--executor dask needs dask.distributed 2023.9.2 or newer, not "
                                f"{getattr(distributed, '__version__', 'an older one')}: pip install --upgrade "
                                "'delgrad[dask]'")
    return distributed


def _check_greets(address: str, wait_s: float) -> None:
    """Refuse a tcp:// `address` where something accepts connections but sends nothing within
    `wait_s` (a port another program holds, or a hung scheduler) or refuses connections; other
    failures to connect are left to Dask's connect, which names them."""
    from distributed.comm.addressing import parse_address, parse_host_port

    try:
        scheme, location = parse_address(address)
        host, port = parse_host_port(location)
    except ValueError:  # (malformed: Dask's connect says so)
        return
    if scheme != "tcp":
        return
    try:
        with socket.create_connection((host, port), timeout=wait_s) as probe:
            probe.settimeout(wait_s)
            probe.recv(1)
    except socket.timeout:
        raise BackendUnavailable(f"--scheduler {address}: something accepts connections there but sent nothing in "
                                 f"{wait_s:g} s; a Dask scheduler greets at once (a hung scheduler, or not its "
                                 "address: the scheduler's port is usually 8786)") from None
    except ConnectionRefusedError:  # (Dask's connect tried again for 20 s, then said the same)
        raise BackendUnavailable(f"--scheduler {address}: nothing listens there (connection refused); start the "
                                 "scheduler first (dask scheduler), or check the address") from None
    except OSError:
        return


def _train_until_stopped(settings: dict, folder: str, stop_name: str) -> dict:
    """`train_trial` on a Dask worker, stopped before its next epoch once the sweep sets the
    Dask event `stop_name` (on Ctrl-C: cancelling a task that runs does not stop it, and on a
    shared cluster it trained on after the sweep had ended); an exception outside `Exception`
    comes back as a `DelgradError` saying what it was."""
    import distributed

    stop = None  # (made when first asked, after the first epoch: as late as a task needs a client)

    def stop_set() -> bool:
        nonlocal stop
        if stop is None:
            stop = distributed.Event(stop_name)
        return stop.is_set()

    try:
        return train_trial(settings, folder, should_stop=stop_set)
    except Exception:
        raise
    except BaseException as exc:  # (Dask's client ends its own loop on an exception outside `Exception`, e.g.
        # SystemExit or a plugin's own class raised outside the plugin wrappers: the trial's result never came)
        raise DelgradError(described(exc)) from None


@contextlib.contextmanager
def _interrupts_held():
    """Stop signals held back for the block (`stop_signals_deferred`, so a Ctrl-C meanwhile
    raises KeyboardInterrupt when the block ends), and SIGINT blocked in this thread, so that
    the threads and processes it starts inherit it blocked."""
    with stop_signals_deferred():
        if threading.current_thread() is not threading.main_thread():  # (signals: main thread only)
            yield
            return
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)  # (one held back is recorded now)


class _IgnoreInterrupt(_WorkerPlugin):
    """Worker plugin: the worker ignores Ctrl-C (SIGINT), as the embedded cluster's first workers
    do from birth, also when its nanny restarts it after a crash (a restarted worker took the
    nanny's handler and printed a traceback when the terminal's Ctrl-C reached it)."""

    name = "delgrad-ignore-interrupt"

    def setup(self, worker) -> None:
        if threading.current_thread() is threading.main_thread():  # (signals: main thread only)
            signal.signal(signal.SIGINT, signal.SIG_IGN)


class _QuietTaskFailures(_WorkerPlugin):
    """Worker plugin: the worker does not log a failed task ("Compute Failed" and the task's
    traceback, a screenful per failed trial), which the sweep reports as one line."""

    name = "delgrad-quiet-task-failures"

    def setup(self, worker) -> None:
        logging.getLogger("distributed.worker").setLevel(logging.CRITICAL)


_JOINABLE_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")  # (and inproc://, a cluster in this process)
_ADDRESS_WANTED = "an address such as tcp://HOST:8786 (tcp, tls, ws, wss or ucx; a port from 1 to 65535)"


def _refused(address: str, reason) -> InvalidValueError:
    """The error for a scheduler `address` that cannot be joined, saying why."""
    return InvalidValueError(f"--scheduler: expected {_ADDRESS_WANTED}, got {address!r} ({reason})")


def _unjoinable(scheme: str) -> str:
    return f"{scheme}:// is not a scheme another process can join"


def refuse_in_process_address(address: str) -> None:
    """Refuse an inproc:// `address`: a cluster inside one Python process, which a command line
    names none of (`DaskExecutor` takes it, from Python)."""
    if address.startswith("inproc://"):
        raise _refused(address, _unjoinable("inproc"))


def _joinable(address: str) -> str:
    """`address` if a scheduler can be joined there: a scheme of `_JOINABLE_SCHEMES` (none
    means tcp), a host and a port from 1 to 65535; or inproc://, a cluster in this process."""
    from distributed.comm import parse_address
    from distributed.comm.addressing import parse_host_port

    try:
        scheme, location = parse_address(address)
        if scheme == "inproc":
            return address
        if scheme not in _JOINABLE_SCHEMES:
            raise ValueError(_unjoinable(scheme))
        host, port = parse_host_port(location)
        if not 1 <= port <= 65535:
            raise ValueError(f"port {port}")
    except (ValueError, TypeError) as exc:
        raise _refused(address, exc) from None
    return address


class DaskExecutor:
    """Trials as Dask tasks.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (e.g. "tcp://10.0.0.5:8786"); None starts an embedded
        local cluster with `jobs` single-threaded worker processes on loopback.
    jobs : int, optional
        Workers of the embedded cluster (default: the CPUs this process may use).
    """

    def __init__(self, scheduler: str | None = None, jobs: int | None = None, should_stop=None):
        require_distributed()
        self.scheduler = None if scheduler is None else _joinable(scheduler)
        self.jobs = jobs or available_cpus()
        self.should_stop = should_stop  # (called while trials run: raises KeyboardInterrupt to stop them)

    def _connect(self, n_trials: int):
        distributed = require_distributed()
        if self.scheduler is None:  # (no idle workers)
            # the workers start with Ctrl-C blocked (they inherit the mask), as those of the process pool
            # ignore it: the sweep stops them itself (a terminal sends SIGINT to the whole group, and each
            # worker printed a traceback).  Blocked, not ignored, here: a Ctrl-C during the start waits and
            # is answered once the cluster is up (ignored, it was lost, and the sweep ran to its end).
            cluster = None
            try:
                with _interrupts_held():
                    # (the scheduler's web server runs even without its dashboard: on a free port, not on 8787,
                    # where another cluster's gave a warning with every sweep)
                    cluster = distributed.LocalCluster(n_workers=min(self.jobs, n_trials), threads_per_worker=1,
                                                       processes=True, host="127.0.0.1", dashboard_address=":0",
                                                       scheduler_kwargs={"dashboard": False})
                client = distributed.Client(cluster)
                client.register_plugin(_IgnoreInterrupt())
                client.register_plugin(_QuietTaskFailures())
            except BaseException:
                if cluster is not None:
                    cluster.close()
                raise
            return cluster, client
        _check_greets(self.scheduler, GREETING_WAIT_S)
        try:
            return None, distributed.Client(self.scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise BackendUnavailable(f"--scheduler {self.scheduler}: cannot connect ({exc})") from None
        except ValueError as exc:  # (an address Dask refuses beyond what `_joinable` checks)
            raise _refused(self.scheduler, exc) from None
        except TypeError as exc:  # (tls:// without Dask's TLS settings: "TLS expects a ssl_context argument")
            raise InvalidValueError(f"--scheduler {self.scheduler}: cannot connect ({exc}); a tls:// scheduler needs "
                                    "Dask's TLS settings (distributed.comm.tls in its configuration)") from None
        except MemoryError:  # (another protocol's bytes read as the length of a Dask message)
            raise InvalidValueError(f"--scheduler {self.scheduler}: something answers there, but not a Dask "
                                    "scheduler (the scheduler's port is usually 8786; 8787 is its dashboard)") from None

    def run(self, trials: list[Trial], echo) -> tuple[Unfinished, bool]:
        import distributed
        from delgrad_core.training._progress import progress_bar

        unfinished = Unfinished()
        interrupted = False
        stop_name = f"delgrad-stop-{uuid.uuid4().hex}"  # (set on Ctrl-C: the running trials stop after their epoch)
        cluster, client = self._connect(len(trials))
        with stop_signals_deferred() as signals:  # (a KeyboardInterrupt inside Dask's waits printed its tracebacks)
            try:
                futures = {client.submit(_train_until_stopped, trial.settings, str(trial.folder), stop_name,
                                         key=f"delgrad-trial-{trial.id}", pure=False): trial for trial in trials}
                workers = _WorkerWatch(client, {future.key: trial for future, trial in futures.items()})
                with progress_bar(total=len(futures), desc="sweep", unit="run") as bar:
                    try:
                        remaining = set(futures)
                        while remaining:
                            try:
                                done, remaining = distributed.wait(remaining, timeout=STOP_CHECK_S,
                                                                   return_when="FIRST_COMPLETED")
                            except distributed.TimeoutError:
                                done = set()
                            except distributed.CancelledError:  # (wait ends at once when a task was cancelled,
                                # e.g. by another client or a scheduler restart: that trial failed, the others go on)
                                done = {future for future in remaining if future.done()}
                                remaining -= done
                            for future in done:
                                bar.update(1)
                                report(futures[future], _outcome(future), unfinished, echo)
                            workers.note_losses({future.key for future in remaining}, echo)
                            signals.handle()  # (a stop signal: its KeyboardInterrupt here, between two waits)
                            if self.should_stop is not None:  # (a stop signal whose KeyboardInterrupt was lost:
                                self.should_stop()              # the sweep ran to its end)
                    except KeyboardInterrupt:
                        interrupted = True
                if interrupted:
                    if cluster is not None:  # (the embedded workers' notes on the tasks cancelled now)
                        client.run(_quiet_distributed_log)
                    distributed.Event(stop_name, client=client).set()
                    client.cancel(list(futures))
                    echo("\ninterrupted: the queued trials are cancelled and the running ones stop after their "
                         "current epoch; finished trials are saved and interrupted ones resume from their last "
                         "checkpoint")
            finally:
                distributed_log = logging.getLogger("distributed")
                level = distributed_log.level
                if interrupted:
                    _quiet_distributed_log()  # (its notes on the cancelled tasks while closing)
                try:
                    client.close()
                    if cluster is not None:
                        cluster.close()
                finally:
                    distributed_log.setLevel(level)
                if interrupted:
                    signals.drop()  # (another Ctrl-C while the trials were stopped and the cluster closed)
                else:
                    try:  # (one that came while the cluster closed: the sweep was stopped, status 128 + it)
                        signals.handle()
                    except KeyboardInterrupt:
                        interrupted = True
        return unfinished, interrupted


class _WorkerWatch:
    """Which trials each worker of the cluster holds, looked at between two waits, to say which
    trials a worker that left (died, was killed or stopped) held: Dask starts them again on
    another worker without a word, and each resumes from its last finished epoch."""

    def __init__(self, client, trials_by_key: dict):
        self._client = client
        self._trials = trials_by_key
        self._held: dict[str, list] = {}  # worker address -> keys of the trials it held at the last look

    def note_losses(self, unfinished_keys: set, echo) -> None:
        """Echo a line for each worker gone since the last look that held unfinished trials."""
        try:
            held = self._client.processing()
        except OSError:  # (the scheduler is out of reach for now: the wait says so if it stays so)
            return
        for worker in sorted(set(self._held) - set(held)):
            lost = [self._trials[key].name for key in self._held[worker] if key in unfinished_keys]
            if lost:
                echo(f"the Dask worker {worker} left the cluster (killed, stopped, or out of memory?) while it held "
                     f"{len(lost)} unfinished run(s), {first_few(lost)}: they start again on another worker and "
                     "resume from their last finished epoch")
        self._held = {worker: list(keys) for worker, keys in held.items()}


def _quiet_distributed_log() -> None:
    """Dask's log from ERROR on only (in a worker: its notes on cancelled tasks)."""
    logging.getLogger("distributed").setLevel(logging.ERROR)


def _outcome(future):
    """A finished task's metrics, or the exception it raised (one failed trial must not cost the others)."""
    try:
        return future.result()
    except Exception as exc:
        return exc
