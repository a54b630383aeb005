"""Exact gradients of `backward` against central finite differences of `forward` (docs/model.md §4)."""

import numpy as np
import pytest
from _ode_reference import network_spike_times

import delgrad_core as dg

KINDS = ["none", "axonal", "dendritic", "synaptic"]
RATIOS = [1.0, 2.0, 1.7]
SIZES = {"2 layers": [3, 5, 2], "3 layers": [4, 6, 5, 3]}


def well_conditioned_case(helpers, sizes, kind, ratio, batch=3, silent=()):
    """The first seed whose network and inputs have no spike near an arrival or a grazing crossing.

    `silent` lists (sample, input) entries set to +inf."""
    for seed in range(40):
        network = helpers.build_network(sizes, kind, ratio, seed=seed)
        x = np.random.default_rng(seed).uniform(0.15, 2.0, size=(batch, sizes[0]))
        for entry in silent:
            x[entry] = np.inf
        times = dg.forward(network, x)
        _, slopes = network_spike_times(network, x, with_slopes=True)
        if np.isfinite(times[-1]).mean() >= 0.5 and helpers.is_well_conditioned(network, x, times, slopes):
            return network, x, times
    raise AssertionError(f"no well-conditioned test case for {sizes} {kind} {ratio}")


def assert_matches_finite_differences(helpers, network, x, times, seed=0):
    """Compare every gradient of `backward` with central differences of the loss sum(delta * t_out)."""
    out = times[-1]
    delta = np.where(np.isfinite(out), np.random.default_rng(seed).normal(size=out.shape), 0.0)
    grads = dg.backward(network, x, times, delta)

    def loss():
        return helpers.output_loss(network, x, delta)

    def compare(actual, array, what):
        expected = helpers.central_difference(loss, array)
        assert np.all(np.isfinite(expected)), f"{what}: finite differences crossed a discontinuity"
        scale = max(1.0, np.max(np.abs(expected)))
        np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-6 * scale, err_msg=what)

    for k, layer in enumerate(network.layers):
        layer_grads = grads.layers[k]
        assert layer_grads.no_crossing == layer_grads.guarded == 0
        compare(layer_grads.weights, layer.projection.weights, f"layer {k} weights")
        if layer.projection.delays is None:
            assert layer_grads.delays is None
        else:
            assert layer_grads.delays.shape == layer.projection.delays.shape
            compare(layer_grads.delays, layer.projection.delays,
                    f"layer {k} {layer.projection.delay_kind.value} delays")
        compare(layer_grads.threshold, layer.population.neuron.threshold, f"layer {k} thresholds")
    compare(grads.input_spike_times, x, "input spike times")
    return grads, delta


@pytest.mark.parametrize("sizes", list(SIZES.values()), ids=list(SIZES))
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ratio", RATIOS)
def test_gradients_match_finite_differences(helpers, sizes, kind, ratio):
    network, x, times = well_conditioned_case(helpers, sizes, kind, ratio)
    grads, delta = assert_matches_finite_differences(helpers, network, x, times)
    # time-shift invariance (docs/model.md §4): sum_i dL/dt_in_i = sum_j dL/dt_out_j per sample
    np.testing.assert_allclose(grads.input_spike_times.sum(axis=1), delta.sum(axis=1), rtol=1e-10, atol=1e-12)


