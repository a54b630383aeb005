"""Output files and exit statuses of the commands under hostile conditions: stop signals whose
KeyboardInterrupt some code swallowed, file names at the file system's limit, links into missing
folders, bad settings in --config, damaged run folders."""

import errno
import json
import os
import signal
import sys
import time
import weakref

import numpy as np
import pytest
from click import ClickException, UsageError

import delgrad_core as dg
from delgrad_core import Calibration, ExecutionRequest, ExecutionResult, InvalidValueError
from delgrad_core._atomic import atomic_write, checked_before_commit
from delgrad_core._npz import write_npz
from delgrad_core._serialization import network_arrays
from delgrad_core.cli import main
from delgrad_core.cli._outputs import check_output_file, kept_if_made_meanwhile
from delgrad_core.testing import cli_runner

STOP_SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]


class _Referable:
    """An object a weakref can point to."""


def lose_a_stop_signal(number: int) -> None:
    """Receive stop signal `number` while a weakref's callback runs: CPython loses the handler's
    KeyboardInterrupt (as while HDF5 files are written), printing it as "Exception ignored"."""
    from delgrad_core import cli

    assert signal.getsignal(number) is cli._interrupt  # (the command's handler; else the signal ends pytest)

    def callback(_):
        signal.raise_signal(number)
        time.sleep(5)  # (the handler runs at once and ends the sleep)

    thing = _Referable()
    reference = weakref.ref(thing, callback)  # noqa: F841 (alive until the callback has run)
    del thing
    assert cli._received[-1] == number


def losing_a_stop_signal(function, number: int):
    """`function`, losing stop signal `number` once it has run."""
    def wrapper(*args, **kwargs):
        result = function(*args, **kwargs)
        lose_a_stop_signal(number)
        return result
    return wrapper


@pytest.fixture
def network_file(tmp_path):
    path = tmp_path / "net.npz"
    dg.save_network(dg.Network.feedforward([4, 5, 3], delay_kind="synaptic", seed=0), path)
    return path


@pytest.fixture(autouse=True)
def unraisable_to_stderr(monkeypatch):
    """Exceptions lost in callbacks printed to stderr, as outside pytest (which collects them)."""
    monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)


def _assert_interrupted(result, number: int) -> None:
    assert result.exit_code == 128 + number, result.output
    assert "interrupted" in result.stderr, result.output
    assert "Exception ignored" not in result.stderr and "Traceback" not in result.stderr, result.output


def _temporaries(folder):
    return sorted(path.name for path in folder.glob(".*.tmp"))


# -- stop signals whose KeyboardInterrupt was lost: nothing is written, the status is the signal's --------

@pytest.mark.parametrize("number", STOP_SIGNALS, ids=lambda number: signal.Signals(number).name)
def test_a_lost_stop_signal_during_export_replaces_nothing(tmp_path, network_file, monkeypatch, number):
    """(9 in 11 exports of a large network stopped while the NIR file was made wrote it and exited 0)"""
    pytest.importorskip("nir")
    import delgrad_core.nir

    monkeypatch.setattr(delgrad_core.nir, "to_nir", losing_a_stop_signal(delgrad_core.nir.to_nir, number))
    (tmp_path / "kept.nir").write_text("the user's file")
    result = cli_runner().invoke(main, ["export", str(network_file), str(tmp_path / "kept.nir"), "--time-scale", "1",
                                        "--force"])
    _assert_interrupted(result, number)
    assert (tmp_path / "kept.nir").read_text() == "the user's file" and _temporaries(tmp_path) == []


def test_a_lost_stop_signal_during_import_writes_nothing(tmp_path, network_file, monkeypatch):
    pytest.importorskip("nir")
    import delgrad_core.nir

    delgrad_core.nir.save_nir(dg.load_network(network_file), tmp_path / "net.nir", time_scale=1.0)
    monkeypatch.setattr(delgrad_core.nir, "from_nir", losing_a_stop_signal(delgrad_core.nir.from_nir, signal.SIGTERM))
    result = cli_runner().invoke(main, ["import", str(tmp_path / "net.nir"), str(tmp_path / "back.npz")])
    _assert_interrupted(result, signal.SIGTERM)
    assert not (tmp_path / "back.npz").exists() and _temporaries(tmp_path) == []


