"""Sweeps on Dask and on SLURM array tasks: the same trials, the same results, nothing redone,
a worker killed mid-trial costs nothing but time."""

import csv
import json
import multiprocessing
import os
import pickle
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from delgrad_core.testing import cli_runner
from delgrad_core.cli import main
from delgrad_core.training._executors import STOP_CHECK_S
from delgrad_core.training._sweep import run_sweep, sweep_job_script
from delgrad_core.training._trials import plan_trials

GRID = dict(hidden_sizes=[4], delay_kinds=["none", "axonal"], n_seeds=2)


def _accuracies(out_dir):
    with open(out_dir / "sweep.csv") as handle:
        return {(row["delays"], row["seed"], row["trial"]): row["test_accuracy"] for row in csv.DictReader(handle)}


def test_trial_ids_follow_the_settings(tmp_path):
    first = plan_trials({"epochs": 3}, [4, 5], ["none"], 2, tmp_path)
    again = plan_trials({"epochs": 3}, [4, 5], ["none"], 2, tmp_path)
    other = plan_trials({"epochs": 4}, [4, 5], ["none"], 2, tmp_path)
    assert [t.folder for t in first] == [t.folder for t in again]
    assert len({t.id for t in first}) == 4 and not {t.id for t in first} & {t.id for t in other}
    assert first[0].name.startswith("none-h4-s0-") and first[0].name.endswith(first[0].id)


def test_trials_get_the_cpus_left_per_worker_as_kernel_threads(monkeypatch, tmp_path):
    from delgrad_core.training._executors import ProcessExecutor
    from delgrad_core.training._trials import train_trial

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.delenv("DELGRAD_NUM_THREADS", raising=False)
    assert (ProcessExecutor(jobs=1).threads_per_trial(9), ProcessExecutor(jobs=2).threads_per_trial(9)) == (4, 2)
    assert ProcessExecutor(jobs=3).threads_per_trial(9) == 1 and ProcessExecutor(jobs=8).threads_per_trial(9) == 1
    assert (ProcessExecutor().jobs, ProcessExecutor().threads_per_trial(9)) == (4, 1)
    assert ProcessExecutor(jobs=4).threads_per_trial(1) == 4 and ProcessExecutor(jobs=4).threads_per_trial(2) == 2
    monkeypatch.setenv("DELGRAD_NUM_THREADS", "3")  # (the user's cap, README)
    assert ProcessExecutor(jobs=1).threads_per_trial(9) == 3 and ProcessExecutor(jobs=2).threads_per_trial(9) == 2
    monkeypatch.setenv("DELGRAD_NUM_THREADS", "1")
    metrics = train_trial({"epochs": 1, "hidden": 4, "delays": "none", "seed": 0}, str(tmp_path / "t"), threads=3)
    assert os.environ["DELGRAD_NUM_THREADS"] == "3" and metrics["epochs_completed"] == 1


def test_a_worker_trains_its_trial_on_the_threads_it_was_given(monkeypatch, tmp_path):
    """(`_train_in_worker`: the kernel threads the pool computed per worker reach `train_trial`)"""
    from delgrad_core.training import _executors

    calls = []
    monkeypatch.setattr(_executors, "stop_requested", lambda: False)
    monkeypatch.setattr(_executors, "announce_start", lambda folder: None)
    monkeypatch.setattr(_executors, "train_trial", lambda settings, folder, **options: calls.append(options) or {})
    _executors._train_in_worker({"epochs": 1}, str(tmp_path / "t"), 3)
    assert [call["threads"] for call in calls] == [3]


def _pools_of_threads(monkeypatch, train):
    """Make ProcessExecutor's pools of one thread each in this process, which calls `train(settings,
    folder, threads)` per trial as a worker calls `_train_in_worker`; returns what they record:
    `sizes` asked for, folders `announced` as started, each pool's `stop_event`.  As in a pool of
    processes, a trial that raises BrokenProcessPool breaks its pool: those after it in the pool end
    so too, unstarted."""
    from concurrent.futures import ThreadPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from delgrad_core.training import _executors

    record = SimpleNamespace(sizes=[], announced=set(), stop_events=[])

    def worker_pool(size):
        record.sizes.append(size)
        record.stop_events.append(threading.Event())
        broken = []

        def run(settings, folder, threads):
            if broken:
                raise BrokenProcessPool("a worker ended abruptly")
            record.announced.add(folder)
            try:
                return train(settings, folder, threads)
            except BrokenProcessPool:
                broken.append(folder)
                raise

        def started_names():
            names = set(record.announced)
            record.announced.clear()
            return names

        pool = ThreadPoolExecutor(1)
        return SimpleNamespace(pool=SimpleNamespace(submit=lambda function, *args: pool.submit(run, *args),
                                                    shutdown=pool.shutdown),
                               started_names=started_names, started=SimpleNamespace(close=lambda: None),
                               stop_event=record.stop_events[-1])

    monkeypatch.setattr(_executors, "worker_pool", worker_pool)
    return record


def _lost_ctrl_c():
    """A sweep's stop check after a stop signal whose KeyboardInterrupt was lost: it raises one
    each time the sweep asks."""
    raise KeyboardInterrupt


def _trials(tmp_path, n):
    return [SimpleNamespace(name=f"t{k}", id=f"id{k}", settings={}, folder=tmp_path / f"t{k}", finished=True)
            for k in range(n)]


@pytest.mark.parametrize(("jobs", "n_trials", "workers", "threads"), [(4, 2, 2, 2), (4, 9, 4, 1), (1, 3, 1, 4)])
def test_a_pool_has_no_more_workers_than_trials_and_shares_the_cpus_among_them(monkeypatch, tmp_path, jobs, n_trials,
                                                                               workers, threads):
    """(`_run_pool` on 4 CPUs: min(jobs, trials) workers, 4 // workers kernel threads per trial; a
    pool of one, as for trials that must run alone, gives its trial all 4)"""
    from delgrad_core.training import _executors

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    asked = []
    pools = _pools_of_threads(monkeypatch, lambda settings, folder, threads: asked.append(threads) or
                              {"test_accuracy": 1.0})
    trials = _trials(tmp_path, n_trials)
    executor, lines = _executors.ProcessExecutor(jobs=2 * jobs), []
    lost, _, interrupted = executor._run_pool(trials, jobs, lines.append, SimpleNamespace(update=lambda n: None),
                                              _executors.Unfinished())
    assert (pools.sizes, asked, lost, interrupted) == ([workers], [threads] * n_trials, [], False)
    assert sorted(lines) == sorted(f"t{k}: test accuracy 100.00 %" for k in range(n_trials))


def test_a_trial_whose_worker_dies_each_time_fails_and_the_runs_queued_behind_it_finish(monkeypatch, tmp_path,
                                                                                       capsys):
    """(`ProcessExecutor.run`: a broken pool charges the loss to the trial that was running, not to
    those queued behind it; each break is one line counting every unfinished run; the third fails
    that trial, which the bar counts as ended)"""
    from concurrent.futures.process import BrokenProcessPool

    from delgrad_core.training import _executors

    def train(settings, folder, threads):
        if folder.endswith("t0"):
            raise BrokenProcessPool("a worker ended abruptly")
        return {"test_accuracy": 1.0}

    pools, lines = _pools_of_threads(monkeypatch, train), []
    unfinished, interrupted = _executors.ProcessExecutor(jobs=1).run(_trials(tmp_path, 3), lines.append)
    broke = ("a worker process ended abruptly (killed, e.g. for lack of memory?); {} unfinished run(s) start again in "
             "new workers and resume from their last finished epoch")
    failed = ("t0: its worker process ended abruptly 3 times while it ran (killed, e.g. for lack of memory?); it "
              "resumes from its last finished epoch when the sweep runs again")
    assert lines[:4] == [broke.format(3), broke.format(3), f"FAILED {failed}", broke.format(2)]
    assert sorted(lines[4:]) == ["t1: test accuracy 100.00 %", "t2: test accuracy 100.00 %"]
    assert (unfinished.failed, unfinished.in_use, interrupted, pools.sizes) == ([failed], {}, False, [1, 1, 1, 1])
    assert re.findall(r"sweep:.*?\| (\d+)/3 \[", capsys.readouterr().err)[-1] == "3"


def test_a_stop_signal_while_trials_remain_lets_no_queued_trial_start(monkeypatch, tmp_path):
    """(a Ctrl-C that came while the sweep waited is handled at its next look: the queued trial
    does not start, and the sweep says so)"""
    from delgrad_core.training import _executors
    from delgrad_core.training._run import TrainingStopped

    def train(settings, folder, threads):
        if not folder.endswith("t0") and pools.stop_events[-1].wait(timeout=10):  # (as a queued trial looks)
            raise TrainingStopped(folder, "not started, the sweep was interrupted")
        return {"test_accuracy": 1.0}

    def ctrl_c_once_t0_finished():
        if lines and not sent:
            sent.append(os.kill(os.getpid(), signal.SIGINT))

    pools, lines, sent = _pools_of_threads(monkeypatch, train), [], []
    unfinished, interrupted = _executors.ProcessExecutor(jobs=1, should_stop=ctrl_c_once_t0_finished).run(
        _trials(tmp_path, 2), lines.append)
    assert lines == ["t0: test accuracy 100.00 %",
                     "\ninterrupted: of 1 unfinished run(s), queued ones will not start and running ones stop at their "
                     "next epoch boundary (Ctrl-C again to end them now; they resume from their last finished epoch)",
                     "1 queued run(s) not started"]
    assert interrupted and not unfinished.failed


def test_a_stop_signal_as_the_last_trial_ends_still_interrupts_the_sweep(monkeypatch, tmp_path):
    """(the sweep, which then says how to resume, is not taken as complete)"""
    from delgrad_core.training import _executors

    def ctrl_c_once_t0_finished():
        if lines and not sent:
            sent.append(os.kill(os.getpid(), signal.SIGINT))

    _pools_of_threads(monkeypatch, lambda settings, folder, threads: {"test_accuracy": 1.0})
    lines, sent = [], []
    unfinished, interrupted = _executors.ProcessExecutor(jobs=1, should_stop=ctrl_c_once_t0_finished).run(
        _trials(tmp_path, 1), lines.append)
    assert (lines, unfinished.failed, interrupted) == (["t0: test accuracy 100.00 %"], [], True)


def test_a_pool_broken_after_a_stop_signal_stops_its_trials_instead_of_starting_them_again(monkeypatch, tmp_path):
    """(as SIGTERM to the sweep's process group kills its workers too: their trials are stopped,
    neither lost to a dead worker nor failed)"""
    from concurrent.futures.process import BrokenProcessPool

    from delgrad_core.training import _executors

    def train(settings, folder, threads):
        if folder.endswith("t0"):
            return {"test_accuracy": 1.0}
        signalled.wait(timeout=10)
        raise BrokenProcessPool("a worker ended abruptly")

    def signal_once_t0_finished():
        if lines and not signalled.is_set():
            os.kill(os.getpid(), signal.SIGINT)
            signalled.set()

    _pools_of_threads(monkeypatch, train)
    lines, signalled = [], threading.Event()
    unfinished, interrupted = _executors.ProcessExecutor(jobs=1, should_stop=signal_once_t0_finished).run(
        _trials(tmp_path, 3), lines.append)
    assert "t1: stopped with its worker; it resumes from its last finished epoch" in lines, lines
    # (t2 was queued, never started: not said to resume from an epoch it never had)
    assert "1 queued run(s) not started" in lines and not [line for line in lines if line.startswith("t2")], lines
    assert not [line for line in lines if "ended abruptly" in line or line.startswith("FAILED")], lines
    assert interrupted and not unfinished.failed


