"""Gradients at observed arrival times (what a chip measures at its delay elements).

With arrivals equal to t + d the results are those of the plain passes, bit for bit; with
jittered arrivals the gradients are those of the forward pass that has the same jitter,
checked against central differences.
"""

import numpy as np
import pytest

import delgrad_core as dg

KINDS = ["none", "axonal", "dendritic", "synaptic"]


def _nominal_arrivals(pre, layer):
    return pre[:, :, None] + layer.projection.delay_matrix()[None]


@pytest.mark.parametrize("kind", KINDS)
def test_arrivals_equal_to_t_plus_d_change_nothing(helpers, kind):
    network = helpers.build_network([4, 7, 3], kind, 2.0, seed=1)
    inputs = np.random.default_rng(0).uniform(0.15, 2.0, (12, 4))
    inputs[0, 2] = np.inf
    times = dg.forward(network, inputs)
    delta = np.where(np.isfinite(times[-1]), 0.3, 0.0)
    plain = dg.backward(network, inputs, times, delta)
    arrivals = [_nominal_arrivals(pre, layer) for pre, layer in zip([inputs, times[0]], network.layers)]
    observed = dg.backward(network, inputs, times, delta, arrival_times=arrivals)
    for a, b in zip(plain.layers, observed.layers):
        assert a.weights.tobytes() == b.weights.tobytes() and a.threshold.tobytes() == b.threshold.tobytes()
        if a.delays is not None:
            assert a.delays.tobytes() == b.delays.tobytes()
    assert plain.input_spike_times.tobytes() == observed.input_spike_times.tobytes()
    for layer, pre, post, a in zip(network.layers, [inputs, times[0]], times, arrivals):
        assert dg.layer_forward(layer, pre, arrival_times=a).tobytes() == post.tobytes()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("ratio", [1.0, 2.0, 1.4])
def test_one_arrival_per_input_equals_the_same_arrival_at_every_neuron(helpers, kind, ratio):
    # (batch, n_pre) arrivals take a layer-wide path (the arrivals become the input times, with
    # no delays); it must give what the per-synapse form with the same time at every neuron gives
    network = helpers.build_network([6, 9], kind, ratio, seed=3, weight_mean=1.5, weight_std=0.6)
    layer = network.layers[0]
    rng = np.random.default_rng(2)
    arrivals = rng.uniform(0.15, 4.0, (40, 6))
    arrivals[3, 1] = arrivals[5, :] = np.inf
    per_synapse = np.repeat(arrivals[:, :, None], layer.projection.n_post, axis=2)
    inputs = rng.uniform(0.15, 2.0, (40, 6))  # not read: the arrivals stand for input time plus delay
    shared = dg.layer_forward(layer, inputs, arrival_times=arrivals)
    expected = dg.layer_forward(layer, inputs, arrival_times=per_synapse)
    assert np.isfinite(expected).sum() > 100
    np.testing.assert_array_equal(np.isfinite(shared), np.isfinite(expected))
    np.testing.assert_allclose(shared, expected, rtol=1e-12, atol=0)


def _jittered_forward(network, inputs, offsets):
    """Spike times when every arrival is t_i + d_ij + offset_ij (fixed per-sample jitter)."""
    times, pre = [], inputs
    for layer, offset in zip(network.layers, offsets):
        pre = dg.layer_forward(layer, pre, arrival_times=_nominal_arrivals(pre, layer) + offset)
        times.append(pre)
    return times


