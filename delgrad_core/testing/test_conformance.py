"""Backend conformance suite: run with ``python -m pytest --pyargs delgrad_core.testing --delgrad-backend NAME``.

The cases are generated from what the backend declares (`conformance_cases`): every supported
delay kind x every supported tau ratio, within its size, weight and delay limits.  Checked: the
interface contract, refusal of unsupported networks before anything runs, `represent` (within
the limits, idempotent), determinism and seed independence where declared, agreement with the
ideal model run on `represent(network)`, layer by layer (exact or statistical, with the
tolerances of the backend's `ConformanceProfile`), causality (no neuron spikes before its inputs
arrive), observed arrival times, jobs of one sample and layers of one neuron, a job without a
calibration where none is needed, every delay of the declared range (`delay_lines`), inputs in
copies where the backend takes them (`input_copies`: one delay per input), and that one
epoch of exact gradients at the backend's times lowers the loss.  Checks the backend declares
unsupported are skipped with its reason, and so are checks whose network it refuses (a
capability it lacks, or its resources).  A `calibrate` that raises is one error; the other
checks that need a calibration are skipped.

Every assert carries its message: pytest does not rewrite the asserts of this module when it is
loaded by an editable install's import hook.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import traceback
import warnings

import numpy as np
import pytest

from delgrad_core import (
    Backend,
    Calibration,
    Capabilities,
    ConformanceProfile,
    DelayKind,
    DelgradError,
    ExecutionRequest,
    ExecutionResult,
    InvalidValueError,
    UnsupportedNetworkError,
    backend_info,
    forward,
    get_backend,
)
from delgrad_core._plugins import capability_differences
from delgrad_core.testing._agreement import compare_layers
from delgrad_core.testing._cases import (
    BATCH_SIZE,
    batch_within,
    conformance_cases,
    delay_lines,
    drive_scale,
    input_copies,
    input_lines,
    input_times,
    make_network,
    supported_setting,
    within_layers,
)
from delgrad_core.testing.plugin import backend_under_test, selected_backend


MAX_EXACT_TOLERANCE = 1e-6  # (an exact backend's own exact_tolerance; the default is 1e-9)
# The loosest statistical profile the suite accepts: beyond these a backend's spikes have little to do with
# the model's (half a synaptic time constant off in the median, half its silences wrong).
LOOSEST_PROFILE = {"max_median_error": 0.5, "causality_tolerance": 0.5}  # tau_s, at most
LEAST_SILENCE_AGREEMENT = 0.5


def _profile(backend: Backend) -> ConformanceProfile:
    """`backend.conformance_profile()`, which must be a `ConformanceProfile`."""
    profile = backend.conformance_profile()
    if not isinstance(profile, ConformanceProfile):
        pytest.fail(f"{type(backend).__name__}.conformance_profile() returned a {type(profile).__name__}; expected a "
                    f"delgrad_core.ConformanceProfile (e.g. ConformanceProfile(max_median_error=0.03))", pytrace=False)
    if backend.capabilities.exact and profile.exact_tolerance > MAX_EXACT_TOLERANCE:
        tolerance = profile.exact_tolerance
        pytest.fail(f"backend {backend.name!r} ({type(backend).__name__}) declares exact=True with exact_tolerance "
                    f"{tolerance:g}; an exact backend matches the ideal model to at most {MAX_EXACT_TOLERANCE:g} "
                    "(1 + |t|): declare exact=False to be compared statistically "
                    "(ConformanceProfile.max_median_error)", pytrace=False)
    return profile


def _refuse_loose(profile: ConformanceProfile, *names: str, check: str | None = None) -> None:
    """Fail a check that judges by the statistical tolerances `names` of `profile` where they are
    looser than the suite accepts (only where a check reads them: an exact backend may leave them
    anywhere).  `check`: the name under which the check can be declared unsupported, if any."""
    loose = [f"{name} {getattr(profile, name):g} tau_s (at most {LOOSEST_PROFILE[name]:g})" for name in names
             if name in LOOSEST_PROFILE and getattr(profile, name) > LOOSEST_PROFILE[name]]
    if "min_silence_agreement" in names and profile.min_silence_agreement < LEAST_SILENCE_AGREEMENT:
        loose.append(f"min_silence_agreement {profile.min_silence_agreement:g} (at least {LEAST_SILENCE_AGREEMENT:g})")
    if loose:
        advice = (f"declare {check!r} unsupported instead, with the reason" if check is not None else
                  "this check reads them whatever the backend declares unsupported: declare tolerances within these "
                  "limits")
        pytest.fail(f"the backend's conformance_profile() is looser than the suite accepts: {'; '.join(loose)}; a "
                    f"backend that far from the model does not conform ({advice})", pytrace=False)


def _skip_if_declared_unsupported(backend: Backend, check: str) -> None:
    reason = _profile(backend).unsupported.get(check)
    if reason is not None:
        pytest.skip(f"backend declares {check!r} unsupported: {reason}")


def _skip_refused(error: UnsupportedNetworkError) -> None:
    """Skip the test with the backend's refusal (of a capability it lacks, or for its resources)."""
    if error.capability == "resources":
        pytest.skip(f"backend refuses the network for lack of resources: {error}")
    pytest.skip(f"backend declares it cannot run this case: {error}")


def _require_supported(backend: Backend, network) -> None:
    """Skip the test if `check_supported` refuses `network` (a capability the backend lacks, or
    its resources: `check_resources`)."""
    try:
        backend.check_supported(network)
    except UnsupportedNetworkError as error:
        _skip_refused(error)


@contextlib.contextmanager
def _resources_permitting():
    """Skip the test if the backend refuses its work for lack of resources when it runs it (e.g.
    a placement that depends on the calibration): `UnsupportedNetworkError` "resources"."""
    try:
        yield
    except UnsupportedNetworkError as error:
        if error.capability != "resources":
            raise
        _skip_refused(error)


def pytest_generate_tests(metafunc):
    """Parametrise `case` with the cases generated from the backend's declared capabilities."""
    try:
        capabilities = _cases_for(metafunc.config)[1]
    except pytest.UsageError as exc:  # one collection error showing the message, without a traceback
        raise pytest.Collector.CollectError(str(exc)) from None
    if "case" in metafunc.fixturenames:
        cases = conformance_cases(capabilities)
        if metafunc.function.__name__ == "test_deterministic_when_declared":
            cases = [cases[0], cases[-1]] if len(cases) > 1 else cases
        metafunc.parametrize("case", cases, ids=[case.id for case in cases])


_CASES_FOR = pytest.StashKey[tuple]()  # (name, capabilities) the cases were generated for


