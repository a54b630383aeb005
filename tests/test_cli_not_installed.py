"""A plugin that is not installed (or not any more) is named as such: never as if the user's run
or settings were wrong.  "Not installed" is simulated with a registry that lacks it (as the one
of a Python whose distribution was uninstalled)."""

import json
import re
import shutil
import sys

import pytest

from delgrad_core import PluginRegistry
from delgrad_core._plugins import registry as installed
from delgrad_core.cli import main
from delgrad_core.testing import cli_runner
from delgrad_core.training import TrainingConfig

from _run_folders import TRAIN


def _only(monkeypatch, *backends: str) -> PluginRegistry:
    """The core's registry with just `backends` of those installed, as the process-wide one."""
    plugins = PluginRegistry()
    for name in backends:
        plugins._tables["backend"][name] = installed().get("backend", name)
    monkeypatch.setattr("delgrad_core._plugins._default_registry", plugins)
    return plugins


@pytest.fixture
def reference_run(finished_run, tmp_path):
    """A copy of a finished run trained on the reference backend."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    return run


def test_resume_of_a_run_whose_backend_is_gone_says_so_not_damaged(reference_run, monkeypatch):
    _only(monkeypatch, "bss2-emulator")  # (the reference backend's distribution uninstalled)
    result = cli_runner().invoke(main, [*TRAIN, "--epochs", "3", "--out", str(reference_run), "--resume"])
    assert result.exit_code == 1, result.output
    message = " ".join(result.stderr.split())
    assert "damaged" not in message and "is not allowed" not in message
    assert (f"Error: {reference_run}/checkpoint.npz: the run was trained with backend 'reference', which is not "
            "installed (installed: bss2-emulator; 'reference' comes with the distribution delgrad-reference (pip "
            "install ./backends/reference from a source checkout)); the checkpoint is fine: install it, then resume "
            "again") in message
    assert (reference_run / "checkpoint.npz").exists()


def test_resume_and_evaluate_of_a_run_whose_backend_registration_was_refused_say_so(reference_run, monkeypatch):
    """(a backend installed, but whose registration was refused at load, e.g. for a typo in its
    training defaults, was said to be "not installed")"""
    plugins = _only(monkeypatch, "bss2-emulator")
    plugins.refused[("backend", "reference")] = "distribution 'delgrad-reference' registers it, but its " \
                                                "registration was refused: training_defaults: unknown setting(s) x"
    for command in ([*TRAIN, "--epochs", "3", "--out", str(reference_run), "--resume"],
                    ["evaluate", str(reference_run)]):
        result = cli_runner().invoke(main, command)
        message = " ".join(result.stderr.split())
        assert result.exit_code == 1 and "the run was trained with backend 'reference', which cannot be used: " \
            "distribution 'delgrad-reference' registers it, but its registration was refused: training_defaults: " \
            "unknown setting(s) x;" in message and "not installed" not in message, result.output
        # (it advised installing what is installed)
        assert "install it" not in message and "fine: mend or upgrade the distribution that registers it" in message


def test_resume_with_no_backend_installed_names_the_runs_backend(reference_run, monkeypatch):
    _only(monkeypatch)
    result = cli_runner().invoke(main, [*TRAIN, "--epochs", "3", "--out", str(reference_run), "--resume"])
    assert result.exit_code == 1, result.output
    message = " ".join(result.stderr.split())
    assert "backend 'reference', which is not installed (no backend is installed; 'reference' comes with the " \
           "distribution delgrad-reference" in message and "the checkpoint is fine" in message


def test_resume_of_a_run_whose_dataset_is_gone_says_so(reference_run, monkeypatch):
    plugins = _only(monkeypatch, "reference")
    del plugins._tables["dataset"]["yin_yang"]  # (as a dataset plugin's, uninstalled)
    result = cli_runner().invoke(main, [*TRAIN, "--epochs", "3", "--out", str(reference_run), "--resume"])
    assert result.exit_code == 1, result.output
    message = " ".join(result.stderr.split())
    assert "the run was trained with dataset 'yin_yang', which is not installed (installed: " in message
    assert "the checkpoint is fine" in message and "damaged" not in message


def test_evaluate_of_a_run_whose_backend_is_gone_says_so(reference_run, monkeypatch):
    _only(monkeypatch, "bss2-emulator")
    result = cli_runner().invoke(main, ["evaluate", str(reference_run)])
    assert result.exit_code == 1, result.output
    message = " ".join(result.stderr.split())
    assert "is not allowed" not in message
    assert (f"Error: {reference_run}: the run was trained with backend 'reference', which is not installed "
            "(installed: bss2-emulator; 'reference' comes with the distribution delgrad-reference") in message
    assert "the run folder is fine: install it to evaluate the run as trained, or name another with --backend" \
        in message


def _evaluated_naming(run, setting: str, name: str) -> str:
    """evaluate's refusal (exit 1) of `run` once its metrics.json names `name` as its `setting`, in
    one line."""
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["config"][setting] = name
    (run / "metrics.json").write_text(json.dumps(metrics))
    result = cli_runner().invoke(main, ["evaluate", str(run)])
    assert result.exit_code == 1, result.output
    return " ".join(result.stderr.split())


def test_evaluate_of_a_run_naming_a_backend_never_registered(reference_run):
    message = _evaluated_naming(reference_run, "backend", "no-such-backend")
    assert "the run was trained with backend 'no-such-backend', which is not installed (installed: " in message
    assert "reference" in message and "is not allowed" not in message


def test_evaluate_of_a_run_naming_an_encoder_never_registered(reference_run):
    """The run's encoder is checked as its backend and dataset are: not installed is no damaged
    run (with no option naming another encoder)."""
    message = _evaluated_naming(reference_run, "encoder", "no-such-encoder")
    assert f"Error: {reference_run}: the run was trained with encoder 'no-such-encoder', which is not installed " \
        "(installed: " in message, message
    assert "the run folder is fine: install it to evaluate the run (settings: the run's" in message, message


def test_a_run_whose_backend_is_not_installed_is_evaluated_on_another_named_with_backend(reference_run):
    """As the refusal advises ("or name another with --backend")."""
    metrics = json.loads((reference_run / "metrics.json").read_text())
    (reference_run / "metrics.json").write_text(json.dumps({**metrics, "config": {**metrics["config"],
                                                                                   "backend": "no-such-backend"}}))
    result = cli_runner().invoke(main, ["evaluate", str(reference_run), "--backend", "reference", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["backend"] == "reference"
    assert json.loads(result.stdout)["accuracy"] == metrics["test_accuracy"]


def test_a_resume_naming_an_installed_backend_for_one_gone_is_the_resume_conflict_not_a_damaged_checkpoint(
        reference_run, monkeypatch):
    """The checkpoint's settings are checked with the backend named here: they are fine, the
    resume refuses the change of backend as any resume does."""
    _only(monkeypatch, "bss2-emulator")
    result = cli_runner().invoke(main, [*TRAIN, "--epochs", "3", "--out", str(reference_run), "--resume", "--backend",
                                        "bss2-emulator"])
    assert result.exit_code == 1, result.output
    message = " ".join(result.stderr.split())
    assert "damaged" not in message and 'backend: "reference" in the checkpoint, "bss2-emulator" now' in message, \
        message


def test_a_resume_naming_a_backend_nothing_registers_is_a_usage_error_not_a_damaged_checkpoint(reference_run):
    """A name given here that nothing registers is the command line's error (status 2); the
    checkpoint's own settings are not checked against it."""
    result = cli_runner().invoke(main, [*TRAIN, "--epochs", "3", "--out", str(reference_run), "--resume", "--backend",
                                        "nosuch"])
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    assert "Error: backend: 'nosuch' is not installed; installed: " in message and "damaged" not in message, message


