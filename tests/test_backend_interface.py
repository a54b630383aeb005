"""Backend interface: capabilities, calibration, refusal before running, execute contract."""

import json

import numpy as np
import pytest

from delgrad_core import (
    Backend,
    Calibration,
    Capabilities,
    DelayKind,
    ExecutionResult,
    Network,
    NeuronParameters,
    UnsupportedNetworkError,
    calibration_key,
    forward,
)


class ToyBackend(Backend):
    """Runs the ideal model but declares tight limits, and records whether it ran."""

    name = "toy"

    def __init__(self, needs_calibration=False, returns=None):
        self.needs_calibration = needs_calibration
        self.returns = returns
        self.calls = 0

    @property
    def capabilities(self):
        return Capabilities(
            delay_kinds={"none", DelayKind.AXONAL},
            tau_ratios=(2,),
            max_inputs=10,
            max_layer_size=10,
            max_layers=2,
            needs_calibration=self.needs_calibration,
        )

    def _calibrate(self, network, seed):
        return Calibration(self.name, {"offset": 0.0, "seed": seed}, calibration_key(self.name, network))

    def _execute(self, network, input_spike_times, calibration, seed):
        self.calls += 1
        if self.returns is not None:
            return self.returns
        return ExecutionResult(forward(network, input_spike_times), {"seed": seed})


def _net(sizes=(4, 10, 3), kind="none", tau_m=2.0):
    return Network.feedforward(list(sizes), delay_kind=kind, neuron=NeuronParameters(1.0, tau_m, 1.0))


def test_capabilities_validate_and_round_trip_through_json():
    caps = Capabilities(delay_kinds=["none", "synaptic"], tau_ratios=[1, 2.0], max_layers=3, weight_resolution=1 / 63)
    assert caps.delay_kinds == frozenset({DelayKind.NONE, DelayKind.SYNAPTIC})
    assert caps.tau_ratios == (1.0, 2.0)
    data = json.loads(json.dumps(caps.to_dict()))
    assert data["delay_kinds"] == ["none", "synaptic"]
    assert Capabilities.from_dict(data) == caps
    assert caps.supports_ratio(2.0 * (1 + 1e-12)) and not caps.supports_ratio(1.5)
    assert Capabilities().supports_ratio(1.234)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"delay_kinds": ["neural"]}, "Capabilities.delay_kinds: unknown delay kind 'neural'; choose one of none"),
        ({"delay_kinds": "axonal"}, "Capabilities.delay_kinds: expected a collection"),
        ({"tau_ratios": ()}, "Capabilities.tau_ratios"),
        ({"tau_ratios": (2.0, -1.0)}, "Capabilities.tau_ratios"),
        ({"max_inputs": 0}, "Capabilities.max_inputs"),
        ({"max_layers": 2.5}, "Capabilities.max_layers"),
        ({"weight_resolution": 0.0}, "Capabilities.weight_resolution"),
        ({"exact": 1}, "Capabilities.exact: expected a bool"),
    ],
)
def test_capabilities_reject_bad_values(kwargs, message):
    with pytest.raises((TypeError, ValueError), match=message):
        Capabilities(**kwargs)
    with pytest.raises(ValueError, match="unknown fields"):
        Capabilities.from_dict({"colour": "red"})


def test_calibration_json_round_trip_and_validation():
    calibration = Calibration("toy", {"gain": [1.0, 2.0], "nested": {"a": (1, 2)}}, "toy-123")
    assert calibration.values["nested"]["a"] == [1, 2]  # normalised to JSON types
    assert Calibration.from_json(calibration.to_json()) == calibration
    with pytest.raises(ValueError, match="Calibration.values: not JSON-serialisable"):
        Calibration("toy", {"gain": np.float32(1.0)})
    with pytest.raises(ValueError, match="Calibration.values: not JSON-serialisable"):
        Calibration("toy", {"gain": float("nan")})
    with pytest.raises(ValueError, match="Calibration.backend"):
        Calibration("", {})
    with pytest.raises(ValueError, match="keys backend, cache_key, values"):
        Calibration.from_json('{"backend": "toy"}')
    with pytest.raises(ValueError, match="invalid JSON"):
        Calibration.from_json("{")


