"""Training: optimiser, parameter maps, trainer determinism, resume, checkpoints and the CLI."""

import csv
import dataclasses
import json
import os
import re
import shutil
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from delgrad_core.testing import cli_runner

import delgrad_core as dg
from delgrad_core.cli import main
from delgrad_core.training._plots import plots_available
from delgrad_core.training import (Adam, TrainableNetwork, Trainer, TrainingConfig, build_network, load_config,
                                   step_decay_factor)

SHORT = dict(epochs=2, hidden=8, batch_size=250)


def test_adam_matches_the_published_update_rule():
    """Kingma & Ba 2015, Algorithm 1, written out independently for three steps."""
    rng = np.random.default_rng(0)
    param = rng.normal(size=5)
    adam = Adam({"w": 0.1}, {"p": "w"}, beta1=0.9, beta2=0.999, eps=1e-8)
    params = {"p": param.copy()}
    expected, m, v = param.copy(), np.zeros(5), np.zeros(5)
    for t in range(1, 4):
        grad = rng.normal(size=5)
        adam.step(params, {"p": grad}, lr_factor=0.5)
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad**2
        expected -= 0.05 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        np.testing.assert_allclose(params["p"], expected, rtol=1e-14, atol=0)


def test_adam_state_round_trip_continues_identically():
    rng = np.random.default_rng(1)
    grads = [rng.normal(size=3) for _ in range(4)]
    a = Adam({"w": 0.01}, {"p": "w"})
    pa = {"p": np.ones(3)}
    for g in grads[:2]:
        a.step(pa, {"p": g})
    b = Adam({"w": 0.01}, {"p": "w"})
    b.load_state_arrays({k: v.copy() for k, v in a.state_arrays().items()})
    pb = {"p": pa["p"].copy()}
    for g in grads[2:]:
        a.step(pa, {"p": g})
        b.step(pb, {"p": g})
    assert np.array_equal(pa["p"], pb["p"])


def test_adam_steps_do_not_change_the_state_arrays_it_was_loaded_from():
    """(the state of another optimiser, or a checkpoint's arrays, stay as they were)"""
    a, params = Adam({"w": 0.01}, {"p": "w"}), {"p": np.ones(3)}
    a.step(params, {"p": np.array([1.0, -2.0, 3.0])})
    state = a.state_arrays()
    b = Adam({"w": 0.01}, {"p": "w"})
    b.load_state_arrays(state)
    kept = {name: value.copy() for name, value in state.items()}
    b.step({"p": np.ones(3)}, {"p": np.array([5.0, 5.0, 5.0])})
    for name, value in kept.items():
        np.testing.assert_array_equal(state[name], value, err_msg=name)
    np.testing.assert_allclose(a.first_moment["p"], [0.1, -0.2, 0.3], rtol=1e-14)  # ((1 - beta1) * the gradient)


def test_adam_defaults_are_the_published_ones():
    """Kingma & Ba 2015 propose beta1 = 0.9, beta2 = 0.999, eps = 1e-8; a changed default changes every run of
    the Python API that takes them (gradients of 1e-7 make eps count)."""
    rng = np.random.default_rng(2)
    adam, params = Adam({"w": 0.1}, {"p": "w"}), {"p": np.zeros(4)}
    expected, m, v = np.zeros(4), np.zeros(4), np.zeros(4)
    for t in range(1, 4):
        grad = rng.normal(size=4) * 1e-7
        adam.step(params, {"p": grad})
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad**2
        expected -= 0.1 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)
        np.testing.assert_allclose(params["p"], expected, rtol=1e-12, atol=0)


def test_adam_refuses_a_state_whose_moments_differ_in_shape():
    """(m and v of different shapes were taken, and the next step failed in numpy's broadcast)"""
    adam = Adam({"w": 0.1}, {"w": "w"})
    with pytest.raises(dg.InvalidValueError, match=r"state\['m.w'\]: expected 'v.w' of the same shape with it"):
        adam.load_state_arrays({"steps": 1, "m.w": np.ones((3, 4)), "v.w": np.ones((2, 4))})
    assert adam.steps == 0 and not adam.first_moment


def test_step_decay():
    assert step_decay_factor(0, 0.95, 20) == 1.0
    assert step_decay_factor(19, 0.95, 20) == 1.0
    assert step_decay_factor(20, 0.95, 20) == 0.95
    assert step_decay_factor(45, 0.5, 20) == 0.25
    # (every = 0 was a ZeroDivisionError; NaN, a negative gamma or epoch gave NaN, -1 or a growing factor)
    for args, message in (((5, 0.95, 0), "every: expected an integer >= 1, got 0"),
                          ((5, float("nan"), 1), "gamma: expected a number > 0 and <= 1, got nan"),
                          ((5, -1, 1), "gamma: expected a number > 0 and <= 1, got -1"),
                          ((-5, 0.5, 2), "epoch: expected an integer >= 0, got -5")):
        with pytest.raises(ValueError, match=message):
            step_decay_factor(*args)


@pytest.mark.parametrize("parametrisation", ["sigmoid", "clip"])
@pytest.mark.parametrize("kind, copies", [("axonal", 1), ("dendritic", 1), ("synaptic", 1), ("axonal", 2)])
def test_parameter_gradients_match_finite_differences(kind, copies, parametrisation):
    """dL/d(raw parameters) through the delay map agrees with central differences of the loss
    (also for one axonal delay shared by the `copies` of each input: they move together)."""
    config = TrainingConfig(hidden=6, delays=kind, delay_parametrisation=parametrisation, delay_scale=0.8,
                            delay_shift=0.1, encoder_options={"repeat": copies}, shared_input_delays=copies).resolved()
    model = TrainableNetwork(build_network(config, 4 * copies, 3), config, input_copies=copies)
    model.initialise(np.random.default_rng(3))
    assert model.params["layers.0.delays"].size == (4 if kind == "axonal" else 6 if kind == "dendritic" else 24)
    data = dg.datasets.yin_yang("validation")
    inputs = dg.LatencyEncoder(repeat=copies)(data.features[:40])
    labels = data.labels[:40]
    loss = dg.make_loss("squared")

    def total_loss():
        model.apply()
        return loss(dg.forward(model.network, inputs)[-1], labels).per_sample.mean()

    times = dg.forward(model.network, inputs)
    result = loss(times[-1], labels)
    grads = model.parameter_gradients(dg.backward(model.network, inputs, times, result.gradient))
    h = 1e-6
    for name, param in model.params.items():
        for index in list(np.ndindex(param.shape))[:6]:
            old = param[index]
            param[index] = old + h
            up = total_loss()
            param[index] = old - h
            down = total_loss()
            param[index] = old
            assert grads[name][index] == pytest.approx((up - down) / (2 * h), rel=1e-4, abs=1e-8), (name, index)


def test_weight_constraints_quantise_and_clip_but_keep_shadow_weights():
    config = TrainingConfig(hidden=5, delays="none", weight_limit=2.1, weight_resolution=1 / 30).resolved()
    model = TrainableNetwork(build_network(config, 4, 3), config)
    model.params["layers.0.weights"][...] = np.linspace(-3, 3, 20).reshape(4, 5)
    model.apply()
    effective = model.network.layers[0].projection.weights
    assert np.abs(effective).max() <= 2.1 + 1e-12
    np.testing.assert_allclose(effective * 30, np.round(effective * 30), atol=1e-9)
    assert model.params["layers.0.weights"].max() == 3.0


def test_a_weight_resolution_rounding_every_initial_weight_of_a_layer_to_zero_warns():
    """(weight_resolution 100, taken for 100 levels, started a silent network without a word; the
    silent-neuron bump then grew its weights to 100)"""
    config = TrainingConfig(hidden=5, delays="none", weight_resolution=100.0, weight_init_mean=[0.5, 200.0],
                            weight_init_std=[1.0, 0.0]).resolved()
    model = TrainableNetwork(build_network(config, 4, 3), config)
    with pytest.warns(UserWarning, match=re.escape(
            "weight_resolution 100.0 rounds every initial weight of layer 0 to 0 (drawn from weight_init_mean = "
            "[0.5, 200.0], weight_init_std = [1.0, 0.0]): it is the step between weights (e.g. 1/30), not their "
            "number of levels")):
        model.initialise(np.random.default_rng(0))
    chip_like = TrainingConfig(hidden=5, delays="none", weight_resolution=1 / 30).resolved()
    with warnings.catch_warnings():  # (a resolution that leaves weights: no warning)
        warnings.simplefilter("error")
        TrainableNetwork(build_network(chip_like, 4, 3), chip_like).initialise(np.random.default_rng(0))


def test_clipped_delays_are_projected_into_zero_to_delay_max():
    """docs/model.md §3: with the clip parametrisation a delay is its raw value clipped to [0, delay_max] after
    each step (a negative delay would deliver a spike before it was sent; delay_max unenforced, a setting ignored)."""
    config = TrainingConfig(hidden=3, delays="axonal", delay_parametrisation="clip", delay_max=1.5).resolved()
    model = TrainableNetwork(build_network(config, 4, 3), config)
    model.params["layers.0.delays"][...] = [-0.5, 0.7, 2.0, 1.5]
    model.constrain()
    np.testing.assert_array_equal(model.params["layers.0.delays"], [0.0, 0.7, 1.5, 1.5])


def test_a_training_step_keeps_clipped_delays_within_zero_to_delay_max():
    """The step projects the delays after Adam's update (docs/model.md §3): delays starting on
    both bounds, moved by a large delay step, end up none outside [0, delay_max]."""
    config = TrainingConfig(epochs=1, hidden=6, delays="synaptic", delay_parametrisation="clip", delay_max=1.0,
                            delay_lr=0.5, silent_bump=None)
    trainer = Trainer(config)
    delays = [trainer.model.params[name] for name in ("layers.0.delays", "layers.1.delays")]
    for layer_delays in delays:
        layer_delays[..., ::2], layer_delays[..., 1::2] = 0.0, 1.0
    trainer.model.apply()
    before = [layer_delays.copy() for layer_delays in delays]
    trainer.step(trainer.train_set.features[:150], trainer.train_set.labels[:150], 1.0)
    moved = np.concatenate([(after - start).ravel() for after, start in zip(delays, before)])
    values = np.concatenate([layer_delays.ravel() for layer_delays in delays])
    assert np.abs(moved).max() > 0.1 and ((values > 0) & (values < 1)).any()
    assert values.min() == 0.0 and values.max() == 1.0


def test_initial_clipped_delays_start_within_delay_max():
    """(the clip parametrisation draws delays between delay_shift and delay_shift + delay_scale; those
    above delay_max are clipped before the first run, not after the first step)"""
    config = TrainingConfig(hidden=3, delays="axonal", delay_parametrisation="clip", delay_shift=0.1,
                            delay_scale=1.0, delay_max=0.3).resolved()
    model = TrainableNetwork(build_network(config, 40, 3), config)
    model.initialise(np.random.default_rng(0))
    drawn = model.params["layers.0.delays"]
    assert drawn.max() == 0.3 and drawn.min() > 0.1
    np.testing.assert_array_equal(model.network.layers[0].projection.delays, drawn)


def test_per_layer_initial_weights_are_drawn_with_their_layers_settings():
    config = TrainingConfig(hidden=50, delays="none", weight_init_mean=[-2.0, 3.0],
                            weight_init_std=[0.0, 0.5]).resolved()
    model = TrainableNetwork(build_network(config, 40, 30), config)
    model.initialise(np.random.default_rng(0))
    np.testing.assert_array_equal(model.params["layers.0.weights"], -2.0)
    output = model.params["layers.1.weights"]
    assert output.mean() == pytest.approx(3.0, abs=0.05) and output.std() == pytest.approx(0.5, rel=0.05)


def test_delays_from_raw_gives_new_delays_not_the_parameters():
    """(writing into the delays a clip parametrisation returns must not move its parameters)"""
    for parametrisation in ("clip", "sigmoid"):
        config = TrainingConfig(hidden=3, delays="axonal", delay_parametrisation=parametrisation).resolved()
        model = TrainableNetwork(build_network(config, 4, 3), config)
        model.initialise(np.random.default_rng(0))
        raw = model.params["layers.0.delays"]
        before = raw.copy()
        model.delays_from_raw(raw)[...] = 7.0
        np.testing.assert_array_equal(raw, before)


def test_training_is_deterministic():
    config = TrainingConfig(epochs=2, hidden=10, delays="axonal", seed=5)
    a, b = Trainer(config), Trainer(config)
    history_a, history_b = a.fit(progress=False), b.fit(progress=False)
    for name in a.model.params:
        assert np.array_equal(a.model.params[name], b.model.params[name])
    assert [m.train_loss for m in history_a] == [m.train_loss for m in history_b]


def test_an_epochs_record_weighs_its_batches_by_size_and_sums_their_counts():
    """docs/training.md: train_loss and train_accuracy are of the epoch's batches as they were stepped,
    weighted by their sizes; learning_rate_factor is lr_decay ** (epochs before it // lr_decay_every);
    skipped_steps, no_crossing and guarded are summed over the epoch's steps."""
    trainer = Trainer(TrainingConfig(epochs=2, hidden=5, batch_size=3000, seed=1, lr_decay=0.5, lr_decay_every=1,
                                     max_weight_term=1e-4))  # (terms are divided by the batch size)
    stepped, step = [], trainer.step

    def recording(features, labels, lr_factor):
        result = step(features, labels, lr_factor)
        stepped.append((len(labels), result, lr_factor))
        return result

    trainer.step = recording
    history = trainer.fit(progress=False)
    assert [size for size, *_ in stepped] == [3000, 2000, 3000, 2000]  # (5000 Yin-Yang training samples)
    for metrics, ((_, a, _), (_, b, _)) in zip(history, (stepped[:2], stepped[2:])):
        assert a.loss != b.loss
        assert metrics.train_loss == pytest.approx((3 * a.loss + 2 * b.loss) / 5, rel=1e-12)
        assert metrics.train_accuracy == pytest.approx((3 * a.accuracy + 2 * b.accuracy) / 5, rel=1e-12)
        counts = {name: getattr(a, name) + getattr(b, name) for name in ("no_crossing", "guarded")}
        assert counts["guarded"] > 0 and counts["no_crossing"] != counts["guarded"]
        assert (metrics.skipped_steps, metrics.no_crossing, metrics.guarded) == (
            a.skipped + b.skipped, counts["no_crossing"], counts["guarded"])
    assert [m.learning_rate_factor for m in history] == [1.0, 0.5]
    assert [factor for *_, factor in stepped] == [1.0, 1.0, 0.5, 0.5]


def test_training_learns():
    history = Trainer(TrainingConfig(epochs=3, hidden=10, delays="none", seed=5)).fit(progress=False)
    assert history[-1].train_loss < 0.6 * history[0].train_loss
    assert history[-1].validation_accuracy > 0.6  # chance level is 1/3


def test_resume_equals_uninterrupted(tmp_path):
    config = TrainingConfig(epochs=4, hidden=8, delays="synaptic", seed=2)
    straight = Trainer(config)
    straight.fit(progress=False)

    with Trainer(TrainingConfig(**{**config.to_dict(), "epochs": 2}), out_dir=tmp_path) as first:
        first.fit(progress=False)
    with Trainer(config, out_dir=tmp_path, resume=True) as resumed:
        resumed.fit(progress=False)
    for name in straight.model.params:
        assert np.array_equal(straight.model.params[name], resumed.model.params[name]), name
        assert np.array_equal(straight.selection.params[name], resumed.selection.params[name]), name
    assert [m.validation_loss for m in straight.history] == [m.validation_loss for m in resumed.history]
    assert straight.selection.epoch == resumed.selection.epoch


def test_keep_best_keeps_the_best_validation_epoch(tmp_path):
    trainer = Trainer(TrainingConfig(epochs=4, hidden=8, delays="none", seed=3), out_dir=tmp_path)
    history = trainer.fit(progress=False)
    accuracies = [m.validation_accuracy for m in history]
    assert trainer.selection.epoch == 1 + accuracies.index(max(accuracies))
    test, final_test = trainer.finish()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["selected_epoch"] == trainer.selection.epoch and metrics["test_accuracy"] == test.accuracy
    kept = dg.load_network(tmp_path / "network.npz")
    assert trainer.evaluate(trainer.validation_set).accuracy == max(accuracies)
    inputs = dg.LatencyEncoder()(trainer.test_set.features)
    assert dg.accuracy(dg.forward(kept, inputs)[-1], trainer.test_set.labels) == test.accuracy
    assert metrics["final_epoch_test_accuracy"] == (final_test or test).accuracy  # (it was left out for the last)
    with Trainer(TrainingConfig(epochs=2, hidden=8, delays="none", seed=3, keep_best=False),
                 out_dir=tmp_path / "last") as last:
        last.fit(progress=False)
        test, final_test = last.finish()
    metrics = json.loads((tmp_path / "last" / "metrics.json").read_text())
    assert final_test is None and metrics["final_epoch_test_accuracy"] == metrics["test_accuracy"] == test.accuracy
    assert metrics["selected_epoch"] == metrics["epochs_completed"] == 2


def test_metrics_record_the_last_epochs_test_accuracy_beside_the_kept_epochs(tmp_path):
    """docs: `final_epoch_test_accuracy` is the test accuracy of the last epoch's network, `test_accuracy` that
    of the kept (best-validation) one; here they differ (large steps: epoch 1 validates best)."""
    config = TrainingConfig(epochs=2, hidden=5, batch_size=250, seed=1, weight_lr=1.0)
    with Trainer(config, out_dir=tmp_path) as trainer:
        trainer.fit(progress=False)
        last_epochs = trainer.evaluate(trainer.test_set).accuracy  # (before finish: the last epoch's network)
        test, final_test = trainer.finish()
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["selected_epoch"] == 1 and final_test.accuracy == last_epochs != test.accuracy
    assert metrics["final_epoch_test_accuracy"] == last_epochs and metrics["test_accuracy"] == test.accuracy


def test_resume_refuses_a_checkpoint_with_other_settings(tmp_path):
    with Trainer(TrainingConfig(**SHORT), out_dir=tmp_path) as first:
        first.fit(progress=False)
    hidden = SHORT.get("hidden", TrainingConfig.hidden)
    with pytest.raises(ValueError, match=rf"different settings \(hidden: {hidden} in the checkpoint, 9 now\)"):
        Trainer(TrainingConfig(**{**SHORT, "hidden": 9}), out_dir=tmp_path, resume=True)


def test_resume_takes_other_values_of_options_that_do_not_change_results(tmp_path):
    with Trainer(TrainingConfig(**SHORT), out_dir=tmp_path) as first:
        first.fit(progress=False)
    with Trainer(TrainingConfig(**{**SHORT, "backend_options": {"n_threads": 1}}), out_dir=tmp_path, resume=True):
        pass
    with pytest.raises(ValueError, match="backend: \"reference\" in the checkpoint, \"example\" now"):
        Trainer(TrainingConfig(**{**SHORT, "backend": "example", "backend_options": {}}), out_dir=tmp_path,
                resume=True)


def test_an_option_given_at_its_factorys_default_resumes_as_if_left_out(tmp_path):
    """(option tables were compared as given: a run trained without options was refused when
    resumed with --backend-option chip=0, 0 being bss2-emulator's default chip)"""
    run, chip = tmp_path / "run", tmp_path / "chip"
    base = ["train", "--hidden", "4", "--delays", "none", "--no-progress"]
    assert cli_runner().invoke(main, base + ["--out", str(run), "--epochs", "1"]).exit_code == 0
    resumed = cli_runner().invoke(main, ["train", "--out", str(run), "--resume", "--epochs", "2", "--no-progress",
                                         "--set", 'encoder_options={"repeat": 1}'])
    assert resumed.exit_code == 0, resumed.output
    config = json.loads((run / "metrics.json").read_text())["config"]
    assert config["encoder_options"] == {"repeat": 1} and config["epochs"] == 2  # (kept as given)
    refused = cli_runner().invoke(main, ["train", "--out", str(run), "--resume", "--epochs", "3", "--no-progress",
                                         "--set", 'encoder_options={"repeat": 2}'])
    assert refused.exit_code == 1 and 'encoder_options: {} in the checkpoint, {"repeat": 2} now); resume with the ' \
        "run's own settings\n" in refused.output, refused.output
    on_chip = ["--backend", "bss2-emulator", "--out", str(chip), "--no-progress"]
    assert cli_runner().invoke(main, base + on_chip + ["--epochs", "1"]).exit_code == 0
    resumed = cli_runner().invoke(main, ["train", "--resume", "--epochs", "2", "--backend-option", "chip=0", *on_chip])
    assert resumed.exit_code == 0, resumed.output


def test_options_compare_by_their_factorys_defaults_as_json_and_others_as_given(monkeypatch, tmp_path):
    """An option at its keyword parameter's default is left out (None too); 1 is not true, nor
    0.0 zero; an option the factory takes as **options is compared as given, and the refusal says so."""
    from delgrad_core._plugins import registry as installed

    class Chips(installed().get("backend", "reference").obj):
        name = "chips"

        def __init__(self, n_threads=None, chip=0, calibrated=True, label=None, **options):
            super().__init__(n_threads)

    _register_plugin_components(monkeypatch, delgrad_register_backends=lambda register: register("chips", Chips))
    short = {**SHORT, "epochs": 1, "backend": "chips"}
    with Trainer(TrainingConfig(**short), out_dir=tmp_path) as first:
        first.fit(progress=False)

    def resume(**options):
        return Trainer(TrainingConfig(**{**short, "epochs": 2, "backend_options": options}), out_dir=tmp_path,
                       resume=True)

    resume(chip=0, calibrated=True, label=None, n_threads=2).close()
    for option, shown in (("calibrated", "1"), ("chip", "0.0"), ("chip", "false")):
        with pytest.raises(ValueError, match=rf'backend_options: {{}} in the checkpoint, {{"{option}": {shown}}} '
                                             r"now\); resume with the run's own settings$"):
            resume(**{option: json.loads(shown)})
    with pytest.raises(ValueError, match=r"settings \(compared as given, a change even at the value the factory takes "
                                         r"without them: backend_options.gain, options given on one side only whose "
                                         r"factory declares no default for them, e.g. takes them as \*\*options\)$"):
        resume(gain=1.0)


def test_a_resume_naming_another_backend_is_the_resume_conflict_not_its_options_usage_error(tmp_path):
    """(the run's own backend options were handed to the backend named on the command line:
    "backend 'example': unknown option(s) n_threads", a usage error for an option not given)"""
    base = ["train", "--out", str(tmp_path / "run"), "--no-progress"]
    assert cli_runner().invoke(main, base + ["--epochs", "1", "--hidden", "4", "--delays", "none",
                                             "--backend-option", "n_threads=1"]).exit_code == 0
    refused = cli_runner().invoke(main, base + ["--resume", "--epochs", "2", "--backend", "example"])
    assert refused.exit_code == 1 and 'different settings (backend: "reference" in the checkpoint, "example" now' \
        in refused.output, refused.output


def test_a_run_on_a_backend_object_resumes_with_an_object_only(tmp_path):
    """(its checkpoint held the config's backend, "reference": a resume by name built that one
    and failed at the calibration check, blaming another chip or option set)"""
    from delgrad_core.cli import main
    from delgrad_core.testing import cli_runner

    short = {**SHORT, "epochs": 1}
    with Trainer(TrainingConfig(**short), backend=dg.get_backend("example"), out_dir=tmp_path) as first:
        first.fit(progress=False)
    message = (f"resume: the run in {tmp_path} was trained on a backend object given from Python (\"example\", "
               "whose options the run does not record); resume it from Python with that object")
    with pytest.raises(dg.InvalidValueError, match=re.escape(message)):
        Trainer(TrainingConfig(**{**short, "epochs": 2}), out_dir=tmp_path, resume=True)
    refused = cli_runner().invoke(main, ["train", "--out", str(tmp_path), "--resume", "--epochs", "2",
                                         "--no-progress"])
    assert refused.exit_code == 1 and message in refused.output, refused.output
    with Trainer(TrainingConfig(**{**short, "epochs": 2}), backend=dg.get_backend("example"), out_dir=tmp_path,
                 resume=True) as resumed:
        assert resumed.fit(progress=False)[-1].epoch == 2