def test_a_lost_stop_signal_during_evaluate_reports_no_accuracy(network_file, monkeypatch):
    import delgrad_core.training._evaluation as evaluation

    monkeypatch.setattr(evaluation, "output_spike_times",
                        losing_a_stop_signal(evaluation.output_spike_times, signal.SIGINT))
    result = cli_runner().invoke(main, ["evaluate", str(network_file)])
    _assert_interrupted(result, signal.SIGINT)
    assert "accuracy" not in result.stdout


def test_a_lost_stop_signal_while_a_run_finishes_leaves_it_resumable(tmp_path, monkeypatch):
    """(the last epoch's test evaluation: no network.npz or metrics.json, the run finishes on resume)"""
    from delgrad_core.training._trainer import Trainer

    arguments = ["train", "--epochs", "1", "--hidden", "3", "--delays", "none", "--no-progress", "--out",
                 str(tmp_path / "run")]
    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "evaluate", _losing_in_finish(Trainer.evaluate, signal.SIGHUP))
        result = cli_runner().invoke(main, arguments)
    _assert_interrupted(result, signal.SIGHUP)
    assert ("every epoch is trained and saved, but not all the run's results are written: finish them with "
            f"delgrad train --out {tmp_path / 'run'} --resume") in " ".join(result.stderr.split())  # (it said "the
    # last finished epoch is saved: continue with ...", as if epochs were left)
    assert sorted(path.name for path in (tmp_path / "run").iterdir()) == [".lock", "checkpoint.npz", "history.jsonl"]
    resumed = cli_runner().invoke(main, [*arguments, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert (tmp_path / "run" / "metrics.json").exists()


def _losing_in_finish(evaluate, number: int):
    """`Trainer.evaluate`, losing stop signal `number` when it evaluates the test split at the end."""
    def wrapper(self, *args, **kwargs):
        result = evaluate(self, *args, **kwargs)
        if self.epoch == self.config.epochs:
            lose_a_stop_signal(number)
        return result
    return wrapper


def test_atomic_writes_check_before_they_replace_a_file(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def refuse():
        raise KeyboardInterrupt

    with checked_before_commit(refuse), pytest.raises(KeyboardInterrupt):
        atomic_write(target, lambda handle: handle.write(b"new"))
    assert target.read_bytes() == b"old" and _temporaries(tmp_path) == []
    atomic_write(target, lambda handle: handle.write(b"new"))  # (the check is gone with its context)
    assert target.read_bytes() == b"new"


# -- file names at the file system's limit -------------------------------------------------------------------

@pytest.mark.parametrize("name", ["q" * 238 + ".npz", "q" * 251 + ".npz", "é" * 125 + ".npz",
                                  "q" + "é" * 125 + ".npz"],
                         ids=["242 bytes", "255 bytes", "254 bytes of 2-byte characters", "255 bytes, 1 + 2 * 125 + 4"])
def test_any_name_the_file_system_accepts_can_be_written(tmp_path, network_file, name):
    """(names of 242 to 255 bytes: the temporary file's name was too long)"""
    assert len(os.fsencode(name)) <= os.pathconf(tmp_path, "PC_NAME_MAX")
    dg.save_network(dg.load_network(network_file), tmp_path / name)
    assert dg.load_network(tmp_path / name).sizes == [4, 5, 3]
    assert _temporaries(tmp_path) == []


def test_a_name_longer_than_the_file_system_allows_is_refused_naming_it(tmp_path, network_file):
    name = "q" * 252 + ".npz"
    with pytest.raises(InvalidValueError, match=f"{name}: the file name is 256 bytes long, more than the 255"):
        dg.save_network(dg.load_network(network_file), tmp_path / name)
    result = cli_runner().invoke(main, ["import", str(network_file), str(tmp_path / name)])
    assert result.exit_code == 2 and "Usage:" in result.output, result.output
    assert f"OUT: {tmp_path / name}: the file name is 256 bytes long" in result.stderr


def test_export_writes_a_name_of_255_bytes(tmp_path, network_file):
    pytest.importorskip("nir")
    out = tmp_path / ("x" * 251 + ".nir")
    result = cli_runner().invoke(main, ["export", str(network_file), str(out), "--time-scale", "1"])
    assert result.exit_code == 0 and out.exists(), result.output


# -- links into missing folders -------------------------------------------------------------------------

@pytest.mark.parametrize("force", [[], ["--force"]], ids=["", "force"])
@pytest.mark.parametrize("command", [["export", "--time-scale", "1"], ["import"]], ids=["export", "import"])
def test_a_link_into_a_missing_folder_is_refused_naming_the_link_and_its_target(tmp_path, network_file, command,
                                                                                 force):
    """(the link was written through, making its target's folders; a link to a file yet to be made
    in a folder that exists is written through, as before, and a missing folder is made, as for
    `train --out`, but not elsewhere)"""
    pytest.importorskip("nir")
    source = network_file
    if command == ["import"]:
        from delgrad_core.nir import save_nir

        source = tmp_path / "net.nir"
        save_nir(dg.load_network(network_file), source, time_scale=1.0)
    link, target = tmp_path / "link.out", tmp_path / "elsewhere" / "target"
    link.symlink_to(target)
    result = cli_runner().invoke(main, [*command, str(source), str(link), *force])
    assert result.exit_code == 2, result.output
    assert f"OUT: {link}: is a symbolic link to {target}, but the folder {target.parent} does not exist; make the " \
           "folder first, remove the link or write to another path" in " ".join(result.stderr.split())
    assert not target.parent.exists()
    target.parent.mkdir()
    written = cli_runner().invoke(main, [*command, str(source), str(link), *force])
    assert written.exit_code == 0 and link.is_symlink() and target.is_file(), written.output


def test_no_folders_are_made_through_a_link(tmp_path, network_file):
    link, target = tmp_path / "link.npz", tmp_path / "elsewhere" / "target.npz"
    link.symlink_to(target)
    with pytest.raises(InvalidValueError, match=f"link.npz: is a symbolic link to {target}, but the folder "
                                                f"{target.parent} does not exist"):
        dg.save_network(dg.load_network(network_file), link)
    assert not target.parent.exists()
    dg.save_network(dg.load_network(network_file), tmp_path / "made" / "here.npz")  # (a path's own folders are made)
    assert (tmp_path / "made" / "here.npz").is_file()
    (tmp_path / "a-file").touch()
    (tmp_path / "into-a-file.npz").symlink_to(tmp_path / "a-file" / "target.npz")
    with pytest.raises(InvalidValueError, match=f"the folder {tmp_path / 'a-file'} is not a folder"):
        dg.save_network(dg.load_network(network_file), tmp_path / "into-a-file.npz")


def test_a_loop_of_links_is_refused_naming_it(tmp_path, network_file):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(InvalidValueError, match="a: is a loop of symbolic links"):
        dg.save_network(dg.load_network(network_file), tmp_path / "a")


# -- check_output_file and kept_if_made_meanwhile, the checks every command's OUT goes through ----------

def _deep_folder(tmp_path) -> str:
    """A folder that exists, its absolute path 3,800-4,000 bytes long."""
    folder = str(tmp_path) + ("/" + "d" * 200) * 19
    os.makedirs(folder)
    return folder


def test_an_existing_folder_at_an_output_name_is_refused(tmp_path):
    (tmp_path / "out.nir").mkdir()
    with pytest.raises(UsageError, match="^OUT: .*out.nir exists and is not overwritten; remove it or choose another "
                                         "name; --force replaces it$"):
        check_output_file(tmp_path / "out.nir", "OUT", force=False)


@pytest.mark.parametrize("command", ["export", "import"])
@pytest.mark.parametrize("out", ["", "  "])
def test_an_empty_output_name_is_a_usage_error_naming_out(tmp_path, network_file, monkeypatch, command, out):
    """(an empty OUT was the working folder ".", refused as "exists and is not a regular file", status 1)"""
    monkeypatch.chdir(tmp_path)
    source = network_file
    if command == "import":
        source = tmp_path / "net.nir"
        result = cli_runner().invoke(main, ["export", str(network_file), str(source), "--time-scale", "1e-3"])
        assert result.exit_code == 0, result.output
    arguments = [command, str(source), out] + (["--time-scale", "1e-3"] if command == "export" else [])
    result = cli_runner().invoke(main, arguments)
    assert result.exit_code == 2 and result.output.endswith(f"Error: OUT: expected a file path, got {out!r}\n"), \
        result.output
    with pytest.raises(InvalidValueError, match="^expected a file path to write, got ''$"):
        dg.save_network(dg.load_network(network_file), "")


def test_an_output_name_linked_to_the_input_is_the_input(tmp_path, network_file):
    (tmp_path / "link.npz").symlink_to(network_file)
    with pytest.raises(UsageError, match="link.npz is also the command's input"):
        check_output_file(tmp_path / "link.npz", "OUT", force=True, inputs=[network_file])


def test_a_link_left_meanwhile_at_an_output_name_is_kept_though_it_leads_nowhere(tmp_path):
    out, nowhere = tmp_path / "out.npz", tmp_path / "nowhere"
    free = check_output_file(out, "OUT", force=False)
    with pytest.raises(ClickException, match="was written by another process meanwhile"):
        with kept_if_made_meanwhile(out, "OUT", free=free, force=False):
            out.symlink_to(nowhere)
            atomic_write(out, lambda handle: handle.write(b"mine"))
    assert os.readlink(out) == str(nowhere) and not nowhere.exists()


def test_a_link_to_a_path_longer_than_the_file_system_allows_is_refused(tmp_path):
    folder = _deep_folder(tmp_path)
    target = folder + "/" + "x" * (4082 - len(folder) - 1)  # (4082 bytes: its temporary file's path is too long)
    (tmp_path / "link.npz").symlink_to(target)
    with pytest.raises(UsageError, match="is 4082 bytes long, more than the 4081 the file system allows"):
        check_output_file(tmp_path / "link.npz", "OUT", force=False)


def test_a_relative_output_name_is_measured_from_the_current_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(_deep_folder(tmp_path))
    size = len(os.getcwd()) + 1 + 250
    with pytest.raises(UsageError, match=f"is {size} bytes long, more than the 4081 the file system allows"):
        check_output_file("x" * 250, "OUT", force=False)


# -- exit statuses ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("setting", "message"), [
    ('t_early = "x"', "t_early: expected a finite number >= 0, got 'x'"),
    ("epochs = -5", "epochs: expected an integer >= 1, got -5"),  # (checked as by train, though not used)
])
def test_a_bad_setting_in_evaluates_config_is_a_usage_error(tmp_path, network_file, setting, message):
    (tmp_path / "c.toml").write_text(setting + "\n")
    result = cli_runner().invoke(main, ["evaluate", str(network_file), "--config", str(tmp_path / "c.toml")])
    assert result.exit_code == 2 and "Usage:" in result.output and message in result.stderr, result.output


def test_evaluates_config_help_says_all_settings_are_checked():
    result = cli_runner().invoke(main, ["evaluate", "--help"])
    assert "all its settings are checked" in " ".join(result.output.split())


def test_calibrates_seed_is_a_usage_error_naming_the_option():
    result = cli_runner().invoke(main, ["calibrate", "--seed", "-5"])
    assert result.exit_code == 2 and "Invalid value for '--seed': -5 is not in the range" in result.stderr, \
        result.output


@pytest.mark.parametrize("accuracy", [None, "high", 1.5, True])
def test_a_run_folder_with_a_damaged_test_accuracy_is_refused_naming_its_metrics(tmp_path, network_file, accuracy):
    """(null was evaluated as a finished run; `delgrad sweep` refuses it as damaged)"""
    run = tmp_path / "run"
    run.mkdir()
    (run / "network.npz").write_bytes(network_file.read_bytes())
    (run / "metrics.json").write_text(json.dumps({"test_accuracy": accuracy, "config": {}}))
    result = cli_runner().invoke(main, ["evaluate", str(run)])
    assert result.exit_code == 1, result.output
    assert result.stderr.strip() == (f"Error: {run / 'metrics.json'}: not the metrics of a finished run "
                                     f"(test_accuracy: expected a number in [0, 1], got {json.dumps(accuracy)}); a "
                                     "damaged or edited file")


# -- messages ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("field", "value", "shown"), [("tau_m", -1.0, "tau_m: must be > 0, got min -1.0$"),
                                                       ("threshold", 0.0, "threshold: must be > 0, got min 0.0$")])