def test_a_pool_whose_manager_thread_died_ends_the_sweep_instead_of_waiting_for_ever(monkeypatch, tmp_path):
    """(under `ulimit -v` the pool's manager thread died of "can't start new thread" without
    breaking the pool: no trial ever ended, and the sweep waited until killed)"""
    import concurrent.futures.process

    from delgrad_core import DelgradError
    from delgrad_core.training._executors import ProcessExecutor

    def dies(self):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(concurrent.futures.process._ExecutorManagerThread, "add_call_item_to_queue", dies)
    monkeypatch.setattr(threading, "excepthook", lambda args: None)  # (the thread's traceback: expected here)
    outcome = []

    def sweep():
        try:
            ProcessExecutor(jobs=1).run(plan_trials({"epochs": 1}, [3], ["none"], 2, tmp_path), print)
        except DelgradError as exc:
            outcome.append(exc)

    runner = threading.Thread(target=sweep, daemon=True)
    runner.start()
    runner.join(timeout=60)
    assert not runner.is_alive(), "the sweep waited for ever"
    assert "the sweep's pool of worker processes stopped working (its manager thread ended" in str(outcome[0])


def test_a_sweep_interrupted_after_a_worker_died_starts_no_new_workers_and_says_none_start(monkeypatch, tmp_path):
    from concurrent.futures.process import BrokenProcessPool

    from delgrad_core.training import _executors

    def train(settings, folder, threads):
        raise BrokenProcessPool("a worker ended abruptly")

    pools, lines = _pools_of_threads(monkeypatch, train), []
    unfinished, interrupted = _executors.ProcessExecutor(jobs=1, should_stop=_lost_ctrl_c).run(_trials(tmp_path, 1),
                                                                                                 lines.append)
    assert lines == ["\ninterrupted: no more runs start"]  # (not "of 0 unfinished run(s), ... Ctrl-C again")
    assert (pools.sizes, unfinished.failed, interrupted) == ([1], [], True)


def test_a_second_stop_signal_ends_the_running_trial_at_once_killing_its_worker(tmp_path):
    """(the first lets a running trial end its epoch, seconds long here; the second ends it now)"""
    from delgrad_core.training._executors import ProcessExecutor

    trials = plan_trials({"epochs": 2, "batch_size": 1}, [40], ["synaptic"], 1, tmp_path)
    workers, lines = [], []

    def ctrl_c_twice_once_it_runs():
        if (trials[0].folder / ".lock").exists() and not workers:
            workers.extend(multiprocessing.active_children())  # (the pool's worker: the sweep runs in this process)
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)

    unfinished, interrupted = ProcessExecutor(1, should_stop=ctrl_c_twice_once_it_runs).run(trials, lines.append)
    for worker in workers:
        worker.join(timeout=60)
    assert [worker.exitcode for worker in workers] == [-signal.SIGKILL]
    assert lines[-1] == ("\ninterrupted again: the running runs end now; they resume from their last finished epoch")
    assert interrupted and not unfinished.failed and not trials[0].finished


def test_a_trial_interrupted_in_its_worker_interrupts_the_sweep_and_fails_nothing(monkeypatch, tmp_path):
    from delgrad_core.training import _executors

    def train(settings, folder, threads):
        raise KeyboardInterrupt

    _pools_of_threads(monkeypatch, train)
    lines = []
    unfinished, interrupted = _executors.ProcessExecutor(jobs=1).run(_trials(tmp_path, 1), lines.append)
    assert interrupted and not unfinished.failed and len(lines) == 1 and lines[0].startswith("\ninterrupted: "), lines


def test_a_trial_stopped_at_its_epoch_boundary_has_its_line_and_is_not_counted_as_ended(monkeypatch, tmp_path,
                                                                                        capsys):
    """(unlike a queued trial that did not start, which is only counted; the bar counts the trials
    that ended)"""
    from delgrad_core.training import _executors
    from delgrad_core.training._run import TrainingStopped

    def train(settings, folder, threads):
        if pools.stop_events[-1].wait(timeout=10):  # (as a running trial looks at its epoch boundaries)
            raise TrainingStopped(folder, "stopped after epoch 3 of 5; the run resumes from there")
        return {"test_accuracy": 1.0}

    pools, lines = _pools_of_threads(monkeypatch, train), []
    unfinished, interrupted = _executors.ProcessExecutor(jobs=1, should_stop=_lost_ctrl_c).run(_trials(tmp_path, 1),
                                                                                                 lines.append)
    assert len(lines) == 2 and lines[0].startswith("\ninterrupted: of 1 unfinished run(s)"), lines
    assert lines[1] == "t0: stopped after epoch 3 of 5; the run resumes from there"
    assert interrupted and not unfinished.failed
    assert re.findall(r"sweep:.*?\| (\d+)/1 \[", capsys.readouterr().err)[-1] == "0"


def test_one_trial_at_a_time_as_slurm_array_tasks_do(tmp_path):
    runner = cli_runner()
    args = ["sweep", "--hidden", "4", "--delays", "none,axonal", "--seeds", "1", "--epochs", "2",
            "--out", str(tmp_path)]
    for index in (0, 1):
        result = runner.invoke(main, [*args, "--trial", str(index)])
        assert result.exit_code == 0, result.output
    assert not (tmp_path / "sweep.csv").exists()
    collected = runner.invoke(main, [*args, "--jobs", "1"])
    assert collected.exit_code == 0 and "2 of 2 runs already finished" in collected.output
    bad = runner.invoke(main, [*args, "--trial", "2"])
    assert bad.exit_code == 2 and "--trial: expected an index in [0, 1]" in bad.output


@pytest.mark.parametrize("elsewhere", [["--executor", "dask"], ["--scheduler", "tcp://127.0.0.1:1"]])
def test_a_trial_is_not_sent_to_dask(tmp_path, elsewhere):
    """(--trial ran it in this process and ignored --executor dask and --scheduler)"""
    result = cli_runner().invoke(main, ["sweep", "--hidden", "3", "--delays", "none", "--seeds", "1", "--epochs", "1",
                                        *elsewhere, "--trial", "0", "--out", str(tmp_path / "s")])
    assert result.exit_code == 2 and "--trial runs its trial in this process: not with --executor dask or " \
                                      "--scheduler" in result.output, result.output
    assert not (tmp_path / "s").exists()


def test_a_trial_and_a_slurm_script_are_one_or_the_other(tmp_path):
    """(the script was written, status 0, and --trial ignored)"""
    result = cli_runner().invoke(main, ["sweep", "--hidden", "3", "--delays", "none", "--seeds", "1", "--epochs", "1",
                                        "--trial", "0", "--slurm-script", str(tmp_path / "q.sh"), "--out",
                                        str(tmp_path / "s")])
    assert result.exit_code == 2 and "--trial runs one trial now and --slurm-script writes a job script of all; " \
                                      "give one" in result.output, result.output
    assert not (tmp_path / "q.sh").exists() and not (tmp_path / "s").exists()


@pytest.mark.parametrize(("extra", "message"), [
    (["--trial", "0", "--jobs", "7"], "--trial runs its one trial in this process: leave --jobs out"),
    (["--slurm-script", "q.sh", "--jobs", "3"], "--slurm-script writes a job script whose array tasks each run one "
                                                "trial (--trial): leave --executor dask, --scheduler and --jobs out"),
    (["--slurm-script", "q.sh", "--executor", "dask"], "leave --executor dask, --scheduler and --jobs out"),
    (["--slurm-script", "q.sh", "--executor", "dask", "--scheduler", "tcp://10.0.0.5:8786"], "leave --executor dask"),
], ids=["trial and jobs", "script and jobs", "script and dask", "script and scheduler"])
def test_options_a_trial_or_a_slurm_script_would_ignore_are_usage_errors(tmp_path, monkeypatch, extra, message):
    """(ignored without a word: the script's tasks ran one trial each, without Dask, a scheduler or jobs)"""
    monkeypatch.chdir(tmp_path)
    result = cli_runner().invoke(main, ["sweep", "--hidden", "3", "--delays", "none", "--seeds", "1", "--epochs", "1",
                                        *extra, "--out", "s"])
    assert result.exit_code == 2 and result.output.startswith("Usage: ") and message in result.output, result.output
    assert list(tmp_path.iterdir()) == []


def test_sweep_csv_names_the_backend_and_dataset_options_of_each_run(tmp_path):
    args = ["sweep", "--hidden", "3", "--delays", "none", "--seeds", "1", "--epochs", "1", "--jobs", "1",
            "--backend-option", "n_threads=1", "--out", str(tmp_path)]
    result = cli_runner().invoke(main, args)
    assert result.exit_code == 0, result.output
    with open(tmp_path / "sweep.csv") as handle:
        [row] = list(csv.DictReader(handle))
    assert (row["backend"], row["dataset"]) == ("reference", "yin_yang")
    assert json.loads(row["backend_options"]) == {"n_threads": 1} and json.loads(row["dataset_options"]) == {}


def test_the_slurm_job_script(tmp_path, monkeypatch):
    script = sweep_job_script(["delgrad", "sweep", "--hidden", "5,30", "--delays", "none,synaptic", "--seeds", "3",
                               "--epochs", "300", "--out", "runs/my sweep"], 12, "/home/me/it's here", partition="cpu")
    assert script == (
        "#!/bin/bash\n"
        "#SBATCH --job-name=delgrad-sweep\n"
        "#SBATCH --array=0-11\n"
        "#SBATCH --cpus-per-task=1\n"
        "#SBATCH --mem=2G\n"
        "#SBATCH --time=02:00:00\n"
        "#SBATCH --partition=cpu\n"
        "#SBATCH --output=delgrad-sweep-%A_%a.log\n"
        "# One trial per array task; a task that is re-queued resumes from its checkpoint.\n"
        "# After all tasks: run the same command without --trial to collect sweep.csv (nothing is recomputed).\n"
        "set -euo pipefail\n"
        "cd '/home/me/it'\"'\"'s here'\n"
        "export DELGRAD_NUM_THREADS=1\n"
        "delgrad sweep --hidden 5,30 --delays none,synaptic --seeds 3 --epochs 300 --out 'runs/my sweep' "
        "--trial \"$SLURM_ARRAY_TASK_ID\"\n"
    )
    result = cli_runner().invoke(main, ["sweep", "--hidden", "5", "--delays", "none", "--seeds", "2",
                                        "--backend-option", "n_threads=1", "--dataset-option", "pairs=true",
                                        "--slurm-script", str(tmp_path / "job.sh")])
    assert result.exit_code == 2 and "dataset_options: dataset 'yin_yang': unknown option(s) pairs" in result.output
    assert not (tmp_path / "job.sh").exists()
    (tmp_path / "images.toml").write_text('dataset = "fashion_mnist"\n')
    (tmp_path / "no files").mkdir()
    args = ["sweep", "--hidden", "5", "--delays", "none", "--seeds", "2", "--config", str(tmp_path / "images.toml"),
            "--backend-option", "n_threads=1", "--dataset-option", "size=14"]
    # the dataset's files need not be on the machine that writes the script (but on the one that sweeps)
    monkeypatch.setenv("DELGRAD_FASHION_MNIST_DIR", str(tmp_path / "no files"))
    runner = cli_runner()
    result = runner.invoke(main, [*args, "--slurm-script", str(tmp_path / "job.sh")])
    assert result.exit_code == 0, result.output
    assert "note: the sweep's networks could not be checked here (Fashion-MNIST: missing train-images" in result.output
    swept = runner.invoke(main, [*args, "--out", str(tmp_path / "swept")])
    assert swept.exit_code == 1 and "Fashion-MNIST: missing train-images" in swept.output, swept.output
    assert not (tmp_path / "swept").exists()
    text = (tmp_path / "job.sh").read_text()
    assert "#SBATCH --array=0-1\n" in text and "--backend-option n_threads=1 --dataset-option size=14 --trial" in text
    result = runner.invoke(main, ["sweep", "--hidden", "5", "--delays", "none", "--seeds", "1", "--dataset",
                                  "fashion_mnist", "--dataset-option", "size=14", "--slurm-script",
                                  str(tmp_path / "by_name.sh")])  # (the dataset by name, without a config file)
    assert result.exit_code == 0, result.output
    assert "--dataset fashion_mnist --dataset-option size=14 --trial" in (tmp_path / "by_name.sh").read_text()


