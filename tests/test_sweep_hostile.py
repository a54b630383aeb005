"""Findings of a hostile test of `delgrad sweep`: finished trials trained on other data or another
device, damaged finished runs, and repeated --hidden/--delays options."""

import json
import re

import numpy as np
import pytest
from delgrad_core.testing import cli_runner

from delgrad_core.cli import main

SWEEP = ["sweep", "--delays", "none", "--seeds", "1", "--epochs", "1", "--jobs", "1"]  # (and --hidden)


def _finished(tmp_path, arguments=SWEEP, env=None):
    result = cli_runner().invoke(main, [*arguments, "--hidden", "3", "--out", str(tmp_path / "s")], env=env)
    assert result.exit_code == 0, result.output
    (folder,) = (tmp_path / "s" / "runs").iterdir()
    return folder


def test_a_finished_trial_trained_on_other_files_is_refused_before_any_trial_starts(tmp_path):
    from test_datasets_images import write_mnist_files

    first, second = tmp_path / "mn", tmp_path / "mn2"
    first.mkdir(), second.mkdir()
    write_mnist_files(first, np.random.default_rng(1))
    write_mnist_files(second, np.random.default_rng(2))
    arguments = [*SWEEP, "--dataset", "mnist", "--dataset-option", "size=7"]
    folder = _finished(tmp_path, arguments, env={"DELGRAD_MNIST_DIR": str(first)})
    before = (tmp_path / "s" / "sweep.csv").read_text()
    result = cli_runner().invoke(main, [*arguments, "--hidden", "3,4", "--out", str(tmp_path / "s")],
                                 env={"DELGRAD_MNIST_DIR": str(second)})
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "1 finished run(s) of this sweep were trained on other data than dataset 'mnist' gives now" \
           in result.output and f"{folder} (the train, validation, test split(s))" in result.output, result.output
    assert "a new --out, or remove those run folders" in result.output
    assert len(list((tmp_path / "s" / "runs").iterdir())) == 1  # no trial started (not the h4 one)
    assert (tmp_path / "s" / "sweep.csv").read_text() == before
    again = cli_runner().invoke(main, [*arguments, "--hidden", "3", "--out", str(tmp_path / "s")],
                                env={"DELGRAD_MNIST_DIR": str(first)})
    assert again.exit_code == 0 and "1 of 1 runs already finished" in again.output, again.output


def test_runs_recorded_without_digests_are_still_finished(tmp_path):
    folder = _finished(tmp_path)
    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics["dataset_digests"]) == {"train", "validation", "test"}
    changed = dict(metrics, dataset_digests=dict(metrics["dataset_digests"], validation="0" * 64))
    (folder / "metrics.json").write_text(json.dumps(changed))
    result = cli_runner().invoke(main, [*SWEEP, "--hidden", "3", "--out", str(tmp_path / "s")])
    assert result.exit_code == 1 and f"{folder} (the validation split(s))" in result.output, result.output
    del metrics["dataset_digests"]  # (an older run)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    result = cli_runner().invoke(main, [*SWEEP, "--hidden", "3", "--out", str(tmp_path / "s")])
    assert result.exit_code == 0 and "1 of 1 runs already finished, 0 to do" in result.output, result.output


@pytest.mark.parametrize("damage", ["network", "truncated metrics"])
def test_a_damaged_finished_run_is_named_before_any_trial_starts(tmp_path, damage):
    folder = _finished(tmp_path)
    if damage == "network":
        (folder / "network.npz").unlink()
        expected = f"{folder}: a finished run without its network.npz; remove its metrics.json to finish the run " \
                   "again from its checkpoint"
    else:
        (folder / "metrics.json").write_text((folder / "metrics.json").read_text()[:50])
        expected = f"{folder / 'metrics.json'}: not readable JSON"
    result = cli_runner().invoke(main, [*SWEEP, "--hidden", "3,4", "--out", str(tmp_path / "s")])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "1 finished run(s) of this sweep are damaged, no trial started: " in result.output
    assert expected in result.output, result.output
    assert len(list((tmp_path / "s" / "runs").iterdir())) == 1  # (the h4 trial did not start)
    (folder / "metrics.json").unlink()  # as the message says
    again = cli_runner().invoke(main, [*SWEEP, "--hidden", "3", "--out", str(tmp_path / "s")])
    assert again.exit_code == 0 and (folder / "network.npz").exists(), again.output