def test_a_bad_neuron_parameter_in_a_file_is_shown_as_a_plain_number(tmp_path, network_file, field, value, shown):
    """(it was shown as np.float64(-1.0))"""
    arrays = network_arrays(dg.load_network(network_file))
    arrays[f"layers.0.neuron.{field}"] = np.array(value)
    with open(tmp_path / "bad.npz", "wb") as handle:
        write_npz(handle, arrays)
    with pytest.raises(dg.FileFormatError, match=shown):
        dg.load_network(tmp_path / "bad.npz")


def test_export_takes_a_run_folder_as_its_network(tmp_path, network_file):
    pytest.importorskip("nir")
    run = tmp_path / "run"
    run.mkdir()
    refused = cli_runner().invoke(main, ["export", str(run), str(tmp_path / "out.nir"), "--time-scale", "1"])
    assert refused.exit_code == 2 and f"{run} is a folder without network.npz: give a network file (.npz) or the " \
           "folder of a finished run" in refused.stderr, refused.output
    (run / "network.npz").write_bytes(network_file.read_bytes())
    result = cli_runner().invoke(main, ["export", str(run), str(tmp_path / "out.nir"), "--time-scale", "1"])
    assert result.exit_code == 0 and (tmp_path / "out.nir").is_file(), result.output


