"""The layer-wide kernels (inputs in the same order at every neuron, one closed-form ratio for the
whole layer) against the per-neuron kernels, the ODE reference and central differences, on many
random layers: silent inputs, tied arrival times, inhibitory weights, near-grazing crossings,
times up to ~50 tau_s, samples beyond the span the layer-wide path serves (docs/model.md §2, §4).
"""

import numpy as np
import pytest
from _ode_reference import network_spike_times

import delgrad_core as dg
from delgrad_core import _layer, _propagation
from delgrad_core.training import GrazingGuard

KINDS = ["none", "axonal", "dendritic"]
RATIOS = [1.0, 2.0]


def random_layer_case(seed, kind, ratio, *, n_pre=None, n_post=None, batch=8, spread=2.0):
    """A one-layer network with scalar time constants (tau_s = 0.8, tau_m = ratio tau_s) and
    per-neuron thresholds, and input times with silent inputs, ties and inhibitory weights."""
    rng = np.random.default_rng(seed)
    n_pre = n_pre or int(rng.integers(1, 40))
    n_post = n_post or int(rng.integers(1, 25))
    tau_s = 0.8
    network = dg.Network.feedforward([n_pre, n_post], delay_kind=kind, seed=seed,
                                     weight_mean=rng.uniform(0.2, 2.5) * 4.0 / n_pre + 0.1,
                                     weight_std=rng.uniform(0.3, 1.5))
    layer = network.layers[0]
    if layer.projection.delays is not None:
        layer.projection.delays[...] = rng.uniform(0.0, 1.0, size=layer.projection.delays.shape)
    layer.population.neuron = dg.NeuronParameters(
        threshold=rng.uniform(0.3, 1.5, size=n_post), tau_m=ratio * tau_s, tau_s=tau_s
    )
    network.validate()
    x = rng.uniform(0.0, spread, size=(batch, n_pre))
    x[rng.random(x.shape) < 0.2] = np.inf                       # silent inputs
    ties = rng.random(x.shape) < 0.2                             # tied with input 0
    x[ties] = x[:, :1].repeat(n_pre, axis=1)[ties]
    x[rng.random(x.shape) < 0.1] = 0.5 * spread                  # tied at a common time
    x[-1] = np.inf                                               # a sample with no input at all
    return network, x


def layer_forward(network, x, *, layer_walk):
    layer = network.layers[0]
    projection = layer.projection
    out = np.empty((x.shape[0], projection.n_post))
    _layer.forward_layer(
        np.ascontiguousarray(x, dtype=float), projection.weights, projection.delay_matrix(), np.zeros((1, 1, 1)),
        False, True, *layer.neuron_arrays(), out, 1, False, layer_walk,
    )
    return out


def assert_close_times(actual, expected, rtol):
    np.testing.assert_array_equal(np.isfinite(actual), np.isfinite(expected))
    finite = np.isfinite(expected)
    np.testing.assert_allclose(actual[finite], expected[finite], rtol=rtol, atol=0)


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("kind", KINDS)
def test_layer_walk_agrees_with_the_per_neuron_walk(kind, ratio):
    found = 0
    for seed in range(60):
        network, x = random_layer_case(seed, kind, ratio)
        walk = layer_forward(network, x, layer_walk=True)
        per_neuron = layer_forward(network, x, layer_walk=False)
        assert_close_times(walk, per_neuron, rtol=1e-10)
        found += np.isfinite(walk).sum()
    assert found > 1000


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("kind", KINDS)
def test_layer_walk_agrees_with_the_ode_reference(kind, ratio):
    for seed in range(4):
        network, x = random_layer_case(100 + seed, kind, ratio, n_pre=12, n_post=6, batch=3)
        assert_close_times(dg.forward(network, x)[0], network_spike_times(network, x)[0], rtol=1e-6)


@pytest.mark.parametrize("ratio", RATIOS)
def test_times_up_to_fifty_tau_s(ratio):
    """Input times spread over ~50 tau_s: the exponentials of shifted times stay exact."""
    for seed in range(20):
        network, x = random_layer_case(200 + seed, "axonal", ratio, spread=50.0)
        assert_close_times(layer_forward(network, x, layer_walk=True), layer_forward(network, x, layer_walk=False),
                           rtol=1e-10)
    network, x = random_layer_case(300, "none", ratio, n_pre=10, n_post=4, batch=2, spread=50.0)
    assert_close_times(dg.forward(network, x)[0], network_spike_times(network, x)[0], rtol=1e-6)


