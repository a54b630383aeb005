"""Backend conformance suite: run with ``python -m pytest --pyargs delgrad_core.testing --delgrad-backend NAME``.

Checks the interface contract, refusal of unsupported networks before anything runs (only for
capabilities the backend declares it lacks), determinism where declared, and agreement with the
ideal model (`delgrad_core.forward`, what the reference backend runs): exact or statistical by
`Capabilities.exact` (tolerances in `delgrad_core.testing._agreement`).  Cases the backend
declares it cannot run are skipped with the reason.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from delgrad_core import (
    Backend,
    Calibration,
    Capabilities,
    DelayKind,
    ExecutionResult,
    UnsupportedNetworkError,
    forward,
)
from delgrad_core.testing._agreement import (
    EXACT_TOLERANCE,
    MAX_MEDIAN_ERROR,
    MIN_SILENCE_AGREEMENT,
    compare_spike_times,
)
from delgrad_core.testing._cases import conformance_cases, make_network

CASES = conformance_cases()
CASE_IDS = [case.id for case in CASES]


def _supported_setting(caps: Capabilities) -> tuple[DelayKind, float]:
    """A delay kind and tau ratio the backend declares it supports."""
    kind = next(k for k in DelayKind if k in caps.delay_kinds)
    ratio = 2.0 if caps.supports_ratio(2.0) else caps.tau_ratios[0]
    return kind, ratio


def _require_supported(backend: Backend, network) -> None:
    try:
        backend.check_supported(network)
    except UnsupportedNetworkError as exc:
        pytest.skip(f"backend declares it cannot run this case: {exc}")


@pytest.fixture(scope="module")
def run_case(delgrad_backend):
    """Execute a case once (calibrating first, seed 0) and cache the result."""
    cache = {}

    def run(case):
        if case.id not in cache:
            _require_supported(delgrad_backend, case.network)
            calibration = delgrad_backend.calibrate(case.network, seed=0)
            cache[case.id] = delgrad_backend.execute(
                case.network, case.input_spike_times, calibration=calibration, seed=0
            )
        return cache[case.id]

    return run


def test_name_and_capabilities(delgrad_backend):
    assert isinstance(delgrad_backend, Backend)
    assert isinstance(delgrad_backend.name, str) and delgrad_backend.name
    caps = delgrad_backend.capabilities
    assert isinstance(caps, Capabilities)
    as_dict = json.loads(json.dumps(caps.to_dict()))
    assert Capabilities.from_dict(as_dict) == caps


def test_calibration_round_trip(delgrad_backend):
    network = CASES[0].network
    _require_supported(delgrad_backend, network)
    calibration = delgrad_backend.calibrate(network, seed=0)
    assert isinstance(calibration, Calibration)
    assert calibration.backend == delgrad_backend.name
    text = calibration.to_json()
    json.loads(text)
    restored = Calibration.from_json(text)
    assert restored == calibration
    result = delgrad_backend.execute(network, CASES[0].input_spike_times[:4], calibration=restored, seed=0)
    assert isinstance(result, ExecutionResult)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_result_contract(run_case, case):
    result = run_case(case)
    assert isinstance(result, ExecutionResult)
    assert isinstance(result.metadata, dict) and all(isinstance(key, str) for key in result.metadata)
    assert isinstance(result.layer_spike_times, list)
    assert len(result.layer_spike_times) == len(case.network.layers)
    batch = case.input_spike_times.shape[0]
    for times, layer in zip(result.layer_spike_times, case.network.layers):
        assert isinstance(times, np.ndarray) and times.dtype.kind == "f"
        assert times.shape == (batch, layer.population.size)
        assert not np.any(np.isnan(times)), "NaN spike times (silence must be +inf)"
        assert not np.any(times == -np.inf), "-inf spike times (silence must be +inf)"


def test_silence_is_positive_infinity(delgrad_backend):
    caps = delgrad_backend.capabilities
    kind, ratio = _supported_setting(caps)
    network = make_network((4, 5, 3), kind, ratio)
    _require_supported(delgrad_backend, network)
    calibration = delgrad_backend.calibrate(network, seed=0)
    silent_inputs = np.full((3, 4), np.inf)
    result = delgrad_backend.execute(network, silent_inputs, calibration=calibration, seed=0)
    for times in result.layer_spike_times:
        assert times.shape[0] == 3 and np.all(times == np.inf)
    for layer in network.layers:  # purely inhibitory network: nobody may spike
        layer.projection.weights = -np.abs(layer.projection.weights) - 0.1
    result = delgrad_backend.execute(network, np.full((3, 4), 0.5), calibration=calibration, seed=0)
    assert all(np.all(times == np.inf) for times in result.layer_spike_times)


def test_rejects_inputs_of_wrong_shape(delgrad_backend):
    network = CASES[0].network
    _require_supported(delgrad_backend, network)
    calibration = delgrad_backend.calibrate(network, seed=0)
    with pytest.raises(ValueError, match="input_spike_times"):
        delgrad_backend.execute(network, np.zeros((2, network.input.size + 1)), calibration=calibration)


def _violating_network(capability: str, caps: Capabilities, kind_name: str | None):
    """A network needing exactly one capability the backend lacks, or None if it has it."""
    kind, ratio = _supported_setting(caps)
    if capability == "delay_kinds":
        missing = DelayKind(kind_name)
        return None if missing in caps.delay_kinds else make_network((2, 3, 2), missing, ratio)
    if capability == "tau_ratios":
        if caps.tau_ratios is None:
            return None
        return make_network((2, 3, 2), kind, max(caps.tau_ratios) * 1.5 + 0.5)
    limit = getattr(caps, capability)
    if limit is None:
        return None
    sizes = {
        "max_inputs": (limit + 1, 1),
        "max_layer_size": (1, limit + 1),
        "max_layers": (1,) * (limit + 2),
    }[capability]
    return make_network(sizes, kind, ratio)


REFUSALS = [("delay_kinds", kind.value) for kind in DelayKind] + [
    (name, None) for name in ("tau_ratios", "max_inputs", "max_layer_size", "max_layers")
]


@pytest.mark.parametrize(("capability", "kind_name"), REFUSALS, ids=[f"{c}-{k}" if k else c for c, k in REFUSALS])
def test_refuses_unsupported_before_running(delgrad_backend, monkeypatch, capability, kind_name):
    caps = delgrad_backend.capabilities
    network = _violating_network(capability, caps, kind_name)
    if network is None:
        what = f"delay kind {kind_name!r}" if kind_name else f"{capability} = {getattr(caps, capability)!r}"
        pytest.skip(f"backend supports {what}")
    calls = []
    monkeypatch.setattr(delgrad_backend, "_execute", lambda *args, **kwargs: calls.append(args))
    with pytest.raises(UnsupportedNetworkError) as info:
        delgrad_backend.check_supported(network)
    assert info.value.capability == capability
    with pytest.raises(UnsupportedNetworkError):
        delgrad_backend.calibrate(network, seed=0)
    with pytest.raises(UnsupportedNetworkError) as info:
        delgrad_backend.execute(network, np.zeros((1, network.input.size)))
    assert info.value.capability == capability and delgrad_backend.name in str(info.value)
    assert calls == [], "the backend ran before refusing an unsupported network"


@pytest.mark.parametrize("case", [CASES[0], CASES[-1]], ids=[CASES[0].id, CASES[-1].id])
def test_deterministic_when_declared(delgrad_backend, run_case, case):
    if not delgrad_backend.capabilities.deterministic:
        pytest.skip("backend declares itself non-deterministic")
    first = run_case(case)
    calibration = delgrad_backend.calibrate(case.network, seed=1)
    again = delgrad_backend.execute(case.network, case.input_spike_times, calibration=calibration, seed=1)
    for a, b in zip(first.layer_spike_times, again.layer_spike_times):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_agreement_with_reference(delgrad_backend, run_case, case):
    observed = run_case(case).layer_spike_times
    expected = forward(case.network, case.input_spike_times)
    agreement = compare_spike_times(expected, observed)
    if delgrad_backend.capabilities.exact:
        assert agreement.exact(), (
            f"exact backend differs from the reference beyond {EXACT_TOLERANCE:g}: {agreement}"
        )
    else:
        assert agreement.statistical(), (
            f"needs silent/spiking agreement > {MIN_SILENCE_AGREEMENT:g} and median |error| < "
            f"{MAX_MEDIAN_ERROR:g} tau_s: {agreement}"
        )
