"""A run folder's history on resume (a checkpoint from another run, values of the wrong type,
garbage past the checkpoint), and a Trainer finished before its epochs or with fewer epochs set."""

import hashlib
import json
import re
import shutil

import numpy as np
import pytest
from _run_folders import TRAIN, file_digests
from delgrad_core.testing import cli_runner

import delgrad_core as dg
from delgrad_core._npz import NpzArchive, json_array, write_npz
from delgrad_core.cli import main
from delgrad_core.training import Trainer, TrainingConfig
from delgrad_core.training._history import epoch_metrics, history_digest
from delgrad_core.training._run_folder import STATE_KEY, RunFolder

SHORT = dict(hidden=4, delays="none", batch_size=250)


def _without_history_digest(folder) -> None:
    """Make the folder's checkpoint one of a version that recorded no digest of the history."""
    with NpzArchive(folder / "checkpoint.npz") as archive:
        arrays = {name: archive.array(name) for name in archive.names}
        state = archive.json("trainer_state.json")
    state.pop("history_digest", None)
    arrays["trainer_state.json"] = json_array(state)
    with open(folder / "checkpoint.npz", "wb") as handle:
        write_npz(handle, arrays)


def _copy(run, tmp_path):
    return shutil.copytree(run, tmp_path / "run")


def test_a_checkpoint_copied_from_another_run_is_refused_naming_both_files(finished_run, tmp_path):
    """(run A's checkpoint resumed on top of run B's history: rc 0, B's metrics.json said A's
    hidden size and seed, its epochs 1-2 were B's and epoch 3 continued A)"""
    other = tmp_path / "other"
    trained = cli_runner().invoke(main, ["train", "--hidden", "7", "--seed", "1", "--epochs", "2", "--no-progress",
                                         "--out", str(other)])
    assert trained.exit_code == 0, trained.output
    shutil.copy(finished_run / "checkpoint.npz", other / "checkpoint.npz")
    before = file_digests(other)
    result = cli_runner().invoke(main, ["train", "--out", str(other), "--resume", "--epochs", "3", "--no-progress"])
    message = (f"{other / 'history.jsonl'}: its first 2 lines are not the history {other / 'checkpoint.npz'} was "
               "written after (a checkpoint copied from another run, or an edited history); a run resumes from its "
               "own checkpoint and history: put back this run's checkpoint.npz")
    assert result.exit_code == 1 and message in result.output, result.output
    assert file_digests(other) == before  # (nothing trained, cut or removed)


def test_a_checkpoint_without_a_history_digest_still_resumes(finished_run, tmp_path):
    run = _copy(finished_run, tmp_path)
    _without_history_digest(run)
    result = cli_runner().invoke(main, [*TRAIN, "--epochs", "3", "--out", str(run), "--resume"])
    assert result.exit_code == 0, result.output
    assert [m["epoch"] for m in json.loads((run / "metrics.json").read_text())["epochs"]] == [1, 2, 3]
    with NpzArchive(run / "checkpoint.npz") as archive:  # (and records one from now on)
        assert isinstance(archive.json("trainer_state.json")["history_digest"], str)


@pytest.mark.parametrize("field, value, message", [
    ("train_loss", '"abc"', "line 1 has train_loss = 'abc', expected a finite number"),
    ("validation_loss", "NaN", "line 1 has validation_loss = nan, expected a finite number"),
    ("wall_seconds", "-Infinity", "line 1 has wall_seconds = -inf, expected a finite number"),
    ("validation_accuracy", "1" + "0" * 400, "line 1 has validation_accuracy = 1000"),
    ("skipped_steps", "1.5", "line 1 has skipped_steps = 1.5, expected a whole number >= 0"),
    ("guarded", "true", "line 1 has guarded = True, expected a whole number >= 0"),
    ("no_crossing", None, "line 1 lacks no_crossing"),
    ("train_accuracy", "2.0", "line 1 has train_accuracy = 2.0, expected a number in [0, 1]"),
    ("validation_accuracy", "-0.5", "line 1 has validation_accuracy = -0.5, expected a number in [0, 1]"),
    ("learning_rate_factor", "-1", "line 1 has learning_rate_factor = -1, expected a finite number >= 0"),
    ("wall_seconds", "-5.0", "line 1 has wall_seconds = -5.0, expected a finite number >= 0"),
], ids=["string", "nan", "infinity", "integer-beyond-floats", "fraction-count", "boolean-count", "missing",
        "accuracy-above-1", "negative-accuracy", "negative-rate", "negative-time"])
