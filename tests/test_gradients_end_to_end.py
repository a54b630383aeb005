"""The parameter gradients a training step computes, end to end (encoder, network, loss, backward, guard, delay
parametrisation, tied input delays), against central differences of the batch's loss on the reference backend."""

import warnings

import numpy as np
import pytest

import delgrad_core as dg
from delgrad_core.training import Trainer, TrainingConfig

# (hidden, delays, tau_ratio, further settings): every delay kind, mixed lists, several ratios and both losses
CONFIGS = {
    "synaptic-ratio2-sigmoid": (5, "synaptic", 2.0, {}),
    "axonal-ratio1-clip-crossentropy": (4, "axonal", 1.0, {"delay_parametrisation": "clip", "loss": "crossentropy",
                                                           "weight_init_mean": 1.5}),
    "dendritic-ratio0.5-shifted-sigmoid": (4, "dendritic", 0.5, {"delay_shift": 2.0, "delay_scale": 1.5,
                                                                 "weight_init_mean": 2.0}),
    "none-ratio3.7": (5, "none", 3.7, {"loss": "crossentropy", "loss_alpha": 0.1, "weight_init_mean": 1.5}),
    "mixed-three-layers": ([4, 3], ["axonal", "synaptic", "dendritic"], 2.0, {"delay_init_std": 1.0,
                                                                              "weight_init_mean": 1.5}),
    "mixed-with-none": ([3, 3], ["dendritic", "none", "axonal"], 1.3, {"delay_parametrisation": "clip",
                                                                       "weight_init_mean": 2.0}),
    "shared-input-delays": (4, "axonal", 2.0, {"encoder_options": {"repeat": 3, "pairs": True},
                                               "shared_input_delays": 3, "weight_init_mean": 1.0}),
    "nominal-slope": (4, ["axonal", "synaptic"], 1.0, {"gradient_slope": "nominal", "weight_init_mean": 1.5}),
    "chip-operating-point": (5, "axonal", 1.0, {"threshold": 2.6, "loss_delta": 0.3, "delay_shift": 2.0,
                                                "delay_scale": 1.5, "encoder_options": {"repeat": 5},
                                                "shared_input_delays": 5, "weight_init_mean": 2.6}),
    "ratio50-crossentropy": (4, "synaptic", 50.0, {"loss": "crossentropy", "loss_xi": 0.5}),
}


class _Recorder:
    """Takes the optimiser's place: keeps the gradients of a step, changes no parameter."""

    grads = None

    def step(self, params, grads, lr_factor=1.0):
        self.grads = {name: np.array(grad) for name, grad in grads.items()}