def test_calibration_key_depends_on_what_calibration_depends_on():
    network = _net()
    key = calibration_key("toy", network)
    assert key == calibration_key("toy", _net()) and key.startswith("toy-")
    assert key != calibration_key("other", network)
    assert key != calibration_key("toy", network, {"chip": 2})
    network.layers[0].population.neuron.threshold = 1.1
    assert key != calibration_key("toy", network)
    network.layers[0].population.neuron.threshold = 1.0
    network.layers[0].projection.weights[0, 0] += 1.0  # weights are not calibrated
    assert key == calibration_key("toy", network)


@pytest.mark.parametrize(
    ("network", "capability", "message"),
    [
        (
            _net(kind="synaptic"),
            "delay_kinds",
            "backend 'toy' does not support delay kind 'synaptic' (supports: none, axonal)",
        ),
        (_net(tau_m=1.0), "tau_ratios", "backend 'toy' does not support tau_m/tau_s ratio 1 in layer 'hidden' (supports: 2)"),
        (_net(sizes=(11, 3)), "max_inputs", "backend 'toy' does not support 11 inputs per neuron"),
        (_net(sizes=(4, 11, 3)), "max_layer_size", "backend 'toy' does not support 11 neurons in layer 'hidden'"),
        (_net(sizes=(4, 3, 3, 3)), "max_layers", "backend 'toy' does not support 3 layers (max_layers: 2)"),
    ],
)
def test_refusal_names_the_capability_and_happens_before_running(network, capability, message):
    backend = ToyBackend()
    for call in (
        lambda: backend.check_supported(network),
        lambda: backend.calibrate(network),
        lambda: backend.execute(network, np.zeros((2, network.input.size))),
    ):
        with pytest.raises(UnsupportedNetworkError) as info:
            call()
        assert info.value.capability == capability
        assert str(info.value).startswith(message)
    assert backend.calls == 0


def test_execute_validates_inputs_and_adds_wall_time():
    backend, network = ToyBackend(), _net()
    inputs = np.random.default_rng(0).uniform(0.15, 2.0, (5, 4))
    result = backend.execute(network, inputs, seed=7)
    assert result.metadata["seed"] == 7 and result.metadata["wall_seconds"] >= 0
    for observed, expected in zip(result.layer_spike_times, forward(network, inputs)):
        np.testing.assert_array_equal(observed, expected)
    assert result.output_spike_times is result.layer_spike_times[-1]
    with pytest.raises(ValueError, match=r"input_spike_times: expected shape \(batch, 4\)"):
        backend.execute(network, np.zeros((5, 3)))
    with pytest.raises(TypeError, match="network: expected a delgrad_core.Network"):
        backend.execute("net", inputs)
    assert backend.calls == 1


def test_execute_checks_calibration_and_result_type():
    network, inputs = _net(), np.ones((1, 4))
    calibrated = ToyBackend(needs_calibration=True)
    with pytest.raises(ValueError, match="calibration: backend 'toy' needs one"):
        calibrated.execute(network, inputs)
    calibration = calibrated.calibrate(network, seed=3)
    assert calibration.values == {"offset": 0.0, "seed": 3}
    assert calibrated.execute(network, inputs, calibration=calibration).layer_spike_times[0].shape == (1, 10)
    with pytest.raises(ValueError, match="made for backend 'other'"):
        calibrated.execute(network, inputs, calibration=Calibration("other"))
    with pytest.raises(TypeError, match="calibration: expected a Calibration"):
        calibrated.execute(network, inputs, calibration={"offset": 0})
    with pytest.raises(TypeError, match="_execute returned list, not ExecutionResult"):
        ToyBackend(returns=[]).execute(network, inputs)


def test_backend_without_calibration_gets_an_empty_valid_one():
    class Plain(ToyBackend):
        _calibrate = Backend._calibrate

    calibration = Plain().calibrate(_net())
    assert calibration.values == {} and calibration.backend == "toy"
    assert Calibration.from_json(calibration.to_json()) == calibration


def test_backend_is_abstract():
    with pytest.raises(TypeError):
        Backend()