def test_train_with_no_backend_installed_says_where_the_reference_one_comes_from(monkeypatch, tmp_path):
    _only(monkeypatch)
    result = cli_runner().invoke(main, ["train", "--epochs", "1", "--out", str(tmp_path / "run")])
    assert result.exit_code == 1, result.output
    assert " ".join(result.stderr.split()) == (
        "Error: backend: 'reference' is not installed, nor any other backend; 'reference' comes with the "
        "distribution delgrad-reference (pip install ./backends/reference from a source checkout); the plugins "
        f"seen are those installed for {sys.executable}")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command", [["train", "--epochs", "1"], ["sweep", "--epochs", "1", "--hidden", "3", "--seeds",
                                                                     "1"], ["calibrate"]])
def test_a_command_without_the_default_backend_installed_is_not_a_usage_error(monkeypatch, tmp_path, command):
    """(with only the core it ended with status 1, with another backend beside it as a usage error,
    status 2, though nothing was named on the command line either time)"""
    plugins = _only(monkeypatch, "bss2-emulator")
    out = ["--out", str(tmp_path / "run")] if command[0] != "calibrate" else []
    result = cli_runner().invoke(main, [*command, *out])
    assert result.exit_code == 1 and "Usage:" not in result.stderr, result.output
    assert " ".join(result.stderr.split()).startswith(
        "Error: backend: 'reference' is not installed; installed: bss2-emulator; 'reference' comes with the "
        "distribution delgrad-reference (pip install ./backends/reference from a source checkout)")
    assert "it is the default backend: install it, or name an installed one with --backend" in result.stderr
    plugins.refused[("backend", "reference")] = "distribution 'delgrad-reference' registers it, but its registration " \
                                                "was refused: x"
    refused = cli_runner().invoke(main, [*command, *out])  # (installed, but refused: not "install it")
    assert refused.exit_code == 1 and "install it" not in refused.stderr, refused.output
    assert "it is the default backend: mend or upgrade the distribution that registers it, or name an installed " \
           "one with --backend" in " ".join(refused.stderr.split())
    if command[0] == "calibrate":
        return
    named = cli_runner().invoke(main, [*command, "--backend", "nosuch", "--out", str(tmp_path / "r")])
    assert named.exit_code == 2  # (a name given that nothing registers: the command line's error)
    assert not (tmp_path / "run").exists() and not (tmp_path / "r").exists()