def _trainer(**settings):
    """A reference-backend trainer without the heuristics that move parameters or drop gradients."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Trainer(TrainingConfig(**{"backend": "reference", "silent_bump": None, "max_weight_term": None,
                                         "epochs": 1, **settings}))


def _step_gradients(trainer, features, labels):
    """The gradients one training step hands the optimiser."""
    trainer.step.optimiser = _Recorder()
    trainer.step(features, labels, 1.0)
    return trainer.step.optimiser.grads


def _loss(trainer, features, labels):
    """The batch's mean loss at the current parameters, and which neurons spike and which inputs come before
    each spike (differences are taken only where these stay the same)."""
    trainer.model.apply()
    inputs = trainer.encoder(features)
    ran, result = trainer.step.run(inputs)
    branch, pre = [], inputs
    for layer, post in zip(ran.layers, result.layer_spike_times):
        delays = 0.0 if layer.projection.delays is None else layer.projection.delay_matrix()
        branch.append((np.isfinite(post), (pre[:, :, None] + delays) < post[:, None, :]))
        pre = post
    return trainer.loss(result.layer_spike_times[-1], labels).mean, branch


def _central_difference(trainer, features, labels, param, index, h):
    """Richardson-extrapolated central difference of the loss in param[index], None where the branch changes."""
    old = param[index]
    _, branch = _loss(trainer, features, labels)
    values = {}
    for step in (h, -h, h / 2, -h / 2):
        param[index] = old + step
        values[step], moved = _loss(trainer, features, labels)
        if any(not (np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])) for a, b in zip(moved, branch)):
            param[index] = old
            return None
    param[index] = old
    trainer.model.apply()
    wide, narrow = (values[h] - values[-h]) / (2 * h), (values[h / 2] - values[-h / 2]) / h
    return (4 * narrow - wide) / 3


@pytest.mark.parametrize("name", CONFIGS)
def test_step_gradients_match_central_differences_of_the_loss(name):
    """Every trainable array, 8 entries each, to 1e-6 relative (1e-9 of the largest gradient for tiny entries)."""
    hidden, delays, ratio, settings = CONFIGS[name]
    trainer = _trainer(hidden=hidden, delays=delays, tau_ratio=ratio, seed=7, **settings)
    data = trainer.train_set
    features, labels = data.features[:8], data.labels[:8]
    output_spikes = _loss(trainer, features, labels)[1][-1][0]
    assert output_spikes[np.arange(len(labels)), labels].mean() >= 0.5  # (a label neuron that spikes has a gradient)
    grads = _step_gradients(trainer, features, labels)
    scale = max(np.abs(grad).max() for grad in grads.values())
    assert scale > 0
    rng = np.random.default_rng(0)
    checked = skipped = 0
    for param_name, param in trainer.model.params.items():
        assert np.isfinite(grads[param_name]).all(), param_name
        for flat in rng.choice(param.size, min(param.size, 8), replace=False):
            index = np.unravel_index(flat, param.shape)
            expected = _central_difference(trainer, features, labels, param, index, 1e-4)
            if expected is None:
                skipped += 1
                continue
            checked += 1
            assert abs(grads[param_name][index] - expected) <= 1e-6 * abs(expected) + 1e-9 * scale, \
                (param_name, index, grads[param_name][index], expected)
    assert skipped <= checked / 10


def test_a_tied_input_delay_gets_exactly_the_sum_of_its_lines_gradients():
    settings = dict(hidden=4, delays=["axonal", "synaptic"], encoder_options={"repeat": 4}, weight_init_mean=0.8,
                    delay_init_std=1.0, seed=3)
    tied, free = _trainer(shared_input_delays=2, **settings), _trainer(**settings)
    for name, value in tied.model.params.items():
        free.model.params[name][...] = np.repeat(value, 2) if name == "layers.0.delays" else value
    free.model.apply()
    features, labels = tied.train_set.features[:20], tied.train_set.labels[:20]
    summed = _step_gradients(free, features, labels)["layers.0.delays"].reshape(-1, 2).sum(axis=1)
    assert np.all(summed != 0)
    np.testing.assert_allclose(_step_gradients(tied, features, labels)["layers.0.delays"], summed, rtol=1e-14,
                               atol=1e-16 * np.abs(summed).max())


@pytest.mark.parametrize("delays", ["axonal", "dendritic", "synaptic", "none"])
def test_the_nominal_slope_is_the_exact_one_on_an_exact_backend(delays):
    """(at a spike of the model itself, u(t) = theta, and W0 of the nominal crossing is the observed W)"""
    settings = dict(hidden=6, delays=delays, tau_ratio=1.0, threshold=2.6, weight_init_mean=3.0, seed=1)
    observed, nominal = _trainer(**settings), _trainer(gradient_slope="nominal", **settings)
    features, labels = observed.train_set.features[:20], observed.train_set.labels[:20]
    exact, reference = _step_gradients(observed, features, labels), _step_gradients(nominal, features, labels)
    scale = max(np.abs(grad).max() for grad in exact.values())
    assert scale > 0
    for name, grad in exact.items():
        np.testing.assert_allclose(reference[name], grad, rtol=1e-11, atol=1e-13 * scale, err_msg=name)


@pytest.mark.parametrize("raw", [-800.0, -40.0, -30.0, -20.0, 0.0, 3.0, 25.0, 40.0])
def test_the_sigmoid_delay_gradient_keeps_its_precision_at_the_bounds(raw):
    """(sigmoid (1 - sigmoid) was off by 2e-4 at |raw| = 30 and exactly 0 beyond 37)"""
    trainer = _trainer(hidden=3, delays="dendritic", delay_shift=0.5, delay_scale=1.5)
    trainer.model.params["layers.0.delays"][...] = raw
    layers = [dg.LayerGradients(np.zeros(layer.projection.weights.shape), np.ones(layer.projection.delays.shape),
                                np.zeros(layer.population.size), 0, 0) for layer in trainer.network.layers]
    grads = trainer.model.parameter_gradients(dg.NetworkGradients(layers, None))
    decay = np.exp(-abs(raw))
    np.testing.assert_allclose(grads["layers.0.delays"], 1.5 * decay / (1 + decay) ** 2, rtol=1e-14)


def test_the_grazing_guard_drops_what_each_samples_largest_weight_term_says():
    """The guarded step gradient equals the sum over samples of layer-by-layer gradients in which every
    (sample, neuron) whose largest |dL/dt_j dt_j/dw_ij| exceeds the bound passes nothing."""
    bound = 0.01
    trainer = _trainer(hidden=5, delays=["synaptic", "axonal"], max_weight_term=bound, seed=2)
    features, labels = trainer.train_set.features[:6], trainer.train_set.labels[:6]
    grads = _step_gradients(trainer, features, labels)
    inputs = trainer.encoder(features)
    ran, result = trainer.step.run(inputs)
    times = [inputs, *result.layer_spike_times]
    layers = ran.layers
    weights = [np.zeros(layer.projection.weights.shape) for layer in layers]
    delays = [np.zeros(layer.projection.delays.shape) for layer in layers]
    guarded = 0
    for sample in range(len(labels)):
        delta = trainer.loss(times[-1], labels).gradient[sample:sample + 1]
        for k in range(len(layers) - 1, -1, -1):
            pre, post = times[k][sample:sample + 1], times[k + 1][sample:sample + 1]
            part = dg.layer_backward(layers[k], pre, post, delta)
            dropped = (np.abs(part.weights).max(axis=0) > bound) & (delta[0] != 0)
            if dropped.any():
                guarded += int(dropped.sum())
                delta = np.where(dropped, 0.0, delta)
                part = dg.layer_backward(layers[k], pre, post, delta)
            weights[k] += part.weights
            delays[k] += part.delays
            delta = part.pre_gradient
    assert guarded > 0
    expected = trainer.model.parameter_gradients(dg.NetworkGradients(
        [dg.LayerGradients(w, d, np.zeros(1), 0, 0) for w, d in zip(weights, delays)], None))
    for name, grad in expected.items():
        np.testing.assert_allclose(grads[name], grad, rtol=1e-12, atol=1e-15 * np.abs(grad).max(), err_msg=name)


def test_loss_gradients_with_ties_and_silent_outputs_match_central_differences():
    times = np.array([[1.0, 1.0, 1.5], [0.7, np.inf, 0.7], [np.inf, 1.2, 0.9], [2.0, 2.0, 2.0]])
    labels = np.array([0, 2, 0, 1])
    for loss in (dg.make_loss("squared", delta=0.3), dg.make_loss("crossentropy", xi=0.3, alpha=0.1, beta=2.0)):
        gradient = loss(times, labels).gradient
        assert not gradient[2].any() and gradient[1, 1] == 0  # (a silent label: a constant; a silent neuron: no time)
        for index in zip(*np.nonzero(np.isfinite(times) & (np.arange(4) != 2)[:, None])):
            up, down = times.copy(), times.copy()
            up[index] += 1e-6
            down[index] -= 1e-6
            expected = (loss(up, labels).mean - loss(down, labels).mean) / 2e-6
            assert gradient[index] == pytest.approx(expected, rel=1e-7, abs=1e-9), (loss, index)


def test_parameter_averaging_and_model_selection_leave_every_steps_gradient_that_of_the_parameters(monkeypatch):
    """Each step's gradient equals forward and backward computed afresh on a copy of the (unaveraged) parameters,
    bit for bit, while the average is validated and the best epoch kept between epochs."""
    trainer = _trainer(hidden=4, delays="axonal", epochs=2, batch_size=2500, parameter_average=0.9, seed=3)
    compared = []
    batches = []
    step_call, optimiser_step = trainer.step.__call__, trainer.step.optimiser.step

    def checked_step(params, grads, lr_factor=1.0):
        features, labels = batches[-1]
        fresh = _trainer(hidden=4, delays="axonal", seed=3)
        for name, value in params.items():
            fresh.model.params[name][...] = value
        fresh.model.apply()
        inputs = fresh.encoder(features)
        times = dg.forward(fresh.network, inputs)
        expected = fresh.model.parameter_gradients(dg.backward(fresh.network, inputs, times,
                                                               fresh.loss(times[-1], labels).gradient))
        compared.append(all(np.array_equal(grads[name], expected[name]) for name in expected))
        optimiser_step(params, grads, lr_factor)

    def recording_step(features, labels, lr_factor):
        batches.append((features, labels))
        return step_call(features, labels, lr_factor)

    monkeypatch.setattr(trainer.step.optimiser, "step", checked_step)
    monkeypatch.setattr(trainer, "step", recording_step)
    trainer.fit(progress=False)
    assert len(compared) == 4 and all(compared)
