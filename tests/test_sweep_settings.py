"""A sweep's trial folder that holds a run with other settings than the trial's (resumed to more
epochs, finished or not) is not the trial's result: refused, named, and never mixed in."""

import json
import shutil

import pytest
from delgrad_core.testing import cli_runner

import delgrad_core as dg
from delgrad_core import RunFolderError
from delgrad_core.cli import main
from delgrad_core.training import Trainer, config_with_defaults
from delgrad_core.training._sweep import run_trial, sweep_rows
from delgrad_core.training._trials import plan_trials

GRID = ([4], ["none"], 1)  # hidden sizes, delay kinds, seeds: one trial
SWEEP = ["sweep", "--delays", "none", "--seeds", "1", "--epochs", "1", "--jobs", "1"]


def _train_in(folder, settings: dict, *, finish: bool) -> None:
    """Train `settings` into `folder` (as `delgrad train --out FOLDER` would), finished or not."""
    with Trainer(config_with_defaults(settings), out_dir=folder) as trainer:
        trainer.fit(progress=False)
        if finish:
            trainer.finish()


@pytest.fixture
def trial(tmp_path):
    """The one trial of a 1-epoch sweep into `tmp_path`."""
    (trial,) = plan_trials({"epochs": 1}, *GRID, tmp_path)
    return trial


def test_a_finished_run_of_other_epochs_in_a_trials_folder_is_not_its_result(trial):
    _train_in(trial.folder, dict(trial.settings, epochs=2), finish=True)
    assert not trial.finished and sweep_rows([trial]) == []
    assert trial.differences(trial.recorded_identity()) == {"epochs": (2, 1)}


def test_the_sweep_refuses_a_trial_folder_resumed_to_other_epochs_before_any_trial_starts(trial, tmp_path):
    _train_in(trial.folder, dict(trial.settings, epochs=2), finish=True)
    (second,) = plan_trials({"epochs": 1}, [5], ["none"], 1, tmp_path)
    result = cli_runner().invoke(main, [*SWEEP, "--hidden", "4,5", "--out", str(tmp_path)])
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    (belongs,) = plan_trials({"epochs": 2}, *GRID, tmp_path)
    assert f"1 run folder(s) of this sweep hold a run with other settings than their trial's: {trial.folder} has " \
           f"epochs 2 (the trial's: 1), and belongs in {belongs.folder}; move each to the folder named" \
           in result.output, result.output
    assert not second.folder.exists() and not (tmp_path / "sweep.csv").exists()  # (no trial started)
    script = cli_runner().invoke(main, [*SWEEP[:-2], "--hidden", "4,5", "--out", str(tmp_path), "--slurm-script",
                                        str(tmp_path / "job.sh")])
    assert script.exit_code == 1 and "hold a run with other settings" in script.output  # (not one failed task)
    assert not (tmp_path / "job.sh").exists()
    shutil.move(trial.folder, belongs.folder)  # as the message says: the run is kept apart, the trial runs anew
    again = cli_runner().invoke(main, [*SWEEP, "--hidden", "4", "--out", str(tmp_path)])
    assert again.exit_code == 0 and f"{belongs.name} (other settings: epochs) is kept and not used" in again.output
    rows = (tmp_path / "sweep.csv").read_text().splitlines()[1:]
    assert len(rows) == 1 and rows[0].split(",")[3] == "1" and trial.finished and belongs.finished


def test_an_unfinished_resume_to_more_epochs_is_refused_not_failed_again_and_again(trial, tmp_path):
    """(the trial failed on every run of the sweep: "has trained 2 epochs already; resume it to at
    least that many, not 1", while the sweep said to run it again to retry)"""
    _train_in(trial.folder, dict(trial.settings, epochs=2), finish=False)
    with pytest.raises(RunFolderError, match=r"has epochs 2 \(the trial's: 1\)"):
        run_trial({"epochs": 1}, *GRID, tmp_path, 0, echo=lambda line: None)
    assert not (trial.folder / "metrics.json").exists()