def test_history_values_of_the_wrong_type_are_refused_before_anything_is_written(finished_run, tmp_path, field,
                                                                                 value, message):
    """(a string value: a traceback in plotting after metrics.json and network.npz were written,
    stale plots left; NaN: copied into metrics.json as a bare NaN, invalid strict JSON; an accuracy of
    200 %: copied into it too).  An older checkpoint, without a digest of its history: only the
    values' checks can tell."""
    run = _copy(finished_run, tmp_path)
    _without_history_digest(run)
    lines = (run / "history.jsonl").read_text().splitlines()
    record = json.loads(lines[0])
    record[field] = "@"
    shown = json.dumps({name: v for name, v in record.items() if value is not None or name != field})
    lines[0] = shown.replace('"@"', value or "")
    (run / "history.jsonl").write_text("\n".join(lines) + "\n")
    before = file_digests(run)
    result = cli_runner().invoke(main, [*TRAIN, "--epochs", "3", "--out", str(run), "--resume"])
    assert result.exit_code == 1 and f"{run / 'history.jsonl'}: {message}" in result.output, result.output
    assert "put back the run's own history.jsonl" in result.output
    assert file_digests(run) == before


def test_a_history_read_back_is_checked_and_its_digest_is_that_of_its_file(finished_run):
    """The digest a checkpoint records is the SHA-256 of history.jsonl as written (one that left out a line let an
    edited first epoch resume); a field the history does not have, a negative count or a boolean for a number is
    refused naming the line."""
    folder = RunFolder(finished_run)
    text = (finished_run / "history.jsonl").read_bytes()
    records = [json.loads(line) for line in text.splitlines()]
    history = [epoch_metrics(record, number, folder) for number, record in enumerate(records, 1)]
    assert len(history) == 2 and history_digest(history) == hashlib.sha256(text).hexdigest()
    for change, message in (({"extra": 1}, "line 1 has an unknown field extra"),
                            ({"skipped_steps": -1}, "line 1 has skipped_steps = -1, expected a whole number >= 0"),
                            ({"train_loss": True}, "line 1 has train_loss = True, expected a finite number")):
        with pytest.raises(dg.FileFormatError, match=re.escape(message)):
            epoch_metrics({**records[0], **change}, 1, folder)


def test_garbage_past_the_checkpoint_is_cut_and_within_it_names_the_history(finished_run, tmp_path):
    """(bytes that are not UTF-8 appended after the checkpoint's epochs blocked the resume with
    "checkpoint.npz: inconsistent checkpoint or history (UnicodeDecodeError ...)")"""
    run = _copy(finished_run, tmp_path)
    history = run / "history.jsonl"
    kept = history.read_bytes()
    history.write_bytes(kept + b"\xff\xfe\n{\"epoch\": 3}\n\x00garbage")
    with Trainer(TrainingConfig(**SHORT, epochs=2), out_dir=run, resume=True) as trainer:
        assert [m.epoch for m in trainer.history] == [1, 2]
    assert history.read_bytes() == kept
    lines = kept.splitlines()
    history.write_bytes(lines[0] + b"\n\xff\xfe\n")
    with pytest.raises(dg.FileFormatError) as refused:
        Trainer(TrainingConfig(**SHORT, epochs=3), out_dir=run, resume=True)
    assert str(refused.value).startswith(f"{history}: line 2 is not valid JSON (UnicodeDecodeError: ")
    assert "checkpoint.npz" not in str(refused.value) and "put back the run's own history.jsonl" in str(refused.value)


def test_a_history_whose_last_newline_was_lost_gets_it_back_before_the_next_epoch_is_appended(finished_run,
                                                                                                 tmp_path):
    """(the resumed run appended epoch 3 to the line of epoch 2: no JSON Lines reader took the file,
    and the next resume was refused)"""
    run = _copy(finished_run, tmp_path)
    history = run / "history.jsonl"
    kept = history.read_bytes()
    history.write_bytes(kept.rstrip(b"\n"))
    with Trainer(TrainingConfig(**SHORT, epochs=3), out_dir=run, resume=True) as trainer:
        trainer.fit(progress=False)
    lines = history.read_bytes().split(b"\n")
    assert history.read_bytes().startswith(kept) and lines[-1] == b""
    assert [json.loads(line)["epoch"] for line in lines[:-1]] == [1, 2, 3]


