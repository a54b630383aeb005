"""Observed arrival times in the compact (batch, n_pre) form: the same arrival of input i at
every neuron, as a delay element per input line measures it (ExecutionResult.arrival_times)."""

import numpy as np
import pytest

import delgrad_core as dg
from delgrad_core.testing import MockBackend


def _layer_and_inputs(seed=0):
    network = dg.Network.feedforward([6, 5], delay_kind="axonal",
                                     neuron=dg.NeuronParameters(threshold=1.0, tau_m=1.3, tau_s=1.0),
                                     weight_mean=1.0, weight_std=0.5, seed=seed)
    rng = np.random.default_rng(seed)
    network.layers[0].projection.delays[...] = rng.uniform(0.0, 1.0, 6)
    inputs = rng.uniform(0.1, 2.0, (40, 6))
    inputs[:5, 2] = np.inf
    jitter = rng.normal(0.0, 0.05, (40, 6))
    compact = inputs + network.layers[0].projection.delays[None, :] + jitter
    return network.layers[0], inputs, compact


def _per_neuron_layer_and_inputs(helpers):
    """tau_m = tau_s and per-neuron parameters: the other solver path."""
    network = helpers.build_network([5, 6, 2], "axonal", 1.0, seed=4)
    inputs = np.random.default_rng(2).uniform(0.15, 2.0, (8, 5))
    layer = network.layers[0]
    per_line = inputs + layer.projection.delays[None, :] + np.random.default_rng(3).normal(0, 0.01, inputs.shape)
    return layer, inputs, per_line


@pytest.mark.parametrize("setup", ["scalar", "per-neuron"])
def test_compact_arrivals_equal_the_full_form_in_forward_and_backward(helpers, setup):
    layer, inputs, compact = _layer_and_inputs() if setup == "scalar" else _per_neuron_layer_and_inputs(helpers)
    full = np.repeat(compact[:, :, None], layer.population.size, axis=2)
    times_compact = dg.layer_forward(layer, inputs, arrival_times=compact)
    times_full = dg.layer_forward(layer, inputs, arrival_times=full)
    np.testing.assert_array_equal(times_compact, times_full)
    # the jittered arrivals change the spike times: they are really used
    assert not np.allclose(times_compact, dg.layer_forward(layer, inputs), equal_nan=True)
    gradient = np.where(np.isfinite(times_full), 1.0, 0.0)
    a = dg.layer_backward(layer, inputs, times_full, gradient, arrival_times=compact)
    b = dg.layer_backward(layer, inputs, times_full, gradient, arrival_times=full)
    np.testing.assert_array_equal(a.weights, b.weights)
    np.testing.assert_array_equal(a.delays, b.delays)
    np.testing.assert_array_equal(a.pre_gradient, b.pre_gradient)


def test_compact_arrivals_of_the_wrong_shape_are_refused():
    layer, inputs, compact = _layer_and_inputs()
    with pytest.raises(dg.InvalidValueError, match=r"arrival_times: expected shape \(40, 6, 5\) or \(40, 6\)"):
        dg.layer_forward(layer, inputs, arrival_times=compact[:, :5])


def test_trainer_takes_gradients_at_compact_observed_arrivals():
    """A backend reporting compact arrivals trains; the gradients use the arrivals it reports."""
    from delgrad_core.training import Trainer, TrainingConfig

    shift = 0.05

    def handler(request):
        network, pre = request.network, request.input_spike_times
        times, arrivals = [], []
        for layer in network.layers:
            arrival = pre + layer.projection.delays[None, :] + shift
            pre = dg.layer_forward(layer, pre, arrival_times=arrival)
            times.append(pre)
            arrivals.append(arrival)
        return dg.ExecutionResult(times, {}, arrivals)

    backend = MockBackend(handler, capabilities=dg.Capabilities(delay_kinds={"none", "axonal"}))
    config = TrainingConfig(hidden=8, delays="axonal", epochs=1, batch_size=50, seed=0, keep_best=False,
                            weight_init_mean=1.5, weight_init_std=0.5)
    with Trainer(config, backend=backend) as trainer:
        trainer.train_set = trainer.validation_set
        before = trainer.evaluate(trainer.train_set).loss
        trainer.fit(progress=False)
        after = trainer.evaluate(trainer.train_set).loss
    assert len(backend.requests) > 20 and after < before