def test_result_neutral_options_and_settings_of_older_runs_do_not_make_another_trial(trial):
    _train_in(trial.folder, trial.settings, finish=True)
    metrics_file = trial.folder / "metrics.json"
    metrics = json.loads(metrics_file.read_text())
    later = ("dataset_options", "gradient_slope", "shared_input_delays")  # (added after older runs were recorded)
    config = {key: value for key, value in metrics["config"].items() if key not in later}
    metrics_file.write_text(json.dumps(dict(metrics, config=dict(config, backend_options={"n_threads": 2}))))
    assert trial.finished and trial.recorded_identity() == trial.identity
    assert [row["trial"] for row in sweep_rows([trial])] == [trial.id]


def test_options_given_at_their_factorys_default_make_no_other_trial(tmp_path):
    """(option tables were compared as given: a sweep with --backend-option chip=0, 0 being the
    default chip, or an encoder's repeat = 1 ran every trial again in folders of their own)"""
    chip = {"epochs": 1, "backend": "bss2-emulator"}
    assert plan_trials(dict(chip, backend_options={"chip": 0}), *GRID, tmp_path)[0].folder == \
        plan_trials(chip, *GRID, tmp_path)[0].folder != \
        plan_trials(dict(chip, backend_options={"chip": 1}), *GRID, tmp_path)[0].folder
    repeat = ["--hidden", "4", "--out", str(tmp_path), "--set", 'encoder_options={"repeat": 1}']
    assert cli_runner().invoke(main, [*SWEEP, *repeat]).exit_code == 0
    again = cli_runner().invoke(main, [*SWEEP, "--hidden", "4", "--out", str(tmp_path)])
    assert again.exit_code == 0 and "sweep: 1 of 1 runs already finished, 0 to do" in again.output, again.output
    assert len(list((tmp_path / "runs").iterdir())) == 1
    # a trial whose folder an earlier version named after its options as given still finds its run there
    from delgrad_core.training._trials import trial_id

    (trial,) = plan_trials({"epochs": 1}, *GRID, tmp_path / "earlier")
    earlier = trial.folder.with_name(f"none-h4-s0-{trial_id(dict(trial.identity, encoder_options={'repeat': 1}))}")
    _train_in(earlier, dict(trial.settings, encoder_options={"repeat": 1}), finish=True)
    (found,) = plan_trials({"epochs": 1, "encoder_options": {"repeat": 1}}, *GRID, tmp_path / "earlier")
    assert found.folder == earlier and found.finished and found.id == earlier.name.rsplit("-", 1)[1]


def test_a_backend_built_by_a_function_declares_its_result_neutral_options_when_registered(monkeypatch, tmp_path):
    """(only a class factory's `result_neutral_options` were read: with a function, the way
    docs/plugins.md suggests for lazy imports, changing a cache folder made every trial anew)"""
    from types import SimpleNamespace

    from delgrad_core import PluginRegistry, hookimpl
    from delgrad_core._plugins import registry as installed

    reference = installed().get("backend", "reference").obj

    def build(n_threads=None, cache_dir=None):
        return reference(n_threads=n_threads)

    @hookimpl
    def delgrad_register_backends(register):
        register("lazy", build, result_neutral_options={"cache_dir"})

    registry = PluginRegistry(strict=False)  # (CI sets DELGRAD_STRICT_PLUGINS: a bad registration would raise)
    registry.register_plugin(SimpleNamespace(delgrad_register_backends=delgrad_register_backends),
                             distribution="delgrad-lazy")
    monkeypatch.setattr("delgrad_core._plugins._default_registry", registry)
    trials = [plan_trials({"epochs": 1, "backend": "lazy", "backend_options": {"cache_dir": folder}}, *GRID,
                          tmp_path)[0]
              for folder in ("/tmp/a", "/tmp/b")]
    assert trials[0].id == trials[1].id
    registry.register_plugin(SimpleNamespace(delgrad_register_backends=hookimpl(  # (an iterator is read once)
        lambda register: register("lazy-iterated", build, result_neutral_options=iter(["cache_dir"])))),
        distribution="delgrad-lazy-iterated")
    assert registry.get("backend", "lazy-iterated").details["result_neutral_options"] == {"cache_dir"}
    with pytest.warns(dg.PluginLoadWarning, match="result_neutral_options must be a collection of option names"):
        registry.register_plugin(SimpleNamespace(delgrad_register_backends=hookimpl(
            lambda register: register("lazier", build, result_neutral_options="cache_dir"))), distribution="x")
    # (a misspelt option was taken: the option meant still made every trial anew)
    with pytest.warns(dg.PluginLoadWarning, match=r"backend 'misspelt': result_neutral_options: unknown option\(s\) "
                                                  r"cache_dri \(did you mean cache_dir\?\); allowed: n_threads, "
                                                  r"cache_dir"):
        registry.register_plugin(SimpleNamespace(delgrad_register_backends=hookimpl(
            lambda register: register("misspelt", build, result_neutral_options={"cache_dri"}))), distribution="y")
    assert "misspelt" not in registry.names()


