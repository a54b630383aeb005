"""Executors that run a sweep's trials: a local process pool (default) or Dask (optional extra).

Both take the same trials and report the same way: a line per finished, failed, stopped or
busy trial through `echo`, and (`Unfinished`, interrupted) at the end.  A failed trial never
stops the others.
"""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

from delgrad_core._cpu_count import MAX_JOBS, available_cpus
from delgrad_core._errors import DelgradError, FileFormatError, FolderInUseError, InvalidValueError, described
from delgrad_core._numbers import checked_number
from delgrad_core._propagation import default_num_threads
from delgrad_core.training._run import TrainingStopped
from delgrad_core.training._signals import stop_signals_deferred
from delgrad_core.training._trials import Trial, train_trial
from delgrad_core.training._workers import announce_start, stop_requested, worker_pool

__all__ = ["STOP_CHECK_S", "ProcessExecutor", "Unfinished", "finished_line", "make_executor", "report"]

EXECUTORS = ("process", "dask")


@dataclass
class Unfinished:
    """The trials that ended without a result, as "name: message" lines: those that failed, and
    those whose folders another process held (e.g. a SLURM task still running them)."""

    failed: list[str] = field(default_factory=list)
    in_use: dict[str, str] = field(default_factory=dict)  # (trial name -> its line)


def report(trial: Trial, outcome, unfinished: Unfinished, echo) -> None:
    """Echo one trial's outcome (metrics, or the exception it raised); record failures and
    trials in use elsewhere in `unfinished`.  A trial whose metrics came back but whose folder
    holds no finished run here (a worker wrote it elsewhere) counts as failed."""
    if isinstance(outcome, TrainingStopped):
        echo(f"{trial.name}: {outcome.what}")
    elif isinstance(outcome, FolderInUseError):
        unfinished.in_use[trial.name] = f"{trial.name}: {outcome}"
        echo(f"IN USE {unfinished.in_use[trial.name]}")
    elif isinstance(outcome, BaseException):
        # (a damaged file of its own, e.g. its checkpoint, fails the trial again on every run)
        advice = f"; remove its folder {trial.folder} to train it anew" if isinstance(outcome, FileFormatError) else ""
        unfinished.failed.append(f"{trial.name}: {described(outcome)}{advice}")
        echo(f"FAILED {unfinished.failed[-1]}")
    elif not trial.finished:  # (a worker wrote it where this process does not see it)
        unfinished.failed.append(f"{trial.name}: trained to {100 * outcome['test_accuracy']:.2f} % test accuracy, but "
                                 f"its folder {trial.folder} holds no finished run here: the workers must write to a "
                                 "folder this process reads (a disk they share; run the sweep again once it is there)")
        echo(f"FAILED {unfinished.failed[-1]}")
    else:
        echo(finished_line(trial, outcome))


def finished_line(trial: Trial, metrics: dict) -> str:
    """What a sweep says of a trial that finished with `metrics`."""
    return f"{trial.name}: test accuracy {100 * metrics['test_accuracy']:.2f} %"


def _train_in_worker(settings: dict, folder: str, threads: int) -> dict:
    if stop_requested():  # (a trial the pool had queued in the worker before Ctrl-C)
        raise TrainingStopped(folder, _NOT_STARTED)
    announce_start(folder)
    return train_trial(settings, folder, should_stop=stop_requested, threads=threads)


_NOT_STARTED = "not started, the sweep was interrupted"

#: How often a sweep waiting for its trials checks for a stop signal, in seconds.
STOP_CHECK_S = 0.5


def _kill_workers(workers) -> None:
    """Kill the pool's worker processes and forget them (a trial they ran resumes from its last
    finished epoch; SIGTERM would only ask them to stop after it)."""
    started = list((getattr(workers.pool, "_processes", None) or {}).values())  # (CPython's record of them)
    workers.pool.shutdown(wait=False, cancel_futures=True)  # (which forgets them)
    for process in started:
        process.kill()


def _check_pool_works(workers, remaining) -> None:
    """Refuse to wait for the `remaining` trials of a pool whose manager thread ended without
    ending them (e.g. "can't start new thread" for lack of memory; a pool it broke has them all
    ended first): none would ever end, and the sweep waited for ever.  Its workers are killed;
    the trials they ran resume from their last finished epoch."""
    manager = getattr(workers.pool, "_executor_manager_thread", None)  # (CPython's, 3.9 on)
    if manager is not None and not manager.is_alive() and not any(future.done() for future in remaining):
        _kill_workers(workers)
        raise DelgradError("the sweep's pool of worker processes stopped working (its manager thread ended, e.g. "
                           "for lack of memory: see the error above); run the same command again to resume")


