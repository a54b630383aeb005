"""`delgrad calibrate` and `delgrad train` with the emulator, and the conformance suite run as
a user runs it."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest

import delgrad_core as dg
from delgrad_bss2 import ChipConfig
from delgrad_core.cli import main
from delgrad_core.testing import cli_runner


def test_calibrate_prints_the_residual_spreads_then_hits_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DELGRAD_BSS2_CACHE", str(tmp_path))
    first = cli_runner().invoke(main, ["calibrate", "--backend", "bss2-emulator", "--chip", "2"])
    assert first.exit_code == 0, first.output
    assert "84/84" in first.stderr  # the progress bar
    lines = first.stdout.splitlines()
    assert lines[1].startswith(f"stored in the cache: {tmp_path}")
    assert lines[2].split()[:3] == ["parameter", "unit", "target"]
    rows = {line.split()[0]: line.split() for line in lines[3:9]}
    assert set(rows) == {"leak", "threshold", "tau_m", "tau_s", "gain", "delay_offset"}
    assert float(rows["threshold"][7]) < 0.35 and float(rows["tau_s"][7]) < 0.2  # the ratio column
    assert "chip: 2" in lines and any(line.startswith("failed_circuits: [52, 372, 393, 476]") for line in lines)
    second = cli_runner().invoke(main, ["calibrate", "--backend", "bss2-emulator", "--chip", "2", "--json"])
    report = json.loads(second.stdout)
    assert report["cache"]["status"] == "hit" and report["values"]["chip"] == 2
    other = cli_runner().invoke(main, ["calibrate", "--backend", "bss2-emulator", "--chip", "3", "--json",
                                      "--backend-option", "calibrated=false"])
    report = json.loads(other.stdout)
    assert report["cache"]["status"] == "stored" and report["values"]["calibrated"] is False


@pytest.mark.slow
@pytest.mark.parametrize("delays", ["axonal", "none"])
def test_train_with_no_settings_but_the_backend(tmp_path, monkeypatch, delays):
    """The chip's operating point and limits come from the backend: 20 input lines, 30 hidden."""
    monkeypatch.setenv("DELGRAD_BSS2_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    result = cli_runner().invoke(main, ["train", "--backend", "bss2-emulator", "--delays", delays, "--epochs", "3",
                                       "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    config = metrics["config"]
    assert (config["threshold"], config["tau_ratio"], config["batch_size"], config["hidden"]) == (2.6, 1.0, 40, 30)
    assert config["encoder_options"] == {"repeat": 5}
    assert config["shared_input_delays"] == 5
    assert metrics["n_parameters"] == 20 * 30 + 30 * 3 + (4 + 30 if delays == "axonal" else 0)  # (a delay per input)
    assert metrics["test_accuracy"] > 0.6
    # evaluated in jobs of 40 samples, each job with its own seed drawn from --seed: reproducible
    evaluations = [cli_runner().invoke(main, ["evaluate", str(out), "--seed", "5", "--json"]) for _ in range(2)]
    assert evaluations[0].exit_code == 0, evaluations[0].output
    assert json.loads(evaluations[0].stdout) == json.loads(evaluations[1].stdout)
    # without --seed: the run's own test seed, so the recorded test accuracy exactly
    again = cli_runner().invoke(main, ["evaluate", str(out), "--json"])
    assert json.loads(again.stdout)["accuracy"] == metrics["test_accuracy"]


@pytest.mark.parametrize("options", [[], pytest.param(["slot_tau=6"], marks=pytest.mark.slow),
                                     pytest.param(["input_duplication=8"], marks=pytest.mark.slow)])
def test_the_conformance_suite_passes_as_a_user_runs_it(tmp_path, options):
    """(with slot_tau=6 the arrival check failed: delayed spikes after the slot were lost silently;
    now such jobs are refused for lack of resources, and the checks that need them skipped; with
    input_duplication=8 the delay lines failed: the chip shared one delay between two of them)"""
    environment = dict(os.environ, DELGRAD_BSS2_CACHE=str(tmp_path / "cache"))
    backend_options = [argument for option in options for argument in ("--delgrad-backend-option", option)]
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "--pyargs",
                          "delgrad_core.testing", "--delgrad-backend", "bss2-emulator", *backend_options],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path, env=environment)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and "failed" not in out.stdout
    assert ("set the backend option slot_tau to at least" in out.stdout) == (options == ["slot_tau=6"])