@pytest.mark.parametrize("kind", ["axonal", "synaptic", "dendritic"])
@pytest.mark.parametrize("ratio", [1.0, 2.0, 1.4])
def test_gradients_at_jittered_arrivals_match_finite_differences(helpers, kind, ratio):
    network = helpers.build_network([3, 5, 2], kind, ratio, seed=11, weight_mean=1.8, weight_std=0.4)
    rng = np.random.default_rng(5)
    inputs = rng.uniform(0.15, 2.0, (4, 3))
    offsets = [rng.normal(0, 0.05, (4, 3, 5)), rng.normal(0, 0.05, (4, 5, 2))]
    times = _jittered_forward(network, inputs, offsets)
    delta = np.where(np.isfinite(times[-1]), rng.normal(0, 1, times[-1].shape), 0.0)
    arrivals = [_nominal_arrivals(pre, layer) + off
                for pre, layer, off in zip([inputs, times[0]], network.layers, offsets)]
    grads = dg.backward(network, inputs, times, delta, arrival_times=arrivals)
    plain = dg.backward(network, inputs, times, delta)
    assert not np.allclose(grads.layers[0].weights, plain.layers[0].weights), "the jitter must matter"

    pattern = [np.isfinite(t) for t in times]

    def loss():
        out = _jittered_forward(network, inputs, offsets)
        if any(not np.array_equal(np.isfinite(t), p) for t, p in zip(out, pattern)):
            return np.nan
        return float(np.sum(np.where(np.isfinite(out[-1]), delta * out[-1], 0.0)))

    for k, layer in enumerate(network.layers):
        numerical = helpers.central_difference(loss, layer.projection.weights, eps=1e-6)
        np.testing.assert_allclose(grads.layers[k].weights, numerical, rtol=1e-5, atol=1e-8)
        numerical = helpers.central_difference(loss, layer.projection.delays, eps=1e-6)
        np.testing.assert_allclose(grads.layers[k].delays, numerical, rtol=1e-5, atol=1e-8)


def test_arrival_times_are_validated():
    network = dg.Network.feedforward([2, 3], delay_kind="axonal")
    layer, inputs = network.layers[0], np.zeros((4, 2))
    with pytest.raises(ValueError, match=r"arrival_times: expected shape \(4, 2, 3\) or \(4, 2\)"):
        dg.layer_forward(layer, inputs, arrival_times=np.zeros((4, 3)))
    with pytest.raises(ValueError, match="arrival_times: contains NaN"):
        dg.layer_forward(layer, inputs, arrival_times=np.full((4, 2), np.nan))
    times = dg.forward(network, inputs)
    with pytest.raises(ValueError, match="arrival_times: expected None or a list of 1 entries"):
        dg.backward(network, inputs, times, np.zeros((4, 3)), arrival_times=[None, None])
    with pytest.raises(ValueError, match=r"arrival_times\[0\]: expected shape"):
        dg.backward(network, inputs, times, np.zeros((4, 3)), arrival_times=[np.zeros((1, 1, 1))])
    # (an arrival from a silent input gave spikes before any input)
    inputs = np.array([[1.0, np.inf]] * 4)
    from_silent = np.full((4, 2), 2.0)
    from_silent[:, 1] = np.inf
    from_silent[3, 1] = 4.0
    for call in (lambda arrivals: dg.layer_forward(layer, inputs, arrival_times=arrivals),
                 lambda arrivals: dg.layer_backward(layer, inputs, np.ones((4, 3)), np.ones((4, 3)),
                                                    arrival_times=arrivals)):
        with pytest.raises(dg.InvalidValueError, match="arrival_times: presynaptic line 1 of sample 3 sent no spike, "
                                                       "yet one arrives at 4.0"):
            call(from_silent)
    with pytest.raises(dg.InvalidValueError, match=r"arrival_times\[0\]: presynaptic line 1 of sample 3 sent no spike"):
        dg.backward(network, inputs, dg.forward(network, inputs), np.ones((4, 3)), arrival_times=[from_silent])


def test_guard_excludes_entries_and_is_reported_apart_from_no_crossing(helpers):
    from delgrad_core.training import GrazingGuard

    network = helpers.build_network([4, 6, 3], "synaptic", 2.0, seed=0)
    x = np.random.default_rng(0).uniform(0.15, 2.0, size=(8, 4))
    times = dg.forward(network, x)
    delta = np.where(np.isfinite(times[-1]), 0.1, 0.0)
    seen = []

    def guard(layer_index, largest):
        seen.append((layer_index, largest.copy()))
        return GrazingGuard(1e-3)(layer_index, largest)

    grads = dg.backward(network, x, times, delta, guard=guard)
    assert [index for index, _ in seen] == [1, 0]
    assert grads.layers[1].guarded == int((seen[0][1] > 1e-3).sum()) > 0
    with pytest.raises(ValueError, match="max_weight_term: expected a finite number > 0"):
        GrazingGuard(0.0)
    with pytest.raises(ValueError, match="max_weight_term"):
        GrazingGuard(float("nan"))