def _cases_for(config) -> tuple[str, Capabilities]:
    """(name, capabilities) of the backend under test: those registered, or those of the backend
    built with the options (they may depend on them).  The backend is built here, while
    collecting, so that a factory that raises is one usage error rather than one per test."""
    if _CASES_FOR not in config.stash:
        name, options = selected_backend(config)
        backend = backend_under_test(config)
        registered = backend_info(name).details.get("capabilities")
        try:
            capabilities = backend.capabilities if options or registered is None else registered
        except Exception as exc:  # plugin code may raise anything
            raise pytest.UsageError(f"--delgrad-backend {name}: reading the backend's capabilities failed: "
                                    f"{type(exc).__name__}: {exc}") from None
        config.stash[_CASES_FOR] = (name, capabilities)
    return config.stash[_CASES_FOR]


@pytest.fixture(scope="module", autouse=True)
def backend_matches_the_cases(request, delgrad_backend):
    """The cases come from the named backend's registered capabilities (before any fixture runs):
    a backend object reporting others would run cases it does not declare.  (A conftest that
    swaps in another backend is refused while collecting: `plugin.pytest_collection_modifyitems`.)"""
    name, capabilities = request.config.stash.get(_CASES_FOR, (delgrad_backend.name, delgrad_backend.capabilities))
    if delgrad_backend.capabilities != capabilities:
        differ = capability_differences(capabilities, delgrad_backend.capabilities, "reported")
        pytest.exit(f"backend {name!r} registers other capabilities than its backend object reports ({differ}); the "
                    f"cases are made from the registered ones: register the backend's own capabilities", returncode=4)


_CALIBRATION = pytest.StashKey[tuple]()  # (calibration, None) or (None, the test that reported calibrate's error)


def _calibration_failure(name: str, error: Exception) -> str:
    """What `calibrate` raised in one line, then the traceback of the plugin's own exception
    (the root of the chain: delgrad wraps it in a `BackendError`)."""
    cause = error
    while cause.__cause__ is not None:
        cause = cause.__cause__
    return (f"--delgrad-backend {name}: calibrate(seed=0) raised {type(error).__name__}: {error}; the checks that need "
            f"a calibration are skipped\n\n{''.join(traceback.format_exception(cause))}")


@pytest.fixture
def calibration(request, delgrad_backend):
    """The backend's calibration (seed 0), made once per session.  If `calibrate` raises, the first
    test that needs it errors with the exception, and every later one is skipped pointing there."""
    stash, name = request.config.stash, delgrad_backend.name
    if _CALIBRATION not in stash:
        error = None
        try:
            stash[_CALIBRATION] = (delgrad_backend.calibrate(seed=0), None)
        except Exception as exc:  # plugin code may raise anything
            stash[_CALIBRATION], error = (None, request.node.name), exc
        if error is not None:  # (outside the except block, or pytest prints the error twice)
            pytest.fail(_calibration_failure(name, error), pytrace=False)
    calibrated, reported_by = stash[_CALIBRATION]
    if calibrated is None:
        pytest.skip(f"backend {name!r}: calibrate(seed=0) failed (its error is reported by {reported_by})")
    return calibrated


@pytest.fixture(scope="module")
def case_results() -> dict:
    """The results of the cases run so far (seed 0), by case id."""
    return {}


@pytest.fixture
def run_case(delgrad_backend, calibration, case_results):
    """Execute a case once (seed 0) and cache the result."""

    def run(case):
        if case.id not in case_results:
            _require_supported(delgrad_backend, case.network)
            with _resources_permitting():
                case_results[case.id] = delgrad_backend.execute(case.network, case.input_spike_times,
                                                                calibration=calibration, seed=0)
        return case_results[case.id]

    return run


def test_name_and_capabilities(delgrad_backend, request):
    assert isinstance(delgrad_backend, Backend), \
        f"the backend is a {type(delgrad_backend).__name__}, not a delgrad_core.Backend"
    assert isinstance(delgrad_backend.name, str) and delgrad_backend.name, \
        f"Backend.name must be a non-empty string, got {delgrad_backend.name!r}"
    caps = delgrad_backend.capabilities
    assert isinstance(caps, Capabilities), f"capabilities is a {type(caps).__name__}, not a delgrad_core.Capabilities"
    assert Capabilities.from_dict(caps.to_dict()) == caps, \
        f"the capabilities do not survive Capabilities.from_dict(to_dict()): {caps}"
    _profile(delgrad_backend)
    try:
        registration = backend_info(delgrad_backend.name)
    except LookupError:
        pytest.skip("backend object is not registered by a plugin")
    if registration.details.get("capabilities") is None:
        return
    if not selected_backend(request.config)[1]:
        assert registration.capabilities == caps, ("the capabilities registered with the plugin differ from the "
                                                   "backend's")
        return
    # (with options the cases follow the backend built with them; the registered capabilities, which
    # `delgrad backends` shows, are those of the backend built without any)
    try:
        default = get_backend(delgrad_backend.name)
    except Exception as exc:  # plugin code may raise anything
        pytest.skip(f"the backend cannot be built without options ({type(exc).__name__}: {exc}), so its registered "
                    "capabilities cannot be compared with its own")
    with default:
        differ = capability_differences(registration.capabilities, default.capabilities, "reported")
    assert not differ, (f"backend {delgrad_backend.name!r} registers other capabilities than it reports when built "
                        f"without options ({differ}): register the backend's own capabilities")


def test_calibration_round_trip(delgrad_backend, calibration):
    assert isinstance(calibration, Calibration), \
        f"calibrate() returned a {type(calibration).__name__}, not a delgrad_core.Calibration"
    assert calibration.backend == delgrad_backend.name, \
        f"Calibration.backend is {calibration.backend!r}, expected the backend's name {delgrad_backend.name!r}"
    restored = Calibration.from_bytes(calibration.to_bytes())
    assert restored == calibration and restored.digest == calibration.digest, \
        "Calibration.from_bytes(to_bytes()) differs from the calibration (values, arrays or digest)"
    kind, ratio = supported_setting(delgrad_backend.capabilities)
    network = make_network(within_layers((4, 5, 3), delgrad_backend.capabilities), kind, ratio,
                           capabilities=delgrad_backend.capabilities)
    _require_supported(delgrad_backend, network)
    with _resources_permitting():
        result = delgrad_backend.execute(network, np.full((batch_within(delgrad_backend.capabilities, 4), 4), 0.5),
                                         calibration=restored, seed=0)
    assert isinstance(result, ExecutionResult), \
        f"execute with the restored calibration returned a {type(result).__name__}, not an ExecutionResult"


