"""Backend interface: capabilities, constraints (represent), calibration, refusal before running,
the execute contract, result checks and the lifecycle, exercised through `MockBackend`."""

import json
import re

import numpy as np
import pytest

from delgrad_core import (
    Backend,
    BackendError,
    BackendUnavailable,
    Calibration,
    CalibrationError,
    Capabilities,
    DelayKind,
    DelgradError,
    ExecutionRequest,
    ExecutionResult,
    InvalidResultError,
    Network,
    NeuronParameters,
    UnsupportedNetworkError,
    InvalidValueError,
    calibration_key,
    forward,
    get_backend,
)
from delgrad_core.testing import Agreement, MockBackend

TOY = Capabilities(delay_kinds={"none", DelayKind.AXONAL}, tau_ratios=(2,), max_inputs=10, max_layer_size=10,
                   max_layers=2)


def _net(sizes=(4, 10, 3), kind="none", tau_m=2.0, seed=0):
    return Network.feedforward(list(sizes), delay_kind=kind, neuron=NeuronParameters(1.0, tau_m, 1.0), seed=seed)


@pytest.mark.parametrize("field, value", [("tau_ratios", "12"), ("tau_ratios", b"2"), ("tau_ratios", ["2"]),
                                          ("tau_ratios", [True]), ("delay_range", b"05"), ("delay_range", "05"),
                                          ("delay_range", {0: 1, 5: 2}), ("tau_ratios", np.array(2.0))])
def test_capabilities_refuse_text_and_tables_for_numbers(field, value):
    """(a string's characters, bytes' codes or a table's keys were read as the numbers: "12" gave
    the ratios 1 and 2, b"2" the ratio 50)"""
    with pytest.raises(InvalidValueError, match=rf"Capabilities.{field}: expected None or "):
        Capabilities(**{field: value})


def test_capabilities_validate_and_round_trip_through_json():
    caps = Capabilities(delay_kinds=["none", "synaptic"], tau_ratios=[1, 2.0], max_layers=3, weight_resolution=1 / 63,
                        weight_limit=2.1, delay_range=[0.5, 3], delay_resolution=0.125, max_batch_size=50,
                        seed_independent=False)
    assert caps.delay_kinds == frozenset({DelayKind.NONE, DelayKind.SYNAPTIC})
    assert caps.tau_ratios == (1.0, 2.0) and caps.delay_range == (0.5, 3.0)
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
        ({"tau_ratios": (2.0, 0.0)}, "Capabilities.tau_ratios: expected None or a non-empty list of positive numbers"),
        ({"tau_ratios": (float("inf"),)}, "Capabilities.tau_ratios: expected None or a non-empty list of positive"),
        ({"max_inputs": 0}, "Capabilities.max_inputs"),
        ({"max_layers": 2.5}, "Capabilities.max_layers"),
        ({"input_copies": 0}, "Capabilities.input_copies: expected None or an integer >= 1, got 0"),
        ({"weight_resolution": 0.0}, "Capabilities.weight_resolution"),
        ({"weight_limit": float("nan")}, "Capabilities.weight_limit"),
        ({"weight_limit": 0.1, "weight_resolution": 0.2},
         "Capabilities.weight_resolution: 0.2 is above Capabilities.weight_limit"),
        ({"delay_range": (2.0, 1.0)}, "Capabilities.delay_range"),
        ({"delay_range": (0.0,)}, "Capabilities.delay_range"),
        ({"exact": 1}, "Capabilities.exact: expected a bool"),
        ({"deterministic": False}, "Capabilities.seed_independent: a seed-independent backend must be deterministic"),
    ],
)
def test_capabilities_reject_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Capabilities(**kwargs)
    with pytest.raises(ValueError, match="unknown setting"):
        Capabilities.from_dict({"colour": "red"})


def test_unknown_capability_names_of_two_types_are_all_named():
    """(names of two types do not sort: {1: 2, 'colour': 3})"""
    with pytest.raises(InvalidValueError, match=r"^Capabilities: unknown setting\(s\) 1, colour; known: "):
        Capabilities.from_dict({1: 2, "colour": 3})


def test_represent_clips_quantises_rounds_and_bounds():
    caps = Capabilities(weight_limit=2.1, weight_resolution=1 / 30, delay_range=(1.0, 3.0), delay_resolution=0.125)
    backend = MockBackend(capabilities=caps)
    network = _net((4, 6, 3), "axonal")
    network.layers[0].projection.weights[:2, :2] = [[5.0, -5.0], [0.0167, 1.01]]
    network.layers[0].projection.delays[:] = [0.2, 1.06, 2.99, 7.0]
    ran = backend.represent(network)
    weights, delays = ran.layers[0].projection.weights, ran.layers[0].projection.delays
    np.testing.assert_allclose(weights[:2, :2], [[2.1, -2.1], [1 / 30, 30 / 30]], rtol=1e-12)
    assert np.all(np.abs(weights) <= 2.1 + 1e-12)
    np.testing.assert_allclose(weights * 30, np.round(weights * 30), atol=1e-9)
    np.testing.assert_allclose(delays, [1.0, 1.0, 3.0, 3.0])  # 1.06 rounds to 1.0, 2.99 to 3.0
    assert np.array_equal(backend.represent(ran).layers[0].projection.weights, weights)  # idempotent
    assert network.layers[0].projection.weights[0, 0] == 5.0  # the original is untouched
    plain = MockBackend()
    assert plain.represent(network) is network  # nothing to constrain: the same object


def test_the_default_represent_gives_the_copies_of_an_input_their_mean_delay():
    """(a backend declaring input_copies kept the base class's represent, which left each copy its
    own delay: the conformance suite failed it, and training ran what the substrate does not)"""
    backend = MockBackend(capabilities=Capabilities(input_copies=2, delay_range=(0.0, 3.0)))
    network = _net((4, 5, 3), "axonal")
    network.layers[0].projection.delays[:] = [0.5, 1.5, 2.0, 2.0]
    ran = backend.represent(network)
    assert ran.layers[0].projection.delays.tolist() == [1.0, 1.0, 2.0, 2.0]
    assert network.layers[0].projection.delays.tolist() == [0.5, 1.5, 2.0, 2.0]  # the original is untouched
    assert backend.represent(ran) is ran
    assert MockBackend(capabilities=Capabilities(input_copies=2)).represent(ran) is ran  # shared already
    three = _net((3, 5, 3), "axonal")  # (3 inputs are no copies of 2: independent)
    assert backend.represent(three).layers[0].projection.delays.tolist() == \
        three.layers[0].projection.delays.tolist()


def test_weight_limit_off_the_grid_stays_within_the_limit():
    caps = Capabilities(weight_limit=1.0, weight_resolution=0.3)
    np.testing.assert_allclose(caps.constrain_weights(np.array([0.99, -2.0, 0.44])), [0.9, -0.9, 0.3])


def test_a_delay_range_off_the_grid_keeps_the_delays_on_it_and_represent_idempotent():
    """(delays beyond an end off the grid ran at that end, which a second represent rounded to
    the grid: the conformance suite failed the plugin's represent, which it had not written)"""
    caps = Capabilities(delay_range=(0.2, 3.9), delay_resolution=0.125)
    delays = caps.constrain_delays(np.array([5.0, 1.0, 3.9, 0.0, 0.2]))
    assert delays.tolist() == [3.875, 1.0, 3.875, 0.25, 0.25]
    assert caps.constrain_delays(delays).tolist() == delays.tolist()
    backend = MockBackend(capabilities=Capabilities(delay_range=(0.0, 3.9), delay_resolution=0.125))
    network = _net((2, 2, 2), "axonal")
    network.layers[0].projection.delays[:] = [5.0, 1.0]
    ran = backend.represent(network)
    assert ran.layers[0].projection.delays.tolist() == [3.875, 1.0] and backend.represent(ran) is ran
    with pytest.raises(InvalidValueError, match=r"^Capabilities.delay_range: \(0.13, 0.2\) holds no multiple of "
                                                   r"delay_resolution 0.125: every delay would leave the range or "
                                                   r"the grid$"):
        Capabilities(delay_range=(0.13, 0.2), delay_resolution=0.125)