def test_the_slurm_job_script_runs_where_it_was_written(tmp_path, monkeypatch):
    """(its relative --out and --config led elsewhere when submitted from another folder)"""
    here = tmp_path / "it's $here"
    here.mkdir()
    (here / "settings.toml").write_text("epochs = 1\n")
    monkeypatch.chdir(here)
    result = cli_runner().invoke(main, ["sweep", "--hidden", "3", "--delays", "none", "--seeds", "1", "--config",
                                        "settings.toml", "--out", "s", "--slurm-script", "job.sh"])
    assert result.exit_code == 0, result.output
    (tmp_path / "bin").mkdir()
    fake = tmp_path / "bin" / "delgrad"  # (says where it runs instead of sweeping)
    fake.write_text('#!/bin/bash\npwd\necho "$@"\n')
    fake.chmod(0o755)
    task = subprocess.run(["bash", str(here / "job.sh")], cwd=tmp_path, capture_output=True, text=True, check=True,
                          env={**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}",
                               "SLURM_ARRAY_TASK_ID": "0"})
    assert task.stdout.splitlines()[0] == str(here)
    assert task.stdout.splitlines()[1].endswith("--out s --config settings.toml --trial 0")


@pytest.mark.parametrize("finishes", [True, False], ids=["finished-meanwhile", "still-running"])
def test_a_trial_another_process_trains_is_not_called_failed(tmp_path, finishes):
    """(a trial a SLURM task was training was reported failed, although the table included it)"""
    import shutil

    from delgrad_core.training._run_folder import folder_lock
    from delgrad_core.training._sweep import SweepError, run_trial

    grid = ({"epochs": 1}, [3], ["none"], 2, tmp_path / "s")
    run_trial(*grid, 0, echo=lambda line: None)
    busy = plan_trials(*grid)[0].folder
    shutil.move(busy, tmp_path / "done")  # (what the other process will have written)
    lines = []

    def echo(line):  # (the other process finishes while this sweep tries the trial)
        lines.append(line)
        if finishes and line.startswith(f"IN USE {busy.name}: "):
            for path in (tmp_path / "done").iterdir():
                shutil.copy(path, busy)

    with folder_lock(busy):  # (the other process, e.g. a SLURM task)
        if finishes:
            table = run_sweep(*grid, jobs=1, echo=echo)
        else:
            with pytest.raises(SweepError) as raised:
                run_sweep(*grid, jobs=1, echo=echo)
            table = raised.value.table
            assert str(raised.value).startswith(
                f"1 run(s) in use by another process (e.g. a SLURM task); run the sweep again when it has finished to "
                f"include them:\n{busy.name}: {busy}: in use by process {os.getpid()}") and "failed" not in \
                str(raised.value)
    assert f"IN USE {busy.name}: {busy}: in use by process {os.getpid()}; wait for it to finish or choose another " \
           "folder" in lines and not any(line.startswith("FAILED") for line in lines)
    assert (f"note: {busy.name} was in use by another process, which has finished it since; its result is included"
            in lines) is finishes
    assert table.splitlines()[1].split()[3] == ("2" if finishes else "1/2")  # (seeds in the table, of those planned)


def _kill_a_worker_at_the_first_checkpoint(out_dir, killed):
    deadline = time.monotonic() + 120
    while not list(out_dir.glob("runs/*/checkpoint.npz")):
        if time.monotonic() > deadline:
            return
        time.sleep(0.02)
    workers = multiprocessing.active_children()  # (the pool's workers: the sweep runs in this process)
    if workers:
        os.kill(workers[0].pid, signal.SIGKILL)
        killed.append(workers[0].pid)


def test_a_worker_killed_in_the_process_pool_costs_nothing_but_time(tmp_path):
    """(the broken pool failed every unfinished trial with BrokenProcessPool)"""
    settings = {"epochs": 8, "batch_size": 250}
    run_sweep(settings, **GRID, out_dir=tmp_path / "straight", jobs=2, echo=lambda line: None)
    killed, lines = [], []
    thread = threading.Thread(target=_kill_a_worker_at_the_first_checkpoint, args=(tmp_path / "killed", killed))
    thread.start()
    run_sweep(settings, **GRID, out_dir=tmp_path / "killed", jobs=2, echo=lines.append)
    thread.join()
    assert killed, "no worker was found running after the first checkpoint"
    assert any(line.startswith("a worker process ended abruptly (killed, e.g. for lack of memory?);") and
               "start again in new workers and resume from their last finished epoch" in line for line in lines), lines
    assert _accuracies(tmp_path / "killed") == _accuracies(tmp_path / "straight")


@pytest.mark.skipif(multiprocessing.get_start_method() != "fork", reason="the patch reaches workers by fork")
def test_a_trial_that_kills_its_worker_every_time_fails_and_the_others_finish(tmp_path, monkeypatch):
    from delgrad_core.training import _executors
    from delgrad_core.training._sweep import SweepError

    original = _executors.train_trial

    def train_or_die(settings, folder, **kwargs):
        if settings["seed"] == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return original(settings, folder, **kwargs)

    monkeypatch.setattr(_executors, "train_trial", train_or_die)
    lines = []
    with pytest.raises(SweepError) as raised:
        run_sweep({"epochs": 1}, [3], ["none"], 3, tmp_path, jobs=2, echo=lines.append)
    failed = [line for line in lines if line.startswith("FAILED")]
    assert len(failed) == 1 and re.fullmatch(
        r"FAILED none-h3-s1-[0-9a-f]+: its worker process ended abruptly 3 times while it ran \(killed, e\.g\. for "
        r"lack of memory\?\); it resumes from its last finished epoch when the sweep runs again", failed[0]), lines
    assert "1 run(s) failed" in str(raised.value)
    assert sorted(row[1] for row in _accuracies(tmp_path)) == ["0", "2"]


@pytest.mark.skipif(multiprocessing.get_start_method() != "fork", reason="the patch reaches workers by fork")
def test_workers_that_die_before_starting_any_trial_end_the_sweep(tmp_path, monkeypatch):
    """A worker that dies before it starts a trial (none announced) charges the loss to every trial
    of its pool: after three such pools each has failed, and the sweep ends (it would start new
    pools for ever if such a loss were charged to no trial)."""
    from delgrad_core.training import _executors
    from delgrad_core.training._sweep import SweepError

    monkeypatch.setattr(_executors, "announce_start", lambda folder: os.kill(os.getpid(), signal.SIGKILL))
    lines = []

    def echo(line):  # (ends the test where the sweep would go on for ever)
        lines.append(line)
        assert sum(line.startswith("a worker process ended abruptly") for line in lines) <= 2, lines

    with pytest.raises(SweepError, match="2 run\\(s\\) failed"):
        run_sweep({"epochs": 1}, [3], ["none"], 2, tmp_path, jobs=2, echo=echo)
    failed = [line for line in lines if line.startswith("FAILED")]
    assert len(failed) == 2 and all("its worker process ended abruptly 3 times while it ran" in line
                                    for line in failed), lines


def test_a_worker_that_cannot_be_started_ends_the_sweep_and_its_started_workers(tmp_path, monkeypatch):
    """(no file descriptor left for the second worker: the sweep printed its error and then waited
    for ever, joining the first worker at exit, which waited for work)"""
    from concurrent.futures import ProcessPoolExecutor

    original, spawned = ProcessPoolExecutor._spawn_process, []

    def spawn_one(self):
        if spawned:
            raise OSError(24, "Too many open files")
        spawned.append(True)
        original(self)

    monkeypatch.setattr(ProcessPoolExecutor, "_spawn_process", spawn_one)
    bystander = multiprocessing.get_context("fork").Process(target=time.sleep, args=(30,))  # (not the pool's)
    bystander.start()
    try:
        with pytest.raises(OSError, match="Too many open files"):
            run_sweep({"epochs": 1}, [3], ["none"], 2, tmp_path, jobs=2, echo=lambda line: None)
        workers = [child for child in multiprocessing.active_children() if child is not bystander]
        for child in workers:
            child.join(timeout=10)
        assert spawned and not any(child.is_alive() for child in workers) and bystander.is_alive()
    finally:
        bystander.kill()
        bystander.join()


@pytest.mark.parametrize("jobs", [-1, 0, 1.5, "2", True, 257])
def test_a_job_count_that_is_no_count_is_refused_naming_it(tmp_path, jobs):
    """(from Python: -1 with Dask started a cluster of no workers and waited for ever; with the
    process pool, -1, "2" and 1.5 ended in numpy or pool tracebacks, and 0 meant one per CPU)"""
    from delgrad_core import InvalidValueError
    from delgrad_core.training._executors import make_executor
    from delgrad_core.training._sweep import run_sweep

    for executor in ("process", "dask"):
        with pytest.raises(InvalidValueError, match=rf"^jobs: expected None \(one per CPU\) or an integer from 1 "
                                                       rf"to 256, got {re.escape(repr(jobs))}$"):
            make_executor(executor, jobs=jobs)
    with pytest.raises(InvalidValueError, match="^jobs: expected None"):
        run_sweep({"epochs": 1}, [2], ["none"], 1, tmp_path / "sweep", jobs=jobs)
    assert not (tmp_path / "sweep").exists()


try:
    import distributed
except ImportError:  # (the tests that need it are skipped; the others run)
    distributed = None
needs_dask = pytest.mark.skipif(distributed is None, reason="Dask's distributed is not installed "
                                                             "(pip install 'delgrad[dask]')")


@pytest.mark.parametrize(("name", "kind"), [("process", "ProcessExecutor"),
                                            pytest.param("dask", "DaskExecutor", marks=needs_dask)])
def test_an_executor_is_made_by_name_with_the_callers_stop_check(name, kind):
    """(`make_executor`: the stop check reaches the executor that waits for the trials)"""
    from delgrad_core.training._executors import make_executor

    def should_stop():
        pass

    executor = make_executor(name, jobs=2, should_stop=should_stop)
    assert (type(executor).__name__, executor.jobs, executor.should_stop) == (kind, 2, should_stop)


