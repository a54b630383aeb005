"""`delgrad evaluate`: run folders whose metrics.json holds damaged settings, and the notes and choices of
evaluations that are not the run's own (another split, backend or file)."""

import json
import shutil

import pytest
from _registries import install_only_backends
from _run_folders import TRAIN

from delgrad_core.cli import main
from delgrad_core.testing import cli_runner


def _copy_with_metrics(finished_run, tmp_path, edit) -> tuple:
    """(copy of the run, its metrics.json as `edit(metrics)` left it)."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    metrics = json.loads((run / "metrics.json").read_text())
    edit(metrics)
    (run / "metrics.json").write_text(json.dumps(metrics))
    return run, metrics


@pytest.mark.parametrize("seed", ["x", -1, 2**70, 1.5, True])
def test_a_damaged_run_seed_is_refused_naming_metrics_json(finished_run, tmp_path, seed):
    """(the backend's calibration said "Error: seed: expected None or an integer ...", naming
    neither the file nor which seed, while --seed sets another one)"""
    run, _ = _copy_with_metrics(finished_run, tmp_path, lambda metrics: metrics["config"].update(seed=seed))
    for path, seed_option in ((run, []), (run / "network.npz", ["--seed", "3"])):
        result = cli_runner().invoke(main, ["evaluate", str(path), *seed_option])
        assert result.exit_code == 1, result.output
        assert result.stderr == (f"Error: {path}: metrics.json: config.seed (the run's seed, which its backend was "
                                 f"calibrated with): expected null or an integer in [0, 2**63 - 1], got "
                                 f"{seed!r}\n"), result.stderr


def test_a_run_seed_of_null_is_evaluated(finished_run, tmp_path):
    run, metrics = _copy_with_metrics(finished_run, tmp_path, lambda metrics: metrics["config"].update(seed=None))
    result = cli_runner().invoke(main, ["evaluate", str(run), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["accuracy"] == metrics["test_accuracy"]


def test_settings_edited_in_metrics_json_are_named_as_the_cause_of_another_accuracy(finished_run, tmp_path):
    """An encoder setting changed by hand in metrics.json is used, and noted against the run's
    checkpoint (the note blamed "its backend, dataset or their code")."""
    run, _ = _copy_with_metrics(finished_run, tmp_path, lambda metrics: metrics["config"].update(t_early=0.5))
    result = cli_runner().invoke(main, ["evaluate", str(run)])
    assert result.exit_code == 0, result.output
    assert f"note: {run}/metrics.json has other settings than the run's checkpoint: t_early 0.5 (the checkpoint's: " \
           f"{json.loads((finished_run / 'metrics.json').read_text())['config']['t_early']}); edited since the run? " \
           "Evaluated with those of metrics.json\n" in result.stderr, result.stderr
    assert "now (with the settings of metrics.json noted above)" in result.stderr, result.stderr
    untouched = cli_runner().invoke(main, ["evaluate", str(finished_run)])
    assert untouched.exit_code == 0 and "other settings" not in untouched.stderr, untouched.output


@pytest.mark.parametrize("digest", ["x", 3, None, "A" * 64])
def test_a_damaged_recorded_data_digest_is_named_not_taken_for_changed_data(finished_run, tmp_path, digest):
    """(evaluate warned that the test split's files had changed, of a metrics.json whose digest was
    no digest at all)"""
    run, metrics = _copy_with_metrics(finished_run, tmp_path,
                                      lambda metrics: metrics["dataset_digests"].update(test=digest))
    result = cli_runner().invoke(main, ["evaluate", str(run), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["accuracy"] == metrics["test_accuracy"], result.output
    assert f"{run}: metrics.json: dataset_digests.test is {json.dumps(digest)}, not a SHA-256 digest (a damaged or " \
           "edited file)" in result.stderr and "files changed" not in result.stderr, result.stderr


@pytest.mark.parametrize(("name", "what"), [("metrics.json", "metrics"), ("checkpoint.npz", "checkpoint"),
                                            ("history.jsonl", "history")])
@pytest.mark.parametrize(("argument", "arguments"), [
    ("PATH", lambda path, out: ["evaluate", path]),
    ("NETWORK", lambda path, out: ["export", path, out, "--time-scale", "1e-6"]),
])
def test_another_file_of_a_run_folder_is_refused_naming_the_folder(finished_run, tmp_path, name, what, argument,
                                                                   arguments):
    """(refused as "not a readable delgrad network file (not an npz archive ...)" or "no
    'network.json' entry", not saying that the run folder is what to give)"""
    result = cli_runner().invoke(main, arguments(str(finished_run / name), str(tmp_path / "out.nir")))
    assert result.exit_code == 2, result.output
    assert result.stderr.endswith(f"Error: Invalid value for {argument}: {finished_run / name} is a run's {what}, "
                                  f"not a network file: give the run folder {finished_run} (its network.npz)\n"), \
        result.stderr


def test_the_recorded_test_accuracy_is_compared_only_with_the_test_split(finished_run, tmp_path):
    """The run recorded its test split's accuracy: another split's is no repeat of it."""
    run, metrics = _copy_with_metrics(finished_run, tmp_path, lambda metrics: metrics.update(test_accuracy=0.123))
    result = cli_runner().invoke(main, ["evaluate", str(run)])
    assert result.exit_code == 0 and "note: the run recorded a test accuracy of 12.30 %" in result.stderr, \
        result.output
    for split in ("train", "validation"):
        result = cli_runner().invoke(main, ["evaluate", str(run), "--split", split])
        assert result.exit_code == 0 and f"{split} accuracy on reference: " in result.stdout, result.output
        assert "recorded" not in result.stderr, result.stderr


@pytest.mark.parametrize(("name", "what"), [("checkpoint.npz", "checkpoint"), ("history.jsonl", "history")])
def test_a_file_of_an_unfinished_run_folder_is_refused_naming_the_folder(finished_run, tmp_path, name, what):
    """A run stopped before its end holds a checkpoint and no network file yet: its files are
    still no network file."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "network.npz").unlink()
    (run / "metrics.json").unlink()
    result = cli_runner().invoke(main, ["evaluate", str(run / name)])
    assert result.exit_code == 2, result.output
    assert " ".join(result.stderr.split()).endswith(
        f"Error: Invalid value for PATH: {run / name} is a run's {what}, not a network file: the run in {run} has "
        f"not finished (no network.npz yet): continue it with `delgrad train --out {run} --resume`, then give the run "
        "folder"), result.stderr


@pytest.mark.parametrize("accuracy", [1.5, -0.25, "0.9", None])
def test_a_recorded_test_accuracy_that_is_no_accuracy_is_refused_as_a_damaged_file(finished_run, tmp_path, accuracy):
    """(as `delgrad sweep` refuses such a run: an accuracy is a number in [0, 1])"""
    run, _ = _copy_with_metrics(finished_run, tmp_path, lambda metrics: metrics.update(test_accuracy=accuracy))
    result = cli_runner().invoke(main, ["evaluate", str(run)])
    assert result.exit_code == 1, result.output
    assert result.stderr == (f"Error: {run / 'metrics.json'}: not the metrics of a finished run (test_accuracy: "
                             f"expected a number in [0, 1], got {json.dumps(accuracy)}); a damaged or edited "
                             "file\n"), result.stderr


def test_what_a_backend_prints_goes_to_stderr_under_json(finished_run, monkeypatch):
    """(`evaluate --json` printed a backend's own print before its JSON: no JSON reader took it)"""
    from delgrad_reference import ReferenceBackend

    class Chatty(ReferenceBackend):
        name = "chatty"

        def _execute(self, request):
            print("chatty: executing")
            return super()._execute(request)

    install_only_backends(monkeypatch, {"chatty": Chatty})
    result = cli_runner().invoke(main, ["evaluate", str(finished_run), "--backend", "chatty", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["backend"] == "chatty" and "chatty: executing" in result.stderr
    shown = cli_runner().invoke(main, ["evaluate", str(finished_run), "--backend", "chatty"])  # (without --json: as
    assert shown.stdout.startswith("chatty: executing\n") and "test accuracy on chatty" in shown.stdout  # printed)


def test_evaluate_on_another_backend_runs_jobs_of_that_backends_size(finished_run, tmp_path, monkeypatch):
    """A run's evaluation_batch_size is its backend's (e.g. bss2-emulator's 40 samples a job): on a
    backend named with --backend the evaluation takes that one's default (unset: its own limit)."""
    from delgrad_core.training import _evaluation

    run, _ = _copy_with_metrics(finished_run, tmp_path, lambda metrics: metrics["config"].update(
        evaluation_batch_size=7))
    sizes, original = [], _evaluation.output_spike_times

    def recording(*args):
        sizes.append(args[-1])
        return original(*args)

    monkeypatch.setattr(_evaluation, "output_spike_times", recording)
    for named, size in (([], 7), (["--backend", "reference"], 7), (["--backend", "example"], None)):
        result = cli_runner().invoke(main, ["evaluate", str(run), *named])
        assert result.exit_code == 0, result.output
        assert sizes.pop() == size, named


def test_evaluate_notes_a_network_run_otherwise_than_stored_by_its_backends_represent(tmp_path):
    """A chip's represent() clips and quantises weights and delays: the accuracy is of the network
    as represented, which the note says; one already as the chip represents it gets no note."""
    import delgrad_core as dg

    neuron = dg.NeuronParameters(threshold=1.0, tau_m=1.0, tau_s=1.0)  # (bss2-emulator: tau ratio 1)
    network = dg.Network.feedforward([20, 5, 3], seed=1, neuron=neuron, delay_kind="axonal", delay_value=0.1)
    dg.save_network(network, tmp_path / "stored.npz")
    result = cli_runner().invoke(main, ["evaluate", str(tmp_path / "stored.npz"), "--backend", "bss2-emulator"])
    assert result.exit_code == 0, result.output
    assert "note: 'bss2-emulator' ran the network as it represents it, not as stored (" in result.stderr
    assert "weights changed, by up to " in result.stderr and "delays changed, by up to " in result.stderr
    with dg.get_backend("bss2-emulator") as chip:
        dg.save_network(chip.represent(network), tmp_path / "represented.npz")
    result = cli_runner().invoke(main, ["evaluate", str(tmp_path / "represented.npz"), "--backend", "bss2-emulator"])
    assert result.exit_code == 0 and "as it represents it" not in result.stderr, result.output


def test_a_test_accuracy_one_sample_off_the_recorded_one_is_noted(finished_run, tmp_path):
    """The run's own test split, seed and backend repeat its accuracy exactly: one sample of the
    1000 scored otherwise is a difference to say."""
    run, metrics = _copy_with_metrics(finished_run, tmp_path, lambda metrics: None)
    recorded = round(metrics["test_accuracy"] + (0.001 if metrics["test_accuracy"] < 1 else -0.001), 3)
    (run / "metrics.json").write_text(json.dumps({**metrics, "test_accuracy": recorded}))
    result = cli_runner().invoke(main, ["evaluate", str(run)])
    assert result.exit_code == 0, result.output
    assert f"note: the run recorded a test accuracy of {100 * recorded:.2f} %, " \
           f"{100 * metrics['test_accuracy']:.2f} % now" in result.stderr, result.stderr


def test_a_network_file_that_does_not_fit_a_named_dataset_is_not_put_down_to_the_default(tmp_path):
    """The hint "(yin_yang, the default; --dataset ... name the network's task)" is for a dataset
    that nobody named; with --dataset the user chose it."""
    import delgrad_core as dg

    dg.save_network(dg.Network.feedforward([5, 5, 3], seed=0), tmp_path / "five.npz")
    result = cli_runner().invoke(main, ["evaluate", str(tmp_path / "five.npz"), "--dataset", "yin_yang"])
    assert result.exit_code == 1, result.output
    message = " ".join(result.stderr.split())
    assert "5 inputs but the encoded dataset has 4" in message and "the default" not in message, message


def test_a_config_whose_tau_ratio_differs_slightly_from_the_networks_is_noted(tmp_path):
    """A network file's tau ratio is compared with the --config's up to rounding only: 2.001 is
    another network's than 2."""
    import delgrad_core as dg

    dg.save_network(dg.Network.feedforward([4, 5, 3], seed=0), tmp_path / "net.npz")  # (tau_m / tau_s = 2)
    config = tmp_path / "c.toml"
    for ratio, noted in ((2.001, True), (2.0, False)):
        config.write_text(f"tau_ratio = {ratio}\n")
        result = cli_runner().invoke(main, ["evaluate", str(tmp_path / "net.npz"), "--config", str(config)])
        assert result.exit_code == 0, result.output
        assert (f"note: {config} describes another network than {tmp_path / 'net.npz'} (tau_ratio {ratio:g} against "
                "2)" in result.stderr) is noted, result.stderr


@pytest.mark.parametrize("table", [5, "n_threads=1", [1]])
def test_a_runs_option_table_that_is_no_table_is_refused_also_under_options_given_here(finished_run, tmp_path,
                                                                                       table):
    """--backend-option is laid over the run's own backend_options (`with_tables`): a damaged
    metrics.json holding no table there is refused naming the setting and the file, as without
    --backend-option, not a TypeError."""
    run, _ = _copy_with_metrics(finished_run, tmp_path, lambda metrics: metrics["config"].update(backend_options=table))
    result = cli_runner().invoke(main, ["evaluate", str(run), "--backend-option", "n_threads=1"])
    assert result.exit_code == 1, result.output
    assert result.stderr == f"Error: backend_options: expected a table (dict) of settings, got {table!r} (settings: " \
        f"the run's, from {run}/metrics.json)\n", result.stderr


def test_a_network_file_beside_a_runs_own_is_a_network_file_not_the_run(finished_run, tmp_path):
    """Only the run folder and its own network.npz are evaluated with the run's settings
    (`run_settings`: settings and metrics are {} for any other network file): a copy beside it
    takes --config and gets the note of a network file."""
    run, _ = _copy_with_metrics(finished_run, tmp_path, lambda metrics: None)
    shutil.copyfile(run / "network.npz", run / "copy.npz")
    result = cli_runner().invoke(main, ["evaluate", str(run / "copy.npz")])
    assert result.exit_code == 0, result.output
    assert f"note: {run / 'copy.npz'} is a network file, which holds no encoding" in result.stderr, result.stderr
    config = tmp_path / "c.toml"
    config.write_text("tau_ratio = 2.0\n")
    result = cli_runner().invoke(main, ["evaluate", str(run / "copy.npz"), "--config", str(config)])
    assert result.exit_code == 0 and "note" not in result.stderr, result.output


def test_a_run_of_a_backend_without_limits_gets_no_note_of_them_on_another_backend(finished_run):
    """The note that another backend ran the trained parameters as stored is for a run of a
    backend that declares limits, grids or input copies (docs/training.md); the reference
    backend declares none."""
    result = cli_runner().invoke(main, ["evaluate", str(finished_run), "--backend", "example"])
    assert result.exit_code == 0, result.output
    assert "declares limits" not in result.stderr and "as stored" not in result.stderr, result.stderr


@pytest.mark.parametrize("seed", [True, 1.5, "3", -1, 2**63])
def test_a_damaged_recorded_test_seed_is_refused_naming_metrics_json(finished_run, tmp_path, seed):
    """A recorded test seed is an integer in [0, 2**63 - 1], as --seed is; JSON's true is no seed
    (Python takes it for 1)."""
    run, _ = _copy_with_metrics(finished_run, tmp_path, lambda metrics: metrics.update(test_seed=seed))
    result = cli_runner().invoke(main, ["evaluate", str(run)])
    assert result.exit_code == 1, result.output
    assert result.stderr == f"Error: {run}: metrics.json: test_seed: expected an integer in [0, 2**63 - 1], got " \
        f"{seed!r}\n", result.stderr


def test_the_largest_test_seed_is_a_seed(finished_run, tmp_path):
    """--seed takes 0 to 2**63 - 1 (the seeds delgrad_core._execution.MAX_SEED allows): so does a
    run's recorded test seed."""
    run, _ = _copy_with_metrics(finished_run, tmp_path, lambda metrics: metrics.update(test_seed=2**63 - 1))
    result = cli_runner().invoke(main, ["evaluate", str(run), "--json"])
    assert result.exit_code == 0, result.output


def test_a_run_evaluated_on_another_backend_keeps_its_encoding_not_that_backends_defaults(tmp_path):
    """A run's stored option tables are final (evaluate does not merge a backend's defaults into
    them): bss2-emulator's training default of inputs repeated 5 times is not laid over the run's
    encoding, which its network's inputs fit."""
    trained = cli_runner().invoke(main, [*TRAIN, "--epochs", "1", "--tau-ratio", "1", "--out", str(tmp_path / "run")])
    assert trained.exit_code == 0, trained.output
    result = cli_runner().invoke(main, ["evaluate", str(tmp_path / "run"), "--backend", "bss2-emulator"])
    assert result.exit_code == 0, result.output
    assert "test accuracy on bss2-emulator: " in result.stdout


def test_a_network_file_is_evaluated_under_the_noise_of_seed_0_by_default(tmp_path):
    """--seed: "[default: the run's test seed ..., else 0]": a network file on a noisy backend is
    evaluated as with --seed 0."""
    import delgrad_core as dg

    neuron = dg.NeuronParameters(threshold=1.0, tau_m=1.0, tau_s=1.0)
    dg.save_network(dg.Network.feedforward([20, 5, 3], seed=1, neuron=neuron), tmp_path / "net.npz")
    noisy = ["evaluate", str(tmp_path / "net.npz"), "--backend", "bss2-emulator", "--backend-option",
             "threshold_noise=0.2", "--json"]
    accuracies = [json.loads(cli_runner().invoke(main, [*noisy, *seed]).stdout)["accuracy"]
                  for seed in ([], ["--seed", "0"], ["--seed", "1"])]
    assert accuracies[0] == accuracies[1] != accuracies[2], accuracies


def test_outputs_without_a_first_spike_are_not_put_down_to_the_old_tie_rule():
    """The rule before ties counted as wrong gave a tie to the lowest class; a sample without any
    output spike was wrong under both rules (docs/model.md §5.2)."""
    import numpy as np

    from delgrad_core.cli._evaluate_cmd import _differs_from_recorded

    silent = _differs_from_recorded(1.0, 0.0, np.full((2, 3), np.inf), np.array([0, 0]), True)
    assert silent == "the run recorded a test accuracy of 100.00 %, 0.00 % now (its backend, dataset or their code " \
        "changed since)"
    tied = _differs_from_recorded(1.0, 0.0, np.array([[1.0, 1.0, 2.0], [0.5, 0.5, 3.0]]), np.array([0, 0]), True)
    assert "ties now count as wrong (docs/model.md §5.2)" in tied


def test_a_network_file_is_calibrated_with_the_seed_given_and_a_run_with_its_own(finished_run, tmp_path, monkeypatch):
    """The seed a calibration gets: a run's own setting `seed` (what its backend was calibrated
    with), else --seed (`_calibration_seed`).  Only that backend is installed: a run folder is
    evaluated without the default backend (its check of the run's network said "config: backend:
    'reference' is not installed")."""
    from delgrad_core.testing import MockBackend

    seeds = []

    class SeedRecording(MockBackend):
        def _calibrate(self, network, seed, progress):
            seeds.append(seed)
            return super()._calibrate(network, seed, progress)

    install_only_backends(monkeypatch, {"seed-recording": lambda: SeedRecording(name="seed-recording")})
    shutil.copyfile(finished_run / "network.npz", tmp_path / "net.npz")
    run, _ = _copy_with_metrics(finished_run, tmp_path,
                                lambda metrics: metrics["config"].update(seed=11, backend="seed-recording"))
    for path in (tmp_path / "net.npz", run):
        result = cli_runner().invoke(main, ["evaluate", str(path), "--backend", "seed-recording", "--seed", "7"])
        assert result.exit_code == 0, result.output
    assert seeds == [7, 11]


def test_a_network_file_without_a_backend_named_where_the_default_one_is_not_installed_says_to_name_one(
        finished_run, tmp_path, monkeypatch):
    """As train does: not only "'reference' is not installed", but that it is the default backend,
    and to name an installed one with --backend (exit 1: a missing plugin, not a usage error)."""
    from delgrad_core.testing import MockBackend

    install_only_backends(monkeypatch, {"mock": MockBackend})
    shutil.copyfile(finished_run / "network.npz", tmp_path / "net.npz")
    result = cli_runner().invoke(main, ["evaluate", str(tmp_path / "net.npz")])
    assert result.exit_code == 1, result.output
    assert "Error: backend: 'reference' is not installed; installed: mock" in result.stderr, result.stderr
    assert "it is the default backend: install it, or name an installed one with --backend" in result.stderr
    assert cli_runner().invoke(main, ["evaluate", str(tmp_path / "net.npz"), "--backend", "mock"]).exit_code == 0


def test_a_backend_whose_represent_changes_only_thresholds_gets_the_note_of_what_it_changed(
        finished_run, tmp_path, monkeypatch):
    """(the note of what represent() changed counted weights and delays only: a backend that runs
    other thresholds, e.g. on a grid, evaluated without a word)"""
    import numpy as np

    import delgrad_core as dg
    from delgrad_core.testing import MockBackend

    class ThresholdGrid(MockBackend):
        def represent(self, network):
            def layer(of):
                neuron, projection = of.population.neuron, of.projection
                return dg.Layer(dg.Population(of.population.name, of.population.size,
                                              dg.NeuronParameters(1.5, neuron.tau_m, neuron.tau_s)),
                                dg.Projection(np.array(projection.weights), projection.delay_kind,
                                              None if projection.delays is None else np.array(projection.delays),
                                              projection.name))
            return dg.Network(dg.Population(network.input.name, network.input.size), [layer(of) for of in
                                                                                         network.layers])

    install_only_backends(monkeypatch, {"threshold-grid": lambda: ThresholdGrid(name="threshold-grid")})
    shutil.copyfile(finished_run / "network.npz", tmp_path / "net.npz")
    result = cli_runner().invoke(main, ["evaluate", str(tmp_path / "net.npz"), "--backend", "threshold-grid"])
    assert result.exit_code == 0, result.output
    assert "note: 'threshold-grid' ran the network as it represents it, not as stored (" in result.stderr
    assert " thresholds changed, by up to 0.5; its represent()" in result.stderr, result.stderr