def test_the_largest_weight_is_the_last_multiple_of_the_resolution_below_the_limit():
    """Multiples of 0.35 within 1.0 are 0.35 and 0.7: 1.0 / 0.35 = 2.86 rounds up to 3, yet 1.05 is off the limit."""
    caps = Capabilities(weight_limit=1.0, weight_resolution=0.35)
    np.testing.assert_allclose(caps.constrain_weights(np.array([1.0, -1.0, 0.9])), [0.7, -0.7, 0.7], rtol=1e-12)


def test_a_delay_range_alone_clips_the_delays_to_it():
    """docs: delays beyond delay_range are clipped."""
    caps = Capabilities(delay_range=(0.5, 2.0))
    assert caps.constrain_delays(np.array([0.0, 1.3, 3.0])).tolist() == [0.5, 1.3, 2.0]


def test_a_delay_resolution_alone_puts_the_delays_on_its_grid():
    from delgrad_core._capabilities import apply_constraints

    caps = Capabilities(delay_resolution=0.5)
    assert caps.constrains_parameters
    network = Network.feedforward([2, 3], delay_kind="axonal", seed=0)
    network.layers[0].projection.delays[...] = [0.3, 1.1]
    assert apply_constraints(network, caps).layers[0].projection.delays.tolist() == [0.5, 1.0]


def test_a_weight_on_the_limit_is_not_above_it():
    """(6 steps of 0.1 are 0.6000000000000001: a stored network exceeded its weight_limit 0.6)"""
    caps = Capabilities(weight_limit=0.6, weight_resolution=0.1)
    weights = caps.constrain_weights(np.array([0.7, -0.62, 0.58]))
    assert weights.tolist() == [0.6, -0.6, 0.6]


def test_a_delay_range_starting_a_rounding_error_above_a_multiple_starts_at_that_multiple():
    """(3 x 0.1 is 0.30000000000000004: without the tolerance the range's first multiple was taken
    to be 0.4, and a short delay ran 0.1 too long; off the grid, the delays beyond are the last
    multiple inside the range, not its end)"""
    caps = Capabilities(delay_range=(3 * 0.1, 0.95), delay_resolution=0.1)
    delays = caps.constrain_delays(np.array([0.0, 0.31, 2.0]))
    np.testing.assert_allclose(delays, [0.3, 0.3, 0.9], rtol=0, atol=1e-12)


def test_a_weight_resolution_equal_to_the_limit_is_allowed():
    """(only a step above the limit rounds every weight to 0; one equal to it leaves 0 and +-limit)"""
    caps = Capabilities(weight_limit=0.5, weight_resolution=0.5)
    assert caps.constrain_weights(np.array([0.3, -0.2, 0.1])).tolist() == [0.5, -0.0, 0.0]


def test_a_delay_range_holding_one_multiple_of_the_resolution_is_allowed():
    """(only a range holding no multiple leaves every delay off the range or the grid)"""
    caps = Capabilities(delay_range=(0.25, 0.35), delay_resolution=0.3)
    np.testing.assert_allclose(caps.constrain_delays(np.array([0.0, 1.0])), [0.3, 0.3], rtol=0, atol=1e-12)


def test_input_copies_alone_make_the_copies_share_their_mean_delay():
    """(a backend constraining nothing but its inputs' copies ran a network whose copies differ)"""
    from delgrad_core._capabilities import apply_constraints
    network = Network.feedforward([4, 3], delay_kind="axonal", delay_value=2.0, seed=0)
    network.layers[0].projection.delays[...] = [1.0, 2.0, 3.0, 6.0]
    ran = apply_constraints(network, Capabilities(input_copies=2))
    assert ran.layers[0].projection.delays.tolist() == [1.5, 1.5, 4.5, 4.5]


def test_execute_runs_what_represent_returns():
    caps = Capabilities(weight_limit=1.0, weight_resolution=0.25, exact=True)
    backend = MockBackend(capabilities=caps)
    network = _net((4, 5, 3), seed=3)
    inputs = np.random.default_rng(0).uniform(0.15, 2.0, (6, 4))
    result = backend.execute(network, inputs)
    ran = backend.requests[-1].network
    np.testing.assert_array_equal(ran.layers[0].projection.weights,
                                  backend.represent(network).layers[0].projection.weights)
    for observed, expected in zip(result.layer_spike_times, forward(backend.represent(network), inputs)):
        np.testing.assert_array_equal(observed, expected)


def test_calibration_bytes_round_trip_with_arrays_and_validation(tmp_path):
    calibration = Calibration("toy", {"gain": [1.0, 2.0], "nested": {"a": (1, 2)}}, "toy-123",
                              {"threshold": np.linspace(0, 1, 5), "ok": np.array([True, False])})
    assert calibration.values["nested"]["a"] == [1, 2]  # normalised to JSON types
    restored = Calibration.from_bytes(calibration.to_bytes())
    assert restored == calibration and restored.digest == calibration.digest
    assert restored.arrays["threshold"].tobytes() == calibration.arrays["threshold"].tobytes()
    assert Calibration.load(calibration.save(tmp_path / "c.npz")) == calibration
    assert calibration.digest != Calibration("toy", calibration.values, "toy-123", {"ok": np.array([True])}).digest
    with pytest.raises(ValueError, match="is read-only|read-only"):
        calibration.arrays["threshold"][0] = 3.0
    with pytest.raises(ValueError, match="Calibration.values: not JSON-serialisable"):
        Calibration("toy", {"gain": np.float32(1.0)})
    with pytest.raises(ValueError, match="Calibration.values: not JSON-serialisable"):
        Calibration("toy", {"gain": float("nan")})
    with pytest.raises(ValueError, match="Calibration.backend"):
        Calibration("", {})
    with pytest.raises(ValueError, match="Calibration.arrays\\['x'\\]: contains NaN"):
        Calibration("toy", arrays={"x": [np.nan]})
    with pytest.raises(InvalidValueError,
                       match=r"^Calibration.arrays\['x'\]: expected numbers or bools, got dtype <U1$"):
        Calibration("toy", arrays={"x": np.array(["a"])})
    with pytest.raises(InvalidValueError, match="^Calibration.arrays: expected a dict of name -> array$"):
        Calibration("toy", arrays={"": np.zeros(1)})  # (an array needs a name)
    with pytest.raises(ValueError, match="not a readable delgrad calibration"):
        Calibration.from_bytes(b"not a zip")
    # (a calibration saved, then edited: refused by the digest written with it, also when that was emptied)
    from delgrad_core._npz import json_array, npz_bytes

    arrays = calibration.archive_arrays()
    edited = {**arrays, "calibration.arrays.threshold": np.zeros(5)}
    for digest in (None, {}, {"sha256": None}):
        record = {} if digest is None else {"calibration.digest": json_array(digest)}
        data = npz_bytes({**{k: v for k, v in edited.items() if k != "calibration.digest"}, **record})
        if digest is None:  # (a file from before digests were recorded: loads as it is)
            assert Calibration.from_bytes(data).arrays["threshold"].sum() == 0
            continue
        with pytest.raises(ValueError, match="the calibration is not the one written there"):
            Calibration.from_bytes(data)