def test_result_contract(run_case, case):
    result = run_case(case)
    assert isinstance(result, ExecutionResult), f"execute returned a {type(result).__name__}, not an ExecutionResult"
    assert isinstance(result.metadata, dict) and all(isinstance(key, str) for key in result.metadata), \
        f"metadata must be a dict with string keys, got {result.metadata!r}"
    assert isinstance(result.layer_spike_times, list), \
        f"layer_spike_times is a {type(result.layer_spike_times).__name__}, expected a list"
    assert len(result.layer_spike_times) == len(case.network.layers), \
        f"layer_spike_times has {len(result.layer_spike_times)} arrays, expected one per layer: " \
        f"{len(case.network.layers)}"
    batch = case.input_spike_times.shape[0]
    for k, (times, layer) in enumerate(zip(result.layer_spike_times, case.network.layers)):
        assert isinstance(times, np.ndarray) and times.dtype.kind == "f", \
            f"layer_spike_times[{k}]: expected a float array, got {type(times).__name__} {getattr(times, 'dtype', '')}"
        assert times.shape == (batch, layer.population.size), \
            f"layer_spike_times[{k}]: expected shape {(batch, layer.population.size)}, got {times.shape}"
        assert not np.any(np.isnan(times)), f"layer_spike_times[{k}]: NaN spike times (silence must be +inf)"
        assert not np.any(times == -np.inf), f"layer_spike_times[{k}]: -inf spike times (silence must be +inf)"
    restored = ExecutionResult.from_bytes(result.to_bytes())
    for k, (a, b) in enumerate(zip(restored.layer_spike_times, result.layer_spike_times)):
        assert a.tobytes() == b.tobytes(), \
            f"layer_spike_times[{k}] differs after ExecutionResult.from_bytes(to_bytes())"


def test_silence_is_positive_infinity(delgrad_backend, calibration):
    _skip_if_declared_unsupported(delgrad_backend, "silence")
    batch = batch_within(delgrad_backend.capabilities, 3)
    kind, ratio = supported_setting(delgrad_backend.capabilities)
    network = make_network(within_layers((4, 5, 3), delgrad_backend.capabilities), kind, ratio,
                           capabilities=delgrad_backend.capabilities)
    _require_supported(delgrad_backend, network)
    with _resources_permitting():
        result = delgrad_backend.execute(network, np.full((batch, 4), np.inf), calibration=calibration, seed=0)
    for k, times in enumerate(result.layer_spike_times):
        assert times.shape[0] == batch and np.all(times == np.inf), \
            f"layer {k} spikes without any input (all inputs +inf): expected +inf everywhere, got {times.tolist()}"
    for layer in network.layers:  # purely inhibitory network: nobody may spike
        layer.projection.weights = -np.abs(layer.projection.weights) - 0.1
    with _resources_permitting():
        result = delgrad_backend.execute(network, np.full((batch, 4), 0.5), calibration=calibration, seed=0)
    spiking = [k for k, times in enumerate(result.layer_spike_times) if not np.all(times == np.inf)]
    assert not spiking, f"layers {spiking} spike in a purely inhibitory network (every weight < 0): expected +inf"


def test_rejects_inputs_of_wrong_shape(delgrad_backend, calibration):
    kind, ratio = supported_setting(delgrad_backend.capabilities)
    network = make_network(within_layers((4, 5, 3), delgrad_backend.capabilities), kind, ratio,
                           capabilities=delgrad_backend.capabilities)
    _require_supported(delgrad_backend, network)
    with pytest.raises(InvalidValueError, match="input_spike_times"):
        delgrad_backend.execute(network, np.zeros((batch_within(delgrad_backend.capabilities, 2),
                                                   network.input.size + 1)), calibration=calibration)


def _violating_network(capability: str, caps: Capabilities, kind_name: str | None):
    """A network needing exactly one capability the backend lacks, or None if it has it."""
    kind, ratio = supported_setting(caps)
    if capability == "delay_kinds":
        missing = DelayKind(kind_name)
        if missing in caps.delay_kinds:
            return None
        return make_network(within_layers((2, 3, 2), caps), missing, ratio, capabilities=caps)
    if capability == "tau_ratios":
        if caps.tau_ratios is None:
            return None
        return make_network(within_layers((2, 3, 2), caps), kind, max(caps.tau_ratios) * 1.5 + 0.5, capabilities=caps)
    limit = getattr(caps, capability)
    if limit is None:
        return None
    sizes = {
        "max_inputs": (limit + 1, 1),
        "max_layer_size": (1, limit + 1),
        "max_layers": (1,) * (limit + 2),
    }[capability]
    return make_network(sizes, kind, ratio, capabilities=caps)


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
    assert info.value.capability == capability, \
        f"check_supported names the capability {info.value.capability!r}, expected {capability!r}"
    assert delgrad_backend.can_run(network) == str(info.value), \
        f"can_run gives {delgrad_backend.can_run(network)!r}, expected check_supported's reason {str(info.value)!r}"
    with pytest.raises(UnsupportedNetworkError):
        delgrad_backend.calibrate(network, seed=0)
    with pytest.raises(UnsupportedNetworkError) as info:
        delgrad_backend.execute(network, np.zeros((1, network.input.size)))
    assert info.value.capability == capability and delgrad_backend.name in str(info.value), \
        f"execute's refusal must name the capability {capability!r} and the backend: {info.value}"
    assert calls == [], "the backend ran before refusing an unsupported network"


def test_refuses_batches_above_the_declared_limit(delgrad_backend, calibration, monkeypatch):
    limit = delgrad_backend.capabilities.max_batch_size
    if limit is None:
        pytest.skip("backend declares no batch limit")
    kind, ratio = supported_setting(delgrad_backend.capabilities)
    network = make_network(within_layers((2, 3, 2), delgrad_backend.capabilities), kind, ratio,
                           capabilities=delgrad_backend.capabilities)
    _require_supported(delgrad_backend, network)
    calls = []
    monkeypatch.setattr(delgrad_backend, "_execute", lambda *args, **kwargs: calls.append(args))
    with pytest.raises(UnsupportedNetworkError, match="max_batch_size"):
        delgrad_backend.execute(network, np.full((limit + 1, 2), 0.5), calibration=calibration)
    assert calls == [], f"the backend ran a batch of {limit + 1} before refusing it (max_batch_size = {limit})"


def _assert_on_grid(values: np.ndarray, resolution: float, what: str) -> None:
    steps = values / resolution
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-9,
                               err_msg=f"{what} are not multiples of the declared resolution {resolution:g}")


