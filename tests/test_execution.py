"""ExecutionRequest / ExecutionResult: bit-identical byte round trips, digests stable across
processes, snapshots, and clear errors for malformed bytes."""

import copy
import io
import json
import pickle
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from _network_checks import assert_bit_identical, assert_same_network

import delgrad_core as dg
from delgrad_core import Calibration, ExecutionRequest, ExecutionResult, FileFormatError

KINDS = ["none", "axonal", "dendritic", "synaptic"]


def _request(kind="synaptic", seed=5, calibration=True, per_neuron=False):
    network = dg.Network.feedforward([4, 7, 3], delay_kind=kind, delay_value=0.25, seed=2)
    if per_neuron:
        network.layers[0].population.neuron = dg.NeuronParameters(np.linspace(0.9, 1.1, 7), 2.0, 1.0)
    network.layers[0].projection.weights[0, :3] = [-0.0, 5e-324, np.nextafter(1.0, 2.0)]
    inputs = np.random.default_rng(1).uniform(0.15, 2.0, (6, 4))
    inputs[0, 1] = np.inf
    cal = Calibration("reference", {"note": "x"}, "reference-1", {"gain": np.arange(3.0)}) if calibration else None
    return ExecutionRequest(network, inputs, cal, seed)


def _same_request(a: ExecutionRequest, b: ExecutionRequest):
    assert a.seed == b.seed and a.calibration == b.calibration
    assert_bit_identical(a.input_spike_times, b.input_spike_times)
    assert_same_network(a.network, b.network)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("per_neuron", [False, True])
def test_request_round_trip_is_bit_identical(kind, per_neuron):
    request = _request(kind, per_neuron=per_neuron)
    data = request.to_bytes()
    restored = ExecutionRequest.from_bytes(data)
    _same_request(restored, request)
    assert restored.digest == request.digest
    assert restored.to_bytes() == data  # deterministic bytes
    assert ExecutionRequest.from_bytes(io.BytesIO(data)).digest == request.digest


def test_result_round_trip_is_bit_identical():
    times = [np.array([[0.5, np.inf, -0.0]]), np.array([[5e-324, 2.0]])]
    arrivals = [np.array([[1.0, 2.0]]), None]
    result = ExecutionResult(times, {"wall_seconds": 0.25, "chip": {"id": 3}}, arrivals)
    data = result.to_bytes()
    restored = ExecutionResult.from_bytes(data)
    assert [t.tobytes() for t in restored.layer_spike_times] == [t.tobytes() for t in times]
    assert restored.arrival_times[0].tobytes() == arrivals[0].tobytes() and restored.arrival_times[1] is None
    assert restored.metadata == result.metadata
    assert restored.to_bytes() == data
    assert ExecutionResult.from_bytes(ExecutionResult(times).to_bytes()).arrival_times is None
    # (what from_bytes refuses is not written: a NaN spike time was, and then could not be read)
    for bad in (np.nan, -np.inf):
        with pytest.raises(dg.InvalidResultError, match=r"layer_spike_times\[1\]: contains NaN or -inf"):
            ExecutionResult([times[0], np.array([[bad, 2.0]])]).to_bytes()


def test_digest_is_the_same_in_another_process(tmp_path):
    request = _request()
    code = ("import sys; from delgrad_core import ExecutionRequest; "
            "print(ExecutionRequest.from_bytes(sys.stdin.buffer.read()).digest)")
    out = subprocess.run([sys.executable, "-c", code], input=request.to_bytes(), capture_output=True,
                         cwd=tmp_path, timeout=60)
    assert out.stdout.decode().strip() == request.digest, out.stderr.decode()
    assert re.fullmatch("[0-9a-f]{64}", request.digest)


def test_digest_depends_on_every_part():
    base = _request()
    changed_weights = _request()
    network = changed_weights.network
    weights = network.layers[1].projection.weights.copy()
    weights[0, 0] = np.nextafter(weights[0, 0], 10.0)
    network = dg.Network(network.input, [network.layers[0], dg.Layer(
        network.layers[1].population, dg.Projection(weights, "synaptic", network.layers[1].projection.delays,
                                                    network.layers[1].projection.name))])
    digests = {
        base.digest,
        base.replace(seed=6).digest,
        base.replace(seed=None).digest,
        base.replace(calibration=None).digest,
        base.replace(input_spike_times=base.input_spike_times[:5]).digest,
        base.replace(network=network).digest,
    }
    assert len(digests) == 6
    assert base.replace().digest == base.digest