def test_calibration_key_depends_on_what_it_is_given():
    key = calibration_key("toy", chip=1, targets={"threshold": 2.6})
    assert key == calibration_key("toy", targets={"threshold": 2.6}, chip=1) and key.startswith("toy-")
    assert key != calibration_key("other", chip=1, targets={"threshold": 2.6})
    assert key != calibration_key("toy", chip=2, targets={"threshold": 2.6})
    with pytest.raises(InvalidValueError, match="backend_name: expected the backend's name"):  # (an object's repr was
        calibration_key(MockBackend(), chip=1)  # taken as the name)
    trims = np.zeros(2000)
    changed = trims.copy()
    changed[1000] = 5.0  # (hashed as printed text, both were "[0. 0. 0. ... 0. 0. 0.]")
    assert calibration_key("toy", trims=trims) != calibration_key("toy", trims=changed)
    assert calibration_key("toy", trims=trims) == calibration_key("toy", trims=trims.tolist())
    # (numpy numbers were keyed by their text: np.int64(3) as "3", another key than the 3 a command line gives)
    assert calibration_key("toy", chip=np.int64(3), on=np.bool_(True), gain=np.float32(1.5)) == \
        calibration_key("toy", chip=3, on=True, gain=1.5)
    # ({1: 2} and {"1": 2} had one key; tuples, lists and string-keyed tables keep theirs)
    assert calibration_key("toy", targets={1: 2}) != calibration_key("toy", targets={"1": 2})
    # (a numpy number as a table's key was keyed by its type, "<int64> 3", another key than 3's; and
    # the text "<int> 3" as a key shared 3's)
    assert calibration_key("toy", trims={np.int64(3): 1.0, np.bool_(True): 2}) == \
        calibration_key("toy", trims={3: 1.0, True: 2})
    assert calibration_key("toy", trims={"<int> 3": 1.0}) != calibration_key("toy", trims={3: 1.0})
    assert calibration_key("toy", trims=(1, 2), t={"a": [1.0, {"b": None}]}) == \
        calibration_key("toy", trims=[1, 2], t={"a": [1.0, {"b": None}]})
    assert calibration_key("toy", timeout=float("inf")) == calibration_key("toy", timeout=float("inf"))


@pytest.mark.parametrize(
    ("network", "capability", "message"),
    [
        (_net(kind="synaptic"), "delay_kinds",
         "backend 'toy' does not support delay kind 'synaptic' (supports: none, axonal)"),
        (_net(tau_m=1.0), "tau_ratios",
         "backend 'toy' does not support tau_m/tau_s ratio 1 in layer 'hidden' (supports: 2)"),
        (_net(sizes=(11, 3)), "max_inputs", "backend 'toy' does not support 11 inputs per neuron"),
        (_net(sizes=(4, 11, 3)), "max_layer_size", "backend 'toy' does not support 11 neurons in layer 'hidden'"),
        (_net(sizes=(4, 3, 3, 3)), "max_layers", "backend 'toy' does not support 3 layers (max_layers: 2)"),
    ],
)
def test_refusal_names_the_capability_and_happens_before_running(network, capability, message):
    backend = MockBackend(name="toy", capabilities=TOY)
    assert backend.can_run(network).startswith(message)
    for call in (
        lambda: backend.check_supported(network),
        lambda: backend.calibrate(network),
        lambda: backend.execute(network, np.zeros((2, network.input.size))),
        lambda: backend.execute(ExecutionRequest(network, np.zeros((2, network.input.size)))),
    ):
        with pytest.raises(UnsupportedNetworkError) as info:
            call()
        assert info.value.capability == capability
        assert str(info.value).startswith(message)
        assert isinstance(info.value, DelgradError) and not info.value.retryable
    assert backend.requests == []
    assert backend.can_run(_net()) is None


def test_resource_check_refuses_with_its_reason():
    class Small(MockBackend):
        def check_resources(self, network):
            needed = sum(network.sizes[1:])
            return None if needed <= 8 else f"needs {needed} neuron circuits, the chip has 8 ({needed - 8} too many)"

    backend = Small()
    with pytest.raises(UnsupportedNetworkError,
                       match=r"needs 13 neuron circuits, the chip has 8 \(5 too many\)") as info:
        backend.execute(_net(), np.zeros((1, 4)))
    assert info.value.capability == "resources" and backend.requests == []


def test_batches_above_the_declared_limit_are_refused():
    backend = MockBackend(capabilities=Capabilities(max_batch_size=4))
    backend.execute(_net(), np.zeros((4, 4)))
    with pytest.raises(UnsupportedNetworkError, match="max_batch_size: 4"):
        backend.execute(_net(), np.zeros((5, 4)))
    assert len(backend.requests) == 1


def test_execute_validates_inputs_and_adds_wall_time():
    backend, network = MockBackend(), _net()
    inputs = np.random.default_rng(0).uniform(0.15, 2.0, (5, 4))
    result = backend.execute(network, inputs, seed=7)
    assert backend.requests[0].seed == 7 and result.metadata["wall_seconds"] >= 0
    for observed, expected in zip(result.layer_spike_times, forward(network, inputs)):
        np.testing.assert_array_equal(observed, expected)
    assert result.output_spike_times is result.layer_spike_times[-1]
    with pytest.raises(ValueError, match=r"input_spike_times: expected shape \(batch, 4\)"):
        backend.execute(network, np.zeros((5, 3)))
    with pytest.raises(ValueError, match="request: expected an ExecutionRequest, or a Network with input_spike_times"):
        backend.execute("net", inputs)
    with pytest.raises(ValueError, match="input_spike_times: required"):
        backend.execute(network)
    with pytest.raises(ValueError, match="either an ExecutionRequest or"):
        backend.execute(ExecutionRequest(network, inputs), seed=3)
    assert len(backend.requests) == 1


def test_execute_checks_the_calibration():
    network, inputs = _net(), np.ones((1, 4))
    calibrated = MockBackend(name="toy", capabilities=Capabilities(needs_calibration=True))
    with pytest.raises(CalibrationError, match="calibration: backend 'toy' needs one"):
        calibrated.execute(network, inputs)
    calibration = calibrated.calibrate(network, seed=3)
    assert calibration.backend == "toy" and calibration.values == {}
    assert calibrated.execute(network, inputs, calibration=calibration).layer_spike_times[0].shape == (1, 10)
    with pytest.raises(CalibrationError, match="made for backend 'other'"):
        calibrated.execute(network, inputs, calibration=Calibration("other"))
    with pytest.raises(ValueError, match="calibration: expected a Calibration"):
        calibrated.execute(network, inputs, calibration={"offset": 0})


def _returning(result_of):
    return MockBackend(lambda request: result_of(request))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda r: [], "_execute returned list, not an ExecutionResult"),
        (lambda r: ExecutionResult([np.zeros((1, 10))]), "layer_spike_times: expected a list of 2 arrays"),
        (lambda r: ExecutionResult([np.ones((1, 10)), np.zeros((3, 1))]),
         r"layer_spike_times\[1\]: expected shape \(1, 3\)"),
        (lambda r: ExecutionResult([np.full((1, 10), np.nan), np.ones((1, 3))]),
         r"layer_spike_times\[0\]: contains NaN"),
        (lambda r: ExecutionResult([np.full((1, 10), 5.0), np.full((1, 3), -1.0)]),
         r"layer_spike_times\[1\]: neuron 0 of sample 0 spikes at -1.0, before the sample's first input \(0.5\)"),
        (lambda r: ExecutionResult([np.full((1, 10), 5.0), np.ones((1, 3))], arrival_times=[np.ones((1, 3)), None]),
         r"arrival_times\[0\]: expected shape \(1, 4, 10\) or \(1, 4\)"),
        (lambda r: ExecutionResult([np.full((1, 10), 5.0), np.full((1, 3), 6.0)],
                                   arrival_times=[np.full((1, 4), 0.4), None]),
         r"arrival_times\[0\]: the spike of presynaptic line 0 of sample 0, sent at 0.5, arrives at 0.4, before it was "
         r"sent"),
        (lambda r: ExecutionResult([np.full((1, 10), 5.0), np.full((1, 3), 6.0)],
                                   arrival_times=[None, np.where(np.arange(3) == 2, 4.0, 5.5) * np.ones((1, 10, 3))]),
         r"arrival_times\[1\]: the spike of presynaptic line 0 of sample 0, sent at 5.0, arrives at 4.0 \(at neuron "
         r"2\), before it was sent"),
        (lambda r: ExecutionResult([np.where(np.arange(10) == 3, np.inf, 5.0)[None], np.full((1, 3), 6.0)],
                                   arrival_times=[None, np.full((1, 10), 5.5)]),
         r"arrival_times\[1\]: presynaptic line 3 of sample 0 sent no spike, yet one arrives at 5.5"),
        (lambda r: ExecutionResult([np.full((1, 10), 5.0), np.ones((1, 3))], metadata={1: "x"}), "metadata"),
        (lambda r: ExecutionResult([np.full((1, 10), 5.0), np.full((1, 3), 6.0)], arrival_times=[None]),
         r"arrival_times: expected None or a list of 2 entries"),
        (lambda r: ExecutionResult([np.full((1, 10), 5.0), np.ones((1, 3))], metadata={"gain": float("nan")}),
         "metadata: expected JSON values"),  # (NaN is no JSON)
        (lambda r: ExecutionResult([np.full((1, 10), np.nextafter(0.5, 0)), np.full((1, 3), 6.0)]),  # (by one ulp)
         r"layer_spike_times\[0\]: neuron 0 of sample 0 spikes at 0.49999999999999994, before the sample's first "
         r"input \(0.5\)"),
        (lambda r: ExecutionResult([np.full((1, 10), 5.0), np.full((1, 3), 6.0)],
                                   arrival_times=[np.full((1, 4), np.nextafter(0.5, 0)), None]),
         r"arrival_times\[0\]: the spike of presynaptic line 0 of sample 0, sent at 0.5, arrives at "
         r"0.49999999999999994, before it was sent"),
        (lambda r: ExecutionResult([np.full((1, 10), 5.0), np.ones((1, 3), np.float32)]),
         r"layer_spike_times\[1\]: expected a float64 array, got dtype float32"),
        (lambda r: ExecutionResult((np.full((1, 10), 5.0), np.ones((1, 3)))),
         "layer_spike_times: expected a list of 2 arrays, got a tuple of 2"),
        (lambda r: ExecutionResult([np.full((1, 10), 5.0), np.ones((1, 3))], metadata={"gain": np.float32(1)}),
         "metadata: expected JSON values .*float32"),
    ],
)
def test_results_that_break_the_contract_are_refused(make, message):
    backend = _returning(make)
    with pytest.raises(InvalidResultError, match=message) as info:
        backend.execute(_net(), np.full((1, 4), 0.5))
    assert str(info.value).startswith("backend 'mock'") or "_execute returned" in str(info.value)


