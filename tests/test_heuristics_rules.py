"""The training heuristics one rule at a time (delgrad_core.training._heuristics; docs/model.md §5.5,
docs/training.md): the silent-neuron bump and revival at their limits, which epoch keep_best keeps, and the
parameter average."""

import warnings

import numpy as np
import pytest

from delgrad_core import InvalidValueError, Network, NeuronParameters
from delgrad_core.training import TrainableNetwork, TrainingConfig, build_network
from delgrad_core.training._heuristics import (BestValidation, ParameterAverage, SilentNetworkError, SilentNeuronBump,
                                              SilentNeuronRevival)

S = np.inf  # (a silent neuron's spike time)


def _params():
    """Weights of a 2-2-2 network, all 0."""
    return {"layers.0.weights": np.zeros((2, 2)), "layers.1.weights": np.zeros((2, 2))}


def test_the_bump_needs_more_than_the_limit_silent_and_restarts_after_a_step_taken():
    """docs/model.md §5.5: "more than a limit" skips; the bump doubles while it repeats and starts again from
    `bump` after a step that is taken (at the limit a step was skipped; a level that never came back down raised
    the weights ever faster)."""
    rule = SilentNeuronBump([0.5, 0.0], 0.25)
    params, spiking = _params(), np.ones((2, 2))
    assert not rule.skip_step([np.array([[S, 1.0], [S, 1.0]]), spiking], params)  # (half silent: the limit)
    assert not params["layers.0.weights"].any() and rule.level == 0.25
    assert rule.skip_step([np.array([[S, 1.0], [S, S]]), spiking], params)  # (3 of 4 silent)
    np.testing.assert_array_equal(params["layers.0.weights"], 0.25)  # (both neurons were silent somewhere)
    assert not params["layers.1.weights"].any() and rule.level == 0.5
    assert not rule.skip_step([spiking, spiking], params)
    assert rule.level == 0.25
    assert rule.skip_step([spiking, np.array([[1.0, S], [1.0, 1.0]])], params)  # (any silent output: limit 0)
    np.testing.assert_array_equal(params["layers.1.weights"], [[0.0, 0.25], [0.0, 0.25]])


def test_a_doubled_bump_is_checkpointed_and_resumes_at_its_level():
    """A run stopped while steps are being skipped goes on doubling from where it was, not from `bump`."""
    rule, silent = SilentNeuronBump([0.0, 0.0], 0.25), np.full((2, 2), S)
    assert rule.skip_step([silent, silent], _params()) and rule.skip_step([silent, silent], _params())
    assert rule.state() == {"bump_level": 1.0}
    resumed = SilentNeuronBump([0.0, 0.0], 0.25)
    resumed.load(rule.state())
    params = _params()
    assert resumed.skip_step([silent, silent], params)
    np.testing.assert_array_equal(params["layers.0.weights"], 1.0)
    assert resumed.level == 2.0


def test_revival_raises_hidden_neurons_silent_in_more_than_the_limit_only():
    """A hidden neuron silent in exactly `limit` of the samples is left alone, and output neurons are never
    raised however silent (the rule is for hidden neurons: the output layer has the layer-wide bump)."""
    params = _params()
    hidden = np.array([[S, S], [S, S], [1.0, S], [1.0, 1.0]])  # (silent in 2 and 3 of 4 samples)
    SilentNeuronRevival(limit=0.5, bump=0.1).apply([hidden, np.full((4, 2), S)], params)
    np.testing.assert_array_equal(params["layers.0.weights"], [[0.0, 0.1], [0.0, 0.1]])
    assert not params["layers.1.weights"].any()


def test_keep_best_keeps_the_first_of_equal_epochs_and_an_epoch_of_accuracy_0():
    """The first epoch is kept even at accuracy 0 (nothing better was seen), a later one must beat it, not tie
    (as test_keep_best_keeps_the_best_validation_epoch reads the first maximum), and `restore` writes nothing when
    the last epoch is the one kept."""
    best = BestValidation(True)
    best.after_epoch(1, 0.0, {"p": np.array([1.0])})
    assert best.epoch == 1 and best.params["p"][0] == 1.0
    best.after_epoch(2, 0.5, {"p": np.array([2.0])})
    best.after_epoch(3, 0.5, {"p": np.array([3.0])})
    assert best.selected_epoch(3) == 2 and best.accuracy == 0.5
    current = {"p": np.array([3.0])}
    assert best.restore(3, current) and current["p"][0] == 2.0
    assert not best.restore(2, current)
    assert BestValidation(False).selected_epoch(3) == 3