def test_represent_respects_the_declared_limits(delgrad_backend, case):
    caps = delgrad_backend.capabilities
    neuron = case.network.layers[0].population.neuron
    wild = make_network(case.network.sizes, case.network.layers[0].projection.delay_kind,
                        float(np.ravel(neuron.tau_m)[0] / np.ravel(neuron.tau_s)[0]), seed=7,
                        copies=input_copies(caps, case.network.input.size))
    for layer in wild.layers:
        layer.projection.weights = layer.projection.weights * 5.0
        if layer.projection.delays is not None:
            layer.projection.delays = layer.projection.delays * 20.0
    _require_supported(delgrad_backend, wild)
    ran = delgrad_backend.represent_checked(wild)
    again = delgrad_backend.represent_checked(ran)
    for k, (layer, twice) in enumerate(zip(ran.layers, again.layers)):
        weights, delays = layer.projection.weights, layer.projection.delays
        np.testing.assert_array_equal(twice.projection.weights, weights,
                                      err_msg=f"layer {k}: represent is not idempotent (weights)")
        if caps.weight_limit is not None:
            assert np.all(np.abs(weights) <= caps.weight_limit * (1 + 1e-12)), \
                f"layer {k}: represented |weights| up to {np.abs(weights).max():g}, above weight_limit " \
                f"{caps.weight_limit:g}"
        if caps.weight_resolution is not None:
            _assert_on_grid(weights, caps.weight_resolution, f"layer {k}: represented weights")
        if delays is not None:
            np.testing.assert_array_equal(twice.projection.delays, delays,
                                          err_msg=f"layer {k}: represent is not idempotent (delays)")
            if caps.delay_range is not None:
                low, high = caps.delay_range
                assert np.all((delays >= low - 1e-12) & (delays <= high + 1e-12)), \
                    f"layer {k}: represented delays in [{delays.min():g}, {delays.max():g}], outside delay_range " \
                    f"[{low:g}, {high:g}]"
            if caps.delay_resolution is not None:
                _assert_on_grid(delays, caps.delay_resolution, f"layer {k}: represented delays")


def _differences(expected: list, observed: list) -> str | None:
    """Where two lists of spike-time arrays differ, e.g. 'layer 1: 3 of 96 times differ (largest by
    0.002 tau_s)', or None if they are identical."""
    if len(expected) != len(observed):
        return f"{len(observed)} layers instead of {len(expected)}"
    for k, (a, b) in enumerate(zip(expected, observed)):
        if a.shape != b.shape:
            return f"layer {k}: shape {b.shape} instead of {a.shape}"
        differ = a != b
        if differ.any():
            both = differ & np.isfinite(a) & np.isfinite(b)
            largest = f"largest by {np.abs(a[both] - b[both]).max():.3g} tau_s" if both.any() else "silent vs spiking"
            return f"layer {k}: {int(differ.sum())} of {a.size} spike times differ ({largest})"
    return None


def _assert_same_times_with_seed(backend, calibration, run_case, case, seed: int, declaration: str) -> None:
    """The case run again with `seed` gives the spike times of its first run (seed 0)."""
    first = run_case(case)
    again = backend.execute(case.network, case.input_spike_times, calibration=calibration, seed=seed)
    difference = _differences(first.layer_spike_times, again.layer_spike_times)
    assert difference is None, (f"case {case.id}: the backend declares {declaration}, but running the request again "
                                f"with seed {seed} gave other spike times than its first run with seed 0: {difference}")


def test_deterministic_when_declared(delgrad_backend, calibration, run_case, case):
    if not delgrad_backend.capabilities.deterministic:
        pytest.skip("backend declares that the same seed may give different results")
    _assert_same_times_with_seed(delgrad_backend, calibration, run_case, case, seed=0, declaration=
                                 "deterministic=True (the same request and seed always give the same result)")


def _supported_network(backend) -> tuple:
    """(network, input lines): a lines-6-3 network in a delay kind and ratio `backend` supports,
    its inputs in the copies it takes (the test is skipped if the backend refuses it)."""
    caps = backend.capabilities
    kind, ratio = supported_setting(caps)
    lines = input_lines(caps)
    network = make_network(within_layers((lines, 6, 3), caps), kind, ratio, capabilities=caps,
                           copies=input_copies(caps, lines))
    _require_supported(backend, network)
    return network, lines


def test_execute_many_matches_execute(delgrad_backend, calibration):
    """`execute_many` gives, request by request, what `execute` gives (several seeds and
    batches in one call, so a backend that keeps jobs in flight must keep them apart; three of
    one batch size, so one that fills the same buffers for each job is seen)."""
    if not delgrad_backend.capabilities.deterministic:
        pytest.skip("backend declares that the same seed may give different results")
    caps = delgrad_backend.capabilities
    network, lines = _supported_network(delgrad_backend)
    rng = np.random.default_rng(7)
    requests = [ExecutionRequest(network, input_times(rng, batch_within(caps, batch), lines, caps, 0.2), calibration,
                                 seed) for batch, seed in zip((3, 4, 3, 5, 3), (0, 1, 0, 2, 1))]
    with _resources_permitting():
        many = delgrad_backend.execute_many(requests)
    assert isinstance(many, list) and len(many) == len(requests), \
        f"execute_many of {len(requests)} requests returned {type(many).__name__} of length {len(many)}"
    for i, (request, result) in enumerate(zip(requests, many)):
        difference = _differences(delgrad_backend.execute(request).layer_spike_times, result.layer_spike_times)
        assert difference is None, \
            f"execute_many's result {i} (batch {request.batch_size}, seed {request.seed}) differs from execute's: " \
            f"{difference}"
    assert delgrad_backend.execute_many([]) == [], "execute_many([]) must return []"


def test_seed_independent_when_declared(delgrad_backend, calibration, run_case, case):
    if not delgrad_backend.capabilities.seed_independent:
        pytest.skip("backend declares that results depend on the seed")
    _assert_same_times_with_seed(delgrad_backend, calibration, run_case, case, seed=12345, declaration=
                                 "seed_independent=True (the result does not depend on the seed)")


def test_seed_dependent_when_declared(delgrad_backend, calibration):
    """A backend that declares results depending on the seed draws other noise for another seed
    (one that ignores the seed would give every training step the same noise)."""
    if delgrad_backend.capabilities.seed_independent:
        pytest.skip("backend declares that results do not depend on the seed")
    caps = delgrad_backend.capabilities
    network, lines = _supported_network(delgrad_backend)
    inputs = input_times(np.random.default_rng(8), batch_within(caps, 20), lines, caps, 0.2)
    with _resources_permitting():
        runs = [delgrad_backend.execute(ExecutionRequest(network, inputs, calibration, seed)).layer_spike_times
                for seed in (1, 2)]
    if not any(np.isfinite(times).any() for times in runs[0]):
        pytest.skip("no neuron spiked, so no noise could show")
    assert any(not np.array_equal(a, b) for a, b in zip(*runs)), (
        "seeds 1 and 2 gave the same spike times: the backend declares seed_independent=False, but its results "
        "do not depend on ExecutionRequest.seed (draw the noise from the request's seed)")


def _layer_label(network, k: int) -> str:
    population = network.layers[k].population
    return f"layer {k} ({population.name!r}, {population.size} neurons)"