def test_finish_refuses_a_run_stopped_before_its_epochs_and_says_how_to_end_it_there(tmp_path):
    """(finish() after fit() stopped at epoch 1 of 3 wrote a metrics.json of epochs 3 with
    epochs_completed 1, which `delgrad evaluate` and a sweep took for a finished run)"""
    out = tmp_path / "run"
    with Trainer(TrainingConfig(**SHORT, epochs=3), out_dir=out) as trainer:
        trainer.fit(progress=False, should_stop=lambda: trainer.epoch >= 1)
        message = (f"Trainer.finish: trained 1 of config.epochs = 3 epochs; call fit() to train the rest, or, to end "
                   f"the run at epoch 1, close this trainer and finish one that resumes its folder with epochs = 1 "
                   f"(delgrad train --out {out} --resume --epochs 1)")
        with pytest.raises(dg.InvalidValueError, match=re.escape(message)):
            trainer.finish()
    assert not (out / "metrics.json").exists()
    with Trainer(TrainingConfig(**SHORT, epochs=1), out_dir=out, resume=True) as trainer:
        trainer.finish()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["epochs"] == metrics["epochs_completed"] == len(metrics["epochs"]) == 1
    with Trainer(TrainingConfig(**SHORT, epochs=2)) as without_folder:
        without_folder.fit(progress=False, should_stop=lambda: without_folder.epoch >= 1)
        with pytest.raises(dg.InvalidValueError, match=r"trained 1 of config.epochs = 2 epochs; call fit\(\) to train "
                                                       r"the rest$"):
            without_folder.finish()


def test_epochs_lowered_after_the_trainer_was_built_are_refused(tmp_path):
    """(config.epochs lowered after fit was accepted: metrics.json recorded epochs 1 with two
    epoch records)"""
    with Trainer(TrainingConfig(**SHORT, epochs=2), out_dir=tmp_path / "run") as trainer:
        trainer.fit(progress=False)
        trainer.config.epochs = 1
        for call in (trainer.finish, trainer.save_checkpoint, lambda: trainer.fit(progress=False)):
            with pytest.raises(dg.InvalidValueError, match=re.escape(
                    "config.epochs was lowered to 1, but the trainer trained 2 epochs; epochs may only be raised (to "
                    "train on): set it to at least 2")):
                call()
        trainer.config.epochs = 3
        trainer.fit(progress=False, should_stop=lambda: True)  # (raised: allowed)
        trainer.config.epochs = 2  # (lowered again, to no fewer than trained: the run ends there)
        trainer.finish()
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["config"]["epochs"] == 2
    with Trainer(TrainingConfig(**SHORT, epochs=3)) as trainer:
        trainer.config.epochs = 2
        with pytest.raises(dg.InvalidValueError, match="lowered to 2, but the trainer was built for 3 epochs"):
            trainer.fit(progress=False)


def test_the_error_that_ends_a_claim_of_a_folder_is_not_replaced_by_one_of_its_clean_up(tmp_path, monkeypatch):
    """(a lack of memory, or a full disk, met again by the clean-up was told instead: "Cannot
    allocate memory: 'run'" for a failure of the run's plots)"""
    from pathlib import Path

    from delgrad_core.training._run_folder import folder_lock

    def no_memory(self):
        raise OSError(12, "Cannot allocate memory", str(self))

    with pytest.raises(ValueError, match="the real error"):
        with folder_lock(tmp_path / "run"):
            monkeypatch.setattr(Path, "iterdir", no_memory)
            raise ValueError("the real error")
    monkeypatch.undo()
    with folder_lock(tmp_path / "run"):  # (the lock was let go)
        pass


def test_a_write_that_fails_after_the_first_epoch_names_its_file_and_how_to_resume(tmp_path, monkeypatch):
    """(a full disk ended the run with "[Errno 28] No space left on device", naming neither the
    file nor how to go on, while the run looked finished)"""
    from delgrad_core._atomic import atomic_write
    from delgrad_core.training import _run

    def full_disk(path, *args, **kwargs):
        atomic_write(tmp_path / "elsewhere.png", lambda handle: (_ for _ in ()).throw(OSError(28, "No space left on "
                                                                                               "device")))

    monkeypatch.setattr(_run, "plot_run", full_disk)
    out = tmp_path / "run"
    result = cli_runner().invoke(main, [*TRAIN, "--epochs", "2", "--out", str(out)])
    assert result.exit_code == 1 and result.stderr.strip().endswith(
        f"Error: [Errno 28] No space left on device (writing {tmp_path / 'elsewhere.png'}); every epoch is trained and "
        f"saved, but not all the run's results are written: finish them with delgrad train --out {out} --resume once "
        "the cause is removed"), result.stderr
    assert not list(tmp_path.glob(".elsewhere.png*"))  # (its temporary file is removed)


