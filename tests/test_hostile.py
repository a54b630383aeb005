"""Hostile inputs: every case ends in a clear error naming the problem or a correct result, never
a traceback, a hang, a silently wrong result or lost data.

Fast cases run in every test run; cases that send signals to real processes or fill a disk are
marked `slow` (CI runs them too; `pytest -m "not slow"` skips them while developing).
"""

import contextlib
import io
import json
import os
import re
import resource
import signal
import stat
import subprocess
import sys
import time
import tracemalloc
import warnings
import zipfile
from types import SimpleNamespace

import numpy as np
import pytest
from _network_checks import assert_same_network
from _processes import process_exists
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import delgrad_core as dg
from delgrad_core import ExecutionRequest, FileFormatError, InvalidValueError, plugin_tools
from delgrad_core._npz import json_array, npz_bytes
from delgrad_core.testing import cli_runner
from delgrad_core.training import TrainingConfig, load_config
from delgrad_core.training._plots import plots_available

# ---------------------------------------------------------------------------- network files


def _network_archive(meta_change=None, drop=(), arrays=None) -> bytes:
    network = dg.Network.feedforward([4, 6, 3], delay_kind="synaptic", delay_value=0.5, seed=0)
    buffer = io.BytesIO()
    dg.save_network(network, buffer)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as archive:
        members = {name[:-4]: np.lib.format.read_array(io.BytesIO(archive.read(name)))
                   for name in archive.namelist()}
    meta = json.loads(str(members["network.json"]))
    if meta_change:
        meta_change(meta)
    members["network.json"] = json_array(meta)
    for name in drop:
        del members[name]
    members.update(arrays or {})
    return npz_bytes(members)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: _network_archive(lambda m: m["layers"][0].update(size=10**9)),
         r"layers\[0\].size: expected an integer"),
        (lambda: _network_archive(lambda m: m["layers"][0].update(size=7)), r"shape \(4, 6\) does not match"),
        (lambda: _network_archive(drop=["layers.0.delays"]), "'layers.0.delays' is missing"),
        (lambda: _network_archive(lambda m: m["layers"].pop()), "entries not described by network.json: layers.1"),
        (lambda: _network_archive(lambda m: m.update(version=2)), "unsupported network format"),
        (lambda: _network_archive(lambda m: m["layers"][1].update(delay_kind="somatic")), "unknown delay kind"),
        (lambda: _network_archive(arrays={"layers.0.weights": np.zeros((4, 6), dtype=bool)}),
         "has dtype bool, expected kind"),
        (lambda: _network_archive(arrays={"layers.0.weights": np.full((4, 6), np.nan)}), "contains NaN"),
        (lambda: _network_archive(arrays={"layers.0.delays": -np.ones((4, 6))}), "must be >= 0"),
        (lambda: b"", "not an npz archive"),
        (lambda: os.urandom(300), "not an npz archive"),
        (lambda: _network_archive()[:-40], "not an npz archive|truncated|cannot be read"),
    ],
    ids=["huge-size", "size-mismatch", "missing-delays", "surplus-layer", "version", "kind", "bool", "nan",
         "negative-delays", "empty", "random", "truncated"],
)
def test_bad_network_files_are_refused_naming_the_problem(make, message):
    data = make()
    with pytest.raises(FileFormatError, match=message):
        dg.load_network(data)