def image_like_inputs(rng, batch, n_pre, levels=5):
    """Latency-coded images: most inputs in a few large groups of tied times (background pixels
    and saturated ones), the rest spread; some samples begin, end or cross inside such a group."""
    x = rng.uniform(0.15, 2.0, size=(batch, n_pre))
    level = rng.integers(0, levels + 3, size=x.shape)
    for value, time in enumerate(np.linspace(0.15, 2.0, levels)):
        x[level == value] = time
    return x


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("kind", ["none", "axonal"])
def test_large_groups_of_tied_arrivals(kind, ratio):
    """Groups of more than one block's worth of tied arrivals are walked as blocks of their own
    and take their sums from the vectorised pass: the same times as the per-neuron walk."""
    found = 0
    for seed in range(20):
        network, _ = random_layer_case(400 + seed, kind, ratio, n_pre=120, n_post=30, batch=12)
        rng = np.random.default_rng(seed)
        x = image_like_inputs(rng, 12, 120)
        layer = network.layers[0]
        layer.projection.weights = rng.normal(0.02, 0.08, size=layer.projection.weights.shape)
        for scale in (1.0, 3.0):  # late and early crossings
            layer.projection.weights = scale * layer.projection.weights
            walk = layer_forward(network, x, layer_walk=True)
            assert_close_times(walk, layer_forward(network, x, layer_walk=False), rtol=1e-10)
            found += np.isfinite(walk).sum()
    assert found > 2000
    network, _ = random_layer_case(450, kind, ratio, n_pre=40, n_post=5, batch=3)
    network.layers[0].projection.weights = np.random.default_rng(1).normal(0.1, 0.2, size=(40, 5))
    x = image_like_inputs(np.random.default_rng(2), 3, 40)
    assert_close_times(dg.forward(network, x)[0], network_spike_times(network, x)[0], rtol=1e-6)


@pytest.mark.parametrize("ratio", RATIOS)
def test_samples_beyond_the_span_limit_take_the_per_neuron_walk(ratio):
    """A sample whose arrivals span more than 100 tau_m is computed by the per-neuron kernels,
    bit for bit, and so are its gradients."""
    network, x = random_layer_case(7, "none", ratio, n_pre=20, n_post=10, batch=4)
    x[1, :5] += 300.0
    walk = layer_forward(network, x, layer_walk=True)
    per_neuron = layer_forward(network, x, layer_walk=False)
    np.testing.assert_array_equal(walk[1], per_neuron[1])
    assert_close_times(walk, per_neuron, rtol=1e-10)
    times = dg.forward(network, x)
    delta = np.where(np.isfinite(times[0]), 1.0, 0.0)
    tau_m = network.layers[0].neuron_arrays()[1]
    assert np.ptp(x[1][np.isfinite(x[1])]) / tau_m[0] > 100
    shared = _propagation._backward_layer_shared(network.layers[0], x, times[0], delta, 1)
    assert shared is None


def test_near_grazing_crossings_are_found():
    """Weights just above the least that reaches threshold (peak tau_m/4 at ratio 2, tau/e at
    ratio 1) for many neurons at once: the bound and interval tests keep every such crossing."""
    for ratio, peak in ((2.0, 0.5), (1.0, np.exp(-1.0))):
        excess = np.logspace(-12, -2, 30)
        weights = (1.0 / peak) * (1.0 + excess)[None, :]
        projection = dg.Projection(np.vstack([weights, np.full_like(weights, 1e-3)]), name="output.projection")
        neuron = dg.NeuronParameters(threshold=1.0, tau_m=ratio, tau_s=1.0)
        network = dg.Network(dg.Population("input", 2), [dg.Layer(dg.Population("output", 30, neuron), projection)])
        x = np.array([[0.3, 0.3 + 1.2 * ratio], [0.3, np.inf]])
        walk = layer_forward(network, x, layer_walk=True)
        per_neuron = layer_forward(network, x, layer_walk=False)
        assert np.all(np.isfinite(walk)) and np.all(np.isfinite(per_neuron))
        # near the grazing point t is ill-conditioned (dt ~ sqrt(relative weight excess))
        np.testing.assert_allclose(walk, per_neuron, rtol=1e-6)
        reference = network_spike_times(network, x[1:])[0]
        np.testing.assert_allclose(walk[1, 10:], reference[0, 10:], rtol=1e-5)


