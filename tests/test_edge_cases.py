"""Edge cases of `forward` and `backward`: silence, ties, causality, inhibition, extreme weights,
grazing crossings and observed spike times the model cannot explain (docs/model.md §2, §4)."""

import numpy as np
import pytest
from _ode_reference import neuron_first_spike

import delgrad_core as dg
from delgrad_core.training import GrazingGuard


def single_neuron(weights, *, ratio=2.0, threshold=1.0, kind="none", delays=None):
    """A network with len(weights) inputs and one output neuron (tau_s = 1)."""
    weights = np.asarray(weights, dtype=float)[:, None]
    projection = dg.Projection(weights, delay_kind=kind, delays=delays, name="output.projection")
    neuron = dg.NeuronParameters(threshold=np.array([threshold]), tau_m=ratio, tau_s=1.0)
    return dg.Network(dg.Population("input", weights.shape[0]),
                      [dg.Layer(dg.Population("output", 1, neuron), projection)])


def spike_and_gradients(network, x, **kwargs):
    x = np.atleast_2d(np.asarray(x, dtype=float))
    times = dg.forward(network, x)
    delta = np.where(np.isfinite(times[-1]), 1.0, 0.0)
    return times, dg.backward(network, x, times, delta, **kwargs)


def reference_spike(network, x):
    layer = network.layers[0]
    neuron = layer.population.neuron
    return neuron_first_spike(np.asarray(x, dtype=float), layer.projection.weights[:, 0], float(neuron.threshold[0]),
                              float(neuron.tau_m), float(neuron.tau_s))[0]


def test_empty_batch():
    network = dg.Network.feedforward([4, 5, 3], delay_kind="synaptic")
    times = dg.forward(network, np.empty((0, 4)))
    assert [t.shape for t in times] == [(0, 5), (0, 3)]
    grads = dg.backward(network, np.empty((0, 4)), times, np.empty((0, 3)))
    assert grads.input_spike_times.shape == (0, 4)
    assert all(not np.any(g.weights) and not np.any(g.delays) and g.no_crossing == 0 and g.guarded == 0
               for g in grads.layers)


def test_all_inputs_silent_gives_silence_and_no_gradient():
    network = dg.Network.feedforward([4, 5, 3], delay_kind="axonal", delay_value=0.2)
    x = np.full((2, 4), np.inf)
    times = dg.forward(network, x)
    assert all(np.all(np.isinf(t)) for t in times)
    grads = dg.backward(network, x, times, np.ones((2, 3)))  # gradients of silent outputs are ignored
    assert not np.any(grads.input_spike_times)
    for g in grads.layers:
        assert (not np.any(g.weights) and not np.any(g.delays) and not np.any(g.threshold) and g.no_crossing == 0
                and g.guarded == 0)


def test_silent_hidden_layer_silences_the_output():
    network = dg.Network.feedforward([3, 4, 2], weight_mean=2.0, weight_std=0.1)
    network.layers[0].projection.weights[...] = 0.1  # peak 3 * 0.1 * 0.5 < threshold 1
    times = dg.forward(network, np.array([[0.1, 0.2, 0.3]]))
    assert np.all(np.isinf(times[0])) and np.all(np.isinf(times[1]))


def test_equal_arrival_times_act_as_one_summed_input(helpers):
    two = single_neuron([1.5, 1.2])
    one = single_neuron([2.7])
    t_two, g_two = spike_and_gradients(two, [0.4, 0.4])
    t_one, g_one = spike_and_gradients(one, [0.4])
    assert t_two[0][0, 0] == pytest.approx(t_one[0][0, 0], rel=1e-14)
    assert t_two[0][0, 0] == pytest.approx(reference_spike(two, [0.4, 0.4]), rel=1e-6)
    # dt/dw is the same for both tied inputs and equals that of the merged input
    np.testing.assert_allclose(g_two.layers[0].weights[:, 0], g_one.layers[0].weights[0, 0], rtol=1e-12)
    # dt/da_i is proportional to w_i and the arrival gradients sum to one
    np.testing.assert_allclose(g_two.input_spike_times[0], [1.5 / 2.7, 1.2 / 2.7], rtol=1e-12)
    x = np.array([[0.4, 0.4]])
    delta = np.ones((1, 1))
    numerical = helpers.central_difference(lambda: helpers.output_loss(two, x, delta), x)
    np.testing.assert_allclose(g_two.input_spike_times, numerical, rtol=1e-5)


