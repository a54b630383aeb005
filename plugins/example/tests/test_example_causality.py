"""The example backend never spikes before a neuron's first input, however large the weight."""

import numpy as np
import pytest

from delgrad_core import forward, get_backend
from delgrad_core.testing import make_network


@pytest.mark.parametrize("dt", [1e-5, 1e-3, 0.1])
def test_no_spike_before_the_first_arrival_of_a_huge_weight(dt):
    """(a crossing was interpolated from the start of the step, which came before an input that
    arrived inside it: up to almost a whole dt early)"""
    network = make_network((2, 2), "synaptic")
    projection = network.layers[0].projection
    projection.weights = np.array([[1e6, 0.0], [0.0, 1e6]])  # each neuron: one input, a huge weight
    projection.delays = np.array([[0.0, 0.0], [0.0, 0.37 * dt]])
    # The steps start at the first arrival of the batch (0); the others fall inside steps.
    inputs = np.array([[0.0, 0.0]] + [[f * dt, f * dt] for f in (0.3, 0.5, 0.9, 1.7, 2.99)])
    arrivals = inputs + projection.delays.diagonal()
    expected = forward(network, inputs)[0]  # 1e-6 tau_s after the arrival
    spikes = get_backend("example", dt=dt).execute(network, inputs).layer_spike_times[0]
    assert np.all(spikes >= arrivals), spikes - arrivals
    assert np.all(spikes < arrivals + dt)  # inside the step of the crossing, after the arrival
    assert np.max(np.abs(spikes - expected)) < 1e-3 * dt
