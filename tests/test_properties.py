"""Property-based tests over random small networks: forward against the ODE reference, backward
against central differences wherever the crossings are not near-grazing (docs/model.md §2.4)."""

import numpy as np
from _ode_reference import network_spike_times
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import delgrad_core as dg

ratios = st.one_of(
    st.sampled_from([1.0, 2.0, 1.7, 0.5, 3.0]),
    st.floats(0.3, 4.0).filter(lambda r: abs(r - 1.0) > 0.05),
)
networks = st.fixed_dictionaries(
    {
        "sizes": st.lists(st.integers(1, 6), min_size=2, max_size=4),
        "kind": st.sampled_from(["none", "axonal", "dendritic", "synaptic"]),
        "ratio": st.lists(ratios, min_size=1, max_size=3),
        "seed": st.integers(0, 2**32 - 1),
        "weight_mean": st.floats(0.5, 3.0),
        "silent_fraction": st.sampled_from([0.0, 0.0, 0.3]),
    }
)
SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def draw_case(helpers, spec, batch=2):
    network = helpers.build_network(spec["sizes"], spec["kind"], np.array(spec["ratio"]), spec["seed"],
                                    weight_mean=spec["weight_mean"])
    rng = np.random.default_rng(spec["seed"])
    x = rng.uniform(0.0, 2.0, size=(batch, spec["sizes"][0]))
    x[rng.random(x.shape) < spec["silent_fraction"]] = np.inf
    return network, x


@SETTINGS
@given(spec=networks)
def test_forward_agrees_with_ode_reference(helpers, spec):
    network, x = draw_case(helpers, spec)
    times = dg.forward(network, x)
    reference = network_spike_times(network, x)
    for k, (actual, expected) in enumerate(zip(times, reference)):
        np.testing.assert_array_equal(np.isfinite(actual), np.isfinite(expected), err_msg=f"layer {k} silence")
        finite = np.isfinite(expected)
        np.testing.assert_allclose(actual[finite], expected[finite], rtol=1e-6, atol=0, err_msg=f"layer {k}")


@SETTINGS
@given(spec=networks)
def test_backward_agrees_with_finite_differences(helpers, spec):
    network, x = draw_case(helpers, spec)
    times = dg.forward(network, x)
    _, slopes = network_spike_times(network, x, with_slopes=True)
    assume(np.any(np.isfinite(times[-1])))
    assume(helpers.is_well_conditioned(network, x, times, slopes))
    out = times[-1]
    delta = np.where(np.isfinite(out), np.random.default_rng(spec["seed"]).normal(size=out.shape), 0.0)
    grads = dg.backward(network, x, times, delta)

    def loss():
        return helpers.output_loss(network, x, delta)

    def check(actual, array):
        expected = helpers.central_difference(loss, array)
        finite = np.isfinite(array)
        assert np.all(np.isfinite(expected[finite]))
        scale = max(1.0, np.max(np.abs(expected[finite]), initial=0.0))
        np.testing.assert_allclose(actual[finite], expected[finite], rtol=1e-5, atol=1e-6 * scale)

    for layer, layer_grads in zip(network.layers, grads.layers):
        assert layer_grads.no_crossing == layer_grads.guarded == 0
        check(layer_grads.weights, layer.projection.weights)
        if layer.projection.delays is not None:
            check(layer_grads.delays, layer.projection.delays)
        check(layer_grads.threshold, layer.population.neuron.threshold)
    check(grads.input_spike_times, x)
    np.testing.assert_array_equal(grads.input_spike_times[~np.isfinite(x)], 0.0)
    # time-shift invariance: per sample, the input gradients sum to the output gradients
    np.testing.assert_allclose(grads.input_spike_times.sum(axis=1), delta.sum(axis=1), rtol=1e-9, atol=1e-11)


@SETTINGS
@given(spec=networks, shift=st.floats(-0.5, 20.0))
def test_shift_of_all_inputs_shifts_all_spikes(helpers, spec, shift):
    network, x = draw_case(helpers, spec)
    for base, moved in zip(dg.forward(network, x), dg.forward(network, x + shift)):
        finite = np.isfinite(base)
        np.testing.assert_array_equal(np.isfinite(moved), finite)
        np.testing.assert_allclose(moved[finite], base[finite] + shift, rtol=1e-9, atol=1e-9)