def test_digest_is_the_same_for_negative_and_positive_zero():
    """-0.0 and 0.0 are the same work, so they get one job id (a weight and an input time)."""
    base = _request()
    inputs = base.input_spike_times.copy()
    inputs[1, 0] = 0.0
    positive = base.replace(input_spike_times=inputs)
    inputs[1, 0] = -0.0
    negative = base.replace(input_spike_times=inputs)
    assert positive.digest == negative.digest
    weights = base.network.layers[0].projection.weights.copy()
    assert np.signbit(weights[0, 0])  # _request sets it to -0.0
    weights[0, 0] = 0.0
    first = base.network.layers[0]
    network = dg.Network(base.network.input, [dg.Layer(first.population, dg.Projection(
        weights, "synaptic", first.projection.delays, first.projection.name)), base.network.layers[1]])
    assert base.replace(network=network).digest == base.digest


def test_request_is_a_snapshot():
    network = dg.Network.feedforward([2, 3], seed=0)
    inputs = np.array([[0.1, 0.2]])
    request = ExecutionRequest(network, inputs)
    digest = request.digest
    network.layers[0].projection.weights[0, 0] += 1.0
    inputs[0, 0] = 5.0
    assert request.digest == digest and request.input_spike_times[0, 0] == 0.1
    with pytest.raises(ValueError):
        request.network.layers[0].projection.weights[0, 0] = 3.0  # read-only
    other = dg.Network.feedforward([2, 1000], seed=1).layers[0]
    with pytest.raises(TypeError):  # (a kernel given a layer that does not fit read out of bounds)
        request.network.layers[0] = other
    with pytest.raises(AttributeError):
        request.network.layers.append(other)
    assert request.network.sizes == [2, 3] and request.digest == digest


@pytest.mark.parametrize("copied", [lambda x: pickle.loads(pickle.dumps(x)), copy.deepcopy, copy.copy],
                         ids=["pickle", "deepcopy", "copy"])
def test_a_copied_request_or_snapshot_is_read_only_too(copied):
    """(a pickled or deep-copied request kept its digest but took edits to its arrays, so it ran
    other parameters under its old job id; a copied snapshot counted as frozen with writable
    arrays, and a backend caching by snapshot ran the old ones)"""
    network = dg.Network.feedforward([3, 4, 2], delay_kind="axonal", seed=0)
    network.layers[0].population.neuron.threshold = np.array([1.0, 1.1, 1.2, 1.3])
    request = ExecutionRequest(network, np.full((2, 3), 0.5), seed=1)
    snapshot = network.frozen_copy()
    for copy_ in (copied(request).network, copied(snapshot)):
        assert copy_ == snapshot
        for array in (copy_.layers[0].projection.weights, copy_.layers[0].projection.delays,
                      copy_.layers[0].population.neuron.threshold):
            with pytest.raises(ValueError, match="read-only"):
                array[0] = 3.0
    again = copied(request)
    with pytest.raises(ValueError, match="read-only"):
        again.input_spike_times[0, 0] = 9.0
    assert again.digest == request.digest and again == request
    edited = copied(network)  # (not a snapshot: its copy may change)
    edited.layers[0].projection.weights[0, 0] = 3.0
    assert ExecutionRequest(edited, request.input_spike_times, seed=1).digest != request.digest