def _threads_per_worker(jobs: int, n_trials: int) -> int:
    """The CPUs per running trial, at most $DELGRAD_NUM_THREADS (the user's cap, if set)."""
    return min(max(1, available_cpus() // min(jobs, n_trials)), default_num_threads())


class ProcessExecutor:
    """Trials in a local pool of `jobs` worker processes that die with the sweep; each trial
    gets the CPUs left per worker as kernel threads (`threads_per_trial`: 2 for ``--jobs 1``, or
    for ``--jobs 2`` with one trial left, on two CPUs).  Ctrl-C (or SIGTERM) lets no queued trial
    start and stops running ones at their next epoch boundary; a second one ends them at once.

    A worker that ends abruptly (killed, e.g. for lack of memory) breaks the pool and ends the
    trials running beside it: the unfinished trials start again in a new pool and resume from
    their last finished epoch.  A trial that was running each time `MAX_WORKER_LOSSES` pools
    broke fails (as Dask gives up on a task after three lost workers)."""

    MAX_WORKER_LOSSES = 3

    def __init__(self, jobs: int | None = None, should_stop=None):
        self.jobs = jobs or available_cpus()
        self.should_stop = should_stop  # (called while trials run: raises KeyboardInterrupt to stop them)

    def threads_per_trial(self, n_trials: int) -> int:
        """Kernel threads of each trial when `n_trials` are to run: the CPUs per worker of the
        pool, which has no more workers than trials."""
        return _threads_per_worker(self.jobs, n_trials)

    def run(self, trials: list[Trial], echo) -> tuple[Unfinished, bool]:
        from delgrad_core.training._progress import progress_bar

        unfinished = Unfinished()
        losses = dict.fromkeys((trial.id for trial in trials), 0)
        alone: set[str] = set()  # trials running beside others when a worker ended: they now run one at a time
        interrupted = False
        with progress_bar(total=len(trials), desc="sweep", unit="run") as bar:
            while trials and not interrupted:
                batch = [trial for trial in trials if trial.id in alone] or trials
                lost, started, interrupted = self._run_pool(batch, 1 if batch is not trials else self.jobs, echo,
                                                            bar, unfinished)
                charged = {trial.id for trial in lost if str(trial.folder) in started} or {trial.id for trial in lost}
                # (those that were running; all if a worker died before starting any: a pool that cannot
                # start ends the sweep)
                if len(charged) > 1:
                    alone |= charged
                ended = {trial.id for trial in batch} - {trial.id for trial in lost}
                trials = [trial for trial in trials if trial.id not in ended]
                for trial in lost:
                    losses[trial.id] += trial.id in charged
                for trial in [trial for trial in lost if losses[trial.id] >= self.MAX_WORKER_LOSSES]:
                    lost.remove(trial)
                    trials.remove(trial)
                    bar.update(1)
                    report(trial, DelgradError(f"its worker process ended abruptly {losses[trial.id]} times while "
                                               "it ran (killed, e.g. for lack of memory?); it resumes from its last "
                                               "finished epoch when the sweep runs again"), unfinished, echo)
                if lost and not interrupted:
                    echo(f"a worker process ended abruptly (killed, e.g. for lack of memory?); {len(lost)} "
                         "unfinished run(s) start again in new workers and resume from their last finished epoch"
                         + (f" ({len(charged)} that were running beside each other: one at a time)"
                            if len(charged) > 1 else ""))
        return unfinished, interrupted

    def _run_pool(self, trials: list[Trial], jobs: int, echo, bar, unfinished: Unfinished):
        """Run `trials` in one pool of at most `jobs` workers: (trials lost when a worker broke
        the pool, the trials started in it, interrupted)."""
        workers = worker_pool(min(jobs, len(trials)))  # (no idle workers)
        threads = _threads_per_worker(jobs, len(trials))
        futures = {}
        try:
            for trial in trials:
                futures[workers.pool.submit(_train_in_worker, trial.settings, str(trial.folder), threads)] = trial
        except BaseException:  # (e.g. no file descriptor left to start a worker: with fork, the pool's manager
            # thread, which ends the workers, was not started yet; the ones started waited for work for ever, and
            # the sweep, joining them at exit, never ended. They are killed, as SIGTERM asks a worker to stop after
            # its trial; one that began a trial, as with spawn, resumes it from its last epoch on the next run.)
            _kill_workers(workers)
            workers.started.close()
            raise
        remaining, lost, started, interrupted = set(futures), set(), set(), False
        not_started = 0  # (queued trials that ended at once after Ctrl-C: counted, not a line each)
        try:
            with stop_signals_deferred() as signals:
                while remaining:
                    try:
                        done, remaining = wait(remaining, timeout=STOP_CHECK_S, return_when=FIRST_COMPLETED)
                        if remaining and not done:
                            _check_pool_works(workers, remaining)
                        started |= workers.started_names()  # (read as they come: a full pipe would block workers)
                        for future in done:
                            if future.cancelled():
                                continue
                            error = future.exception()
                            if isinstance(error, KeyboardInterrupt):  # a trial was interrupted: so is the sweep
                                raise error
                            if isinstance(error, BrokenProcessPool):
                                if (interrupted or signals) and str(futures[future].folder) not in started:
                                    not_started += 1  # (queued when the workers died, e.g. SIGTERM to the group)
                                elif interrupted or signals:  # (handled below)
                                    echo(f"{futures[future].name}: stopped with its worker; it resumes from its "
                                         "last finished epoch")
                                else:
                                    lost.add(future)
                                continue
                            outcome = error if error is not None else future.result()
                            if isinstance(outcome, TrainingStopped) and outcome.what == _NOT_STARTED:
                                not_started += 1
                                continue
                            if not isinstance(outcome, TrainingStopped):  # (the bar counts trials that ended)
                                bar.update(1)
                            report(futures[future], outcome, unfinished, echo)
                        signals.handle()  # (a stop signal: its KeyboardInterrupt here, between two waits)
                        if self.should_stop is not None and not interrupted:  # (a stop signal whose
                            self.should_stop()  # KeyboardInterrupt was lost: the sweep ran to its end)
                    except KeyboardInterrupt:
                        if interrupted:  # a second Ctrl-C: the running trials end now, then the results are
                            # written
                            _kill_workers(workers)
                            echo("\ninterrupted again: the running runs end now; they resume from their last "
                                 "finished epoch")
                            break
                        interrupted = True
                        workers.stop_event.set()  # (queued trials then end at once, unstarted: no future
                        # is cancelled, as a pool broken by killed workers cannot finish cancelled futures; CPython
                        # 3.11 hangs then) (not split into queued and running: the pool counts a call it has
                        # handed to its queue as running before a worker takes it)
                        if remaining:  # (none: every run ended already, e.g. its worker killed by the signal)
                            echo(f"\ninterrupted: of {len(remaining)} unfinished run(s), queued ones will not start "
                                 "and running ones stop at their next epoch boundary (Ctrl-C again to end them now; "
                                 "they resume from their last finished epoch)")
                        else:
                            echo("\ninterrupted: no more runs start")
                try:
                    signals.handle()  # (one that came as the last trials ended, or after a second one)
                except KeyboardInterrupt:
                    interrupted = True
                signals.drop()  # (any more: the sweep is stopping already, its results still to be written)
        finally:
            workers.pool.shutdown(wait=not interrupted or not remaining, cancel_futures=True)
        if not_started:
            echo(f"{not_started} queued run(s) not started")
        started |= workers.started_names()
        workers.started.close()
        return [trial for future, trial in futures.items() if future in lost], started, interrupted


def make_executor(name: str, *, jobs: int | None = None, scheduler: str | None = None, should_stop=None):
    """The executor called `name` ("process" or "dask") running `jobs` trials at a time (None:
    one per CPU; 1 to `MAX_JOBS`); `should_stop` is called while trials run and raises
    KeyboardInterrupt to stop them."""
    # (-1: a Dask cluster of no workers waited for ever)
    jobs = checked_number(jobs, "jobs", 1, MAX_JOBS, integer=True, optional="one per CPU")
    if name == "process":
        if scheduler is not None:
            raise InvalidValueError("--scheduler: only with --executor dask")
        return ProcessExecutor(jobs, should_stop)
    if name == "dask":
        from delgrad_core.training._dask_executor import DaskExecutor

        return DaskExecutor(scheduler=scheduler, jobs=jobs, should_stop=should_stop)
    raise InvalidValueError(f"executor: unknown {name!r}; choose one of {', '.join(EXECUTORS)}")