def test_a_wrong_item_of_an_own_execute_many_names_that_method():
    class Batched(MockBackend):
        def _execute_many(self, requests):
            return [self._execute(requests[0]), "result"]

    with pytest.raises(InvalidResultError, match=r"_execute_many \(item 1\) returned str, not an ExecutionResult"):
        Batched().execute_many([ExecutionRequest(_net(), np.full((1, 4), 0.5))] * 2)


def test_a_check_request_that_returns_a_reason_instead_of_raising_is_refused():
    """(check_resources returns its reason, check_request raises: a reason returned refused nothing,
    and the requests it meant to refuse ran)"""
    class Returning(MockBackend):
        def check_request(self, request):
            return "inputs after 2 tau_s do not fit the time window"

    message = (r"^backend 'mock': check_request returned str \('inputs after 2 tau_s do not fit the time window'\), "
               r"not None: it refuses by raising InvalidValueError naming what, and returns nothing$")
    request = ExecutionRequest(_net(), np.full((1, 4), 0.5))
    with pytest.raises(InvalidResultError, match=message):
        Returning().execute(request)
    with pytest.raises(InvalidResultError, match=message):
        Returning().execute_many([request])


@pytest.mark.parametrize(("check", "error", "message"), [
    (lambda settings: "batch_size 150 does not fit", InvalidResultError,
     r"^backend 'mock': check_training_settings returned str \('batch_size 150 does not fit'\), not None: it refuses"),
    (lambda settings: 1 / 0, BackendError,
     r"^backend 'mock' failed while checking the training settings: ZeroDivisionError: division by zero$"),
])
def test_a_check_training_settings_that_fails_or_returns_a_reason_is_the_backends_error(check, error, message):
    """(called unwrapped: a plugin's own exception ended `delgrad train`, `evaluate` and `sweep` in
    a traceback, and a reason returned refused nothing)"""
    from delgrad_core.training import Trainer, TrainingConfig

    class Checking(MockBackend):
        def check_training_settings(self, settings):
            return check(settings)

    with pytest.raises(error, match=message):
        Trainer(TrainingConfig(epochs=1, hidden=3), backend=Checking())


def test_an_own_execute_many_whose_jobs_share_buffers_is_refused_and_read_only_ones_are_not():
    """(a backend filling the same buffers for each job gave every job but the last another job's
    times: training evaluated a 67 % network at 33 %, without a word)"""
    class Refilling(MockBackend):
        def _execute_many(self, requests):
            buffer = np.empty((1, 10))  # (the hidden layer's times of every job; each output its own)
            results = []
            for request in requests:
                hidden, output = self._execute(request).layer_spike_times
                buffer[...] = hidden
                results.append(ExecutionResult([buffer[:, :], output.copy()]))
            return results

    class Caching(Refilling):  # (one read-only array handed to several jobs: no one changes it)
        def _execute_many(self, requests):
            results = super()._execute_many(requests)
            for result in results:
                result.layer_spike_times[0] = result.layer_spike_times[0].copy()
            shared = results[0].layer_spike_times[1].copy()
            shared.flags.writeable = False
            return [ExecutionResult([result.layer_spike_times[0], shared]) for result in results]

    requests = [ExecutionRequest(_net(), np.full((1, 4), time)) for time in (0.5, 0.7, 0.9)]
    with pytest.raises(InvalidResultError, match=r"^backend 'mock': _execute_many returned results of jobs 0 and 1 "
                                                 r"whose arrays share memory \(buffers filled again for each job hold "
                                                 r"another job's times\); return new arrays for each job$"):
        Refilling().execute_many(requests)
    late_then_early = [ExecutionRequest(_net(), np.full((1, 4), time)) for time in (3.0, 0.5)]
    with pytest.raises(InvalidResultError, match=r"jobs 0 and 1 whose arrays share memory"):  # (job 0 held job
        Refilling().execute_many(late_then_early)  # 1's earlier times: it was said to spike before its inputs)
    assert len(Caching().execute_many([requests[0]] * 3)) == 3  # (the same job thrice: the cache's answer)


def test_spikes_of_a_layer_that_nothing_reaches_are_refused():
    """(a backend reporting silence as a large number, 1e6, was said to spike "before the sample's
    first input (inf)"; spikes in a layer after a silent one passed, and training went on)"""
    silent_input = _returning(lambda r: ExecutionResult([np.full((1, 10), 1e6), np.full((1, 3), np.inf)]))
    with pytest.raises(InvalidResultError, match=r"layer_spike_times\[0\]: neuron 0 of sample 0 spikes at "
                                                 r"1000000.0 although the sample has no input spike \(silence is "
                                                 r"\+inf\)"):
        silent_input.execute(_net(), np.full((1, 4), np.inf))
    silent_hidden = _returning(lambda r: ExecutionResult([np.where(np.arange(2)[:, None] == 0, np.inf, 1.0)
                                                          * np.ones((2, 10)), np.full((2, 3), 2.0)]))
    with pytest.raises(InvalidResultError, match=r"layer_spike_times\[1\]: neuron 0 of sample 0 spikes at 2.0 "
                                                 r"although the sample has no spike in layer_spike_times\[0\]"):
        silent_hidden.execute(_net(), np.full((2, 4), 0.5))
    fine = _returning(lambda r: ExecutionResult([np.where(np.arange(10) == 0, 1.0, np.inf) * np.ones((2, 10)),
                                                 np.full((2, 3), 2.0)]))
    assert fine.execute(_net(), np.full((2, 4), 0.5)).layer_spike_times[1][1, 2] == 2.0


def test_backend_is_abstract():
    with pytest.raises(TypeError):
        Backend()


def test_lifecycle_close_once_and_refuse_afterwards():
    with MockBackend() as backend:
        backend.execute(_net(), np.zeros((1, 4)))
    assert backend.closed and backend.close_calls == 1
    backend.close()
    assert backend.close_calls == 1
    with pytest.raises(BackendUnavailable, match="backend 'mock' is closed") as info:
        backend.execute(_net(), np.zeros((1, 4)))
    assert not info.value.retryable
    with pytest.raises(BackendUnavailable):
        backend.calibrate()
    for reused in (lambda: backend.__enter__(), lambda: get_backend(backend)):  # (taken without a word before)
        with pytest.raises(BackendUnavailable, match="^backend 'mock' is closed$"):
            reused()