def test_gradients_with_mixed_ratios_and_silent_inputs(helpers):
    ratios = np.array([1.0, 2.0, 1.7, 0.6, 3.0, 2.0])
    network, x, times = well_conditioned_case(helpers, [5, 6, 3], "synaptic", ratios, silent=[(1, 2), (0, 4)])
    delta = np.where(np.isfinite(times[-1]), 1.0, 0.0)
    grads = dg.backward(network, x, times, delta)
    assert grads.input_spike_times[1, 2] == 0.0 and grads.input_spike_times[0, 4] == 0.0  # silent inputs

    def loss():
        return helpers.output_loss(network, x, delta)

    for k, layer in enumerate(network.layers):
        expected = helpers.central_difference(loss, layer.projection.delays)
        np.testing.assert_allclose(grads.layers[k].delays, expected, rtol=1e-5, atol=1e-7)
        expected = helpers.central_difference(loss, layer.projection.weights)
        np.testing.assert_allclose(grads.layers[k].weights, expected, rtol=1e-5, atol=1e-7)
    finite = np.isfinite(x)
    expected_inputs = helpers.central_difference(loss, x)
    np.testing.assert_allclose(grads.input_spike_times[finite], expected_inputs[finite], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("ratio", RATIOS)
def test_arrival_gradients_of_one_neuron_sum_to_one(helpers, ratio):
    """sum_i dt/da_i = 1 (docs/model.md §4) for a single output neuron, through `backward`."""
    network, x, times = well_conditioned_case(helpers, [6, 1], "none", ratio, batch=4)
    delta = np.isfinite(times[-1]).astype(float)
    grads = dg.backward(network, x, times, delta)
    np.testing.assert_allclose(grads.input_spike_times.sum(axis=1), delta[:, 0], rtol=1e-12, atol=1e-14)


def test_shifting_all_inputs_shifts_spikes_by_the_same_amount(helpers):
    network, x, times = well_conditioned_case(helpers, [4, 6, 5, 3], "synaptic", 1.7)
    for c in (-0.1, 0.4, 7.0):
        for base, moved in zip(times, dg.forward(network, x + c)):
            np.testing.assert_allclose(moved, base + c, rtol=1e-12)


def test_delay_gradients_relate_to_arrival_gradients(helpers):
    """Dendritic: dL/dd_j = sum over samples of delta_j; axonal: dL/dd_i = sum over samples of dL/dt_i."""
    for kind in ("dendritic", "axonal"):
        network, x, times = well_conditioned_case(helpers, [5, 4], kind, 2.0, batch=6)
        delta = np.where(np.isfinite(times[-1]), np.random.default_rng(1).normal(size=times[-1].shape), 0.0)
        grads = dg.backward(network, x, times, delta)
        if kind == "dendritic":
            np.testing.assert_allclose(grads.layers[0].delays, delta.sum(axis=0), rtol=1e-10, atol=1e-12)
        else:
            np.testing.assert_allclose(grads.layers[0].delays, grads.input_spike_times.sum(axis=0), rtol=1e-12)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_backward_is_independent_of_threads(helpers, n_threads):
    network = helpers.build_network([4, 8, 3], "synaptic", 1.7, seed=4)
    x = np.random.default_rng(3).uniform(0.15, 2.0, size=(50, 4))
    times = dg.forward(network, x)
    delta = np.where(np.isfinite(times[-1]), 1.0, 0.0)
    one = dg.backward(network, x, times, delta, n_threads=1)
    many = dg.backward(network, x, times, delta, n_threads=n_threads)
    np.testing.assert_array_equal(many.input_spike_times, one.input_spike_times)
    for a, b in zip(many.layers, one.layers):
        np.testing.assert_allclose(a.weights, b.weights, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(a.delays, b.delays, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ratio", [1.0, 2.0, 1.7])
def test_without_input_gradient_parameter_gradients_are_unchanged(helpers, kind, ratio):
    """`input_gradient=False` (what training asks for) skips dL/d(input times) only: every
    parameter gradient and count is the same bit for bit, with and without a guard, and the
    first layer's axonal delays still get theirs."""
    network = helpers.build_network([12, 9, 4], kind, ratio, seed=5, per_neuron=False)  # shared kernels
    x = np.random.default_rng(5).uniform(0.15, 2.0, size=(30, 12))
    x[3, 2] = np.inf
    times = dg.forward(network, x)
    delta = np.where(np.isfinite(times[-1]), np.random.default_rng(6).normal(size=times[-1].shape), 0.0)
    for guard in (None, lambda index, largest: largest > np.quantile(largest, 0.8)):
        full = dg.backward(network, x, times, delta, guard=guard)
        lean = dg.backward(network, x, times, delta, guard=guard, input_gradient=False)
        assert lean.input_spike_times is None and full.input_spike_times is not None
        for a, b in zip(full.layers, lean.layers):
            assert a.weights.tobytes() == b.weights.tobytes()
            assert a.threshold.tobytes() == b.threshold.tobytes()
            assert (a.delays is None) == (b.delays is None)
            if a.delays is not None:
                assert a.delays.tobytes() == b.delays.tobytes()
            assert (a.no_crossing, a.guarded) == (b.no_crossing, b.guarded)
        if kind == "axonal":
            assert np.any(lean.layers[0].delays != 0.0)


def test_one_sample_may_be_given_as_1d_arrays_to_the_backward_passes():
    """(the times were taken 1-d as one sample, but a 1-d output gradient was refused)"""
    network = dg.Network.feedforward([3, 4, 2], delay_kind="axonal", seed=1, weight_mean=1.5)
    inputs = np.array([0.1, 0.5, 0.9])
    times = dg.forward(network, inputs)
    gradient = np.array([1.0, -1.0])
    one_d = dg.backward(network, inputs, [t[0] for t in times], gradient)
    two_d = dg.backward(network, inputs[None], times, gradient[None])
    for a, b in zip(one_d.layers, two_d.layers):
        np.testing.assert_array_equal(a.weights, b.weights)
        np.testing.assert_array_equal(a.delays, b.delays)
    layer = network.layers[-1]
    np.testing.assert_array_equal(dg.layer_backward(layer, times[0][0], times[1][0], gradient).weights,
                                  dg.layer_backward(layer, times[0], times[1], gradient[None]).weights)
    with pytest.raises(dg.InvalidValueError, match=r"^output_gradient: expected shape \(2, 2\), got \(2,\)"):
        dg.backward(network, np.vstack([inputs, inputs]), [np.vstack([t, t]) for t in times], gradient)