def test_a_trainer_claims_its_folder_like_the_command_line(tmp_path):
    with Trainer(TrainingConfig(**SHORT), out_dir=tmp_path / "run") as first:
        with pytest.raises(dg.RunFolderError, match="run: in use by this process \\(a Trainer or claim of it not "
                                                    "closed yet\\)"):
            Trainer(TrainingConfig(**SHORT), out_dir=tmp_path / "run")
        first.fit(progress=False)
        first.finish()
    with pytest.raises(dg.RunFolderError, match="already holds a run .*--resume"):
        Trainer(TrainingConfig(**SHORT), out_dir=tmp_path / "run")  # a finished run is never overwritten
    (tmp_path / "a-file").write_text("")
    with pytest.raises(dg.RunFolderError, match="a-file: exists and is not a folder"):
        Trainer(TrainingConfig(**SHORT), out_dir=tmp_path / "a-file")
    with pytest.raises(dg.RunFolderError, match="no checkpoint.npz to resume from"):
        Trainer(TrainingConfig(**SHORT), out_dir=tmp_path / "new", resume=True)
    with Trainer(TrainingConfig(**SHORT)) as without_folder:
        with pytest.raises(ValueError, match="save_checkpoint: this trainer has no run folder"):
            without_folder.save_checkpoint()
        with pytest.raises(ValueError, match="finish: no epoch has been trained"):
            without_folder.finish()
    with pytest.raises(ValueError, match="resume: needs out_dir"):
        Trainer(TrainingConfig(**SHORT), resume=True)


def test_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    trainer = Trainer(TrainingConfig(**SHORT), out_dir=tmp_path)
    trainer.fit(progress=False)
    before = (tmp_path / "checkpoint.npz").read_bytes()

    def broken_savez(handle, arrays):
        handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr("delgrad_core.training._run_folder.write_npz", broken_savez)
    with pytest.raises(OSError):
        trainer.save_checkpoint()
    assert (tmp_path / "checkpoint.npz").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize(
    "settings, field",
    [({"delays": "diagonal"}, "delays"), ({"hidden": 0}, "hidden"), ({"loss": "hinge"}, "loss"),
     ({"tau_ratio": -1.0}, "tau_ratio"), ({"dataset": "cifar10"}, "dataset"), ({"hiden": 3}, "hiden")],
)
def test_config_errors_name_the_setting(settings, field):
    with pytest.raises(ValueError, match=field):
        TrainingConfig.from_dict(settings)


def test_config_values_python_cannot_compare_or_convert_are_refused_naming_the_setting():
    """(an integer too large for a float was an OverflowError, an array of delay kinds numpy's
    "truth value is ambiguous", a non-table to config_with_defaults an AttributeError, and a tuple
    of hidden sizes on a backend of one hidden layer blamed weight_init_mean, never given)"""
    from delgrad_core.training import config_with_defaults

    for settings, message in (({"weight_lr": 10**400}, r"weight_lr: expected a number > 0 and <= 10, or unset, got the "
                                                        r"integer 1\.00e\+400$"),
                              ({"weight_lr": 10**300}, r"weight_lr: expected .*, got the integer 1\.00e\+300$"),
                              ({"threshold": -10**400}, r"threshold: expected a finite number >= 1e-300, got the "
                                                        r"integer -1\.00e\+400$"),
                              ({"epochs": 10**5000}, r"epochs: expected an integer >= 1, got the integer "
                                                     r"1\.00e\+5000$"),
                              ({"epochs": -12345}, r"epochs: expected an integer >= 1, got -12345$"),
                              ({"hidden": (4, 3), "delays": np.array(["axonal", "none", "none"])},
                               r"delays: array\(\['axonal', 'none', 'none'\], dtype='<U6'\) is not allowed")):
        with pytest.raises(dg.InvalidValueError, match=f"^{message}"):
            TrainingConfig(**settings)
    for values in (None, []):
        with pytest.raises(dg.InvalidValueError, match=r"^config_with_defaults: expected a table of the settings you "
                                                       rf"choose \(a dict\), got {type(values).__name__}$"):
            config_with_defaults(values)
    # (config.to_dict(), which the message advised, holds every class default: they won over the defaults)
    with pytest.raises(dg.InvalidValueError, match=r"got TrainingConfig \(a TrainingConfig is complete: every "
                                                   r"setting it does not set holds its class default, which would "
                                                   r"win over the defaults; give a dict of only the settings you "
                                                   r"choose\)$"):
        config_with_defaults(TrainingConfig())
    with pytest.raises(dg.InvalidValueError, match=r"^hidden: backend 'bss2-emulator' runs at most 2 neuron layers"):
        config_with_defaults({"backend": "bss2-emulator", "hidden": (4, 3)})


def test_config_takes_numpy_numbers_as_python_ones():
    config = TrainingConfig(epochs=np.int64(2), seed=np.uint64(3), weight_lr=np.float32(0.5))
    assert (config.epochs, config.seed, config.weight_lr) == (2, 3, 0.5) and type(config.seed) is int
    json.dumps(config.to_dict())  # (the run folder keeps it as JSON)
    with pytest.raises(ValueError, match=r"epochs: expected an integer >= 1, got (np\.True_|True)"):  # (numpy 2, 1)
        TrainingConfig(epochs=np.bool_(True))


@pytest.mark.parametrize(("field", "value", "message"), [
    ("hidden", "abc", r"^hidden: expected a positive integer or a list of them \(one per hidden layer\), got 'abc'"),
    ("delays", "bogus", r"^delays: 'bogus' is not allowed; choose one of none, axonal, dendritic, synaptic"),
    ("delays", ["none"], r"^delays: a list needs one kind per neuron layer \(2\), got 1"),
])
def test_resolved_refuses_fields_changed_after_construction_as_construction_does(field, value, message):
    """(resolved() used them first: TypeError "unsupported operand", KeyError 'bogus')"""
    with pytest.raises(dg.InvalidValueError, match=message):
        TrainingConfig(**{field: value}, _check_components=False)
    config = TrainingConfig(_check_components=False)
    setattr(config, field, value)
    with pytest.raises(dg.InvalidValueError, match=message):
        config.resolved()


def test_numpy_numbers_in_option_tables_are_kept_as_python_ones_and_checkpoint(tmp_path):
    """(they passed the config and crashed the first checkpoint: int64 is not JSON serializable)"""
    from delgrad_core.training._trials import plan_trials

    numpy_options = dict(backend_options={"n_threads": np.int64(1)}, encoder_options={"repeat": np.int64(2)})
    with Trainer(TrainingConfig(hidden=5, epochs=1, **numpy_options), out_dir=tmp_path / "run") as trainer:
        trainer.fit(progress=False)
    plain = dict(backend_options={"n_threads": 1}, encoder_options={"repeat": 2})
    with Trainer(TrainingConfig(hidden=5, epochs=2, **plain), out_dir=tmp_path / "run", resume=True) as trainer:
        trainer.fit(progress=False)  # (the stored settings are those given as Python numbers)
    nested = TrainingConfig(dataset_options={"a": [np.bool_(True), (np.int32(3), {"b": np.float32(0.5)})],
                                             "directory": Path("/data")},
                            _check_components=False).dataset_options
    assert nested == {"a": [True, [3, {"b": 0.5}]], "directory": "/data"}
    assert type(nested["a"][0]) is bool and type(nested["a"][1][0]) is int
    trial_ids = {plan_trials({"epochs": 1, **options}, [4], ["none"], 1, tmp_path / "sweep")[0].id
                 for options in (numpy_options, plain)}
    assert len(trial_ids) == 1


@pytest.mark.parametrize("value", [float("nan"), float("inf"), __import__("datetime").date(2024, 1, 2), {1: 2},
                                   object()])
def test_option_values_that_json_cannot_hold_are_refused_when_the_config_is_built(value):
    with pytest.raises(dg.InvalidValueError, match=r"^backend_options.x.y\[1\]: expected a string, a finite number, "
                                                   r"true/false, None, or a list or table of them \(the config is "
                                                   r"JSON\), got "):
        TrainingConfig(backend_options={"x": {"y": [1, value]}})


def test_a_threshold_the_network_refuses_is_refused_naming_the_setting(tmp_path):
    """(a denormal threshold passed "> 0" and was refused by the network build as hidden.threshold)"""
    from delgrad_core._ir import MIN_THRESHOLD

    with pytest.raises(dg.InvalidValueError, match=r"^threshold: expected a finite number >= 1e-300, got 5e-324$"):
        TrainingConfig(threshold=5e-324)
    Trainer(TrainingConfig(hidden=5, epochs=1, threshold=MIN_THRESHOLD)).close()  # (the smallest the network takes)
    (tmp_path / "c.toml").write_text("threshold = 5e-324\n")
    result = cli_runner().invoke(main, ["train", "--config", str(tmp_path / "c.toml"), "--out", str(tmp_path / "run")])
    assert (result.exit_code == 2
            and "c.toml: threshold: expected a finite number >= 1e-300, got 5e-324" in result.output)


def test_a_denormal_weight_resolution_is_refused_naming_the_setting():
    """(5e-324 passed "> 0" and the trainer's build failed on NaN weights, naming weight_init_mean)"""
    with pytest.raises(dg.InvalidValueError, match=r"^weight_resolution: expected a finite number >= 1e-12, or unset, "
                                                   r"got 5e-324$"):
        TrainingConfig(weight_resolution=5e-324)
    Trainer(TrainingConfig(hidden=5, epochs=1, weight_resolution=1e-12)).close()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_load_config_refuses_a_fifo_without_reading_it(tmp_path):
    """(the command line refused one, but load_config from Python waited for a writer for ever)"""
    os.mkfifo(tmp_path / "c.toml")
    with pytest.raises(dg.InvalidValueError, match="c.toml: cannot read the settings file .not a regular file"):
        load_config(tmp_path / "c.toml")


def test_negative_zero_settings_are_stored_as_zero(tmp_path):
    """(-0.0 was kept, so a sweep's trial of delay_lr = -0.0 was another one than of 0.0)"""
    from delgrad_core.training._trials import plan_trials

    config = TrainingConfig(delay_lr=-0.0, t_early=-0.0, weight_init_mean=[-0.0, 1.0], loss_options={"x": -0.0},
                            _check_components=False)
    assert json.dumps([config.delay_lr, config.t_early, config.weight_init_mean, config.loss_options]) == \
        '[0.0, 0.0, [0.0, 1.0], {"x": 0.0}]'
    ids = {plan_trials({"epochs": 1, "delay_lr": zero}, [4], ["axonal"], 1, tmp_path)[0].id for zero in (-0.0, 0.0)}
    assert len(ids) == 1


@pytest.mark.parametrize("name", ["weight_lr", "delay_lr", "silent_bump"])
def test_learning_rates_and_the_bump_are_refused_beyond_ten_naming_the_setting(name, tmp_path):
    """(1e300 trained until the summed weights overflowed, without naming the setting)"""
    from delgrad_core.training import load_config
    from delgrad_core.training._config import check_settings

    wanted = "from 0 to 10" if name == "delay_lr" else "> 0 and <= 10"  # (delay_lr 0: fixed delays)
    for value in (1e300, 10.5, float("inf"), float("nan"), -0.5):
        with pytest.raises(dg.InvalidValueError, match=rf"^{name}: expected a number {wanted}, or unset, "
                                                       rf"got {re.escape(repr(value))}$"):
            TrainingConfig(**{name: value})
    assert getattr(TrainingConfig(**{name: 10}), name) == 10.0
    (tmp_path / "fast.toml").write_text(f"{name} = 1e300\n")
    with pytest.raises(dg.InvalidValueError,
                       match=rf"fast.toml: {name}: expected .*(<= |to )10, or unset, got 1e\+300"):
        load_config(tmp_path / "fast.toml")
    # (a backend's defaults)
    with pytest.raises(dg.InvalidValueError, match=rf"defaults.{name}: expected .*(<= |to )10"):
        check_settings({name: 1e300}, "backend 'chip': training_defaults")


def test_a_run_that_training_moves_out_of_range_names_the_large_step_sizes():
    """(the loss or network error of a run whose steps were too large named none of them)"""
    blowing_up = dict(hidden=5, epochs=1, delays="axonal", delay_lr=10, delay_parametrisation="clip",
                      loss="crossentropy", loss_beta=0.01)  # (beta 0.01: exp(t / beta) overflows past 7 tau_s)
    with Trainer(TrainingConfig(**blowing_up)) as trainer, \
            pytest.raises(dg.InvalidValueError, match=r"^epoch 1: loss TTFSCrossEntropy.*not finite.*; training moved "
                                                      r"the parameters there, likely in too large steps: delay_lr = 10 "
                                                      r"\(DelGrad's: up to 0.01\); delay_max bounds the clipped "
                                                      r"delays$"):
        trainer.fit(progress=False)
    with Trainer(TrainingConfig(**dict(blowing_up, delay_lr=0.005))) as trainer:
        trainer.fit(progress=False)  # (the same run with DelGrad's rate)
    # no step has moved the parameters yet (an error of the initial network), or DelGrad's steps
    # moved them (here the bump, over skipped steps): the error as it is
    for settings in (dict(hidden=5, weight_lr=10, loss_beta=0.001), dict(hidden=4, delays="none", loss_beta=0.001)):
        with Trainer(TrainingConfig(epochs=1, loss="crossentropy", **settings)) as trainer, \
                pytest.raises(dg.InvalidValueError, match=r"^loss TTFSCrossEntropy.*out of its useful range$"):
            trainer.fit(progress=False)
    assert trainer.optimiser.steps == 0 and trainer.bump.level > trainer.bump.bump  # (the bump moved them)


def test_the_large_step_sizes_named_are_those_more_than_ten_times_delgrads_that_move_parameters():
    """docs/training.md: the step sizes named are those more than ten times DelGrad's (weight_lr above 0.2, ...);
    a delay_lr of a network without delays moves nothing and is not named."""
    blowing_up = dict(hidden=5, epochs=1, delays="axonal", delay_lr=10, delay_parametrisation="clip",
                      loss="crossentropy", loss_beta=0.01, weight_lr=0.2, silent_bump=0.005)
    with Trainer(TrainingConfig(**blowing_up)) as trainer, \
            pytest.raises(dg.InvalidValueError, match=r"likely in too large steps: delay_lr = 10 \(DelGrad's: up to "
                                                      r"0.01\); delay_max bounds the clipped delays$"):
        trainer.fit(progress=False)
    with Trainer(TrainingConfig(**blowing_up, delay_max=100.0)) as trainer, \
            pytest.raises(dg.InvalidValueError, match=r"likely in too large steps: delay_lr = 10 \(DelGrad's: up to "
                                                      r"0.01\)$"):  # (bounded: no advice to bound them)
        trainer.fit(progress=False)
    without_delays = dict(hidden=4, delays="none", delay_lr=10, loss="crossentropy", loss_beta=0.001, epochs=1)
    with Trainer(TrainingConfig(**without_delays)) as trainer, \
            pytest.raises(dg.InvalidValueError, match=r"^loss TTFSCrossEntropy.*out of its useful range$"):
        trainer.fit(progress=False)


@pytest.mark.parametrize("setting", [{"weight_init_mean": 1e300}, {"weight_init_std": 1e300}])
def test_an_initial_network_out_of_range_names_the_settings_it_was_drawn_from(setting):
    """(it was refused naming only hidden.projection.weights)"""
    with pytest.raises(dg.InvalidValueError, match=r"^the initial network drawn from weight_init_mean = .*, "
                                                   r"weight_init_std = .* is refused: hidden.projection.weights: "):
        Trainer(TrainingConfig(hidden=5, epochs=1, **setting))