def test_a_run_beside_a_trial_that_differs_in_a_setting_not_given_is_named_by_it(trial, tmp_path):
    """(a run beside the trial with another value of a setting the sweep did not give, e.g. a
    default that changed, was said to differ in 'defaults')"""
    (beside,) = plan_trials({"epochs": 1, "threshold": 1.5}, *GRID, tmp_path)
    _train_in(beside.folder, dict(trial.settings, threshold=1.5), finish=True)
    result = cli_runner().invoke(main, [*SWEEP, "--hidden", "4", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"{beside.name} (other settings: threshold) is kept and not used" in result.output, result.output


@pytest.mark.parametrize("base", [{"epochs": 1}, {"epochs": 3, "backend": "bss2-emulator", "weight_lr": 0.01},
                                  {"epochs": 2, "loss": "crossentropy", "tau_ratio": 1.0}])
def test_trials_planned_from_one_config_per_kind_and_size_are_those_of_their_own_configs(base):
    """(each trial's config was checked and resolved, 2 ms each: 40 s to plan 20,000 seeds, in
    every SLURM array task; now one per delay kind and hidden size, the seed set in it)"""
    from delgrad_core._plugins import registered_neutral_options
    from delgrad_core.training._trials import _result_settings, trial_id

    for trial in plan_trials(base, [3, 7], ["none", "axonal"], 3, "out"):
        resolved = config_with_defaults(trial.settings).resolved().to_dict()
        assert trial.identity == _result_settings(resolved, registered_neutral_options(resolved["backend"]))
        assert trial.id == trial_id(trial.identity)


def test_a_trial_id_is_the_sha256_of_its_settings_as_canonical_json_whatever_their_order():
    """docs/training.md: the id hashes the trial's settings; a finished trial is found again
    whatever order its settings were read in (e.g. from a metrics.json written by another
    version)."""
    import hashlib

    from delgrad_core.training._trials import trial_id

    canonical = '{"delays":"none","hidden":[4,3],"seed":0}'  # (keys sorted, no spaces)
    expected = hashlib.sha256(canonical.encode()).hexdigest()[:12]
    assert trial_id({"seed": 0, "hidden": [4, 3], "delays": "none"}) == expected
    assert trial_id({"delays": "none", "seed": 0, "hidden": [4, 3]}) == expected


def test_a_clash_whose_run_belongs_in_a_folder_that_exists_says_to_keep_one_of_the_two(trial, tmp_path):
    """(the refusal says to move the run to the folder named after its settings: where that folder
    exists already, moving it there would take the place of the other; `_clash`)"""
    _train_in(trial.folder, dict(trial.settings, epochs=2), finish=False)
    (belongs,) = plan_trials({"epochs": 2}, *GRID, tmp_path)
    with pytest.raises(RunFolderError) as refused:
        run_trial({"epochs": 1}, *GRID, tmp_path, 0, echo=lambda line: None)
    assert f"belongs in {belongs.folder};" in str(refused.value), refused.value
    belongs.folder.mkdir()
    with pytest.raises(RunFolderError, match=r"belongs in \S+ \(which exists already: keep one of the two\);"):
        run_trial({"epochs": 1}, *GRID, tmp_path, 0, echo=lambda line: None)