def _disagreements(backend: Backend, ran, expected: list, observed: list) -> list[str]:
    """Per layer of the network `ran`, where the `observed` spike times disagree with the
    reference's `expected` beyond the backend's profile (exact, or statistical)."""
    profile, exact = _profile(backend), backend.capabilities.exact
    if not exact:
        _refuse_loose(profile, "max_median_error", "min_silence_agreement", check="agreement")
    problems = []
    for k, agreement in enumerate(compare_layers(expected, observed)):
        problem = (agreement.exact_problem(profile.exact_tolerance) if exact else
                   agreement.statistical_problem(profile.max_median_error, profile.min_silence_agreement))
        if problem is not None:
            problems.append(f"{_layer_label(ran, k)}: {problem}")
    return problems


MIN_SPIKING = 0.1  # of a layer's (sample, neuron) entries in the ideal model, for agreement to compare spikes


def test_agreement_with_reference(delgrad_backend, run_case, case):
    """Every layer agrees with the ideal model on its own (its median error and its silent/spiking
    agreement), so that a wrong output layer cannot hide behind correct hidden layers."""
    _skip_if_declared_unsupported(delgrad_backend, "agreement")
    observed = run_case(case).layer_spike_times
    ran = delgrad_backend.represent_checked(case.network)
    expected = forward(ran, case.input_spike_times)
    for k, times in enumerate(expected):
        spiking = float(np.isfinite(times).mean())
        assert spiking >= MIN_SPIKING, (
            f"case {case.id}: in the ideal model of represent(network), {_layer_label(ran, k)} spikes in "
            f"{100 * spiking:.0f} % of its (sample, neuron) entries, below the {100 * MIN_SPIKING:.0f} % that make "
            "the comparison test something: a represent that removes drive (weights cut or scaled down) shows so; "
            "if represent is right, the suite could not draw a case that spikes for these capabilities")
    problems = _disagreements(delgrad_backend, ran, expected, observed)
    if problems:
        pytest.fail(_agreement_failure(delgrad_backend.capabilities, case, problems), pytrace=False)


def _agreement_failure(caps: Capabilities, case, problems: list[str]) -> str:
    """The message of a case whose layers disagree with the reference (`problems`), with the
    likely causes: the common ones, and those of the widest case and of an exact backend."""
    widths = {max(other.network.sizes) for other in conformance_cases(caps)}
    widest = max(widths) if len(widths) > 1 else None  # (the case wider than the others, if there is one)
    return (f"case {case.id}: {'exact (Capabilities.exact)' if caps.exact else 'statistical (ConformanceProfile)'} "
            "agreement with the reference fails in " + "; ".join(problems)
            + ". The reference runs represent(network): common causes are a represent that does not return what "
            "execute runs (another weight grid or clipping, other delays), a calibration that execute does not "
            "apply, or a batch limit the backend has but does not declare (max_batch_size)"
            + ("; this is the widest case: a fan-in or layer size the backend cannot run and does not declare "
               "(max_inputs, max_layer_size, or a refusal in check_resources) shows here"
               if max(case.network.sizes) == widest else "")
            + ("; times close to the reference but not within exact_tolerance are those of a backend that is not "
               "exact: declare Capabilities(exact=False) to be judged statistically" if caps.exact else ""))


def test_copies_of_an_input_share_one_delay(delgrad_backend, calibration):
    """A backend that takes its inputs in copies (`input_copies`, with axonal delays) gives the
    copies of an input one delay in `represent` whatever delays they are given, and runs that
    (agreement with the ideal model on `represent(network)`, where the backend claims it)."""
    caps = delgrad_backend.capabilities
    copies, lines = caps.input_copies or 1, input_lines(caps)
    if copies == 1 or DelayKind.AXONAL not in caps.delay_kinds or lines % copies:
        pytest.skip("backend takes no inputs in copies (input_copies) with axonal delays")
    # (seed 2: a network far from threshold, whose silent/spiking agreement on the emulated chips 0-4 is 97 % or more)
    network = make_network(within_layers((lines, 10, 3), caps), DelayKind.AXONAL, supported_setting(caps)[1], seed=2,
                           capabilities=caps, copies=copies)
    projection = network.layers[0].projection
    low, high = caps.delay_range if caps.delay_range is not None else (0.0, np.inf)
    projection.delays = np.clip(projection.delays + np.random.default_rng(2).uniform(-0.3, 0.3, lines), low, high)
    _require_supported(delgrad_backend, network)
    with warnings.catch_warnings():  # (a backend may say that it shares them)
        warnings.simplefilter("ignore")
        ran = delgrad_backend.represent_checked(network)
        groups = ran.layers[0].projection.delays.reshape(-1, copies)
        assert np.all(np.abs(groups - groups[:, :1]) <= 1e-12), (
            f"input_copies = {copies}: represent gives the copies of an input different delays "
            f"{np.round(groups[np.ptp(groups, axis=1) > 1e-12][0], 4).tolist()} tau_s; copies share one delay")
        if "agreement" in _profile(delgrad_backend).unsupported:
            return
        inputs = input_times(np.random.default_rng(2), batch_within(caps, BATCH_SIZE), lines, caps)
        with _resources_permitting():
            observed = delgrad_backend.execute(network, inputs, calibration=calibration, seed=0).layer_spike_times
    problems = _disagreements(delgrad_backend, ran, forward(ran, inputs), observed)
    assert not problems, (f"input_copies = {copies}, copies given different delays: disagreement with the ideal model "
                          "on represent(network) in " + "; ".join(problems) + ". Run the delay represent gives the "
                          "copies (e.g. not the first copy's)")


def test_a_job_of_one_sample_and_layers_of_one_neuron(delgrad_backend, calibration):
    """A job of one sample and layers of one neuron keep their (batch, size) shapes (`execute`
    checks them) and, on exact backends, agree with the reference: a backend that squeezed such
    arrays passed every other check, and training failed on its last batch of one sample."""
    caps = delgrad_backend.capabilities
    cases = conformance_cases(caps)
    if not cases:
        pytest.skip("no case fits the declared capabilities")
    case = cases[0]
    n_inputs = case.network.input.size
    kind, ratio = supported_setting(caps)
    narrow = make_network(within_layers((n_inputs, 1, 1), caps), kind, ratio, seed=1, capabilities=caps,
                          copies=input_copies(caps, n_inputs))
    for network, inputs in ((case.network, case.input_spike_times[:1]),
                            (narrow, case.input_spike_times[:batch_within(caps, 4)])):
        _require_supported(delgrad_backend, network)
        with _resources_permitting():
            observed = delgrad_backend.execute(network, inputs, calibration=calibration, seed=0).layer_spike_times
        if caps.exact:
            ran = delgrad_backend.represent_checked(network)
            problems = _disagreements(delgrad_backend, ran, forward(ran, inputs), observed)
            assert not problems, (f"sizes {list(network.sizes)}, {len(inputs)} sample(s): exact agreement with the "
                                  "reference fails in " + "; ".join(problems))