def test_evaluate_adds_command_line_backend_options_to_the_runs_own(tmp_path, monkeypatch):
    """A run trained on chip 3 uncalibrated is evaluated there even when another option is given."""
    monkeypatch.setenv("DELGRAD_BSS2_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    trained = cli_runner().invoke(main, ["train", "--backend", "bss2-emulator", "--delays", "none", "--epochs", "1",
                                        "--backend-option", "chip=3", "--backend-option", "calibrated=false",
                                        "--out", str(out), "--no-progress"])
    assert trained.exit_code == 0, trained.output
    plain, threads = (cli_runner().invoke(main, ["evaluate", str(out), "--json", *extra])
                      for extra in ([], ["--backend-option", "n_threads=1"]))
    assert plain.exit_code == 0 and threads.exit_code == 0, plain.output + threads.output
    assert json.loads(plain.stdout)["accuracy"] == json.loads(threads.stdout)["accuracy"]
    other_chip = cli_runner().invoke(main, ["evaluate", str(out), "--json", "--backend-option", "chip=0",
                                            "--backend-option", "calibrated=true"])
    assert json.loads(other_chip.stdout)["accuracy"] != json.loads(plain.stdout)["accuracy"]


def test_evaluate_says_how_the_chip_changed_a_network_trained_elsewhere(tmp_path, monkeypatch):
    """(a reference-trained network ran clipped and quantised, its delays moved to the chip's
    range, without a word)"""
    monkeypatch.setenv("DELGRAD_BSS2_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    trained = cli_runner().invoke(main, ["train", "--tau-ratio", "1", "--delays", "axonal", "--hidden", "6",
                                        "--epochs", "1", "--out", str(out), "--no-progress"])
    assert trained.exit_code == 0, trained.output
    network = dg.load_network(out / "network.npz")
    chip = dg.get_backend("bss2-emulator")
    represented = chip.represent(network)
    chip.close()
    weights = sum(int((layer.projection.weights != shown.projection.weights).sum())
                  for layer, shown in zip(network.layers, represented.layers))
    assert weights
    calls = []
    representing = type(chip).represent
    monkeypatch.setattr(type(chip), "represent", lambda self, network: calls.append(1) or representing(self, network))
    for target in (str(out), str(out / "network.npz")):
        calls.clear()
        result = cli_runner().invoke(main, ["evaluate", target, "--backend", "bss2-emulator"])
        assert result.exit_code == 0, result.output
        assert len(calls) == 2  # (one for the note, one for the jobs: a costly represent ran three times)
        assert f"note: 'bss2-emulator' ran the network as it represents it, not as stored ({weights} of 42 " \
               "weights changed, by up to" in result.stderr, result.stderr
        assert "10 of 10 delays changed" in result.stderr, result.stderr  # (4 inputs, 6 hidden axons)
    on_its_own = cli_runner().invoke(main, ["evaluate", str(out)])
    assert on_its_own.exit_code == 0 and "represents it" not in on_its_own.stderr


def test_evaluate_says_when_the_device_differs_from_the_runs_even_behind_mock_hil(tmp_path, monkeypatch):
    """(a run of chip 3 evaluated through mock-hil's default chip 0, an option of the chip's
    changed with the same calibration key, or a changed cache entry: no word was said)"""
    pytest.importorskip("delgrad_hil")
    monkeypatch.setenv("DELGRAD_BSS2_CACHE", str(tmp_path / "cache"))
    out = str(tmp_path / "run")
    trained = cli_runner().invoke(main, ["train", "--backend", "bss2-emulator", "--delays", "none", "--epochs", "1",
                                        "--hidden", "5", "--backend-option", "chip=3", "--out", out, "--no-progress"])
    assert trained.exit_code == 0, trained.output
    identity = json.loads((tmp_path / "run" / "metrics.json").read_text())["device_identity"]
    assert identity["backend"] == "bss2-emulator" and identity["options"]["comparator_offset"] == 0.13

    def evaluated(*extra):
        result = cli_runner().invoke(main, ["evaluate", out, *extra])
        assert result.exit_code == 0, result.output
        return result.stderr

    assert "trained on device" not in evaluated() + evaluated("--backend", "mock-hil", "--backend-option",
                                                              'device_options={"chip": 3}')
    through_the_service = evaluated("--backend", "mock-hil")
    assert "calibrated as 'bss2-emulator-" in through_the_service
    # (the run's own options were dropped without a word: a run of another dataset's size failed on its inputs)
    assert "note: the backend options {\"chip\": 3} of 'bss2-emulator' are not used with 'mock-hil'; " \
           "--backend-option gives its own" in through_the_service
    assert "device options weight_max 63 (now 20)" in evaluated("--backend-option", "weight_max=20")
    assert "trained on device" not in evaluated("--backend-option", "host_overhead_job_s=0.5")  # (modelled time only)
    [entry] = (tmp_path / "cache").glob(identity["calibration_key"] + ".npz")
    calibration = dg.Calibration.load(entry)
    arrays = dict(calibration.arrays, **{"dac.threshold": calibration.arrays["dac.threshold"] + 1})
    entry.unlink()
    dataclasses.replace(calibration, arrays=arrays).save(entry)
    assert "the same calibration key with other calibration contents" in evaluated()
    metrics_file = tmp_path / "run" / "metrics.json"
    metrics_file.write_text(json.dumps(dict(json.loads(metrics_file.read_text()), device_identity={"options": [1]})))
    damaged = cli_runner().invoke(main, ["evaluate", out])
    assert damaged.exit_code == 1 and f"{metrics_file}: device_identity is {{\"options\": [1]}}, not a table of " \
        "backend, calibration_key, calibration_digest (strings) and options (a table); a damaged or edited file" \
        in damaged.output, damaged.output