@pytest.mark.parametrize("ratio", RATIOS)
def test_strong_inputs_close_together(ratio):
    """Inputs 1e-9 tau_s apart with weights up to 1e9: crossings right after an arrival, inside
    a block whose intervals are far shorter than the block bound's resolution."""
    rng = np.random.default_rng(11)
    network, x = random_layer_case(12, "none", ratio, n_pre=30, n_post=20, batch=6)
    network.layers[0].projection.weights[...] = (rng.normal(0.0, 1.0, size=(30, 20))
                                                 * 10.0 ** rng.integers(0, 10, size=(30, 20)))
    x = 1.0 + 1e-9 * rng.integers(0, 40, size=(6, 30))
    walk = layer_forward(network, x, layer_walk=True)
    per_neuron = layer_forward(network, x, layer_walk=False)
    assert np.isfinite(walk).sum() > 40 and np.any(walk < 1.0 + 3e-8)
    np.testing.assert_array_equal(np.isfinite(walk), np.isfinite(per_neuron))
    finite = np.isfinite(walk)
    np.testing.assert_allclose(walk[finite] - 1.0, per_neuron[finite] - 1.0, rtol=1e-6, atol=1e-15)


def gradients(network, x, times, delta, n_threads=1, guard=None):
    return dg.backward(network, x, times, delta, n_threads=n_threads, guard=guard)


def per_neuron_gradients(monkeypatch, network, x, times, delta):
    with monkeypatch.context() as patch:
        patch.setattr(_propagation, "_backward_layer_shared", lambda *args: None)
        return gradients(network, x, times, delta)


def assert_gradients_close(actual, expected, rtol):
    """Normwise: every array within rtol of its largest entry (the per-synapse evaluation and
    the products of exponentials round differently)."""
    def close(a, b):
        scale = max(np.max(np.abs(b), initial=0.0), 1e-300)
        assert np.max(np.abs(a - b), initial=0.0) <= rtol * scale
    close(actual.input_spike_times, expected.input_spike_times)
    for a, b in zip(actual.layers, expected.layers):
        close(a.weights, b.weights)
        close(a.threshold, b.threshold)
        if b.delays is not None:
            close(a.delays, b.delays)
        assert a.no_crossing == b.no_crossing and a.guarded == b.guarded


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("kind", KINDS)
def test_layer_backward_agrees_with_the_per_synapse_backward(monkeypatch, kind, ratio):
    for seed in range(40):
        network, x = random_layer_case(seed, kind, ratio, spread=2.0 if seed % 2 else 40.0)
        times = dg.forward(network, x)
        delta = np.where(np.isfinite(times[0]), np.random.default_rng(seed).normal(size=times[0].shape), 0.0)
        delta[0, :2] = 0.0
        shared = gradients(network, x, times, delta)
        assert_gradients_close(shared, per_neuron_gradients(monkeypatch, network, x, times, delta), rtol=1e-11)


def test_layer_backward_reports_like_the_per_synapse_backward(monkeypatch):
    """no_crossing at observed times the model cannot explain, the largest weight term and a
    guard deciding from it."""
    network, x = random_layer_case(3, "none", 2.0, n_pre=15, n_post=12, batch=6)
    times = dg.forward(network, x)
    observed = np.where(np.isfinite(times[0]), times[0], 1.0)
    observed[:, 0] = 40.0                     # long after every input: no upward crossing unless u < 0
    delta = np.ones_like(observed)
    layer = network.layers[0]
    shared = _propagation._backward_layer_shared(layer, x, observed, delta, 1)
    with monkeypatch.context() as patch:
        patch.setattr(_propagation, "_backward_layer_shared", lambda *args: None)
        general = _propagation._backward_layer(layer, x, observed, delta, None, 1)
    np.testing.assert_array_equal(shared.no_crossing, general.no_crossing)
    assert shared.no_crossing[:, 0].sum() >= 3
    np.testing.assert_allclose(shared.largest_weight_term, general.largest_weight_term, rtol=1e-11, atol=1e-300)
    guard = GrazingGuard(np.median(general.largest_weight_term[general.largest_weight_term > 0]))
    assert_gradients_close(gradients(network, x, [observed], delta, guard=guard),
                           _guarded_general(monkeypatch, network, x, observed, delta, guard), rtol=1e-11)


