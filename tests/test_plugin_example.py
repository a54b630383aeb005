"""The example time-stepped backend converges to the exact model at second order in dt."""

import numpy as np
import pytest

from delgrad_core import forward, get_backend
from delgrad_core.testing import compare_spike_times, make_network


@pytest.mark.parametrize("ratio", [2.0, 1.0, 1.5])
def test_example_backend_converges_to_the_exact_spike_times(ratio):
    network = make_network((4, 10, 3), "synaptic", ratio, seed=3)
    inputs = np.random.default_rng(1).uniform(0.15, 2.0, (64, 4))
    expected = forward(network, inputs)
    medians = []
    for dt in (0.02, 0.01):
        agreement = compare_spike_times(expected, get_backend("example", dt=dt).execute(network, inputs).layer_spike_times)
        assert agreement.silence_agreement == 1.0
        medians.append(agreement.median_abs_error)
    # Exact propagation + linear interpolation of the crossing: typical error O(dt^2).
    assert 3.0 < medians[0] / medians[1] < 5.0
    assert medians[1] < 1e-4


def test_example_backend_rejects_a_bad_time_step():
    network = make_network((2, 2), "none")
    with pytest.raises(ValueError, match="dt: expected a positive number"):
        get_backend("example", dt=-0.1).execute(network, np.zeros((1, 2)))
