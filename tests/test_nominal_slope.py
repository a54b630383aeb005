"""`backward(..., gradient_slope="nominal")` against the gradient formula of DelGrad's reference
code for tau_m = tau_s, written out independently here with scipy's Lambert W."""

import copy

import numpy as np
import pytest
from scipy.special import lambertw

import delgrad_core as dg
from delgrad_core.training import TrainingConfig


def _with_threshold(network, offset):
    """A copy whose neurons' thresholds are `offset` higher (a chip whose thresholds differ)."""
    shifted = copy.deepcopy(network)
    for layer in shifted.layers:
        threshold, tau_m, tau_s = layer.neuron_arrays()
        layer.population.neuron = dg.NeuronParameters(threshold=threshold + offset, tau_m=tau_m, tau_s=tau_s)
    return shifted


def _reference_code_weight_gradient(layer, arrivals, post, delta):
    """dL/dw of one tau_m = tau_s = 1 layer as the reference code computes it at measured times:
    dt_j/dw_ij = -(t_j - a_i) e^{a_i} / (A_j (1 + W)), A_j = sum_i w_ij e^{a_i} over the inputs
    that arrived before t_j (one arriving at t_j contributes nothing), W = W0(-theta_j / A_j e^{B_j / A_j}),
    B_j = sum_i w_ij a_i e^{a_i}."""
    weights = layer.projection.weights
    threshold = layer.neuron_arrays()[0]
    gradient = np.zeros_like(weights)
    for b in range(post.shape[0]):
        for j in range(post.shape[1]):
            if not np.isfinite(post[b, j]) or delta[b, j] == 0:
                continue
            causal = arrivals[b, :, j] < post[b, j]
            a_i = arrivals[b, causal, j]
            big_a = np.sum(weights[causal, j] * np.exp(a_i))
            big_b = np.sum(weights[causal, j] * a_i * np.exp(a_i))
            w = lambertw(-threshold[j] / big_a * np.exp(big_b / big_a)).real
            gradient[causal, j] += delta[b, j] * -(post[b, j] - a_i) * np.exp(a_i) / (big_a * (1 + w))
    return gradient


@pytest.mark.filterwarnings("error")  # (silent inputs and neurons: no numpy warning reaches the user)
@pytest.mark.parametrize("kind", ["none", "axonal"])
def test_the_nominal_slope_is_the_reference_codes_gradient_at_measured_times(helpers, kind):
    network = helpers.build_network([6, 5], kind, 1.0, seed=3, per_neuron=False, weight_mean=1.2, weight_std=0.6)
    x = np.random.default_rng(3).uniform(0.15, 2.0, size=(40, 6))
    x[:3, :2] = x[3] = np.inf  # (inputs that never arrive; a sample without any)
    measured = dg.forward(_with_threshold(network, 0.13), x)  # spikes of neurons whose thresholds are higher
    assert np.isfinite(measured[-1]).mean() > 0.5
    delta = np.where(np.isfinite(measured[-1]), np.random.default_rng(4).normal(size=measured[-1].shape), 0.0)
    nominal = dg.backward(network, x, measured, delta, gradient_slope="nominal", input_gradient=False)
    exact = dg.backward(network, x, measured, delta, input_gradient=False)
    layer = network.layers[0]
    delays = layer.projection.delay_matrix() if kind != "none" else np.zeros(layer.projection.weights.shape)
    expected = _reference_code_weight_gradient(layer, x[:, :, None] + delays[None], measured[-1], delta)
    np.testing.assert_allclose(nominal.layers[0].weights, expected, rtol=1e-9, atol=1e-12)
    assert not np.allclose(exact.layers[0].weights, expected, rtol=1e-3)  # (the choice matters here)