def test_close_runs_when_the_body_raises():
    with pytest.raises(KeyboardInterrupt):
        with MockBackend() as backend:
            raise KeyboardInterrupt
    assert backend.close_calls == 1


def test_retryable_errors_say_so():
    from delgrad_core import ExecutionTimeout, InvalidValueError

    assert BackendUnavailable("down").retryable and ExecutionTimeout("slow").retryable
    assert not BackendUnavailable("bad token", retryable=False).retryable
    assert not CalibrationError("x").retryable and not InvalidValueError("x").retryable
    assert issubclass(UnsupportedNetworkError, ValueError) and issubclass(InvalidResultError, DelgradError)


def test_every_error_survives_pickling_with_its_attributes():
    # (a sweep's worker process sends its error back pickled: UnsupportedNetworkError could not
    # be rebuilt and the user saw "BrokenProcessPool" instead of the reason)
    import pickle

    import delgrad_core as dg

    errors = [UnsupportedNetworkError("no synaptic delays", capability="delay_kinds"),
              dg.UnknownOptionError("unknown option(s) chip", names=["chip"]),
              BackendUnavailable("bad token", retryable=False)]
    classes = [getattr(dg, name) for name in dg.__all__]
    errors += [cls("message") for cls in classes if isinstance(cls, type) and issubclass(cls, DelgradError)
               and cls not in (UnsupportedNetworkError, dg.UnknownOptionError)]
    for error in errors:
        again = pickle.loads(pickle.dumps(error))
        assert type(again) is type(error) and str(again) == str(error) and again.retryable == error.retryable
    assert pickle.loads(pickle.dumps(errors[0])).capability == "delay_kinds"
    assert pickle.loads(pickle.dumps(errors[1])).names == ("chip",)


def test_an_unexpected_exception_of_a_backend_names_the_backend():
    def broken(request):
        raise ZeroDivisionError("division by zero in the driver")

    with pytest.raises(BackendError,
                       match="backend 'mock' failed while executing: ZeroDivisionError: division") as info:
        MockBackend(broken).execute(_net(), np.zeros((1, 4)))
    assert isinstance(info.value.__cause__, ZeroDivisionError)

    def interrupted(request):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        MockBackend(interrupted).execute(_net(), np.zeros((1, 4)))


def test_a_backend_calling_sys_exit_is_a_backend_error_not_the_end_of_the_program():
    """(a device library's sys.exit(0) ended `delgrad train` with status 0, nothing written)"""
    from delgrad_core import BackendError

    def exiting(request):
        raise SystemExit(0)

    with pytest.raises(BackendError, match="backend 'mock' failed while executing: SystemExit: 0"):
        MockBackend(exiting).execute(_net(), np.zeros((1, 4)))


class _OwnBaseException(BaseException):
    """A device library's own exception class outside `Exception`."""


class _Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("cannot str")


@pytest.mark.parametrize("raised, shown", [(_OwnBaseException("board gone"), "_OwnBaseException: board gone"),
                                           (_Unprintable(), "_Unprintable: <exception str() failed>")])
def test_a_backends_own_base_exception_or_an_unprintable_one_is_a_backend_error(raised, shown):
    """(a BaseException that is no Exception passed as it was: a traceback, and a Dask sweep's task
    that never ended; one whose message cannot be made ended in the traceback of its __str__)"""
    from delgrad_core import BackendError

    def failing(request):
        raise raised

    with pytest.raises(BackendError, match=f"^backend 'mock' failed while executing: {re.escape(shown)}$"):
        MockBackend(failing).execute(_net(), np.zeros((1, 4)))


def test_a_backend_may_reuse_its_buffers_from_job_to_job():
    """(the results of an execute_many shared the backend's one buffer: every job then held the
    last job's spike times, and evaluation scored them without an error)"""
    from delgrad_core.testing import reference_handler

    buffers = {}

    def reusing(request):
        result = reference_handler(request)
        for k, times in enumerate(result.layer_spike_times):
            buffer = buffers.setdefault((k, times.shape), np.empty_like(times))
            buffer[...] = times
            result.layer_spike_times[k] = buffer
        return result

    rng = np.random.default_rng(1)
    requests = [ExecutionRequest(_net((4, 5, 3), seed=2), rng.uniform(0.15, 2.0, (3, 4))) for _ in range(3)]
    expected = [reference_handler(request).layer_spike_times for request in requests]
    for got, wanted in zip(MockBackend(reusing).execute_many(requests), expected):
        for a, b in zip(got.layer_spike_times, wanted):
            np.testing.assert_array_equal(a, b)


def test_metadata_nested_too_deep_for_json_is_an_invalid_result():
    """(a RecursionError escaped unwrapped)"""
    from delgrad_core.testing import reference_handler

    def deep(request):
        result, table = reference_handler(request), {}
        result.metadata = table
        for _ in range(100_000):
            table["inner"] = table = {}
        return result

    with pytest.raises(InvalidResultError, match="metadata: expected JSON values .*maximum recursion depth"):
        MockBackend(deep).execute(_net(), np.full((2, 4), 0.5))


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
@pytest.mark.parametrize("wrap", [np.asmatrix, np.ma.masked_invalid], ids=["matrix", "masked"])
def test_a_result_must_be_a_plain_ndarray_not_a_subclass(wrap):
    """(an np.matrix passed the checks and failed deep in training; a masked array hid a NaN
    that evaluation's concatenation exposed)"""
    from delgrad_core.testing import reference_handler

    def wrapped(request):
        result = reference_handler(request)
        result.layer_spike_times[-1][0, 0] = np.nan
        return ExecutionResult([wrap(times) for times in result.layer_spike_times], {})

    with pytest.raises(InvalidResultError, match=r"layer_spike_times\[0\]: expected a float64 numpy.ndarray, got "
                                                 f"{wrap(np.zeros((1, 1))).__class__.__name__}"):
        MockBackend(wrapped).execute(_net(), np.full((2, 4), 0.5))


def test_execute_many_gives_what_execute_gives_and_checks_a_shared_network_once(monkeypatch):
    backend = MockBackend(capabilities=Capabilities(weight_limit=1.0, weight_resolution=0.25, max_layers=2, exact=True))
    checked = []
    original = MockBackend.check_supported
    monkeypatch.setattr(MockBackend, "check_supported", lambda self, network: checked.append(network) or
                        original(self, network))
    shared = _net((4, 5, 3), seed=3).frozen_copy()
    rng = np.random.default_rng(0)
    requests = [ExecutionRequest(shared, rng.uniform(0.15, 2.0, (n, 4))) for n in (2, 5, 1)]
    requests.append(ExecutionRequest(_net((4, 5, 3), seed=4), rng.uniform(0.15, 2.0, (3, 4))))
    results = backend.execute_many(requests)
    assert len(checked) == 2  # the shared network once, the other one once
    assert all(r.network is backend.requests[0].network for r in backend.requests[:3])
    for request, result in zip(requests, results):
        assert "wall_seconds" in result.metadata
        for observed, expected in zip(result.layer_spike_times, forward(backend.represent(request.network),
                                                                        request.input_spike_times)):
            np.testing.assert_array_equal(observed, expected)
    assert backend.execute_many([]) == []
    with pytest.raises(UnsupportedNetworkError, match="max_layers"):  # checked before anything runs
        backend.execute_many([requests[0], ExecutionRequest(_net((4, 5, 5, 5, 3)), np.zeros((1, 4)))])
    assert len(backend.requests) == 4
    with pytest.raises(DelgradError, match="requests: expected ExecutionRequest"):
        backend.execute_many([shared])
    for wrong in (requests[0], shared, 3):
        with pytest.raises(DelgradError, match="requests: expected a list of ExecutionRequest objects"):
            backend.execute_many(wrong)
    assert len(backend.execute_many(iter(requests[:2]))) == 2  # any iterable of requests


