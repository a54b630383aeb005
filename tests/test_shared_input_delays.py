"""`shared_input_delays`: the copies of a repeated input share one trainable axonal delay (as on
BrainScaleS-2, whose delay elements serve every copy of an input; its gradient is checked against
finite differences in test_training.py)."""

import json
import warnings

import numpy as np
import pytest

import delgrad_core as dg
from delgrad_core._npz import json_array, write_npz
from delgrad_core.cli import main
from delgrad_core.testing import cli_runner
from delgrad_core.training import TrainableNetwork, Trainer, TrainingConfig, build_network, config_with_defaults
from delgrad_core.training._run_folder import STATE_KEY

REPEAT = 2


def _model(parametrisation="sigmoid", shared=REPEAT, kind="axonal"):
    config = TrainingConfig(hidden=6, delays=kind, delay_parametrisation=parametrisation, delay_scale=0.8,
                            delay_shift=0.1, encoder_options={"repeat": REPEAT}, shared_input_delays=shared).resolved()
    model = TrainableNetwork(build_network(config, 4 * REPEAT, 3), config)
    model.initialise(np.random.default_rng(3))
    return model


def test_the_copies_of_an_input_get_its_one_delay():
    model = _model()
    delays = model.network.layers[0].projection.delays.reshape(4, REPEAT)
    assert np.all(delays == delays[:, :1]) and np.unique(delays).size == 4
    assert model.params["layers.1.delays"].shape == (6,)  # (hidden lines: one delay each)
    assert model.n_parameters == model.network.n_parameters - 4 * (REPEAT - 1)  # (each shared delay once)


@pytest.mark.parametrize("shared, kind, message", [
    (3, "axonal", r"shared_input_delays: 3 does not divide the 8 input lines"),
    (2, "synaptic", r"shared_input_delays: 2 needs axonal delays in the first layer .*got 'synaptic'"),
])
def test_a_sharing_the_network_cannot_have_is_refused_naming_the_setting(shared, kind, message):
    with pytest.raises(dg.InvalidValueError, match=message):
        _model(shared=shared, kind=kind)


def test_a_backend_taking_copies_takes_a_repeat_that_is_a_multiple_of_its_copies():
    """A backend that takes every 2 lines as copies of one input runs an encoder's 4 copies of each input as two
    such pairs, and refuses 1 copy of each, which it would run as copies of different inputs (the divisibility
    the other way round refused the first and took the second)."""
    from delgrad_core.testing import MockBackend
    from delgrad_core.training._parameters import check_input_copies

    backend = MockBackend(capabilities=dg.Capabilities(input_copies=2))
    network = dg.Network.feedforward([8, 3, 3], delay_kind="axonal", seed=0)
    check_input_copies(backend, network, 4)
    with pytest.raises(dg.InvalidValueError, match=r"but the encoder makes 1 of each input \(its repeat\)"):
        check_input_copies(backend, network, 1)


@pytest.mark.parametrize("shared", [4, 10])
def test_a_sharing_that_ties_copies_of_different_inputs_is_refused(shared):
    """(5 copies of 4 inputs: groups of 4 or 10 lines would tie x to y)"""
    config = TrainingConfig(hidden=3, delays="axonal", encoder_options={"repeat": 5}, shared_input_delays=shared)
    with pytest.raises(dg.InvalidValueError, match=rf"shared_input_delays: {shared} would share one delay between "
                                                   r"copies of different inputs: the encoder makes 5 of each"):
        Trainer(config)


def test_the_emulator_says_once_that_it_averages_the_copies_different_delays():
    network = dg.Network.feedforward([20, 3, 3], delay_kind="axonal", seed=0)
    network.layers[0].projection.delays[...] = np.linspace(2.0, 3.0, 20)
    backend = dg.get_backend("bss2-emulator", cache=False)
    with pytest.warns(UserWarning, match=r"the 5 copies of an input have different delays; .* runs their mean"):
        ran = backend.represent(network)
    assert np.ptp(ran.layers[0].projection.delays.reshape(4, 5), axis=1).max() == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        backend.represent(network)  # (once per backend)


def test_without_input_delays_the_setting_has_nothing_to_share():
    model = _model(kind="none")
    assert not any(name.endswith("delays") for name in model.params)


def test_the_emulated_chip_trains_one_delay_per_input():
    trainer = Trainer(config_with_defaults({"backend": "bss2-emulator", "delays": "axonal", "hidden": 5,
                                            "epochs": 1}))
    assert trainer.config.shared_input_delays == 5
    assert trainer.model.params["layers.0.delays"].shape == (4,)


def _without_setting(checkpoint, name):
    """The checkpoint as an older version wrote it: its settings without `name`."""
    with np.load(checkpoint) as data:
        arrays = {key: data[key] for key in data.files}
    state = json.loads(str(arrays[STATE_KEY]))
    del state["config"][name]
    arrays[STATE_KEY] = json_array(state)
    with open(checkpoint, "wb") as handle:
        write_npz(handle, arrays)


@pytest.mark.slow
def test_a_run_recorded_before_the_setting_resumes_with_one_delay_per_line(tmp_path):
    """A bss2 run whose checkpoint has no shared_input_delays trained every line's delay: it resumes
    so, not with the backend's later default of 5."""
    out = tmp_path / "run"
    common = ["train", "--backend", "bss2-emulator", "--hidden", "5", "--out", str(out), "--no-progress"]
    first = cli_runner().invoke(main, [*common, "--epochs", "1", "--set", "shared_input_delays=1"])
    assert first.exit_code == 0, first.output
    (out / "metrics.json").unlink()  # (an unfinished run, as if stopped after its first epoch)
    _without_setting(out / "checkpoint.npz", "shared_input_delays")
    resumed = cli_runner().invoke(main, [*common, "--epochs", "2", "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert json.loads((out / "metrics.json").read_text())["config"]["shared_input_delays"] == 1


def test_a_sweep_refuses_a_sharing_its_networks_cannot_have_before_any_trial_starts(tmp_path):
    out = tmp_path / "sweep"
    result = cli_runner().invoke(main, ["sweep", "--hidden", "5", "--delays", "axonal", "--seeds", "1", "--epochs", "1",
                                        "--set", "shared_input_delays=3", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert ("shared_input_delays: 3 would share one delay between copies of different inputs: the encoder makes one "
            "of each (its repeat is 1); set it to 1") in result.output
    assert not (out / "runs").exists()


def test_train_refuses_a_sharing_its_network_cannot_have_as_a_usage_error(tmp_path):
    """(status 1, as if the run had failed: the settings were refused when the network was built)"""
    out = tmp_path / "run"
    result = cli_runner().invoke(main, ["train", "--hidden", "5", "--delays", "axonal", "--epochs", "1",
                                        "--set", "shared_input_delays=3", "--no-progress", "--out", str(out)])
    assert result.exit_code == 2 and "Usage:" in result.output + result.stderr, result.output
    assert "shared_input_delays: 3 would share one delay between copies of different inputs" in result.output \
        + result.stderr
    assert not out.exists()