def test_a_file_declaring_a_huge_array_is_refused_before_allocating():
    """A few kilobytes whose array header claims 2**40 elements: refused while reading headers."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (2**20, 2**20)})
    source = zipfile.ZipFile(io.BytesIO(_network_archive()))
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in source.namelist():
            payload = header.getvalue() + b"\0" * 4096 if name == "layers.0.weights.npy" else source.read(name)
            archive.writestr(name, payload)
    tracemalloc.start()
    with pytest.raises(FileFormatError, match=r"declares shape \(1048576, 1048576\)"):
        dg.load_network(bomb.getvalue())
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50 * 2**20


@given(st.binary(max_size=2000))
@settings(max_examples=60, deadline=None)
def test_random_bytes_never_load_and_never_crash(data):
    with pytest.raises(FileFormatError):
        dg.load_network(data)
    with pytest.raises(FileFormatError):
        ExecutionRequest.from_bytes(data)


@given(st.data())
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_corrupted_request_bytes_are_refused_or_equal(data):
    request = ExecutionRequest(dg.Network.feedforward([3, 4, 2], delay_kind="axonal", seed=1), np.ones((2, 3)), seed=1)
    raw = bytearray(request.to_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        decoded = ExecutionRequest.from_bytes(bytes(raw))
    except FileFormatError:
        return
    # a flip that survives decoding changed nothing the digest covers, or the digest tells
    assert decoded.digest == request.digest or decoded.to_bytes() != request.to_bytes()


@pytest.mark.parametrize("flag", [0x1, 0x20], ids=["encrypted", "compressed-patched-data"])
def test_zip_entries_flagged_as_unreadable_are_a_file_format_error(flag):
    """zipfile raises RuntimeError (encrypted) and NotImplementedError (flag bit 5) for such
    members; both must reach the user as a named FileFormatError (found by the fuzz test above).
    The request is re-packed with compression, so that zipfile (not delgrad's reader of stored
    archives) reads it."""
    plain = zipfile.ZipFile(io.BytesIO(ExecutionRequest(dg.Network.feedforward([3, 4, 2], seed=1),
                                                         np.ones((2, 3))).to_bytes()))
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in plain.namelist():
            archive.writestr(name, plain.read(name))
    raw = bytearray(packed.getvalue())
    for signature, flag_offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # local and central headers
        position = raw.find(signature)
        while position >= 0:
            raw[position + flag_offset] |= flag
            position = raw.find(signature, position + 4)
    with pytest.raises(FileFormatError, match="delgrad execution request|has a corrupt header"):
        ExecutionRequest.from_bytes(bytes(raw))


# ---------------------------------------------------------------------------- in-place changes


def test_in_place_changes_are_caught_before_any_kernel_runs():
    network = dg.Network.feedforward([4, 300, 3], delay_kind="synaptic", delay_value=0.5, seed=0)
    network.layers[1].projection.delays = np.full((1, 1), 0.5)
    with pytest.raises(InvalidValueError, match=r"output.projection.delays: expected shape \(300, 3\), got \(1, 1\)"):
        network.validate()
    with pytest.raises(InvalidValueError, match="output.projection.delays"):
        dg.forward(network, np.full((1, 4), 0.5))
    network = dg.Network.feedforward([4, 30, 3], seed=0)
    network.layers[0].projection.weights = np.ones((4, 29))
    with pytest.raises(InvalidValueError, match="has 29 columns but population 'hidden' has size 30"):
        dg.forward(network, np.full((1, 4), 0.5))
    network = dg.Network.feedforward([4, 30, 3], seed=0)
    network.layers[0].projection.weights = np.asfortranarray(np.ones((4, 30)), dtype=np.float32)
    dg.forward(network, np.full((1, 4), 0.5))  # converted: C-contiguous float64 again
    assert network.layers[0].projection.weights.dtype == np.float64
    assert network.layers[0].projection.weights.flags.c_contiguous


@given(shape=st.tuples(st.integers(0, 5), st.integers(0, 6)), fill=st.sampled_from([0.5, np.nan, -np.inf, np.inf]),
       dtype=st.sampled_from([np.float64, np.float32, np.int64, object]))
@settings(max_examples=60, deadline=None)
def test_arrays_of_any_shape_and_dtype_give_a_result_or_a_named_error(shape, fill, dtype):
    network = dg.Network.feedforward([3, 4, 2], delay_kind="axonal", seed=0)
    with np.errstate(invalid="ignore"):
        inputs = np.full(shape, fill).astype(dtype)
    try:
        times = dg.forward(network, inputs)
    except InvalidValueError as exc:
        assert "input_spike_times" in str(exc)
        return
    as_float = np.asarray(inputs, dtype=float)
    assert shape[-1] == 3 and not np.isnan(as_float).any() and not (as_float == -np.inf).any()
    gradient = np.zeros((times[-1].shape[0], 2))
    dg.backward(network, inputs, times, gradient)
    with pytest.raises(InvalidValueError, match="output_gradient"):
        dg.backward(network, inputs, times, gradient.T if gradient.shape[0] != 2 else np.zeros((2, 3)))


def test_extreme_weights_give_the_right_spike_time_not_silence():
    for ratio in (1.0, 2.0, 1.5):
        for weight in (1e100, 1e154, 1e199):
            network = dg.Network.feedforward([1, 1], neuron=dg.NeuronParameters(1.0, ratio, 1.0))
            network.layers[0].projection.weights[:] = weight
            t = dg.forward(network, [[0.25]])[0][0, 0]
            assert 0.25 <= t < 0.25 + 1e-12, (ratio, weight, t)


@pytest.mark.parametrize("tau_m", [2.0, 1.0, 1.5])
@pytest.mark.parametrize(("weights", "inputs"), [([0.3, 1e17], [0.5, 1.0]), ([1e15], [100.0])])
def test_a_crossing_within_half_an_ulp_of_its_input_is_after_it(tau_m, weights, inputs):
    # (t rounded onto the arrival that caused it, which the backward then took for non-causal: dt/dx
    # was [1, 0] instead of [0, 1] and dt/dtheta 7.7 instead of ~1e-17, or the neuron counted as not crossing)
    network = dg.Network(dg.Population("in", len(weights)), [dg.Layer(
        dg.Population("out", 1, dg.NeuronParameters(1.0, tau_m, 1.0)), dg.Projection(np.array([weights]).T))])
    x = np.array([inputs])
    times = dg.forward(network, x)
    assert times[0][0, 0] == np.nextafter(inputs[-1], np.inf)
    gradient = dg.backward(network, x, times, np.ones((1, 1)))
    np.testing.assert_allclose(gradient.input_spike_times[0], [0.0] * (len(inputs) - 1) + [1.0], atol=1e-12)
    assert abs(gradient.layers[0].threshold[0]) < 1e-14


def test_a_crossing_within_half_an_ulp_of_its_input_is_after_it_with_a_dendritic_delay_too():
    # (the layer walk adds neuron 1's column delay after the crossing time, which rounded the spike onto the
    # arrival again: dt/dx [1, 0])
    network = dg.Network.feedforward([2, 2], delay_kind="dendritic", neuron=dg.NeuronParameters(1.0, 2.0, 1.0),
                                     weight_mean=0.0, weight_std=0.0)
    network.layers[0].projection.weights[:] = [[0.3, 0.3], [1e17, 1e17]]
    network.layers[0].projection.delays[:] = [0.0, 1000.0]
    x = np.array([[0.0005, 0.001]])
    times = dg.forward(network, x)
    assert times[0][0, 1] == np.nextafter(0.001 + 1000.0, np.inf)
    gradient = dg.backward(network, x, times, np.array([[0.0, 1.0]]))
    np.testing.assert_allclose(gradient.input_spike_times[0], [0.0, 1.0], atol=1e-12)


def test_thresholds_so_small_that_gradients_overflow_are_refused():
    # (1e-310 with weights of its size: a subnormal slope at the crossing made input-time gradients inf and NaN)
    with pytest.raises(InvalidValueError, match=r"output.threshold: must be >= 1e-300 .* got min 1e-310$"):
        dg.Network.feedforward([4, 1], neuron=dg.NeuronParameters(1e-310, 2.0, 1.0))
    dg.Network.feedforward([4, 1], neuron=dg.NeuronParameters(1e-300, 2.0, 1.0))


@pytest.mark.parametrize("weight", [1e201, 1e308, -1.7e308])
def test_weights_whose_sums_would_overflow_the_solver_are_refused(weight):
    # (1e308 at tau_m = 2 tau_s used to come back silent: i0 tau_m overflowed)
    network = dg.Network.feedforward([2, 1], neuron=dg.NeuronParameters(1.0, 2.0, 1.0))
    network.layers[0].projection.weights[:] = weight
    with pytest.raises(InvalidValueError, match=r"output.projection.weights: the summed \|weights\| onto neuron 0 "
                                                r"of 'output'.* above 1e\+200"):
        dg.forward(network, [[0.25, 0.5]])
    # times a time constant: 1e150 is fine at tau 1, not at tau 1e60
    with pytest.raises(InvalidValueError, match="above 1e\\+200"):
        dg.Network.feedforward([1, 1], neuron=dg.NeuronParameters(1.0, 2e60, 1e60), weight_mean=1e150, weight_std=0.0)


@pytest.mark.parametrize("ratio", [1.0, 2.0, 1.5])
@pytest.mark.parametrize("gap", [1e299, 1e307])
def test_a_long_silent_gap_lets_the_inhibition_decay_and_the_next_input_fire(ratio, gap):
    # (at tau_m = tau_s the state after the gap was (u + I gap) e^{-gap} = inf x 0 = NaN: silent)
    network = dg.Network.feedforward([2, 1], neuron=dg.NeuronParameters(1.0, ratio, 1.0))
    network.layers[0].projection.weights[:] = [[-1e10], [5.0]]
    t = dg.forward(network, [[0.0, gap]])[0][0, 0]
    assert t == np.nextafter(gap, np.inf)  # (the spike follows within far less than an ulp: the next double)


@pytest.mark.parametrize("ratio", [1.0, 2.0, 1.5, 3.0])
@pytest.mark.parametrize(("time_unit", "potential_unit"), [(1.0, 1e150), (1e-100, 1e98), (1e100, 1e90),
                                                            (1e250, 1e110), (1e-150, 1e-150), (1.0, 1e-161),
                                                            (1.0, 1e-300)])
def test_spike_times_scale_with_the_units_up_to_the_bound(ratio, time_unit, potential_unit):
    # The model is invariant under a change of units: times and time constants x c, threshold and
    # weights x v / c (a current) give spike times x c.  Inputs span 99 tau_m (the layer walk's
    # range), with summed weights near the bound: this found a late spike (tau_m = 2 tau_s, v =
    # 1e150: the maximum's test overflowed on one side) and a missed one (ratio 3, c v >= 1e350).
    rng = np.random.default_rng(1)
    weights = rng.normal(0.3, 0.5, (30, 20))
    inputs = np.sort(rng.uniform(0.0, 99.0 * ratio, (4, 30)), axis=1)

    def spike_times(c, v):
        network = dg.Network.feedforward([30, 20], neuron=dg.NeuronParameters(v, ratio * c, c), weight_mean=0.0,
                                         weight_std=0.0)
        network.layers[0].projection.weights[:] = weights * (v / c)
        return dg.forward(network, inputs * c)[0] / c

    expected = spike_times(1.0, 1.0)
    actual = spike_times(time_unit, potential_unit)
    finite = np.isfinite(expected)
    assert finite.sum() >= 5
    np.testing.assert_array_equal(np.isfinite(actual), finite)
    np.testing.assert_allclose(actual[finite], expected[finite], rtol=1e-9)


def test_a_calibration_cannot_be_changed_under_its_digest():
    """(its arrays were read-only but its dicts were not: a changed dac.threshold kept the old
    digest and the emulator ran it, giving other spike times)"""
    import dataclasses

    calibration = dg.Calibration("toy", {"failed": [1, 2], "nested": {"a": [{"b": 1}]}}, "toy-1",
                                 {"dac.threshold": np.arange(4)})
    digest = calibration.digest
    for change, field in ((lambda c: c.arrays.__setitem__("dac.threshold", c.arrays["dac.threshold"] + 20), "arrays"),
                          (lambda c: c.arrays.pop("dac.threshold"), "arrays"),
                          (lambda c: c.arrays.update(extra=np.ones(2)), "arrays"),
                          (lambda c: c.values.__setitem__("calibrated", False), "values"),
                          (lambda c: c.values.clear(), "values"),
                          (lambda c: c.values["failed"].append(3), "values"),
                          (lambda c: c.values["failed"].__setitem__(0, 7), "values"),
                          (lambda c: c.values["nested"]["a"][0].update(b=2), "values"),
                          (lambda c: c.values["nested"].__init__(a=0), "values")):
        with pytest.raises(InvalidValueError, match=rf"^Calibration.{field}: a Calibration is read-only .*make a "
                                                    r"changed one with dataclasses.replace\(calibration"):
            change(calibration)
    assert calibration.digest == digest == dg.Calibration.from_bytes(calibration.to_bytes()).digest
    assert calibration.values == {"failed": [1, 2], "nested": {"a": [{"b": 1}]}}
    assert json.loads(json.dumps(calibration.values)) == calibration.values  # (still plain JSON for the caller)
    changed = dataclasses.replace(calibration, arrays={**calibration.arrays,
                                                       "dac.threshold": calibration.arrays["dac.threshold"] + 20})
    assert changed.digest != digest and changed.arrays["dac.threshold"][0] == 20
    assert dataclasses.asdict(calibration)["values"] == calibration.values  # (asdict fills new containers)


@pytest.mark.parametrize("copied", [
    lambda c: __import__("copy").deepcopy(c),
    lambda c: __import__("pickle").loads(__import__("pickle").dumps(c)),
    lambda c: __import__("pickle").loads(__import__("pickle").dumps(c, protocol=2)),
], ids=["deepcopy", "pickle", "pickle-2"])
def test_a_copied_calibration_is_read_only_and_has_its_own_digest(copied):
    """(a pickled or deep-copied one came back with writable arrays and the original's cached
    digest: changed in place, it still counted as the original)"""
    calibration = dg.Calibration("toy", {"failed": [1]}, "toy-1", {"dac.threshold": np.arange(4)})
    digest = calibration.digest
    copy = copied(calibration)
    assert copy == calibration and copy.digest == digest
    with pytest.raises(ValueError, match="read-only"):
        copy.arrays["dac.threshold"][:] += 20
    with pytest.raises(InvalidValueError, match="read-only"):
        copy.values["failed"].append(2)


# ---------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"adam_beta1": 1.5}, r"adam_beta1: expected a number >= 0 and < 1, got 1.5"),
        # (a step of 2e5 learning rates, against the bound docs/training.md gives)
        ({"adam_beta1": 0.999, "adam_beta2": 0.9}, r"adam_beta1: its square must be below adam_beta2 \(0.9\), or "
                                                   r"Adam's steps have no bound"),
        ({"lr_decay": float("nan")}, "lr_decay: expected a number"),
        ({"hidden": "30"}, "hidden: expected a positive integer"),
        ({"epochs": 2.5}, "epochs: expected an integer >= 1"),
        ({"weight_lr": True}, "weight_lr: expected a number"),
        # (absurd step sizes trained until the weights overflowed, naming none of them)
        ({"weight_lr": 1e300}, r"weight_lr: expected a number > 0 and <= 10, or unset, got 1e\+300"),
        ({"delay_lr": 1e300}, r"delay_lr: expected a number from 0 to 10, or unset, got 1e\+300"),
        ({"silent_bump": 1e300}, r"silent_bump: expected a number > 0 and <= 10, or unset, got 1e\+300"),
        ({"tau_ratio": float("inf")}, "tau_ratio: expected a number from 0.01 to 1000000.0"),
        ({"tau_ratio": 1e-3}, "tau_ratio: expected a number from 0.01"),  # (the solver's range: the trainer refused it)
        ({"weight_limit": 0.1, "weight_resolution": 1.0}, "weight_resolution: 1.0 is above weight_limit 0.1"),
        # (refused only when a trainer built the run)
        ({"encoder_options": {"repeat": 0}}, "LatencyEncoder.repeat: expected an integer from 1 to 1000, got 0"),
        ({"encoder_options": {"repeat": 100000}},
         "LatencyEncoder.repeat: expected an integer from 1 to 1000, got 100000"),
        ({"loss_options": {"delta": 0.5}, "loss_delta": 0.3}, "loss_options: set loss_delta instead of the option"),
        # (the option was used and the field, at its default, recorded as if it were)
        ({"loss_options": {"delta": 0.5}}, "loss_options: set loss_delta instead of the option delta"),
        ({"encoder_options": {"t_early": 0.5}}, "encoder_options: set t_early instead of the option t_early"),
        ({"backend_options": {"colour": 1}}, r"backend 'reference': unknown option\(s\) colour"),
        ({"keep_best": "yes"}, "keep_best: expected true or false"),
        ({"backend_options": [1]}, "backend_options: expected a table"),
        ({"t_early": 2.0, "t_late": 1.0}, "t_late: must be greater than t_early"),
        # (taken and ignored: only the clipped parametrisation has an upper bound)
        ({"delay_max": 0.3}, r"delay_max: bounds delays only with delay_parametrisation = 'clip'; with 'sigmoid' they "
                             r"lie between delay_shift and delay_shift \+ delay_scale \(0 and 1\)"),
        ({"weight_init_mean": [1.0]}, "weight_init_mean: a list needs one value per neuron layer"),
        ({"max_weight_term": -1}, "max_weight_term: expected a finite number > 0"),
        ({"loss": "hinge"}, "loss: 'hinge' is not installed; installed: "),
        ({"backend": "chip9000"}, "backend: 'chip9000' is not installed; installed: "),
    ],
)
def test_bad_settings_name_the_setting(settings, message):
    with pytest.raises(InvalidValueError, match=message):
        TrainingConfig.from_dict(settings)


_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6), st.floats(allow_nan=True, allow_infinity=True),
                    st.text(max_size=5), st.lists(st.floats(-2, 2), max_size=3),
                    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@given(st.dictionaries(st.sampled_from([f.name for f in __import__("dataclasses").fields(TrainingConfig)]),
                       _VALUES, max_size=4))
@settings(max_examples=150, deadline=None)
@example({"delay_shift": 1000000001.0})  # (named by delay_scale, whose range it leaves too small: hypothesis found it)
def test_any_config_is_valid_or_refused_naming_a_field(values):
    try:
        config = TrainingConfig.from_dict(values)
    except InvalidValueError as exc:
        # (a conflict between two settings is named by one of them and mentions the other)
        paired = {"t_early": "t_late", "adam_beta2": "adam_beta1", "delay_shift": "delay_scale"}
        named = [*values, *(paired[name] for name in values if name in paired), "t_late", "config"]
        assert any(str(exc).startswith(name) for name in named), str(exc)
        return
    for name, value in config.to_dict().items():  # whatever was accepted is sane
        if isinstance(value, float):
            assert np.isfinite(value), name


def test_numpy_bools_are_taken_as_python_bools_and_ints_are_not():
    """(np.False_ was refused: "keep_best: expected true or false, got np.False_", while numpy
    integers are taken everywhere)"""
    from delgrad_core.training import config_with_defaults

    for config in (TrainingConfig(keep_best=np.False_, _check_components=False),
                   config_with_defaults({"keep_best": np.bool_(False)})):
        assert config.keep_best is False
        json.dumps(config.to_dict())
    assert dg.LatencyEncoder(pairs=np.True_).pairs is True
    for value in (0, 1, np.int64(1)):
        with pytest.raises(InvalidValueError, match="keep_best: expected true or false"):
            TrainingConfig(keep_best=value, _check_components=False)
        with pytest.raises(InvalidValueError, match="LatencyEncoder.pairs: expected true or false"):
            dg.LatencyEncoder(pairs=value)


def test_a_train_table_beside_top_level_settings_is_refused(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("epochs = 3\n[train]\nhidden = 5\n")
    with pytest.raises(InvalidValueError, match="settings outside the \\[train\\] table would be ignored: epochs"):
        load_config(path)
    path.write_text("epochs = [\n")
    with pytest.raises(FileFormatError, match="not valid TOML"):
        load_config(path)
    path.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(FileFormatError, match="not valid TOML \\(nested too deeply"):
        load_config(path)


def test_files_that_break_the_readers_are_refused(tmp_path):
    from delgrad_core._npz import npz_bytes

    nested = "[" * 100_000 + "]" * 100_000
    (tmp_path / "deep.npz").write_bytes(npz_bytes({"network.json": np.array(nested)}))
    with pytest.raises(FileFormatError, match="'network.json' is JSON nested too deeply"):
        dg.load_network(tmp_path / "deep.npz")
    with pytest.raises(FileFormatError, match="not a regular file"):
        dg.load_network("/dev/zero")  # (read whole, it would never end)


# ---------------------------------------------------------------------------- the command line


def _delgrad(tmp_path, *args, env=None, timeout=300, preexec_fn=None):
    return subprocess.run([sys.executable, "-m", "delgrad_core.cli", *args], cwd=tmp_path,
                          env=dict(os.environ, **(env or {})), capture_output=True, text=True, timeout=timeout,
                          preexec_fn=preexec_fn)


def _assert_one_line_error(process, *fragments):
    assert process.returncode == 1, process.stdout + process.stderr
    lines = process.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), process.stderr
    for fragment in fragments:
        assert fragment in lines[0], process.stderr


TRAIN = ["train", "--epochs", "1", "--hidden", "4", "--delays", "none", "--no-progress"]


def test_ordinary_faults_end_in_one_line(tmp_path):
    (tmp_path / "afile").write_text("x")
    _assert_one_line_error(_delgrad(tmp_path, *TRAIN, "--out", "afile/run"), "afile/run", "Not a directory")
    (tmp_path / "bad.toml").write_text("epochs = [\n")
    (tmp_path / "binary.toml").write_bytes(bytes(range(128, 256)))
    # (it trained, overflowing weights of silent neurons)
    (tmp_path / "fast.toml").write_text("[heuristics]\nsilent_bump = 1e300\n")
    for arguments, message in (  # usage errors (status 2), all before any folder is made
            (["--config", "bad.toml"], "Error: bad.toml: not valid TOML"),
            (["--config", "binary.toml"], "Error: binary.toml: not valid TOML (not UTF-8"),
            (["--backend-option", "colour=red"],
             "Error: backend_options: backend 'reference': unknown option(s) colour"),
            # (refused when the backend is built; they were status 1, as if the run had failed)
            (["--backend-option", "n_threads=0"],
             "Error: backend_options: backend 'reference': n_threads: expected an integer from 1 to 256, got 0"),
            (["--backend", "bss2-emulator", "--backend-option", "chip=-1"],
             "Error: backend_options: backend 'bss2-emulator': chip: expected an integer from 0 to "
             "2**63 - 1, got -1"),
            (["--config", "fast.toml"], "Error: fast.toml: silent_bump: expected a number > 0 and <= 10, or unset, "
                                        "got 1e+300"),
            # (it ran without end; refused only when it ran, for a value <= 0)
            (["--backend", "example", "--backend-option", "dt=1e-300"],
             "Error: backend_options: backend 'example': dt: expected a number of tau_s from 1e-05 to 0.1, "
             "got 1e-300")):
        refused = _delgrad(tmp_path, *TRAIN, *arguments, "--out", "never")
        assert refused.returncode == 2 and refused.stderr.strip().splitlines()[-1].startswith(message), refused.stderr
        assert not (tmp_path / "never").exists()
    run = tmp_path / "run"
    assert _delgrad(tmp_path, *TRAIN, "--out", "run").returncode == 0
    for arguments in (["--backend-option", "n_threads=0"],
                      ["--backend", "reference", "--backend-option", "colour=red"]):
        refused = _delgrad(tmp_path, "evaluate", "run", *arguments)  # (option errors were status 1 here)
        assert refused.returncode == 2 and "Error: backend_options: backend 'reference': " in refused.stderr, \
            refused.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "test_seed": -5}))
    _assert_one_line_error(_delgrad(tmp_path, "evaluate", "run"), "test_seed: expected an integer in [0, 2**63 - 1]")
    (run / "metrics.json").write_text('{"test_accuracy": 0.5, "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    _assert_one_line_error(_delgrad(tmp_path, "evaluate", "run"), "metrics.json: not readable JSON (nested too deeply)")
    (tmp_path / "beta.toml").write_text("[loss]\nname = 'crossentropy'\nbeta = 0.001\n")
    failing = ["--config", "beta.toml"]  # (a value refused when the run meets it: exp(t / beta) overflows)
    _assert_one_line_error(_delgrad(tmp_path, *TRAIN, *failing, "--out", "never"), "beta=0.001): not finite")
    assert not (tmp_path / "never").exists()  # a run that wrote nothing leaves no folder behind
    _assert_one_line_error(_delgrad(tmp_path, *TRAIN, *failing), "beta=0.001): not finite")
    assert list((tmp_path / "runs").iterdir()) == []  # nor in a folder of its own choosing
    (tmp_path / "edited").mkdir()
    (tmp_path / "edited" / "network.npz").write_bytes(b"")
    (tmp_path / "edited" / "metrics.json").write_text('{"test_accuracy": 0.5, "config": "x"}')
    _assert_one_line_error(_delgrad(tmp_path, "evaluate", "edited"), "metrics.json: its 'config' is not a table")
    (tmp_path / "net.npz").write_bytes(b"PK\x03\x04broken")
    _assert_one_line_error(_delgrad(tmp_path, "evaluate", "net.npz"), "net.npz", "not a readable")
    process = _delgrad(tmp_path, "sweep", "--config", "bad.toml", "--out", "sw")  # (a usage error, as for train)
    assert process.returncode == 2 and process.stderr.strip().splitlines()[-1].startswith("Error: bad.toml: not valid")


def test_evaluate_refuses_a_network_that_does_not_fit_the_dataset(tmp_path):
    dg.save_network(dg.Network.feedforward([4, 5, 2], seed=0), tmp_path / "two.npz")
    _assert_one_line_error(_delgrad(tmp_path, "evaluate", "two.npz"), "2 output neurons but the dataset has 3 classes")
    dg.save_network(dg.Network.feedforward([5, 5, 3], seed=0), tmp_path / "five.npz")
    _assert_one_line_error(_delgrad(tmp_path, "evaluate", "five.npz"), "5 inputs but the encoded dataset has 4 "
                           "(yin_yang, the default; --dataset, --backend or --config name the network's task")


def test_evaluate_a_run_folder_whose_network_file_is_gone(tmp_path):
    assert _delgrad(tmp_path, *TRAIN, "--out", "run").returncode == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    (tmp_path / "run" / "metrics.json").write_text(json.dumps({**metrics, "config": {"backend": "bss2-hw"}}))
    _assert_one_line_error(_delgrad(tmp_path, "evaluate", "run"), "backend 'bss2-hw', which is not installed",
                           "settings: the run's, from")
    # the run's own option value, refused when the backend is built: the run is at fault (status 1), not the command
    (tmp_path / "run" / "metrics.json").write_text(json.dumps({**metrics, "config": {
        **metrics["config"], "backend": "reference", "backend_options": {"n_threads": 0}}}))
    _assert_one_line_error(_delgrad(tmp_path, "evaluate", "run"), "n_threads: expected an integer from 1 to 256, got 0",
                           "settings: the run's, from")
    (tmp_path / "run" / "network.npz").unlink()
    _assert_one_line_error(_delgrad(tmp_path, "evaluate", "run"),
                           "run: the run folder has no network file (network.npz)")


def test_reading_a_named_pipe_is_refused_without_waiting_for_a_writer(tmp_path):
    """(opening a FIFO for reading blocked until a writer came: a FIFO at a calibration cache
    entry's name hung `delgrad calibrate` for ever)"""
    os.mkfifo(tmp_path / "pipe.npz")
    reader = subprocess.run([sys.executable, "-c", "import sys, delgrad_core as dg; dg.load_network(sys.argv[1])",
                             str(tmp_path / "pipe.npz")], capture_output=True, text=True, timeout=60)
    assert reader.returncode == 1 and "pipe.npz: not a readable delgrad network file (not an npz archive: not a " \
                                       "regular file)" in reader.stderr, reader.stderr


def test_writing_follows_links_and_never_replaces_a_pipe(tmp_path):
    # (the rename of an atomic write replaced links, pipes and, as root, device nodes with files)
    dg.save_network(dg.Network.feedforward([2, 3, 2], seed=0), tmp_path / "n.npz")
    (tmp_path / "real.nir").write_text("old")
    (tmp_path / "link.nir").symlink_to("real.nir")
    os.mkfifo(tmp_path / "pipe.nir")
    assert _delgrad(tmp_path, "export", "n.npz", "link.nir", "--time-scale", "1e-3", "--force").returncode == 0
    assert (tmp_path / "link.nir").is_symlink() and (tmp_path / "real.nir").read_bytes()[:4] == b"\x89HDF"
    _assert_one_line_error(_delgrad(tmp_path, "export", "n.npz", "pipe.nir", "--time-scale", "1e-3", "--force"),
                           "pipe.nir: exists and is not a regular file")
    assert stat.S_ISFIFO(os.lstat(tmp_path / "pipe.nir").st_mode)


def test_a_folder_holding_a_run_is_never_overwritten(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "network.npz").write_bytes(b"precious")
    (run / "metrics.json").write_text("{}")
    _assert_one_line_error(_delgrad(tmp_path, *TRAIN, "--out", "run"), "already holds a run")
    assert (run / "network.npz").read_bytes() == b"precious"
    _assert_one_line_error(_delgrad(tmp_path, *TRAIN, "--out", "fresh", "--resume"), "no checkpoint.npz to resume")


@pytest.mark.parametrize("removed", ["lock file", "folder"])
def test_a_lock_file_its_last_holder_removes_under_a_new_claim_is_taken_again(tmp_path, monkeypatch, removed):
    """(a run ending without writing removed its lock file, and its new folder, after letting the
    lock go: a claim that had opened the old file then locked a file no longer in the folder, or
    found the folder gone, and failed with 'cannot write here (No such file or directory)' or 'the
    folder was moved, removed or replaced' where it should hold the folder)"""
    import shutil

    from delgrad_core.training import _run_folder
    from delgrad_core.training._run_folder import RunFolder

    run, real_lock, calls = tmp_path / "run", _run_folder._lock, []

    def last_holder_cleans_up_first(handle, path):  # (between this claim's open and its lock)
        calls.append(path)
        if len(calls) == 1:
            os.unlink(path / ".lock") if removed == "lock file" else shutil.rmtree(path)
        real_lock(handle, path)

    monkeypatch.setattr(_run_folder, "_lock", last_holder_cleans_up_first)
    with RunFolder(run).claim(resume=False):
        assert (run / ".lock").read_text() == f"process {os.getpid()}" and len(calls) == 2
        (run / "history.jsonl").write_text("")
    assert sorted(p.name for p in run.iterdir()) == [".lock", "history.jsonl"]


def test_a_claim_interrupted_right_after_locking_holds_nothing(tmp_path, monkeypatch):
    """(found by a review of the claims' retry: it kept the folder locked for the rest of the
    process, "in use by this process")"""
    from delgrad_core.training import _run_folder
    from delgrad_core.training._run_folder import RunFolder

    run = tmp_path / "run"
    with monkeypatch.context() as patched:
        patched.setattr(_run_folder, "_is_current", lambda handle, path: (_ for _ in ()).throw(KeyboardInterrupt))
        with pytest.raises(KeyboardInterrupt):
            RunFolder(run).claim(resume=False).__enter__()
    assert os.path.realpath(run) not in _run_folder._HELD
    with RunFolder(run).claim(resume=False):
        pass


def test_a_run_whose_folder_was_moved_leaves_the_new_folder_by_its_name_alone(tmp_path):
    """(its clean-up removed the lock file and folder of another process's run by that name)"""
    import fcntl

    from delgrad_core.training._run_folder import RunFolder

    run = tmp_path / "run"
    first = RunFolder(run).claim(resume=False)
    first.__enter__()
    run.rename(tmp_path / "moved")
    run.mkdir()
    with open(run / ".lock", "a+") as other:  # (another process's run)
        fcntl.flock(other.fileno(), fcntl.LOCK_EX)
        first.__exit__(None, None, None)
        assert sorted(p.name for p in run.iterdir()) == [".lock"]


def test_a_users_empty_folder_listed_with_another_claims_lock_file_stays(tmp_path, monkeypatch):
    """(the claim took the folder for one made for a run, and removed it at its end)"""
    from delgrad_core.training import _run_folder
    from delgrad_core.training._run_folder import RunFolder

    mine = tmp_path / "mine"
    mine.mkdir()
    entries, calls = _run_folder._entries, []

    def listed_with_a_lock_file_removed_since(path):
        calls.append(path)
        return {".lock": (-1, 0, 0)} if len(calls) == 1 else entries(path)

    monkeypatch.setattr(_run_folder, "_entries", listed_with_a_lock_file_removed_since)
    with RunFolder(mine).claim(resume=False):
        pass
    assert mine.is_dir() and list(mine.iterdir()) == []


def test_a_readers_moment_on_the_lock_does_not_refuse_a_claim(tmp_path):
    """(`RunFolder.writer`'s shared lock made a claim at that moment fail, naming a dead process)"""
    import fcntl
    import threading

    from delgrad_core.training._run_folder import RunFolder

    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text("process 4242")
    with open(run / ".lock") as reader:
        fcntl.flock(reader.fileno(), fcntl.LOCK_SH)
        threading.Timer(0.005, lambda: fcntl.flock(reader.fileno(), fcntl.LOCK_UN)).start()
        with RunFolder(run).claim(resume=False):
            assert (run / ".lock").read_text() == f"process {os.getpid()}"


def test_a_pipe_as_a_folders_lock_file_does_not_block_evaluate(tmp_path):
    """(evaluate, asking who writes the folder, opened it and waited for a writer for ever)"""
    (tmp_path / "run").mkdir()
    os.mkfifo(tmp_path / "run" / ".lock")
    process = subprocess.run([sys.executable, "-m", "delgrad_core.cli", "evaluate", "run"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
    assert process.returncode == 1 and "not a finished run folder" in process.stderr, process.stderr


def test_a_new_run_refuses_a_folder_of_other_files_and_leaves_them_alone(tmp_path):
    from delgrad_core.training._run_folder import RunFolder

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / ".notes.tmp").write_text("important")
    (mine / "confusion.png").write_text("my own figure")
    with pytest.raises(dg.RunFolderError, match=r"mine: holds other files \(.notes.tmp, confusion.png\)"):
        with RunFolder(mine).claim(resume=False):
            pass
    assert (mine / ".notes.tmp").read_text() == "important" and (mine / "confusion.png").read_text() == "my own figure"
    assert sorted(entry.name for entry in mine.iterdir()) == [".notes.tmp", "confusion.png"]  # (a .lock was left)
    several = tmp_path / "several"
    several.mkdir()
    (several / "history.jsonl").write_text('{"epoch": 1}\n{"epoch": 2}\n')  # not a run killed before its 1st checkpoint
    for name in "abcd":
        (several / name).write_text("")
    with pytest.raises(dg.RunFolderError, match="already holds a run"):
        with RunFolder(several).claim(resume=False):
            pass
    assert (several / "history.jsonl").read_text().count("\n") == 2
    killed = tmp_path / "killed"  # what a kill before the first checkpoint leaves: taken over
    killed.mkdir()
    (killed / "history.jsonl").write_text('{"epoch": 1}\n')
    (killed / ".checkpoint.npz.x1y2.tmp").write_bytes(b"half")
    with RunFolder(killed).claim(resume=False):
        assert sorted(p.name for p in killed.iterdir()) == [".lock"]
    copied = tmp_path / "copied"  # a run's files without its lock (cp run/* copied/), written again here
    copied.mkdir()
    (copied / "checkpoint.npz").write_bytes(b"epoch 1")
    (copied / "history.jsonl").write_text('{"epoch": 1}\n')
    with RunFolder(copied).claim(resume=True):
        (copied / "history.jsonl").write_text('{"epoch": 1}\n{"epoch": 2}\n')
    # (the lock of a folder written in went too, as the names of its files were those it held before)
    assert sorted(p.name for p in copied.iterdir()) == [".lock", "checkpoint.npz", "history.jsonl"]


def test_a_folder_locked_by_a_process_that_wrote_no_name_is_in_use_by_another_process(tmp_path):
    """A lock held by a process that has not written its name yet is told as another process's."""
    import fcntl

    from delgrad_core.training._run_folder import RunFolder

    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text("")
    with open(run / ".lock") as other:
        fcntl.flock(other.fileno(), fcntl.LOCK_EX)
        assert RunFolder(run).writer() == "another process"
        with pytest.raises(dg.FolderInUseError, match=f"^{re.escape(str(run))}: in use by another process; wait"):
            with RunFolder(run).claim(resume=False):
                pass


def test_a_claimed_folder_names_its_writer_and_a_free_one_none(tmp_path):
    """`RunFolder.writer` names the process holding the folder, and nobody once it is let go."""
    from delgrad_core.training._run_folder import RunFolder

    run = tmp_path / "run"
    with RunFolder(run).claim(resume=False) as claimed:
        claimed.append_history({"epoch": 1})
        assert RunFolder(run).writer() == f"process {os.getpid()}"
    assert RunFolder(run).writer() is None and (run / ".lock").exists()


@pytest.mark.parametrize(("names", "listed"), [("abc", "a, b, c"), ("abcde", "a, b, c and 2 more")])
def test_a_folder_of_other_files_lists_the_first_three(tmp_path, names, listed):
    """Other files in the way of a new run are named, the first three and how many more, before and at the claim."""
    from delgrad_core.training._run_folder import RunFolder

    mine = tmp_path / "mine"
    mine.mkdir()
    for name in names:
        (mine / name).write_text("")
    assert RunFolder(mine).in_the_way() == f"holds other files ({listed})"
    with pytest.raises(dg.RunFolderError, match=re.escape(f"{mine}: holds other files ({listed}), which a run")):
        with RunFolder(mine).claim(resume=False):
            pass


def test_a_folder_that_takes_no_new_files_is_refused_when_claimed(tmp_path, monkeypatch):
    """A folder whose lock file opens but where no file can be made (e.g. a read-only file
    system) is refused by the claim, not after an epoch of training."""
    from delgrad_core.training import _run_folder
    from delgrad_core.training._run_folder import RunFolder

    def read_only(path, text):
        raise OSError(30, "Read-only file system", str(path))

    monkeypatch.setattr(_run_folder, "atomic_write_text", read_only)
    with pytest.raises(dg.RunFolderError, match=f"{tmp_path / 'run'}: cannot write here \\(Read-only file system\\)"):
        with RunFolder(tmp_path / "run").claim(resume=False):
            pass
    assert not (tmp_path / "run").exists()


def test_a_folder_holding_only_a_killed_runs_lock_goes_when_nothing_is_written_in_it(tmp_path):
    """A folder that holds only the lock file of a killed run was made for a run: a refused claim removes it."""
    from delgrad_core.training._run_folder import RunFolder

    run = tmp_path / "run"
    run.mkdir()
    (run / ".lock").write_text("process 4242")
    with pytest.raises(dg.RunFolderError, match="no checkpoint.npz to resume from"):
        with RunFolder(run).claim(resume=True):
            pass
    assert not run.exists()


def test_a_users_empty_folder_stays_after_claims_that_wrote_nothing(tmp_path):
    """A folder the user made is left, empty, by a claim that wrote nothing in it or was refused."""
    from delgrad_core.training._run_folder import RunFolder

    mine = tmp_path / "mine"
    mine.mkdir()
    with RunFolder(mine).claim(resume=False):
        pass
    assert mine.is_dir() and list(mine.iterdir()) == []
    with pytest.raises(dg.RunFolderError, match="no checkpoint.npz to resume from"):
        with RunFolder(mine).claim(resume=True):
            pass
    assert mine.is_dir() and list(mine.iterdir()) == []


def test_a_folder_holding_only_a_network_holds_a_run_that_cannot_be_resumed(tmp_path):
    """A network file alone is a run's (never overwritten); without a checkpoint, resuming it is
    not offered."""
    from delgrad_core.training._run_folder import RunFolder

    run = tmp_path / "run"
    run.mkdir()
    (run / "network.npz").write_bytes(b"precious")
    with pytest.raises(dg.RunFolderError, match=f"^{re.escape(str(run))}: already holds a run \\(network.npz\\); "
                                                "choose another folder$"):
        with RunFolder(run).claim(resume=False):
            pass
    assert (run / "network.npz").read_bytes() == b"precious"


def test_resuming_a_folder_killed_before_its_first_checkpoint_is_refused_and_keeps_its_history(tmp_path):
    """A resume with nothing to resume from changes nothing: the history of a run killed before its first checkpoint
    stays (only a new run takes that folder over)."""
    from delgrad_core.training._run_folder import RunFolder

    run = tmp_path / "run"
    run.mkdir()
    (run / "history.jsonl").write_text('{"epoch": 1}\n')
    with pytest.raises(dg.RunFolderError, match="no checkpoint.npz to resume from"):
        with RunFolder(run).claim(resume=True):
            pass
    assert (run / "history.jsonl").read_text() == '{"epoch": 1}\n'


def test_results_are_readable_by_others(tmp_path):
    process = _delgrad(tmp_path, *TRAIN, "--out", "run")
    assert process.returncode == 0, process.stderr
    umask = os.umask(0)
    os.umask(umask)
    for name in ("network.npz", "metrics.json", "checkpoint.npz", "history.jsonl"):
        assert (tmp_path / "run" / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_a_backend_returning_nan_is_a_one_line_error(tmp_path):
    from delgrad_core.testing import write_distribution

    source = '''
        import numpy as np
        from delgrad_core import Backend, Capabilities, ExecutionResult, forward, hookimpl

        class NanBackend(Backend):
            name = "nan"
            capabilities = Capabilities()

            def _execute(self, request):
                times = forward(request.network, request.input_spike_times)
                times[-1][0, 0] = np.nan
                return ExecutionResult(times, {})

        @hookimpl
        def delgrad_register_backends(register):
            register("nan", NanBackend, capabilities=Capabilities())
    '''
    write_distribution(tmp_path / "site", "delgrad-nan", "1.0", {"nan_backend": source},
                       {"delgrad.backends": {"nan": "nan_backend"}})
    process = _delgrad(tmp_path, *TRAIN, "--backend", "nan", "--out", "run", env={"PYTHONPATH": str(tmp_path / "site")})
    _assert_one_line_error(process, "backend 'nan' returned an invalid result", "layer_spike_times[1]: contains NaN")


def test_resuming_with_another_thread_count_is_bit_identical(tmp_path):
    args = ["train", "--epochs", "3", "--hidden", "12", "--delays", "synaptic", "--no-progress", "--batch-size", "500"]
    straight = _delgrad(tmp_path, *args, "--out", "straight", env={"DELGRAD_NUM_THREADS": "2"})
    assert straight.returncode == 0, straight.stderr
    first = _delgrad(tmp_path, *args[:2], "2", *args[3:], "--out", "split", env={"DELGRAD_NUM_THREADS": "1"})
    assert first.returncode == 0 or "test accuracy" in first.stdout, first.stderr
    (tmp_path / "split" / "metrics.json").unlink()  # keep only the checkpoint of epoch 2
    (tmp_path / "split" / "network.npz").unlink()
    resumed = _delgrad(tmp_path, *args, "--out", "split", "--resume", env={"DELGRAD_NUM_THREADS": "2"})
    assert resumed.returncode == 0, resumed.stderr
    assert_same_network(dg.load_network(tmp_path / "split" / "network.npz"),
                        dg.load_network(tmp_path / "straight" / "network.npz"))


# ---------------------------------------------------------------------------- processes, signals, disks


def _interruptible() -> None:
    """Let the child take SIGINT as Ctrl-C even when this test process ignores it (a shell
    starts background jobs with SIGINT ignored, and Python keeps an inherited SIG_IGN)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _spawn(tmp_path, *args, env=None):
    return subprocess.Popen([sys.executable, "-m", "delgrad_core.cli", *args], cwd=tmp_path,
                            env=dict(os.environ, **(env or {})), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=_interruptible)


def _wait_for(path, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.mark.slow
def test_two_trainings_cannot_share_a_folder(tmp_path):
    first = _spawn(tmp_path, "train", "--epochs", "50", "--hidden", "4", "--no-progress", "--out", "run")
    try:
        _wait_for(tmp_path / "run" / "checkpoint.npz")
        second = _delgrad(tmp_path, "train", "--epochs", "1", "--no-progress", "--out", "run", "--resume")
        _assert_one_line_error(second, "run: in use by process")
    finally:
        first.kill()
        first.wait()


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_killed_training_resumes_to_the_uninterrupted_result(tmp_path, how):
    args = ["train", "--epochs", "6", "--hidden", "8", "--delays", "axonal", "--no-progress", "--batch-size", "250"]
    assert _delgrad(tmp_path, *args, "--out", "straight").returncode == 0
    victim = _spawn(tmp_path, *args, "--out", "killed")
    _wait_for(tmp_path / "killed" / "checkpoint.npz")
    victim.send_signal(how)
    victim.wait(timeout=60)
    assert not (tmp_path / "killed" / "network.npz").exists(), "finished before the signal: make the run longer"
    if how != signal.SIGKILL:  # SIGTERM unwinds like Ctrl-C: the hint, status 128 + the signal
        assert victim.returncode == 128 + how and "--resume" in victim.stderr.read()
    resumed = _delgrad(tmp_path, *args, "--out", "killed", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_network(dg.load_network(tmp_path / "killed" / "network.npz"),
                        dg.load_network(tmp_path / "straight" / "network.npz"))
    assert list((tmp_path / "killed").glob(".*.tmp")) == []


@pytest.mark.slow
def test_ctrl_c_before_the_first_epoch_suggests_nothing_to_resume(tmp_path):
    # batch size 1: the first epoch (5,000 steps) lasts seconds, so the signal lands inside it
    victim = _spawn(tmp_path, "train", "--epochs", "3", "--batch-size", "1", "--no-progress", "--out", "run")
    _wait_for(tmp_path / "run" / ".lock")
    victim.send_signal(signal.SIGINT)
    victim.wait(timeout=60)
    error = victim.stderr.read()
    assert victim.returncode == 130 and "--resume" not in error and "nothing to resume" in error


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


SWEEP = ["sweep", "--hidden", "6", "--delays", "none,axonal,synaptic", "--seeds", "2", "--epochs", "40", "--jobs", "2",
         "--out", "sweep"]


@pytest.mark.slow
def test_killing_a_sweep_kills_its_workers(tmp_path):
    sweep = _spawn(tmp_path, *SWEEP)
    deadline = time.monotonic() + 60
    while len(_children(sweep.pid)) < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    workers = _children(sweep.pid)
    sweep.kill()
    sweep.wait()
    deadline = time.monotonic() + 10
    while any(process_exists(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(process_exists(pid) for pid in workers)


def _signal_a_running_sweep(tmp_path, signum, *more):
    """Start SWEEP (with `more` arguments), wait for its first checkpoint, then send `signum` to
    the sweep and its workers, as a terminal (Ctrl-C) or a job scheduler does to a process group;
    it has ended."""
    sweep = _spawn(tmp_path, *SWEEP, *more)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "sweep").glob("runs/*/checkpoint.npz")):
        assert time.monotonic() < deadline, "no trial wrote a checkpoint"
        time.sleep(0.05)
    sweep.send_signal(signum)
    for worker in _children(sweep.pid):
        with contextlib.suppress(ProcessLookupError):  # (a worker may end between ps and kill)
            os.kill(worker, signum)
    sweep.wait(timeout=120)
    return sweep


@pytest.mark.slow
def test_ctrl_c_on_a_sweep_stops_at_epoch_boundaries_writes_the_table_and_resumes(tmp_path):
    sweep = _signal_a_running_sweep(tmp_path, signal.SIGINT)
    error = sweep.stderr.read()
    assert sweep.returncode == 130 and "run the same command again to resume" in error, error
    assert (tmp_path / "sweep" / "sweep.csv").exists()
    stopped = [d for d in (tmp_path / "sweep" / "runs").iterdir() if (d / "checkpoint.npz").exists()
               and not (d / "metrics.json").exists()]
    assert stopped, "some runs should have stopped at an epoch boundary"
    finished = len(list((tmp_path / "sweep" / "runs").glob("*/metrics.json")))
    shown = re.findall(r"sweep:.*?\| (\d+)/6 \[", error)[-1]  # (the bar's last count: trials that ended)
    assert int(shown) == finished < 6, error
    again = _delgrad(tmp_path, *SWEEP, timeout=900)
    assert again.returncode == 0, again.stderr
    assert len((tmp_path / "sweep" / "sweep.csv").read_text().splitlines()) == 7


@pytest.mark.slow
def test_a_second_ctrl_c_ends_the_running_trials_at_once_and_still_writes_the_table(tmp_path):
    """(it ended the sweep with the running trials killed, but wrote no sweep.csv and did not say
    how to resume)"""
    (tmp_path / "slow.toml").write_text("batch_size = 1\n")  # epochs of about 2 s
    args = ["sweep", "--hidden", "2,40", "--delays", "synaptic", "--seeds", "1", "--epochs", "2",
            "--config", "slow.toml", "--out", "sweep"]
    assert _delgrad(tmp_path, *args, "--trial", "0").returncode == 0  # one finished trial for the table
    sweep = _spawn(tmp_path, *args)
    deadline = time.monotonic() + 60  # (until the second trial runs: a signal before comes while the sweep sets up)
    while not list((tmp_path / "sweep" / "runs").glob("*-h40-*/.lock")) or not (workers := _children(sweep.pid)):
        assert time.monotonic() < deadline and sweep.poll() is None, sweep.stderr.read()
        time.sleep(0.05)
    for pause in (0.5, 0.2):  # (both well inside the first epoch: the first Ctrl-C alone would end it there)
        time.sleep(pause)
        for pid in [sweep.pid, *workers]:  # (as a terminal signals the process group)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)
    sweep.wait(timeout=60)
    error = sweep.stderr.read()
    assert sweep.returncode == 130, error
    assert "interrupted again: the running runs end now" in error, error
    assert "run the same command again to resume" in error, error
    rows = (tmp_path / "sweep" / "sweep.csv").read_text().splitlines()[1:]
    assert len(rows) == 1 and rows[0].startswith("synaptic,2,"), rows
    assert not list((tmp_path / "sweep" / "runs").glob("*-h40-*/checkpoint.npz"))  # (ended inside its first epoch)
    deadline = time.monotonic() + 10  # (killed; init reaps them)
    while [pid for pid in workers if os.path.exists(f"/proc/{pid}")]:
        assert time.monotonic() < deadline, "the workers outlived the sweep"
        time.sleep(0.1)


@pytest.mark.slow
def test_sigterm_to_a_sweeps_process_group_stops_it_and_fails_no_trial(tmp_path):
    """As SLURM's scancel or systemd do: every process of the group gets SIGTERM; the workers die
    at once, the sweep unwinds like Ctrl-C and counts their trials as stopped, not failed."""
    # epochs of seconds (batch 1): the workers are killed inside one, not stopped at its end
    (tmp_path / "slow.toml").write_text("batch_size = 1\n")
    sweep = _signal_a_running_sweep(tmp_path, signal.SIGTERM, "--config", "slow.toml")
    output = sweep.stdout.read() + sweep.stderr.read()
    assert sweep.returncode == 128 + signal.SIGTERM and "FAILED" not in output, output
    assert "stopped with its worker" in output and "run the same command again to resume" in output


@pytest.mark.slow
@pytest.mark.skipif(not plots_available(), reason="the plots are the files too large here: needs matplotlib")
def test_a_full_disk_is_a_one_line_error_and_the_run_completes_after_resume(tmp_path):
    """File-size limit of the process (RLIMIT_FSIZE) as a disk that fills up: the checkpoints fit,
    the plots at the end do not."""
    args = ["train", "--epochs", "3", "--hidden", "4", "--delays", "none", "--no-progress"]
    assert _delgrad(tmp_path, *args, "--out", "straight").returncode == 0
    data_files = ["checkpoint.npz", "network.npz", "metrics.json", "history.jsonl"]
    largest = max((tmp_path / "straight" / name).stat().st_size for name in data_files)
    assert (tmp_path / "straight" / "learning_curves.png").stat().st_size > largest + 2000

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (largest + 1000, largest + 1000))

    def no_checkpoint_fits():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))

    process = _delgrad(tmp_path, *args, "--out", "none", preexec_fn=no_checkpoint_fits)
    _assert_one_line_error(process, "File too large")  # (it gave no advice)
    assert "; no epoch was saved: run the same command again once the cause is removed" in process.stderr
    assert _delgrad(tmp_path, *args, "--out", "none").returncode == 0  # (as it says)
    process = _delgrad(tmp_path, *args, "--out", "full", preexec_fn=small_files)
    _assert_one_line_error(process, "File too large")
    assert (tmp_path / "full" / "checkpoint.npz").exists()
    assert list((tmp_path / "full").glob(".*.tmp")) == []
    resumed = _delgrad(tmp_path, *args, "--out", "full", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert_same_network(dg.load_network(tmp_path / "full" / "network.npz"),
                        dg.load_network(tmp_path / "straight" / "network.npz"))


def test_a_ctrl_c_whose_keyboardinterrupt_was_swallowed_still_stops_the_command():
    """CPython loses a KeyboardInterrupt raised inside some C calls (e.g. while numpy.random is
    imported, right after a run claims its folder: about 1 run in 4 trained on after Ctrl-C)."""
    from delgrad_core.cli import _stopping_like_ctrl_c, stop_if_interrupted

    with _stopping_like_ctrl_c():
        assert stop_if_interrupted() is False
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1.0)  # (the handler runs here)
        except KeyboardInterrupt:
            pass  # as the C code does
        with pytest.raises(KeyboardInterrupt):
            stop_if_interrupted()  # asked before every epoch by `delgrad train`


@pytest.fixture
def probe_command(monkeypatch):
    """A command `probe` that calls `probe_command.run()`, set by the test, as a command of `delgrad`."""
    import click

    from delgrad_core.cli import main

    probe = SimpleNamespace(run=lambda: None)

    @click.command("probe")
    def command():
        probe.run()

    monkeypatch.setitem(main.commands, "probe", command)
    return probe


def _stop_signals() -> list:
    return [getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)]


def test_a_command_stopped_by_a_second_signal_ends_with_that_signals_status(probe_command):
    """The status of a command ended by a signal is 128 + its number (`delgrad_core.cli`): that of
    the one that ended it, here a SIGTERM after a Ctrl-C some code swallowed (not 130)."""
    from delgrad_core.cli import main

    def run():
        with contextlib.suppress(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGTERM)

    probe_command.run = run
    result = cli_runner().invoke(main, ["probe"])
    assert result.exit_code == 128 + signal.SIGTERM and "interrupted" in result.stderr, result.output


def test_a_command_keeps_a_stop_signal_handler_set_by_others_and_restores_its_own(probe_command):
    """"A handler set by others is kept; afterwards the process's handlers and state are as before
    (the command line also runs inside programs)" (`_stopping_like_ctrl_c`)."""
    from delgrad_core import cli

    def others(signum, frame):
        raise AssertionError("not sent")

    defaults = {number: signal.default_int_handler if number == signal.SIGINT else signal.SIG_DFL
                for number in _stop_signals()}  # (Python's: those a command replaces)
    seen = {}
    probe_command.run = lambda: seen.update({number: signal.getsignal(number) for number in _stop_signals()})
    originals = {number: signal.signal(number, handler) for number, handler in defaults.items()}
    signal.signal(signal.SIGTERM, others)
    try:
        result = cli_runner().invoke(cli.main, ["probe"])
        assert result.exit_code == 0, result.output
        after = {number: signal.getsignal(number) for number in _stop_signals()}
    finally:
        for number, handler in originals.items():
            signal.signal(number, handler)
    assert seen[signal.SIGTERM] is others and seen[signal.SIGINT] is cli._interrupt
    assert after == {**defaults, signal.SIGTERM: others}


def test_a_command_runs_in_a_thread_other_than_the_main_one(probe_command):
    """The command line runs inside programs, also in a worker thread, where Python sets no signal
    handlers: the command runs without them (it failed with "signal only works in main thread")."""
    import threading

    from delgrad_core import cli

    seen, results = [], []
    probe_command.run = lambda: seen.append(signal.getsignal(signal.SIGINT))
    worker = threading.Thread(target=lambda: results.append(cli_runner().invoke(cli.main, ["probe"])))
    worker.start()
    worker.join(timeout=60)
    assert results[0].exit_code == 0, (results[0].output, results[0].exception)
    assert seen[0] is not cli._interrupt


def test_a_lost_ctrl_c_is_left_out_and_other_lost_errors_are_passed_on():
    """While a command runs "a KeyboardInterrupt lost in a callback is not printed" once a stop
    signal came (`_stopping_like_ctrl_c`); one before any signal, and other errors, go to the hook
    set before, which is back afterwards."""
    from delgrad_core import cli

    passed, hook = [], sys.unraisablehook
    sys.unraisablehook = passed.append
    try:
        with cli._stopping_like_ctrl_c():
            sys.unraisablehook(SimpleNamespace(exc_type=KeyboardInterrupt))  # (no stop signal came: not ours)
            cli._received.append(signal.SIGTERM)
            sys.unraisablehook(SimpleNamespace(exc_type=KeyboardInterrupt))
            sys.unraisablehook(SimpleNamespace(exc_type=ValueError))
        assert sys.unraisablehook == passed.append
    finally:
        sys.unraisablehook = hook
        cli._received.clear()
    assert [unraisable.exc_type for unraisable in passed] == [KeyboardInterrupt, ValueError]


def test_a_warning_is_shown_once_per_command_and_again_by_the_next(probe_command):
    """`show_warning`: one "Warning: ..." line "once per text and command"; a second command in the
    same process (the command line runs inside programs) shows it again."""
    from delgrad_core.cli import main

    def run():
        warnings.warn("careful", UserWarning)
        warnings.warn("careful", UserWarning)

    probe_command.run = run
    for _ in range(2):
        result = cli_runner().invoke(main, ["probe"])
        assert result.exit_code == 0 and result.stderr == "Warning: careful\n", result.stderr


def test_running_out_of_memory_is_a_one_line_error_also_without_a_message(probe_command, monkeypatch):
    """Running out of memory ends as a one-line message, status 1 (`delgrad_core.cli`); a
    MemoryError without text is named by its type; with DELGRAD_DEBUG=1 it is raised instead."""
    from delgrad_core.cli import main

    def run():
        raise MemoryError

    probe_command.run = run
    monkeypatch.delenv("DELGRAD_DEBUG", raising=False)
    result = cli_runner().invoke(main, ["probe"])
    assert result.exit_code == 1 and result.output == \
        "Error: out of memory (MemoryError); use smaller sizes or batches\n", result.output
    monkeypatch.setenv("DELGRAD_DEBUG", "1")
    assert type(cli_runner().invoke(main, ["probe"]).exception) is MemoryError


def test_with_delgrad_debug_errors_and_warnings_keep_their_traceback_and_place(probe_command, monkeypatch):
    """"With DELGRAD_DEBUG=1 errors are raised with their traceback instead (for developers)"
    (`delgrad_core.cli`): delgrad's, the operating system's and running out of memory; warnings keep
    Python's file and line."""
    from delgrad_core.cli import main

    monkeypatch.setenv("DELGRAD_DEBUG", "1")
    for error in (InvalidValueError("bad value"), OSError(5, "Input/output error"), MemoryError()):
        def run(error=error):
            raise error

        probe_command.run = run
        assert cli_runner().invoke(main, ["probe"]).exception is error
    probe_command.run = lambda: warnings.warn("careful", UserWarning)
    with pytest.warns(UserWarning, match="careful"):  # (Python's display: here pytest's, which records it)
        result = cli_runner().invoke(main, ["probe"])
    assert result.exit_code == 0 and "Warning: careful" not in result.stderr, result.stderr


def test_a_broken_connection_is_an_error_where_stdout_is_open(probe_command):
    """A BrokenPipeError ends a command quietly (status 141) only when standard output is a closed
    pipe (`delgrad ... | head`); else (e.g. a connection to a service that went away) it is a
    one-line error, status 1."""
    from delgrad_core.cli import main

    def run():
        raise BrokenPipeError(32, "Broken pipe")

    probe_command.run = run
    result = cli_runner().invoke(main, ["probe"])
    assert result.exit_code == 1 and result.output == "Error: [Errno 32] Broken pipe\n", result.output


def test_an_error_after_a_swallowed_stop_signal_is_an_ordinary_error(probe_command):
    """Only an error while a command stops for a signal ends with the signal's status
    (`_one_line_errors`); one raised later, not while handling the stop, is status 1."""
    from delgrad_core.cli import main

    def run():
        with contextlib.suppress(KeyboardInterrupt):
            signal.raise_signal(signal.SIGTERM)
        raise OSError(28, "No space left on device")

    probe_command.run = run
    result = cli_runner().invoke(main, ["probe"])
    assert result.exit_code == 1 and result.output == "Error: [Errno 28] No space left on device\n", result.output


def test_an_error_while_a_command_stops_for_a_signal_is_shown_with_the_signals_status(probe_command):
    """"an error while a command stops for a signal (...) with the signal's status" (`_one_line_errors`):
    its message is shown where it can be written."""
    from delgrad_core.cli import main

    def run():
        try:
            signal.raise_signal(signal.SIGTERM)
        except KeyboardInterrupt:
            raise OSError(5, "Input/output error")  # (e.g. closing a device while stopping)

    probe_command.run = run
    result = cli_runner().invoke(main, ["probe"])
    assert result.exit_code == 128 + signal.SIGTERM and result.stderr == "Error: [Errno 5] Input/output error\n", \
        result.stderr


def test_an_interrupt_not_from_a_stop_signal_under_an_error_is_an_ordinary_error(probe_command):
    """The signal's status is for errors while the command stops for a signal it received; a
    KeyboardInterrupt raised otherwise (e.g. by a handler set by others) gives the error status 1."""
    from delgrad_core.cli import main

    def run():
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise OSError(5, "Input/output error") from None

    probe_command.run = run
    result = cli_runner().invoke(main, ["probe"])
    assert result.exit_code == 1 and result.output == "Error: [Errno 5] Input/output error\n", result.output


def test_a_signal_of_an_earlier_command_does_not_set_the_status_of_the_next(probe_command, monkeypatch):
    """A Ctrl-C while --help loads the plugins ends with 130, also after an earlier command in the
    same process ended by SIGTERM (143)."""
    from delgrad_core import _plugins
    from delgrad_core.cli import main

    probe_command.run = lambda: signal.raise_signal(signal.SIGTERM)
    assert cli_runner().invoke(main, ["probe"]).exit_code == 128 + signal.SIGTERM

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_plugins, "registry", interrupted)
    result = cli_runner().invoke(main, ["--help"])
    assert result.exit_code == 130, result.output


def test_a_closed_stdout_is_written_to_os_devnull_which_is_closed_afterwards(probe_command, monkeypatch):
    """"a closed stdout or stderr (`2>&-`) is taken as os.devnull" (`delgrad_core.cli`) while the
    command runs; afterwards it is closed again, and that file too."""
    from delgrad_core.cli import main

    seen = []
    probe_command.run = lambda: (seen.append(sys.stdout), print("shown nowhere"))
    monkeypatch.setattr(sys, "stdout", None)
    with pytest.raises(SystemExit) as info:
        main.main(["probe"])
    assert info.value.code == 0 and sys.stdout is None
    assert seen[0].name == os.devnull and seen[0].closed


def _layer():
    return dg.Network.feedforward([2, 2], seed=0).layers[0]


def _result_bytes(spike_times: np.ndarray) -> bytes:
    """The bytes of a one-layer result as `ExecutionResult.to_bytes` lays them out, whatever the
    spike times (it refuses to write NaN or -inf)."""
    document = {"format": "delgrad-result", "version": 1, "n_layers": 1, "arrival_layers": None, "metadata": {}}
    return npz_bytes({"layer_spike_times.0": spike_times, "result.json": json_array(document)})


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda: dg.forward(_layer(), np.zeros((1, 2))), InvalidValueError,
     "network: expected a delgrad_core.Network, got Layer"),
    (lambda: dg.layer_forward(dg.Network.feedforward([2, 2]), np.zeros((1, 2))), InvalidValueError,
     "layer: expected a delgrad_core.Layer, got Network"),
    (lambda: dg.backward(_layer(), np.zeros((1, 2)), [np.zeros((1, 2))], np.zeros((1, 2))), InvalidValueError,
     "network: expected a delgrad_core.Network"),
    (lambda: dg.Layer(_layer().population, np.ones((2, 2))), InvalidValueError,
     "Layer.projection: expected a delgrad_core.Projection, got ndarray"),
    (lambda: dg.Network(dg.Population("in", 2), _layer()), InvalidValueError,
     "Network.layers: expected a list of Layer objects, got Layer"),
    (lambda: dg.Network("in", [_layer()]), InvalidValueError, "Network.input: expected a delgrad_core.Population"),
    (lambda: dg.Network.feedforward([2, 2], neuron={"threshold": 1.0}), InvalidValueError,
     "neuron: expected a delgrad_core.NeuronParameters, got dict"),
    (lambda: dg.save_network(_layer(), io.BytesIO()), InvalidValueError, "network: expected a delgrad_core.Network"),
    (lambda: dg.load_network(None), InvalidValueError, "source: expected a path, bytes or a readable binary file"),
    (lambda: ExecutionRequest.from_bytes(None), InvalidValueError, "source: expected a path, bytes"),
    (lambda: dg.ExecutionResult(None).to_bytes(), dg.InvalidResultError,
     "layer_spike_times: expected a list of arrays, got NoneType"),
    (lambda: dg.ExecutionResult([np.array([["x"]])]).to_bytes(), dg.InvalidResultError,
     r"layer_spike_times\[0\]: expected an array of real numbers, got strings"),
    (lambda: dg.ExecutionResult.from_bytes(_result_bytes(np.array([[-np.inf]]))), FileFormatError,
     "layer_spike_times.0: contains NaN or -inf"),
    (lambda: dg.ExecutionResult([np.array([[-np.inf]])]).to_bytes(), dg.InvalidResultError,
     r"layer_spike_times\[0\]: contains NaN or -inf"),
    (lambda: dg.LatencyEncoder(pairs=True)(0.5), InvalidValueError,
     r"features: expected an array \(n_samples, n_features\), got a single number"),
    (lambda: dg.LatencyEncoder(-1e308, 1e308), InvalidValueError, "must be a finite span"),
    (lambda: dg.LatencyEncoder(repeat=2).n_inputs(2.7), InvalidValueError, "n_features: expected an integer >= 0"),
    (lambda: dg.datasets.yin_yang_samples(3, seed=-1), InvalidValueError,
     r"seed: expected None \(fresh entropy\) or an integer from 0 to 2\*\*32"),
    (lambda: dg.get_backend("reference").represent(np.zeros(3)), InvalidValueError,
     "network: expected a delgrad_core.Network, got ndarray"),
    (lambda: dg.get_backend("reference").execute(np.zeros((8, 4))), InvalidValueError,  # (it said "network: ...")
     "request: expected an ExecutionRequest, or a Network with input_spike_times, got ndarray"),
    # the helpers for plugin authors (TypeErrors and AttributeErrors; a string of options read letter by letter)
    (lambda: plugin_tools.inputs_in_copies(dg.Network.feedforward([4, 2], delay_kind="axonal"), "2"),
     InvalidValueError, "copies: expected an integer >= 1, got '2'"),
    (lambda: plugin_tools.inputs_in_copies("x", 2), InvalidValueError, "network: expected a delgrad_core.Network"),
    (lambda: plugin_tools.share_copied_delays(dg.Network.feedforward([4, 2], delay_kind="axonal"), 2.5),
     InvalidValueError, "copies: expected an integer >= 1, got 2.5"),
    (lambda: plugin_tools.parse_key_values("dt=0.01"), InvalidValueError,
     "--backend-option: expected a list of KEY=VALUE strings, got 'dt=0.01'"),
    (lambda: plugin_tools.parse_key_values(None), InvalidValueError, "expected a list of KEY=VALUE strings, got None"),
    (lambda: plugin_tools.parse_key_values(["dt=0.01", "my-key=1"]), InvalidValueError,  # (KEY: an identifier)
     "--backend-option: expected KEY=VALUE with KEY an identifier, got 'my-key=1'"),
    # dataset helpers (numpy's errors, a TypeError "unhashable type", NaN features returned)
    (lambda: dg.datasets.yin_yang_plane(np.zeros(3), np.zeros(4)), InvalidValueError,
     r"x, y: expected arrays of one shape, got \(3,\) and \(4,\)"),
    (lambda: dg.datasets.yin_yang_plane(None, None), InvalidValueError, "x: expected an array of numbers, got None"),
    (lambda: dg.datasets.yin_yang_plane([np.nan], [0.5]), InvalidValueError, "x: expected finite numbers"),
    (lambda: dg.datasets.yin_yang(["train"]), InvalidValueError, r"split: unknown Yin-Yang split \['train'\]"),
    (lambda: dg.datasets.read_idx(b"\x00\x00\x08\x01"), InvalidValueError,
     r"path: expected the path of an IDX file \(a str or path-like\), got bytes"),
    (lambda: dg.datasets.read_idx("."), InvalidValueError, r"path: \. is a folder, not an IDX file"),
    (lambda: plugin_tools.atomic_write_text("unwritten.txt", b"x"), InvalidValueError,
     r"text: expected a str, got bytes \(bytes: use atomic_write\)"),
    # numbers numpy would convert without a word (complex 1+5j became 1.0 with a warning)
    (lambda: dg.Projection(np.array([[1 + 5j]])), InvalidValueError, "weights: expected an array of real numbers, "
                                                                     "got complex numbers"),
    (lambda: dg.Projection([[True, False]]), InvalidValueError, "got booleans"),
    (lambda: dg.Population("a", 1, dg.NeuronParameters(threshold="1")), InvalidValueError, "a.threshold: .* strings"),
    (lambda: dg.Population("a", 1, dg.NeuronParameters(threshold=None)), InvalidValueError,
     "a.threshold: expected an array of numbers, got None"),
    (lambda: dg.make_loss("squared")(np.array([[1 + 1j, 2.0]]), np.array([0])), InvalidValueError,
     "output_times: expected an array of real numbers, got complex numbers"),
    (lambda: dg.make_loss("squared")(np.zeros((0, 3)), np.zeros(0, dtype=int)).mean, InvalidValueError,
     "the mean loss of an empty batch is undefined"),
])
def test_arguments_of_the_wrong_kind_are_refused_naming_them(call, error, message):
    """(they ended in AttributeErrors, TypeErrors or numpy's messages from deep inside)"""
    with pytest.raises(error, match=message):
        call()