def test_declarations_that_cannot_hold_are_refused():
    from delgrad_core import ConformanceProfile

    with pytest.raises(ValueError, match="Capabilities.delay_kinds: expected at least one delay kind"):
        Capabilities(delay_kinds=[])
    for fields, message in (({"exact_tolerance": -1e-9}, "exact_tolerance: expected a finite number >= 0"),
                            ({"min_silence_agreement": 1.5}, "min_silence_agreement: expected a fraction <= 1"),
                            ({"causality_tolerance": float("nan")}, "causality_tolerance: expected a finite number"),
                            ({"unsupported": {"agreemnt": "typo"}}, "the checks agreement, silence, training")):
        with pytest.raises(ValueError, match=message):
            ConformanceProfile(**fields)


def test_a_backend_object_is_not_pickled_or_copied():
    """(a used backend failed with "cannot pickle '_thread.lock' object"; an unused mock-hil
    copy started a service of its own)"""
    import copy
    import pickle

    backend = get_backend("reference")
    for travel in (pickle.dumps, copy.copy, copy.deepcopy):
        with pytest.raises(InvalidValueError, match="backend 'reference': a backend object cannot be pickled or "
                                                    "copied; give another process its name and options"):
            travel(backend)


class _Wayward(MockBackend):
    """A mock whose represent, check_resources and _close misbehave as configured."""

    def __init__(self, represent=None, resources=None, close=None, **kwargs):
        super().__init__(**kwargs)
        self._represent, self._resources, self._closing = represent, resources, close

    def represent(self, network):
        return self._represent(network) if self._represent else super().represent(network)

    def check_resources(self, network):
        return self._resources(network) if self._resources else None

    def _close(self):
        super()._close()
        if self._closing:
            self._closing()


def _fail(error):
    def raising(*args):
        raise error
    return raising


@pytest.mark.parametrize(("backend", "message"), [
    (_Wayward(represent=lambda n: None), "backend 'mock': represent returned NoneType, not a Network"),
    (_Wayward(represent=_fail(IndexError("list index out of range"))),
     "backend 'mock' failed while representing the network: IndexError: list index out of range"),
    (_Wayward(represent=lambda n: _net((4, 8, 3))), "backend 'mock': represent changed the network's layer sizes or "
                                                    "delay kinds (from [4, 10, 3] ['none', 'none'] to [4, 8, 3]"),
    (_Wayward(resources=_fail(KeyError("circuits"))),
     "backend 'mock' failed while checking its resources: KeyError: 'circuits'"),
    (_Wayward(resources=lambda n: 3), "backend 'mock': check_resources returned int, not a reason (a non-empty str) "
                                      "or None (it fits)"),
    (_Wayward(resources=lambda n: " "), "backend 'mock': check_resources returned an empty string, not a reason (a "
                                        "non-empty str) or None (it fits)"),  # (refused, saying nothing)
    (MockBackend(capabilities={"delay_kinds": ["none"]}),
     "backend 'mock': its capabilities are a dict, not a delgrad_core.Capabilities"),
])
def test_a_backends_own_mistakes_are_named_not_tracebacks(backend, message):
    """(each was an AttributeError, IndexError, KeyError or a numpy broadcasting error from deep
    inside the training step)"""
    with pytest.raises(DelgradError, match=re.escape(message)):
        backend.execute(_net(), np.zeros((1, 4)))


def test_closing_errors_are_named_and_do_not_hide_the_error_that_ended_the_block():
    with pytest.raises(DelgradError, match=r"backend 'mock' failed while closing: OSError: device gone"):
        with _Wayward(close=_fail(OSError("device gone"))):
            pass
    with pytest.warns(RuntimeWarning, match="failed while closing: OSError: device gone"):
        with pytest.raises(ZeroDivisionError):
            with _Wayward(close=_fail(OSError("device gone"))):
                raise ZeroDivisionError


def test_calibrate_refuses_a_network_that_is_not_one():
    """(it met the object's missing frozen_copy: AttributeError)"""
    for network in ("x", 3):
        with pytest.raises(InvalidValueError, match=f"^network: expected None or a delgrad_core.Network, got "
                                                    f"{type(network).__name__}$"):
            MockBackend().calibrate(network)


def test_a_calibration_of_another_backend_is_refused_where_it_is_made():
    class Borrowing(MockBackend):
        def _calibrate(self, network, seed, progress):
            return Calibration("reference", {}, calibration_key("reference"))

    with pytest.raises(InvalidResultError, match="backend 'mock': _calibrate returned a calibration of backend "
                                                 "'reference'"):
        Borrowing().calibrate()


def test_a_value_the_backends_own_code_refuses_names_the_backend():
    """(writing to the request's read-only network said only 'Projection.weights: part of a
    read-only network snapshot')"""
    def writes_to_the_request(request):
        request.network.layers[0].projection.weights = np.zeros((4, 10))

    with pytest.raises(InvalidValueError, match=r"^backend 'mock' while executing: Projection.weights: part "
                                                r"of a read-only network snapshot") as raised:
        MockBackend(writes_to_the_request).execute(_net(), np.zeros((1, 4)))
    assert isinstance(raised.value.__cause__, InvalidValueError)
    with pytest.raises(UnsupportedNetworkError, match="^no room"):  # (its own refusals pass as they are)
        MockBackend(_fail(UnsupportedNetworkError("no room", capability="resources"))).execute(_net(), np.zeros((1, 4)))


@pytest.mark.parametrize(("identity", "message"), [
    (None, "_device_identity returned None, not a table of backend, calibration_key, calibration_digest"),
    ({"backend": "mock", "calibration_key": "k"}, "not a table of backend, calibration_key, calibration_digest"),
    ({"backend": "mock", "calibration_key": "k", "calibration_digest": "d", "options": [1]}, "and options"),
    ({"backend": "mock", "calibration_key": "k", "calibration_digest": "d", "options": {"x": object()}},
     "_device_identity returned values JSON cannot hold"),
])
def test_a_device_identity_that_runs_cannot_record_is_refused(identity, message):
    class Odd(MockBackend):
        def _device_identity(self, calibration):
            return identity

    with pytest.raises(InvalidResultError, match=re.escape(f"backend 'mock': {message}") if identity is None
                       else re.escape(message)):
        Odd().device_identity(Odd().calibrate())


def test_the_default_device_identity_is_the_backends_name_and_calibration():
    backend = MockBackend()
    calibration = backend.calibrate()
    assert backend.device_identity(calibration) == {"backend": "mock", "calibration_key": calibration.cache_key,
                                                    "calibration_digest": calibration.digest}
    with pytest.raises(InvalidValueError, match="^calibration: expected a Calibration, got str$"):  # (a BackendError
        backend.device_identity("x")  # of the backend's own AttributeError)


def test_represent_receives_a_read_only_snapshot_in_training():
    """(training handed represent the trainer's own network, whose arrays a represent that
    clips in place would have changed under the optimiser)"""
    import delgrad_core as dg
    from delgrad_core.testing import MockBackend
    from delgrad_core.training import Trainer, TrainingConfig

    seen = []

    class Clipping(MockBackend):
        def represent(self, network):
            seen.append(network.layers[0].projection.weights.flags.writeable)
            return super().represent(network)

    backend = Clipping()
    with Trainer(TrainingConfig(hidden=4, epochs=1, batch_size=500), backend=backend) as trainer:
        trainer.fit(progress=False)
        backend.represent_checked(trainer.network)
    assert seen and not any(seen)
    assert isinstance(backend.represent_checked(dg.Network.feedforward([2, 2])), dg.Network)


def test_a_represent_that_changes_the_network_in_place_is_told_what_to_do():
    """(it failed with numpy's "output array is read-only" and nothing more)"""
    from delgrad_core import BackendError
    from delgrad_core.testing import MockBackend

    class InPlace(MockBackend):
        def represent(self, network):
            np.clip(network.layers[0].projection.weights, -1, 1, out=network.layers[0].projection.weights)
            return network

    with pytest.raises(BackendError, match=r"failed while representing the network: ValueError: .*read-only.* "
                                           r"\(represent receives a read-only snapshot of the network: build and "
                                           r"return a new Network instead of changing it\)"):
        InPlace().represent_checked(Network.feedforward([2, 3], seed=0))