def test_nothing_is_written_by_name_into_a_folder_that_replaced_the_claimed_one(tmp_path):
    """(a run folder moved aside and made anew mid-run: the run wrote on into the new folder,
    without its lock, and ended with status 0, leaving a history that starts at epoch 38)"""
    from delgrad_core._atomic import atomic_write_text
    from delgrad_core.training._run_folder import RunFolder, folder_lock

    run = tmp_path / "run"
    with folder_lock(run):
        atomic_write_text(run / "before.txt", "written")
        run.rename(tmp_path / "moved")
        run.mkdir()
        for write in (lambda: atomic_write_text(run / "after.txt", "lost"),
                      lambda: RunFolder(run).append_history({"epoch": 1})):
            with pytest.raises(dg.RunFolderError, match=f"{run}: the folder was moved, removed or replaced while this "
                                                        "process wrote in it"):
                write()
    assert sorted(path.name for path in run.iterdir()) == [] and (tmp_path / "moved" / "before.txt").exists()


@pytest.mark.parametrize(("code", "told"), [(5, True), (22, False)], ids=["EIO", "EINVAL"])
def test_a_failed_fsync_of_the_folder_is_told_one_the_file_system_refuses_is_not(tmp_path, monkeypatch, code, told):
    """(every error of the folder's fsync was swallowed: an I/O error left a rename that may not
    survive a crash, and the run reported success)"""
    import os
    import stat

    from delgrad_core._atomic import atomic_write_text

    fsync = os.fsync

    def failing_for_folders(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(code, os.strerror(code))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_for_folders)
    if told:
        with pytest.raises(OSError,
                           match=rf"Input/output error \(making the folder.s new files durable\): .{tmp_path}."):
            atomic_write_text(tmp_path / "file.txt", "text")
    else:
        atomic_write_text(tmp_path / "file.txt", "text")
    assert (tmp_path / "file.txt").read_text() == "text"