def test_a_scheduler_is_only_for_dask_and_an_unknown_executor_is_named():
    from delgrad_core import InvalidValueError
    from delgrad_core.training._executors import make_executor

    with pytest.raises(InvalidValueError, match="^--scheduler: only with --executor dask$"):
        make_executor("process", scheduler="tcp://127.0.0.1:1")
    with pytest.raises(InvalidValueError, match="^executor: unknown 'thread'; choose one of process, dask$"):
        make_executor("thread")


@needs_dask
@pytest.mark.slow
def test_dask_sweep_equals_the_process_pool_and_reruns_nothing(tmp_path):
    lines = []
    run_sweep({"epochs": 2}, **GRID, out_dir=tmp_path / "pool", jobs=2, echo=lines.append)
    run_sweep({"epochs": 2}, **GRID, out_dir=tmp_path / "dask", jobs=2, executor="dask", echo=lines.append)
    assert _accuracies(tmp_path / "pool") == _accuracies(tmp_path / "dask")
    again = []
    run_sweep({"epochs": 2}, **GRID, out_dir=tmp_path / "dask", jobs=2, executor="dask", echo=again.append)
    assert "sweep: 4 of 4 runs already finished, 0 to do" in again


@needs_dask
@pytest.mark.slow
def test_a_worker_killed_mid_trial_costs_nothing_but_time(tmp_path):
    settings = {"epochs": 120, "batch_size": 250}
    run_sweep(settings, **GRID, out_dir=tmp_path / "straight", jobs=2, echo=lambda line: None)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=None)
    client = distributed.Client(cluster)
    outcome, lines = {}, []

    def sweep():
        try:
            run_sweep(settings, **GRID, out_dir=tmp_path / "killed", executor="dask",
                      scheduler=cluster.scheduler_address, echo=lines.append)
        except BaseException as exc:  # reported below
            outcome["error"] = exc

    thread = threading.Thread(target=sweep)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while not list((tmp_path / "killed").glob("runs/*/checkpoint.npz")):
            assert time.monotonic() < deadline, "no trial wrote a checkpoint"
            time.sleep(0.05)
        time.sleep(3 * STOP_CHECK_S)  # (the sweep looks at its workers between its waits)
        killed, held = next((worker, keys) for worker, keys in client.processing().items() if keys)
        os.kill(client.run(os.getpid, workers=[killed])[killed], signal.SIGKILL)
        thread.join(timeout=600)
    finally:
        client.close()
        cluster.close()
    assert "error" not in outcome, outcome
    assert _accuracies(tmp_path / "killed") == _accuracies(tmp_path / "straight")
    notes = [line for line in lines if "left the cluster" in line]  # (Dask starts its trials elsewhere unasked)
    assert len(notes) == 1 and killed in notes[0], (lines, held)
    assert all(key.removeprefix("delgrad-trial-") in notes[0] for key in held), (notes, held)


def _ignores_interrupt(pid: int) -> bool:
    """Whether process `pid` ignores SIGINT (its SigIgn mask in /proc)."""
    status = Path(f"/proc/{pid}/status").read_text()
    mask = int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigIgn:")), 16)
    return bool(mask & (1 << (signal.SIGINT - 1)))


@needs_dask
@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads signal masks from /proc")
def test_a_restarted_worker_of_the_embedded_cluster_ignores_ctrl_c():
    """(the workers started with Ctrl-C ignored, but one the nanny restarted after a crash took the
    nanny's handler and printed a traceback when the terminal's Ctrl-C reached the sweep)"""
    from delgrad_core.training._dask_executor import DaskExecutor

    cluster, client = DaskExecutor(jobs=1)._connect(1)
    try:
        (first,) = client.run(os.getpid).values()
        assert _ignores_interrupt(first)
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline, "the nanny did not restart the worker"
            try:
                pids = list(client.run(os.getpid).values())
            except OSError:
                pids = []
            if pids and pids[0] != first:
                break
            time.sleep(0.2)
        assert _ignores_interrupt(pids[0])
    finally:
        client.close()
        cluster.close()


@needs_dask
@pytest.mark.parametrize(("address", "reason"), [
    ("notaurl", "missing port number"),
    # (these said "nothing listens there" and "not enough values to unpack")
    ("tcp://127.0.0.1:99999", "port 99999"), ("tcp://127.0.0.1:0", "port 0"),
    ("inproc://scheduler", "inproc:// is not a scheme another process can join"),
    ("http://127.0.0.1:8786", "http:// is not a scheme another process can join")])