@pytest.mark.parametrize("hook, doing", [("check_resources", "checking its resources"), ("_calibrate", "calibrating")])
def test_check_resources_and_calibrate_get_a_snapshot_not_the_callers_network(hook, doing):
    """(they got the caller's own network: a plugin that changed it in place changed the network
    being trained, silently)"""
    from delgrad_core import BackendError
    from delgrad_core.testing import MockBackend

    class InPlace(MockBackend):
        def check_resources(self, network):
            if hook == "check_resources":
                network.layers[0].projection.weights *= 0.5
            return None

        def _calibrate(self, network, seed, progress):
            if hook == "_calibrate":
                network.layers[0].projection.weights *= 0.5
            return super()._calibrate(network, seed, progress)

    network = Network.feedforward([2, 3], seed=0)
    weights = network.layers[0].projection.weights.copy()
    with pytest.raises(BackendError, match=rf"failed while {doing}: ValueError: .*read-only.* \({hook} receives a "
                                           r"read-only snapshot of the network: do not change it\)"):
        InPlace().calibrate(network) if hook == "_calibrate" else InPlace().can_run(network)
    np.testing.assert_array_equal(network.layers[0].projection.weights, weights)


def test_a_backends_own_backend_errors_name_it_and_an_empty_error_reads_well():
    """(a backend raising BackendUnavailable("board lost power") reached the user as "Error: board
    lost power; ..." with no word of which backend; a bare MemoryError read "MemoryError: ;" and
    a bare RuntimeError "RuntimeError: ")"""
    from delgrad_core import BackendError, BackendUnavailable, Network
    from delgrad_core.testing import MockBackend

    def lost(request):
        raise BackendUnavailable("board lost power", retryable=False)

    network = Network.feedforward([2, 3], seed=0)
    inputs = np.zeros((1, 2))
    with pytest.raises(BackendUnavailable, match=r"^backend 'mock': board lost power$") as info:
        MockBackend(lost).execute(network, inputs)
    assert info.value.retryable is False
    with pytest.raises(MemoryError):
        MockBackend(lambda request: (_ for _ in ()).throw(MemoryError())).execute(network, inputs)
    with pytest.raises(BackendError, match=r"^backend 'mock' failed while executing: RuntimeError$"):
        MockBackend(lambda request: (_ for _ in ()).throw(RuntimeError())).execute(network, inputs)


def test_a_string_key_that_looks_like_a_typed_key_keeps_its_own_cache_key():
    """(the key 1 is written "<int> 1": a string key "<int> 1" taken as it is shared its cache key)"""
    assert calibration_key("b", table={"<int> 1": 2}) != calibration_key("b", table={1: 2})


def test_a_conformance_profile_takes_the_bounds_of_its_ranges():
    """(docs/backends.md: negative tolerances and agreement fractions above 1 are refused, so 0
    and 1 themselves are not)"""
    from delgrad_core import ConformanceProfile

    profile = ConformanceProfile(exact_tolerance=0, max_median_error=0, min_silence_agreement=1, causality_tolerance=0)
    assert profile.min_silence_agreement == 1 and profile.exact_tolerance == 0
    with pytest.raises(ValueError, match="min_silence_agreement: expected a fraction <= 1"):
        ConformanceProfile(min_silence_agreement=1 + 1e-9)


@pytest.mark.parametrize("unsupported", [["training"], "training", ("silence",)])
def test_unsupported_checks_must_be_a_table_of_reasons(unsupported):
    """(a list of names gives no reason to skip them with)"""
    from delgrad_core import ConformanceProfile

    with pytest.raises(ValueError, match="ConformanceProfile.unsupported: expected a table of check name -> reason"):
        ConformanceProfile(unsupported=unsupported)


@pytest.mark.parametrize("reason", ["", "  ", None, 3])
def test_an_unsupported_check_needs_a_reason(reason):
    """(an empty reason was taken: the suite skipped the check saying nothing)"""
    from delgrad_core import ConformanceProfile

    with pytest.raises(InvalidValueError, match=rf"^ConformanceProfile.unsupported\['training'\]: expected the reason "
                                                rf"the backend cannot take part in the check \(a non-empty string\), "
                                                rf"got {re.escape(repr(reason))}$"):
        ConformanceProfile(unsupported={"training": reason})


class _Reporting(MockBackend):
    """Reports each of `reports` as calibration progress."""

    def __init__(self, reports):
        super().__init__()
        self.reports = reports

    def _calibrate(self, network, seed, progress):
        for done, total in self.reports:
            progress(done, total)
        return super()._calibrate(network, seed, progress)


@pytest.mark.parametrize("report", [(float("nan"), 3), (1, float("nan")), (1.5, 3), (True, 3), (4, 3), (-1, 3)])
def test_a_backends_progress_report_that_is_no_count_is_its_fault(report):
    """(a NaN ended `delgrad calibrate`'s bar in a traceback; done > total or a negative count
    passed without a word)"""
    from delgrad_core import InvalidResultError

    seen = []
    with pytest.raises(InvalidResultError, match=re.escape(
            f"backend 'mock': reported calibration progress {report!r}; expected whole numbers 0 <= done <= total")):
        _Reporting([(0, 3), report]).calibrate(progress=lambda done, total: seen.append((done, total)))
    assert seen == [(0, 3)]
    _Reporting([(np.int64(1), np.int64(3)), (3, 3)]).calibrate(progress=lambda *counts: seen.append(counts))
    assert seen[1:] == [(1, 3), (3, 3)] and type(seen[1][0]) is int


def test_calibrate_refuses_a_progress_that_cannot_be_called():
    for progress in (5, "bar"):
        with pytest.raises(InvalidValueError, match=f"^progress: expected None or a callable progress\\(done, "
                                                    f"total\\), got {type(progress).__name__}$"):
            MockBackend().calibrate(progress=progress)


@pytest.mark.parametrize("kept", [0, 1, 3])
def test_an_own_execute_many_returning_another_number_of_results_is_refused(kept):
    """(one result too few was one job's times lost without a word; too many, another's)"""
    class Miscounting(MockBackend):
        def _execute_many(self, requests):
            return [self._execute(requests[0]) for _ in range(kept)]

    requests = [ExecutionRequest(_net(), np.full((1, 4), 0.5))] * 2
    with pytest.raises(InvalidResultError, match=r"^backend 'mock': _execute_many returned no list of 2 results$"):
        Miscounting().execute_many(requests)


def test_wall_seconds_a_backend_reports_itself_are_kept():
    """(execute adds `wall_seconds` unless the backend set it: e.g. a device's own time)"""
    def reported(request):
        times = forward(request.network, request.input_spike_times)
        return ExecutionResult(times, {"wall_seconds": 2.5})

    backend, inputs = MockBackend(reported), np.full((1, 4), 0.5)
    assert backend.execute(_net(), inputs).metadata["wall_seconds"] == 2.5
    results = backend.execute_many([ExecutionRequest(_net(), inputs), ExecutionRequest(_net(seed=1), inputs)])
    assert [result.metadata["wall_seconds"] for result in results] == [2.5, 2.5]


def test_jobs_in_neighbouring_rows_of_one_buffer_do_not_share_memory():
    """(a backend may fill one array for the whole batch of jobs and hand each job its own rows:
    row i ends at the byte where row i + 1 begins, which is no overlap)"""
    class OneBuffer(MockBackend):
        def _execute_many(self, requests):
            hidden = np.empty((len(requests), 10))
            results = []
            for index, request in enumerate(requests):
                times = self._execute(request).layer_spike_times
                hidden[index] = times[0][0]
                results.append(ExecutionResult([hidden[index:index + 1], times[1].copy()]))
            return results

    requests = [ExecutionRequest(_net(), np.full((1, 4), time)) for time in (0.5, 0.7, 0.9)]
    results = OneBuffer().execute_many(requests)
    for result, request in zip(results, requests):
        np.testing.assert_array_equal(result.layer_spike_times[0], forward(request.network,
                                                                         request.input_spike_times)[0])