def _guarded_general(monkeypatch, network, x, observed, delta, guard):
    with monkeypatch.context() as patch:
        patch.setattr(_propagation, "_backward_layer_shared", lambda *args: None)
        return gradients(network, x, [observed], delta, guard=guard)


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("kind", KINDS)
def test_layer_backward_matches_finite_differences(helpers, kind, ratio):
    for seed in range(40):
        network, x = random_layer_case(400 + seed, kind, ratio, n_pre=6, n_post=5, batch=3)
        x[-1] = np.random.default_rng(seed).uniform(0.0, 2.0, size=x.shape[1])
        times = dg.forward(network, x)
        _, slopes = network_spike_times(network, x, with_slopes=True)
        if np.isfinite(times[0]).sum() >= 5 and helpers.is_well_conditioned(network, x, times, slopes):
            break
    else:
        raise AssertionError("no well-conditioned case")
    delta = np.where(np.isfinite(times[0]), np.random.default_rng(1).normal(size=times[0].shape), 0.0)
    grads = dg.backward(network, x, times, delta)

    def loss():
        return helpers.output_loss(network, x, delta)

    layer = network.layers[0]
    for actual, array in [(grads.layers[0].weights, layer.projection.weights),
                          (grads.layers[0].threshold, layer.population.neuron.threshold),
                          (grads.input_spike_times, x)] + (
                         [(grads.layers[0].delays, layer.projection.delays)]
                         if layer.projection.delays is not None else []):
        expected = helpers.central_difference(loss, array)
        finite = np.isfinite(array)
        scale = max(1.0, np.max(np.abs(expected[finite])))
        np.testing.assert_allclose(actual[finite], expected[finite], rtol=1e-5, atol=1e-6 * scale)


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("kind", KINDS)
def test_layer_kernels_are_bit_identical_for_any_thread_count(kind, ratio):
    network = dg.Network.feedforward([30, 40, 5], delay_kind=kind, weight_mean=0.3, weight_std=0.5,
                                     neuron=dg.NeuronParameters(threshold=1.0, tau_m=ratio, tau_s=1.0), seed=5)
    x = np.random.default_rng(5).uniform(0.0, 2.0, size=(97, 30))
    x[np.random.default_rng(6).random(x.shape) < 0.2] = np.inf
    one = dg.forward(network, x, n_threads=1)
    two = dg.forward(network, x, n_threads=2)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
    assert np.isfinite(one[-1]).mean() > 0.5
    delta = np.where(np.isfinite(one[-1]), 1.0, 0.0)
    g1 = dg.backward(network, x, one, delta, n_threads=1)
    g2 = dg.backward(network, x, one, delta, n_threads=2)
    np.testing.assert_array_equal(g1.input_spike_times, g2.input_spike_times)
    for a, b in zip(g1.layers, g2.layers):
        np.testing.assert_array_equal(a.weights, b.weights)
        np.testing.assert_array_equal(a.threshold, b.threshold)
        if a.delays is not None:
            np.testing.assert_array_equal(a.delays, b.delays)


@pytest.mark.parametrize("ratio", RATIOS)
def test_a_huge_dendritic_delay_leaves_the_other_neurons_exact(ratio):
    """The layer-wide passes take every neuron's arrivals from one neuron's: that of neuron 0
    rounded the others' input times away when its own delay was huge (a spike time off by 1e-3
    at 1e13, gradients off by up to 15 times); the neuron of the smallest delay serves now."""
    inputs = np.array([[0.6, 0.0], [0.1, 0.35]])
    weights = np.array([[5.0, 5.0, 1.2], [0.3, 0.3, 0.9]])

    def neuron_results(delays):
        layer = dg.Layer(dg.Population("o", 3, dg.NeuronParameters(1.0, ratio, 1.0)),
                         dg.Projection(weights, "dendritic", np.array(delays)))
        times = dg.layer_forward(layer, inputs)
        gradients = dg.layer_backward(layer, inputs, times, np.array([[0.0, 1.0, 0.5]] * 2))
        return times[:, 1:], gradients.weights[:, 1:], gradients.delays[1:], gradients.pre_gradient

    expected = neuron_results([0.0, 0.0, 0.25])
    for huge in (1e6, 1e10, 1e13):
        got = neuron_results([huge, 0.0, 0.25])
        for name, value, reference in zip(("times", "weight gradients", "delay gradients", "input gradients"),
                                          got, expected):
            np.testing.assert_allclose(value, reference, rtol=1e-14, atol=1e-15, err_msg=f"{name}, delay {huge:g}")