@pytest.mark.parametrize(("command", "option", "values"), [
    ("sweep", "--hidden", ("3", "4")), ("sweep", "--delays", ("none", "axonal")),
    ("train", "--hidden", ("3", "4")), ("train", "--delays", ("none", "axonal"))])
def test_a_repeated_list_option_is_a_usage_error_naming_it(tmp_path, command, option, values):
    """(the last one was kept silently, while a repeated --backend-option KEY is refused)"""
    arguments = [command, option, values[0], option, values[1], "--epochs", "1", "--out", str(tmp_path / "o")]
    result = cli_runner().invoke(main, arguments)
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}': given 2 times ('{values[0]}', '{values[1]}'); give one {option} with a " \
           f"comma-separated list, e.g. {option} {values[0]},{values[1]}" in result.output, result.output
    assert not (tmp_path / "o").exists()


def test_a_bad_backend_option_is_refused_also_when_every_trial_is_finished(tmp_path):
    """(with nothing left to run, the backend was never built: n_threads=0 ended with status 0)"""
    _finished(tmp_path)
    for value in ("0", "true"):
        result = cli_runner().invoke(main, [*SWEEP, "--hidden", "3", "--out", str(tmp_path / "s"),
                                            "--backend-option", f"n_threads={value}"])
        assert result.exit_code == 2 and "n_threads: expected an integer from 1 to" in result.output, result.output


def test_an_empty_out_is_refused_not_taken_as_the_working_folder(tmp_path, monkeypatch):
    """(delgrad sweep --out '' wrote runs/, sweep.csv and the plots into the working folder)"""
    monkeypatch.chdir(tmp_path)
    result = cli_runner().invoke(main, [*SWEEP, "--hidden", "3", "--out", ""])
    assert result.exit_code == 2 and "--out: expected a folder name, got ''" in result.output, result.output
    assert list(tmp_path.iterdir()) == []


def test_a_trial_whose_checkpoint_is_damaged_says_to_remove_its_folder(tmp_path):
    """(it said only "run the sweep again to retry them", which failed the same way every time;
    removing the checkpoint alone left "already holds a run (history.jsonl)")"""
    import shutil

    from delgrad_core.training._trials import plan_trials

    (trial,) = plan_trials({"epochs": 1, "delays": "none"}, [3], ["none"], 1, tmp_path / "s")
    trial.folder.mkdir(parents=True)
    (trial.folder / "checkpoint.npz").write_bytes(b"not a checkpoint")
    result = cli_runner().invoke(main, [*SWEEP, "--hidden", "3", "--out", str(tmp_path / "s")])
    assert result.exit_code == 1 and f"; remove its folder {trial.folder} to train it anew" in result.output, \
        result.output
    shutil.rmtree(trial.folder)
    again = cli_runner().invoke(main, [*SWEEP, "--hidden", "3", "--out", str(tmp_path / "s")])
    assert again.exit_code == 0, again.output