def test_jobs_sharing_a_buffer_read_backwards_are_refused():
    """(a reversed view starts at the buffer's last element: its bytes lie below its address)"""
    class Backwards(MockBackend):
        def _execute_many(self, requests):
            buffer = np.empty((1, 10))
            results = []
            for request in requests:
                hidden, output = self._execute(request).layer_spike_times
                buffer[:, ::-1] = hidden
                results.append(ExecutionResult([buffer[:, ::-1], output.copy()]))
            return results

    requests = [ExecutionRequest(_net(), np.full((1, 4), time)) for time in (0.5, 0.7)]
    with pytest.raises(InvalidResultError, match="_execute_many returned results of jobs 0 and 1 whose arrays share "
                                                 "memory"):
        Backwards().execute_many(requests)


def test_a_backend_error_that_names_its_backend_already_is_not_prefixed_again():
    from delgrad_core import BackendUnavailable, Network

    def lost(request):
        raise BackendUnavailable("backend 'mock': board 3 lost power", retryable=True)

    with pytest.raises(BackendUnavailable, match=r"^backend 'mock': board 3 lost power$"):
        MockBackend(lost).execute(Network.feedforward([2, 3], seed=0), np.zeros((1, 2)))


def test_a_represent_that_changes_a_delay_kind_is_refused():
    """(docs/backends.md: represent returns a network of the same layer sizes and delay kinds)"""
    class Rekinded(MockBackend):
        def represent(self, network):
            return _net(kind="axonal")

    with pytest.raises(InvalidResultError, match=r"^backend 'mock': represent changed the network's layer sizes or "
                                                 r"delay kinds \(from \[4, 10, 3\] \['none', 'none'\] to \[4, 10, 3\] "
                                                 r"\['axonal', 'axonal'\]\)"):
        Rekinded().execute(_net(), np.full((1, 4), 0.5))


def test_a_backend_may_reuse_its_metadata_table_from_job_to_job():
    """(as its arrays: each result keeps the facts of its own job)"""
    metadata = {}

    def counting(request):
        metadata["job"] = metadata.get("job", -1) + 1
        return ExecutionResult(forward(request.network, request.input_spike_times), metadata)

    inputs = np.full((1, 4), 0.5)
    results = MockBackend(counting).execute_many([ExecutionRequest(_net(), inputs)] * 3)
    assert [result.metadata["job"] for result in results] == [0, 1, 2]


@pytest.mark.parametrize("inputs", [None, np.zeros((1, 3))])
def test_an_unsupported_network_is_refused_before_its_inputs_are_read(inputs):
    """(no inputs would make the backend run it: the network is what to change first)"""
    backend = MockBackend(name="toy", capabilities=TOY)
    with pytest.raises(UnsupportedNetworkError, match="backend 'toy' does not support 3 layers"):
        backend.execute(_net((4, 5, 5, 3)), inputs)


def test_silence_agreement_passes_at_exactly_min_silence_agreement_so_1_asks_for_the_same_silent_sets():
    """docs/backends.md: silent/spiking must agree in *at least* min_silence_agreement of the
    entries (with "more than", 1 failed even a backend agreeing everywhere)."""
    from delgrad_core.testing import compare_spike_times

    expected = [np.array([[0.5, 1.0, np.inf, 2.0]])]
    same = compare_spike_times(expected, [np.array([[0.5, 1.0, np.inf, 2.0]])])
    three_of_four = compare_spike_times(expected, [np.array([[0.5, 1.0, np.inf, np.inf]])])
    assert same.statistical(max_median_error=0.1, min_silence=1.0)
    assert three_of_four.statistical(max_median_error=0.1, min_silence=0.75)
    assert three_of_four.statistical_problem(max_median_error=0.1, min_silence=0.8) == \
        "silent/spiking agreement 0.750, needs >= 0.8 (min_silence_agreement)"


def test_agreement_measures_match_a_hand_computed_example_per_layer_and_pooled():
    """Each measure of the module docstring of delgrad_core.testing._agreement, computed by hand:
    layer 0 has one entry silent only in the observation and errors 0.6, 0, 0.1 at expected
    times -3, 1, 2 (scaled by 1 + |expected|: 0.15, 0, 0.0333); layer 1 is silent in both."""
    from delgrad_core.testing import compare_layers, compare_spike_times

    expected = [np.array([[-3.0, 1.0, 2.0, np.inf, 5.0]]), np.array([[np.inf, np.inf]])]
    observed = [np.array([[-2.4, 1.0, 2.1, np.inf, np.inf]]), np.array([[np.inf, np.inf]])]
    first, silent = compare_layers(expected, observed)
    assert (first.silence_agreement, first.n_spiking_in_both) == (pytest.approx(4 / 5), 3)
    assert first.median_abs_error == pytest.approx(0.1) and first.max_abs_error == pytest.approx(0.6)
    assert first.max_scaled_error == pytest.approx(0.6 / 4)
    assert silent == Agreement(silence_agreement=1.0, median_abs_error=0.0, max_abs_error=0.0, max_scaled_error=0.0,
                               n_spiking_in_both=0)
    pooled = compare_spike_times(expected, observed)
    assert (pooled.silence_agreement, pooled.n_spiking_in_both) == (pytest.approx(6 / 7), 3)
    assert pooled.median_abs_error == pytest.approx(0.1) and pooled.max_scaled_error == pytest.approx(0.15)
    empty = compare_layers([np.zeros((0, 3))], [np.zeros((0, 3))])[0]  # (nothing to disagree on)
    assert empty.silence_agreement == 1.0 and empty.exact()


def test_agreement_bounds_are_inclusive_or_strict_as_documented():
    """docs/backends.md: exact backends within exact_tolerance (<=, "within"), silences identical
    (one entry in 200 differing fails); others a median error *below* max_median_error (<)."""
    from delgrad_core.testing import compare_spike_times

    half_off = compare_spike_times([np.array([[1.0]])], [np.array([[1.5]])])  # error 0.5, scaled 0.25
    assert half_off.exact(tolerance=0.25) and not half_off.exact(tolerance=0.2)
    assert not half_off.statistical(max_median_error=0.5, min_silence=0.0)
    assert half_off.statistical(max_median_error=0.51, min_silence=0.0)
    one_silent = compare_spike_times([np.ones((1, 200))], [np.append(np.ones(199), np.inf)[None]])
    assert one_silent.silence_agreement == pytest.approx(0.995) and not one_silent.exact(tolerance=1.0)
    assert one_silent.exact_problem() == "silent/spiking differs in 0.5% of the entries, allowed: none (exact backend)"


@pytest.mark.parametrize(("expected", "observed", "message"), [
    ([np.zeros((2, 3))], [np.zeros((3, 2))], r"observed\[0\]: expected shape \(2, 3\), got \(3, 2\)"),
    ([np.zeros((2, 3)), np.zeros((2, 1))], [np.zeros((2, 3))], "observed: expected 2 layers, got 1"),
])
def test_agreement_refuses_observations_of_another_shape_or_layer_count(expected, observed, message):
    """(the same number of entries in another shape would compare other neurons)"""
    from delgrad_core.testing import compare_layers, compare_spike_times

    for compare in (compare_layers, compare_spike_times):
        with pytest.raises(ValueError, match=message):
            compare(expected, observed)


def test_a_calibration_of_another_format_version_is_refused():
    from delgrad_core import FileFormatError
    from delgrad_core._npz import json_array, npz_bytes

    arrays = Calibration("toy", {"gain": 1}).archive_arrays()
    document = json.loads(arrays["calibration.json"].item())
    arrays["calibration.json"] = json_array({**document, "version": 2})
    with pytest.raises(FileFormatError, match=r"not a delgrad calibration \(format 'delgrad-calibration' version 2\)"):
        Calibration.from_bytes(npz_bytes(arrays))


def test_a_table_inside_a_list_keeps_the_type_of_its_keys_in_the_cache_key():
    """(JSON writes the key 1 as "1": {1: 2} and {"1": 2} must still differ, also inside a list)"""
    assert calibration_key("toy", gains=[{1: 2}]) != calibration_key("toy", gains=[{"1": 2}])


def test_a_mock_backend_runs_every_delay_kind_and_ratio_exactly_by_default():
    """(its docstring: default capabilities every delay kind and ratio, exact; tests rely on exact agreement)"""
    caps = MockBackend().capabilities
    assert caps.exact and caps.delay_kinds == set(DelayKind) and caps.tau_ratios is None