@pytest.mark.parametrize("parametrisation", ["sigmoid", "clip"])
def test_initial_delays_out_of_range_name_the_delay_settings_they_were_drawn_from(parametrisation):
    """(delays beyond float range, from delay_shift + delay_scale * sigmoid(raw): the refusal named neither
    of the two, and numpy warned of an overflow first)"""
    setting = dict(delay_shift=1e308, delay_scale=1e308, delay_init_mean=100.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(dg.InvalidValueError, match=r"^the initial network drawn from delay_init_mean = 100.0, "
                                                       r"delay_init_std = .*, delay_parametrisation = "
                                                       f"'{parametrisation}', "
                                                       r"delay_shift = 1e\+308, delay_scale = 1e\+308 is refused: "
                                                       r"hidden.projection.delays: contains NaN or inf$"):
            Trainer(TrainingConfig(hidden=5, epochs=1, delays="axonal", delay_parametrisation=parametrisation,
                                   **setting))


def test_trainer_refuses_a_plain_dict_naming_the_way_to_build_a_config():
    with pytest.raises(ValueError, match="config: expected a TrainingConfig .*from_dict.* got dict"):
        Trainer({"hidden": 3})


def test_default_run_folders_of_runs_started_at_once_differ(tmp_path, monkeypatch):
    """runs/train-<time>, then -1, -2, ... for runs started in the same second."""
    import datetime

    from delgrad_core.cli import _train_cmd

    class Frozen(datetime.datetime):
        @classmethod
        def now(cls, tz=None):
            return cls(2026, 12, 5, 17, 40, 0)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(_train_cmd, "datetime", Frozen)
    made = []
    worker = threading.Thread(target=lambda: made.extend(_train_cmd._fresh_out_dir() for _ in range(3)), daemon=True)
    worker.start()
    worker.join(timeout=10)  # (a suffix that does not count up would try the same name for ever)
    assert [str(path) for path in made] == ["runs/train-20261205-174000", "runs/train-20261205-174000-1",
                                            "runs/train-20261205-174000-2"]
    assert all(path.is_dir() for path in made)


def test_cli_train_writes_outputs_and_resumes(tmp_path):
    out = tmp_path / "run"
    config = tmp_path / "config.toml"
    config.write_text("[train]\nbatch-size = 250\nloss = 'crossentropy'\n")
    runner = cli_runner()
    args = ["train", "--hidden", "6", "--delays", "axonal", "--epochs", "2", "--seed", "1",
            "--config", str(config), "--out", str(out), "--no-progress"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["loss"] == "crossentropy" and metrics["config"]["batch_size"] == 250
    assert metrics["n_parameters"] == 8 * 6 + 4 and len(metrics["epochs"]) == 2
    assert 0.0 <= metrics["test_accuracy"] <= 1.0 and metrics["backend"] == "reference"
    assert dg.load_network(out / "network.npz").sizes == [4, 6, 3]
    if plots_available():
        for plot in ("learning_curves.png", "spike_times.png", "confusion.png", "decision_map.png", "delays.png"):
            assert (out / plot).read_bytes()[:4] == b"\x89PNG"

    again = runner.invoke(main, args)
    assert again.exit_code != 0 and "--resume" in again.output
    resumed = runner.invoke(main, [a if a != "2" else "3" for a in args] + ["--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert len(json.loads((out / "metrics.json").read_text())["epochs"]) == 3
    fewer = runner.invoke(main, ["train", "--out", str(out), "--resume", "--epochs", "2"])
    assert fewer.exit_code != 0 and "has trained 3 epochs already; resume it to at least that many, not 2" \
        in fewer.output
    extended = runner.invoke(main, ["train", "--out", str(out), "--resume", "--epochs", "4", "--no-progress"])
    assert extended.exit_code == 0, extended.output  # the run's own settings, without repeating them
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["epochs"]) == 4 and metrics["config"]["hidden"] == 6 and metrics["config"]["batch_size"] == 250

    for target in (out, out / "network.npz"):  # the run folder or its network file: the run's own settings
        evaluated = runner.invoke(main, ["evaluate", str(target), "--json"])
        assert evaluated.exit_code == 0, evaluated.output
        assert json.loads(evaluated.stdout)["accuracy"] == pytest.approx(
            json.loads((out / "metrics.json").read_text())["test_accuracy"])


def test_evaluate_uses_the_runs_own_encoder(tmp_path):
    config = tmp_path / "late.toml"
    config.write_text("t_early = 0.5\nt_late = 3.0\nepochs = 2\nhidden = 6\ndelays = 'none'\n")
    runner = cli_runner()
    trained = runner.invoke(main, ["train", "--config", str(config), "--out", str(tmp_path / "run"), "--no-progress"])
    assert trained.exit_code == 0, trained.output
    expected = json.loads((tmp_path / "run" / "metrics.json").read_text())["test_accuracy"]
    evaluated = runner.invoke(main, ["evaluate", str(tmp_path / "run"), "--json"])
    assert json.loads(evaluated.stdout)["accuracy"] == pytest.approx(expected)
    copied = tmp_path / "elsewhere.npz"
    copied.write_bytes((tmp_path / "run" / "network.npz").read_bytes())
    alone = runner.invoke(main, ["evaluate", str(copied), "--json"])  # no run settings: the default encoder
    assert alone.exit_code == 0 and json.loads(alone.stdout)["dataset"] == "yin_yang"
    assert json.loads(alone.stdout)["accuracy"] != pytest.approx(expected)  # (so the note matters)
    assert "holds no encoding: evaluated with the default encoder settings (--config gives" in alone.stderr
    told = runner.invoke(main, ["evaluate", str(copied), "--json", "--config", str(config)])
    assert json.loads(told.stdout)["accuracy"] == pytest.approx(expected) and "note" not in told.stderr
    refused = runner.invoke(main, ["evaluate", str(tmp_path / "run"), "--config", str(config)])
    assert refused.exit_code == 2 and "evaluated with its run's own settings" in refused.output
    other = tmp_path / "other.toml"  # (another network's settings were ignored without a word)
    other.write_text("t_early = 0.5\nt_late = 3.0\nhidden = [20, 10]\ndelays = 'axonal'\n")
    noted = runner.invoke(main, ["evaluate", str(copied), "--json", "--config", str(other)])
    assert json.loads(noted.stdout)["accuracy"] == pytest.approx(expected)
    assert f"note: {other} describes another network than {copied} (hidden [20, 10] against [6]; delays " \
           "['axonal', 'axonal', 'axonal'] against ['none', 'none']): the file's network is evaluated" in noted.stderr
    other.write_text("t_early = 0.5\nt_late = 3.0\ntau_ratio = 1.0\nthreshold = 1.5\n")  # (the file: 2 and 1)
    noted = runner.invoke(main, ["evaluate", str(copied), "--json", "--config", str(other)])
    assert f"describes another network than {copied} (tau_ratio 1 against 2; threshold 1.5 against 1)" \
        in noted.stderr, noted.stderr


def test_cli_rejects_unknown_backend_naming_the_choices(tmp_path):
    result = cli_runner().invoke(main, ["train", "--backend", "nope", "--epochs", "1", "--out", str(tmp_path / "x")])
    assert result.exit_code != 0
    assert "nope" in result.output and "reference" in result.output


def test_sweep_takes_epochs_from_its_config_and_runs_each_value_once(tmp_path, monkeypatch):
    from delgrad_core.training import _executors

    pools = []
    original = _executors.worker_pool
    monkeypatch.setattr(_executors, "worker_pool", lambda n: pools.append(n) or original(n))
    (tmp_path / "short.toml").write_text("epochs = 1\n")
    result = cli_runner().invoke(main, ["sweep", "--hidden", "3,3", "--delays", "none,none", "--seeds", "1",
                                        "--jobs", "64", "--config", str(tmp_path / "short.toml"),
                                        "--out", str(tmp_path / "sweep")])
    assert result.exit_code == 0, result.output
    rows = (tmp_path / "sweep" / "sweep.csv").read_text().splitlines()[1:]
    assert len(rows) == 1 and rows[0].split(",")[3] == "1"  # one run, of the config's 1 epoch (not 300)
    assert pools == [1]  # one worker for one run, not 64


def test_sweep_says_that_its_axes_replace_the_configs_hidden_delays_and_seed(tmp_path):
    from delgrad_core.training._trials import plan_trials

    with pytest.warns(UserWarning, match=r"replace hidden = 7, seed = 3 of the base settings"):
        trials = plan_trials({"epochs": 1, "hidden": 7, "seed": 3}, [4], ["none"], 1, tmp_path)
    assert [(t.settings["hidden"], t.settings["seed"]) for t in trials] == [(4, 0)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plan_trials({"epochs": 1}, [4], ["none"], 1, tmp_path)  # nothing replaced, nothing said
        plan_trials({"epochs": 1, "hidden": 4, "delays": "none", "seed": 0}, [4], ["none"], 1, tmp_path)  # (the same)


def test_sweep_results_before_any_run_finished_have_no_figure_and_no_warning(tmp_path):
    from delgrad_core.training._sweep import _write_results
    from delgrad_core.training._trials import plan_trials

    trials = plan_trials({"epochs": 1}, [4], ["none"], 1, tmp_path)
    (tmp_path / "sweep.png").write_bytes(b"the figure of another grid")  # (it stayed beside the empty table)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warned about an empty legend
        _write_results(trials, tmp_path)
    assert (tmp_path / "sweep.csv").read_text().count("\n") == 1 and not (tmp_path / "sweep.png").exists()


def _read_as_other_tools_do(path) -> list[int]:
    """The integers of the JSON file `path`, read strictly (no NaN or Infinity, which JavaScript and
    jq refuse) as a text file (UTF-8, ending in a newline)."""
    text = path.read_bytes().decode("utf-8")
    assert text.endswith("\n"), f"{path.name}: no newline at the end"
    integers = []
    json.loads(text, parse_int=lambda digits: integers.append(int(digits)) or int(digits),
               parse_constant=lambda name: pytest.fail(f"{path.name}: {name} is not JSON"))
    return integers


def test_metrics_json_reads_alike_in_json_readers_of_other_languages(finished_run):
    """Every integer of metrics.json, the test seed too, is below 2**53: JavaScript and jq read
    numbers as doubles, and a larger seed came back changed (`delgrad evaluate --seed` with it
    drew other noise)."""
    integers = _read_as_other_tools_do(finished_run / "metrics.json")
    test_seed = json.loads((finished_run / "metrics.json").read_text())["test_seed"]
    assert test_seed in integers and all(abs(number) < 2**53 for number in integers)


def test_sweep_summary_is_a_json_text_file(tmp_path):
    from delgrad_core.training._sweep import _write_results
    from delgrad_core.training._trials import plan_trials

    _write_results(plan_trials({"epochs": 1}, [4], ["none"], 1, tmp_path), tmp_path)
    _read_as_other_tools_do(tmp_path / "sweep_summary.json")


@pytest.mark.skipif(not plots_available(), reason="matplotlib is not installed")
def test_the_sweep_plot_shows_cells_without_test_errors(monkeypatch, tmp_path):
    """A cell whose median test error is 0 is a point on the sweep's plot (a log axis left it out,
    and a delay kind with no errors anywhere was a legend entry without points); its error bars
    span the seeds' least to largest test error."""
    import matplotlib.pyplot as plt

    from delgrad_core.training import _plots, _sweep

    def cell(kind, hidden, n_parameters, median, low, high):
        return {"delays": kind, "hidden": hidden, "n_parameters": n_parameters, "seeds": 3, "missing_seeds": [],
                "median_test_accuracy": 1 - median, "median_test_error": median, "min_test_error": low,
                "max_test_error": high}

    figures = {}
    monkeypatch.setattr(_plots, "save_figure", lambda fig, path: figures.__setitem__(path.name, fig))
    summary = [cell("none", 5, 30, 0.0, 0.0, 0.0), cell("none", 10, 60, 0.01, 0.0, 0.02),
               cell("axonal", 5, 39, 0.0, 0.0, 0.0)]
    _sweep._plot(summary, "$easy$", tmp_path / "sweep.png")
    by_parameters, by_hidden = figures["sweep.png"].axes
    assert [ax.get_yscale() for ax in (by_parameters, by_hidden)] == ["linear", "linear"]
    assert sorted(line.get_xydata().tolist() for line in by_parameters.lines if line.get_marker() == "o") == \
        [[[30.0, 0.0], [60.0, 1.0]], [[39.0, 0.0]]]
    _sweep._plot([cell("none", 5, 30, 0.02, 0.01, 0.05)], "easy", tmp_path / "sweep.png")
    assert [ax.get_yscale() for ax in figures["sweep.png"].axes] == ["log", "log"]
    # (the error bar runs from the least to the largest test error of the seeds, around the median)
    bars = figures["sweep.png"].axes[0].containers[0].lines[2][0]
    assert np.allclose(bars.get_segments()[0], [[30.0, 1.0], [30.0, 5.0]])
    plt.close("all")


def test_sweep_runs_cells_once_and_writes_csv(tmp_path):
    runner = cli_runner()
    args = ["sweep", "--hidden", "4,6", "--delays", "none,axonal", "--seeds", "1", "--epochs", "1",
            "--jobs", "2", "--out", str(tmp_path)]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    with open(tmp_path / "sweep.csv") as handle:
        rows = list(csv.DictReader(handle))
    params = {(row["delays"], int(row["hidden"])): int(row["n_parameters"]) for row in rows}
    assert params == {("none", 4): 28, ("none", 6): 42, ("axonal", 4): 36, ("axonal", 6): 52}
    assert all((row["epochs"], row["backend"]) == ("1", "reference") for row in rows)
    assert (tmp_path / "sweep.png").exists() == plots_available()
    again = runner.invoke(main, args)
    assert "4 of 4 runs already finished" in again.output
    # other settings: new trials in their own folders; the old runs are named, kept and not mixed in
    other = runner.invoke(main, ["sweep", "--hidden", "4", "--delays", "none", "--seeds", "1", "--epochs", "2",
                                 "--jobs", "1", "--out", str(tmp_path)])
    assert other.exit_code == 0, other.output
    assert "none-h4-s0-" in other.output and "(other settings: epochs) is kept and not used" in other.output
    assert "holds 3 run folder(s) of other hidden sizes, delay kinds or seeds than this sweep's" in other.output
    rows = (tmp_path / "sweep.csv").read_text().splitlines()[1:]
    assert len(rows) == 1 and rows[0].split(",")[3] == "2"


def test_training_runs_on_another_backend_by_name():
    """Forward on the time-stepped example backend, exact gradients at its observed times."""
    trainer = Trainer(TrainingConfig(epochs=1, hidden=6, delays="axonal", batch_size=500, backend="example"))
    history = trainer.fit(progress=False)
    assert trainer.summary()["backend"] == "example"
    assert np.isfinite(history[0].train_loss) and history[0].skipped_steps < 10


def _trainer_with_a_dead_hidden_neuron():
    """A trainer with revival on (silent_bump 0.01) whose hidden neuron 2 can never spike: (trainer,
    its hidden layer's weights, a copy of them)."""
    config = TrainingConfig(epochs=1, hidden=6, delays="none", silent_neuron_limit=0.3, silent_bump=0.01)
    trainer = Trainer(config)
    weights = trainer.model.params["layers.0.weights"]
    weights[...] = 1.0
    weights[:, 2] = -5.0
    trainer.model.apply()
    return trainer, weights, weights.copy()


def test_silent_neuron_revival_raises_only_silent_hidden_neurons():
    trainer, weights, before = _trainer_with_a_dead_hidden_neuron()
    times = dg.forward(trainer.network, dg.LatencyEncoder()(trainer.train_set.features[:50]))
    assert not np.isfinite(times[0][:, 2]).any() and np.isfinite(times[0][:, [0, 1, 3, 4, 5]]).all()
    trainer.step.revival.apply(times, trainer.model.params)
    np.testing.assert_array_equal(weights[:, 2], before[:, 2] + 0.01)
    np.testing.assert_array_equal(np.delete(weights, 2, axis=1), np.delete(before, 2, axis=1))


def test_a_training_step_revives_a_silent_hidden_neuron():
    """The step applies silent_neuron_limit (docs/training.md): a hidden neuron that never spikes
    has no gradient, so its input weights change by exactly silent_bump."""
    trainer, weights, before = _trainer_with_a_dead_hidden_neuron()
    trainer.step(trainer.train_set.features[:50], trainer.train_set.labels[:50], 1.0)
    np.testing.assert_array_equal(weights[:, 2], before[:, 2] + 0.01)


def test_a_steps_update_scales_with_the_learning_rate_factor():
    """The step passes lr_decay's factor to Adam (docs/training.md): a first Adam step changes a
    parameter by lr * factor * m / (sqrt(v) + eps), so at factor 0.5 by half as much as at 1."""
    changes = []
    for factor in (1.0, 0.5):
        trainer = Trainer(TrainingConfig(epochs=1, hidden=6, delays="synaptic"))
        before = {name: value.copy() for name, value in trainer.model.params.items()}
        assert not trainer.step(trainer.train_set.features[:150], trainer.train_set.labels[:150], factor).skipped
        changes.append({name: trainer.model.params[name] - value for name, value in before.items()})
    for name, change in changes[0].items():
        assert np.abs(change).max() > 0, name
        np.testing.assert_allclose(changes[1][name], change / 2, rtol=1e-9, atol=1e-15, err_msg=name)


def test_a_step_reports_the_entries_the_model_has_no_crossing_for():
    """A substrate spiking where the ideal membrane is not rising gives no gradient there, and
    the step counts those (sample, neuron) entries as no_crossing (docs/model.md §4): here every
    output neuron spikes when its first input arrives, where its membrane is still flat."""
    from delgrad_core.testing import MockBackend

    def early_outputs(request):
        hidden = dg.layer_forward(request.network.layers[0], request.input_spike_times)
        return dg.ExecutionResult([hidden, np.repeat(hidden.min(axis=1, keepdims=True), 3, axis=1)], {})

    config = TrainingConfig(epochs=1, hidden=6, delays="none", silent_bump=None)  # (no step skipped)
    with Trainer(config, backend=MockBackend(early_outputs, capabilities=dg.Capabilities(exact=False))) as trainer:
        result = trainer.step(trainer.train_set.features[:50], trainer.train_set.labels[:50], 1.0)
    assert not result.skipped and result.no_crossing == 50 * 3


def test_silent_fractions_must_be_fractions():
    with pytest.raises(ValueError, match="silent_neuron_limit"):
        TrainingConfig(silent_neuron_limit=1.5)


def test_sweep_keeps_going_when_a_run_fails(tmp_path):
    from delgrad_core.training._trials import plan_trials

    broken = plan_trials({"epochs": 1}, [4], ["none"], 1, tmp_path)[0].folder
    broken.mkdir(parents=True)
    (broken / "checkpoint.npz").write_bytes(b"not a checkpoint")
    runner = cli_runner()
    args = ["sweep", "--hidden", "4,5", "--delays", "none", "--seeds", "1", "--epochs", "1", "--jobs", "1",
            "--out", str(tmp_path)]
    result = runner.invoke(main, args)
    assert result.exit_code != 0
    assert "1 run(s) failed" in result.output and "none-h4-s0" in result.output
    assert (tmp_path / "sweep.csv").read_text().splitlines()[1].startswith("none,5,0,")
    (broken / "checkpoint.npz").unlink()
    again = runner.invoke(main, args)
    assert again.exit_code == 0, again.output
    assert len((tmp_path / "sweep.csv").read_text().splitlines()) == 3


def test_training_runs_what_the_backend_represents_on_float_shadow_weights(monkeypatch):
    from delgrad_core.testing import MockBackend

    caps = dg.Capabilities(weight_limit=1.5, weight_resolution=0.125, max_batch_size=300, exact=True)
    backend = MockBackend(capabilities=caps)
    seen_arrivals = []
    real_backward = dg.backward

    def recording_backward(*args, **kwargs):
        seen_arrivals.append(kwargs.get("arrival_times"))
        return real_backward(*args, **kwargs)

    monkeypatch.setattr("delgrad_core.training._step.backward", recording_backward)
    config = TrainingConfig(epochs=1, hidden=6, batch_size=125, delays="axonal")
    with Trainer(config, backend=backend) as trainer:
        trainer.fit(progress=False)
    for request in backend.requests:
        for layer in request.network.layers:
            weights = layer.projection.weights
            assert np.abs(weights).max() <= 1.5
            np.testing.assert_allclose(weights / 0.125, np.round(weights / 0.125), atol=1e-9)
    shadow = trainer.model.params["layers.0.weights"]
    assert not np.allclose(shadow / 0.125, np.round(shadow / 0.125)), "the shadow weights stay continuous"
    sizes = [request.batch_size for request in backend.requests]
    assert sizes == [125] * 40 + [300, 300, 300, 100]  # 5000 training samples, then validation in chunks
    assert backend.close_calls == 0  # an injected backend belongs to the caller
    assert len(seen_arrivals) > 0 and all(a is None for a in seen_arrivals)
    # (the records named the config's backend, 'reference', inside `config`)
    recorded = trainer.summary()["config"]
    assert recorded["backend"] == backend.name != "reference" and recorded["backend_options"] == {}


def test_training_takes_gradients_at_the_backends_observed_arrivals(monkeypatch):
    from delgrad_core.testing import MockBackend

    def jittered(request):
        rng = np.random.default_rng(request.seed % 2**32)
        network, pre = request.network, request.input_spike_times
        layer = network.layers[0]
        arrivals = pre + layer.projection.delays[None, :] + rng.normal(0, 0.01, pre.shape)
        hidden = dg.layer_forward(layer, pre, arrival_times=arrivals)
        output = dg.layer_forward(network.layers[1], hidden)
        return dg.ExecutionResult([hidden, output], {}, [arrivals, None])

    backend = MockBackend(jittered, capabilities=dg.Capabilities(delay_kinds={"axonal"}, seed_independent=False))
    seen = []
    real_backward = dg.backward

    def recording_backward(*args, **kwargs):
        seen.append(kwargs["arrival_times"])
        return real_backward(*args, **kwargs)

    monkeypatch.setattr("delgrad_core.training._step.backward", recording_backward)
    with Trainer(TrainingConfig(epochs=1, hidden=5, delays="axonal", batch_size=500), backend=backend) as trainer:
        trainer.fit(progress=False)
    assert seen and all(a[0].shape == (500, 4) and a[1] is None for a in seen)


def test_sectioned_config_files(tmp_path):
    from delgrad_core.training import load_config

    path = tmp_path / "sectioned.toml"
    path.write_text(
        "[network]\nhidden = [20, 10]\ndelays = ['axonal', 'none', 'none']\n"
        "[optimiser]\nepochs = 2\nweight_lr = 0.01\n"
        "[loss]\nname = 'crossentropy'\nxi = 0.3\n"
        "[heuristics]\nsilent_limit_output = 0.05\n"
        "[backend]\nname = 'example'\ndt = 0.01\n"
    )
    values = load_config(path)
    assert values == {"hidden": [20, 10], "delays": ["axonal", "none", "none"], "epochs": 2, "weight_lr": 0.01,
                      "loss": "crossentropy", "loss_xi": 0.3, "silent_limit_output": 0.05, "backend": "example",
                      "backend_options": {"dt": 0.01}}
    path.write_bytes(b"\xef\xbb\xbf" + b"[optimiser]\nepochs = 2\n")  # (a BOM, as some editors write)
    assert load_config(path) == {"epochs": 2}
    for text, message in [
        ("[network]\nepochs = 3\n", r"unknown setting 'epochs' in \[network\]; allowed: hidden"),
        ("[optimiser]\nweight_lr = 'fast'\n", r"weight_lr: expected a number > 0"),
        ("[network]\nhidden = [20, 10]\ndelays = ['axonal', 'none']\n",
         "delays: a list needs one kind per neuron layer"),
        ("epochs = 3\n[optimiser]\nepochs = 4\n", "epochs set twice"),
        ("[loss]\nname = 'hinge'\n", "loss: 'hinge' is not installed"),
        ("[backend]\nbackend_options = {n_threads = 2}\nn_threads = 1\n", r"\[backend\] gives n_threads twice"),
        # within one section, under two spellings (the last one won without a word)
        ("[backend]\nname = 'reference'\nbackend = 'example'\n", r"\[backend\] sets backend twice \('name' and "
                                                                 r"'backend'\); give it once"),
        ("[optimiser]\nbatch-size = 10\nbatch_size = 150\n", r"\[optimiser\] sets batch_size twice"),
        ("[loss]\ndelta = 0.3\nloss_delta = 0.5\n", r"\[loss\] sets loss_delta twice \('delta' and 'loss_delta'\)"),
        ("[encoder]\nt-early = 0.1\nt_early = 0.3\n", r"\[encoder\] sets t_early twice"),
        ("[backend]\nn-threads = 1\nn_threads = 2\n", r"\[backend\] sets n_threads twice"),
        # a misspelt section or setting: the closest name (the section was taken for an unknown setting)
        ("[optimizer]\nweight_lr = 0.1\n", r"optimizer is neither a setting nor a section \(did you mean "
                                            r"optimiser\?\); the sections: data, network, encoder, optimiser, loss, "
                                            "heuristics, backend"),
        ("foo = {a = 1}\n", "foo is neither a setting nor a section; the sections: data,"),
        ("[network]\nhiden = [3]\n", r"unknown setting 'hiden' in \[network\] \(did you mean hidden\?\)"),
        ("weigth_lr = 0.1\n", r"unknown setting\(s\) weigth_lr \(did you mean weight_lr\?\)"),
    ]:
        path.write_text(text)
        with pytest.raises(ValueError, match=message):
            load_config(path)


def test_cli_trains_several_hidden_layers_with_per_layer_delays(tmp_path):
    result = cli_runner().invoke(main, ["train", "--hidden", "8,6", "--delays", "axonal,none,synaptic", "--epochs", "2",
                                        "--out", str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 0, result.output
    network = dg.load_network(tmp_path / "run" / "network.npz")
    assert network.sizes == [4, 8, 6, 3]
    assert [layer.projection.delay_kind.value for layer in network.layers] == ["axonal", "none", "synaptic"]
    bad = cli_runner().invoke(main, ["train", "--hidden", "8,x", "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "--hidden" in bad.output


def test_decision_plane_predicts_every_point_of_the_square():
    trainer = Trainer(TrainingConfig(epochs=1, hidden=6, delays="none"))
    grid_x, grid_y, predicted = trainer.decision_plane(resolution=20)
    assert grid_x.shape == grid_y.shape == predicted.shape == (20, 20)
    features = dg.datasets.yin_yang_plane(grid_x, grid_y)
    expected = dg.first_spike_prediction(dg.forward(trainer.network, trainer.encoder(features))[-1])
    np.testing.assert_array_equal(predicted.ravel(), expected)


@pytest.mark.parametrize("batch_size, limit, jobs", [
    (None, None, [100]),       # no setting, no limit: one job
    (40, None, [40, 40, 20]),  # the setting
    (None, 30, [30, 30, 30, 10]),  # the backend's limit
    (40, 30, [30, 30, 30, 10]),    # the setting, never above the limit
])
def test_evaluation_runs_jobs_of_the_evaluation_batch_size_each_with_its_own_seed(batch_size, limit, jobs):
    from delgrad_core.testing import MockBackend
    from delgrad_core.training._evaluation import output_spike_times

    network = dg.Network.feedforward([4, 6, 3], seed=0)
    inputs = np.random.default_rng(0).uniform(0.15, 2.0, (100, 4))
    for seed_independent in (False, True):
        backend = MockBackend(capabilities=dg.Capabilities(exact=True, max_batch_size=limit,
                                                           seed_independent=seed_independent))
        seeds = iter(range(7, 100))
        output = output_spike_times(backend, network, inputs, None, lambda: next(seeds), batch_size)
        assert [request.batch_size for request in backend.requests] == jobs
        # (a seed-independent backend's jobs share one draw: the split must not move the run's generator)
        assert [request.seed for request in backend.requests] == \
            ([7] * len(jobs) if seed_independent else list(range(7, 7 + len(jobs))))
        assert next(seeds) == (8 if seed_independent else 7 + len(jobs))
        output_spike_times(backend, network, inputs[:0], None, lambda: next(seeds), batch_size)
        assert next(seeds) == (9 if seed_independent else 8 + len(jobs))  # (no samples: no job, no seed drawn)
        np.testing.assert_array_equal(output, dg.forward(network, inputs)[-1])


def test_evaluation_hands_its_jobs_to_the_backend_in_one_call():
    """Jobs of up to EVALUATION_CHUNK samples in all go to one `execute_many` call, where a backend may keep
    several in flight (one call per job left a remote device idle between jobs); no samples give an empty
    (0, n_outputs) array, not (0, 0)."""
    from delgrad_core.testing import MockBackend
    from delgrad_core.training._evaluation import output_spike_times

    class Counting(MockBackend):
        calls = []

        def execute_many(self, requests):
            self.calls.append(len(requests))
            return super().execute_many(requests)

    network = dg.Network.feedforward([4, 6, 3], seed=0)
    inputs = np.random.default_rng(0).uniform(0.15, 2.0, (100, 4))
    backend = Counting(capabilities=dg.Capabilities(exact=True, seed_independent=False))
    output = output_spike_times(backend, network, inputs, None, lambda: 1, batch_size=10)
    assert backend.calls == [10] and len(backend.requests) == 10
    np.testing.assert_array_equal(output, dg.forward(network, inputs)[-1])
    assert output_spike_times(backend, network, inputs[:0], None, lambda: 1, batch_size=10).shape == (0, 3)


def test_the_evaluation_split_of_a_seed_independent_backend_does_not_change_the_run(tmp_path):
    """(each validation job drew a seed from the run's generator: evaluation_batch_size 7 changed
    the second epoch's batches, the trained network and the test seed on the reference backend)"""
    settings = dict(epochs=2, hidden=5, delays="none", batch_size=77, seed=3)
    runs = [Trainer(TrainingConfig(**settings, evaluation_batch_size=size)) for size in (None, 7)]
    for run in runs:
        run.fit()
    for name, value in runs[0].model.params.items():
        np.testing.assert_array_equal(value, runs[1].model.params[name])
    untimed = [[dataclasses.replace(epoch, wall_seconds=0.0) for epoch in run.history] for run in runs]
    assert untimed[0] == untimed[1]


@pytest.mark.parametrize("capabilities, jobs", [
    (dict(exact=True), [40, 40, 20]),  # exact, noise-free: jobs of the work limit (40 samples of 42 synapses)
    (dict(exact=True, seed_independent=False), [100]),  # seeded noise: one job as before
    (dict(exact=True, deterministic=False, seed_independent=False), [100]),
    (dict(exact=False), [100]),  # approximate: its outputs may depend on a job's other samples
])
def test_an_exact_noise_free_backend_evaluates_a_large_network_in_jobs_a_ctrl_c_can_end_between(
        monkeypatch, capabilities, jobs):
    """(a 10,000-sample evaluation of a 784-350-10 network was one job, whose kernel call no
    Ctrl-C could end for up to half a minute)"""
    from delgrad_core.testing import MockBackend
    from delgrad_core.training import _evaluation

    monkeypatch.setattr(_evaluation, "_SYNAPSE_SAMPLES_PER_JOB", 40 * 42)
    network = dg.Network.feedforward([4, 6, 3], seed=0)  # (4 x 6 + 6 x 3 = 42 synapses)
    inputs = np.random.default_rng(0).uniform(0.15, 2.0, (100, 4))
    backend = MockBackend(capabilities=dg.Capabilities(**capabilities))
    output = _evaluation.output_spike_times(backend, network, inputs, None, lambda: 0, None)
    assert [request.batch_size for request in backend.requests] == jobs
    np.testing.assert_array_equal(output, dg.forward(network, inputs)[-1])


def test_a_network_above_the_work_limit_is_evaluated_one_sample_per_job(monkeypatch):
    """A single sample over the work limit of a job still makes a job (of one sample), not one job
    of every sample."""
    from delgrad_core.testing import MockBackend
    from delgrad_core.training import _evaluation

    monkeypatch.setattr(_evaluation, "_SYNAPSE_SAMPLES_PER_JOB", 10)
    network = dg.Network.feedforward([4, 6, 3], seed=0)  # (42 synapses)
    inputs = np.random.default_rng(0).uniform(0.15, 2.0, (5, 4))
    backend = MockBackend(capabilities=dg.Capabilities(exact=True))
    _evaluation.output_spike_times(backend, network, inputs, None, lambda: 0, None)
    assert [request.batch_size for request in backend.requests] == [1] * 5


def test_a_784_350_10_evaluation_runs_in_jobs_of_241_samples():
    """The work limit of a job on an exact, noise-free backend is 2**26 synapse-samples: 241
    samples of the 277,900 synapses of 784-350-10 (0.2-0.7 s per job on the reference backend),
    while a 4-30-3 network keeps one job for a whole evaluation chunk."""
    from delgrad_core.testing import MockBackend
    from delgrad_core.training import _evaluation

    def silent(request):
        return dg.ExecutionResult([np.full((request.batch_size, layer.population.size), np.inf)
                                   for layer in request.network.layers], {})

    for sizes, n_samples, jobs in (([784, 350, 10], 300, [241, 59]), ([4, 30, 3], 10_000, [10_000])):
        backend = MockBackend(silent, capabilities=dg.Capabilities(exact=True))
        inputs = np.full((n_samples, sizes[0]), 1.0)
        _evaluation.output_spike_times(backend, dg.Network.feedforward(sizes, seed=0), inputs, None, lambda: 0)
        assert [request.batch_size for request in backend.requests] == jobs, sizes


def test_evaluation_batch_size_is_a_checked_backend_setting():
    assert TrainingConfig.from_dict({"evaluation_batch_size": 40}).evaluation_batch_size == 40
    for bad in (0, 2.5, "40"):
        with pytest.raises(dg.InvalidValueError, match="evaluation_batch_size"):
            TrainingConfig.from_dict({"evaluation_batch_size": bad})


def test_parameter_average_is_the_exponential_average_of_the_steps():
    """Written out by hand: a_1 = p_1, a_k = d a_{k-1} + (1 - d) p_k; off, the parameters themselves."""
    from delgrad_core.training._heuristics import ParameterAverage

    average, rng = ParameterAverage(0.9), np.random.default_rng(0)
    steps = [rng.normal(size=(3, 2)) for _ in range(4)]
    expected = steps[0]
    for k, value in enumerate(steps):
        average.update({"p": value})
        expected = value if k == 0 else 0.9 * expected + 0.1 * value
    np.testing.assert_allclose(average.params["p"], expected, rtol=1e-15)
    off = ParameterAverage(None)
    off.update({"p": steps[0]})
    assert off.params == {} and off.current({"p": steps[0]})["p"] is steps[0]


def test_trainer_validates_and_keeps_the_averaged_network(tmp_path):
    config = TrainingConfig(epochs=3, hidden=8, delays="axonal", seed=4, parameter_average=0.99)
    trainer = Trainer(config, out_dir=tmp_path)
    history = trainer.fit(progress=False)
    raw = {name: value.copy() for name, value in trainer.model.params.items()}
    assert not all(np.array_equal(raw[name], trainer.average.params[name]) for name in raw)
    with trainer.average.swapped_in(trainer.model):
        assert trainer.evaluate(trainer.validation_set).accuracy == history[-1].validation_accuracy
    for name in raw:  # the shadow parameters come back, and the network with them
        assert np.array_equal(trainer.model.params[name], raw[name])
    test, _ = trainer.finish()
    for name, value in trainer.selection.params.items():  # the best epoch's average
        assert np.array_equal(trainer.model.params[name], value), name
    assert trainer.evaluate(trainer.validation_set).accuracy == max(m.validation_accuracy for m in history)
    assert json.loads((tmp_path / "metrics.json").read_text())["test_accuracy"] == test.accuracy


def test_resume_with_parameter_average_equals_uninterrupted(tmp_path):
    config = TrainingConfig(epochs=3, hidden=8, delays="none", seed=2, parameter_average=0.95)
    straight = Trainer(config)
    straight.fit(progress=False)
    with Trainer(TrainingConfig(**{**config.to_dict(), "epochs": 1}), out_dir=tmp_path) as first:
        first.fit(progress=False)
    with Trainer(config, out_dir=tmp_path, resume=True) as resumed:
        resumed.fit(progress=False)
    for name in straight.model.params:
        assert np.array_equal(straight.average.params[name], resumed.average.params[name]), name
    assert [m.validation_loss for m in straight.history] == [m.validation_loss for m in resumed.history]


@pytest.mark.parametrize("value", [1.0, -0.1, "0.9", True])
def test_parameter_average_must_be_a_decay_below_one(value):
    with pytest.raises(ValueError, match="parameter_average"):
        TrainingConfig(parameter_average=value)


def test_option_tables_merge_with_defaults_and_do_not_shadow_fields():
    from delgrad_core.training import config_with_defaults

    digits = config_with_defaults({"dataset": "digits", "encoder_options": {"repeat": 2}}).resolved()
    assert digits.encoder_options == {"pairs": True, "repeat": 2}  # the dataset's pairs survive
    on_chip = config_with_defaults({"dataset": "digits", "backend": "bss2-emulator"}).resolved()
    assert on_chip.encoder_options == {"pairs": True, "repeat": 5}  # under the backend's defaults too
    with pytest.raises(ValueError, match="loss_options: set loss_delta instead of the option delta"):
        Trainer(TrainingConfig(loss_delta=0.3, loss_options={"delta": 0.5}, epochs=1))
    with pytest.raises(ValueError, match="loss_options: set loss_delta instead of the option delta"):  # (used, while
        Trainer(TrainingConfig(loss_options={"delta": 0.5}, epochs=1))  # loss_delta = 0.2 was recorded as used)


def test_hidden_of_one_layer_is_one_setting_however_given():
    for given in (5, [5], (5,), np.int64(5), [np.int32(5)]):
        assert TrainingConfig(hidden=given).hidden == 5 and type(TrainingConfig(hidden=given).hidden) is int
    assert TrainingConfig(hidden=(8, np.int64(6))).hidden == [8, 6]


@pytest.mark.parametrize("change, message", [
    ({"epoch": 2.7}, "the state's epoch is 2.7"),
    ({"best_validation_accuracy": "high"}, "the state's best_validation_accuracy is 'high'"),
    ({"elapsed_seconds": -1}, "the state's elapsed_seconds is -1"),
    ({"epochs_recorded": 5}, "records 5 epochs of history for 1 trained"),
    # (resumed: the history's epochs 1, then the epoch after 5; selected epoch 7 of 3; accuracy 150 %)
    ({"epoch": 5, "epochs_recorded": 1}, "records 1 epochs of history for 5 trained"),
    ({"best_epoch": 7}, "the state's best_epoch is 7, after its last epoch 1"),
    ({"best_validation_accuracy": 1.5}, "the state's best_validation_accuracy is 1.5"),
    ({"elapsed_seconds": None}, "the state's elapsed_seconds is None"),  # (only bump_level may be null)
    ({"best_epoch": True}, "the state's best_epoch is True"),  # (a boolean is no count, though Python takes it for 1)
    # (a traceback; numpy 1 took it, reduced modulo 2**128, and the run resumed)
    ({"rng": "negative"}, r"inconsistent checkpoint \((OverflowError: .*|ValueError: .* state is out of its range)\)"),
    # (numpy 2 takes a fraction, truncated: the run resumed from another random state than the one recorded)
    ({"rng": "fraction"}, r"inconsistent checkpoint \(ValueError: .* state is out of its range\)"),
    ({"config": None}, "its settings are missing"),
    ({"config": [1]}, "its settings are not a table"),
    ("drop adam.m.layers.0.weights", "adam.m.layers.0.weights is missing"),
    ("drop adam.steps", "adam.steps is missing"),
    (("adam.steps", np.array(-5)), "adam.steps is -5, expected 0..20"),
    # (resumed: Adam's bias correction of 2**62 steps, or of epoch 1's 20 batches' and one more)
    (("adam.steps", np.array(2**62)), r"adam.steps is 4611686018427387904, expected 0..20 \(at most a step per batch"),
    (("adam.steps", np.array(21)), "adam.steps is 21, expected 0..20"),
    # (an OverflowError's traceback at the first skipped step)
    ({"bump_level": 0.0015}, "bump_level 0.0015 is not silent_bump 0.0005 doubled a whole number of times"),
    ({"bump_level": 0.00025}, "bump_level 0.00025 is not silent_bump"),
    # (Python's JSON reader takes Infinity: the run trained an epoch, then failed to write its checkpoint)
    ("infinite elapsed_seconds", "entry 'trainer_state.json' is not valid JSON \\(Infinity is not a JSON number\\)"),
    (("adam.steps", np.array(2.5)), "entry 'adam.steps' has dtype float64, expected kind 'i'"),
    (("adam.steps", np.zeros((7, 7), dtype=np.int64)), r"entry 'adam.steps' has shape \(7, 7\), expected \(\)"),
    (("adam.v.layers.0.weights", np.array(-5.0)), r"entry 'adam.v.layers.0.weights' has shape \(\)"),
    (("adam.v.layers.0.weights", -np.ones((4, 8))), "adam.v holds negative values"),
    (("adam.m.layers.0.weights", np.full((4, 8), np.nan)), "adam.m.layers.0.weights holds NaN or inf"),
    # (kept epoch: its output delays were taken from the last epoch)
    ("drop best.layers.1.delays", "best.layers.1.delays is missing"),
    ("drop best.*", "best.layers.0.weights is missing"),  # (epoch 1 is the kept one: its arrays, all gone)
    (("average.layers.1.delays", np.zeros(3)), "average.layers.0.weights is missing"),  # (one of all or none)
    # (the stored settings edited from synaptic to no delays: the delays were dropped without a word)
    (("param.layers.0.lost", np.zeros(3)), "holds param.layers.0.lost, a parameter this network does not have"),
])
def test_a_damaged_checkpoint_is_refused_when_it_is_read(tmp_path, change, message):
    from delgrad_core._npz import NpzArchive, json_array, write_npz

    with Trainer(TrainingConfig(**{**SHORT, "epochs": 1}), out_dir=tmp_path) as trainer:
        trainer.fit(progress=False)
    with NpzArchive(tmp_path / "checkpoint.npz") as archive:
        arrays = {name: archive.array(name) for name in archive.names}
        state = archive.json("trainer_state.json")
    if change == {"rng": "negative"}:
        change = {"rng": {**state["rng"], "state": {**state["rng"]["state"], "state": -5}}}
    if change == {"rng": "fraction"}:
        change = {"rng": {**state["rng"], "uinteger": 1.5}}
    if isinstance(change, dict):
        arrays["trainer_state.json"] = json_array({**state, **change})
    elif change == "infinite elapsed_seconds":
        arrays["trainer_state.json"] = np.array(json.dumps({**state, "elapsed_seconds": float("inf")}))
    elif isinstance(change, tuple):
        arrays[change[0]] = change[1]
    elif change == "drop best.*":
        arrays = {name: value for name, value in arrays.items() if not name.startswith("best.")}
    else:
        del arrays[change.split()[1]]
    with open(tmp_path / "checkpoint.npz", "wb") as handle:
        write_npz(handle, arrays)
    with pytest.raises(dg.FileFormatError, match=message):
        Trainer(TrainingConfig(**{**SHORT, "epochs": 2}), out_dir=tmp_path, resume=True)


def test_a_checkpoint_of_a_stepped_optimiser_without_its_moments_is_refused(tmp_path):
    """(adam.steps > 0: the moments are required; dropped all together, they would resume as zeros)"""
    from delgrad_core._npz import NpzArchive, write_npz

    with Trainer(TrainingConfig(**{**SHORT, "epochs": 1}), out_dir=tmp_path) as trainer:
        trainer.fit(progress=False)
    with NpzArchive(tmp_path / "checkpoint.npz") as archive:
        assert int(archive.array("adam.steps")) > 0
        arrays = {name: archive.array(name) for name in archive.names if not name.startswith(("adam.m.", "adam.v."))}
    with open(tmp_path / "checkpoint.npz", "wb") as handle:
        write_npz(handle, arrays)
    with pytest.raises(dg.FileFormatError, match=r"adam\.m\.\S+ is missing"):
        Trainer(TrainingConfig(**{**SHORT, "epochs": 2}), out_dir=tmp_path, resume=True)


def test_a_history_that_is_not_the_runs_own_is_refused_naming_the_line(tmp_path):
    with Trainer(TrainingConfig(**{**SHORT, "epochs": 2}), out_dir=tmp_path) as trainer:
        trainer.fit(progress=False)
    lines = (tmp_path / "history.jsonl").read_text().splitlines()
    for damaged, message in (([lines[0], "{not json"], "line 2 is not valid JSON"),
                             ([lines[1], lines[0]], "line 1 is not the record of epoch 1")):
        (tmp_path / "history.jsonl").write_text("\n".join(damaged) + "\n")
        with pytest.raises(dg.FileFormatError, match=message):
            Trainer(TrainingConfig(**{**SHORT, "epochs": 3}), out_dir=tmp_path, resume=True)


def _trained_for_one_epoch(backend: str, run, batch_size: int | None = 250, backend_options=()):
    """`run`, trained by `delgrad train` on `backend` (with `backend_options`, "KEY=VALUE" each)
    for one epoch (4 hidden neurons, no delays)."""
    batch = [] if batch_size is None else ["--batch-size", str(batch_size)]
    options = [argument for option in backend_options for argument in ("--backend-option", option)]
    trained = cli_runner().invoke(main, ["train", "--backend", backend, *options, "--hidden", "4", "--delays", "none",
                                         "--epochs", "1", *batch, "--out", str(run), "--no-progress"])
    assert trained.exit_code == 0, trained.output
    return run


def _register_plugin_components(monkeypatch, **hooks):
    """A registry with the core's components plus a plugin implementing `hooks`, as the global one."""
    from types import SimpleNamespace

    from delgrad_core import PluginRegistry, hookimpl
    from delgrad_core._plugins import registry as installed

    registry = PluginRegistry()
    registry.register_plugin(SimpleNamespace(**{name: hookimpl(hook) for name, hook in hooks.items()}),
                             distribution="delgrad-local")
    registry._tables["backend"]["reference"] = installed().get("backend", "reference")  # (to train on)
    monkeypatch.setattr("delgrad_core._plugins._default_registry", registry)


class _PluginLoss:
    def __init__(self, alpha=0.5, shape="good"):
        self.alpha, self.shape = alpha, shape

    def __call__(self, output_times, labels):
        result = dg.ShiftInvariantSquaredError()(output_times, labels)
        if self.shape == "raise":
            raise RuntimeError("the loss broke")
        if self.shape == "narrow":
            return dg.LossResult(result.per_sample, result.gradient[:, :1])
        return result if self.shape == "good" else (result.per_sample, result.gradient)


def test_a_loss_taking_any_option_gets_one_named_like_a_training_setting(monkeypatch):
    """(a loss without a parameter of that name is told it is a training setting of its own; one taking
    **options takes it as its own option, and not the loss_options table as `options` too)"""
    class AnyOptions:
        def __init__(self, **options):
            self.options = options

        def __call__(self, output_times, labels):
            return dg.ShiftInvariantSquaredError()(output_times, labels)

    _register_plugin_components(monkeypatch, delgrad_register_losses=lambda register: (
        register("any", AnyOptions), register("mine", _PluginLoss)))
    with Trainer(TrainingConfig(**SHORT, loss="any", loss_options={"seed": 7})) as trainer:
        assert trainer.loss.loss.options == {"seed": 7}
    with pytest.raises(dg.InvalidValueError, match=r"^loss_options: loss 'mine' has no parameter seed; seed is a "
                                                   r"training setting of its own"):
        Trainer(TrainingConfig(**SHORT, loss="mine", loss_options={"seed": 7}))


@pytest.mark.parametrize("settings, message", [
    ({"loss_options": {"delta": 0.5}}, r"loss_options: set loss_delta instead of the option delta \("),
    # (the field's default 0.2, which is also the loss's own: the option changes nothing, the field holds it)
    ({"loss_options": {"delta": 0.2}}, r"loss_options: set loss_delta instead of the option delta \("),
    ({"encoder_options": {"t_early": 0.5}}, r"encoder_options: set t_early instead of the option t_early \("),
    ({"loss_options": {"colour": 1}}, r"loss_options: "),
    # (a config is checked when it is built, before any backend is: docs/training.md, "Every field has a declared rule")
    ({"backend_options": {"colour": 1}}, r"backend_options: backend 'reference': unknown option\(s\) colour"),
])
def test_a_component_options_error_names_its_setting_once(settings, message):
    with pytest.raises(dg.InvalidValueError) as raised:
        TrainingConfig(**settings)
    assert re.match(message, str(raised.value)) and str(raised.value).count("_options:") == 1, str(raised.value)


def test_loss_settings_the_loss_does_not_take_are_named_not_recorded_silently():
    """(loss_xi with the squared loss, loss_delta with cross-entropy: recorded in metrics.json as
    used, and not used; a chip's default loss_delta reached a cross-entropy run the same way)"""
    import warnings

    from delgrad_core.training import config_with_defaults
    from delgrad_core.training._components import component

    for loss, field, value, takes in (("squared", "loss_xi", 0.01, "loss_delta"),
                                      ("crossentropy", "loss_delta", 100.0, "loss_xi, loss_alpha, loss_beta")):
        config = TrainingConfig(**SHORT, loss=loss, **{field: value})
        with pytest.warns(UserWarning, match=re.escape(f"loss {loss!r} has no parameter {field[5:]}: {field} = "
                                                       f"{value!r} is not used (of these settings it takes {takes})")):
            component("loss", loss, config, {})
    chip = config_with_defaults({"backend": "bss2-emulator", "loss": "crossentropy"})
    assert chip.loss_delta == TrainingConfig.loss_delta  # (the chip's 0.3 is for the squared loss)
    assert config_with_defaults({"backend": "bss2-emulator"}).loss_delta == 0.3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        component("loss", "crossentropy", chip, {})


def test_plugin_components_keep_their_defaults_and_their_faults_name_them(monkeypatch):
    from delgrad_core.datasets import Dataset, load_dataset

    def losses(register):
        register("mine", _PluginLoss)

    def datasets(register):
        def broken(split):
            raise RuntimeError("no data here")

        def dots(split, name="dots"):
            features = np.random.default_rng(len(split)).uniform(0, 1, (30, 2))
            return Dataset(name, split, features, (features.sum(axis=1) * 1.5).astype(int), ("a", "b", "c"))

        splits = ("train", "validation", "test")
        register("broken", broken, splits=splits)
        register("dots", dots, splits=splits, plane=lambda x, y: np.stack([x, y], axis=-1))  # (120, 120, 2)
        register("odd", lambda split: dots(split, "odd"), splits=splits, plane=lambda x, y: np.stack([x, y]))
        register("renamed", dots, splits=splits)

    _register_plugin_components(monkeypatch, delgrad_register_losses=losses, delgrad_register_datasets=datasets)
    config = dict(SHORT, loss="mine")
    with pytest.warns(UserWarning, match="loss 'mine': its own default alpha = 0.5 holds, not loss_alpha = 0.005"):
        with Trainer(TrainingConfig(**config)) as trainer:
            assert trainer.loss.loss.alpha == 0.5  # not loss_alpha's default, 0.005
    with Trainer(TrainingConfig(**config, loss_alpha=0.7)) as trainer:
        assert trainer.loss.loss.alpha == 0.7
    with warnings.catch_warnings():  # (the option chose the value: "its own default holds" would be untrue)
        warnings.simplefilter("error")
        with Trainer(TrainingConfig(**config, loss_options={"alpha": 0.005})) as trainer:  # (the setting's default)
            assert trainer.loss.loss.alpha == 0.005
    with pytest.raises(ValueError, match="loss_options: set loss_alpha instead of the option alpha"):
        Trainer(TrainingConfig(**config, loss_options={"alpha": 0.6}))
    for shape, message in (("tuple", r"loss 'mine' from 'delgrad-local': returned tuple, not a LossResult \(per_sample "
                                     r"of shape \(250,\), gradient of shape \(250, 3\)\)"),  # (it said "tuple whose
                           # per_sample is NoneType")
                           ("narrow", "loss 'mine' from 'delgrad-local': returned LossResult whose gradient is shape "
                                      r"\(250, 1\), expected an array of shape \(250, 3\)"),  # (it said "returned
                           # LossResult, not a LossResult with ...")
                           ("raise", "loss 'mine' from 'delgrad-local': evaluating it failed: RuntimeError: the loss")):
        with Trainer(TrainingConfig(**config, loss_alpha=0.5, loss_options={"shape": shape})) as trainer:
            with pytest.raises(dg.PluginError, match=message):
                trainer.fit(progress=False)
    with pytest.raises(dg.PluginError, match="dataset 'broken' from 'delgrad-local': loading 'train' failed: "
                                             "RuntimeError: no data here"):
        load_dataset("broken", "train")
    with Trainer(TrainingConfig(**{**SHORT, "dataset": "dots", "epochs": 1, "batch_size": 30})) as trainer:
        assert trainer.decision_plane()[2].shape == (120, 120)
    with pytest.raises(dg.PluginError, match=r"dataset 'odd' .*: its plane returned shape \(2, 3, 3\)"):
        Trainer(TrainingConfig(**{**SHORT, "dataset": "odd", "epochs": 1}))  # (before training, not after it)
    with pytest.raises(dg.PluginError, match="dataset 'renamed' .*: asked for split 'train' of dataset 'renamed', its "
                                             "loader returned split 'train' of dataset 'dots'"):
        load_dataset("renamed", "train")


def test_a_plugin_losss_settings_reach_each_parameter_once_and_say_which_they_miss(monkeypatch):
    """(a setting away from its default is what holds, no "own default" is named; an option beside it,
    even at the setting's default, is refused; keyword-only parameters take their settings too; of two
    training settings given as options the first is named; a loss taking none of the settings says so)"""
    class KeywordOnly(_PluginLoss):
        def __init__(self, *, alpha=0.5):
            super().__init__(alpha)

    class Bare:
        def __call__(self, output_times, labels):
            return dg.ShiftInvariantSquaredError()(output_times, labels)

    class AnyKeyword(Bare):  # (its **options get loss_options, never the settings: it was not warned of)
        def __init__(self, **options):
            self.options = options

    from delgrad_core.training._components import component

    _register_plugin_components(monkeypatch, delgrad_register_losses=lambda register: (
        register("mine", _PluginLoss), register("keyword", KeywordOnly), register("bare", Bare),
        register("any", AnyKeyword)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for loss in ("mine", "keyword"):
            assert component("loss", loss, TrainingConfig(**SHORT, loss=loss, loss_alpha=0.7), {}).loss.alpha == 0.7
    with pytest.raises(dg.InvalidValueError, match="^loss_options: set loss_alpha instead of the option alpha"):
        TrainingConfig(**SHORT, loss="mine", loss_alpha=0.7, loss_options={"alpha": 0.005})
    with pytest.raises(dg.InvalidValueError, match=r"^loss_options: loss 'mine' has no parameter epochs; epochs is a "):
        TrainingConfig(**SHORT, loss="mine", loss_options={"seed": 7, "epochs": 3})
    with pytest.warns(UserWarning, match=r"^loss 'bare' has no parameter delta: loss_delta = 0.3 is not used \(of "
                                         r"these settings it takes none of them\)$"):
        component("loss", "bare", TrainingConfig(**SHORT, loss="bare", loss_delta=0.3), {})
    with pytest.warns(UserWarning, match=r"^loss 'any' has no parameter delta: loss_delta = 0.3 is not used \(of "
                                         r"these settings it takes none of them; its \*\*options takes "
                                         r"loss_options\)$"):
        assert component("loss", "any", TrainingConfig(**SHORT, loss="any", loss_delta=0.3), {}).loss.options == {}
    assert component("loss", "any", TrainingConfig(**SHORT, loss="any", loss_options={"delta": 0.3}),
                     {"delta": 0.3}).loss.options == {"delta": 0.3}


def test_a_plugin_loss_parameter_without_a_default_takes_its_setting_even_at_the_settings_default(monkeypatch):
    """(left at its default, loss_alpha reached no parameter: the loss was refused as missing alpha, with
    advice to give it in loss_options, where it was then refused for having a setting of its own)"""
    class Required(_PluginLoss):
        def __init__(self, alpha):
            super().__init__(alpha)

    from delgrad_core.training._components import component

    _register_plugin_components(monkeypatch, delgrad_register_losses=lambda register: register("req", Required))
    assert component("loss", "req", TrainingConfig(**SHORT, loss="req"), {}).loss.alpha == TrainingConfig.loss_alpha
    assert component("loss", "req", TrainingConfig(**SHORT, loss="req", loss_alpha=0.5), {}).loss.alpha == 0.5
    with pytest.raises(dg.InvalidValueError, match="^loss_options: set loss_alpha instead of the option alpha"):
        TrainingConfig(**SHORT, loss="req", loss_options={"alpha": 0.5})


@pytest.mark.skipif(not plots_available(), reason="matplotlib is not installed")
@pytest.mark.parametrize(("n_classes", "width_px"), [(3, 3 * 4 * 120), (5, 5 * 4 * 120), (10, 6 * 120), (12, 6 * 120)])
def test_spike_time_plots_of_many_classes_are_one_panel(tmp_path, n_classes, width_px):
    """(a panel per class with a histogram per output neuron: 50 classes drew 2,500 histograms
    into a figure 200 inches wide, about 100 s; the 10 classes of MNIST 100 histograms, 20 s)"""
    import struct

    from delgrad_core.training._plots import plot_run

    rng = np.random.default_rng(0)
    times = rng.uniform(0.0, 3.0, (200, n_classes))
    times[0, 0] = np.inf  # (a silent output)
    written = plot_run(tmp_path, [], dg.Network.feedforward([4, 5, n_classes], seed=0), times,
                       np.arange(200) % n_classes, [f"c{k}" for k in range(n_classes)])
    assert tmp_path / "spike_times.png" in written
    assert struct.unpack(">I", (tmp_path / "spike_times.png").read_bytes()[16:20])[0] == width_px


@pytest.mark.skipif(not plots_available(), reason="matplotlib is not installed")
@pytest.mark.parametrize("value", [1e16, 0.7])
def test_plots_of_equal_delays_and_spike_times_are_drawn(tmp_path, value):
    """(delays of 1e16, equal to within rounding, were "Too many bins for data range": the run failed
    after writing its metrics, and every resume again; equal spike times likewise)"""
    from delgrad_core.training._plots import plot_run

    network = dg.Network.feedforward([4, 5, 3], delay_kind="synaptic", seed=0)
    for layer in network.layers:
        layer.projection.delays[...] = value * (1 + 1e-16 * np.arange(layer.projection.delays.size).reshape(
            layer.projection.delays.shape))
    written = plot_run(tmp_path, [], network, np.full((12, 3), value), np.arange(12) % 3, ["a", "b", "c"])
    assert [path.name for path in written] == ["learning_curves.png", "spike_times.png", "confusion.png",
                                               "delays.png"]
    with pytest.raises(dg.InvalidValueError, match=r"delay_scale: .* at least 1e-09 of delay_shift \(1e\+16\)"):
        dg.training.TrainingConfig(delay_shift=1e16)


@pytest.mark.skipif(not plots_available(), reason="matplotlib is not installed")
def test_plots_of_zero_losses_and_silent_outputs_give_no_matplotlib_warnings(tmp_path):
    """(matplotlib's 'Data has no positive values, and therefore cannot be log-scaled' reached the
    user as a warning about the run)"""
    from delgrad_core.training._plots import plot_run

    history = [{"epoch": 1, "train_loss": 0.0, "validation_loss": 0.0, "train_accuracy": 1.0,
                "validation_accuracy": 1.0}]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        written = plot_run(tmp_path, history, dg.Network.feedforward([4, 5, 3], seed=0), np.full((12, 3), np.inf),
                           np.arange(12) % 3, ["a", "b", "c"])
    assert [path.name for path in written] == ["learning_curves.png", "spike_times.png", "confusion.png"]


@pytest.mark.skipif(not plots_available(), reason="matplotlib is not installed")
@pytest.mark.parametrize("n_classes", [3, 12])
def test_spike_time_plots_say_how_many_samples_are_silent(monkeypatch, tmp_path, n_classes):
    """(with every output silent the histograms were empty, with no word why, and their count
    axes ran from -0.06 to 0.06)"""
    from delgrad_core.training import _plots

    legends, count_axes, tallest = {}, {}, {}

    def seen(fig, path):
        legends[path.name] = [text.get_text() for ax in fig.axes if ax.get_legend()
                              for text in ax.get_legend().get_texts()]
        count_axes[path.name] = [(ax.get_ylim(), list(ax.get_yticks())) for ax in fig.axes]
        tallest[path.name] = max([patch.get_height() for ax in fig.axes for patch in ax.patches], default=0)

    monkeypatch.setattr(_plots, "save_figure", seen)
    _plots.plot_run(tmp_path, [], dg.Network.feedforward([4, 5, n_classes], seed=0),
                    np.full((24, n_classes), np.inf), np.arange(24) % n_classes, [f"c{k}" for k in range(n_classes)])
    expected = ("output c0 (8 of 8 silent)" if n_classes == 3 else "the label's output (24 of 24 silent)")
    assert expected in legends["spike_times.png"], legends
    for (bottom, top), ticks in count_axes["spike_times.png"]:
        assert bottom == 0 and top >= 1 and all(tick == int(tick) for tick in ticks), count_axes
    labels = np.arange(24) % n_classes
    spiking = np.where(labels[:, None] == n_classes - 1, 1.0, np.linspace(1.0, 2.0, 24)[:, None] + np.zeros(n_classes))
    _plots.plot_run(tmp_path, [], dg.Network.feedforward([4, 5, n_classes], seed=0), spiking, labels,
                    [f"c{k}" for k in range(n_classes)])  # (the last class's panel has the tallest bars)
    assert all(top >= tallest["spike_times.png"] >= 2 for (_, top), _ in count_axes["spike_times.png"]), count_axes


@pytest.mark.parametrize(("failure", "warned"), [
    (ModuleNotFoundError("No module named 'matplotlib'", name="matplotlib"),
     "matplotlib is not installed: no plots written (pip install 'delgrad[plot]')"),
    (ModuleNotFoundError("No module named 'kiwisolver'", name="kiwisolver"),
     "matplotlib could not be loaded (ModuleNotFoundError: No module named 'kiwisolver'): no plots written"),
    (OSError("cannot map libfreetype"),
     "matplotlib could not be loaded (OSError: cannot map libfreetype): no plots written"),
    (MemoryError("cannot allocate"), "matplotlib could not be loaded (MemoryError: cannot allocate): no plots written"),
])
def test_plots_that_cannot_be_drawn_are_a_warning_whose_advice_fits_the_cause(monkeypatch, tmp_path, failure, warned):
    """Only a missing matplotlib is "not installed", with the pip advice; a dependency of it that is
    missing, or a library that cannot be loaded, is named as such (docstring of `why_no_plots`)."""
    from delgrad_core.training import _plots

    def broken_pyplot():
        raise failure

    monkeypatch.setattr(_plots, "pyplot", broken_pyplot)
    with pytest.warns(UserWarning) as record:
        written = _plots.plot_run(tmp_path, [], dg.Network.feedforward([4, 5, 3], seed=0), np.ones((3, 3)),
                                  np.arange(3), ["a", "b", "c"])
    assert written == [] and [str(warning.message) for warning in record] == [warned]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not plots_available(), reason="matplotlib is not installed")
def test_plots_are_drawn_on_agg_and_leave_no_figure_open(tmp_path):
    """`pyplot` switches to the file-only Agg backend whatever was chosen before (no display
    needed), and every figure `plot_run` draws is closed once written (a sweep draws many)."""
    import matplotlib

    from delgrad_core.training._plots import plot_run, pyplot

    chosen = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        plt = pyplot()
        assert matplotlib.get_backend().lower() == "agg"
        plt.close("all")
        network = dg.Network.feedforward([4, 5, 3], delay_kind="axonal", seed=0)
        written = plot_run(tmp_path, [], network, np.ones((6, 3)), np.arange(6) % 3, ["a", "b", "c"])
        assert len(written) == 4 and plt.get_fignums() == []
    finally:
        matplotlib.use(chosen)


@pytest.mark.parametrize(("values", "count", "bins"), [
    ([0.0, 1.0, np.inf], 4, [0.0, 0.25, 0.5, 0.75, 1.0]),  # (`count` bins over the finite values)
    ([np.inf, np.nan], 4, 10),  # (none finite: matplotlib's 10 default bins)
    ([0.7, 0.7], 3, [0.2, 1.2]),  # (all equal: one bin of width 1 around them)
    ([1e16, 1e16 + 2], 3, [1e16 - 1e10, 1e16 + 1e10]),  # (equal to within rounding: width 1e-6 of their size each side)
])
def test_histogram_bins_are_count_bins_or_one_around_values_too_close_together(values, count, bins):
    """The bins of the spike time and delay histograms (docstring of `_bins`)."""
    from delgrad_core.training._plots import _bins

    got = _bins(np.array(values), count)
    assert got == bins if isinstance(bins, int) else np.allclose(got, bins, rtol=1e-12, atol=0)


def _drawn_figures(monkeypatch, *args, **kwargs):
    """The figures `plot_run` draws, by file name, captured instead of written."""
    from delgrad_core.training import _plots

    figures = {}
    monkeypatch.setattr(_plots, "save_figure", lambda fig, path: figures.setdefault(path.name, fig))
    _plots.plot_run(*args, **kwargs)
    return figures


def _mean_of_bars(bars) -> float:
    """The mean of the values a histogram counted, from its bars' centres (to within a bar's width)."""
    heights = np.array([bar.get_height() for bar in bars])
    centres = np.array([bar.get_x() + bar.get_width() / 2 for bar in bars])
    return float(np.sum(heights * centres) / np.sum(heights))


@pytest.mark.skipif(not plots_available(), reason="matplotlib is not installed")
def test_plots_show_the_runs_numbers_where_they_say(monkeypatch, tmp_path):
    """What each figure shows, by hand: 4 test samples of 3 classes a, b, c predicted 0, 1, 2 and
    none (silent), labelled 0, 2, 2, 1: right are samples 0 and 2 (50 %), wrong 1 and 3."""
    import matplotlib.pyplot as plt

    history = [{"epoch": 1, "train_loss": 2.0, "validation_loss": 3.0, "train_accuracy": 0.25,
                "validation_accuracy": 0.5},
               {"epoch": 2, "train_loss": 1.0, "validation_loss": 1.5, "train_accuracy": 0.5,
                "validation_accuracy": 0.75}]
    times = np.array([[1.0, 2.0, 3.0], [2.0, 1.0, 3.0], [3.0, 2.0, 1.0], [np.inf, np.inf, np.inf]])
    labels, names = np.array([0, 2, 2, 1]), ["a", "b", "c"]
    features = np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6], [0.7, 0.8]])
    plane = (None, None, np.array([[0, 1], [2, -1]]))
    network = dg.Network.feedforward([2, 5, 3], delay_kind=["none", "axonal"], seed=0)  # (delays into the output only)
    figures = _drawn_figures(monkeypatch, tmp_path, history, network, times, labels, names, test_features=features,
                             plane=plane)
    loss, accuracy = figures["learning_curves.png"].axes
    assert [list(line.get_ydata()) for line in loss.lines] == [[2.0, 1.0], [3.0, 1.5]]
    assert [list(line.get_ydata()) for line in accuracy.lines] == [[25.0, 50.0], [50.0, 75.0]]
    assert (loss.get_yscale(), accuracy.get_ylabel()) == ("log", "accuracy [%]")
    panels = figures["spike_times.png"].axes
    assert [ax.get_title() for ax in panels] == ["samples of class a", "samples of class b", "samples of class c"]
    # (the finite spike times of each class's samples: 3 of sample 0, none of silent sample 3, 6 of samples 1 and 2)
    assert [sum(bar.get_height() for bar in ax.patches) for ax in panels] == [3, 0, 6]
    assert [text.get_text() for text in panels[-1].get_legend().get_texts()] == ["output a", "output b", "output c"]
    (confusion,) = figures["confusion.png"].axes
    assert np.array_equal(confusion.images[0].get_array(), [[1, 0, 0, 0], [0, 0, 0, 1], [0, 1, 1, 0]])
    assert confusion.get_title() == "test accuracy 50.0 %"
    # (a number is white on the dark cells, over half the largest count, and black on the light ones)
    assert {(text.get_text(), text.get_color()) for text in confusion.texts} == {("1", "white"), ("0", "black")}
    assert [tick.get_text() for tick in confusion.get_xticklabels()] == ["a", "b", "c", "none"]
    (decisions,) = figures["decision_map.png"].axes
    shade = decisions.images[0]
    assert shade.origin == "lower"
    assert shade.get_array().mask.tolist() == [[False, False], [False, True]]  # (no shade where no output spikes)
    # (the shade of a class has the colour of its points)
    assert [tuple(shade.cmap(shade.norm(k))[:3]) for k in (0, 2)] == \
        [tuple(decisions.collections[k].get_facecolor()[0][:3]) for k in (0, 2)]
    assert [collection.get_offsets().tolist() for collection in decisions.collections] == \
        [[[0.1, 0.2]], [], [[0.5, 0.6]], [[0.3, 0.4], [0.7, 0.8]]]
    assert [text.get_text() for text in decisions.get_legend().get_texts()] == ["a", "b", "c", "wrong (2)"]
    (delays,) = figures["delays.png"].axes
    assert delays.get_title() == f"axonal delays into {network.layers[1].population.name}"
    assert sum(bar.get_height() for bar in delays.patches) == 5  # (one delay per neuron of the hidden layer)
    zero_loss = [{**history[0], "validation_loss": 0.0}]  # (no log scale for a loss of 0)
    without_points = _drawn_figures(monkeypatch, tmp_path, zero_loss, dg.Network.feedforward([2, 5, 3], seed=0), times,
                                    labels, names, plane=plane)
    assert without_points["learning_curves.png"].axes[0].get_yscale() == "linear"
    assert "decision_map.png" not in without_points  # (a plane without test points to mark: no map)
    plt.close("all")


@pytest.mark.skipif(not plots_available(), reason="matplotlib is not installed")
def test_names_with_dollar_signs_are_drawn_letter_for_letter(tmp_path):
    """Class and layer names are any strings: two `$` in one are no formula to matplotlib (an
    unparsable one failed the run after its results were written)."""
    from delgrad_core.training._plots import plain_text

    plain = dg.Network.feedforward([2, 5, 2], delay_kind="axonal", seed=0)
    hidden = dataclasses.replace(plain.layers[0], population=dataclasses.replace(plain.layers[0].population,
                                                                                 name="$x_{$"))
    network = dg.Network(plain.input, [hidden, plain.layers[1]])
    names = ["$\\alpha$ and $\\foo$", "5$-$10"]
    written = _plots_written(tmp_path, network, names)
    assert {path.name for path in written} == {"learning_curves.png", "spike_times.png", "confusion.png",
                                               "decision_map.png", "delays.png"}
    assert plain_text("5$-$10") == r"5\$-\$10" and plain_text(3) == "3"  # (a `$` escaped, nothing else changed)


def _plots_written(tmp_path, network, class_names):
    """The files `plot_run` writes for 4 test samples (with a decision plane) of `class_names`."""
    from delgrad_core.training._plots import plot_run

    n = len(class_names)
    history = [{"epoch": 1, "train_loss": 2.0, "validation_loss": 3.0, "train_accuracy": 0.25,
                "validation_accuracy": 0.5}]
    times = np.arange(4 * n, dtype=float).reshape(4, n) % 3.0
    plane = (None, None, np.array([[0, 1], [1, -1]]))
    return plot_run(tmp_path, history, network, times, np.arange(4) % n, class_names,
                    test_features=np.full((4, 2), 0.5), plane=plane)


@pytest.mark.skipif(not plots_available(), reason="matplotlib is not installed")
def test_plots_of_many_classes_stay_small_and_tell_them_apart(monkeypatch, tmp_path):
    """The confusion matrix of 100 classes is a figure of bounded size with a colour bar, not
    10,100 numbers (it grew as n: 100 classes took 31 s, 600 ran out of memory); the decision
    map gives each of 12 classes its own colour (tab10 gave classes 9, 10 and 11 one colour)."""
    import matplotlib.pyplot as plt

    n = 100
    rng = np.random.default_rng(0)
    figures = _drawn_figures(monkeypatch, tmp_path, [], dg.Network.feedforward([2, 5, n], seed=0),
                             rng.uniform(0, 3, (500, n)), np.arange(500) % n, [f"c{k}" for k in range(n)])
    confusion = figures["confusion.png"]
    assert tuple(confusion.get_size_inches()) == (27.0, 20.0) and not confusion.axes[0].texts
    assert confusion.axes[1].get_ylabel() == "samples"  # (the colour bar)
    few = _drawn_figures(monkeypatch, tmp_path, [], dg.Network.feedforward([2, 5, 3], seed=0), np.ones((3, 3)),
                         np.arange(3), ["a", "b", "c"])
    assert len(few["confusion.png"].axes[0].texts) == 3 * 4  # (a number per cell, "none" included)
    n = 12
    maps = _drawn_figures(monkeypatch, tmp_path, [], dg.Network.feedforward([2, 5, n], seed=0),
                          np.eye(n)[::-1] + 1, np.arange(n), [f"c{k}" for k in range(n)],
                          test_features=np.full((n, 2), 0.5), plane=(None, None, np.zeros((2, 2), dtype=int)))
    colours = [tuple(collection.get_facecolor()[0]) for collection in maps["decision_map.png"].axes[0].collections[:n]]
    assert len(set(colours)) == n
    plt.close("all")


@pytest.mark.skipif(not plots_available(), reason="matplotlib is not installed")
@pytest.mark.parametrize("n", [20, 21, 60, 61])
def test_the_confusion_matrix_numbers_its_cells_up_to_20_classes_and_names_them_up_to_60(monkeypatch, tmp_path, n):
    """Up to 20 classes a number per cell in square cells, beyond a colour bar filling the figure;
    up to 60 classes the axes name every class, beyond they number them."""
    import matplotlib.pyplot as plt

    names = [f"c{k}" for k in range(n)]
    figures = _drawn_figures(monkeypatch, tmp_path, [], dg.Network.feedforward([2, 5, n], seed=0),
                             np.eye(n)[::-1] + 1, np.arange(n), names)
    confusion = figures["confusion.png"].axes[0]
    assert len(confusion.texts) == (n * (n + 1) if n <= 20 else 0)
    assert (len(figures["confusion.png"].axes), confusion.get_aspect()) == ((1, 1.0) if n <= 20 else (2, "auto"))
    ticks = [text.get_text() for text in confusion.get_yticklabels()]
    assert ticks == names if n <= 60 else ticks and all(tick.replace("\N{MINUS SIGN}", "").isdigit() for tick in ticks)
    plt.close("all")


@pytest.mark.skipif(not plots_available(), reason="matplotlib is not installed")
def test_learning_curves_of_one_epoch_show_its_points(monkeypatch, tmp_path):
    """(a line of one point is not drawn: a run of one epoch had empty learning curves)"""
    import matplotlib.pyplot as plt

    history = [{"epoch": 1, "train_loss": 2.0, "validation_loss": 3.0, "train_accuracy": 0.25,
                "validation_accuracy": 0.5}]
    figures = _drawn_figures(monkeypatch, tmp_path, history, dg.Network.feedforward([2, 5, 3], seed=0),
                             np.ones((3, 3)), np.arange(3), ["a", "b", "c"])
    assert all(line.get_marker() == "o" for ax in figures["learning_curves.png"].axes for line in ax.lines)
    two = _drawn_figures(monkeypatch, tmp_path, history + [{**history[0], "epoch": 2}],
                         dg.Network.feedforward([2, 5, 3], seed=0), np.ones((3, 3)), np.arange(3), ["a", "b", "c"])
    assert all(line.get_marker() == "None" for ax in two["learning_curves.png"].axes for line in ax.lines)
    plt.close("all")


@pytest.mark.skipif(not plots_available(), reason="matplotlib is not installed")
def test_spike_time_plot_of_many_classes_sets_each_label_against_the_earliest_other(monkeypatch, tmp_path):
    """Over 5 classes one panel: sample 0 (label 0) has its own output at 1 and the earliest other
    at 2; sample 1 (label 5) its own at 2 and the earliest other at 0.5."""
    import matplotlib.pyplot as plt

    times = np.array([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [0.5, 3.0, 3.5, 4.0, 4.5, 2.0]])
    figures = _drawn_figures(monkeypatch, tmp_path, [], dg.Network.feedforward([2, 5, 6], seed=0), times,
                             np.array([0, 5]), list("abcdef"))
    (ax,) = figures["spike_times.png"].axes
    own, earliest_other = ax.containers
    width = own[0].get_width()
    assert _mean_of_bars(own) == pytest.approx(1.5, abs=width) and \
        _mean_of_bars(earliest_other) == pytest.approx(1.25, abs=width)
    assert ax.get_title() == "all 6 classes"
    plt.close("all")


def test_the_no_plots_warning_points_at_its_caller():
    """`warn_no_plots` warns on behalf of its caller (stacklevel 1), not from inside _plots.py."""
    from delgrad_core.training._plots import warn_no_plots

    with pytest.warns(UserWarning, match="no plots written") as record:
        warn_no_plots("matplotlib is not installed")
    assert record[0].filename == __file__


def test_training_runs_a_batch_above_the_backends_limit_in_several_jobs():
    from delgrad_core.testing import MockBackend

    limited = MockBackend(capabilities=dg.Capabilities(exact=True, max_batch_size=16))
    config = TrainingConfig(**{**SHORT, "epochs": 1, "batch_size": 50})
    with Trainer(config, backend=limited) as in_jobs, Trainer(config, backend=MockBackend()) as whole:
        in_jobs.fit(progress=False)
        whole.fit(progress=False)
    assert max(request.batch_size for request in limited.requests) == 16
    for name, value in whole.model.params.items():  # the same steps: the reference model is exact
        np.testing.assert_allclose(in_jobs.model.params[name], value, rtol=1e-12, atol=1e-12)


def test_a_plugin_dataset_with_features_outside_the_unit_interval_is_named(monkeypatch):
    from delgrad_core.datasets import Dataset, load_dataset

    def datasets(register):
        register("raw", lambda split: Dataset("raw", split, np.array([[97.36, 0.5]]), np.array([0]), ("a",)),
                 splits=("train",))
        register("hair", lambda split: Dataset("hair", split, np.array([[1 + 2**-52, 0.0]]), np.array([0]), ("a",)),
                 splits=("train",))

    _register_plugin_components(monkeypatch, delgrad_register_datasets=datasets)
    with pytest.raises(dg.PluginError, match=r"dataset 'raw' .*: the features of split 'train' must lie in \[0, 1\] "
                                             r"\(they span 0.5 to 97.36\)"):
        load_dataset("raw", "train")
    with pytest.raises(dg.PluginError, match=r"\(they span 0.0 to 1.0000000000000002\)"):  # (not "0 to 1")
        load_dataset("hair", "train")


def test_splits_that_disagree_or_hold_nothing_and_a_plane_of_nan_are_refused_before_training(monkeypatch, tmp_path):
    """(an empty test split failed after the whole training, and every resume failed again; other
    class counts per split crashed in the plots after the run was written; class names in another
    order were taken as they came, reporting accuracies against the wrong names; a plane of NaN
    failed after the training)"""
    from delgrad_core.datasets import Dataset

    def split_of(name, split, n_features=2, class_names=("a", "b", "c"), n_samples=30):
        features = np.random.default_rng(len(split)).uniform(0, 1, (n_samples, n_features))
        return Dataset(name, split, features, np.arange(n_samples) % len(class_names), class_names)

    cases = {
        "empty_test": ({"test": {"n_samples": 0}}, r"dataset 'empty_test', split 'test': holds no samples"),
        "two_classes": ({"validation": {"class_names": ("a", "b")}},
                        r"split 'validation': class names \['a', 'b'\], the train split has \['a', 'b', 'c'\]"),
        "reordered": ({"test": {"class_names": ("c", "b", "a")}}, r"split 'test': class names \['c', 'b', 'a'\], the "
                                                                  r"train split has .* a label means one class"),
        "wider": ({"validation": {"n_features": 3}},
                  r"split 'validation': 3 features per sample, the train split has 2"),
    }

    def datasets(register):
        splits = ("train", "validation", "test")
        for name, (changes, _) in cases.items():
            register(name, lambda split, name=name, changes=changes: split_of(name, split, **changes.get(split, {})),
                     splits=splits)
        register("nan_plane", lambda split: split_of("nan_plane", split), splits=splits,
                 plane=lambda x, y: np.full((x.size, 2), np.nan))

    _register_plugin_components(monkeypatch, delgrad_register_datasets=datasets)
    for name, (_, message) in cases.items():
        with pytest.raises(dg.InvalidValueError, match=message):
            Trainer(TrainingConfig(**{**SHORT, "dataset": name, "epochs": 1}), out_dir=tmp_path / name)
        assert not (tmp_path / name / "checkpoint.npz").exists()
    with pytest.raises(dg.PluginError, match=r"dataset 'nan_plane' .*: its plane returned features outside \[0, 1\] "
                                             r"on a grid of 3 x 3, e.g. nan"):
        Trainer(TrainingConfig(**{**SHORT, "dataset": "nan_plane", "epochs": 1}))


def _fails_on_the_full_grid(failure: str):
    """A plane of 2 features that passes the 3 x 3 check before training and fails in the way
    `failure` says on the full grid."""
    def plane(x, y):
        features = np.stack([x.ravel(), y.ravel()], axis=-1)
        if x.size <= 100:
            return features
        if failure == "raises":
            raise dg.InvalidValueError("grid too fine for me")
        if failure == "NaN":
            features[0, 0] = np.nan
            return features
        return np.full(features.shape, "x", dtype=object)
    return plane


@pytest.mark.parametrize("failure, told", [
    ("NaN", r"dataset 'dots' from 'delgrad-local': its plane returned features outside \[0, 1\] on a grid of "
            r"120 x 120, e.g. nan \(features lie in \[0, 1\], as a loader's do\)"),
    ("raises", "grid too fine for me"),
    ("not numbers", "dataset 'dots' from 'delgrad-local': its plane returned values that are not numbers on a grid "
                    r"of 120 x 120 \(.*\)"),
])
def test_a_plane_that_fails_on_the_full_grid_costs_the_decision_map_only(monkeypatch, tmp_path, failure, told):
    """(a plane passing the 3 x 3 check before training but failing on the full grid ended a written
    run with status 1 and no plots at all: with NaN, the encoder's message, which did not name the
    plane; raising its own error, that; returning strings, a ValueError traceback)"""
    pytest.importorskip("matplotlib")
    from delgrad_core.datasets import Dataset

    def dots(split):
        features = np.random.default_rng(len(split)).uniform(0, 1, (30, 2))
        return Dataset("dots", split, features, np.arange(30) % 3, ("a", "b", "c"))

    _register_plugin_components(monkeypatch, delgrad_register_datasets=lambda register: register(
        "dots", dots, splits=("train", "validation", "test"), plane=_fails_on_the_full_grid(failure)))
    run = tmp_path / "run"
    result = cli_runner().invoke(main, ["train", "--dataset", "dots", "--hidden", "4", "--delays", "none", "--epochs",
                                        "1", "--out", str(run), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert re.search(rf"decision plane: {told}; decision_map.png is not drawn", result.output), result.output
    assert (run / "metrics.json").exists() and (run / "learning_curves.png").exists()
    assert not (run / "decision_map.png").exists()


def test_evaluate_says_when_it_does_not_repeat_the_recorded_test_accuracy(tmp_path):
    """(a run scored before ties counted as wrong evaluated to another accuracy without a word)"""
    run = tmp_path / "run"
    assert cli_runner().invoke(main, ["train", "--hidden", "4", "--delays", "none", "--epochs", "1", "--out", str(run),
                                      "--no-progress", "--batch-size", "250"]).exit_code == 0
    result = cli_runner().invoke(main, ["evaluate", str(run)])
    assert result.exit_code == 0 and "note" not in result.stderr, result.output
    network = dg.load_network(run / "network.npz")
    strong = [dg.Layer(layer.population, dg.Projection(np.full_like(layer.projection.weights, 3.0)))
              for layer in network.layers]
    dg.save_network(dg.Network(network.input, strong), run / "network.npz")  # every output at once: all ties
    labels = dg.datasets.load_dataset("yin_yang", "test").labels
    from delgrad_core.training._run_folder import network_file_digest
    # (as if the run had saved this network: the code, not the file, changed since)
    metrics = dict(json.loads((run / "metrics.json").read_text()),
                   network_digest=network_file_digest(run / "network.npz"))
    for recorded, told in ((float(np.mean(labels == 0)), "it was scored when a tie for the first output spike went "
                                                         "to the lowest class; ties now count as wrong"),
                           (0.5, "(its backend, dataset or their code changed since)")):
        (run / "metrics.json").write_text(json.dumps({**metrics, "test_accuracy": recorded}))
        for its_own in ([], ["--backend", "reference"], ["--dataset", "yin_yang"],
                        ["--backend-option", "n_threads=2"]):  # (an option that changes no result)
            result = cli_runner().invoke(main, ["evaluate", str(run), *its_own])
            assert result.exit_code == 0 and "test accuracy on reference: 0.00 %" in result.stdout, result.output
            assert f"note: the run recorded a test accuracy of {100 * recorded:.2f} %, 0.00 % now" in result.stderr
            assert told in result.stderr, result.stderr
        result = cli_runner().invoke(main, ["evaluate", str(run), "--seed", "7"])  # (not the run's test)
        assert result.exit_code == 0 and "recorded" not in result.stderr, result.output


def test_evaluate_of_a_backend_that_does_not_repeat_its_results_blames_no_code_change(monkeypatch, tmp_path):
    from delgrad_core import Capabilities, ExecutionResult
    from delgrad_core.testing import MockBackend, reference_handler

    def unrepeatable(request):  # (output spikes late by a draw no seed repeats)
        ideal = reference_handler(request).layer_spike_times
        late = np.abs(np.random.default_rng().normal(0.0, 0.5, ideal[-1].shape))
        return ExecutionResult([*ideal[:-1], ideal[-1] + late])

    _register_plugin_components(monkeypatch, delgrad_register_backends=lambda register: register(
        "unrepeatable", lambda: MockBackend(unrepeatable, name="unrepeatable", capabilities=Capabilities(
            exact=False, deterministic=False, seed_independent=False))))
    run = _trained_for_one_epoch("unrepeatable", tmp_path / "run")
    metrics = json.loads((run / "metrics.json").read_text())  # (one no evaluation of 1000 samples gives)
    (run / "metrics.json").write_text(json.dumps({**metrics, "test_accuracy": 0.12345}))
    result = cli_runner().invoke(main, ["evaluate", str(run)])
    assert result.exit_code == 0 and "note: the run recorded a test accuracy of 12.35 %" in result.stderr, \
        result.output
    assert "(the backend does not repeat its results for a seed)" in result.stderr, result.stderr


def test_evaluate_on_a_device_set_up_otherwise_blames_that_not_the_code(monkeypatch, tmp_path):
    """(a run evaluated on its device set up otherwise, e.g. a shared service restarted with
    another chip, was warned of that, then told "its backend, dataset or their code changed")"""
    from delgrad_core import ExecutionResult
    from delgrad_core.testing import MockBackend, reference_handler

    setup = {"gain": 1.0}

    class Tunable(MockBackend):
        def __init__(self):
            super().__init__(self._run, name="tunable")

        @staticmethod
        def _run(request):  # (output neuron k later by (gain - 1) k: another first spike)
            *hidden, output = reference_handler(request).layer_spike_times
            return ExecutionResult([*hidden, output + (setup["gain"] - 1.0) * np.arange(output.shape[1])])

        def _device_identity(self, calibration):
            return {**super()._device_identity(calibration), "options": dict(setup)}

    _register_plugin_components(monkeypatch, delgrad_register_backends=lambda register: register("tunable", Tunable))
    run = _trained_for_one_epoch("tunable", tmp_path / "run")
    setup["gain"] = 3.0  # (the same device, set up otherwise: other spike times)
    result = cli_runner().invoke(main, ["evaluate", str(run)])
    assert result.exit_code == 0 and "was trained on device 'tunable' set up otherwise" in result.stderr, \
        result.output
    assert "note: the run recorded a test accuracy of " in result.stderr, result.stderr
    assert "(on the device set up otherwise, as warned above)" in result.stderr, result.stderr
    assert "code changed" not in result.stderr


def test_evaluate_of_a_run_being_written_names_the_process_writing_it(tmp_path):
    """(it said only "not a finished run folder", e.g. while a resume trained the run on)"""
    from delgrad_core.training._run_folder import RunFolder

    run = tmp_path / "run"
    unfinished = f"{run}: not a finished run folder (no metrics.json with a test accuracy)"
    with RunFolder(run).claim(resume=False):
        result = cli_runner().invoke(main, ["evaluate", str(run)])
        assert result.exit_code == 1 and f"{unfinished}; process {os.getpid()} is writing it: evaluate it when that " \
                                          "run has finished" in result.output, result.output
    run.mkdir()
    result = cli_runner().invoke(main, ["evaluate", str(run)])
    assert result.exit_code == 1 and f"{unfinished}\n" in result.output and "writing" not in result.output, \
        result.output


def test_evaluating_on_an_empty_split_says_so(monkeypatch, tmp_path):
    """(it said "output_times: accuracy of an empty batch is undefined")"""
    from delgrad_core.datasets import Dataset

    samples = {"n": 60}

    def shrinking(split):
        features = np.random.default_rng(len(split)).uniform(0.0, 1.0, (samples["n"], 4))
        return Dataset("shrinking", split, features, np.arange(samples["n"]) % 3, ("a", "b", "c"))

    _register_plugin_components(monkeypatch, delgrad_register_datasets=lambda register: register(
        "shrinking", shrinking, splits=("train", "validation", "test")))
    runner, run = cli_runner(), str(tmp_path / "run")
    assert runner.invoke(main, ["train", "--dataset", "shrinking", "--hidden", "4", "--delays", "none", "--epochs", "1",
                                "--out", run, "--no-progress"]).exit_code == 0
    samples["n"] = 0
    result = runner.invoke(main, ["evaluate", run])
    assert result.exit_code == 1 and result.output.strip().endswith(
        "Error: dataset 'shrinking', split 'test': holds no samples"), result.output


def test_data_that_changed_under_a_run_is_refused_on_resume_and_noted_by_evaluate(monkeypatch, tmp_path):
    """(a dataset's files replaced between the start and the resume of a run, or before its
    evaluation, went unnoticed: the run trained on, and evaluate reported on, other data)"""
    from delgrad_core.datasets import Dataset

    version = {"shift": 0.0}

    def drifting(split, spread=0.5):
        features = np.random.default_rng(len(split)).uniform(0.0, spread, (60, 4)) + version["shift"]
        return Dataset("drifting", split, features, np.arange(60) % 3, ("a", "b", "c"))

    _register_plugin_components(monkeypatch, delgrad_register_datasets=lambda register: register(
        "drifting", drifting, splits=("train", "validation", "test")))
    runner, run = cli_runner(), str(tmp_path / "run")
    train = ["train", "--dataset", "drifting", "--hidden", "4", "--delays", "none", "--out", run, "--no-progress"]
    assert runner.invoke(main, [*train, "--epochs", "1"]).exit_code == 0
    recorded = json.loads((tmp_path / "run" / "metrics.json").read_text())["dataset_digests"]
    assert recorded["test"] == drifting("test").digest() != drifting("train").digest()
    unchanged = runner.invoke(main, ["evaluate", run])
    assert unchanged.exit_code == 0 and "differs" not in unchanged.output
    version["shift"] = 0.25  # (the files replaced)
    resumed = runner.invoke(main, [*train, "--epochs", "2", "--resume"])
    assert resumed.exit_code != 0
    assert "resume: the train, validation, test split(s) of dataset 'drifting' differ from those the run began " \
           "with" in resumed.output, resumed.output
    for at_its_default in ([], ["--dataset-option", "spread=0.5"]):  # (the same data)
        evaluated = runner.invoke(main, ["evaluate", run, *at_its_default])
        assert evaluated.exit_code == 0
        assert f"the test split of 'drifting' differs from the one {run} recorded (its files changed" in \
            evaluated.output, at_its_default


def test_resume_refuses_a_device_of_another_identity_and_warns_of_a_recalibration(tmp_path):
    """As a shared service restarted with another chip or device options: same settings, another
    device identity (refused); or calibrated again with other contents under the same key (warned)."""
    from delgrad_core.testing import MockBackend

    class Chip(MockBackend):
        def __init__(self, chip, gain=1.0, drift=0):
            super().__init__(capabilities=dg.Capabilities(exact=True, needs_calibration=True))
            self.chip, self.gain, self.drift = chip, gain, drift

        def _calibrate(self, network, seed, progress):
            return dg.Calibration("mock", {"chip": self.chip, "drift": self.drift}, f"mock/chip-{self.chip}")

        def _device_identity(self, calibration):
            return {**super()._device_identity(calibration), "options": {"gain": self.gain}}

    short = {**SHORT, "epochs": 1}
    with Trainer(TrainingConfig(**short), backend=Chip(3), out_dir=tmp_path) as first:
        first.fit(progress=False)
        recorded = first.summary()["device_identity"]
    assert recorded == {"backend": "mock", "calibration_key": "mock/chip-3", "options": {"gain": 1.0},
                        "calibration_digest": dg.Calibration("mock", {"chip": 3, "drift": 0}, "mock/chip-3").digest}
    more = TrainingConfig(**{**SHORT, "epochs": 2})
    with pytest.raises(ValueError, match="resume: device 'mock' is not the one the run was trained on: calibrated as "
                                         "'mock/chip-3', now as 'mock/chip-5'"):
        Trainer(more, backend=Chip(5), out_dir=tmp_path, resume=True)
    with pytest.raises(ValueError, match=r"device options gain 1\.0 \(now 2\.0\); resume where the run was trained"):
        Trainer(more, backend=Chip(3, gain=2.0), out_dir=tmp_path, resume=True)
    with pytest.warns(UserWarning, match="resume: device 'mock' has the same calibration key with other calibration "
                                         "contents"):
        Trainer(more, backend=Chip(3, drift=1), out_dir=tmp_path, resume=True).close()
    checkpoint = tmp_path / "checkpoint.npz"
    original = checkpoint.read_bytes()
    _edit_checkpoint_state(checkpoint, device_identity=["x"])
    with pytest.raises(dg.FileFormatError, match=r"checkpoint.npz: device_identity is \["):
        Trainer(more, backend=Chip(3), out_dir=tmp_path, resume=True)
    _edit_checkpoint_state(checkpoint, device_identity=None)  # (as before runs recorded one: the key is checked)
    with pytest.raises(ValueError, match="calibrated as 'mock/chip-3', now as 'mock/chip-5'"):
        Trainer(more, backend=Chip(5), out_dir=tmp_path, resume=True)
    checkpoint.write_bytes(original)
    with Trainer(more, backend=Chip(3), out_dir=tmp_path, resume=True) as again:
        again.fit(progress=False)


def _edit_checkpoint_state(checkpoint, **changes):
    """Rewrite the checkpoint's state with `changes` (None: the entry removed)."""
    from delgrad_core._npz import json_array, write_npz
    from delgrad_core.training._run_folder import STATE_KEY

    with np.load(checkpoint) as data:
        arrays = {key: data[key] for key in data.files}
    state = json.loads(str(arrays[STATE_KEY]))
    state.update(changes)
    state = {key: value for key, value in state.items() if not (key in changes and value is None)}
    arrays[STATE_KEY] = json_array(state)
    with open(checkpoint, "wb") as handle:
        write_npz(handle, arrays)


def test_a_result_neutral_backend_option_does_not_change_a_sweep_trial(tmp_path):
    from delgrad_core.training._trials import plan_trials

    def trial(settings):
        return plan_trials(settings, [3], ["none"], 1, tmp_path)[0]

    assert trial({"epochs": 1, "backend_options": {"n_threads": 1}}).folder == trial({"epochs": 1}).folder
    assert trial({"epochs": 2}).folder != trial({"epochs": 1}).folder


def test_resume_checks_its_settings_before_the_backend_calibrates(tmp_path):
    from delgrad_core.testing import MockBackend

    class Counting(MockBackend):
        calibrations = 0

        def _calibrate(self, network, seed, progress):
            Counting.calibrations += 1
            return super()._calibrate(network, seed, progress)

    with Trainer(TrainingConfig(**{**SHORT, "epochs": 1}), backend=Counting(), out_dir=tmp_path) as first:
        first.fit(progress=False)
    before = Counting.calibrations
    with pytest.raises(ValueError, match="different settings"):  # (a remote service would be asked for nothing)
        Trainer(TrainingConfig(**{**SHORT, "epochs": 2, "seed": 9}), backend=Counting(), out_dir=tmp_path, resume=True)
    assert Counting.calibrations == before


@pytest.mark.parametrize("error", [dg.BackendUnavailable("the service went away"),
                                   dg.BackendError("circuit 5 has its threshold below its leak")])
def test_a_backend_that_fails_after_an_epoch_says_how_to_resume(tmp_path, monkeypatch, error):
    """A retryable error (a service away) suggests the resume; one that the run's own settings
    cause (not retryable) says that a resume would meet it again."""
    from delgrad_core.testing import MockBackend

    class Flaky(MockBackend):
        fail_after = 40  # requests: after the first epoch (34 steps and a validation job)
        result_neutral_options = frozenset({"n_threads"})

        def _execute(self, request):
            if len(self.requests) >= self.fail_after:
                raise error
            return super()._execute(request)

    def backends(register):
        register("flaky", lambda n_threads=1: Flaky(name="flaky"))

    _register_plugin_components(monkeypatch, delgrad_register_backends=backends)
    result = cli_runner().invoke(main, ["train", "--backend", "flaky", "--hidden", "4", "--batch-size", "150",
                                        "--epochs", "3", "--out", str(tmp_path / "run"), "--no-progress"])
    assert result.exit_code == 1 and str(error) in result.output
    hint = f"continue with delgrad train --out {tmp_path / 'run'} --resume"
    assert hint + "\n" in result.output or hint + " once" in result.output
    assert ("once the cause is removed (the run's own settings would meet it again)" in result.output) \
        is not error.retryable
    Flaky.fail_after = 0  # a resume to more epochs that fails before its first new epoch: the hint names the target
    extended = cli_runner().invoke(main, ["train", "--out", str(tmp_path / "run"), "--resume", "--epochs", "5",
                                          "--no-progress"])
    assert extended.exit_code == 1 and hint + " --epochs 5" in extended.output, extended.output
    # (a resume given an option that is at fault: "the run's own settings would meet it again" was untrue)
    optioned = cli_runner().invoke(main, ["train", "--out", str(tmp_path / "run"), "--resume", "--epochs", "5",
                                          "--no-progress", "--backend-option", "n_threads=2"])
    assert optioned.exit_code == 1, optioned.output
    assert ("once the cause is removed (it may be a --backend-option given here)" in optioned.output) \
        is not error.retryable


def test_an_epoch_whose_steps_were_all_skipped_says_so():
    config = TrainingConfig(**{**SHORT, "epochs": 1, "weight_init_mean": -1.0, "weight_init_std": 0.01,
                               "silent_bump": 1e-9})
    with Trainer(config) as trainer:  # every neuron silent: every step is skipped for the bump
        # (late inputs or a weight limit, as on a chip, are causes larger weights do not remove)
        with pytest.warns(UserWarning, match=r"epoch 1: every step was skipped.*\(smaller batches or larger initial "
                                             r"weights help, unless the inputs come too late for the neurons, or the "
                                             r"weights are held at a weight limit\)$"):
            trainer.fit(progress=False)
    assert trainer.history[0].skipped_steps > 0


def test_a_run_whose_steps_were_all_skipped_resumes_with_an_optimiser_that_has_not_stepped(tmp_path):
    """(adam.steps is 0 in its checkpoint: a legal state, not a damaged one)"""
    config = dict(SHORT, epochs=1, weight_init_mean=-1.0, weight_init_std=0.01, silent_bump=1e-9)
    with Trainer(TrainingConfig(**config), out_dir=tmp_path) as trainer:
        with pytest.warns(UserWarning, match="epoch 1: every step was skipped"):
            trainer.fit(progress=False)
    assert trainer.optimiser.steps == 0
    with Trainer(TrainingConfig(**{**config, "epochs": 2}), out_dir=tmp_path, resume=True) as resumed:
        assert resumed.epoch == 1 and resumed.optimiser.steps == 0


def test_runs_of_earlier_versions_still_evaluate_and_resume(tmp_path):
    """Earlier versions stored `hidden = [5]` as given and did not merge option tables: a run's
    stored settings are final, so its encoding is not changed under it."""
    pytest.importorskip("sklearn.datasets", reason="the digits dataset needs scikit-learn (pip install "
                                                   "'delgrad[sklearn]')")
    from delgrad_core._npz import NpzArchive, json_array, write_npz

    out, config = tmp_path / "run", tmp_path / "c.toml"
    config.write_text("[encoder]\npairs = false\nrepeat = 2\n")
    trained = cli_runner().invoke(main, ["train", "--dataset", "digits", "--hidden", "5", "--epochs", "1",
                                         "--out", str(out), "--no-progress", "--config", str(config)])
    assert trained.exit_code == 0, trained.output
    with NpzArchive(out / "checkpoint.npz") as archive:  # as an earlier version wrote them
        arrays = {name: archive.array(name) for name in archive.names}
        state = archive.json("trainer_state.json")
    old = {**state["config"], "hidden": [5], "encoder_options": {"repeat": 2}}
    arrays["trainer_state.json"] = json_array({**state, "config": old})
    with open(out / "checkpoint.npz", "wb") as handle:
        write_npz(handle, arrays)
    metrics = json.loads((out / "metrics.json").read_text())
    (out / "metrics.json").write_text(json.dumps({**metrics, "config": old}))
    evaluated = cli_runner().invoke(main, ["evaluate", str(out), "--json"])
    assert evaluated.exit_code == 0 and json.loads(evaluated.stdout)["accuracy"] == metrics["test_accuracy"], \
        evaluated.output
    resumed = cli_runner().invoke(main, ["train", "--out", str(out), "--resume", "--epochs", "2", "--no-progress"])
    assert resumed.exit_code == 0, resumed.output


def test_command_line_values_over_a_config_file_are_noted_and_options_given_twice_refused(tmp_path):
    (tmp_path / "c.toml").write_text("epochs = 2\nhidden = 7\nseed = 3\n")
    result = cli_runner().invoke(main, ["train", "--config", str(tmp_path / "c.toml"), "--epochs", "1", "--hidden",
                                        "4", "--seed", "3", "--delays", "none", "--out", str(tmp_path / "run"),
                                        "--no-progress"])
    assert result.exit_code == 0, result.output
    assert f"note: --epochs 1 replaces epochs = 2 of {tmp_path / 'c.toml'}" in result.stderr
    assert "--hidden 4 replaces hidden = 7" in result.stderr and "seed" not in result.stderr  # (same value: no note)
    twice = cli_runner().invoke(main, ["train", "--backend-option", "n_threads=1", "--backend-option", "n_threads=2"])
    assert twice.exit_code == 2 and "--backend-option: n_threads given twice (1 and 2); give it once" in twice.output


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
@pytest.mark.parametrize("command", [["train"], ["evaluate", "net.npz"], ["sweep"]])
def test_a_config_that_is_not_a_regular_file_is_a_usage_error(command, tmp_path, monkeypatch):
    """(a FIFO passed click's exists check and was read forever)"""
    monkeypatch.chdir(tmp_path)
    dg.save_network(build_network(TrainingConfig(hidden=2), 4, 3), "net.npz")  # (evaluate reads --config for it)
    fifo, done = tmp_path / "x.toml", threading.Event()
    os.mkfifo(fifo)

    def feed_a_reader():  # (one that opens the FIFO gets no TOML, so that the test ends rather than hangs)
        while not done.wait(0.05):
            try:
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # (ENXIO: no reader yet)
                continue
            os.write(writer, b"[")
            os.close(writer)
            return

    feeder = threading.Thread(target=feed_a_reader)
    feeder.start()
    try:
        result = cli_runner().invoke(main, [*command, "--config", str(fifo)])
    finally:
        done.set()
        feeder.join()
    assert result.exit_code == 2 and f"Invalid value for '--config': {str(fifo)!r} is not a regular file (a FIFO, " \
        "device or socket); give a TOML file" in result.output, result.output


def test_dataset_option_tables_merge_with_the_defaults_of_the_dataset_they_name():
    from delgrad_core.training._config import _merged_options

    merged = _merged_options({"dataset_options": {"directory": "x"}},
                             {"dataset": "fashion_mnist", "dataset_options": {"size": 14}})
    assert merged == {"dataset_options": {"directory": "x", "size": 14}}  # (only yin_yang's merged)


def test_path_options_given_now_become_absolute_and_urls_stay(monkeypatch, tmp_path):
    from delgrad_core.cli._settings import absolute_paths as _absolute_paths

    monkeypatch.chdir(tmp_path)
    settings = {"backend_options": {"token_file": "t", "address": "tcp://h:1", "store_dir": "s3://b/x", "chip": 3},
                "dataset_options": {"directory": "~/data"}, "epochs": 2}
    assert _absolute_paths(settings) == {
        "backend_options": {"token_file": str(tmp_path / "t"), "address": "tcp://h:1", "store_dir": "s3://b/x",
                            "chip": 3},
        "dataset_options": {"directory": os.path.expanduser("~/data")}, "epochs": 2}


def test_a_trainer_finishes_once_and_trains_no_further_after_finish_or_close(tmp_path):
    """(a second finish() recorded the kept network's accuracy as the last epoch's and drew
    another test seed; fit() after finish() trained on from the kept parameters; a closed
    trainer given a backend object trained and wrote into a folder it no longer held)"""
    backend = dg.get_backend("reference")
    with Trainer(TrainingConfig(**{**SHORT, "epochs": 2}), backend=backend, out_dir=tmp_path / "run") as trainer:
        trainer.fit(progress=False)
        first = trainer.finish()
        written = (tmp_path / "run" / "metrics.json").read_text()
        assert trainer.finish() is first and (tmp_path / "run" / "metrics.json").read_text() == written
        trainer.config.epochs = 3
        with pytest.raises(dg.DelgradError, match="Trainer.fit: the run is finished"):
            trainer.fit(progress=False)
    for call in (lambda: trainer.fit(progress=False), trainer.finish):
        with pytest.raises(dg.DelgradError, match="the trainer is closed"):
            call()
    assert not backend.closed  # (the trainer did not build it)


def test_settings_changed_after_a_trainer_is_built_are_refused_not_recorded(tmp_path):
    """(hidden and seed set on trainer.config after it was built: metrics.json recorded them, the
    network was the one built before, and a resume with the recorded settings failed)"""
    with Trainer(TrainingConfig(**{**SHORT, "epochs": 1}), out_dir=tmp_path / "run") as trainer:
        trainer.config.hidden, trainer.config.seed = 10, 5
        for call in (lambda: trainer.fit(progress=False), trainer.save_checkpoint):
            with pytest.raises(dg.InvalidValueError, match=re.escape(
                    "config changed after the trainer was built (hidden: 8 -> 10; seed: 0 -> 5)")):
                call()
        trainer.config.hidden, trainer.config.seed = 8, 0
        trainer.config.epochs = 2  # (training on is allowed)
        assert len(trainer.fit(progress=False)) == 2
        trainer.config.batch_size = 7
        with pytest.raises(dg.InvalidValueError, match=re.escape("Trainer.finish: config changed after the trainer "
                                                                 "was built (batch_size: ")):
            trainer.finish()
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_evaluate_refuses_a_dataset_the_network_does_not_fit():
    """(a 2-class dataset on a 3-output network gave an accuracy, 0.28)"""
    from delgrad_core.datasets import Dataset

    features = np.random.default_rng(0).uniform(0, 1, (50, 4))  # (Yin-Yang's 4 features, 2 classes)
    two = Dataset("two", "test", features, (features[:, 0] > 0.5).astype(int), ("a", "b"))
    with Trainer(TrainingConfig(**{**SHORT, "epochs": 1})) as trainer:
        with pytest.raises(dg.InvalidValueError, match=re.escape("evaluate: the trainer's network (for dataset 'two', "
                                                                 "split 'test'): has 3 output neurons but the dataset "
                                                                 "has 2 classes")):
            trainer.evaluate(two)


def test_a_users_empty_folder_is_left_in_place(tmp_path):
    (tmp_path / "mine").mkdir()
    Trainer(TrainingConfig(**SHORT), out_dir=tmp_path / "mine").close()
    assert (tmp_path / "mine").is_dir() and list((tmp_path / "mine").iterdir()) == []
    Trainer(TrainingConfig(**SHORT), out_dir=tmp_path / "made").close()
    assert not (tmp_path / "made").exists()  # (one it made for nothing is removed)


def _signal_then_sleep(event, seconds):
    event.set()
    time.sleep(seconds)


def test_a_child_forked_while_a_folder_is_held_does_not_hold_it(tmp_path):
    """(a flock passes to children forked while it is held: one that outlived its parent kept the
    run's folder locked)"""
    import multiprocessing

    trainer = Trainer(TrainingConfig(**{**SHORT, "epochs": 1}), out_dir=tmp_path / "run")
    trainer.fit(progress=False)
    context = multiprocessing.get_context("fork")
    running = context.Event()
    child = context.Process(target=_signal_then_sleep, args=(running, 3))
    child.start()
    try:
        assert running.wait(10)  # (the child's fork handlers have run: until then it shares the lock)
        trainer.close()
        assert child.is_alive()
        Trainer(TrainingConfig(**{**SHORT, "epochs": 2}), out_dir=tmp_path / "run", resume=True).close()
    finally:
        child.join()
    again = Trainer(TrainingConfig(**{**SHORT, "epochs": 2}), out_dir=tmp_path / "run", resume=True)
    with pytest.raises(dg.FolderInUseError,
                       match="in use by this process \\(a Trainer or claim of it not closed yet\\)") as raised:
        Trainer(TrainingConfig(**{**SHORT, "epochs": 2}), out_dir=tmp_path / "run", resume=True)
    assert isinstance(raised.value, dg.RunFolderError) and raised.value.retryable
    again.close()


def test_what_the_python_api_is_given_wrongly_is_named():
    from delgrad_core.training import load_config

    with pytest.raises(dg.InvalidValueError, match="out_dir: expected a folder path, got int"):
        Trainer(TrainingConfig(**SHORT), out_dir=5)
    config = TrainingConfig(**SHORT)
    config.delays = "bogus"  # (set after the config was checked: a KeyError deep inside)
    with pytest.raises(dg.InvalidValueError, match="delays: 'bogus' is not allowed"):
        Trainer(config)
    with pytest.raises(dg.InvalidValueError, match=r"^\.: cannot read the settings file \(Is a directory\)"):
        load_config(".")


def test_a_finished_run_that_trains_on_is_unfinished_until_its_new_end(tmp_path):
    from delgrad_core.training._run import TrainingStopped, run_training
    from delgrad_core.training._run_folder import RunFolder

    config = TrainingConfig(**{**SHORT, "epochs": 1})
    run_training(config, tmp_path, plots=False, progress=False)
    assert RunFolder(tmp_path).finished_metrics()["epochs_completed"] == 1
    epochs_seen = []

    def stop_after_epoch_2():
        epochs_seen.append(len(epochs_seen))
        return len(epochs_seen) > 1

    with pytest.raises(TrainingStopped):  # (stopped at epoch 2 of 3: metrics.json said "finished after 1")
        run_training(TrainingConfig(**{**SHORT, "epochs": 3}), tmp_path, resume=True, plots=False, progress=False,
                     should_stop=stop_after_epoch_2)
    assert RunFolder(tmp_path).finished_metrics() is None
    summary = run_training(TrainingConfig(**{**SHORT, "epochs": 3}), tmp_path, resume=True, plots=False,
                           progress=False)
    assert summary["epochs_completed"] == 3 == RunFolder(tmp_path).finished_metrics()["epochs_completed"]
    assert summary == json.loads((tmp_path / "metrics.json").read_text())  # (network_digest was in the file only)
    with Trainer(TrainingConfig(**{**SHORT, "epochs": 3}), out_dir=tmp_path, resume=True):  # (nothing to train on)
        assert RunFolder(tmp_path).finished_metrics()["epochs_completed"] == 3
    with Trainer(TrainingConfig(**{**SHORT, "epochs": 4}), out_dir=tmp_path, resume=True):  # (the Python API too)
        assert RunFolder(tmp_path).finished_metrics() is None


def test_a_checkpoint_whose_stored_settings_were_edited_is_named_not_taken_for_a_usage_error(tmp_path):
    from delgrad_core._npz import NpzArchive, json_array, write_npz
    from delgrad_core.cli import main
    from delgrad_core.testing import cli_runner

    arguments = ["train", "--epochs", "1", "--hidden", "4", "--delays", "none", "--no-progress", "--out", str(tmp_path)]
    assert cli_runner().invoke(main, arguments).exit_code == 0
    with NpzArchive(tmp_path / "checkpoint.npz") as archive:
        arrays = {name: archive.array(name) for name in archive.names}
        state = archive.json("trainer_state.json")
    for config, message in (({**state["config"], "hidden": "x"}, r"its stored settings are refused \(hidden: "),
                            (None, "its settings are missing")):
        arrays["trainer_state.json"] = json_array({**state, "config": config})
        with open(tmp_path / "checkpoint.npz", "wb") as handle:
            write_npz(handle, arrays)
        result = cli_runner().invoke(main, [*arguments[:2], "2", *arguments[3:], "--resume"])
        assert result.exit_code == 1 and re.search(message, result.output), result.output
        assert "checkpoint.npz" in result.output


def test_an_encoders_and_a_losss_mistakes_are_named():
    """(an encoder without n_inputs was an AttributeError; a wrong shape was blamed on
    input_spike_times; a NaN loss gradient on output_gradient)"""
    from delgrad_core import LossResult, PluginError
    from delgrad_core._plugins import Registration
    from delgrad_core.training._components import _CheckedEncoder, _CheckedLoss

    class Single:
        def n_inputs(self, n_features):
            return n_features

        def __call__(self, features):
            return np.zeros(np.shape(features), np.float32)

    features = np.full((5, 4), 0.5)
    encoder = _CheckedEncoder(Single(), Registration("encoder", "single", None, "single-dist"))
    with pytest.raises(PluginError, match=r"encoder 'single' from 'single-dist': returned a float32 array of shape "
                                          r"\(5, 4\) for features of shape \(5, 4\), not a float64 array of shape "
                                          r"\(5, 4\)"):
        encoder(features)
    uncounted = _CheckedEncoder(lambda f: f, Registration("encoder", "bare", None, "bare-dist"))
    with pytest.raises(PluginError, match=r"encoder 'bare' from 'bare-dist': counting its inputs \(n_inputs\) failed: "
                                          r"AttributeError"):
        uncounted.n_inputs(4)

    class Undefined(Single):  # (named no encoder: "input_spike_times: contains NaN or -inf")
        def __call__(self, features):
            times = np.full(np.shape(features), 0.5)
            times[1, 2] = np.nan
            return times

    with pytest.raises(PluginError, match=r"encoder 'undefined' from 'undefined-dist': returned spike time nan for "
                                          r"input 2 of sample 1 \(a time, or \+inf for no spike\)"):
        _CheckedEncoder(Undefined(), Registration("encoder", "undefined", None, "undefined-dist"))(features)
    nan = _CheckedLoss(lambda t, y: LossResult(np.zeros(len(t)), np.full(np.shape(t), np.nan)),
                       Registration("loss", "nan", None, "nan-dist"))
    with pytest.raises(PluginError, match=r"loss 'nan' from 'nan-dist': its gradient contains NaN or inf"):
        nan(np.ones((2, 3)), np.array([0, 1]))


@pytest.mark.parametrize("count, refused", [(0, True), (-1, True), (True, True), (1, False)])
def test_an_encoders_input_count_must_be_a_positive_integer(count, refused):
    from delgrad_core import PluginError
    from delgrad_core._plugins import Registration
    from delgrad_core.training._components import _CheckedEncoder

    class Counting:
        def n_inputs(self, n_features):
            return count

    encoder = _CheckedEncoder(Counting(), Registration("encoder", "counting", None, "counting-dist"))
    if not refused:
        assert encoder.n_inputs(2) == count
        return
    with pytest.raises(PluginError, match=rf"^encoder 'counting' from 'counting-dist': n_inputs\(2\) returned "
                                          rf"{count!r}, not a positive integer$"):
        encoder.n_inputs(2)


def test_a_loss_cannot_change_the_spike_times_training_goes_on_with():
    """(a loss that set silent outputs to 10.0 in place changed the accuracy, the silence
    heuristics and the backward pass of the step: validation accuracy 0.1 % instead of 42 %)"""
    from delgrad_core import PluginError, ShiftInvariantSquaredError
    from delgrad_core._plugins import Registration
    from delgrad_core.training._components import _CheckedLoss

    def filling(times, labels):
        times[np.isinf(times)] = 10.0
        return ShiftInvariantSquaredError()(times, labels)

    times, labels = np.array([[1.0, np.inf, 2.0]]), np.array([0])
    loss = _CheckedLoss(filling, Registration("loss", "filling", None, "filling-dist"))
    with pytest.raises(PluginError, match=r"loss 'filling' from 'filling-dist': evaluating it failed: ValueError: "
                                          r"assignment destination is read-only \(a loss receives read-only spike "
                                          r"times and labels: compute on a copy\)"):
        loss(times, labels)
    assert np.isinf(times[0, 1]) and times.flags.writeable
    exiting = _CheckedLoss(lambda t, y: sys.exit(3), Registration("loss", "exiting", None, "exiting-dist"))
    with pytest.raises(PluginError, match="loss 'exiting' from 'exiting-dist': evaluating it failed: SystemExit: 3"):
        exiting(times, labels)


def test_jobs_of_a_batch_that_disagree_on_arrival_times_are_refused():
    """(a backend with max_batch_size that reported arrival times for some jobs only: TypeError)"""
    from delgrad_core import ExecutionResult, InvalidResultError
    from delgrad_core.training._step import _joined

    times = [np.ones((2, 3)), np.ones((2, 2))]
    with_arrivals = ExecutionResult(times, {}, [np.zeros((2, 4)), None])
    without = ExecutionResult(times, {}, None)
    with pytest.raises(InvalidResultError, match="backend 'chip': arrival times of layer 0 came with some jobs of a "
                                                 "batch and not with others"):
        _joined([with_arrivals, without], "chip")
    joined = _joined([with_arrivals, with_arrivals], "chip")
    assert joined.arrival_times[0].shape == (4, 4) and joined.arrival_times[1] is None
    assert _joined([without, without], "chip").arrival_times is None


def test_the_optimiser_and_the_trainable_network_check_what_they_are_given():
    """(a gradient of the wrong shape was broadcast, NaN gradients made NaN parameters, beta1 = 1
    gave NaN; an unresolved config failed deep in numpy)"""
    from delgrad_core.training import Adam, GrazingGuard, TrainableNetwork, TrainingConfig

    for args, message in ((({"w": 0.1}, {"w": "w"}, 1.0), r"beta1: expected a number >= 0 and < 1, got 1.0"),
                          (({"w": "x"}, {"w": "w"}), r"learning_rates\['w'\]: expected a number from 0 to 10, got 'x'"),
                          (({"w": 1e300}, {"w": "w"}), r"learning_rates\['w'\]: expected .* to 10, got 1e\+300"),
                          (({"w": 0.1}, {"w": "w"}, 0.9, 0.999, 0.0), r"eps: expected a finite number > 0, got 0.0")):
        with pytest.raises(dg.InvalidValueError, match=message):
            Adam(*args)
    adam, params = Adam({"w": 0.1}, {"w": "w"}), {"w": np.zeros((3, 4))}
    for grads, message in (({"w": np.ones(4)}, r"grads\['w'\]: expected shape \(3, 4\), got \(4,\)"),
                           ({"w": np.full((3, 4), np.nan)}, r"grads\['w'\]: contains NaN or inf"),
                           ({"w": np.full((3, 4), -np.inf)}, r"grads\['w'\]: contains NaN or inf"),
                           ({"q": np.ones((3, 4))}, r"grads\['q'\]: no parameter of that name \(parameters: w\)")):
        with pytest.raises(dg.InvalidValueError, match=message):
            adam.step(params, grads)
    # (lr_factor went unchecked: NaN parameters, or a climb up the loss; a failing step changed the moments first)
    for grads, factor, message in (({"w": np.ones((3, 4))}, np.nan,
                                    r"lr_factor: expected a finite number >= 0, got nan"),
                                   ({"w": np.ones((3, 4))}, -100,
                                    r"lr_factor: expected a finite number >= 0, got -100"),
                                   ({"w": [["x"] * 4] * 3}, 1.0,
                                    r"grads\['w'\]: expected an array of real numbers, got strings")):
        with pytest.raises(dg.InvalidValueError, match=message):
            adam.step(params, grads, lr_factor=factor)
    read_only = np.zeros((3, 4))
    read_only.flags.writeable = False
    with pytest.raises(dg.InvalidValueError,
                       match=r"params\['w'\]: read-only; the step updates the parameters in place"):
        adam.step({"w": read_only}, {"w": np.ones((3, 4))})
    assert adam.steps == 0 and not adam.first_moment and not params["w"].any()
    for state, message in (({}, r"state: expected the dict of arrays state_arrays\(\) gives, with 'steps'"),
                           ({"steps": -1}, r"state\['steps'\]: expected an integer >= 0, got -1"),
                           ({"steps": 1, "m.w": np.ones((3, 4))}, r"state\['m.w'\]: expected 'v.w' of the same shape"),
                           ({"steps": 1, "m.w": np.ones((3, 4)), "v.w": -np.ones((3, 4))},
                            r"state\['v.w'\]: expected finite numbers, >= 0"),
                           ({"steps": 1, "m.q": np.ones(1), "v.q": np.ones(1)}, r"state\['m.q'\]: expected 'steps', ")):
        with pytest.raises(dg.InvalidValueError, match=message):
            adam.load_state_arrays(state)
    # (a state loaded for parameters of another shape failed in numpy's broadcast, after counting the step)
    adam.load_state_arrays({"steps": 1, "m.w": np.zeros((2, 3)), "v.w": np.zeros((2, 3))})
    with pytest.raises(dg.InvalidValueError, match=r"params\['w'\]: shape \(3, 4\), but the optimiser's state for it "
                                                   r"has shape \(2, 3\) \(loaded for other parameters\)"):
        adam.step(params, {"w": np.ones((3, 4))})
    assert adam.steps == 1 and not adam.first_moment["w"].any()
    with pytest.raises(dg.InvalidValueError, match="group_of: expected a dict, got list"):
        Adam({"w": 0.1}, ["w"])
    with pytest.raises(dg.InvalidValueError, match=r"learning_rates: no rate for group\(s\) delays"):
        Adam({"w": 0.1}, {"w": "w", "d": "delays"})
    group_of = {"w": "w"}
    adam = Adam({"w": 0.1, "x": 0.2}, group_of)
    group_of["w"] = "x"  # (the caller's table changed later: the optimiser keeps its own)
    for params, message in (({"w": np.zeros(2), "x": np.zeros(2)}, r"grads\['x'\]: no parameter of that name "
                                                                    r"\(parameters: w\)"),
                            ({"w": np.zeros(2, dtype=int)}, r"params\['w'\]: expected a float array, got int64")):
        with pytest.raises(dg.InvalidValueError, match=message):
            adam.step(params, {name: np.ones(2) for name in params})
    params = {"w": np.zeros(2)}
    adam.step(params, {"w": np.ones(2)})
    np.testing.assert_allclose(params["w"], -0.1)  # (Adam's first step: the learning rate of group w)
    model = TrainableNetwork(dg.Network.feedforward([4, 5, 3], delay_kind="axonal"),
                             TrainingConfig(hidden=5, delays="axonal"))
    model.initialise(np.random.default_rng(0))
    assert np.isfinite(model.params["layers.0.delays"]).all()
    with pytest.raises(dg.InvalidValueError, match="network: expected a delgrad_core.Network, got str"):
        TrainableNetwork("x", TrainingConfig())
    # (a config of another network was taken without a word; a seed for rng, or a dict for a config, ended in
    # AttributeErrors; a NaN term passed the grazing guard)
    with pytest.raises(dg.InvalidValueError, match=r"config: hidden \[5, 5\] and delays \['synaptic', 'synaptic', "
                                                   r"'synaptic'\] describe another network than the one given \(hidden "
                                                   r"\[5\], delays \['axonal', 'axonal'\]\)"):
        TrainableNetwork(dg.Network.feedforward([4, 5, 3], delay_kind="axonal"), TrainingConfig(hidden=[5, 5]))
    with pytest.raises(dg.InvalidValueError, match=r"config: hidden \[5\] and delays \['none', 'none'\] describe "
                                                   r"another network than the one given \(hidden \[5\], delays "
                                                   r"\['axonal', 'axonal'\]\)"):  # (the same sizes, other delays)
        TrainableNetwork(dg.Network.feedforward([4, 5, 3], delay_kind="axonal"),
                         TrainingConfig(hidden=5, delays="none"))
    with pytest.raises(dg.InvalidValueError, match=r"rng: expected a numpy Generator \(e.g. np.random.default_rng"):
        model.initialise(0)
    with pytest.raises(dg.InvalidValueError, match="config: expected a delgrad_core.training.TrainingConfig, got dict"):
        build_network({"hidden": 3}, 4, 3)
    assert GrazingGuard(0.2)(0, [[0.1, 0.5, np.nan]]).tolist() == [[False, True, True]]


def test_evaluate_checks_its_dataset_and_seed():
    with Trainer(TrainingConfig(epochs=1, hidden=3, delays="none")) as trainer:
        with pytest.raises(dg.InvalidValueError, match="dataset: expected a delgrad_core.datasets.Dataset, got str"):
            trainer.evaluate("test")
        with pytest.raises(dg.InvalidValueError,
                           match=r"seed: expected None or an integer from 0 to 2\*\*63 - 1, got -1"):
            trainer.evaluate(trainer.test_set, seed=-1)
        assert 0 <= trainer.evaluate(trainer.test_set, seed=3).accuracy <= 1


def test_a_loaders_own_value_errors_name_the_dataset(monkeypatch):
    """(bad labels said only 'Dataset.labels: values must be in [0, 1]')"""
    from delgrad_core.datasets import Dataset, load_dataset

    def mislabelled(split):
        return Dataset("mislabelled", split, [[0.0], [1.0]], [0, 2], ("a", "b"))

    def datasets(register):
        register("mislabelled", mislabelled, splits=("train", "validation", "test"))

    _register_plugin_components(monkeypatch, delgrad_register_datasets=datasets)
    with pytest.raises(dg.InvalidValueError, match=r"^dataset 'mislabelled' \(loading 'train'\): Dataset.labels: "
                                                   r"values must be in \[0, 1\]"):
        load_dataset("mislabelled", "train")


def test_a_backend_failing_to_close_after_a_complete_run_is_a_warning(tmp_path, monkeypatch):
    """(train said "not all the run's results are written: finish them with --resume", and every
    resume failed the same way; evaluate computed the accuracy and never printed it)"""
    from delgrad_core.testing import MockBackend
    from delgrad_core.training._run import run_training

    class ClosesBadly(MockBackend):
        def __init__(self):
            super().__init__(name="closes-badly")

        def _close(self):
            raise OSError("device gone")

    _register_plugin_components(monkeypatch, delgrad_register_backends=lambda register: register(
        "closes-badly", ClosesBadly))
    config = TrainingConfig(**{**SHORT, "epochs": 1, "backend": "closes-badly"})
    with pytest.warns(RuntimeWarning, match="backend 'closes-badly' failed while closing: OSError: device gone; the "
                                            "run is complete, its results are written"):
        summary = run_training(config, tmp_path / "run", progress=False, plots=False)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["test_accuracy"] == summary["test_accuracy"]
    result = cli_runner().invoke(main, ["evaluate", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert f"test accuracy on closes-badly: {100 * summary['test_accuracy']:.2f} %" in result.stdout
    assert "failed while closing: OSError: device gone; the evaluation is complete" in result.stderr
    result = cli_runner().invoke(main, ["calibrate", "--backend", "closes-badly"])
    assert result.exit_code == 0 and "failed while closing: OSError: device gone; the calibration is complete" \
        in result.stderr, result.output
    with pytest.raises(ZeroDivisionError), pytest.warns(RuntimeWarning, match="device gone"):
        with Trainer(config):  # (an error that ends a trainer's block is not hidden by the one while closing)
            raise ZeroDivisionError


def test_a_trainer_interrupted_part_way_refuses_to_go_on_and_its_folder_resumes_exactly(tmp_path):
    """(fit() called again after a Ctrl-C between two steps trained the epoch again from half-updated
    parameters, optimiser and random state, and recorded it as a clean run; finish() called again
    after an interruption recorded the kept network's accuracy as the last epoch's, with a new test
    seed; save_checkpoint() after finish() stored the kept epoch's parameters as the last epoch's)"""
    config = TrainingConfig(**{**SHORT, "epochs": 3})
    with Trainer(config, out_dir=tmp_path / "straight") as trainer:
        trainer.fit(progress=False)
        straight = [m.train_loss for m in trainer.history]
        trainer.finish()
        with pytest.raises(dg.DelgradError, match="Trainer.save_checkpoint: the run is finished: its checkpoint was "
                                                  "written after epoch 3, and finish"):
            trainer.save_checkpoint()
    trainer = Trainer(config, out_dir=tmp_path / "cut")
    step, calls = trainer.step, []

    def interrupted(*args):
        calls.append(1)
        if len(calls) == 30:  # (in epoch 2: 20 steps of 250 samples per epoch)
            raise KeyboardInterrupt
        return step(*args)

    trainer.step = interrupted
    with pytest.raises(KeyboardInterrupt):
        trainer.fit(progress=False)
    trainer.step = step
    for call, name in ((lambda: trainer.fit(progress=False), "fit"), (trainer.finish, "finish"),
                       (trainer.save_checkpoint, "save_checkpoint")):
        with pytest.raises(dg.DelgradError, match=rf"^Trainer.{name}: epoch 2 was interrupted part-way "
                                                  r"\(KeyboardInterrupt\), leaving .*; close it and make a Trainer "
                                                  r"that resumes its folder \(resume=True\)"):
            call()
    trainer.close()
    with Trainer(config, out_dir=tmp_path / "cut", resume=True) as resumed:
        resumed.fit(progress=False)
        assert [m.train_loss for m in resumed.history] == straight
        evaluate = resumed.evaluate

        def failing(*args, **kwargs):
            raise KeyboardInterrupt

        resumed.evaluate = failing
        with pytest.raises(KeyboardInterrupt):
            resumed.finish()
        resumed.evaluate = evaluate
        with pytest.raises(dg.DelgradError, match=r"^Trainer.finish: finish\(\) was interrupted part-way"):
            resumed.finish()


def test_a_trainer_works_in_one_thread_at_a_time(tmp_path):
    """(fit() from two threads trained a mixed run and recorded it as a good one; save_checkpoint()
    from another thread mid-epoch wrote a checkpoint that resumed into another run)"""
    config = TrainingConfig(**SHORT)
    with Trainer(config, out_dir=tmp_path / "straight") as trainer:
        trainer.fit(progress=False)
        straight = [m.train_loss for m in trainer.history]
    trainer = Trainer(config, out_dir=tmp_path / "run")
    inside, go_on = threading.Event(), threading.Event()
    step = trainer.step

    def waiting(*args):
        inside.set()
        assert go_on.wait(60)
        return step(*args)

    trainer.step = waiting
    worker = threading.Thread(target=trainer.fit, kwargs={"progress": False})
    worker.start()
    try:
        assert inside.wait(60)
        for call, name in ((lambda: trainer.fit(progress=False), "fit"), (trainer.finish, "finish"),
                           (trainer.save_checkpoint, "save_checkpoint"), (trainer.close, "close")):
            with pytest.raises(dg.DelgradError, match=rf"^Trainer.{name}: another thread is training, finishing, "
                                                      r"checkpointing or closing this trainer; a trainer works in one "
                                                      r"thread"):
                call()
        assert trainer.evaluate(trainer.validation_set, seed=1).output_spike_times.shape[0] > 0  # (looking is fine)
    finally:
        go_on.set()
        worker.join()
    trainer.step = step
    assert [m.train_loss for m in trainer.history] == straight
    trainer.save_checkpoint()  # (the thread that trained is done: any thread may go on)
    trainer.finish()
    trainer.close()


def test_a_trainer_interrupted_in_its_first_epoch_says_to_start_anew(tmp_path):
    """(it said to resume the folder, which held no checkpoint to resume from)"""
    config = TrainingConfig(**{**SHORT, "epochs": 1})
    with Trainer(config, out_dir=tmp_path / "run") as trainer:
        step = trainer.step

        def interrupted(*args):
            raise KeyboardInterrupt

        trainer.step = interrupted
        with pytest.raises(KeyboardInterrupt):
            trainer.fit(progress=False)
        trainer.step = step
        with pytest.raises(dg.DelgradError, match=r"^Trainer.fit: epoch 1 was interrupted part-way "
                                                  r"\(KeyboardInterrupt\), .*; nothing was checkpointed yet: close "
                                                  r"it and start anew with a new Trainer$"):
            trainer.fit(progress=False)
    with Trainer(config, out_dir=tmp_path / "run") as anew:
        anew.fit(progress=False)
        assert anew.epoch == 1


def test_a_run_stopped_before_its_first_epoch_does_not_say_it_resumes(tmp_path):
    """(it said "stopped after epoch 0 of 1; the run resumes from there", and a resume then found no
    checkpoint)"""
    from delgrad_core.training._run import TrainingStopped, run_training

    with pytest.raises(TrainingStopped, match="stopped after epoch 0 of 1; nothing was trained: start it anew"):
        run_training(TrainingConfig(**{**SHORT, "epochs": 1}), tmp_path / "run", progress=False,
                     should_stop=lambda: True)
    with pytest.raises(TrainingStopped, match="stopped after epoch 1 of 2; the run resumes from there"):
        run_training(TrainingConfig(**SHORT), tmp_path / "two", progress=False,
                     should_stop=lambda: (tmp_path / "two" / "checkpoint.npz").exists())


def test_epochs_raised_on_a_trainer_are_checked_by_their_rule(tmp_path):
    """(np.int64(2) trained the epoch and then failed to write the checkpoint: "int64 is not JSON
    serializable"; "2" and None were comparison TypeErrors; 2.5 trained a third epoch first)"""
    with Trainer(TrainingConfig(**{**SHORT, "epochs": 1}), out_dir=tmp_path) as trainer:
        trainer.fit(progress=False)
        for bad in ("2", None, 2.5, True):
            trainer.config.epochs = bad
            with pytest.raises(dg.InvalidValueError, match=rf"^Trainer.fit: config.epochs: expected an integer >= 1, "
                                                           rf"got {re.escape(repr(bad))}$"):
                trainer.fit(progress=False)
        assert trainer.epoch == 1
        trainer.config.epochs = np.int64(2)
        trainer.fit(progress=False)
        assert trainer.epoch == 2 and type(trainer.config.epochs) is int
        test, validation = (trainer.evaluate(split, seed=0) for split in (trainer.test_set, trainer.validation_set))
        assert test == trainer.evaluate(trainer.test_set, seed=0) and test != validation  # (== raised)


def test_too_many_input_lines_for_the_backend_say_where_they_come_from():
    """(bss2-emulator on 7 x 7 MNIST said "does not support 245 inputs per neuron": 49 features
    repeated 5 times by its default encoder, a number the user never chose)"""
    from delgrad_core.testing import MockBackend

    narrow = MockBackend(capabilities=dg.Capabilities(exact=True, max_inputs=8))
    config = TrainingConfig(**{**SHORT, "epochs": 1, "encoder_options": {"repeat": 5}})
    with pytest.raises(dg.UnsupportedNetworkError, match=r"does not support 20 inputs per neuron in "
                                                         r"'hidden.projection' \(max_inputs: 8\): the encoder makes 20 "
                                                         r"input lines of the data's 4 features; fewer "
                                                         r"features") as info:
        Trainer(config, backend=narrow)
    assert info.value.capability == "max_inputs"
    wide = TrainingConfig(**{**SHORT, "epochs": 1, "hidden": 9})  # (a hidden layer beyond the limit: as it was)
    with pytest.raises(dg.UnsupportedNetworkError, match=r"9 inputs per neuron in 'output.projection' \(max_inputs: "
                                                         r"8\)$"):
        Trainer(wide, backend=narrow)


def test_evaluate_on_another_dataset_says_which_one_the_run_was_trained_on(tmp_path, monkeypatch):
    """(a run trained on MNIST evaluated on Fashion-MNIST printed its accuracy with no word that
    the classes were others)"""
    from delgrad_core.datasets import Dataset

    def quads(split):
        features = np.random.default_rng(len(split)).uniform(0, 1, (30, 4))
        return Dataset("quads", split, features, np.arange(30) % 3, ("a", "b", "c"))

    _register_plugin_components(monkeypatch, delgrad_register_datasets=lambda register: register(
        "quads", quads, splits=("train", "validation", "test")))
    run = tmp_path / "run"
    assert cli_runner().invoke(main, ["train", "--hidden", "4", "--delays", "none", "--epochs", "1", "--out", str(run),
                                      "--no-progress", "--batch-size", "250"]).exit_code == 0
    result = cli_runner().invoke(main, ["evaluate", str(run), "--dataset", "quads"])
    assert result.exit_code == 0, result.output
    assert "note: the run was trained on dataset 'yin_yang'; evaluated on 'quads', whose class k is scored as the " \
           "run's output neuron k" in result.stderr
    own = cli_runner().invoke(main, ["evaluate", str(run), "--dataset", "yin_yang"])
    assert own.exit_code == 0 and "trained on dataset" not in own.stderr, own.output


def test_adam_refuses_betas_without_a_bound_on_its_steps_and_takes_beta1_0():
    """(beta1 = 0.999, beta2 = 0.9 moved a parameter by 2000 learning rates in one step)"""
    with pytest.raises(dg.InvalidValueError, match=r"beta1: its square must be below beta2 \(0.9\)"):
        Adam({"w": 0.01}, {"p": "w"}, beta1=0.999, beta2=0.9)
    adam = Adam({"w": 0.01}, {"p": "w"}, beta1=0.0, beta2=0.0)  # (sign descent: steps of one learning rate)
    params = {"p": np.zeros(1)}
    for gradient in (5.0, -1e-6, 1e6):
        before = params["p"].copy()
        adam.step(params, {"p": np.array([gradient])})
        assert abs(params["p"][0] - before[0]) == pytest.approx(0.01, rel=0.02)  # (eps = 1e-8 against 1e-6)


def test_a_runs_metrics_json_as_config_trains_the_same_run_again(finished_run, tmp_path):
    """`--config RUN/metrics.json` takes the settings the run trained with (its "config"): the same
    seed trains the same network again, bit for bit; other JSON files are refused, naming the file."""
    metrics = finished_run / "metrics.json"
    again = tmp_path / "again"
    result = cli_runner().invoke(main, ["train", "--config", str(metrics), "--no-progress", "--out", str(again)])
    assert result.exit_code == 0, result.output
    assert (again / "network.npz").read_bytes() == (finished_run / "network.npz").read_bytes()
    assert json.loads((again / "metrics.json").read_text())["config"] == json.loads(metrics.read_text())["config"]
    assert load_config(metrics)["epochs"] == 2
    other = tmp_path / "other.json"
    for text, message in [('{"hidden": 5}', r'other.json: a JSON file but not a run\'s metrics.json \(it has no '
                                            r'"config" table'),
                          ('{"config": {"hidden": -5}}', r"other.json: hidden: "),
                          ('{"config": ', r"other.json: neither TOML nor a run's metrics.json \(not valid JSON")]:
        other.write_text(text)
        with pytest.raises((dg.FileFormatError, dg.InvalidValueError), match=message):
            load_config(other)


def test_adam_refuses_a_beta1_whose_square_equals_beta2():
    """docs/training.md: `adam_beta1` squared must be *below* `adam_beta2`; at equality the bound
    (1 - beta1) / sqrt((1 - beta2) (1 - beta1^2 / beta2)) divides by zero (0.5 and 0.25: exact in binary)."""
    with pytest.raises(dg.InvalidValueError, match=r"^adam_beta1: its square must be below adam_beta2 \(0.25\)"):
        TrainingConfig(adam_beta1=0.5, adam_beta2=0.25)
    with pytest.raises(dg.InvalidValueError, match=r"beta1: its square must be below beta2 \(0.25\)"):
        Adam({"w": 0.01}, {"p": "w"}, beta1=0.5, beta2=0.25)
    assert TrainingConfig(adam_beta1=0.5, adam_beta2=0.2500001).adam_beta2 == 0.2500001


@pytest.mark.parametrize(("delays", "hidden", "expected"), [
    # docs/model.md §5.4: (weight lr, delay lr, weight init mean, weight init std) by delay kind
    ("none", 30, (0.02, 0.0, 0.5, 1.0)),
    ("axonal", 30, (0.005, 0.005, 1.0, 1.0)),
    ("synaptic", 30, (0.01, 0.003, 1.0, 1.0)),
    ("synaptic", [3, 3], (0.01, 0.003, 1.0, 1.0)),  # (6 hidden neurons in all: not a small network)
    ("synaptic", [2, 3], (0.015, 0.01, 1.0, 1.0)),  # (the 5-hidden network's rates: at most 5 in all)
    # mixed kinds: those of the first layer with delays (TrainingConfig.resolved)
    (["none", "axonal"], 30, (0.005, 0.005, 1.0, 1.0)),
    (["none", "none"], 30, (0.02, 0.0, 0.5, 1.0)),
])
def test_unset_learning_rates_and_initialisation_take_the_published_values_of_the_delay_kind(delays, hidden,
                                                                                             expected):
    config = TrainingConfig(hidden=hidden, delays=delays).resolved()
    assert (config.weight_lr, config.delay_lr, config.weight_init_mean, config.weight_init_std) == expected


def test_device_identities_differ_by_key_then_digest_then_options_and_not_across_backends():
    """identity_changes: the calibration digest counts only under the same key (another key is
    another calibration anyway: resume refuses it, and says just that); an option on one side only
    is a change; the device of another backend is not compared (a network evaluated elsewhere)."""
    from delgrad_core.training._identity import identity_changes

    recorded = {"backend": "chip", "calibration_key": "chip/3", "calibration_digest": "d3", "options": {"gain": 1.0}}
    assert identity_changes(recorded, dict(recorded)) == {}
    assert identity_changes(recorded, dict(recorded, backend="other", calibration_key="other/1",
                                           calibration_digest="e", options={})) == {}
    assert set(identity_changes(recorded, dict(recorded, calibration_key="chip/5", calibration_digest="d5"))) == \
        {"calibration_key"}
    assert set(identity_changes(recorded, dict(recorded, calibration_digest="d5"))) == {"calibration_digest"}
    added = identity_changes(recorded, dict(recorded, options={"gain": 1.0, "drift": 2}))
    assert set(added) == {"options"} and "drift" in added["options"] and "gain" not in added["options"]


def test_a_run_without_keep_best_resumes(tmp_path):
    """Without keep_best no epoch is kept: the checkpoint records best_validation_accuracy -1
    (none yet), which a resume must take, not refuse as a damaged checkpoint."""
    settings = dict(hidden=4, delays="none", batch_size=2500, weight_init_mean=1.5, keep_best=False)
    with Trainer(TrainingConfig(**settings, epochs=1), out_dir=tmp_path) as first:
        first.fit(progress=False)
    with Trainer(TrainingConfig(**settings, epochs=2), out_dir=tmp_path, resume=True) as resumed:
        assert resumed.epoch == 1 and resumed.selection.accuracy == -1


def test_a_runs_metrics_json_as_config_is_no_choice_of_the_settings_it_records(finished_run, tmp_path):
    """(it records every setting, defaults too: with --delays none, "delay_lr, delay_init_mean, ...:
    not used, the network has no delays" named settings nobody had chosen; one --set gives is)"""
    metrics = str(finished_run / "metrics.json")
    synaptic = tmp_path / "synaptic.json"  # (the run's settings with delays: its delay settings then count)
    stored = json.loads((finished_run / "metrics.json").read_text())
    synaptic.write_text(json.dumps({**stored, "config": {**stored["config"], "delays": "synaptic"}}))
    for config, extra, warned in ((synaptic, [], None), (synaptic, ["--set", "delay_lr=0.1"], "delay_lr: not used"),
                                  (metrics, ["--set", "silent_bump=null"], None)):
        result = cli_runner().invoke(main, ["train", "--config", str(config), "--delays", "none", "--epochs", "1",
                                            "--out", str(tmp_path / f"run{len(extra)}{config == metrics}"), *extra])
        assert result.exit_code == 0, result.output
        said = [line for line in result.stderr.splitlines() if "not used" in line]
        expected = [] if warned is None else [f'Warning: {warned}, the network has no delays (delays = "none")']
        assert said == expected, said


def test_resume_without_out_is_a_usage_error_naming_out(tmp_path, monkeypatch):
    """--resume continues the run in --out (README: delgrad train --out runs/syn30 --resume): with no
    --out there is no run to continue, and no fresh folder is made for one."""
    monkeypatch.chdir(tmp_path)
    result = cli_runner().invoke(main, ["train", "--hidden", "4", "--delays", "none", "--epochs", "1", "--resume",
                                        "--no-progress"])
    assert result.exit_code == 2, result.output
    assert "Error: --resume needs --out, the folder of the run to continue" in result.stderr, result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(("capability", "status"), [("delay_kinds", 2), ("resources", 1)])
def test_train_refusing_a_network_for_a_capability_is_a_usage_error_but_not_for_resources(
        tmp_path, monkeypatch, capability, status):
    """docs/backends.md: a network the backend's capabilities refuse (a delay kind, tau ratio or
    size it lacks) is a usage error, status 2; one its resources refuse is status 1."""
    from delgrad_core._errors import UnsupportedNetworkError
    from delgrad_core.training import _run

    def refused(*args, **kwargs):
        raise UnsupportedNetworkError("the backend cannot run this network", capability=capability)

    monkeypatch.setattr(_run, "run_training", refused)
    result = cli_runner().invoke(main, ["train", "--hidden", "4", "--delays", "none", "--epochs", "1",
                                        "--no-progress", "--out", str(tmp_path / "run")])
    assert result.exit_code == status, result.output
    assert "the backend cannot run this network" in result.stderr and "Traceback" not in result.stderr
    assert ("Usage:" in result.stderr) == (status == 2), result.stderr


def test_a_run_on_another_backend_resumes_without_the_default_backend_installed(tmp_path, monkeypatch):
    """A resume trains on the run's own backend: the default one (reference) not being installed
    is no reason to refuse it."""
    from delgrad_core._plugins import registry
    from delgrad_core.testing import MockBackend

    _register_plugin_components(monkeypatch, delgrad_register_backends=lambda register: register(
        "mock", lambda: MockBackend(name="mock")))
    run = _trained_for_one_epoch("mock", tmp_path / "run")
    monkeypatch.delitem(registry()._tables["backend"], "reference")
    resumed = cli_runner().invoke(main, ["train", "--out", str(run), "--resume", "--epochs", "2", "--no-progress"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((run / "metrics.json").read_text())["epochs_completed"] == 2


def test_evaluate_of_a_finished_run_does_not_ask_its_backend_for_training_defaults(tmp_path, monkeypatch):
    """A run's metrics.json holds every setting an evaluation uses: a backend's defaults function
    (mock-hil's asks its service) is not called, and cannot fail the evaluation."""
    from delgrad_core.testing import MockBackend

    asked = []

    def training_defaults(options):
        asked.append(options)
        return {"batch_size": 250}

    _register_plugin_components(monkeypatch, delgrad_register_backends=lambda register: register(
        "mock", lambda: MockBackend(name="mock"), training_defaults=training_defaults))
    run = _trained_for_one_epoch("mock", tmp_path / "run", batch_size=None)  # (the backend's default batch size)
    assert asked
    asked.clear()
    evaluated = cli_runner().invoke(main, ["evaluate", str(run)])
    assert evaluated.exit_code == 0 and "test accuracy on mock: " in evaluated.stdout, evaluated.output
    assert asked == []


def test_a_run_resumes_with_other_result_neutral_options_registered_with_a_factory_function(tmp_path, monkeypatch):
    """A factory function registers its backend's result-neutral options (docs/plugins.md); resume
    read them from the built backend's class, which does not say, and refused another thread count."""
    from delgrad_core.testing import MockBackend

    def mock(n_threads=1):
        return MockBackend(name="mock")

    _register_plugin_components(monkeypatch, delgrad_register_backends=lambda register: register(
        "mock", mock, result_neutral_options=["n_threads"]))
    run = _trained_for_one_epoch("mock", tmp_path / "run", backend_options=["n_threads=1"])
    resumed = cli_runner().invoke(main, ["train", "--out", str(run), "--resume", "--epochs", "2", "--backend-option",
                                         "n_threads=2", "--no-progress"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((run / "metrics.json").read_text())["epochs_completed"] == 2


def test_building_a_config_says_nothing_of_its_components_which_the_run_says():
    """(docs/training.md: a setting a loss does not take is warned of when the run is built; building
    the config checks the components without a word, or every config would say it twice)"""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config = TrainingConfig(**SHORT, loss_xi=0.3)  # (the squared loss has no xi)
    with pytest.warns(UserWarning, match=r"^loss 'squared' has no parameter xi: loss_xi = 0.3 is not used"):
        Trainer(config).close()


def _train_ending_in(monkeypatch, outcome, arguments):
    """`delgrad train ARGUMENTS` whose training raises `outcome` (an exception) or returns it (a summary)."""
    from delgrad_core.training import _run

    def training(*args, **kwargs):
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    monkeypatch.setattr(_run, "run_training", training)
    return cli_runner().invoke(main, ["train", "--hidden", "4", "--delays", "none", "--no-progress", *arguments])


def test_how_the_train_command_reports_a_training_that_ended_early(tmp_path, monkeypatch, finished_run):
    """Each ending says what is kept and how to go on (docs/training.md)."""
    from delgrad_core._errors import BackendError
    from delgrad_core.datasets._errors import DatasetFilesNotFoundError

    fresh = _train_ending_in(monkeypatch, KeyboardInterrupt(), ["--out", str(tmp_path / "fresh")])
    assert fresh.exit_code == 130 and "interrupted before the first epoch finished; nothing to resume" in fresh.stderr
    missing = DatasetFilesNotFoundError("Yin-Yang: missing train.npz; set DELGRAD_YIN_YANG_DIR")
    told = _train_ending_in(monkeypatch, missing, ["--out", str(tmp_path / "fresh")])
    assert told.exit_code == 1 and "Error: Yin-Yang: missing train.npz; set DELGRAD_YIN_YANG_DIR\n" in told.stderr
    away = _train_ending_in(monkeypatch, BackendError("the chip is away"), ["--out", str(tmp_path / "fresh")])
    assert away.exit_code == 1 and "Error: the chip is away\n" in away.stderr, away.output
    run = tmp_path / "my run"  # (a run with a checkpoint, in a folder whose name the hint must quote)
    shutil.copytree(finished_run, run)
    stopped = _train_ending_in(monkeypatch, KeyboardInterrupt(), ["--out", str(run), "--epochs", "3"])
    assert f"interrupted; the last finished epoch is saved: continue with delgrad train --out '{run}' --resume " \
           "--epochs 3" in stopped.stderr, stopped.output
    failed = _train_ending_in(monkeypatch, BackendError("the chip is away"), ["--out", str(run), "--resume",
                                                                              "--epochs", "3"])  # (no option given)
    assert "once the cause is removed (the run's own settings would meet it again)" in failed.stderr, failed.output
    summary = {"test_accuracy": 0.9, "selected_epoch": 2, "n_parameters": 35, "wall_seconds": 1.0}
    resumed = _train_ending_in(monkeypatch, summary, ["--out", str(run), "--resume", "--epochs", "2"])
    assert resumed.exit_code == 0 and "trained 1.0 s in all its sessions, this command took" in resumed.stdout, \
        resumed.output


def test_resume_refuses_the_device_of_another_backend_behind_the_same_calibration(tmp_path):
    """Trainer._check_same_device: a resume on another device identity than the checkpoint's is refused.  A
    backend forwarding to another backend's device (as mock-hil's service does) whose device is now another
    one is refused even where calibration key, digest and options read the same (identity_changes does not
    compare the devices of two backends, which would let the resume through)."""
    from delgrad_core.testing import MockBackend

    class Forwarding(MockBackend):
        def __init__(self, device):
            super().__init__()
            self.device = device

        def _device_identity(self, calibration):
            return {**super()._device_identity(calibration), "backend": self.device}

    with Trainer(TrainingConfig(**{**SHORT, "epochs": 1}), backend=Forwarding("chip-a"), out_dir=tmp_path) as first:
        first.fit(progress=False)
    more = TrainingConfig(**{**SHORT, "epochs": 2})
    with pytest.raises(dg.InvalidValueError, match=r"^resume: device 'chip-b' is not the one the run was trained on: "
                                                   r"trained on device 'chip-a'; resume where the run was trained$"):
        Trainer(more, backend=Forwarding("chip-b"), out_dir=tmp_path, resume=True)
    with Trainer(more, backend=Forwarding("chip-a"), out_dir=tmp_path, resume=True) as again:
        assert again.epoch == 1