def test_a_resume_naming_a_default_option_resumes_but_one_of_the_chip_config_says_it_is_compared_as_given(
        tmp_path, monkeypatch):
    """(it was refused as 'backend_options: {} in the checkpoint, {"chip": 0} now', the same chip; the
    chip's settings, which the backend takes as **options, are still compared as given)"""
    monkeypatch.setenv("DELGRAD_BSS2_CACHE", str(tmp_path / "cache"))
    train = ["train", "--backend", "bss2-emulator", "--delays", "none", "--hidden", "5", "--out", str(tmp_path / "run"),
             "--no-progress"]
    assert cli_runner().invoke(main, [*train, "--epochs", "1"]).exit_code == 0
    resumed = cli_runner().invoke(main, [*train, "--epochs", "2", "--resume", "--backend-option", "chip=0"])
    assert resumed.exit_code == 0, resumed.output
    refused = cli_runner().invoke(main, [*train, "--epochs", "3", "--resume", "--backend-option",
                                         f"threshold={ChipConfig.threshold}"])
    assert refused.exit_code == 1  # (the chip = 0 it recorded since is left out: the default)
    assert f'backend_options: {{}} in the checkpoint, {{"threshold": {ChipConfig.threshold}}} now); resume with the ' \
           "run's own settings (compared as given, a change even at the value the factory takes without them: " \
           "backend_options.threshold, options given on one side only whose factory declares no default for them, " \
           "e.g. takes them as **options)" in refused.output, refused.output