def test_the_nominal_slope_is_the_exact_one_at_the_nominal_spike_times(helpers):
    """Where the measured spikes are the nominal neurons' own, both slopes agree (per-neuron
    thresholds and tau_s != 1 included)."""
    network = helpers.build_network([4, 7, 3], "axonal", 1.0, seed=5)
    x = np.random.default_rng(5).uniform(0.15, 2.0, size=(30, 4))
    times = dg.forward(network, x)
    delta = np.where(np.isfinite(times[-1]), 1.0, 0.0)
    nominal = dg.backward(network, x, times, delta, gradient_slope="nominal")
    exact = dg.backward(network, x, times, delta)
    for ours, reference in zip(nominal.layers, exact.layers):
        np.testing.assert_allclose(ours.weights, reference.weights, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(ours.delays, reference.delays, rtol=1e-9, atol=1e-12)


def test_the_nominal_slope_needs_tau_m_equal_to_tau_s(helpers):
    network = helpers.build_network([3, 2], "none", 2.0, seed=1, per_neuron=False)
    x = np.full((2, 3), 0.5)
    times = dg.forward(network, x)
    with pytest.raises(dg.InvalidValueError, match=r"gradient_slope: 'nominal' needs tau_m = tau_s .*; layer 0 has "
                                                   r"tau_m / tau_s = 2"):
        dg.backward(network, x, times, np.zeros((2, 2)), gradient_slope="nominal")
    with pytest.raises(dg.InvalidValueError, match="gradient_slope: expected one of observed, nominal, got 'exact'"):
        dg.backward(network, x, times, np.zeros((2, 2)), gradient_slope="exact")
    with pytest.raises(dg.InvalidValueError, match="gradient_slope: 'nominal' needs tau_ratio = 1"):
        TrainingConfig(gradient_slope="nominal")
    assert TrainingConfig(gradient_slope="nominal", tau_ratio=1.0).gradient_slope == "nominal"


def test_an_input_arriving_at_the_measured_spike_leaves_the_nominal_slope_alone():
    """(on the chip's 8 ns clock an input can arrive at the spike's own time; it counted in the
    nominal slope's sum A while the exact gradient it scales leaves it out: 20 % off here)"""
    neuron = dg.NeuronParameters(threshold=2.6, tau_m=1.0, tau_s=1.0)
    layer = dg.Layer(dg.Population("out", 1, neuron), dg.Projection(np.array([[4.0], [4.0], [1.5]])))
    network = dg.Network(dg.Population("in", 3), [layer])
    nominal_spike = dg.forward(network, np.array([[0.0, 0.3, np.inf]]))[-1][0, 0]
    measured = nominal_spike + 0.1  # (a higher threshold on the substrate)
    tied = np.array([[0.0, 0.3, measured]])
    gradient = dg.backward(network, tied, [np.array([[measured]])], np.ones((1, 1)),
                           gradient_slope="nominal").layers[0].weights
    expected = _reference_code_weight_gradient(layer, tied[:, :, None], np.array([[measured]]), np.ones((1, 1)))
    np.testing.assert_allclose(gradient, expected, rtol=1e-12)
    assert gradient[2, 0] == 0.0


def test_the_nominal_slope_of_a_wide_layer_works_in_chunks_of_samples():
    """(it built every (sample, input, neuron) arrival of the batch first: 329 MB for 784-350 at
    batch 150, 2.3 GB at batch 1000, where the exact backward needs a few MB)"""
    import tracemalloc

    rng = np.random.default_rng(0)
    network = dg.Network.feedforward([784, 100], neuron=dg.NeuronParameters(1.0, 1.0, 1.0), weight_mean=0.02,
                                     weight_std=0.05, seed=1)
    inputs = rng.uniform(0.15, 2.0, (200, 784))
    times = dg.forward(network, inputs)
    assert np.isfinite(times[0]).mean() > 0.5
    whole = dg.backward(network, inputs, times, np.ones((200, 100)), gradient_slope="nominal")
    tracemalloc.start()
    try:
        halves = [dg.backward(network, inputs[part], [times[0][part]], np.ones((100, 100)), gradient_slope="nominal")
                  for part in (slice(0, 100), slice(100, 200))]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 60e6, peak  # (the arrivals of 100 samples alone: 63 MB; a chunk's temporaries about 40 MB)
    np.testing.assert_allclose(halves[0].layers[0].weights + halves[1].layers[0].weights, whole.layers[0].weights,
                               rtol=1e-12, atol=1e-12)


def _one_neuron(weights):
    """One tau_m = tau_s = 1 neuron of threshold 1 fed by inputs of `weights`."""
    neuron = dg.NeuronParameters(threshold=1.0, tau_m=1.0, tau_s=1.0)
    layer = dg.Layer(dg.Population("out", 1, neuron), dg.Projection(np.array(weights, dtype=float).reshape(-1, 1)))
    return dg.Network(dg.Population("in", len(weights)), [layer])


@pytest.mark.parametrize(("weight", "measured", "exact"), [
    # u(s) = 2 s e^-s peaks at 2 / e < theta: the nominal neuron never crosses; the exact slope at s = 0.5
    # is A (1 + W_t) = 2 e^-0.5 (1 - 0.5), so dt/dw = -(s e^-s) / (e^-0.5) = -0.5
    (2.0, 0.5, -0.5),
    # an inhibitory input: A = -e^-2 <= 0 at s = 2, where u' = e^-2 > 0 and dt/dw = -(2 e^-2) / e^-2 = -2
    (-1.0, 2.0, -2.0),
], ids=["no-nominal-crossing", "A-not-positive"])
def test_the_nominal_slope_passes_no_gradient_where_the_nominal_neuron_has_none(weight, measured, exact):
    """The module's rule: a factor 0 where the nominal neuron does not cross or A <= 0 (a factor 1 passed the
    exact gradient on, and Lambert W of the positive argument that A < 0 gives a finite, meaningless factor)."""
    network, inputs, times = _one_neuron([weight]), np.zeros((1, 1)), [np.array([[measured]])]
    observed = dg.backward(network, inputs, times, np.ones((1, 1))).layers[0].weights
    nominal = dg.backward(network, inputs, times, np.ones((1, 1)), gradient_slope="nominal").layers[0].weights
    assert observed[0, 0] == pytest.approx(exact, rel=1e-12)
    assert nominal[0, 0] == 0.0


def test_training_takes_the_configured_slope(monkeypatch):
    """gradient_slope = "nominal" in a training config reaches every step's backward pass."""
    from delgrad_core.training import Trainer

    slopes, real_backward = [], dg.backward

    def recording_backward(*args, **kwargs):
        slopes.append(kwargs.get("gradient_slope"))
        return real_backward(*args, **kwargs)

    monkeypatch.setattr("delgrad_core.training._step.backward", recording_backward)
    for slope in ("nominal", "observed"):
        trainer = Trainer(TrainingConfig(hidden=6, delays="none", tau_ratio=1.0, gradient_slope=slope,
                                         silent_bump=None))
        trainer.step(trainer.train_set.features[:50], trainer.train_set.labels[:50], 1.0)
    assert slopes == ["nominal", "observed"]