def test_numbers_that_would_overflow_float64_are_refused_not_turned_into_silence_or_inf():
    """(an input at 1.79e308 plus a delay overflowed to +inf and read as an input that never came;
    output_gradient=1e308 gave inf gradients with only a numpy warning)"""
    network = dg.Network.feedforward([2, 3, 2], delay_kind="axonal", delay_value=1e305, seed=0)
    inputs = np.array([[1.797e308, 0.5]])
    overflow = r"hidden.projection: a spike at 1.797e\+308 tau_s plus a delay of up to 1e\+305 overflows float64"
    with pytest.raises(InvalidValueError, match=overflow):
        dg.forward(network, inputs)
    with pytest.raises(InvalidValueError, match=overflow):
        dg.backward(network, inputs, [np.ones((1, 3)), np.ones((1, 2))], np.ones((1, 2)))
    network.layers[0].projection.weights[:] = 5.0
    hidden = dg.forward(network, np.array([[1e308, 1e308]]))[0]
    np.testing.assert_array_equal(hidden, np.nextafter(1e308 + 1e305, np.inf))  # the next double after the arrival
    network = dg.Network.feedforward([2, 3, 2], seed=0)
    inputs = np.array([[0.2, 0.5], [0.4, 0.1]])
    times = dg.forward(network, inputs)
    assert np.isfinite(times[1]).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy overflow warning before the error
        with pytest.raises(InvalidValueError, match=r"output_gradient: the gradients of layer 1 overflow float64 "
                                                    r"\(.*threshold.*; largest \|output_gradient\| 1e\+308\); scale "
                                                    r"the loss down"):
            dg.backward(network, inputs, times, np.full((2, 2), 1e308))
        with pytest.raises(InvalidValueError, match="post_gradient: the gradients of the layer overflow float64"):
            dg.layer_backward(network.layers[1], times[0], times[1], np.full((2, 2), -1e308))
    # (a gradient of 1 whose spike times' derivatives overflow: the advice to scale the loss down misled)
    scale = 1e200
    huge = dg.Layer(dg.Population("o", 2, dg.NeuronParameters(0.5, scale, scale)),
                    dg.Projection(np.array([[1.0, 1.2], [0.8, 1.5]]) / scale, "none"))
    huge_inputs = np.array([[0.2, 0.5]]) * scale
    with pytest.raises(InvalidValueError, match=r"largest \|post_gradient\| 1.0\); the spike times' own derivatives "
                                                "overflow: bring the weights, threshold and times to ordinary "
                                                "magnitudes"):
        dg.layer_backward(huge, huge_inputs, dg.layer_forward(huge, huge_inputs), np.ones((1, 2)))
    gradients = dg.backward(network, inputs, times, np.full((2, 2), 1e200))  # large but representable
    assert all(np.isfinite(layer.weights).all() for layer in gradients.layers)