def test_a_claimed_folder_that_went_away_blocks_no_write_elsewhere(tmp_path, monkeypatch):
    """(its check ran before every atomic write of the process: a Trainer left open on a folder
    since removed, or a relative folder after a chdir, made every other write fail)"""
    from delgrad_core._atomic import atomic_write_text
    from delgrad_core.training._run_folder import folder_lock

    monkeypatch.chdir(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    with folder_lock("run"):
        monkeypatch.chdir(tmp_path / "elsewhere")
        atomic_write_text("note.txt", "relative, after a chdir")  # (not into the claimed folder)
        atomic_write_text(tmp_path / "run" / "inside.txt", "the claimed folder, by its real path")
        shutil.rmtree(tmp_path / "run")
        atomic_write_text(tmp_path / "other.txt", "another folder")
    assert (tmp_path / "elsewhere" / "note.txt").exists() and (tmp_path / "other.txt").exists()


@pytest.mark.parametrize("kind", ["pipe", "folder"])
@pytest.mark.parametrize("name, command", [("history.jsonl", "resume"), ("metrics.json", "evaluate"),
                                           ("metrics.json", "resume")])
def test_a_run_file_that_is_no_regular_file_is_named(finished_run, tmp_path, kind, name, command):
    """(a pipe as history.jsonl blocked --resume for good while it held the folder's lock, as a
    pipe as metrics.json would a sweep or evaluate; a folder there was "[Errno 21] Is a directory")"""
    import os
    import subprocess
    import sys

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / name).unlink()
    os.mkfifo(run / name) if kind == "pipe" else (run / name).mkdir()
    arguments = [*TRAIN, "--epochs", "3", "--out", str(run), "--resume"] if command == "resume" else \
        ["evaluate", str(run)]
    result = subprocess.run([sys.executable, "-m", "delgrad_core.cli", *arguments], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert " ".join(result.stderr.split()).endswith(
        f"Error: {run / name}: exists and is not a regular file (a folder, device, pipe or socket); a run writes its "
        "own file there: remove what is there, or choose another folder")


def test_a_network_is_compared_only_in_the_settings_given_and_per_neuron_values_show_their_range():
    """`other_network`: a setting the given ones leave out is not compared (with the defaults),
    and per-neuron thresholds that differ are shown as their range."""
    from delgrad_core.cli._run_network import other_network

    network = dg.Network.feedforward([4, 5, 3], neuron=dg.NeuronParameters(tau_m=1.0, tau_s=1.0), seed=0)
    network.layers[0].population.neuron = dg.NeuronParameters(threshold=np.array([1.0, 1.2, 1.4, 1.1, 1.3]),
                                                               tau_m=1.0, tau_s=1.0)  # (tau ratio 1, not 2)
    assert other_network({"hidden": 5}, network) == [] and other_network({}, network) == []
    assert other_network({"hidden": 5, "threshold": 1.0, "tau_ratio": 2.0}, network) == [
        "tau_ratio 2 against 1", "threshold 1 against 1..1.4"]


def test_a_run_without_a_recorded_network_digest_takes_its_network_file_as_saved(tmp_path, capsys):
    """(runs from before network digests were recorded: no note that the file changed)"""
    from delgrad_core.cli._run_network import check_run_network

    network = dg.Network.feedforward([4, 5, 3], seed=0)
    dg.save_network(network, tmp_path / "network.npz")
    settings = {"hidden": 5, "delays": "none", "tau_ratio": 2.0}
    assert check_run_network(tmp_path / "network.npz", settings, {}, network, "evaluated") is False
    assert capsys.readouterr().err == ""


def test_evaluate_tells_a_run_folders_network_file_changed_since_from_the_runs(finished_run, tmp_path):
    """(a network file of another architecture copied into a run folder was evaluated with the
    run's settings, and one of the same architecture was put down to a change of code)"""
    from delgrad_core._serialization import load_network, save_network

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    assert re.fullmatch(r"[0-9a-f]{64}", json.loads((run / "metrics.json").read_text())["network_digest"])
    untouched = cli_runner().invoke(main, ["evaluate", str(run)])
    assert untouched.exit_code == 0 and "note" not in untouched.stderr, untouched.output
    network = load_network(run / "network.npz")
    network.layers[0].projection.weights = -network.layers[0].projection.weights
    save_network(network, run / "network.npz")
    changed = cli_runner().invoke(main, ["evaluate", str(run)])
    message = " ".join(changed.stderr.split())
    assert changed.exit_code == 0, changed.output
    assert f"note: {run / 'network.npz'} is not the network the run saved (its content changed since): evaluated " \
           "as it is now" in message
    assert "code changed" not in message
    hidden = json.loads((run / "metrics.json").read_text())["config"]["hidden"]
    other = dg.Network.feedforward([4, hidden + 2, 3], seed=0)
    save_network(other, run / "network.npz")
    refused = cli_runner().invoke(main, ["evaluate", str(run)])
    assert refused.exit_code == 1, refused.output
    assert f"Error: {run / 'network.npz'}: not the network of the run its folder holds (the run's settings in " \
           f"metrics.json against the file: hidden [{hidden}] against [{hidden + 2}]); the folder's files were mixed " \
           "up or edited: to use this network, copy the file out of the run folder (evaluate then takes its settings " \
           "from --config)" in " ".join(refused.stderr.split())
    exported = cli_runner().invoke(main, ["export", str(run), str(tmp_path / "x.nir"), "--time-scale", "6e-6",
                                          "--represented"])  # (it represented the foreign file with the run's backend)
    assert exported.exit_code == 1 and "not the network of the run its folder holds" in exported.stderr, \
        exported.output
    assert not (tmp_path / "x.nir").exists()
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["config"]["hidden"] = "x"  # (the run's own settings damaged: named with their file)
    (run / "metrics.json").write_text(json.dumps(metrics))
    damaged = cli_runner().invoke(main, ["evaluate", str(run)])
    assert damaged.exit_code == 1 and f"Error: {run / 'metrics.json'}: config: hidden: " in damaged.stderr, \
        damaged.output


@pytest.mark.parametrize("text", ['{"config": {"epochs": 1}}', "[1, 2]", '"finished"'])
def test_a_metrics_json_without_a_test_accuracy_is_no_finished_run(tmp_path, text):
    """A run is finished when its metrics.json holds the final test accuracy (RunFolder.
    finished_metrics); any other JSON document there is not a finished run's summary."""
    (tmp_path / "metrics.json").write_text(text)
    assert RunFolder(tmp_path).finished_metrics() is None
    (tmp_path / "metrics.json").write_text('{"test_accuracy": 0.0}')  # (a silent network's: 0 is an accuracy)
    assert RunFolder(tmp_path).finished_metrics() == {"test_accuracy": 0.0}


def test_a_run_whose_history_line_failed_to_be_written_resumes_from_its_last_checkpoint(tmp_path):
    """_run_folder: an epoch is appended to the history before its checkpoint, so that on resume the history
    is cut back to the checkpoint's epoch (docs/training.md: an exception that leaves an epoch half done is
    resumed from the last checkpoint exactly; a checkpoint written before its line, which then failed, was
    of 2 epochs with a history of 1, and refused)."""
    trainer = Trainer(TrainingConfig(**SHORT, epochs=2, seed=3), out_dir=tmp_path)
    append = trainer.folder.append_history

    def a_full_disk_in_epoch_2(record):
        if record["epoch"] == 2:
            raise OSError(28, "No space left on device")
        append(record)

    trainer.folder.append_history = a_full_disk_in_epoch_2
    with pytest.raises(OSError, match="No space left on device"):
        trainer.fit(progress=False)
    trainer.close()
    with Trainer(TrainingConfig(**SHORT, epochs=2, seed=3), out_dir=tmp_path, resume=True) as resumed:
        assert resumed.epoch == 1 and [m.epoch for m in resumed.history] == [1]
        assert [m.epoch for m in resumed.fit(progress=False)] == [1, 2]


def test_a_history_line_nested_too_deeply_or_a_history_too_short_is_refused_naming_the_file(tmp_path):
    """The history is read back only as the JSON records of the checkpoint's epochs: a line nested
    too deeply for the JSON reader, or fewer lines than epochs, is a `FileFormatError` naming
    history.jsonl and what to do."""
    folder = RunFolder(tmp_path)
    folder.history_file.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(dg.FileFormatError, match=re.escape(f"{folder.history_file}: line 1 is not valid JSON (nested "
                                                           "too deeply); a run resumes only with the history")):
        folder.read_history(1)
    folder.history_file.write_text('{"epoch": 1}\n')
    assert folder.read_history(1) == [{"epoch": 1}]
    with pytest.raises(dg.FileFormatError, match=re.escape(f"{folder.history_file}: has 1 lines, the checkpoint "
                                                           "checkpoint.npz is of epoch 2; a run resumes only")):
        folder.read_history(2)


def test_an_epoch_record_that_is_not_strict_json_is_never_appended_to_the_history(tmp_path):
    """A record holding a value JSON cannot hold (NaN, an infinity) is refused, not written as a bare NaN that
    strict JSON readers of history.jsonl reject."""
    folder = RunFolder(tmp_path)
    folder.append_history({"epoch": 1, "train_loss": 0.5})
    for value in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="JSON"):
            folder.append_history({"epoch": 2, "train_loss": value})
    records = [json.loads(line) for line in folder.history_file.read_text().splitlines()]
    assert records == [{"epoch": 1, "train_loss": 0.5}]