def test_a_projection_built_from_read_only_arrays_checks_replaced_arrays():
    """It skips checking arrays it checked already, recognised by identity (an elementwise
    comparison of arrays failed, or for 1 x 1 weights let unchecked values through)."""
    snapshot = dg.Network.feedforward([3, 2], seed=0).frozen_copy()
    for weights in (snapshot.layers[0].projection.weights, np.ones((1, 1))):
        weights = np.array(weights)
        weights.setflags(write=False)
        projection = dg.Projection(weights)
        projection.weights = np.ones_like(weights)  # same values or not: checked again
        projection.validate()
        projection.weights = [[1]] if weights.shape == (1, 1) else [[1, 2], [3, 4], [5, 6]]
        projection.validate()
        assert projection.weights.dtype == np.float64 and projection.weights.flags.c_contiguous
        projection.weights = np.full(weights.shape, np.nan)
        with pytest.raises(ValueError, match="weights: contains NaN"):
            projection.validate()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seed": -1}, "seed: expected None or an integer"),
        ({"seed": 2**63}, "seed: expected None or an integer"),
        ({"seed": 1.5}, "seed: expected None or an integer"),
        ({"calibration": {"x": 1}}, "calibration: expected a Calibration"),
        ({"input_spike_times": np.zeros((2, 3))}, r"input_spike_times: expected shape \(batch, 2\)"),
        ({"input_spike_times": np.zeros(2)}, r"input_spike_times: expected shape \(batch, 2\), got \(2,\)"),
        ({"input_spike_times": np.array([[np.nan, 0.0]])}, "input_spike_times: contains NaN"),
        ({"network": "net"}, "network: expected a delgrad_core.Network"),
    ],
)
def test_request_fields_are_validated(kwargs, message):
    values = {"network": dg.Network.feedforward([2, 3]), "input_spike_times": np.zeros((1, 2))}
    values.update(kwargs)
    with pytest.raises(ValueError, match=message):
        ExecutionRequest(**values)


def _rewrite(data: bytes, change) -> bytes:
    """Copy an archive, letting `change(name, payload)` return a new payload or None to drop."""
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            payload = change(info.filename, source.read(info))
            if payload is not None:
                target.writestr(info.filename, payload)
    return out.getvalue()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d[: len(d) // 2], "not an npz archive"),
        (lambda d: b"garbage", "not an npz archive"),
        (lambda d: _rewrite(d, lambda n, p: None if n == "input_spike_times.npy" else p),
         "'input_spike_times' is missing"),
        (lambda d: _rewrite(d, lambda n, p: p[:-8] if n == "input_spike_times.npy" else p), "truncated or padded"),
        (lambda d: _rewrite(d, lambda n, p: None if n.startswith("calibration.calibration.arrays") else p),
         "the calibration is not the one written there"),
        (lambda d: _rewrite(d, lambda n, p: None if n.startswith(("calibration.calibration.arrays",
                                                                  "calibration.calibration.digest")) else p),
         "the calibration does not match its digest"),  # (the request's own record of it)
    ],
)
def test_malformed_request_bytes_give_a_file_format_error(mutate, message):
    with pytest.raises(FileFormatError, match=message):
        ExecutionRequest.from_bytes(mutate(_request().to_bytes()))


def test_a_request_never_unpickles():
    evil = io.BytesIO()
    np.savez(evil, **{"request.json": np.array([object()], dtype=object)}, allow_pickle=True)
    with pytest.raises(FileFormatError, match="dtype object"):
        ExecutionRequest.from_bytes(evil.getvalue())


def test_network_save_and_load_through_bytes_and_file_objects(tmp_path):
    network = dg.Network.feedforward([3, 4, 2], delay_kind="axonal", delay_value=0.5, seed=1)
    buffer = io.BytesIO()
    assert dg.save_network(network, buffer) is None
    loaded = dg.load_network(buffer.getvalue())
    assert loaded.layers[0].projection.weights.tobytes() == network.layers[0].projection.weights.tobytes()
    with open(tmp_path / "n.npz", "wb") as handle:
        dg.save_network(network, handle)
    with open(tmp_path / "n.npz", "rb") as handle:
        assert dg.load_network(handle).sizes == [3, 4, 2]
    assert (tmp_path / "n.npz").read_bytes() == buffer.getvalue()


def test_a_request_can_name_its_calibration_by_digest():
    request = _request()
    slim = request.to_bytes(include_calibration=False)
    assert len(slim) < len(request.to_bytes())
    restored = ExecutionRequest.from_bytes(slim, calibrations={request.calibration.digest: request.calibration})
    assert restored.digest == request.digest and restored.calibration is request.calibration
    with pytest.raises(dg.CalibrationError, match="refers to calibration .* not known here"):
        ExecutionRequest.from_bytes(slim)
    with pytest.raises(dg.CalibrationError):
        ExecutionRequest.from_bytes(slim, calibrations={"0" * 64: request.calibration})