def test_the_python_sweep_takes_numpy_numbers_once_each_and_refuses_odd_axes(tmp_path):
    """(hidden_sizes=[2, 2] ran one trial and listed it twice in sweep.csv; np.int64 sizes were a
    JSON TypeError; n_seeds=np.int64(1) was "needs at least one ... seed"; delay_kinds="none"
    was read letter by letter; n_seeds=True was one seed)"""
    from delgrad_core import InvalidValueError
    from delgrad_core.training._sweep import plan_sweep

    names = [trial.name.rsplit("-", 1)[0] for trial in
             plan_sweep({"epochs": 1}, [2, np.int64(2), 3], ["none", "none"], np.int64(1), tmp_path / "s")]
    assert names == ["none-h2-s0", "none-h3-s0"]
    for axes, message in ((([2], "none", 1), "sweep: delay_kinds: expected a list of values, got 'none'"),
                          (([2], ["none"], True), "sweep: n_seeds: expected a whole number >= 1, got True"),
                          (([{2}], ["none"], 1), "sweep: hidden_sizes: expected whole numbers, the size of the "
                                                 "networks' one hidden layer, got {2}"),
                          # (a list: a sweep's folders, tables and figure name one hidden size and one delay kind;
                          # such a trial trained, then the summary failed with TypeError: unhashable type: 'list')
                          (([[3, 2]], ["none"], 1), "sweep: hidden_sizes: expected whole numbers, the size of the "
                                                    "networks' one hidden layer, got [3, 2]"),
                          (([2.0], ["none"], 1), "sweep: hidden_sizes: expected whole numbers"),
                          (([True], ["none"], 1), "sweep: hidden_sizes: expected whole numbers"),
                          (([3], [["axonal", "none"]], 1), "sweep: delay_kinds: expected names of delay kinds, one "
                                                           "for all layers of a network, got ['axonal', 'none']")):
        with pytest.raises(InvalidValueError, match=re.escape(message)):
            plan_sweep({"epochs": 1}, *axes, tmp_path / "s")


@pytest.mark.parametrize("blocker", ["file", "stray file", "dangling link"])
def test_a_trial_folder_a_run_cannot_start_in_is_refused_before_any_trial(tmp_path, blocker):
    """(a file at a trial's folder failed that trial after the others ran, advising "run the sweep
    again to retry them", which could never help)"""
    from delgrad_core import RunFolderError
    from delgrad_core.training._sweep import plan_sweep, run_sweep

    trials = plan_sweep({"epochs": 1}, [3], ["none"], 2, tmp_path / "s")
    folder = trials[1].folder
    folder.parent.mkdir(parents=True)
    if blocker == "file":
        folder.write_text("junk")
    elif blocker == "stray file":
        folder.mkdir()
        (folder / "notes.txt").write_text("mine")
    else:
        folder.symlink_to(tmp_path / "gone")
    reason = {"file": "exists and is not a folder", "stray file": "holds other files (notes.txt)",
              "dangling link": "a link to nothing, where the run's folder should be"}[blocker]
    with pytest.raises(RunFolderError, match=re.escape(f"1 trial folder(s) of this sweep cannot take their run, no "
                                                       f"trial started: {folder}: {reason}; move or remove")):
        run_sweep({"epochs": 1}, [3], ["none"], 2, tmp_path / "s", echo=lambda line: None)
    assert not trials[0].folder.exists()


def _trial_with_metrics(tmp_path, **changes):
    """The planned trial of a one-trial sweep, whose folder holds a finished run's metrics.json
    (with `changes`) and a network file."""
    from delgrad_core.training import config_with_defaults
    from delgrad_core.training._trials import plan_trials

    (trial,) = plan_trials({"epochs": 1}, [3], ["none"], 1, tmp_path / "s")
    config = config_with_defaults(trial.settings).resolved().to_dict()
    metrics = {"config": config, "test_accuracy": 0.5, "n_parameters": 21, "wall_seconds": 1.0, **changes}
    trial.folder.mkdir(parents=True)
    (trial.folder / "metrics.json").write_text(json.dumps(metrics))
    (trial.folder / "network.npz").write_bytes(b"")  # (only its presence is checked here)
    return trial