def test_a_checkpoints_epoch_and_settings_are_read_checked(tmp_path):
    """`RunFolder.checkpoint_epoch`: 0 without a checkpoint; the epoch of a checkpoint saved before the first epoch
    (every count 0) or after one; a damaged checkpoint is a `FileFormatError` naming it, not an epoch."""
    folder = RunFolder(tmp_path)
    assert folder.checkpoint_epoch() == 0 and folder.checkpoint_settings() == {}
    state = {"epoch": 0, "epochs_recorded": 0, "best_epoch": 0, "elapsed_seconds": 0, "best_validation_accuracy": -1,
             "bump_level": None, "config": {"epochs": 3}}
    folder.write_checkpoint({STATE_KEY: json_array(state)})
    assert folder.checkpoint_epoch() == 0 and folder.checkpoint_settings() == {"epochs": 3}
    folder.write_checkpoint({STATE_KEY: json_array({**state, "epoch": 1, "epochs_recorded": 1, "best_epoch": 1})})
    assert folder.checkpoint_epoch() == 1
    folder.write_checkpoint({STATE_KEY: json_array({**state, "epoch": 2})})
    with pytest.raises(dg.FileFormatError, match=re.escape(f"{folder.checkpoint}: the state records 0 epochs of "
                                                           "history for 2 trained")):
        folder.checkpoint_epoch()
