"""`--set KEY=VALUE` of `delgrad train` and `delgrad sweep`, and run folders whose metrics.json
holds no settings."""

import json
import shutil

import pytest
from _run_folders import TRAIN

from delgrad_core.cli import main
from delgrad_core.testing import cli_runner

SWEEP = ["sweep", "--hidden", "3", "--delays", "none", "--seeds", "1"]


def _metrics(folder) -> dict:
    return json.loads((folder / "metrics.json").read_text())


def test_set_gives_any_setting_over_the_config_files(tmp_path):
    (tmp_path / "c.toml").write_text('weight_lr = 0.005\ngradient_slope = "observed"\nkeep_best = false\n')
    result = cli_runner().invoke(main, [*TRAIN, "--epochs", "1", "--config", str(tmp_path / "c.toml"),
                                        "--set", "weight_lr=0.01", "--set", "weight_init_mean=[1.0,0.075]",
                                        "--set", "keep_best=false", "--set", "tau_ratio=1",
                                        "--set", "gradient_slope=nominal", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    config = _metrics(tmp_path / "run")["config"]
    assert (config["weight_lr"], config["weight_init_mean"], config["keep_best"], config["tau_ratio"],
            config["gradient_slope"]) == (0.01, [1.0, 0.075], False, 1.0, "nominal")
    assert f"note: --set weight_lr=0.01 replaces weight_lr = 0.005 of {tmp_path / 'c.toml'}\n" in result.stderr
    assert "note: --set gradient_slope=nominal replaces gradient_slope = 'observed' of" in result.stderr
    assert "keep_best" not in result.stderr  # (the file's own value)


_REFUSED = [  # (both commands)
    (["--set", "wieght_lr=0.1"], "Error: --set: wieght_lr is not a setting (did you mean weight_lr?); the settings "
                                 "(docs/training.md): adam_beta1, adam_beta2, "),
    (["--set", "colour=1"], "Error: --set: colour is not a setting; the settings (docs/training.md): adam_beta1, "),
    (["--set", "weight_lr"], "Error: --set: expected KEY=VALUE with KEY an identifier, got 'weight_lr'"),
    (["--set", "weight_lr=0.1", "--set", "weight_lr=0.2"],
     "Error: --set: weight_lr given twice (0.1 and 0.2); give it once"),
    (["--set", "weight_lr=abc"], "Error: weight_lr: expected a number > 0 and <= 10, or unset, got 'abc'"),
    (["--set", 'encoder_options={"repeat": 5, "repeat": 2}'],
     "Error: --set: encoder_options: 'repeat' given twice in one table; give it once"),
    (["--set", "keep_best=yes"], "Error: keep_best: expected true or false, got 'yes'"),
    (["--epochs", "1", "--set", "epochs=6"], "Error: --set epochs=6: epochs is given by --epochs too; give it once"),
    (["--backend", "reference", "--set", "backend=reference"],
     "Error: --set backend=reference: backend is given by --backend too; give it once"),
    (["--backend-option", "n_threads=1", "--set", 'backend_options={"n_threads": 1}'],
     'Error: --set backend_options={"n_threads": 1}: backend_options is given by --backend-option too; give it once'),
    (["--dataset-option", "size=7", "--set", "dataset_options={}"],
     "Error: --set dataset_options={}: dataset_options is given by --dataset-option too; give it once"),
    # (thousands of nested brackets were a RecursionError traceback)
    (["--set", "backend_options=" + '{"a":' * 3000 + "1" + "}" * 3000],
     "Error: --set: backend_options: JSON nested too deeply to read"),
    (["--backend-option", "n_threads=" + "[" * 3000 + "]" * 3000],
     "Error: Invalid value for '--backend-option': --backend-option: n_threads: JSON nested too deeply to read"),
]


@pytest.mark.parametrize(("options", "said"), [
    ('loss_options={"deltaa": 0.3}', "loss_options: loss 'squared': unknown parameter(s) deltaa (did you mean delta? "
                                     "It is the setting loss_delta); allowed: (none); settings of their own: "
                                     "loss_delta"),
    ('encoder_options={"repat": 2}', "encoder_options: encoder 'latency': unknown parameter(s) repat (did you mean "
                                     "repeat?); allowed: repeat, pairs; settings of their own: t_early, t_late"),
    ('encoder_options={"zz": 1, "x y": 1, "yy": 1, "repat": 2, "xx": 1}',
     "encoder_options: encoder 'latency': unknown parameter(s) repat, 'x y', xx and 2 more (did you mean repeat?); "
     "allowed: repeat, pairs; settings of their own: t_early, t_late"),
], ids=["loss", "encoder", "several"])
def test_an_unknown_component_option_names_only_options_allowed_and_the_settings_of_the_others(tmp_path, options,
                                                                                               said):
    """(the hint and the allowed list named delta, which loss_options then refused: "set loss_delta instead")"""
    result = cli_runner().invoke(main, [*TRAIN, "--epochs", "1", "--set", options, "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and result.stderr.endswith(f"\nError: {said}\n"), result.stderr


def test_a_training_setting_in_a_components_section_of_a_config_file_is_named_as_a_setting_of_its_own(tmp_path):
    """Of several, the first in alphabetical order is named, with where it belongs."""
    config = tmp_path / "c.toml"
    config.write_text("[loss]\nseed = 7\nepochs = 1\n")
    result = cli_runner().invoke(main, [*TRAIN, "--config", str(config), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and result.stderr.endswith(
        f"Error: {config}: loss_options: loss 'squared' has no parameter epochs; epochs is a training setting of its "
        "own (in a config file: in its own section, not [loss])\n"), result.stderr


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_a_bad_option_of_a_config_files_section_names_the_file(tmp_path, command):
    """A component's option from the file is checked after the file is read (beside --backend and
    the like): its error named neither the file nor the closest option."""
    config = tmp_path / "c.toml"
    config.write_text("[encoder]\nrepet = 5\n[backend]\nn_thread = 1\n")
    base = [*TRAIN, "--epochs", "1"] if command == "train" else [*SWEEP, "--epochs", "1"]
    result = cli_runner().invoke(main, [*base, "--config", str(config), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and f"Error: {config}: " in result.stderr and \
        "unknown parameter(s) repet (did you mean repeat?)" in result.stderr, result.stderr
    config.write_text("[backend]\nn_threads = 'x'\n")  # (a bad value, refused when the backend is built)
    result = cli_runner().invoke(main, [*base, "--config", str(config), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and f"Error: {config}: backend_options: backend 'reference': n_threads: expected an " \
        "integer" in result.stderr, result.stderr
    config.write_text("[backend]\nn_threads = 1\n")  # (the command line's options are not the file's)
    result = cli_runner().invoke(main, [*base, "--config", str(config), "--backend-option", "n_thread=1",
                                        "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "Error: backend_options: backend 'reference': unknown option(s) n_thread (did " \
        "you mean n_threads?)" in result.stderr, result.stderr


@pytest.mark.parametrize(("arguments", "message"), [
    *_REFUSED,
    (["--set", "hidden=[4,3]"], "Error: --set hidden=[4, 3]: hidden is given by --hidden too; "),  # (TRAIN's)
    (["--set", "delays=none"], "Error: --set delays=none: delays is given by --delays too; "),
    (["--tau-ratio", "1", "--set", "tau_ratio=1"], "Error: --set tau_ratio=1: tau_ratio is given by --tau-ratio too"),
])
def test_train_refuses_unknown_names_bad_values_and_settings_with_options_of_their_own(tmp_path, arguments, message):
    epochs = [] if "--epochs" in arguments else ["--epochs", "1"]
    result = cli_runner().invoke(main, [*TRAIN, *epochs, *arguments, "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines()[-1].startswith(message), result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("arguments", "message"), [
    *_REFUSED,
    (["--set", "hidden=4"], "Error: --set hidden=...: the sweep sets hidden per trial; give it with --hidden"),
    (["--set", "delays=axonal"], "Error: --set delays=...: the sweep sets delays per trial; give it with --delays"),
    (["--set", "seed=2"], "Error: --set seed=...: the sweep sets seed per trial; give it with --seeds"),
])
def test_sweep_refuses_unknown_names_bad_values_its_axes_and_settings_with_options_of_their_own(
        tmp_path, arguments, message):
    script = tmp_path / "job.sh"
    result = cli_runner().invoke(main, [*SWEEP, *arguments, "--slurm-script", str(script), "--out", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines()[-1].startswith(message), result.stderr
    assert not script.exists()


def test_the_slurm_script_carries_the_set_settings(tmp_path):
    script = tmp_path / "job.sh"
    result = cli_runner().invoke(main, [*SWEEP, "--set", "weight_lr=0.05", "--set", "gradient_slope=observed",
                                        "--set", "weight_init_mean=[1.0,0.5]", "--slurm-script", str(script),
                                        "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert ' --set weight_lr=0.05 --set \'gradient_slope="observed"\' --set \'weight_init_mean=[1.0, 0.5]\' ' \
           '--trial "$SLURM_ARRAY_TASK_ID"' in script.read_text()


def test_a_sweep_trains_every_trial_with_the_set_settings(tmp_path):
    result = cli_runner().invoke(main, [*SWEEP, "--epochs", "1", "--set", "weight_lr=0.05", "--set", "loss_delta=0.3",
                                        "--jobs", "1", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    (trial,) = (tmp_path / "runs").iterdir()
    config = _metrics(trial)["config"]
    assert (config["weight_lr"], config["loss_delta"]) == (0.05, 0.3)


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_paths_given_with_set_are_recorded_as_absolute_paths(tmp_path, monkeypatch, command):
    from delgrad_core.training import _run, _sweep

    given = []
    monkeypatch.setattr(_run, "run_training", lambda config, *args, **kwargs: given.append(config.dataset_options))
    monkeypatch.setattr(_sweep, "run_sweep", lambda base, *args, **kwargs: given.append(base["dataset_options"]))
    monkeypatch.chdir(tmp_path)
    base = [*TRAIN, "--out", "run"] if command == "train" else [*SWEEP, "--out", "sweep"]
    cli_runner().invoke(main, [*base, "--epochs", "1", "--set", "dataset=fashion_mnist",
                               "--set", 'dataset_options={"directory": "data", "size": 4}'])
    assert given == [{"directory": str(tmp_path / "data"), "size": 4}]


def test_set_on_resume_counts_as_the_options_do(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    changed = cli_runner().invoke(main, ["train", "--out", str(run), "--resume", "--set", "weight_lr=0.5"])
    assert changed.exit_code == 1 and "resume: the checkpoint" in changed.output and \
        "(weight_lr: 0.02 in the checkpoint, 0.5 now); resume with the run's own settings" in changed.output, \
        changed.output
    extended = cli_runner().invoke(main, ["train", "--out", str(run), "--resume", "--set", "epochs=3",
                                          "--no-progress"])
    assert extended.exit_code == 0, extended.output
    assert _metrics(run)["config"]["epochs"] == 3 and _metrics(finished_run)["config"]["epochs"] == 2


@pytest.mark.parametrize(("metrics", "message"), [
    ({"test_accuracy": 1}, "not the metrics of a finished run (no 'config', the table of the run's settings); a "
                           "damaged or edited file"),
    ({"test_accuracy": 1, "config": {}}, "its 'config' is not a table of the run's settings (got {}); a damaged or "
                                         "edited file"),
])
def test_a_run_folder_whose_metrics_hold_no_settings_is_refused_as_damaged(finished_run, tmp_path, metrics, message):
    """(it was evaluated as a network file, with the default settings)"""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "metrics.json").write_text(json.dumps(metrics))
    for path in (run, run / "network.npz"):
        result = cli_runner().invoke(main, ["evaluate", str(path)])
        assert result.exit_code == 1, result.output
        assert result.stderr.strip() == f"Error: {run / 'metrics.json'}: {message}", result.stderr


def test_delay_settings_given_for_a_network_without_delays_are_named_as_unused(tmp_path):
    """(they were recorded in metrics.json as if used; a backend's own defaults, such as the
    emulator's delay_lr, are not the user's and give no warning)"""
    (tmp_path / "c.toml").write_text('[optimiser]\ndelay_lr = 0.01\n')
    runner = cli_runner()
    common = ["train", "--epochs", "1", "--hidden", "3", "--no-progress"]
    for index, (extra, delays, warned) in enumerate((
            (["--set", "delay_shift=1"], "none", "delay_shift: not used"),
            (["--config", str(tmp_path / "c.toml")], "none", "delay_lr: not used"),
            (["--set", "delay_shift=1"], "axonal", None), ([], "none", None))):
        result = runner.invoke(main, [*common, *extra, "--delays", delays, "--out", str(tmp_path / f"run{index}")])
        assert result.exit_code == 0, result.output
        if warned:
            assert f'{warned}, the network has no delays (delays = "none")' in result.stderr, result.stderr
        else:
            assert "not used" not in result.stderr, result.stderr


def test_train_says_when_a_small_synaptic_network_takes_the_5_hidden_networks_rates(tmp_path):
    from delgrad_core.training import TrainingConfig

    assert TrainingConfig(hidden=[3, 2]).small_network_rates() == {"weight_lr": 0.015, "delay_lr": 0.01}
    assert TrainingConfig(hidden=5, weight_lr=0.1).small_network_rates() == {"delay_lr": 0.01}
    assert TrainingConfig(hidden=6).small_network_rates() == TrainingConfig(hidden=5, delays="axonal")\
        .small_network_rates() == {}
    result = cli_runner().invoke(main, ["train", "--hidden", "5", "--epochs", "1", "--no-progress", "--out",
                                        str(tmp_path / "run")])
    assert result.exit_code == 0 and "note: weight_lr 0.015 and delay_lr 0.01: a synaptic network of at most 5 " \
        "hidden neurons trains by default with the learning rates of DelGrad's 5-hidden network" in result.stderr, \
        result.stderr
    config = _metrics(tmp_path / "run")["config"]
    assert (config["weight_lr"], config["delay_lr"]) == (0.015, 0.01)
    result = cli_runner().invoke(main, ["train", "--hidden", "6", "--epochs", "1", "--no-progress", "--out",
                                        str(tmp_path / "other")])
    assert result.exit_code == 0 and "note" not in result.stderr, result.stderr


@pytest.mark.parametrize("command", ["train", "sweep"])
def test_an_option_given_over_the_config_files_own_is_noted(tmp_path, command, monkeypatch):
    from delgrad_core.training import _run, _sweep

    monkeypatch.setattr(_run, "run_training", lambda *args, **kwargs: {})
    monkeypatch.setattr(_sweep, "run_sweep", lambda *args, **kwargs: "")
    config = tmp_path / "c.toml"
    config.write_text("backend_options = {n_threads = 1}\n")
    base = [*TRAIN, "--epochs", "1"] if command == "train" else [*SWEEP, "--epochs", "1"]
    result = cli_runner().invoke(main, [*base, "--config", str(config), "--backend-option", "n_threads=2",
                                        "--out", str(tmp_path / "run")])
    assert f"note: --backend-option n_threads=2 replaces n_threads = 1 of backend_options of {config}\n" in \
        result.stderr, result.stderr
    result = cli_runner().invoke(main, [*base, "--config", str(config), "--backend-option", "n_threads=1",
                                        "--out", str(tmp_path / "run")])
    assert "note" not in result.stderr, result.stderr


def test_evaluate_keeps_a_config_files_options_when_its_default_backend_is_named(tmp_path):
    """(a config file without a backend gives options for the default one; --backend naming that
    backend dropped them, with a note of 'the backend options ... of None')"""
    import delgrad_core as dg

    network = tmp_path / "network.npz"
    dg.save_network(dg.Network.feedforward([4, 5, 3], seed=1), network)
    config = tmp_path / "c.toml"
    config.write_text("backend_options = {n_threads = -5}\n")
    for named in ([], ["--backend", "reference"]):
        result = cli_runner().invoke(main, ["evaluate", str(network), "--config", str(config), *named])
        assert result.exit_code != 0 and "n_threads: expected an integer from 1 to 256, got -5" in result.output, \
            result.output
        assert "note: the backend options" not in result.output
    result = cli_runner().invoke(main, ["evaluate", str(network), "--config", str(config), "--backend", "example"])
    assert result.exit_code == 0, result.output
    assert "note: the backend options {\"n_threads\": -5} of 'reference' are not used with 'example'; " \
           "--backend-option gives its own" in result.stderr


@pytest.mark.parametrize(("replaced", "field"), [(["--set", "weight_lr=abc"], "weight_lr"),
                                                 (["--tau-ratio", "-1"], "tau_ratio")])
def test_a_bad_value_given_over_the_config_files_own_does_not_name_the_file(tmp_path, replaced, field):
    """The file's value is not the one refused: naming the file would send the user to mend it."""
    config = tmp_path / "c.toml"
    config.write_text("weight_lr = 0.005\ntau_ratio = 2.0\n")
    result = cli_runner().invoke(main, [*TRAIN, "--epochs", "1", "--config", str(config), *replaced,
                                        "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines()[-1].startswith(f"Error: {field}: "), result.stderr
    assert not (tmp_path / "run").exists()


def test_a_url_given_as_a_path_option_is_recorded_as_given(tmp_path, monkeypatch):
    """Relative paths of *_file, *_dir and directory options are made absolute; a URL there is no
    path of the working folder (the command line leaves URLs alone)."""
    from delgrad_core.training import _run

    given = []
    monkeypatch.setattr(_run, "run_training", lambda config, *args, **kwargs: given.append(config.dataset_options))
    monkeypatch.chdir(tmp_path)
    result = cli_runner().invoke(main, [*TRAIN, "--out", "run", "--epochs", "1", "--dataset", "fashion_mnist",
                                        "--dataset-option", "directory=https://example.org/fashion-mnist"])
    assert given == [{"directory": "https://example.org/fashion-mnist"}], result.output
    cli_runner().invoke(main, [*TRAIN, "--out", "run", "--epochs", "1", "--dataset", "fashion_mnist",
                               "--dataset-option", "directory=data"])
    assert given[1:] == [{"directory": str(tmp_path / "data")}]


def test_an_error_is_put_down_to_the_config_file_only_for_a_setting_the_file_gave(tmp_path):
    """`with_its_file`: the file is named for a setting it holds and the command line did not give;
    in an option table both gave, only for an option the message names and the command line did
    not give: a message naming no option, or a setting the file does not hold, is not the file's."""
    from delgrad_core._errors import InvalidValueError
    from delgrad_core.cli._settings import with_its_file

    config = tmp_path / "c.toml"
    config.write_text("weight_lr = 0.005\n[backend]\nn_threads = 1\n")

    def said(message, backend_options=None):
        return with_its_file(InvalidValueError(message), str(config), {}, {}, backend_options or {}, {})

    assert said("weight_lr: expected a number") == f"{config}: weight_lr: expected a number"
    assert said("epochs: expected an integer") == "epochs: expected an integer"
    assert said("backend_options: backend 'reference': n_threads: expected an integer", {"dt": 0.1}) == \
        f"{config}: backend_options: backend 'reference': n_threads: expected an integer"
    assert said("backend_options: the backend refused them", {"dt": 0.1}) == "backend_options: the backend refused them"