def test_equal_arrivals_created_by_synaptic_delays():
    network = single_neuron([1.5, 1.2, 0.8], kind="synaptic", delays=np.array([[0.3], [0.0], [0.45]]))
    x = [0.2, 0.5, 0.05]  # all three arrive at 0.5
    t, _ = spike_and_gradients(network, x)
    assert t[0][0, 0] == pytest.approx(reference_spike(single_neuron([1.5, 1.2, 0.8]), [0.5, 0.5, 0.5]), rel=1e-6)


def test_input_arriving_after_the_spike_has_no_effect(helpers):
    network = single_neuron([3.0, 2.5, -5.0])
    x = np.array([[0.1, 0.3, 4.0]])
    times, grads = spike_and_gradients(network, x)
    without, _ = spike_and_gradients(single_neuron([3.0, 2.5]), x[:, :2])
    assert times[0][0, 0] < 4.0
    assert times[0][0, 0] == without[0][0, 0]
    assert grads.layers[0].weights[2, 0] == 0.0 and grads.input_spike_times[0, 2] == 0.0
    assert grads.layers[0].weights[0, 0] != 0.0
    numerical = helpers.central_difference(lambda: helpers.output_loss(network, x, np.ones((1, 1))), x)
    np.testing.assert_allclose(grads.input_spike_times, numerical, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("ratio", [1.0, 2.0, 1.7])
@pytest.mark.parametrize(
    "weights, x",
    [([3.5, -1.0, 2.0], [0.0, 0.3, 0.6]), ([-1.5, 4.0, 1.0], [0.0, 0.5, 0.9]),
     ([2.0, -0.5, -0.5, 3.0], [0.0, 0.2, 0.2, 1.0])],
    ids=["excite-inhibit-excite", "inhibit-first", "tied-inhibition"],
)
def test_inhibitory_inputs(helpers, ratio, weights, x):
    network = single_neuron(weights, ratio=ratio)
    times, grads = spike_and_gradients(network, x)
    t = times[0][0, 0]
    assert np.isfinite(t) and t == pytest.approx(reference_spike(network, x), rel=1e-6)
    x = np.atleast_2d(np.asarray(x, dtype=float))

    def loss():
        return helpers.output_loss(network, x, np.ones((1, 1)))

    np.testing.assert_allclose(grads.layers[0].weights,
                               helpers.central_difference(loss, network.layers[0].projection.weights),
                               rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(grads.input_spike_times, helpers.central_difference(loss, x), rtol=1e-5, atol=1e-9)


def test_inhibition_can_prevent_a_spike():
    assert np.isfinite(dg.forward(single_neuron([2.5]), [[0.0]])[0][0, 0])
    blocked = single_neuron([2.5, -2.0])
    assert np.isinf(dg.forward(blocked, [[0.0, 0.1]])[0][0, 0])
    assert np.isinf(reference_spike(blocked, [0.0, 0.1]))


@pytest.mark.parametrize("ratio, peak", [(1.0, np.exp(-1.0)), (2.0, 0.5), (1.7, None)])
def test_neuron_below_threshold_is_silent_with_zero_gradient(ratio, peak):
    weight = 0.99 / peak if peak else 1.0
    network = single_neuron([weight, 0.2], ratio=ratio)
    x = [[0.0, 6.0]]  # the second input arrives after the first PSP has decayed
    times, grads = spike_and_gradients(network, x)
    assert np.isinf(times[0][0, 0]) and np.isinf(reference_spike(network, x[0]))
    grads = dg.backward(network, x, times, np.ones((1, 1)))
    assert not np.any(grads.layers[0].weights) and not np.any(grads.layers[0].threshold)
    assert not np.any(grads.input_spike_times) and grads.layers[0].no_crossing == grads.layers[0].guarded == 0


@pytest.mark.parametrize("ratio", [1.0, 2.0, 1.7])
def test_very_large_weight_spikes_right_after_the_arrival(helpers, ratio):
    network = single_neuron([1e6], ratio=ratio)
    x = np.array([[0.0]])
    times, grads = spike_and_gradients(network, x)
    t = times[0][0, 0]
    assert t == pytest.approx(1e-6, rel=1e-5)  # u ~ w s for s << 1
    assert t == pytest.approx(reference_spike(network, [0.0]), rel=1e-6)
    # t ~ 1e-6 comes from -tau_m log(x) with x ~ 1 - 5e-7 at ratio 2 (~2e-10 relative rounding in t),
    # so a relative step of 1e-4 keeps the difference quotient above that noise.

    def loss():
        return helpers.output_loss(network, x, np.ones((1, 1)))

    numerical = helpers.central_difference(loss, network.layers[0].projection.weights, eps=1e-4)
    np.testing.assert_allclose(grads.layers[0].weights, numerical, rtol=1e-5)


@pytest.mark.parametrize("ratio", [1.0, 2.0, 1.7])
def test_tiny_weights_and_threshold_scale_out(helpers, ratio):
    """u is linear in the weights, so scaling weights and threshold by c leaves t unchanged and
    scales dt/dw and dt/dtheta by 1/c."""
    x = np.array([[0.0, 0.4, 0.9]])
    base = single_neuron([1.5, 1.0, 0.7], ratio=ratio)
    tiny = single_neuron([1.5e-9, 1.0e-9, 0.7e-9], ratio=ratio, threshold=1e-9)
    t_base, g_base = spike_and_gradients(base, x)
    t_tiny, g_tiny = spike_and_gradients(tiny, x)
    assert t_tiny[0][0, 0] == pytest.approx(t_base[0][0, 0], rel=1e-12)
    assert t_tiny[0][0, 0] == pytest.approx(reference_spike(tiny, x[0]), rel=1e-6)
    np.testing.assert_allclose(g_tiny.layers[0].weights, g_base.layers[0].weights * 1e9, rtol=1e-9)
    np.testing.assert_allclose(g_tiny.layers[0].threshold, g_base.layers[0].threshold * 1e9, rtol=1e-9)

    def loss():
        return helpers.output_loss(tiny, x, np.ones((1, 1)))

    numerical = helpers.central_difference(loss, tiny.layers[0].projection.weights, eps=1e-6 * 1e-9)
    np.testing.assert_allclose(g_tiny.layers[0].weights, numerical, rtol=1e-5)


@pytest.mark.parametrize("ratio", [1.0, 2.0, 1.7])
@pytest.mark.parametrize("scale", [1e-170, 1e-300, 1e190])
def test_weights_and_threshold_near_the_smallest_floats_still_scale_out(ratio, scale):
    """(tau_m = 2 tau_s: the quadratic's discriminant underflowed below ~1e-155; a silent
    neuron spiked and a spike moved by 0.7.  Above 1e200 summed weights are refused.)"""
    x = np.array([[0.0, 0.5, 1.0]])
    weights = np.array([[1.0, 2.5], [0.6, 1.0], [0.4, 0.8]])  # neuron 0 stays silent, neuron 1 spikes

    def times(c):
        network = dg.Network.feedforward([3, 2], neuron=dg.NeuronParameters(c, ratio, 1.0))
        network.layers[0].projection.weights = weights * c
        return dg.forward(network, x)[0][0]

    expected = times(1.0)
    assert expected[0] == np.inf and np.isfinite(expected[1])
    np.testing.assert_allclose(times(scale), expected, rtol=1e-12)


@pytest.mark.parametrize("ratio", [1.5, 2.0, 0.5])
@pytest.mark.parametrize("tau_s", [1e-6, 1e-12, 1e-18])
def test_time_constants_in_seconds_keep_machine_precision(ratio, tau_s):
    """Scaling tau_m, tau_s and the input times by c, and the weights by 1/c (a synaptic current
    integrates over tau_s), scales the spike times by c.  (The general solver stopped at an
    absolute step of 1e-15: at tau_s = 1e-15 a spike time was the bisection's midpoint, 17 % off.)"""
    rng = np.random.default_rng(4)
    x = rng.uniform(0.0, 2.0, (20, 5))
    network = dg.Network.feedforward([5, 4], neuron=dg.NeuronParameters(1.0, ratio * 1.0001, 1.0), seed=2,
                                     weight_mean=0.8, weight_std=0.6)  # (* 1.0001: the general solver)
    scaled = dg.Network.feedforward([5, 4], neuron=dg.NeuronParameters(1.0, ratio * 1.0001 * tau_s, tau_s))
    scaled.layers[0].projection.weights = network.layers[0].projection.weights / tau_s
    expected = dg.forward(network, x)[0]
    assert np.isfinite(expected).sum() >= 20
    np.testing.assert_allclose(dg.forward(scaled, x * tau_s)[0] / tau_s, expected, rtol=1e-13)


@pytest.mark.parametrize("ratio, peak", [(1.0, np.exp(-1.0)), (2.0, 0.5)])
def test_grazing_crossing_is_dropped_and_counted(ratio, peak):
    """A weight just above the minimum that reaches threshold: u'(t*) -> 0 and dt/dw diverges."""
    network = single_neuron([1.0 / peak * (1 + 1e-7)], ratio=ratio)
    x = [[0.0], [0.0], [np.inf]]
    times = dg.forward(network, x)
    assert np.all(np.isfinite(times[0][:2]))
    delta = np.array([[1.0], [1.0], [0.0]])
    kept = dg.backward(network, x, times, delta)
    assert kept.layers[0].no_crossing == kept.layers[0].guarded == 0
    assert abs(kept.layers[0].weights[0, 0]) > 100  # ~ 1/sqrt(1e-7)
    guarded = dg.backward(network, x, times, delta, guard=GrazingGuard(0.2))
    assert guarded.layers[0].guarded == 2 and guarded.layers[0].no_crossing == 0
    assert not np.any(guarded.layers[0].weights) and not np.any(guarded.layers[0].threshold)
    assert not np.any(guarded.input_spike_times)


def test_a_guard_returning_none_or_another_dtype_is_named_plainly():
    """(None was "guard: returned a object array of shape ()")"""
    network = dg.Network.feedforward([2, 3], seed=0)
    x = np.full((2, 2), 0.5)
    times = dg.forward(network, x)
    for returned, message in ((None, r"guard: returned None, expected a bool mask of shape \(2, 3\)"),
                              (np.zeros((2, 3), dtype=object), r"guard: returned an object array of shape \(2, 3\)"),
                              (np.zeros((2, 3), dtype=np.int64), r"guard: returned an int64 array"),
                              (np.zeros((2, 3), dtype=np.uint8), r"guard: returned a uint8 array")):
        with pytest.raises(dg.InvalidValueError, match=message):
            dg.backward(network, x, times, np.ones((2, 3)), guard=lambda index, term: returned)


def test_weight_guard_keeps_well_conditioned_gradients(helpers):
    network = helpers.build_network([4, 6, 3], "synaptic", 2.0, seed=0)
    x = np.random.default_rng(0).uniform(0.15, 2.0, size=(8, 4))
    times = dg.forward(network, x)
    delta = np.where(np.isfinite(times[-1]), 0.1, 0.0)
    plain = dg.backward(network, x, times, delta)
    guarded = dg.backward(network, x, times, delta, guard=GrazingGuard(1e3))
    for a, b in zip(plain.layers, guarded.layers):
        np.testing.assert_array_equal(a.weights, b.weights)
        assert b.guarded == 0
    # a guard tighter than the largest term drops some samples, never adds gradient
    tight = dg.backward(network, x, times, delta, guard=GrazingGuard(1e-3))
    assert tight.layers[-1].guarded > 0
    assert np.abs(tight.layers[-1].threshold).sum() < np.abs(plain.layers[-1].threshold).sum()


def test_observed_time_without_upward_crossing_gets_no_gradient():
    """Observed spike times (e.g. from a device) where the ideal membrane is not rising."""
    network = single_neuron([3.0, 1.0])
    x = np.array([[0.5, 0.7]] * 3)
    model = dg.forward(network, x)[0][0, 0]
    observed = np.array([[0.2], [10.0], [model]])  # before any arrival; on the decaying tail; the model's own
    grads = dg.backward(network, x, [observed], np.ones((3, 1)))
    assert grads.layers[0].no_crossing == 2 and grads.layers[0].guarded == 0
    alone = dg.backward(network, x[2:], [observed[2:]], np.ones((1, 1)))
    np.testing.assert_array_equal(grads.layers[0].weights, alone.layers[0].weights)
    np.testing.assert_array_equal(grads.input_spike_times[:2], 0.0)
    np.testing.assert_array_equal(grads.input_spike_times[2], alone.input_spike_times[0])


def test_a_guards_own_mask_is_not_changed_and_may_be_read_only():
    """(backward cleared the guard's mask in place where the gradient was zero, and failed on a
    read-only one)"""
    network = dg.Network.feedforward([2, 3], seed=0)
    x = np.full((2, 2), 0.5)
    times = dg.forward(network, x)
    mask = np.ones((2, 3), dtype=bool)
    mask.flags.writeable = False
    output_gradient = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    guarded = dg.backward(network, x, times, output_gradient, guard=lambda index, term: mask)
    assert mask.all()
    assert guarded.layers[0].guarded == 4  # (the entries with a gradient to exclude)
    np.testing.assert_array_equal(guarded.layers[0].weights, 0.0)


def test_the_grazing_guard_excludes_terms_above_its_bound_and_keeps_one_at_it():
    """docs/model.md §4: a sample's gradient through a neuron is dropped when a weight term
    *exceeds* 0.2; a term of exactly the bound keeps it (NaN, no term, is excluded)."""
    assert GrazingGuard(0.2)(0, [[0.2, np.nextafter(0.2, 1.0), np.nextafter(0.2, 0.0), np.nan]]).tolist() == \
        [[False, True, False, True]]