def test_a_backend_name_that_is_not_registered_is_not_installed(monkeypatch):
    _only(monkeypatch, "reference")
    with pytest.raises(ValueError, match=r"^backend: 'bss2-emulator' is not installed; installed: reference; "
                                         r"'bss2-emulator' comes with the distribution delgrad-bss2 "):
        TrainingConfig(backend="bss2-emulator")
    seen = re.escape(f"; the plugins seen are those installed for {sys.executable}")  # (not a venv's own)
    with pytest.raises(ValueError, match=rf"^backend: 'chip9000' is not installed; installed: reference{seen}$"):
        TrainingConfig(backend="chip9000")
    with pytest.raises(ValueError, match=rf"^loss: 'hinged' is not installed; installed: crossentropy, squared{seen}$"):
        TrainingConfig(loss="hinged")
    with pytest.raises(ValueError, match=r"^delay_parametrisation: 'x' is not allowed; choose one of sigmoid, clip$"):
        TrainingConfig(delay_parametrisation="x")  # (a fixed choice, not a plugin's name)


def test_backends_with_none_installed_says_how_to_get_them(monkeypatch):
    _only(monkeypatch)
    result = cli_runner().invoke(main, ["backends"])
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ["NAME", "DISTRIBUTION", "VERSION", "DELAYS", "TAU", "RATIOS", "TIMES",
                                     "CALIBRATION", "LIMITS"]
    assert result.stderr.startswith("note: no backend is installed; delgrad's own backends come with the "
                                    "distributions delgrad-reference (reference), delgrad-bss2 (bss2-emulator), "
                                    "delgrad-hil (mock-hil): from a source checkout, pip install ./backends/reference")


def test_a_command_of_our_own_distribution_not_installed_is_named(monkeypatch):
    _only(monkeypatch, "reference")
    result = cli_runner().invoke(main, ["hil", "--help"])
    assert result.exit_code == 2
    assert ("Error: No such command 'hil': it is not installed; 'hil' comes with the distribution delgrad-hil (pip "
            "install ./backends/hil from a source checkout)") in " ".join(result.stderr.split())
    other = cli_runner().invoke(main, ["nosuch"])
    assert other.exit_code == 2 and "No such command 'nosuch'." in other.stderr


def test_completing_after_a_command_of_our_own_distribution_not_installed_is_no_error(monkeypatch):
    """The shell's completion parses leniently (click's resilient parsing): `delgrad hil <TAB>` with
    delgrad-hil not installed completes as after an unknown name, without the "it is not installed"
    usage error."""
    from click.shell_completion import ShellComplete

    _only(monkeypatch, "reference")
    completion = ShellComplete(main, {}, "delgrad", "_DELGRAD_COMPLETE")
    assert "train" in [item.value for item in completion.get_completions(["hil"], "")]


def test_calibrate_with_a_backend_of_ours_not_installed_says_where_it_comes_from(monkeypatch):
    _only(monkeypatch, "reference")
    result = cli_runner().invoke(main, ["calibrate", "--backend", "bss2-emulator"])
    assert result.exit_code != 0
    assert ("unknown backend 'bss2-emulator'; choose one of reference; 'bss2-emulator' comes with the distribution "
            "delgrad-bss2 (pip install ./backends/bss2 from a source checkout)") in " ".join(result.output.split())


def test_evaluate_of_a_run_whose_backend_failed_to_load_names_the_failure(reference_run, monkeypatch):
    """(it said "not installed ... install it" and left out the plugin that failed to load, as
    `delgrad train --backend` names it)"""
    plugins = _only(monkeypatch, "bss2-emulator")
    plugins._failures["delgrad-reference (entry point reference)"] = ["ImportError: libacme.so.3: cannot open"]
    for args in (["evaluate", str(reference_run)], [*TRAIN, "--epochs", "3", "--out", str(reference_run), "--resume"]):
        result = cli_runner().invoke(main, args)
        assert result.exit_code == 1, result.output
        assert "which is not installed" in result.stderr and "1 plugin failed to load (the likely cause):\n- " \
               "delgrad-reference (entry point reference): ImportError: libacme.so.3: cannot open" in result.stderr
        assert f"the plugins seen are those installed for {sys.executable}" in " ".join(result.stderr.split())