def test_runs_without_a_calibration_unless_it_needs_one(delgrad_backend):
    """A backend that declares `needs_calibration=False` runs a job given no calibration
    (training and evaluation give none then)."""
    caps = delgrad_backend.capabilities
    cases = conformance_cases(caps)
    if caps.needs_calibration or not cases:
        pytest.skip("backend declares needs_calibration" if caps.needs_calibration else "no case fits")
    case = cases[0]
    _require_supported(delgrad_backend, case.network)
    try:
        with _resources_permitting():
            delgrad_backend.execute(case.network, case.input_spike_times, seed=0)
    except DelgradError as exc:
        pytest.fail(f"the backend declares needs_calibration=False, yet a job without a calibration fails: {exc}; "
                    "declare needs_calibration=True if it needs one", pytrace=False)


LARGE_BATCH = 1024  # samples in one job of the large-batch check (or the declared max_batch_size)


def test_a_large_batch_agrees_in_every_part(delgrad_backend, calibration):
    """The first case's samples, repeated to a batch as large as the backend takes (at most
    `LARGE_BATCH`), agree with the reference in each quarter of the batch as the case does: a
    backend that drops or garbles samples beyond a batch limit it does not declare fails here
    (training on it skips most steps)."""
    _skip_if_declared_unsupported(delgrad_backend, "agreement")
    caps = delgrad_backend.capabilities
    cases, batch = conformance_cases(caps), batch_within(caps, LARGE_BATCH)
    if not cases:
        pytest.skip("no case fits the declared capabilities")
    if batch <= len(cases[0].input_spike_times):
        pytest.skip(f"the backend takes at most {batch} samples per job (max_batch_size): no larger batch to check")
    case = cases[0]
    inputs = np.resize(case.input_spike_times, (batch, case.network.input.size))
    _require_supported(delgrad_backend, case.network)
    with _resources_permitting():
        observed = delgrad_backend.execute(case.network, inputs, calibration=calibration, seed=0).layer_spike_times
    ran = delgrad_backend.represent_checked(case.network)
    expected = forward(ran, inputs)
    problems = [f"samples {part[0]}-{part[-1]}, {problem}" for part in np.array_split(np.arange(batch), 4)
                for problem in _disagreements(delgrad_backend, ran, [t[part] for t in expected],
                                              [t[part] for t in observed])]
    assert not problems, (f"case {case.id} repeated to a batch of {batch}: " + "; ".join(problems[:4])
                          + ". Samples late in a large batch disagree: a batch limit the backend has but does not "
                          "declare (max_batch_size)?")


def _arrivals(result: ExecutionResult, k: int, pre_times: np.ndarray, layer) -> tuple[np.ndarray, str]:
    """Arrival times (batch, n_pre, n_post) of the spikes reaching layer `k`, and where they come
    from: the observed ones where the backend reports them, else `pre_times` + the delays."""
    observed = None if result.arrival_times is None else result.arrival_times[k]
    if observed is None:
        return pre_times[:, :, None] + layer.projection.delay_matrix()[None], "spike times before it + delays"
    if observed.ndim == 2:  # one arrival per input line, the same at every neuron
        observed = np.broadcast_to(observed[:, :, None], (*observed.shape, layer.population.size))
    return observed, f"observed arrival_times[{k}]"


def _earliest_allowed_spikes(profile: ConformanceProfile, exact: bool, first_arrival: np.ndarray) -> tuple:
    """The earliest time (tau_s) each neuron may spike: the first arrival of its inputs less the
    timing tolerance the backend declares (exact: exact_tolerance (1 + |t|); else
    causality_tolerance, which allows for timestamp offsets); +inf where no input arrives.  Also
    the tolerance's name."""
    arrives = np.isfinite(first_arrival)
    if exact:
        tolerance = profile.exact_tolerance * (1.0 + np.abs(first_arrival[arrives]))
        declared = f"exact_tolerance {profile.exact_tolerance:g} (1 + |t|)"
    else:
        _refuse_loose(profile, "causality_tolerance")
        tolerance = profile.causality_tolerance
        declared = f"causality_tolerance {profile.causality_tolerance:g} tau_s"
    allowed = np.full(first_arrival.shape, np.inf)
    allowed[arrives] = first_arrival[arrives] - tolerance
    return allowed, declared


def test_no_spike_before_its_inputs_arrive(delgrad_backend, run_case, case):
    """Causality: no neuron of layer k spikes before the earliest arrival of its inputs (the
    spikes of layer k - 1, or the inputs, plus the delays of `represent(network)`; the observed
    arrival times where the backend reports them), within the backend's timing tolerance."""
    result = run_case(case)
    profile = _profile(delgrad_backend)
    ran = delgrad_backend.represent_checked(case.network)
    pre_times = case.input_spike_times
    for k, (times, layer) in enumerate(zip(result.layer_spike_times, ran.layers)):
        arrivals, source = _arrivals(result, k, pre_times, layer)
        first_arrival = arrivals.min(axis=1)  # (batch, n_post)
        allowed, declared = _earliest_allowed_spikes(profile, delgrad_backend.capabilities.exact, first_arrival)
        early = times < allowed
        if early.any():
            sample, neuron = np.argwhere(early)[0]
            pytest.fail(f"case {case.id}: {_layer_label(ran, k)}: {int(early.sum())} spike(s) before the first "
                        f"arrival of the neuron's inputs ({source}), e.g. neuron {neuron} of sample {sample} at "
                        f"{times[sample, neuron]:.4g} tau_s, its first input arrives at "
                        f"{first_arrival[sample, neuron]:.4g} tau_s; allowed early by at most {declared}",
                        pytrace=False)
        pre_times = times