@pytest.mark.parametrize("damage", ["settings not a table", "accuracy above 1", "accuracy below 0"])
def test_a_finished_run_whose_metrics_are_not_a_runs_is_refused_as_damaged(tmp_path, damage):
    """A metrics.json whose settings are no table, or whose test accuracy is no fraction, is not
    the metrics of a finished run: refused before any trial starts (remove it to train again),
    not taken as a result nor as a run of other settings."""
    from delgrad_core import RunFolderError
    from delgrad_core.training._sweep import refuse_unusable_runs

    trial = _trial_with_metrics(tmp_path, **{"settings not a table": {"config": "edited"},
                                             "accuracy above 1": {"test_accuracy": 1.5},
                                             "accuracy below 0": {"test_accuracy": -0.5}}[damage])
    with pytest.raises(RunFolderError, match=re.escape(f"{trial.folder / 'metrics.json'}: not the metrics of a "
                                                       "finished run")):
        refuse_unusable_runs([trial])


@pytest.mark.parametrize("accuracy", [0, 1, 1.0])
def test_a_finished_run_whose_every_test_sample_was_wrong_or_right_is_taken(tmp_path, accuracy):
    """A test accuracy of exactly 0 or 1 is a finished run's (a row of the sweep's table), not a damaged one."""
    from delgrad_core.training._sweep import refuse_unusable_runs, sweep_rows

    trial = _trial_with_metrics(tmp_path, test_accuracy=accuracy)
    refuse_unusable_runs([trial], echo=lambda line: None)
    assert [row["test_accuracy"] for row in sweep_rows([trial])] == [accuracy]


@pytest.mark.parametrize("axes", [([2], ["none"], 0), ([], ["none"], 1), ([2], [], 1)])
def test_a_sweep_of_no_trials_is_refused(tmp_path, axes):
    """(0 seeds, or no hidden size or delay kind: a sweep that would run nothing and write an
    empty table as if it had finished)"""
    from delgrad_core import InvalidValueError
    from delgrad_core.training._sweep import plan_sweep

    with pytest.raises(InvalidValueError, match="^sweep: needs at least one hidden size, delay kind and seed$"):
        plan_sweep({"epochs": 1}, *axes, tmp_path / "s")


def test_a_sweep_of_more_than_100000_runs_is_refused_before_any_is_planned(tmp_path, monkeypatch):
    """(MAX_TRIALS: a SLURM array is far smaller; planning 10^9 seeds took all the memory there
    was, so the refusal must come before planning, which is replaced here by a stand-in)"""
    from delgrad_core import InvalidValueError
    from delgrad_core.training import _sweep

    planned = []
    monkeypatch.setattr(_sweep, "plan_trials", lambda *arguments: planned.append(arguments[3]) or [])
    with pytest.raises(InvalidValueError, match=r"^sweep: 1 hidden sizes x 2 delay kinds x 50001 seeds are 100,002 "
                                                r"runs; at most 100,000$"):
        _sweep.plan_sweep({"epochs": 1}, [3], ["none", "axonal"], 50_001, tmp_path / "s")
    assert planned == []
    _sweep.plan_sweep({"epochs": 1}, [3], ["none", "axonal"], 50_000, tmp_path / "s")  # (100,000: at most)
    assert planned == [50_000]


