"""Executors that run a sweep's trials: a local process pool (default) or Dask (optional extra).

Both take the same trials and report the same way: a line per finished, failed or stopped
trial through `echo`, and (failure messages, interrupted) at the end.  A failed trial never
stops the others.
"""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, wait
from concurrent.futures.process import BrokenProcessPool

from delgrad_core._cpus import available_cpus
from delgrad_core._errors import DelgradError, InvalidValueError
from delgrad_core.training._run import TrainingStopped
from delgrad_core.training._trials import Trial, train_trial
from delgrad_core.training._workers import stop_requested, worker_pool

__all__ = ["ProcessExecutor", "make_executor", "report"]

EXECUTORS = ("process", "dask")


def report(trial: Trial, outcome, failed: list[str], echo) -> None:
    """Echo one trial's outcome (metrics, or the exception it raised); record failures."""
    if isinstance(outcome, TrainingStopped):
        echo(f"{trial.name}: {outcome.what}")
    elif isinstance(outcome, BaseException):
        message = str(outcome) if isinstance(outcome, DelgradError) else f"{type(outcome).__name__}: {outcome}"
        failed.append(f"{trial.name}: {message}")
        echo(f"FAILED {failed[-1]}")
    else:
        echo(f"{trial.name}: test accuracy {100 * outcome['test_accuracy']:.2f} %")


def _train_in_worker(settings: dict, folder: str, threads: int) -> dict:
    if stop_requested():  # (a trial the pool had queued in the worker before Ctrl-C)
        raise TrainingStopped(folder, "not started, the sweep was interrupted")
    return train_trial(settings, folder, should_stop=stop_requested, threads=threads)


class ProcessExecutor:
    """Trials in a local pool of `jobs` worker processes that die with the sweep; each trial
    gets the CPUs left per worker as kernel threads (`threads_per_trial`: 2 for ``--jobs 1``, or
    for ``--jobs 2`` with one trial left, on two CPUs).  Ctrl-C (or SIGTERM) lets no queued trial
    start and stops running ones at their next epoch boundary."""

    def __init__(self, jobs: int | None = None):
        self.jobs = jobs or available_cpus()

    def threads_per_trial(self, n_trials: int) -> int:
        """Kernel threads of each trial when `n_trials` are to run: the CPUs per worker of the
        pool, which has no more workers than trials."""
        return max(1, available_cpus() // min(self.jobs, n_trials))

    def run(self, trials: list[Trial], echo) -> tuple[list[str], bool]:
        from tqdm.auto import tqdm

        failed: list[str] = []
        pool, stop_event = worker_pool(min(self.jobs, len(trials)))  # (no idle workers)
        threads = self.threads_per_trial(len(trials))
        futures = {pool.submit(_train_in_worker, trial.settings, str(trial.folder), threads): trial
                   for trial in trials}
        remaining, interrupted = set(futures), False
        bar = tqdm(total=len(futures), desc="sweep", unit="run")
        try:
            while remaining:
                try:
                    done, remaining = wait(remaining, return_when=FIRST_COMPLETED)
                    for future in done:
                        bar.update(1)
                        if future.cancelled():
                            continue
                        error = future.exception()
                        if isinstance(error, KeyboardInterrupt):  # a trial was interrupted: so is the sweep
                            raise error
                        if interrupted and isinstance(error, BrokenProcessPool):  # (e.g. SIGTERM to the group)
                            echo(f"{futures[future].name}: stopped with its worker; it resumes from its last "
                                 "finished epoch")
                            continue
                        report(futures[future], error if error is not None else future.result(), failed, echo)
                except KeyboardInterrupt:
                    if interrupted:  # a second Ctrl-C: stop waiting for the running trials
                        raise
                    interrupted = True
                    stop_event.set()  # (queued trials then end at once, unstarted: no future is cancelled, as
                    # a pool broken by killed workers cannot finish cancelled futures; CPython 3.11 hangs then)
                    # (not split into queued and running: the pool counts a call it has handed to its queue as
                    # running before a worker takes it)
                    echo(f"\ninterrupted: of {len(remaining)} unfinished run(s), queued ones will not start and "
                         "running ones stop at their next epoch boundary (Ctrl-C again to abandon them)")
        finally:
            bar.close()
            pool.shutdown(wait=not interrupted or not remaining, cancel_futures=True)
        return failed, interrupted


def make_executor(name: str, *, jobs: int | None = None, scheduler: str | None = None):
    """The executor called `name` ("process" or "dask")."""
    if name == "process":
        if scheduler is not None:
            raise InvalidValueError("--scheduler: only with --executor dask")
        return ProcessExecutor(jobs)
    if name == "dask":
        from delgrad_core.training._dask_executor import DaskExecutor

        return DaskExecutor(scheduler=scheduler, jobs=jobs)
    raise InvalidValueError(f"executor: unknown {name!r}; choose one of {', '.join(EXECUTORS)}")