def test_the_average_is_what_the_network_runs_within_the_block_and_the_own_parameters_come_back_after_an_error():
    """docs/training.md: with parameter_average, validation runs the averaged network; the block's own
    parameters come back bit for bit, also when the validation inside it fails."""
    config = TrainingConfig(hidden=2, delays="none")
    model = TrainableNetwork(build_network(config, 2, 2), config)
    model.initialise(np.random.default_rng(0))
    average = ParameterAverage(0.5)
    average.update(model.params)  # (the first step's parameters)
    averaged = model.network.layers[0].projection.weights.copy()
    model.params["layers.0.weights"] += 1.0  # (the next step's)
    average.update(model.params)
    model.apply()
    own = model.network.layers[0].projection.weights.copy()
    with pytest.raises(KeyboardInterrupt):
        with average.swapped_in(model):
            np.testing.assert_allclose(model.network.layers[0].projection.weights, averaged + 0.5, rtol=1e-15)
            raise KeyboardInterrupt
    assert model.network.layers[0].projection.weights.tobytes() == own.tobytes()
    assert model.params["layers.0.weights"].tobytes() == own.tobytes()


def test_an_average_that_is_off_is_never_used_even_if_a_checkpoint_holds_one():
    """decay None: `current` is the parameters themselves (docs: off)."""
    params = _params()
    average = ParameterAverage(None)
    average.load({f"average.{name}": value + 1.0 for name, value in params.items()})
    assert average.current(params) is params


def test_a_bump_that_would_overflow_a_later_layer_changes_no_layer():
    """Every layer's raised weights are checked before any is written (inf weights failed the checkpoint); the
    refusal is all that is said (no numpy overflow warning before it)."""
    rule, silent = SilentNeuronBump([0.0, 0.0], 1e307), np.full((2, 2), S)
    params = _params()
    params["layers.1.weights"][...] = 1.7e308
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(SilentNetworkError, match="overflows their input weights: the silent neurons of neuron "
                                                     "layer 1"):
            rule.skip_step([silent, silent], params)
    assert not params["layers.0.weights"].any() and (params["layers.1.weights"] == 1.7e308).all()


def test_the_bump_raises_no_weight_beyond_the_weight_limit_and_leaves_one_above_it():
    """The network's weights are clipped at the weight limit (the config's or the backend's): a
    bumped shadow weight beyond it ran the same and took the optimiser ever longer to bring back
    (a chip's silent neurons drove them to 1e11)."""
    rule, silent = SilentNeuronBump([0.0, 0.0], 0.5, weight_limit=2.1), np.full((2, 2), S)
    params = {"layers.0.weights": np.array([[1.9, 2.5], [-3.0, 2.1]]), "layers.1.weights": np.zeros((2, 2))}
    assert rule.skip_step([silent, silent], params)
    np.testing.assert_array_equal(params["layers.0.weights"], [[2.1, 2.5], [-2.5, 2.1]])
    revival = SilentNeuronRevival(0.5, 0.5, weight_limit=2.1)
    revival.apply([silent, silent], params)
    np.testing.assert_array_equal(params["layers.0.weights"], [[2.1, 2.5], [-2.0, 2.1]])


def test_a_weight_limit_that_holds_silent_neurons_down_ends_the_bump_naming_it():
    rule, silent = SilentNeuronBump([0.0, 0.0], 0.5, level=2.0 ** 1023, weight_limit=2.1), np.full((2, 2), S)
    params = _params()
    with pytest.raises(SilentNetworkError, match=r"^silent_bump: 1024 steps in a row were skipped for silent neurons, "
                                                 r"the bump doubling each time to 8.99e\+307, and the next one "
                                                 r"overflows it: .* their input weights \(up to the weight limit 2.1, "
                                                 r"where the network's weights are clipped\), held down"):
        rule.skip_step([silent, silent], params)
    assert not params["layers.0.weights"].any()


def test_a_bump_beyond_the_summed_weights_the_network_takes_is_refused_as_an_overflow():
    """(finite bumped weights whose sum the spike-time solver cannot take failed the next step with
    the network's own error, "the summed |weights| onto neuron 0 ... above 1e+200", as if the
    weights had been set so)"""
    network = build_network(TrainingConfig(hidden=[2]), 2, 2)
    sums = [layer.max_input_weight_sums() for layer in network.layers]
    rule = SilentNeuronBump([0.0, 0.0], 1.0, level=1e200, max_input_sums=sums)
    params = _params()
    with pytest.raises(SilentNetworkError, match="the next one overflows their input weights: the silent neurons of "
                                                 "neuron layer 0 stay silent"):
        rule.skip_step([np.full((2, 2), S), np.ones((2, 2))], params)
    assert not params["layers.0.weights"].any()
    network.layers[0].projection.weights[:, 0] = sums[0][0] / 2  # (the largest sum the network takes)
    network.validate()