@pytest.mark.parametrize("kind", [ExecutionRequest, ExecutionResult, Calibration])
def test_from_bytes_refuses_a_file_name(kind):
    """(a str was read as a path: a bare FileNotFoundError)"""
    with pytest.raises(InvalidValueError, match=r"data: expected the bytes of a delgrad [\w ]+ \(or a readable "
                                                "binary file\\), got str"):
        kind.from_bytes("abc")


def test_a_temporary_file_that_cannot_be_made_is_named_after_the_file_to_write(tmp_path, monkeypatch):
    """(the error named the hidden temporary file)"""
    def refuse(dir, prefix, suffix):
        raise PermissionError(errno.EACCES, "Permission denied", os.path.join(dir, f"{prefix}abcdefgh{suffix}"))

    monkeypatch.setattr("delgrad_core._atomic.tempfile.mkstemp", refuse)
    with pytest.raises(PermissionError) as caught:
        atomic_write(tmp_path / "out.bin", lambda handle: handle.write(b"new"))
    assert caught.value.filename == str(tmp_path / "out.bin") and "temporary file" in caught.value.strerror


def test_a_network_whose_neurons_a_backend_changed_did_not_run_as_stored():
    """evaluate's note of what a backend's represent() changed counts neuron parameters too (its
    note that another backend "ran the trained parameters as stored" looked at weights and delays
    only, and a represent() that changed thresholds alone got no note at all)."""
    from delgrad_core.cli._evaluate_cmd import _changes

    network = dg.Network.feedforward([4, 5, 3], seed=0)
    assert _changes(network, network.frozen_copy()) is None
    same = dg.Network.feedforward([4, 5, 3], seed=0)
    same.layers[0].population.neuron = dg.NeuronParameters(threshold=[1.0] * 5)  # (once, or per neuron: equal)
    assert _changes(network, same) is None
    changed = dg.Network.feedforward([4, 5, 3], seed=0)
    changed.layers[0].population.neuron = dg.NeuronParameters(threshold=[1.0, 1.0, 1.1, 1.25, 1.0], tau_m=2.5)
    assert _changes(network, changed) == "2 of 8 thresholds changed, by up to 0.25; 5 of 8 membrane time constants " \
        "changed, by up to 0.5 tau_s"