def test_train_with_more_layers_than_the_chip_runs_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("DELGRAD_BSS2_CACHE", str(tmp_path / "cache"))
    result = cli_runner().invoke(main, ["train", "--backend", "bss2-emulator", "--hidden", "20,10", "--delays", "none",
                                        "--epochs", "1", "--out", str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "hidden: backend 'bss2-emulator' runs at most 2 neuron layers (1 hidden), got 3 (2 hidden)" in result.output


@pytest.mark.parametrize(("settings", "message"), [
    (["--delays", "synaptic"], "does not support delay kind 'synaptic' (supports: none, axonal)"),
    (["--hidden", "129"], "does not support 129 inputs per neuron in 'output.projection' (max_inputs: 128)")])
def test_train_a_network_the_chip_cannot_run_is_a_usage_error(tmp_path, monkeypatch, settings, message):
    """(as in delgrad sweep; they exited with status 1 and no usage line, while too many layers was a
    usage error)"""
    monkeypatch.setenv("DELGRAD_BSS2_CACHE", str(tmp_path / "cache"))
    result = cli_runner().invoke(main, ["train", "--backend", "bss2-emulator", *settings, "--epochs", "1",
                                        "--out", str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 2 and "Usage: " in result.output and message in result.output, result.output


def test_the_chips_own_delay_defaults_give_no_unused_warning_without_delays(tmp_path, monkeypatch):
    """(its defaults set delay_lr and the delay range for every run; only the user's are named)"""
    monkeypatch.setenv("DELGRAD_BSS2_CACHE", str(tmp_path / "cache"))
    result = cli_runner().invoke(main, ["train", "--backend", "bss2-emulator", "--delays", "none", "--hidden", "4",
                                        "--epochs", "1", "--out", str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 0 and "not used" not in result.stderr, result.output


def test_a_bad_option_of_the_files_backend_table_names_the_file_beside_command_line_options(tmp_path):
    """(with any --backend-option given, an error of an option from the file's table did not
    name the file)"""
    config = tmp_path / "c.toml"
    chip = "Error: backend_options: backend 'bss2-emulator': chip: "
    for in_file, given, named in (("chip = -3", "calibrated=false", f"Error: {config}: {chip[7:]}"),
                                  ("chip = -3", "chip=-1", chip),
                                  # (the option the message is about decides, not every option it names)
                                  ("threshold = 1.0", "comparator_offset=5",
                                   "Error: backend_options: backend 'bss2-emulator': comparator_offset: "),
                                  ("slot_tau = 0.01", "chip=1", f"Error: {config}: backend_options: backend "
                                                                "'bss2-emulator': delay_jitter_tau: "),
                                  ("foo = 1", "bar=2", "Error: backend_options: backend 'bss2-emulator': unknown "
                                                       "option(s) bar, foo")):
        config.write_text(f'[train]\nbackend = "bss2-emulator"\n[train.backend_options]\n{in_file}\n')
        result = cli_runner().invoke(main, ["train", "--config", str(config), "--backend-option", given,
                                            "--epochs", "1", "--out", str(tmp_path / "run")])
        assert result.exit_code == 2 and named in result.stderr, result.stderr


def test_a_resume_with_other_host_overheads_goes_on(tmp_path, monkeypatch):
    """(the host overheads change only the modelled time in a result's metadata: evaluate took
    them as neutral, and a resume refused them as other settings)"""
    monkeypatch.setenv("DELGRAD_BSS2_CACHE", str(tmp_path / "cache"))
    train = ["train", "--backend", "bss2-emulator", "--delays", "none", "--hidden", "5", "--out", str(tmp_path / "run"),
             "--no-progress"]
    assert cli_runner().invoke(main, [*train, "--epochs", "1"]).exit_code == 0
    resumed = cli_runner().invoke(main, [*train, "--epochs", "2", "--resume", "--backend-option",
                                         "host_overhead_job_s=0.5"])
    assert resumed.exit_code == 0, resumed.output


def test_evaluate_refuses_input_copies_the_runs_encoder_does_not_make(tmp_path, monkeypatch):
    """(input_duplication=4 on a run whose encoder repeats each feature 5x: the chip ran distinct
    inputs as copies of one, with warnings, and the accuracy came with status 0; train refuses it)"""
    monkeypatch.setenv("DELGRAD_BSS2_CACHE", str(tmp_path / "cache"))
    out = str(tmp_path / "run")
    trained = cli_runner().invoke(main, ["train", "--backend", "bss2-emulator", "--delays", "axonal", "--epochs", "1",
                                         "--hidden", "5", "--out", out, "--no-progress"])
    assert trained.exit_code == 0, trained.output
    result = cli_runner().invoke(main, ["evaluate", out, "--backend-option", "input_duplication=4"])
    assert result.exit_code == 2, result.output
    assert "backend 'bss2-emulator' takes every 4 consecutive input lines as copies of one input" in result.output
    assert "the encoder makes 5 of each input" in result.output


def test_a_slot_outgrown_in_a_later_epoch_says_the_saved_epochs_resume_only_with_the_runs_settings(tmp_path,
                                                                                                  monkeypatch):
    """(the advice to set slot_tau, which a resume refuses as another setting, was all it said)"""
    monkeypatch.setenv("DELGRAD_BSS2_CACHE", str(tmp_path / "cache"))
    result = cli_runner().invoke(main, ["train", "--backend", "bss2-emulator", "--epochs", "3", "--no-progress",
                                        "--hidden", "5", "--seed", "1", "--set", "t_late=24", "--set",
                                        "delay_lr=0.02", "--out", str(tmp_path / "run")])
    assert result.exit_code == 1 and "set the backend option slot_tau to at least" in result.stderr, result.output
    assert result.stderr.endswith(f"(met in epoch 3: the 2 epoch(s) before are saved in {tmp_path / 'run'}, but a "
                                  "resume takes the run's own settings and would meet this again; a setting or "
                                  "backend option changed means a new run, in another --out)\n"), result.stderr