def test_finished_trials_of_another_device_are_left_out_and_a_mix_of_devices_is_an_error(tmp_path):
    """A device's identity is no trial setting (mock-hil's service chooses the chip; its address is
    result-neutral): a trial kept from an earlier sweep on another device is left out of the results
    beside the trials trained now, and a sweep whose finished runs came from two devices says so."""
    folder = _finished(tmp_path)
    metrics = json.loads((folder / "metrics.json").read_text())
    own_key = metrics["device_identity"]["calibration_key"]
    metrics["device_identity"]["calibration_key"] = "reference-elsewhere"
    (folder / "metrics.json").write_text(json.dumps(metrics))
    arguments = [*SWEEP[:4], "2", *SWEEP[5:], "--hidden", "3", "--out", str(tmp_path / "s")]
    result = cli_runner().invoke(main, arguments)
    assert result.exit_code == 1, result.output
    message = " ".join(result.output.split())
    assert f"1 run(s) were trained earlier on another device than the runs trained now and are left out of the " \
           f"results; remove those run folders and run the sweep again to train them on this device, or run the " \
           f"sweep into a new --out: {folder} (calibrated as 'reference-elsewhere', now as '{own_key}'" in message, \
        message
    assert "not comparable" not in message, message  # (the run left out is not one of a mix of devices)
    rows = (tmp_path / "s" / "sweep.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("none,3,1,"), rows  # (only the run trained now: seed 1)
    again = cli_runner().invoke(main, arguments)  # (nothing to train: the finished runs are compared)
    assert again.exit_code == 1, again.output
    message = " ".join(again.output.split())
    assert "the finished runs were trained on 2 devices (a service that owned another chip?), and their " \
           "accuracies are not comparable: 1 run(s) calibrated as 'reference-elsewhere' (e.g. " in message, message
    assert f"; 1 run(s) calibrated as '{own_key}' (e.g. " in message and message.endswith(
        ". Remove the run folders of the devices you do not want and run the sweep again"), message
    folder.joinpath("metrics.json").unlink()  # (removed, as advised: the run is trained again on this device)
    assert cli_runner().invoke(main, arguments).exit_code == 0


def test_a_mix_of_devices_of_one_calibration_key_names_their_digests(tmp_path):
    """Two devices with the same calibration key (calibrated again with other results) were both
    named "calibrated as KEY" in a sweep's device-mix error, which read as one device."""
    folder = _finished(tmp_path)
    metrics = json.loads((folder / "metrics.json").read_text())
    identity = metrics["device_identity"]
    own_digest, other_digest = identity["calibration_digest"], "f" * 64
    (folder / "metrics.json").write_text(json.dumps({**metrics, "device_identity": {
        **identity, "calibration_digest": other_digest}}))
    arguments = [*SWEEP[:4], "2", *SWEEP[5:], "--hidden", "3", "--out", str(tmp_path / "s")]
    assert "the same calibration key with other calibration contents" in cli_runner().invoke(main, arguments).output
    message = " ".join(cli_runner().invoke(main, arguments).output.split())  # (nothing to train: the mix error)
    for digest in (other_digest, own_digest):
        assert f"1 run(s) calibrated as '{identity['calibration_key']}' with calibration digest {digest[:12]} and " \
               "device options {}" in message, message


def test_a_sweep_whose_results_cannot_be_written_says_its_runs_are_kept_and_how_to_go_on(tmp_path, monkeypatch):
    """(a full disk while sweep.csv was written ended with "[Errno 28] No space left on device
    (writing ...)" alone, not saying that the finished runs were kept or what to do)"""
    from delgrad_core.training import _sweep

    written = _sweep.atomic_write_text

    def full_disk(path, *args, **kwargs):
        if path.name == "sweep.csv":
            raise OSError(28, "No space left on device")
        return written(path, *args, **kwargs)

    monkeypatch.setattr(_sweep, "atomic_write_text", full_disk)
    arguments = [*SWEEP, "--hidden", "3", "--out", str(tmp_path / "s")]
    result = cli_runner().invoke(main, arguments)
    assert result.exit_code == 1 and result.stderr.endswith(
        "Error: [Errno 28] No space left on device; the runs that finished are kept, each in its folder: run the same "
        "command again once the cause is removed, to train the others and write the results\n"), result.stderr
    monkeypatch.undo()
    result = cli_runner().invoke(main, arguments)
    assert result.exit_code == 0 and "1 of 1 runs already finished, 0 to do" in result.output, result.output
    assert (tmp_path / "s" / "sweep.csv").exists()


def test_a_sweeps_job_script_names_each_value_once_and_every_option_given(tmp_path):
    """The script runs the sweep of this command line: hidden sizes and delay kinds each once (a
    space after a comma is no part of a kind), --epochs and --backend passed on, --set values as
    JSON (keep_best=False would be read back as the text "False"); one trial is one array task."""
    import shlex

    script, out = tmp_path / "job.sh", tmp_path / "s"
    result = cli_runner().invoke(main, ["sweep", "--hidden", "4,4,5", "--delays", "none, axonal,none", "--seeds", "2",
                                        "--epochs", "2", "--backend", "reference", "--set", "keep_best=false",
                                        "--out", str(out), "--slurm-script", str(script)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{script}: 8 array tasks; submit with: sbatch ")
    assert shlex.split(script.read_text().splitlines()[-1]) == [
        "delgrad", "sweep", "--hidden", "4,5", "--delays", "none,axonal", "--seeds", "2", "--out", str(out),
        "--epochs", "2", "--backend", "reference", "--set", "keep_best=false", "--trial", "$SLURM_ARRAY_TASK_ID"]
    one = cli_runner().invoke(main, [*SWEEP[:-2], "--hidden", "4", "--out", str(out), "--slurm-script",
                                     str(tmp_path / "one.sh")])
    assert one.exit_code == 0 and one.stdout.startswith(f"{tmp_path / 'one.sh'}: 1 array task; submit"), one.output


def test_a_sweep_sets_the_seed_per_trial_not_by_set(tmp_path):
    result = cli_runner().invoke(main, [*SWEEP, "--hidden", "4", "--set", "seed=3", "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--set seed=...: the sweep sets seed per trial; give it with --seeds" in \
        result.stderr, result.output


@pytest.mark.parametrize("interrupted", [False, True])
def test_a_sweep_that_fails_or_is_interrupted_still_prints_the_table_of_its_finished_runs(tmp_path, monkeypatch,
                                                                                         interrupted):
    """(the table comes on standard output, the reason on standard error; an interrupted sweep
    ends with the status of its signal, 130 for Ctrl-C)"""
    from delgrad_core.training import _sweep

    def failing(*args, **kwargs):
        kind = _sweep.SweepInterrupted if interrupted else _sweep.SweepError
        raise kind("1 run(s) failed:\n  none-h4-s0: boom", table="TABLE OF FINISHED RUNS")

    monkeypatch.setattr(_sweep, "run_sweep", failing)
    result = cli_runner().invoke(main, [*SWEEP, "--hidden", "4", "--out", str(tmp_path)])
    assert result.exit_code == (130 if interrupted else 1), result.output
    assert result.stdout == "TABLE OF FINISHED RUNS\n"
    assert ("1 run(s) failed:\n  none-h4-s0: boom" if interrupted else "Error: 1 run(s) failed: none-h4-s0: boom") \
        in result.stderr


def test_a_job_script_that_cannot_be_written_is_not_said_to_keep_finished_runs(tmp_path, monkeypatch):
    """(no run was trained: the system's reason alone)"""
    import errno

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("delgrad_core.cli._sweep_cmd.atomic_write_text", full_disk)
    result = cli_runner().invoke(main, [*SWEEP[:-2], "--hidden", "4", "--out", str(tmp_path / "s"), "--slurm-script",
                                        str(tmp_path / "job.sh")])
    assert result.exit_code == 1 and "No space left on device" in result.output, result.output
    assert "runs that finished are kept" not in result.output


def test_a_local_sweep_whose_finished_runs_data_is_missing_here_stops_and_does_not_reuse_them(tmp_path):
    """`_runs_on_other_data`: only when the trials run elsewhere (a shared cluster) are data files
    missing here noted and left unchecked; a local sweep cannot check its finished runs' data
    without them, and stops (it did not write a table of runs it could not check)."""
    from test_datasets_images import write_mnist_files

    files, empty = tmp_path / "mn", tmp_path / "empty"
    files.mkdir(), empty.mkdir()
    write_mnist_files(files, np.random.default_rng(1))
    arguments = [*SWEEP, "--dataset", "mnist", "--dataset-option", "size=7"]
    _finished(tmp_path, arguments, env={"DELGRAD_MNIST_DIR": str(files)})
    before = (tmp_path / "s" / "sweep.csv").read_text()
    result = cli_runner().invoke(main, [*arguments, "--hidden", "3", "--out", str(tmp_path / "s")],
                                 env={"DELGRAD_MNIST_DIR": str(empty)})
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    assert "could not be checked here" not in result.output and str(empty) in result.output, result.output
    assert (tmp_path / "s" / "sweep.csv").read_text() == before


def _device(key: str) -> dict:
    return {"backend": "reference", "calibration_key": key, "calibration_digest": "0" * 64, "options": {}}


@pytest.mark.parametrize(("kept", "trained", "left_out"), [
    ([_device("a")], [_device("b"), _device("b")], {"kept0": "b"}),
    ([_device("a")], [_device("b"), _device("c")], {}),  # (the runs trained now disagree: nothing to compare with)
    ([_device("a")], [None], {}),  # (the runs trained now recorded no device)
    ([None, _device("a")], [_device("b")], {"kept1": "b"}),  # (a run from before runs recorded their device)
    ([_device("a")], [], {}),  # (nothing trained now)
], ids=["other device", "trained disagree", "trained recorded none", "kept recorded none", "nothing trained"])
def test_kept_runs_are_compared_with_the_one_device_the_runs_trained_now_recorded(kept, trained, left_out):
    """`_runs_on_other_devices`: the kept runs whose device differs from the one the trials trained
    now recorded; none if nothing was trained now or those trials disagree among themselves, and a
    run that recorded no device is not compared (docs/training.md: a kept run of another device is
    left out)."""
    from pathlib import Path
    from types import SimpleNamespace

    from delgrad_core.training._sweep import _runs_on_other_devices

    kept_trials = [SimpleNamespace(folder=Path(f"kept{i}")) for i in range(len(kept))]
    trained_trials = [SimpleNamespace(folder=Path(f"trained{i}")) for i in range(len(trained))]
    devices = {trial.folder: device for trial, device in zip(kept_trials + trained_trials, kept + trained)}
    changes = _runs_on_other_devices(devices, kept_trials, trained_trials)
    assert sorted(changes) == sorted(Path(folder) for folder in left_out)
    for folder, now in left_out.items():
        assert "'a'" in changes[Path(folder)] and f"'{now}'" in changes[Path(folder)], changes


def test_a_sweep_on_a_shared_cluster_leaves_the_data_check_of_finished_runs_to_where_the_data_is(tmp_path):
    """(`refuse_unusable_runs`, elsewhere: with --scheduler, data files missing here are noted and not
    checked, as the workers may read other files; it was not refused before the cluster was asked)"""
    pytest.importorskip("distributed", reason="needs the dask extra")
    from test_datasets_images import write_mnist_files

    files, empty = tmp_path / "mn", tmp_path / "empty"
    files.mkdir(), empty.mkdir()
    write_mnist_files(files, np.random.default_rng(1))
    data = ["--dataset", "mnist", "--dataset-option", "size=7"]
    _finished(tmp_path, [*SWEEP, *data], env={"DELGRAD_MNIST_DIR": str(files)})
    elsewhere = SWEEP[:-2]  # (without --jobs 1: a usage error beside --scheduler)
    result = cli_runner().invoke(main, [*elsewhere, *data, "--hidden", "3", "--scheduler", "tcp://127.0.0.1:1",
                                        "--out", str(tmp_path / "s")], env={"DELGRAD_MNIST_DIR": str(empty)})
    assert "note: the data of the finished runs could not be checked here" in result.output, result.output