def test_lenient_arguments_of_the_core_api_are_refused_by_name():
    """(a string delay value was a raw ValueError and NaN was accepted for a network without
    delays; a delay kind of None read as 'none'; input_gradient='no' counted as true; a guard's
    float mask was cast to bool; a masked array lost its mask; progress=3 was accepted)"""
    import delgrad_core as dg

    for kwargs, message in ((dict(delay_kind="axonal", delay_value="x"), "delay_value: expected a finite number >= 0"),
                            (dict(delay_value=float("nan")), "delay_value: expected a finite number >= 0, got nan"),
                            (dict(delay_kind=None), "delay_kind: unknown delay kind None")):
        with pytest.raises(dg.InvalidValueError, match=message):
            dg.Network.feedforward([4, 3], **kwargs)
    network = dg.Network.feedforward([4, 5, 3], seed=0)
    inputs = np.full((2, 4), 0.5)
    times = dg.forward(network, inputs)
    for kwargs, message in ((dict(input_gradient="no"), "input_gradient: expected True or False, got 'no'"),
                            (dict(guard=lambda k, term: np.zeros(term.shape)),
                             r"guard: returned a float64 array of shape \(2, 3\), expected a bool mask")):
        with pytest.raises(dg.InvalidValueError, match=message):
            dg.backward(network, inputs, times, np.ones((2, 3)), **kwargs)
    masked = np.ma.masked_array(inputs, mask=[[True, False, False, False]] * 2)
    with pytest.raises(dg.InvalidValueError, match="input_spike_times: a masked array; fill its masked entries"):
        dg.forward(network, masked)
    with pytest.raises(dg.InvalidValueError, match="progress: expected None or a callable"):
        dg.get_backend("reference").calibrate(progress=3)


def test_a_text_file_object_is_refused_as_such():
    """(its read() gave str: TypeError: memoryview: a bytes-like object is required)"""
    import delgrad_core as dg

    with pytest.raises(dg.InvalidValueError, match=r"source: expected a binary file of a delgrad network file "
                                                   r"\(opened with 'rb'\), got one whose read\(\) gives str"):
        dg.load_network(io.StringIO("abc"))


def test_a_hidden_size_too_large_for_the_data_is_a_usage_error_naming_hidden(tmp_path):
    """(--hidden 200000 on MNIST said "sizes: a 784 x 200000 projection has ..." with status 1:
    neither the setting nor a usage error)"""
    from delgrad_core.cli import main
    from delgrad_core.testing import cli_runner

    result = cli_runner().invoke(main, ["train", "--hidden", "40000000", "--epochs", "1", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    assert "hidden: 40000000 makes a 4 x 40000000 projection of 160,000,000 weights, more than the 134,217,728 a " \
           "network file may hold" in " ".join(result.output.split())
    assert not (tmp_path / "r").exists()