def test_a_malformed_scheduler_address_is_one_usage_error(tmp_path, address, reason):
    result = cli_runner().invoke(main, ["sweep", "--executor", "dask", "--scheduler", address, "--seeds", "1",
                                        "--hidden", "3", "--delays", "none", "--epochs", "1", "--out",
                                        str(tmp_path / "s")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"--scheduler: expected an address such as tcp://HOST:8786 (tcp, tls, ws, wss or ucx; a port from 1 to " \
           f"65535), got {address!r} ({reason}" in result.output


@needs_dask
@pytest.mark.parametrize("address", ["tcp://10.0.0.5:1", "tls://10.0.0.5:65535", "ws://scheduler:8786", "10.0.0.5:8786",
                                     "wss://scheduler:443", "inproc://10.0.0.5/1234/1"])
def test_a_scheduler_address_of_a_joinable_scheme_and_port_is_taken(address):
    """(the schemes tcp, tls, ws, wss and ucx, none meaning tcp, and ports 1 to 65535 are taken as
    given, and from Python inproc://, a cluster in this process; nothing is connected to yet)"""
    from delgrad_core.training._dask_executor import DaskExecutor

    assert DaskExecutor(address).scheduler == address


@needs_dask
def test_a_dask_too_old_for_the_sweep_is_named_with_the_version_it_needs(tmp_path, monkeypatch):
    """(distributed 2023.1-2023.9.1, which pyproject allowed, ended in a traceback: AttributeError:
    'Client' object has no attribute 'register_plugin')"""
    monkeypatch.delattr(distributed.Client, "register_plugin")
    monkeypatch.setattr(distributed, "__version__", "2023.1.0")
    result = cli_runner().invoke(main, ["sweep", "--executor", "dask", "--seeds", "1", "--hidden", "3", "--delays",
                                        "none", "--epochs", "1", "--out", str(tmp_path / "s")])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert "--executor dask needs dask.distributed 2023.9.2 or newer, not 2023.1.0: pip install --upgrade " \
           "'delgrad[dask]'" in " ".join(result.output.split())
    assert not (tmp_path / "s").exists()


@needs_dask
def test_a_tls_scheduler_without_dasks_tls_settings_is_one_line(tmp_path):
    """(a traceback ending in "TypeError: TLS expects a ssl_context argument")"""
    result = cli_runner().invoke(main, ["sweep", "--executor", "dask", "--scheduler", "tls://127.0.0.1:1", "--seeds",
                                        "1", "--hidden", "3", "--delays", "none", "--epochs", "1", "--out",
                                        str(tmp_path / "s")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "--scheduler tls://127.0.0.1:1: cannot connect (TLS expects a" in result.output
    assert "needs Dask's TLS settings" in result.output


@needs_dask
def test_an_address_that_answers_in_another_protocol_is_named(tmp_path):
    """(an HTTP server's reply was read as the length of a message: "out of memory (Unable to
    allocate 3.07 EiB ...)")"""
    import socket

    server = socket.create_server(("127.0.0.1", 0))

    def answer():
        while True:
            try:
                connection, _ = server.accept()
            except OSError:  # (closed)
                return
            connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" * 4)

    threading.Thread(target=answer, daemon=True).start()
    address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
    try:  # (in a process of its own: the half-made Client, collected later, can hang another Client's start)
        result = subprocess.run([sys.executable, "-m", "delgrad_core.cli", "sweep", "--executor", "dask",
                                 "--scheduler", address, "--seeds", "1", "--hidden", "3", "--delays", "none",
                                 "--epochs", "1", "--out", str(tmp_path / "s")],
                                cwd=tmp_path, capture_output=True, text=True, timeout=120)
    finally:
        server.close()
    assert result.returncode == 2, result.stderr
    assert f"--scheduler {address}: something answers there, but not a Dask scheduler" in result.stderr


@needs_dask
def test_an_address_that_accepts_and_stays_silent_is_given_up(monkeypatch):
    """(Dask's connect waits for the scheduler's handshake without a bound: the sweep hung)"""
    import socket

    from delgrad_core import BackendUnavailable
    from delgrad_core.training import _dask_executor

    monkeypatch.setattr(_dask_executor, "GREETING_WAIT_S", 0.3)
    with socket.create_server(("127.0.0.1", 0)) as server:  # (the kernel accepts; nobody ever answers)
        address = f"tcp://127.0.0.1:{server.getsockname()[1]}"
        started = time.perf_counter()
        with pytest.raises(BackendUnavailable, match=re.escape(f"--scheduler {address}: something accepts "
                                                                  "connections there but sent nothing in 0.3 s")):
            _dask_executor.DaskExecutor(address)._connect(1)
    assert time.perf_counter() - started < 5


def _collect_half_made_clients():
    """Collect now the Clients that failed to connect in this process (tests of bad addresses): one
    collected while a cluster starts closes itself inside the start, which then waits for ever."""
    import gc

    gc.collect()


@pytest.fixture
def cluster_here():
    """A Dask cluster inside this process (an inproc:// address): one worker of two threads,
    which run the tasks' functions as this process has them (monkeypatched ones too)."""
    _collect_half_made_clients()
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0")
    yield cluster
    cluster.close()


def _pretend_trials(tmp_path, monkeypatch, train, n):
    """`n` trials t0, t1, ... whose training is `train(settings, folder, should_stop)` (settings:
    {"k": the trial's number}), each counted as finished in its folder when it returns."""
    from delgrad_core.training import _dask_executor
    from delgrad_core.training._trials import Trial

    monkeypatch.setattr(_dask_executor, "train_trial", train)
    monkeypatch.setattr(Trial, "finished", property(lambda trial: True))
    return [Trial({"k": k}, f"t{k}", tmp_path / f"t{k}", {}) for k in range(n)]


@needs_dask
def test_a_shared_cluster_reports_each_trial_as_it_ends_and_a_failing_one_as_one_line(tmp_path, monkeypatch,
                                                                                       cluster_here):
    """(each trial is one task named by its trial id; t1 waits until t0's result was said, so
    results come as the trials end, not once all have; t1's error fails t1 alone)"""
    from delgrad_core.training import _progress
    from delgrad_core.training._dask_executor import DaskExecutor

    keys, said_t0, counted = [], threading.Event(), []

    def train(settings, folder, should_stop=None):
        keys.append(distributed.get_worker().get_current_task())
        if settings["k"] == 1:
            said_t0.wait(10)
            raise ValueError("t0 said first" if said_t0.is_set() else "t0 not said yet")
        return {"test_accuracy": 0.5}

    class Bar:
        def __init__(self, total, **options):
            counted.append(total)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

        def update(self, n):
            counted.append(n)

    trials = _pretend_trials(tmp_path, monkeypatch, train, 2)
    monkeypatch.setattr(_progress, "progress_bar", Bar)
    lines = []

    def echo(line):
        lines.append(line)
        said_t0.set()

    unfinished, interrupted = DaskExecutor(cluster_here.scheduler_address).run(trials, echo)
    assert not interrupted and unfinished.failed == ["t1: ValueError: t0 said first"], lines
    assert lines == ["t0: test accuracy 50.00 %", "FAILED t1: ValueError: t0 said first"]
    assert sorted(keys) == ["delgrad-trial-t0", "delgrad-trial-t1"] and counted == [2, 1, 1]


@needs_dask
def test_ctrl_c_stops_a_shared_clusters_trials_and_a_later_sweep_there_runs_on(tmp_path, monkeypatch, cluster_here):
    """(two quick Ctrl-Cs: the first stops the running trial at its next epoch, the second, while
    it stops, is dropped; Dask's log is left at its level; the stop is this sweep's alone: a
    sweep started later on the cluster trains its trials)"""
    import logging

    from delgrad_core.training._dask_executor import DaskExecutor
    from delgrad_core.training._run import TrainingStopped

    started, stopped = threading.Event(), threading.Event()

    def train(settings, folder, should_stop=None):
        started.set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if should_stop():
                stopped.set()
                raise TrainingStopped(folder, "stopped after epoch 1")
            if settings["k"] == 1:  # (the later sweep's trial: one look)
                break
            time.sleep(0.01)
        return {"test_accuracy": 0.5}

    def two_ctrl_cs_once_training():
        if started.is_set():
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)

    first, later = _pretend_trials(tmp_path, monkeypatch, train, 2)
    level = logging.getLogger("distributed").level
    lines = []
    _, interrupted = DaskExecutor(cluster_here.scheduler_address, should_stop=two_ctrl_cs_once_training).run(
        [first], lines.append)
    assert interrupted and "the running ones stop after their current epoch" in " ".join(lines), lines
    assert stopped.wait(10) and logging.getLogger("distributed").level == level
    lines = []
    assert DaskExecutor(cluster_here.scheduler_address).run([later], lines.append)[1] is False
    assert lines == ["t1: test accuracy 50.00 %"]


@needs_dask
def test_the_embedded_cluster_starts_with_ctrl_c_blocked_and_is_closed_with_the_sweep(tmp_path, monkeypatch):
    """(its workers inherit Ctrl-C blocked, the sweep's own thread has it back once the cluster is
    up, and the cluster is closed when the sweep ends, or when the start fails once it is up; here
    a cluster inside this process)"""
    import logging

    from delgrad_core.training._dask_executor import DaskExecutor

    starting, clusters, blocked = distributed.LocalCluster, [], []

    def in_this_process(n_workers, **options):
        blocked.append(signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, set()))
        clusters.append(starting(n_workers=n_workers, **{**options, "processes": False, "host": None}))
        return clusters[-1]

    monkeypatch.setattr(distributed, "LocalCluster", in_this_process)
    _collect_half_made_clients()
    trials = _pretend_trials(tmp_path, monkeypatch, lambda settings, folder, should_stop=None: {"test_accuracy": 1}, 1)
    worker_log = logging.getLogger("distributed.worker")
    level, handler = worker_log.level, signal.getsignal(signal.SIGINT)
    lines = []
    try:
        assert DaskExecutor(jobs=1).run(trials, lines.append)[1] is False
    finally:
        worker_log.setLevel(level)  # (the worker plugins, run in this process here)
        signal.signal(signal.SIGINT, handler)
    assert lines == ["t0: test accuracy 100.00 %"] and blocked == [True]
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, set())
    assert clusters[0].status.name == "closed"
    _failing_client(monkeypatch, OSError("the cluster's scheduler went away"))  # (a start that fails once it is up)
    with pytest.raises(OSError, match="went away"):
        DaskExecutor(jobs=1)._connect(1)
    assert len(clusters) == 2 and clusters[1].status.name == "closed"


@needs_dask
def test_the_worker_plugins_ignore_ctrl_c_and_keep_failed_tasks_out_of_the_workers_log():
    """(and the log quieted while an interrupted sweep closes keeps Dask's errors only)"""
    import logging

    from delgrad_core.training import _dask_executor

    handler, levels = signal.getsignal(signal.SIGINT), {name: logging.getLogger(name).level for name in
                                                         ("distributed", "distributed.worker")}
    try:
        _dask_executor._IgnoreInterrupt().setup(None)
        _dask_executor._QuietTaskFailures().setup(None)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert not logging.getLogger("distributed.worker").isEnabledFor(logging.ERROR)  # ("Compute Failed")
        _dask_executor._quiet_distributed_log()
        log = logging.getLogger("distributed")
        assert log.isEnabledFor(logging.ERROR) and not log.isEnabledFor(logging.WARNING)
    finally:
        signal.signal(signal.SIGINT, handler)
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def _names_of_lost_trials(looks):
    """What `_WorkerWatch` says after each of `looks` at the cluster (what each worker holds,
    or an OSError: the scheduler out of reach); (keys of the trials unfinished then, look)."""
    from delgrad_core.training._dask_executor import _WorkerWatch

    answers = iter(look for _, look in looks)

    def processing():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    trials = {f"k{n}": SimpleNamespace(name=f"t{n}") for n in range(6)}
    watch, said = _WorkerWatch(SimpleNamespace(processing=processing), trials), []
    for unfinished, _ in looks:
        lines = []
        watch.note_losses(unfinished, lines.append)
        said.append(lines)
    return said


@needs_dask
def test_a_worker_that_left_is_named_with_the_unfinished_trials_it_held():
    """(a worker that held only finished trials, or nothing, is not named; a look that cannot
    reach the scheduler changes nothing)"""
    all_keys = {f"k{n}" for n in range(6)}
    said = _names_of_lost_trials([(all_keys, {"tcp://a": ("k0", "k1", "k2", "k3", "k4"), "tcp://b": ("k5",)}),
                                  (all_keys - {"k4"}, OSError("out of reach")),
                                  (all_keys - {"k4"}, {"tcp://b": ("k5",), "tcp://c": ()}),
                                  (set(), {"tcp://b": ("k5",)}),
                                  ({"k5"}, {})])
    assert said == [[], [], ["the Dask worker tcp://a left the cluster (killed, stopped, or out of memory?) while it "
                             "held 4 unfinished run(s), t0, t1, t2 and 1 more: they start again on another worker "
                             "and resume from their last finished epoch"], [], [said[2][0].replace(
                                 "tcp://a", "tcp://b").replace("4 unfinished run(s), t0, t1, t2 and 1 more",
                                                               "1 unfinished run(s), t5")]]


def _failing_client(monkeypatch, error):
    """Make Dask's Client raise `error` when it connects; returns the options it was given."""
    given = []

    class Client:  # (a class with register_plugin, as the executor checks distributed's for it)
        def __init__(self, address, **options):
            given.append(options)
            raise error

        def register_plugin(self, plugin):
            pass

    monkeypatch.setattr(distributed, "Client", Client)
    return given


@needs_dask
@pytest.mark.parametrize(("error", "kind", "message"), [
    (OSError("Timed out trying to connect"), "BackendUnavailable",
     "--scheduler ws://10.0.0.5:8786: cannot connect (Timed out trying to connect)"),
    (TimeoutError("no answer"), "BackendUnavailable", "--scheduler ws://10.0.0.5:8786: cannot connect (no answer)"),
    (ValueError("odd host"), "InvalidValueError", "--scheduler: expected an address such as tcp://HOST:8786 (tcp, "
                                                  "tls, ws, wss or ucx; a port from 1 to 65535), got "
                                                  "'ws://10.0.0.5:8786' (odd host)"),
    (TypeError("TLS expects a ssl_context argument"), "InvalidValueError",
     "--scheduler ws://10.0.0.5:8786: cannot connect (TLS expects a ssl_context argument); a tls:// scheduler"),
    (MemoryError(), "InvalidValueError", "--scheduler ws://10.0.0.5:8786: something answers there, but not a Dask "
                                         "scheduler")])
def test_a_scheduler_that_cannot_be_joined_is_one_error_naming_its_address(monkeypatch, error, kind, message):
    """(Dask's connect, given up after 20 s, ends in an error of the sweep's that names the address)"""
    from delgrad_core.training._dask_executor import DaskExecutor

    given = _failing_client(monkeypatch, error)
    with pytest.raises(Exception) as raised:
        DaskExecutor("ws://10.0.0.5:8786")._connect(1)
    assert type(raised.value).__name__ == kind and str(raised.value).startswith(message), raised.value
    assert given == [{"timeout": "20s"}]


@needs_dask
def test_a_scheduler_out_of_reach_is_left_to_dasks_connect_which_names_it(monkeypatch):
    """(only a scheduler's port that refuses or stays silent is named before Dask's connect)"""
    import socket

    from delgrad_core import BackendUnavailable
    from delgrad_core.training._dask_executor import DaskExecutor

    def no_route(address, timeout=None):
        raise OSError(113, "No route to host")

    monkeypatch.setattr(socket, "create_connection", no_route)
    _failing_client(monkeypatch, OSError("Timed out trying to connect to tcp://10.0.0.5:8786 after 20 s"))
    with pytest.raises(BackendUnavailable, match=re.escape("--scheduler tcp://10.0.0.5:8786: cannot connect (Timed "
                                                           "out trying to connect to tcp://10.0.0.5:8786 after 20 s)")):
        DaskExecutor("tcp://10.0.0.5:8786")._connect(1)


@needs_dask
@pytest.mark.parametrize("scheduler", [8786, b"tcp://10.0.0.5:8786"])
def test_a_scheduler_address_that_is_no_string_is_refused_naming_it(scheduler):
    from delgrad_core import InvalidValueError
    from delgrad_core.training._executors import make_executor

    with pytest.raises(InvalidValueError, match=re.escape(f"--scheduler: expected an address such as tcp://HOST:8786 "
                                                          f"(tcp, tls, ws, wss or ucx; a port from 1 to 65535), got "
                                                          f"{scheduler!r} (expected str, got")):
        make_executor("dask", scheduler=scheduler)


def test_a_slurm_script_never_replaces_a_file(tmp_path):
    (tmp_path / "sweep.toml").write_text("epochs = 2\n")
    (tmp_path / "job.sh").write_text("mine")
    base = ["sweep", "--hidden", "5", "--delays", "none", "--seeds", "1", "--out", str(tmp_path / "s")]
    result = cli_runner().invoke(main, base + ["--config", str(tmp_path / "sweep.toml"), "--slurm-script",
                                               str(tmp_path / "sweep.toml")])
    assert result.exit_code == 2 and "is also the command's input" in result.output
    result = cli_runner().invoke(main, base + ["--slurm-script", str(tmp_path / "job.sh")])
    assert result.exit_code == 2 and "job.sh exists and is not overwritten; remove it or choose another name\n" \
        in result.output
    assert (tmp_path / "sweep.toml").read_text() == "epochs = 2\n" and (tmp_path / "job.sh").read_text() == "mine"


def test_a_slurm_script_that_cannot_be_written_is_named_by_its_option(tmp_path):
    """A folder that takes no new files (here /proc) fails in one line naming --slurm-script."""
    result = cli_runner().invoke(main, ["sweep", "--hidden", "5", "--delays", "none", "--seeds", "1", "--out",
                                        str(tmp_path / "s"), "--slurm-script", "/proc/delgrad-job.sh"])
    assert result.exit_code == 1, result.output
    assert result.output.startswith("Error: --slurm-script: /proc/delgrad-job.sh cannot be written: No such file or "
                                    "directory")
    assert result.output.count("\n") == 1 and not (tmp_path / "s").exists()


def test_the_slurm_command_quotes_a_script_path_with_spaces(tmp_path):
    script = tmp_path / "sp ace" / "job.sh"
    result = cli_runner().invoke(main, ["sweep", "--hidden", "4", "--delays", "none", "--seeds", "2",
                                        "--slurm-script", str(script), "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert f"submit with: sbatch '{script}'" in result.output and script.exists()


def test_no_slurm_script_for_a_sweep_with_bad_settings(tmp_path):
    script = tmp_path / "job.sh"
    for options, message in ((["--hidden", "0,5"], "hidden: expected a positive integer"),
                             (["--backend", "nosuch"], "backend: 'nosuch' is not installed"),
                             (["--backend-option", "token=a-secret-of-some-length"], "backend_options.token")):
        result = cli_runner().invoke(main, ["sweep", *options, "--slurm-script", str(script), "--out", str(tmp_path)])
        assert result.exit_code != 0 and message in result.output, result.output
    assert not script.exists()


def test_a_trial_queued_in_a_worker_does_not_start_after_ctrl_c(tmp_path, monkeypatch):
    from delgrad_core.training import _executors
    from delgrad_core.training._run import TrainingStopped

    monkeypatch.setattr(_executors, "stop_requested", lambda: True)
    with pytest.raises(TrainingStopped, match="not started, the sweep was interrupted"):
        _executors._train_in_worker({"epochs": 1, "hidden": 3}, str(tmp_path / "trial"), 1)
    assert not (tmp_path / "trial").exists()
    lines = []
    stopped = pickle.loads(pickle.dumps(TrainingStopped("runs/a: b", "not started, the sweep was interrupted")))
    # (": " in the folder)
    _executors.report(SimpleNamespace(name="none-h3-s0"), stopped, _executors.Unfinished(), lines.append)
    assert lines == ["none-h3-s0: not started, the sweep was interrupted"]
    assert str(stopped) == "runs/a: b: not started, the sweep was interrupted"


@pytest.mark.parametrize(("finished", "outcome", "line"), [
    (True, {"test_accuracy": 0.5}, "s0: test accuracy 50.00 %"),
    (False, {"test_accuracy": 0.5}, "FAILED s0: trained to 50.00 % test accuracy, but its folder runs/s0 holds no "
                                    "finished run here"),
    (True, ValueError("no such split"), "FAILED s0: ValueError: no such split"),
    (True, MemoryError(), "FAILED s0: MemoryError"),
])
def test_each_trials_outcome_is_one_line_and_a_failure_is_recorded(finished, outcome, line):
    """(`report`: accuracies in percent; another error than delgrad's with its type; metrics from a
    worker that wrote its run where this process does not see it fail the trial)"""
    from delgrad_core.training import _executors

    trial, lines, unfinished = SimpleNamespace(name="s0", folder=Path("runs/s0"), finished=finished), [], \
        _executors.Unfinished()
    _executors.report(trial, outcome, unfinished, lines.append)
    assert len(lines) == 1 and lines[0].startswith(line) and not unfinished.in_use
    assert unfinished.failed == ([lines[0].removeprefix("FAILED ")] if line.startswith("FAILED") else [])


def test_a_trial_failing_on_a_damaged_file_of_its_own_is_told_to_remove_its_folder():
    """(which alone trains it again: the file fails it on every run; another error of delgrad's,
    e.g. a setting, gets no such advice)"""
    from delgrad_core import DelgradError, FileFormatError
    from delgrad_core.training import _executors

    trial, lines, unfinished = SimpleNamespace(name="s0", folder=Path("runs/s0"), finished=True), [], \
        _executors.Unfinished()
    _executors.report(trial, FileFormatError("checkpoint.npz: not a checkpoint"), unfinished, lines.append)
    _executors.report(trial, DelgradError("hidden: expected an integer"), unfinished, lines.append)
    assert unfinished.failed == ["s0: checkpoint.npz: not a checkpoint; remove its folder runs/s0 to train it anew",
                                 "s0: hidden: expected an integer"]
    assert lines == [f"FAILED {line}" for line in unfinished.failed]


def test_a_sweep_refuses_the_folder_of_a_training_run(tmp_path):
    from delgrad_core import RunFolderError

    (tmp_path / "metrics.json").write_text("{}")
    with pytest.raises(RunFolderError, match="holds a training run \\(metrics.json\\); a sweep needs a folder"):
        run_sweep({"epochs": 1}, [3], ["none"], 1, tmp_path, echo=lambda line: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_a_failing_array_task_says_its_error_once(tmp_path):
    from delgrad_core.training._trials import plan_trials

    (trial,) = plan_trials({"epochs": 1}, [3], ["none"], 1, tmp_path)
    trial.folder.mkdir(parents=True)
    (trial.folder / "checkpoint.npz").write_bytes(b"not a checkpoint")
    result = cli_runner().invoke(main, ["sweep", "--hidden", "3", "--delays", "none", "--seeds", "1", "--epochs", "1",
                                        "--trial", "0", "--out", str(tmp_path)])
    assert result.exit_code == 1 and result.output.count("checkpoint.npz") == 1, result.output
    assert "none-h3-s0-" in result.output


@pytest.mark.parametrize(("options", "message"), [
    (["--backend-option", "n_threads=0"], "n_threads: expected an integer from 1 to 256, got 0"),
    (["--backend", "bss2-emulator", "--delays", "synaptic,none"],  # (trial 0 is the synaptic one)
     "synaptic-h3-s0-[0-9a-f]+: backend 'bss2-emulator' does not support delay kind 'synaptic' .*; sweep the kinds "
     "it has with --delays none,axonal"),
    (["--seeds", "1000000000"], "sweep: 1 hidden sizes x 1 delay kinds x 1000000000 seeds are 1,000,000,000 runs; "
                                "at most 100,000"),
])
@pytest.mark.parametrize("mode", [[], ["--slurm-script", "job.sh"], ["--trial", "0"]])
def test_what_the_backend_refuses_is_refused_before_any_trial_starts(tmp_path, options, message, mode):
    """(bad option values and delay kinds the backend lacks failed every trial one by one, advising a
    rerun; a SLURM script was written whose every task would fail)"""
    delays = [] if "--delays" in options else ["--delays", "none"]  # (given once: a repeat is a usage error)
    arguments = ["sweep", "--hidden", "3", *delays, "--seeds", "1", "--epochs", "1", *options,
                 *[str(tmp_path / value) if value.endswith(".sh") else value for value in mode],
                 "--out", str(tmp_path / "s")]
    result = cli_runner().invoke(main, arguments)
    assert result.exit_code == 2 and re.search(message, result.output) and "FAILED" not in result.output, \
        result.output
    assert not (tmp_path / "s").exists() and not (tmp_path / "job.sh").exists()


@pytest.mark.parametrize("mode", [[], ["--slurm-script", "job.sh"]])
def test_every_delay_kind_of_a_hidden_size_is_checked_before_any_trial_starts(tmp_path, mode):
    """`check_runnable` lets the backend check every distinct network: a kind the backend lacks
    after one it has, at the same hidden size, is refused too (not trial by trial)."""
    arguments = ["sweep", "--hidden", "3", "--delays", "none,synaptic", "--seeds", "1", "--epochs", "1", "--backend",
                 "bss2-emulator", *[str(tmp_path / value) if value.endswith(".sh") else value for value in mode],
                 "--out", str(tmp_path / "s")]
    result = cli_runner().invoke(main, arguments)
    assert result.exit_code == 2 and re.search("synaptic-h3-s0-[0-9a-f]+: backend 'bss2-emulator' does not support "
                                               "delay kind 'synaptic'", result.output), result.output
    assert not (tmp_path / "s").exists() and not (tmp_path / "job.sh").exists()


def test_a_backend_that_cannot_be_reached_now_leaves_the_check_to_the_trials(tmp_path):
    """(a SLURM script could not be written on a login node that cannot reach the device service)"""
    result = cli_runner().invoke(main, [
        "sweep", "--hidden", "3", "--delays", "none", "--seeds", "1", "--epochs", "1", "--backend", "mock-hil",
        "--backend-option", 'address="tcp://127.0.0.1:1"', "--backend-option", "timeout_s=0.3",
        "--backend-option", "attempts=1", "--slurm-script", str(tmp_path / "job.sh"), "--out", str(tmp_path / "s")],
        env={"DELGRAD_HIL_TOKEN": "a" * 24})
    assert result.exit_code == 0 and "note: the backend could not check the sweep's networks now" in result.output, \
        result.output
    assert (tmp_path / "job.sh").exists()


def test_a_local_sweep_whose_backend_cannot_be_reached_starts_no_trial(tmp_path, monkeypatch):
    """(each trial waited for the service in turn, then failed).  The service is asked afresh (an
    earlier test in this process may have asked the same address: its answer is kept), so the
    warning that the settings are the default device's comes first, then the one error."""
    monkeypatch.setattr("delgrad_hil._device._SERVICE_DEVICES", {})
    monkeypatch.setattr("delgrad_hil._device._UNASKED", set())
    result = cli_runner().invoke(main, [
        "sweep", "--hidden", "3", "--delays", "none", "--seeds", "3", "--epochs", "1", "--backend", "mock-hil",
        "--backend-option", 'address="tcp://127.0.0.1:1"', "--backend-option", "timeout_s=0.3",
        "--backend-option", "attempts=1", "--out", str(tmp_path / "s")], env={"DELGRAD_HIL_TOKEN": "a" * 24})
    warning, error = result.output.splitlines()
    assert result.exit_code == 1 and warning.startswith("Warning: backend 'mock-hil': the training settings are "
                                                        "those of device 'bss2-emulator'"), result.output
    assert error.startswith("Error: the backend cannot be reached now, no trial started: ") and \
        "tcp://127.0.0.1:1" in error, result.output
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_a_sweep_whose_backend_refuses_to_work_does_not_say_it_cannot_be_reached(tmp_path, start_service):
    """(a service owning another device than the default said "the backend cannot be reached now";
    the refusal now comes as the sweep's settings are made, before any trial is planned)"""
    service = start_service(device="reference")
    result = cli_runner().invoke(main, [
        "sweep", "--hidden", "3", "--delays", "none", "--seeds", "1", "--epochs", "1", "--backend", "mock-hil",
        "--backend-option", f"address={service.address}", "--out", str(tmp_path / "s")],
        env={"DELGRAD_HIL_TOKEN": service.token})
    assert result.exit_code == 1, result.output
    assert result.output == (f"Error: the service at {service.address} owns device 'reference': name it with "
                             "device=reference (without it, mock-hil takes the default device 'bss2-emulator' and its "
                             "training settings)\n")


def test_a_finished_trials_damaged_metrics_are_named_and_runs_beside_it_are_read_safely(tmp_path):
    arguments = ["sweep", "--hidden", "3", "--delays", "none", "--seeds", "1", "--epochs", "1", "--out", str(tmp_path)]
    assert cli_runner().invoke(main, arguments).exit_code == 0
    (folder,) = (tmp_path / "runs").iterdir()
    metrics = json.loads((folder / "metrics.json").read_text())
    sibling = folder.parent / (folder.name.rsplit("-", 1)[0] + "-aaaaaaaaaaaa")
    sibling.mkdir()
    (sibling / "metrics.json").write_text(json.dumps({"test_accuracy": 0.5, "config": [1]}))
    # (n_parameters -5 and wall_seconds -1 went into sweep.csv and the table: "params -5")
    for damaged, said in (({k: v for k, v in metrics.items() if k != "config"}, "KeyError"),
                          (dict(metrics, config=[1, 2]), "TypeError"), (dict(metrics, test_accuracy="high"), "high"),
                          (dict(metrics, n_parameters=-5), "n_parameters is -5, not a count of parameters"),
                          (dict(metrics, n_parameters=True), "n_parameters is True"),
                          (dict(metrics, wall_seconds=-1), "wall_seconds is -1, not a duration"),
                          (dict(metrics, wall_seconds="1 s"), "wall_seconds is '1 s'")):
        (folder / "metrics.json").write_text(json.dumps(damaged))
        result = cli_runner().invoke(main, arguments)
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert f"{folder / 'metrics.json'}: not the metrics of a finished run" in result.output and said in \
            result.output, result.output
        assert "remove the file to train the run again" in result.output


@pytest.mark.parametrize(("config", "message"), [
    ("backend_options = {n_threads = 1, colour = 3}",
     "backend 'reference': unknown option(s) colour; allowed: n_threads"),
    ("[encoder]\nrepeat = 0", "LatencyEncoder.repeat: expected an integer from 1 to 1000, got 0"),
    ("[loss]\nepochs = 2",
     "loss_options: loss 'squared' has no parameter epochs; epochs is a training setting of its own"),
])
def test_settings_that_building_a_run_refuses_are_refused_before_any_trial_starts(tmp_path, config, message):
    """(every trial failed, one after another, and the sweep advised running it again)"""
    (tmp_path / "c.toml").write_text(config + "\n")
    result = cli_runner().invoke(main, ["sweep", "--config", str(tmp_path / "c.toml"), "--hidden", "3,4", "--delays",
                                        "none", "--seeds", "2", "--epochs", "1", "--out", str(tmp_path / "s")])
    assert result.exit_code == 2 and message in result.output and "FAILED" not in result.output, result.output
    assert not (tmp_path / "s").exists()
    result = cli_runner().invoke(main, ["train", "--config", str(tmp_path / "c.toml"), "--epochs", "1", "--out",
                                        str(tmp_path / "t")])
    assert result.exit_code == 2 and message in result.output and not (tmp_path / "t").exists()


def test_a_config_files_tables_are_checked_with_the_components_given_beside_it(tmp_path):
    """(a file was checked alone: its backend options against the default backend)"""
    (tmp_path / "c.toml").write_text("[backend]\nchip = 3\n")
    args = ["sweep", "--config", str(tmp_path / "c.toml"), "--hidden", "3", "--delays", "axonal", "--seeds", "1",
            "--epochs", "1", "--slurm-script", str(tmp_path / "job.sh"), "--out", str(tmp_path / "s")]
    result = cli_runner().invoke(main, args + ["--backend", "bss2-emulator"])
    assert result.exit_code == 0, result.output
    (tmp_path / "job.sh").unlink()
    result = cli_runner().invoke(main, args)
    assert result.exit_code == 2 and "backend 'reference': unknown option(s) chip" in result.output, result.output


def test_trial_ids_of_earlier_versions_are_kept():
    """(a setting added later, dataset_options, changed every id: a rerun trained finished trials again)"""
    from delgrad_core.training._trials import plan_trials

    trial = plan_trials({"epochs": 300}, [5], ["none"], 1, Path("s"))[0]
    assert trial.id == "7fa2045d23f7"  # (computed by the version before dataset_options)
    other = plan_trials({"epochs": 300, "dataset": "digits", "dataset_options": {}}, [5], ["none"], 1, Path("s"))[0]
    assert other.id != trial.id


def test_the_command_line_leaves_the_process_as_it_found_it(tmp_path):
    import signal

    (tmp_path / "c.toml").write_text("hidden = 7\nepochs = 1\n")
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        outputs = [cli_runner().invoke(main, ["sweep", "--config", str(tmp_path / "c.toml"), "--seeds", "1",
                                              "--slurm-script", str(tmp_path / f"job{i}.sh"),
                                              "--out", str(tmp_path / "s")])
                   for i in range(2)]
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # (its handler lives while a command runs)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert all("replace hidden = 7" in output.output for output in outputs)  # each command says its warnings


@pytest.mark.parametrize(("option", "value", "message"), [
    ("--hidden", "5,,10", "expected comma-separated integers, got '5,,10'"),
    ("--delays", "", "expected comma-separated delay kinds from none, axonal, dendritic, synaptic; got ''"),
    ("--delays", "none,axnal", "got 'axnal' in 'none,axnal'"),
])
def test_sweep_lists_with_empty_or_unknown_entries_are_refused(tmp_path, option, value, message):
    """(an empty entry was dropped from --hidden; an empty --delays said the kind '(none)' was unknown)"""
    result = cli_runner().invoke(main, ["sweep", option, value, "--seeds", "1", "--out", str(tmp_path / "s")])
    assert result.exit_code == 2 and message in result.output, result.output


@needs_dask
def test_the_embedded_dask_cluster_has_no_more_workers_than_trials(monkeypatch):
    """(--jobs 6 started six worker processes for one trial; without --jobs, one per CPU)"""
    from delgrad_core.training import _dask_executor
    from delgrad_core.training._dask_executor import DaskExecutor

    started, plugins = [], []
    monkeypatch.setattr(_dask_executor, "available_cpus", lambda: 4)
    monkeypatch.setattr(distributed, "LocalCluster", lambda n_workers, **options: started.append(n_workers))

    class Client:  # (a class with register_plugin, as the executor checks distributed's for it)
        def __init__(self, cluster):
            pass

        def register_plugin(self, plugin):
            plugins.append(plugin)

    monkeypatch.setattr(distributed, "Client", Client)
    DaskExecutor(jobs=6)._connect(1)
    DaskExecutor(jobs=3)._connect(5)
    DaskExecutor()._connect(9)
    assert started == [1, 3, 4]  # (and each cluster's workers got the executor's worker plugins)
    assert [type(plugin).__name__ for plugin in plugins] == ["_IgnoreInterrupt", "_QuietTaskFailures"] * 3


@pytest.mark.parametrize("executor", ["process", pytest.param("dask", marks=[pytest.mark.slow, needs_dask])])
def test_a_stop_signal_whose_keyboardinterrupt_was_lost_still_stops_a_sweep(tmp_path, executor):
    """(the sweep waited for its trials without looking again: a Ctrl-C whose KeyboardInterrupt
    CPython lost left every trial to run to its end, and the sweep exited 0)"""
    from delgrad_core.training._sweep import SweepInterrupted

    def lost_interrupt():
        raise KeyboardInterrupt  # (as stop_if_interrupted does once a stop signal came)

    lines = []
    with pytest.raises(SweepInterrupted):
        run_sweep({"epochs": 2000}, [3], ["none"], 2, tmp_path / "s", jobs=2, executor=executor, echo=lines.append,
                  should_stop=lost_interrupt)
    assert any(line.startswith("\ninterrupted:") for line in lines), lines
    assert not list((tmp_path / "s" / "runs").glob("*/metrics.json"))  # (stopped at an epoch boundary)


@needs_dask
def test_an_address_where_nothing_listens_is_refused_at_once():
    """(Dask's connect tried again for 20 s before it said so)"""
    import socket

    from delgrad_core import BackendUnavailable
    from delgrad_core.training import _dask_executor

    with socket.create_server(("127.0.0.1", 0)) as server:
        address = f"tcp://127.0.0.1:{server.getsockname()[1]}"  # (a port free again once closed)
    with pytest.raises(BackendUnavailable, match=re.escape(f"--scheduler {address}: nothing listens there "
                                                           "(connection refused)")):
        _dask_executor.DaskExecutor(address)._connect(1)


@needs_dask
@pytest.mark.slow
def test_a_dask_task_cancelled_elsewhere_fails_its_trial_and_the_others_finish(tmp_path, monkeypatch):
    """(waiting with a timeout let the cancellation's error escape: a traceback, the running
    trials killed and no sweep table)"""
    from delgrad_core.training import _dask_executor
    from delgrad_core.training._trials import Trial

    def pretend_to_train(settings, folder, should_stop=None):
        time.sleep(settings["seconds"])
        return {"test_accuracy": 0.5}

    monkeypatch.setattr(_dask_executor, "train_trial", pretend_to_train)
    monkeypatch.setattr(Trial, "finished", property(lambda trial: True))  # (as if their runs were in their folders)
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=3, processes=False, dashboard_address=None)
    trials = [Trial({"seconds": seconds}, f"t{k}", tmp_path / f"t{k}", {}) for k, seconds in enumerate([0.5, 5, 3])]

    ended = threading.Event()

    def cancel_the_long_trial():
        while not list(cluster.scheduler.tasks):  # (its tasks are known to the scheduler)
            if ended.wait(0.05):  # (the sweep ended first: it hung this test when the sweep failed at once)
                return
        time.sleep(1.0)
        with distributed.Client(cluster.scheduler_address, set_as_default=False) as other:
            other.cancel([distributed.Future("delgrad-trial-t1", client=other)], force=True)

    canceller = threading.Thread(target=cancel_the_long_trial)
    canceller.start()
    lines = []
    try:
        unfinished, interrupted = _dask_executor.DaskExecutor(cluster.scheduler_address).run(trials, lines.append)
    finally:
        ended.set()
        canceller.join()
        cluster.close()
    assert not interrupted and [line.split(":")[0] for line in unfinished.failed] == ["t1"], lines
    assert sorted(lines) == sorted(["t0: test accuracy 50.00 %", "t2: test accuracy 50.00 %",
                                    f"FAILED {unfinished.failed[0]}"])


@needs_dask
def test_a_trial_failing_on_the_embedded_cluster_is_one_line_without_the_workers_log_of_it(tmp_path):
    """(each failed trial also printed Dask's "Compute Failed" log with the task's traceback)"""
    (tmp_path / "beta.toml").write_text("[loss]\nname = 'crossentropy'\nbeta = 0.001\n")  # (exp(t / beta) overflows)
    result = subprocess.run([sys.executable, "-m", "delgrad_core.cli", "sweep", "--executor", "dask", "--jobs", "1",
                             "--hidden", "3", "--delays", "none", "--seeds", "1", "--epochs", "1",
                             "--config", "beta.toml", "--out", "s"], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 1 and "\nFAILED none-h3-s0-" in result.stdout + result.stderr, result.stderr
    assert "Compute Failed" not in result.stderr and "Traceback" not in result.stderr, result.stderr


@needs_dask
@pytest.mark.slow
def test_a_ctrl_c_while_the_embedded_cluster_starts_is_answered_once_it_is_up(tmp_path):
    """(SIGINT was ignored while the cluster started: a Ctrl-C then was lost, and the sweep ran
    all its trials to the end with status 0)"""
    code = """if True:
        import os, signal, time
        from pathlib import Path
        from delgrad_core.training._dask_executor import DaskExecutor

        def workers():  # (living children started by multiprocessing's spawn)
            own, pids = str(os.getpid()), set()
            for entry in Path("/proc").iterdir():
                try:
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                    if fields[1] == own and fields[0] != "Z" and b"spawn_main" in (entry / "cmdline").read_bytes():
                        pids.add(entry.name)
                except (OSError, IndexError):
                    pass
            return pids

        import distributed
        starting = distributed.LocalCluster

        def ctrl_c_once_started(*args, **kwargs):  # (a Ctrl-C within the start: a timer's could come after it)
            cluster = starting(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGINT)
            return cluster

        distributed.LocalCluster = ctrl_c_once_started
        try:
            DaskExecutor(jobs=1)._connect(1)
        except KeyboardInterrupt:
            print("interrupted")
        deadline = time.monotonic() + 30
        while workers() and time.monotonic() < deadline:  # (the cluster it started is closed)
            time.sleep(0.2)
        print("workers left:", len(workers()))
    """
    process = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                             timeout=120)  # (cwd: not the source tree, which would shadow the installed package)
    assert process.stdout.split("\n")[:2] == ["interrupted", "workers left: 0"], process.stdout + process.stderr


@needs_dask
@pytest.mark.slow
def test_ctrl_c_stops_the_trials_running_on_a_shared_cluster(tmp_path):
    """(cancelling a running Dask task does not stop it: the sweep said "the Dask tasks are
    cancelled" and exited, and its trial trained on to its last epoch on the cluster)"""
    from delgrad_core.training._dask_executor import DaskExecutor
    from delgrad_core.training._trials import plan_trials

    (trial,) = plan_trials({"epochs": 5000, "hidden": 3, "delays": "none"}, [3], ["none"], 1, tmp_path)
    history = trial.folder / "history.jsonl"

    def ctrl_c_once_training():
        if history.exists() and history.read_text().count("\n") >= 2:
            raise KeyboardInterrupt

    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None)
    lines = []
    try:
        _, interrupted = DaskExecutor(cluster.scheduler_address, should_stop=ctrl_c_once_training).run([trial],
                                                                                                      lines.append)
        assert interrupted and "the running ones stop after their current epoch" in " ".join(lines)
        deadline = time.monotonic() + 60
        while list(cluster.scheduler.tasks) and time.monotonic() < deadline:  # (the trial's task ends)
            time.sleep(0.1)
        assert not list(cluster.scheduler.tasks)
    finally:
        cluster.close()
    epochs = history.read_text().count("\n")
    assert 2 <= epochs < 100 and not (trial.folder / "metrics.json").exists(), epochs


@needs_dask
def test_the_embedded_cluster_leaves_port_8787_alone():
    """(its scheduler's web server took port 8787, the dashboard's: where another cluster had
    it, every sweep warned "Port 8787 is already in use. Perhaps you already have a cluster
    running?")"""
    import socket
    import warnings

    from delgrad_core.training._dask_executor import DaskExecutor

    with socket.socket() as taken:
        try:
            taken.bind(("127.0.0.1", 8787))
        except OSError:
            pytest.skip("port 8787 is in use here")
        taken.listen()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            cluster, client = DaskExecutor(jobs=1)._connect(1)
            client.close()
            cluster.close()
    assert not [warning for warning in caught if "8787" in str(warning.message)]


def test_jobs_with_a_scheduler_is_a_usage_error(tmp_path):
    """(--jobs 7 with --scheduler was ignored without a word)"""
    result = cli_runner().invoke(main, ["sweep", "--scheduler", "tcp://127.0.0.1:1", "--jobs", "7", "--seeds", "1",
                                        "--hidden", "3", "--delays", "none", "--epochs", "1", "--out",
                                        str(tmp_path / "s")])
    assert result.exit_code == 2 and "with --scheduler the cluster's own workers decide" in result.output, \
        result.output


@needs_dask
@pytest.mark.slow
def test_two_quick_ctrl_cs_on_the_embedded_cluster_still_write_the_results(tmp_path):
    """(a KeyboardInterrupt inside Dask's waits printed Dask's tracebacks, and a second Ctrl-C
    while the cluster closed ended the sweep without sweep.csv)"""
    command = [sys.executable, "-c", "from delgrad_core.cli import main; main()", "sweep", "--executor", "dask",
               "--jobs", "1", "--hidden", "3", "--delays", "none", "--seeds", "2", "--epochs", "5000",
               "--out", "sweep"]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        histories = []
        while not any(path.read_text().count("\n") >= 1 for path in histories) and time.monotonic() < deadline:
            time.sleep(0.2)
            histories = list((tmp_path / "sweep" / "runs").glob("*/history.jsonl"))
        process.send_signal(signal.SIGINT)
        time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130, out + err
    assert (tmp_path / "sweep" / "sweep.csv").exists() and "interrupted" in out + err, out + err
    assert "Traceback" not in err and "Exception ignored" not in err and "CancelledError" not in err, err


@needs_dask
def test_a_trial_ending_in_an_exception_outside_exception_fails_alone_on_dask(tmp_path, monkeypatch, cluster_here):
    """A trial raising e.g. SystemExit, or an exception class of a plugin's own derived from
    BaseException, fails in one line on a Dask cluster, and the others go on (Dask's client
    ended its own loop on it: the trial's result never came, and the sweep waited for good)."""
    from delgrad_core.training._dask_executor import DaskExecutor

    class Weird(BaseException):
        pass

    def train(settings, folder, should_stop=None):
        if settings["k"] == 1:
            raise Weird("weird")
        return {"test_accuracy": 0.5}

    trials = _pretend_trials(tmp_path, monkeypatch, train, 3)
    lines, outcome = [], []
    running = threading.Thread(target=lambda: outcome.append(DaskExecutor(cluster_here.scheduler_address).run(
        trials, lines.append)), daemon=True)  # (in a thread: to fail, not hang, if a result never comes)
    running.start()
    running.join(60)
    assert not running.is_alive() and outcome[0][0].failed == ["t1: Weird: weird"], lines
    assert sorted(lines) == ["FAILED t1: Weird: weird", "t0: test accuracy 50.00 %", "t2: test accuracy 50.00 %"]


@needs_dask
@pytest.mark.slow
def test_runs_a_worker_trained_on_other_data_are_left_out_and_fail_the_sweep(tmp_path, monkeypatch):
    """(a worker reading other data files, e.g. another DELGRAD_MNIST_DIR: its runs went into
    sweep.csv with status 0; only the next sweep noticed)"""
    from delgrad_core.training import _dask_executor
    from delgrad_core.training._sweep import SweepError

    trained = _dask_executor._train_until_stopped

    def on_other_data(settings, folder, stop_name):  # (the run records the digests of the data it read)
        metrics = trained(settings, folder, stop_name)
        if settings["seed"] == 1:
            path = Path(folder) / "metrics.json"
            recorded = json.loads(path.read_text())
            recorded["dataset_digests"]["train"] = "0" * 64
            path.write_text(json.dumps(recorded))
        return metrics

    monkeypatch.setattr(_dask_executor, "_train_until_stopped", on_other_data)
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None)
    lines = []
    try:
        with pytest.raises(SweepError) as raised:
            run_sweep({"epochs": 1}, [3], ["none"], 2, tmp_path / "sweep", executor="dask",
                      scheduler=cluster.scheduler_address, echo=lines.append)
    finally:
        cluster.close()
    assert "1 run(s) were trained by workers on other data than dataset 'yin_yang' gives here" in str(raised.value)
    assert "none-h3-s1-" in str(raised.value) and "(the train split(s))" in str(raised.value)
    with open(tmp_path / "sweep" / "sweep.csv") as handle:
        assert [row["seed"] for row in csv.DictReader(handle)] == ["0"]


def test_stop_signals_are_held_for_the_executor_to_handle_between_its_waits():
    """(a KeyboardInterrupt raised inside concurrent.futures.wait, which takes its futures'
    locks one by one, left one taken: the process pool's thread waited on it for ever, and a
    sweep of thousands of queued trials hung after SIGTERM)"""
    from delgrad_core.training._signals import stop_signals_deferred

    with stop_signals_deferred() as signals:
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # (nothing raised: recorded)
        for _ in range(2):  # (a second Ctrl-C is one of its own: it ends a sweep's running trials at once)
            assert signals
            with pytest.raises(KeyboardInterrupt):
                signals.handle()
        assert not signals
        signals.handle()  # (nothing left)
    with pytest.raises(KeyboardInterrupt):  # (one not handled within is handled at the end)
        with stop_signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
    with stop_signals_deferred() as signals:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        signals.drop()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_queued_trials_that_do_not_start_after_ctrl_c_are_one_line(tmp_path):
    """(a sweep of 20,000 queued trials printed a "not started" line for each, and took 21 s to end)"""
    from delgrad_core.training._executors import ProcessExecutor

    trials = plan_trials({"epochs": 1}, [3], ["none"], 6, tmp_path)

    def ctrl_c_once_one_finished():
        if any(trial.finished for trial in trials):
            raise KeyboardInterrupt

    lines = []
    unfinished, interrupted = ProcessExecutor(1, should_stop=ctrl_c_once_one_finished).run(trials, lines.append)
    finished = sum(trial.finished for trial in trials)
    assert interrupted and not unfinished.failed and 1 <= finished < 6, lines
    assert not [line for line in lines if "not started" in line and "queued run(s)" not in line], lines
    stopped = sum(": stopped after epoch" in line for line in lines)  # (the one running then)
    assert f"{6 - finished - stopped} queued run(s) not started" in lines, lines


@needs_dask
@pytest.mark.slow
def test_a_stop_signal_while_the_dask_client_closes_stops_the_sweep(tmp_path, monkeypatch):
    """(one that came while the cluster closed after the last trial was dropped: the sweep exited 0
    instead of 128 + the signal)"""
    from delgrad_core.training import _dask_executor
    from delgrad_core.training._trials import Trial

    monkeypatch.setattr(_dask_executor, "train_trial",
                        lambda settings, folder, should_stop=None: {"test_accuracy": 0.5})
    monkeypatch.setattr(Trial, "finished", property(lambda trial: True))
    connect = _dask_executor.DaskExecutor._connect

    def connect_with_a_ctrl_c_at_close(executor, n_trials):  # (this client only: another's __del__ closes it too)
        cluster, client = connect(executor, n_trials)
        closing, sent = client.close, []

        def close_after_a_ctrl_c(*args, **kwargs):
            if not sent:  # (once: its __del__ closes it again, at any time later)
                sent.append(os.kill(os.getpid(), signal.SIGINT))
                time.sleep(0.05)
            return closing(*args, **kwargs)

        client.close = close_after_a_ctrl_c
        return cluster, client

    monkeypatch.setattr(_dask_executor.DaskExecutor, "_connect", connect_with_a_ctrl_c_at_close)
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None)
    try:
        unfinished, interrupted = _dask_executor.DaskExecutor(cluster.scheduler_address).run(
            [Trial({}, "t0", tmp_path / "t0", {})], lambda line: None)
    finally:
        cluster.close()
    assert interrupted and not unfinished.failed