def test_arrival_times_are_consistent(delgrad_backend, run_case, case):
    result = run_case(case)
    if result.arrival_times is None:
        pytest.skip("backend reports no observed arrival times")
    ran = delgrad_backend.represent_checked(case.network)
    pre = case.input_spike_times
    profile = _profile(delgrad_backend)
    for k, (arrivals, layer) in enumerate(zip(result.arrival_times, ran.layers)):
        if arrivals is not None:
            nominal = pre[:, :, None] + layer.projection.delay_matrix()[None]
            if arrivals.ndim == 2:
                arrivals = np.broadcast_to(arrivals[:, :, None], nominal.shape)
            both = np.isfinite(nominal) & np.isfinite(arrivals)
            assert np.array_equal(np.isfinite(nominal), np.isfinite(arrivals)), \
                f"arrival_times[{k}]: arrivals of silent inputs, or missing arrivals of spiking ones"
            error = np.abs(arrivals[both] - nominal[both])
            if delgrad_backend.capabilities.exact:  # (every arrival, as every spike)
                allowed = profile.exact_tolerance * (1.0 + np.abs(nominal[both]))
                worst = int(np.argmax(error - allowed)) if error.size else 0
                assert error.size == 0 or error[worst] <= allowed[worst], \
                    f"arrival_times[{k}]: {int((error > allowed).sum())} arrival(s) away from t + d, e.g. by " \
                    f"{error[worst]:g} tau_s; an exact backend's arrivals are within exact_tolerance " \
                    f"{profile.exact_tolerance:g} (1 + |t|) of t + d"
            else:
                _refuse_loose(profile, "max_median_error")
            assert error.size == 0 or np.median(error) < profile.max_median_error, \
                f"arrival_times[{k}]: median distance {np.median(error):g} from t + d, allowed < " \
                f"{profile.max_median_error:g} tau_s (max_median_error)"
        pre = result.layer_spike_times[k]


def _line_delays(network) -> np.ndarray:
    """The longest delay through which each neuron of a `delay_lines` network is driven (n_lines,)."""
    projection = network.layers[0].projection
    return np.where(projection.weights != 0, projection.delay_matrix(), -np.inf).max(axis=0)


def _shift_problem(shift: np.ndarray, expected: np.ndarray, profile: ConformanceProfile, exact: bool,
                   spike_times: np.ndarray) -> str | None:
    """Why the spike-time shifts (batch,) of one delay line differ from the ideal model's
    `expected` ones, or None: exact backends to 2 exact_tolerance (1 + |t|) in every sample, the
    others by a median below max_median_error over the samples where both runs spike (at least
    min_silence_agreement of them)."""
    compared = np.isfinite(expected)
    both = np.isfinite(shift) & compared
    if exact:
        if not (both == compared).all():
            return f"silent in {int((compared & ~both).sum())} of {int(compared.sum())} samples"
        error = np.where(both, np.abs(shift - expected), 0.0)
        worst = int(np.argmax(error - 2 * profile.exact_tolerance * (1 + np.abs(spike_times))))
        if error[worst] > 2 * profile.exact_tolerance * (1 + abs(spike_times[worst])):
            return f"spikes {shift[worst]:.6g} tau_s later than through the shortest delay in sample {worst}, " \
                   f"expected {expected[worst]:.6g} (exact_tolerance {profile.exact_tolerance:g})"
        return None
    _refuse_loose(profile, "max_median_error", "min_silence_agreement")
    if both.sum() < profile.min_silence_agreement * compared.sum():
        return f"spikes in both runs in {both.sum() / compared.sum():.0%} of the samples, below " \
               f"min_silence_agreement {profile.min_silence_agreement:g}"
    median = float(np.median(np.abs(shift[both] - expected[both])))
    if median >= profile.max_median_error:
        return f"spikes a median {float(np.median(shift[both])):.4g} tau_s later than through the shortest " \
               f"delay, expected {float(np.median(expected[both])):.4g}: median error {median:.4g}, allowed < " \
               f"{profile.max_median_error:g} tau_s (max_median_error)"
    return None


@pytest.mark.parametrize("kind_name", [kind.value for kind in DelayKind if kind is not DelayKind.NONE])
def test_delays_over_the_declared_range(delgrad_backend, calibration, kind_name):
    """Every delay of the declared range runs as represented, the longest included (the cases
    above draw theirs from its first tau_s only): on `delay_lines`, `represent` keeps a delay
    given to every line within half the declared resolution, and each neuron spikes as much
    later with the delays spread as with every delay at the shortest as the ideal model on the
    represented networks says (d - d_min for a neuron whose lines keep one delay d; the same
    inputs, calibration and seed, so a device's fixed pattern and seeded noise cancel)."""
    caps = delgrad_backend.capabilities
    if DelayKind(kind_name) not in caps.delay_kinds:
        pytest.skip(f"backend declares no {kind_name} delays")
    lines = delay_lines(caps, kind_name)
    if lines is None:
        pytest.skip("no two neurons that spike fit the declared size and weight limits")
    _require_supported(delgrad_backend, lines.network())
    allowed = (caps.delay_resolution / 2 if caps.delay_resolution is not None else 0.0) + 1e-9 * (1 + lines.delays)
    uniform = np.array([
        _line_delays(delgrad_backend.represent_checked(lines.network(np.full(lines.delays.size, delay))))
        for delay in lines.delays])  # (one delay on every line: a backend sharing delays keeps it)
    moved = np.abs(uniform - lines.delays[:, None]).max(axis=1) > allowed
    assert not moved.any(), (f"{kind_name} delays {np.round(lines.delays[moved], 4).tolist()} tau_s, inside the "
                             f"declared delay_range, are represented as {np.round(uniform[moved, 0], 4).tolist()}: "
                             f"more than half the declared delay_resolution ({caps.delay_resolution}) away")
    shortest = np.full(lines.delays.size, lines.delays[0])
    spread = delgrad_backend.represent_checked(lines.network())
    start = delgrad_backend.represent_checked(lines.network(shortest))
    ideal = forward(spread, lines.input_spike_times)[0]
    assert np.isfinite(ideal).all(), "suite error: a delay line is silent in the ideal model"
    with _resources_permitting():
        through_spread, through_shortest = (
            delgrad_backend.execute(network, lines.input_spike_times, calibration=calibration,
                                    seed=0).layer_spike_times[0]
            for network in (lines.network(), lines.network(shortest)))
    shifts = through_spread - through_shortest
    shifts[~(np.isfinite(through_spread) & np.isfinite(through_shortest))] = np.inf
    expected = ideal - forward(start, lines.input_spike_times)[0]
    ran, profile = _line_delays(spread), _profile(delgrad_backend)
    problems = [f"the line with delay {ran[j]:.4g} tau_s {problem}" for j in range(ran.size)
                if (problem := _shift_problem(shifts[:, j], expected[:, j], profile, caps.exact,
                                              through_spread[:, j])) is not None]
    declared = f"the declared delay_range {caps.delay_range}" if caps.delay_range is not None else "[0, 4] tau_s"
    assert not problems, f"{kind_name} delays over {declared}: " + "; ".join(problems)