def _every_path(network, x):
    """Spike times of a one-layer `network` by the layer walk, the per-neuron walk and the
    general solver."""
    layer = network.layers[0]
    projection = layer.projection
    paths = {}
    for name, general, walk in (("walk", False, True), ("per neuron", False, False), ("general", True, False)):
        out = np.empty((x.shape[0], projection.n_post))
        _layer.forward_layer(np.ascontiguousarray(x, dtype=float), projection.weights, projection.delay_matrix(),
                             np.zeros((1, 1, 1)), False, True, *layer.neuron_arrays(), out, 1, general, walk)
        paths[name] = out
    return paths


@pytest.mark.parametrize("ratio, weight, crossing", [(2.0, 3.85319930274279, 0.332692291131119),
                                                     (1.0, 3.7716263469980795, 0.3926372959902723),
                                                     (1.0, 3.7790910270892084, 0.39136251725412063)])
def test_an_input_within_ulps_of_a_crossing_leaves_the_spike(ratio, weight, crossing):
    """(the closed forms took a crossing that rounding put a few ulps before the interval's start,
    or a start that rounding put at threshold, for none: the neuron was reported silent although
    its membrane goes on to about twice threshold, even when the input was of weight 0)"""
    near = [crossing]
    for _ in range(4):
        near = [np.nextafter(near[0], -np.inf), *near, np.nextafter(near[-1], np.inf)]
    for second_weight in (0.0, 1.0):
        network = dg.Network(dg.Population("input", 2), [dg.Layer(
            dg.Population("output", 1, dg.NeuronParameters(1.0, ratio, 1.0)),
            dg.Projection(np.array([[weight], [second_weight]]), name="output.projection"))])
        x = np.column_stack([np.zeros(len(near)), near])
        for name, times in _every_path(network, x).items():
            # the spike of the first input alone (the second arrives within ulps of it), to the general
            # solver's stopping tolerance of 1e-15 (tau_s + s)
            np.testing.assert_allclose(times[:, 0], crossing, rtol=1e-14, atol=0,
                                       err_msg=f"{name}, second weight {second_weight}")
        synaptic = dg.Network(network.input, [dg.Layer(network.layers[0].population, dg.Projection(
            network.layers[0].projection.weights, "synaptic", np.zeros((2, 1)), name="output.projection"))])
        np.testing.assert_allclose(dg.forward(synaptic, x)[0][:, 0], crossing, rtol=4e-15, atol=0)


@pytest.mark.parametrize("ratio, kind", [(1.0, "none"), (2.0, "none"), (1.0, "dendritic"), (2.0, "dendritic")])
def test_the_crossing_of_a_huge_weight_is_the_next_double_after_its_arrival_on_every_path(ratio, kind):
    """(docs/model.md §4; the layer walk rebuilt the membrane from its sums, which a huge weight
    rounded up to threshold at the arrival: the spike was put on the arrival, and the backward
    took the input that caused it as acausal: no gradient, or the others' inflated by 1e19)"""
    weights = np.array([[0.5, 0.5], [5e17, 5e17]])
    delays = np.array([0.25, 8.866253978746696e-05]) if kind == "dendritic" else None
    network = dg.Network(dg.Population("input", 2), [dg.Layer(
        dg.Population("output", 2, dg.NeuronParameters(1.0, ratio, 1.0)),
        dg.Projection(weights, kind, delays, name="output.projection"))])
    x = np.array([[0.0, 1.2816587011418694], [1.1228102156579072, 2.2938824647891973]])
    arrivals = x[:, 1:2] + (np.zeros(2) if delays is None else delays)
    for name, times in _every_path(network, x).items():
        np.testing.assert_array_equal(times, np.nextafter(arrivals, np.inf), err_msg=name)
    times = dg.forward(network, x)
    gradients = dg.backward(network, x, times, np.ones((2, 2)))
    assert gradients.layers[0].no_crossing == 0
    np.testing.assert_allclose(gradients.input_spike_times[:, 1], 2.0, rtol=1e-12)  # (each neuron's dt/da = 1)


