"""Shared helpers for the core tests: random networks, central differences, conditioning checks."""

import signal
import types

import numpy as np
import pytest
from _ode_reference import delay_matrix
from _run_folders import TRAIN

import delgrad_core as dg
from delgrad_core.cli import main
from delgrad_core.testing import cli_runner

_STOP_SIGNAL_DEFAULTS = {"SIGINT": signal.default_int_handler, "SIGTERM": signal.SIG_DFL, "SIGHUP": signal.SIG_DFL}


def pytest_configure(config):
    """Tests stop commands with signals, as a terminal does: stop signals that the launcher left
    ignored (nohup, a background job of a script), which the commands rightly keep ignoring, are
    given their defaults for this session and its subprocesses."""
    for name, default in _STOP_SIGNAL_DEFAULTS.items():
        number = getattr(signal, name, None)
        if number is not None and signal.getsignal(number) is signal.SIG_IGN:
            signal.signal(number, default)


@pytest.fixture(scope="session", autouse=True)
def calibration_cache(tmp_path_factory):
    """Calibrations of this session go to a fresh directory (never the user's cache), also
    in a worker of `pytest -n` that runs no bss2-emulator test of its own."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DELGRAD_BSS2_CACHE", str(tmp_path_factory.mktemp("bss2-cache")))
        yield


def build_network(sizes, kind, ratio, seed, *, per_neuron=True, weight_mean=1.5, weight_std=1.0):
    """Feed-forward network with random delays in [0, 0.6] and, if `per_neuron`, one threshold and
    tau_s per neuron (tau_m = ratio * tau_s, so the ratio stays exact). `ratio` may be an array."""
    rng = np.random.default_rng(seed)
    network = dg.Network.feedforward(sizes, delay_kind=kind, weight_mean=weight_mean, weight_std=weight_std, seed=seed)
    for layer in network.layers:
        n = layer.population.size
        projection = layer.projection
        if projection.delays is not None:
            projection.delays[...] = rng.uniform(0.0, 0.6, size=projection.delays.shape)
        if per_neuron:
            tau_s = rng.uniform(0.8, 1.25, size=n)
            layer.population.neuron = dg.NeuronParameters(
                threshold=rng.uniform(0.7, 1.3, size=n), tau_m=np.resize(ratio, n) * tau_s, tau_s=tau_s
            )
        else:
            layer.population.neuron = dg.NeuronParameters(threshold=1.0, tau_m=float(ratio), tau_s=1.0)
    network.validate()
    return network


def output_loss(network, inputs, delta):
    """L = sum_bj delta_bj t_bj over the output layer (NaN if the silent pattern changed)."""
    out = dg.forward(network, inputs)[-1]
    if np.any(np.isfinite(out) != (delta != 0)):
        return np.nan
    return float(np.sum(np.where(delta != 0, delta * np.where(np.isfinite(out), out, 0.0), 0.0)))


def central_difference(loss, array, eps=1e-6):
    """d loss / d array by central differences, perturbing `array` in place (restored after).

    Non-finite entries (silent spike times) are not perturbed; their gradient is NaN."""
    grad = np.full(array.shape, np.nan)
    flat = array.reshape(-1)
    for index in np.flatnonzero(np.isfinite(flat)):
        original = flat[index]
        step = eps * max(1.0, abs(original))
        flat[index] = original + step
        plus = loss()
        flat[index] = original - step
        minus = loss()
        flat[index] = original
        grad.reshape(-1)[index] = (plus - minus) / (2.0 * step)
    return grad


def is_well_conditioned(network, inputs, times, slopes, *, margin=2e-3, min_slope=5e-2):
    """True if every spike is away from its neurons' arrival times and crosses with a clear slope
    (so finite differences stay on one smooth branch)."""
    pre = np.atleast_2d(inputs)
    for layer, post, slope in zip(network.layers, times, slopes):
        arrivals = pre[:, :, None] + delay_matrix(layer.projection)[None]
        spiking = np.isfinite(post)
        if np.any(slope[spiking] < min_slope):
            return False
        with np.errstate(invalid="ignore"):
            gap = np.abs(post[:, None, :] - arrivals)
        if np.any((gap < margin) & spiking[:, None, :] & np.isfinite(arrivals)):
            return False
        pre = post
    return True


@pytest.fixture(scope="session")
def helpers():
    """The helper functions above, for tests (a session fixture so hypothesis accepts it)."""
    return types.SimpleNamespace(
        build_network=build_network,
        output_loss=output_loss,
        central_difference=central_difference,
        is_well_conditioned=is_well_conditioned,
    )


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished 2-epoch run (trained once for the module; copied, never changed, by the tests)."""
    folder = tmp_path_factory.mktemp("finished") / "run"
    result = cli_runner().invoke(main, [*TRAIN, "--epochs", "2", "--out", str(folder)])
    assert result.exit_code == 0, result.output
    return folder


@pytest.fixture
def start_service():
    """Start local HIL device services, `start(device, device_options, faults, serve_arguments)`
    (stopped at the end of the test)."""
    from delgrad_hil import FaultPlan, LocalService  # (only the HIL tests need it installed)

    services = []

    def start(device="hil-noisy", device_options=None, faults=None, serve_arguments=()):
        service = LocalService(device, device_options, FaultPlan.from_dict(faults), serve_arguments=serve_arguments)
        services.append(service)
        service.start()
        return service

    yield start
    for service in services:
        service.stop()