def test_requests_with_the_same_network_share_one_network_object_through_a_cache():
    first, second = _request(seed=1), _request(seed=2)
    other = ExecutionRequest(dg.Network.feedforward([4, 7, 3], delay_kind="synaptic", seed=9),
                             first.input_spike_times, first.calibration, 1)
    networks = {}
    a, b, c = (ExecutionRequest.from_bytes(r.to_bytes(), networks=networks) for r in (first, second, other))
    assert a.network is b.network and c.network is not a.network and len(networks) == 2
    assert (a.digest, b.digest, c.digest) == (first.digest, second.digest, other.digest)
    _same_request(a, first)
    _same_request(c, other)
    from delgrad_core._npz import NpzArchive

    with NpzArchive(first.to_bytes()) as one, NpzArchive(second.to_bytes()) as two, \
            NpzArchive(other.to_bytes()) as three:
        assert one.digest("network.") == two.digest("network.") != three.digest("network.")
        assert one.digest("request.json") != two.digest("request.json")  # the seeds differ
        assert one.digest("input_spike_times") == three.digest("input_spike_times")


def test_a_spike_at_the_first_input_is_valid_and_one_after_a_silent_layer_is_not():
    """(a spike at the sample's first input is not before it; a layer spiking although the layer
    before it was silent for that sample has no input to spike from)"""
    network = dg.Network.feedforward([2, 2, 1], neuron=dg.NeuronParameters(1.0, 1.0, 1.0), seed=0)
    request = ExecutionRequest(network, np.array([[0.5, 1.0]]))
    ExecutionResult([np.array([[0.5, np.inf]]), np.array([[0.5]])]).validate(request)
    with pytest.raises(dg.InvalidResultError, match=r"layer_spike_times\[1\]: neuron 0 of sample 0 .* no spike in "
                                                    r"layer_spike_times\[0\]"):
        ExecutionResult([np.array([[np.inf, np.inf]]), np.array([[0.9]])]).validate(request)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_calibration_array_holding_nan_or_inf_is_refused(bad):
    """(a calibration whose arrays hold NaN or inf could not be written and read back as JSON-free numbers)"""
    with pytest.raises(dg.InvalidValueError, match=r"Calibration.arrays\['gain'\]: contains NaN or inf"):
        Calibration("x", arrays={"gain": np.array([1.0, bad])})


def test_a_calibration_needs_the_name_of_its_backend():
    """(a calibration of backend "" belongs to no backend, so none would ever accept it)"""
    with pytest.raises(dg.InvalidValueError, match="Calibration.backend: expected a non-empty string, got ''"):
        Calibration("")


@pytest.mark.parametrize(("change", "message"), [
    ({"n_layers": 0}, r"n_layers: expected a positive integer, got 0"),
    ({"arrival_layers": [2]}, r"arrival_layers: expected layer indices"),  # (one past the last of 2 layers)
    ({"arrival_layers": [-1]}, r"arrival_layers: expected layer indices"),
])
def test_a_result_naming_no_layers_or_a_layer_it_lacks_is_refused(change, message):
    """(a result of 0 layers would have been read as an empty list of spike times; an arrival
    layer past the last, or -1, read as another layer's arrivals or not at all)"""
    from delgrad_core._npz import json_array

    times = [np.array([[0.5, 1.0]]), np.array([[2.0]])]
    data = ExecutionResult(times, {}, [np.array([[0.1, 0.2]]), None]).to_bytes()
    document = json.loads(np.load(io.BytesIO(data))["result.json"].item())
    npy = io.BytesIO()
    np.save(npy, json_array({**document, **change}))
    edited = _rewrite(data, lambda name, payload: npy.getvalue() if name == "result.json.npy" else payload)
    with pytest.raises(FileFormatError, match=message):
        ExecutionResult.from_bytes(edited)


def test_a_request_of_another_format_version_is_refused():
    from delgrad_core._npz import json_array

    data = _request().to_bytes()
    document = json.loads(np.load(io.BytesIO(data))["request.json"].item())
    npy = io.BytesIO()
    np.save(npy, json_array({**document, "version": 2}))
    edited = _rewrite(data, lambda name, payload: npy.getvalue() if name == "request.json.npy" else payload)
    with pytest.raises(FileFormatError, match="not a delgrad request version 1"):
        ExecutionRequest.from_bytes(edited)
