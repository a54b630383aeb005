"""The example time-stepped backend converges to the exact model at second order in dt."""

import re

import numpy as np
import pytest
from delgrad_example_backend._backend import MAX_DT, MIN_DT

from delgrad_core import InvalidValueError, forward, get_backend
from delgrad_core.testing import compare_spike_times, make_network
from delgrad_core.training import Trainer, TrainingConfig
from delgrad_core.training._trainer import BackendOptionsError


@pytest.mark.parametrize("ratio", [2.0, 1.0, 1.5])
def test_example_backend_converges_to_the_exact_spike_times(ratio):
    network = make_network((4, 10, 3), "synaptic", ratio, seed=3)
    inputs = np.random.default_rng(1).uniform(0.15, 2.0, (64, 4))
    expected = forward(network, inputs)
    medians = []
    for dt in (0.02, 0.01):
        agreement = compare_spike_times(expected,
                                        get_backend("example", dt=dt).execute(network, inputs).layer_spike_times)
        assert agreement.silence_agreement == 1.0
        medians.append(agreement.median_abs_error)
    # Exact propagation + linear interpolation of the crossing: typical error O(dt^2).
    assert 3.0 < medians[0] / medians[1] < 5.0
    assert medians[1] < 1e-4


@pytest.mark.parametrize("dt", [1e-300, 9.9e-6, 0.11, 1.0, float("nan"), float("inf"), -0.1, 0, True, "0.01", None])
def test_example_backend_refuses_a_time_step_out_of_range_when_it_is_built(dt):
    """(dt = 1e-300 was checked only when running, and ran without end)"""
    with pytest.raises(InvalidValueError, match=rf"^dt: expected a number of tau_s from 1e-05 to 0.1, "
                                                rf"got {re.escape(repr(dt))}$"):
        get_backend("example", dt=dt)


def test_example_backend_runs_at_its_bounds_and_the_trainer_refuses_others_as_options():
    network = make_network((2, 2), "none")
    for dt in (MIN_DT, MAX_DT, np.float32(0.01)):
        backend = get_backend("example", dt=dt)
        assert (type(backend.dt) is float
                and backend.execute(network, np.zeros((1, 2))).layer_spike_times[0].shape == (1, 2))
    with pytest.raises(BackendOptionsError, match=r"^backend_options: backend 'example': dt: expected a number of "
                                                  r"tau_s from 1e-05 to 0.1, got 1e-300$"):
        Trainer(TrainingConfig(backend="example", backend_options={"dt": 1e-300}))


def test_example_backend_refuses_a_job_whose_arrivals_span_more_steps_than_it_takes():
    """(its one time grid per job made a span of 3,000 tau_s take a minute, 1e5 tau_s about forty)"""
    from delgrad_example_backend._backend import MAX_STEPS

    from delgrad_core import Network, UnsupportedNetworkError

    network, backend = Network.feedforward([2, 3, 2], seed=1), get_backend("example", dt=0.1)
    widest = MAX_STEPS * 0.1
    assert np.isfinite(backend.execute(network, np.array([[0.0, 1.0]])).output_spike_times).any()
    with pytest.raises(UnsupportedNetworkError, match=r"^backend 'example' cannot run the job: its arrivals "
                                                      r"\(inputs after their delays, or a layer's spikes\) span "
                                                      r"1,000,001.0 tau_s, 10,000,010 steps of dt = 0.1; at most "
                                                      r"10,000,000 per job") as info:
        backend.execute(network, np.array([[0.0, widest + 1.0]]))
    assert info.value.capability == "resources"
    with pytest.raises(UnsupportedNetworkError,
                       match=r"span 1e\+300 tau_s, 1e\+301 steps of dt = 0.1; at most") as info:
        backend.execute(network, np.array([[0.0, 1e300]]))  # (not 300 digits of each)
    assert len(str(info.value)) < 300


@pytest.mark.filterwarnings("ignore:epoch [0-9]+")  # (one step an epoch, skipped for silent neurons: fast)
def test_a_run_resumes_only_on_an_example_backend_of_its_own_time_step(tmp_path):
    """(a backend object of another dt, given from Python, resumed the run without a word: the
    device identity named no option)"""
    config = TrainingConfig(hidden=3, epochs=1, batch_size=1000, delays="none")
    with get_backend("example", dt=0.01) as backend, Trainer(config, backend=backend, out_dir=tmp_path) as trainer:
        trainer.fit(progress=False)
        assert trainer.device_identity["options"] == {"dt": 0.01}
    longer = TrainingConfig(hidden=3, epochs=2, batch_size=1000, delays="none")
    with get_backend("example", dt=0.02) as backend:
        with pytest.raises(InvalidValueError, match=r"^resume: device 'example' is not the one the run was trained "
                                                    r"on: device options dt 0.01 \(now 0.02\)"):
            Trainer(longer, backend=backend, out_dir=tmp_path, resume=True)
    with get_backend("example", dt=0.01) as backend, Trainer(longer, backend=backend, out_dir=tmp_path,
                                                             resume=True) as trainer:
        assert trainer.epoch == 1