def test_the_bump_is_allowed_up_to_each_neurons_summed_weights_of_its_own_layer():
    """`max_input_sums` holds per layer and neuron the largest summed |input weights|: a bump reaching it exactly
    is taken, one whose |weights| (not their signed sum, nor the largest) pass it on one neuron is refused."""
    sums = [np.array([2.0, 3.0]), np.array([0.5, 0.5])]
    rule, silent = SilentNeuronBump([0.0, 0.0], 1.0, max_input_sums=sums), np.full((2, 2), S)
    params = {"layers.0.weights": np.array([[0.0, 0.5], [0.0, 0.5]]), "layers.1.weights": np.zeros((2, 2))}
    assert rule.skip_step([silent, np.ones((2, 2))], params)
    np.testing.assert_array_equal(params["layers.0.weights"], [[1.0, 1.5], [1.0, 1.5]])
    rule = SilentNeuronBump([0.0, 0.0], 1.0, max_input_sums=sums)
    params["layers.0.weights"][...] = [[-3.0, 0.0], [0.0, 0.0]]  # (raised: |-2| + |1| = 3 onto neuron 0)
    with pytest.raises(SilentNetworkError, match="overflows their input weights: the silent neurons of neuron layer 0"):
        rule.skip_step([silent, np.ones((2, 2))], params)
    np.testing.assert_array_equal(params["layers.0.weights"], [[-3.0, 0.0], [0.0, 0.0]])


def test_the_refused_bump_counts_the_steps_skipped_before_it():
    """Three steps skipped (the bump 0.01 doubling to 0.08), the fourth bump would pass the summed weights the
    network takes: the refusal says 3 steps (a level of 0.01 * 2 ** 3 is just below 3 doublings in log2)."""
    rule, silent = SilentNeuronBump([0.0, 0.0], 0.01, max_input_sums=[np.full(2, 0.2)] * 2), np.full((2, 2), S)
    params = _params()
    for _ in range(3):
        assert rule.skip_step([silent, np.ones((2, 2))], params)
    with pytest.raises(SilentNetworkError, match=r"^silent_bump: 3 steps in a row were skipped for silent neurons, the "
                                                 r"bump doubling each time to 0.08, and the next one overflows"):
        rule.skip_step([silent, np.ones((2, 2))], params)
    np.testing.assert_allclose(params["layers.0.weights"], 0.07, rtol=1e-12)


def test_revival_raises_every_hidden_layer_and_is_off_without_a_limit_or_a_bump():
    """Each hidden layer's silent neurons are raised, not the first one's only; `limit` or `bump` None turns the
    rule off (as silent_bump = None turns every silent-neuron rule off)."""
    silent = np.full((2, 2), S)
    params = {f"layers.{k}.weights": np.zeros((2, 2)) for k in range(3)}
    for off in (SilentNeuronRevival(limit=None, bump=0.1), SilentNeuronRevival(limit=0.5, bump=None)):
        off.apply([silent, silent, silent], params)
        assert not any(weights.any() for weights in params.values())
    SilentNeuronRevival(limit=0.5, bump=0.1).apply([silent, silent, silent], params)
    assert (params["layers.0.weights"] == 0.1).all() and (params["layers.1.weights"] == 0.1).all()
    assert not params["layers.2.weights"].any()


def test_the_largest_summed_input_weights_are_those_the_network_still_takes():
    """`Layer.max_input_weight_sums`, per neuron: the summed |input weights| whose product with the larger time
    constant (where that is above 1) the network takes; slightly more is refused naming that neuron."""
    network = Network.feedforward([2, 3], delay_kind="none", seed=0)
    layer = network.layers[0]
    layer.population.neuron = NeuronParameters(1.0, np.array([2.19, 0.5, 3.0]), np.array([1.0, 0.25, 4.0]))
    sums = layer.max_input_weight_sums()
    np.testing.assert_allclose(sums, [1e200 / 2.19, 1e200, 1e200 / 4.0], rtol=1e-9)
    layer.projection.weights[...] = [-sums / 2, sums / 2]
    network.validate()
    for neuron in range(3):
        layer.projection.weights[1, neuron] *= 1 + 1e-9
        with pytest.raises(InvalidValueError, match=f"the summed \\|weights\\| onto neuron {neuron} of 'output'"):
            network.validate()
        layer.projection.weights[1, neuron] = sums[neuron] / 2