def test_the_per_neuron_search_keeps_its_precision_over_many_strong_inputs():
    """(for tau_m = 2 tau_s its step from one arrival to the next took K (x - x^2), which cancels
    over a short interval: with 80 inputs of weights 1 +- 10 the spike times were off by 1e-14)"""
    rng = np.random.default_rng(0)
    weights = rng.normal(1.0, 10.0, (80, 17))
    x = rng.uniform(0.0, 15.0, (8, 80))
    x[rng.random(x.shape) < 0.3] = np.inf
    network = dg.Network(dg.Population("input", 80), [dg.Layer(
        dg.Population("output", 17, dg.NeuronParameters(1.0, 10.0, 5.0)),
        dg.Projection(weights, "synaptic", np.zeros_like(weights), name="output.projection"))])
    times = dg.forward(network, x)[0]
    reference = network_spike_times(network, x)[0]
    assert np.isfinite(reference).sum() > 50
    assert_close_times(times, reference, rtol=4e-15)


def test_a_root_rounded_before_the_start_of_a_rising_interval_stays_after_the_arrival():
    """(b = u0 + I K rounded up by an ulp for weights about 4e15 put the larger root x just above
    1 with u0 = 0.68 theta: the crossing was taken as s = 0, the spike put on the arrival, and the
    input that caused it looked acausal to the backward: dt/dx = [1, 0] instead of [0, 1])"""
    assert 0.0 < _layer.first_crossing_time(0.6775922607902871, 3871698785140152.5, 10.0, 1.0, 2.0, 1.0) < 1e-16
    network = dg.Network(dg.Population("input", 2), [dg.Layer(
        dg.Population("output", 1, dg.NeuronParameters(1.0, 2.0, 1.0)),
        dg.Projection(np.array([[1.8], [3871698785140151.5]]), name="output.projection"))])
    x = np.array([[0.0, 0.8170000000000001]])
    for name, times in _every_path(network, x).items():
        assert times[0, 0] == np.nextafter(x[0, 1], np.inf), name
    times = dg.forward(network, x)
    gradients = dg.backward(network, x, times, np.ones((1, 1)))
    assert gradients.layers[0].no_crossing == 0
    np.testing.assert_allclose(gradients.input_spike_times, [[0.0, 1.0]], atol=1e-12)


@pytest.mark.parametrize("case", ["early spikes: a heap per neuron", "scattered late arrivals: sorted afresh"])
def test_per_synapse_arrivals_are_walked_in_time_order_however_they_are_ordered(case):
    """With synaptic delays every neuron has its own arrival order.  A sample whose first neuron
    spikes within the first quarter of its arrivals takes them from a heap, only as far as each
    spike; one whose orders differ much from neuron to neuron sorts each neuron's arrivals afresh
    (re-sorting the previous neuron's order cost n^2 steps for n inputs).  Either way the walk is
    the one of sorted arrivals."""
    rng = np.random.default_rng(7)
    n_pre, n_post = 120, 6
    early = case.startswith("early")
    mean, std = (0.5, 0.5) if early else (10.0 / n_pre, 4.0 / n_pre)
    network = dg.Network.feedforward([n_pre, n_post], delay_kind="synaptic", seed=7, weight_mean=mean, weight_std=std,
                                     neuron=dg.NeuronParameters(1.0, 2.0, 1.0))
    network.layers[0].projection.delays = rng.uniform(0.0, 0.5 if early else 6.0, (n_pre, n_post))
    x = rng.uniform(0.15, 2.0, (3, n_pre))
    x[rng.random(x.shape) < 0.2] = np.inf
    times = dg.forward(network, x)[0]
    reference = network_spike_times(network, x)[0]
    assert np.isfinite(reference).sum() >= 15
    assert_close_times(times, reference, rtol=1e-13)