@pytest.mark.usefixtures("calibration")  # (skipped when the backend cannot calibrate)
def test_one_epoch_of_exact_gradients_lowers_the_loss(delgrad_backend, request):
    """A short training on the backend's own times (Yin-Yang, 600 samples, batch 50), from
    weights large enough that every neuron spikes (so the loss measures the spike times)."""
    _skip_if_declared_unsupported(delgrad_backend, "training")
    from delgrad_core.datasets import Dataset, load_dataset
    from delgrad_core.training import Trainer, TrainingConfig

    caps = delgrad_backend.capabilities
    if caps.max_layers == 1:
        pytest.skip("backend runs one neuron layer (max_layers = 1); the training check trains a hidden layer")
    kind, ratio = supported_setting(caps)
    hidden = min(10, caps.max_layer_size or 10, caps.max_inputs or 10)
    copies = input_copies(caps, input_lines(caps))  # (Yin-Yang's 4 features, each as often as the backend takes copies)
    _require_supported(delgrad_backend, make_network((4 * copies, hidden, 3), kind, ratio, capabilities=caps,
                                                     copies=copies))
    scale = drive_scale(caps)  # (weights, their steps and the threshold, as in the cases)
    in_copies = {} if copies == 1 else {  # (a group of copies starts as strong as one input)
        "encoder_options": {"repeat": copies}, "weight_init_mean": [1.5 * scale / copies, 1.5 * scale],
        "weight_init_std": [0.5 * scale / copies, 0.5 * scale],
        **({"shared_input_delays": copies} if kind is DelayKind.AXONAL else {})}
    config = TrainingConfig(**{"hidden": hidden, "delays": kind.value, "tau_ratio": ratio, "epochs": 1,
                               "batch_size": 50, "seed": 0, "keep_best": False, "weight_lr": 0.01 * scale,
                               "delay_lr": 0.005, "threshold": scale, "weight_init_mean": 1.5 * scale,
                               "weight_init_std": 0.5 * scale, **in_copies},
                            backend=selected_backend(request.config)[0],  # (the default one may not be installed)
                            _check_components=False)  # (the suite's settings, not the backend's training defaults)
    with _resources_permitting(), Trainer(config, backend=delgrad_backend) as trainer:
        full = load_dataset("yin_yang", "train")
        subset = Dataset("yin_yang", "train", full.features[:600], full.labels[:600], full.class_names)
        trainer.train_set = subset
        before = trainer.evaluate(subset).loss
        trainer.fit(progress=False)
        after = trainer.evaluate(subset).loss
    assert after < before, f"training loss did not fall in one epoch: {before:.4f} -> {after:.4f}"


def test_delgrad_train_sets_up_a_run_with_the_registered_defaults(delgrad_backend, calibration, request):
    """`delgrad train --backend NAME` with no other setting (the suite's backend options aside)
    sets up a run: the training defaults the backend registers make a valid config that agrees
    with the backend (defaults of no table, or inputs in copies without the encoder's `repeat`,
    passed every other check and failed `delgrad train`).  A default network the backend's
    declared limits refuse is skipped: users then choose settings it runs, and are told so."""
    _skip_if_declared_unsupported(delgrad_backend, "training")  # (`calibration`: skipped if calibrating failed)
    from delgrad_core.training import Trainer, config_with_defaults

    name, options = selected_backend(request.config)
    try:
        config = config_with_defaults({"backend": name, "backend_options": options, "epochs": 1})
        with _resources_permitting(), Trainer(config, backend=delgrad_backend) as trainer:
            trainer.evaluate(trainer.validation_set)
    except UnsupportedNetworkError as exc:  # (lack of resources: skipped above)
        pytest.skip(f"the default training network is not one the backend runs ({exc}); registered training "
                    "defaults it runs would let delgrad train work out of the box")
    except DelgradError as exc:
        pytest.fail(f"delgrad train --backend {name} fails out of the box: {type(exc).__name__}: {exc}; register "
                    "training defaults the backend runs (docs/plugins.md)", pytrace=False)


def test_request_bytes_run_the_same(delgrad_backend, calibration, run_case, case):
    """A request sent as bytes (as to a remote backend) runs exactly like the original."""
    if not delgrad_backend.capabilities.deterministic:
        pytest.skip("backend declares that the same seed may give different results")
    first = run_case(case)
    request = ExecutionRequest(case.network, case.input_spike_times, calibration, 0)
    received = ExecutionRequest.from_bytes(request.to_bytes())
    assert received.digest == request.digest, "ExecutionRequest.from_bytes(to_bytes()) changed the request's digest"
    difference = _differences(first.layer_spike_times, delgrad_backend.execute(received).layer_spike_times)
    assert difference is None, \
        f"case {case.id}: the request sent as bytes ran differently from the original: {difference}"


_RUN_IN_ANOTHER_PROCESS = """
import json, os, sys
if sys.path and sys.path[0] in ("", os.getcwd()):  # (-c: the working folder, where a source checkout would
    sys.path.pop(0)  # shadow the installed package; not there with PYTHONSAFEPATH)
from delgrad_core import ExecutionRequest, get_backend
name, options, path = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
with open(path, "rb") as file:
    request = ExecutionRequest.from_bytes(file.read())
with get_backend(name, **options) as backend:
    result = backend.execute(request)
with open(path + ".result", "wb") as file:
    file.write(result.to_bytes())
"""


def test_another_process_runs_a_request_the_same(delgrad_backend, calibration, run_case, request, tmp_path):
    """The same backend in a fresh process (as after a resume, or on a remote worker; with another
    string hash seed) runs a request as this one does: results depend on the request and its
    seed only, not on the process."""
    if not delgrad_backend.capabilities.deterministic:
        pytest.skip("backend declares that the same seed may give different results")
    name, options = selected_backend(request.config)
    cases = conformance_cases(_cases_for(request.config)[1])
    if not cases:
        pytest.skip("no case fits the declared capabilities")
    case, first = cases[0], run_case(cases[0])
    path = tmp_path / "request.npz"
    path.write_bytes(ExecutionRequest(case.network, case.input_spike_times, calibration, 0).to_bytes())
    env = {key: value for key, value in os.environ.items() if key != "PYTHONHASHSEED"}
    for attempt in (1, 2):  # (two processes: randomness from a process id may agree with this one's by chance)
        process = subprocess.run([sys.executable, "-c", _RUN_IN_ANOTHER_PROCESS, name, json.dumps(options), str(path)],
                                 env=env, capture_output=True, text=True, timeout=600)  # (relative paths in options)
        assert process.returncode == 0, (f"case {case.id}: running the request in another process failed (status "
                                         f"{process.returncode}):\n{process.stderr[-3000:]}")
        again = ExecutionResult.from_bytes(path.with_name("request.npz.result").read_bytes())
        difference = _differences(first.layer_spike_times, again.layer_spike_times)
        assert difference is None, (f"case {case.id}: the backend declares deterministic=True, but the same request "
                                    f"(seed 0) run in another process (the {'first' if attempt == 1 else 'second'} "
                                    f"of two) gave other spike times: {difference}; seed its randomness from the "
                                    "request's seed only (not from hash(), the time or the process)")