# -- durability and permissions of atomic writes ---------------------------------------------
def test_an_atomic_write_syncs_its_file_before_the_rename_and_the_folder_after_it(tmp_path, monkeypatch):
    """delgrad_core/_atomic.py: "write to a temporary file beside the target, fsync it, rename it
    over the target, fsync the directory": after a normal return the new file survives a power cut."""
    import stat

    steps = []
    fsync, replace = os.fsync, os.replace

    def recording_fsync(fd):
        steps.append(("fsync", "folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"))
        fsync(fd)

    def recording_replace(source, target):
        steps.append(("replace", os.path.basename(target)))
        replace(source, target)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", recording_replace)
    atomic_write(tmp_path / "out.bin", lambda handle: handle.write(b"new"))
    assert steps == [("fsync", "file"), ("replace", "out.bin"), ("fsync", "folder")]
    assert (tmp_path / "out.bin").read_bytes() == b"new"


def test_an_atomic_write_gives_its_file_the_usual_permissions_not_those_of_a_temporary_file(tmp_path):
    """delgrad_core/_atomic.py: "Files get the usual permissions (0666 minus the umask), not the
    0600 of temporary files"."""
    umask = os.umask(0)
    os.umask(umask)
    path = atomic_write(tmp_path / "out.bin", lambda handle: handle.write(b"new"))
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # (0644 under the usual umask 022; 0600 without the chmod)


def test_an_atomic_write_to_a_pipe_is_refused_and_leaves_the_pipe(tmp_path):
    """delgrad_core/_atomic.py: "a device, pipe or socket at `path` is refused (a rename would
    replace it with a file)"."""
    import stat

    fifo = tmp_path / "out.bin"
    os.mkfifo(fifo)
    with pytest.raises(InvalidValueError, match="exists and is not a regular file"):
        atomic_write(fifo, lambda handle: handle.write(b"new"))
    assert stat.S_ISFIFO(fifo.stat().st_mode) and _temporaries(tmp_path) == []
