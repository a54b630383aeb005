"""Chip-in-the-loop training through the HIL service: the same network as on the device in this
process, bit for bit, also when replies are dropped and corrupted and the service restarts; the
conformance suite for mock-hil; and mock-hil with the default device (the BrainScaleS-2
emulator when it is installed, else a stand-in registered under its name)."""

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
from _hil import install_test_devices, test_devices  # noqa: F401

import delgrad_core as dg
from delgrad_core.datasets import Dataset, load_dataset
from delgrad_core.training import Trainer, TrainingConfig, config_with_defaults

from delgrad_hil import HilBackend

EMULATOR_INSTALLED = importlib.util.find_spec("delgrad_bss2") is not None
SETTINGS = dict(hidden=8, delays="axonal", tau_ratio=1.0, seed=3, keep_best=False, weight_init_mean=1.5,
                weight_init_std=0.5)


def _parameters(network):
    return [array.tobytes() for layer in network.layers for array in (layer.projection.weights,
                                                                      layer.projection.delays)]


@pytest.mark.usefixtures("test_devices")
def test_an_epoch_through_the_service_equals_the_epoch_on_the_device():
    full = load_dataset("yin_yang", "train")
    subset = Dataset("yin_yang", "train", full.features[:300], full.labels[:300], full.class_names)
    config = TrainingConfig(epochs=1, batch_size=50, **SETTINGS)
    histories, networks, identities = [], [], []
    for backend in (dg.get_backend("hil-noisy", chip=1),
                    HilBackend(device="hil-noisy", device_options={"chip": 1})):
        with backend, Trainer(config, backend=backend) as trainer:
            trainer.train_set = subset
            histories.append([(m.train_loss, m.validation_accuracy) for m in trainer.fit(progress=False)])
            networks.append(_parameters(trainer.network))
            identities.append(trainer.device_identity)  # (the device's: a run compares equal either way)
            versions = trainer.summary()["versions"]
            assert dg.backend_info("hil-noisy").distribution in versions  # (the device's distribution)
    assert histories[0] == histories[1] and networks[0] == networks[1]
    assert identities[0] == identities[1] and identities[0]["backend"] == "hil-noisy"
    assert dg.backend_info("mock-hil").distribution in versions and len(versions) == 3


def _train(tmp_path, name, *backend_args, epochs=2, extra=()):
    out = tmp_path / name
    command = [sys.executable, "-m", "delgrad_core.cli", "train", "--epochs", str(epochs), "--no-progress",
               "--out", str(out), *extra, *backend_args]
    process = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert process.returncode == 0, process.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    for epoch in metrics["epochs"]:
        del epoch["wall_seconds"]
    return (out / "network.npz").read_bytes(), metrics


@pytest.mark.slow
@pytest.mark.usefixtures("test_devices")
def test_training_survives_drops_corruption_and_a_restart_and_ends_bit_identical(tmp_path):
    """`delgrad train --backend mock-hil` as a user runs it: the network (and every metric) of
    the device run in-process, with and without faults."""
    common = ["--hidden", "8", "--delays", "axonal", "--tau-ratio", "1", "--seed", "5"]
    device = _train(tmp_path, "device", "--backend", "hil-noisy", "--backend-option", "chip=1", extra=common)
    hil = ["--backend", "mock-hil", "--backend-option", "device=hil-noisy", "--backend-option",
           'device_options={"chip": 1}', "--backend-option", "timeout_s=0.5", "--backend-option", "attempts=10"]
    clean = _train(tmp_path, "hil", *hil, extra=common)
    faults = {"drop_fraction": 0.1, "corrupt_fraction": 0.1, "busy_fraction": 0.05, "exit_after_jobs": 40,
              "seed": 7}
    faulty = _train(tmp_path, "hil-faults", *hil, "--backend-option", f"faults={json.dumps(faults)}", extra=common)
    assert device[0] == clean[0] == faulty[0], "the trained networks differ"
    for metrics in (clean[1], faulty[1]):
        assert metrics["epochs"] == device[1]["epochs"] and metrics["test_accuracy"] == device[1]["test_accuracy"]
        assert metrics["backend"] == "mock-hil"


@pytest.mark.slow
@pytest.mark.usefixtures("test_devices")
@pytest.mark.parametrize("device", ["reference", "hil-noisy"] + ["bss2-emulator"] * EMULATOR_INSTALLED)
def test_mock_hil_passes_the_conformance_suite(tmp_path, device):
    process = subprocess.run(
        [sys.executable, "-m", "pytest", "--pyargs", "delgrad_core.testing", "--delgrad-backend", "mock-hil",
         "--delgrad-backend-option", f"device={device}", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert process.returncode == 0, process.stdout[-4000:] + process.stderr[-2000:]
    assert " passed" in process.stdout.splitlines()[-1]


STAND_IN = """
    from _hil_noisy_device import CAPABILITIES, TRAINING_DEFAULTS, NoisyDevice
    from delgrad_core import hookimpl

    class StandIn(NoisyDevice):
        '''The test device under the emulator's name.'''

        name = "bss2-emulator"

    @hookimpl
    def delgrad_register_backends(register):
        register("bss2-emulator", StandIn, capabilities=CAPABILITIES, training_defaults=TRAINING_DEFAULTS)
"""


@pytest.fixture
def default_device(tmp_path, monkeypatch):
    """The BrainScaleS-2 emulator if installed, else the stand-in under its name."""
    extra = [] if EMULATOR_INSTALLED else [("delgrad-stand-in-bss2", "stand_in_bss2", STAND_IN, "bss2-emulator")]
    install_test_devices(tmp_path / "site", monkeypatch, extra)
    yield
    dg.refresh_plugins()


@pytest.mark.usefixtures("default_device")
def test_mock_hil_takes_the_capabilities_and_training_defaults_of_its_device():
    device = dg.backend_info("bss2-emulator")
    assert dg.backend_info("mock-hil").details["capabilities"] == device.details["capabilities"] is not None

    def settings(**values):
        return {**config_with_defaults(values).to_dict(), "backend": None, "backend_options": None}

    assert settings(backend="mock-hil") == settings(backend="bss2-emulator") != settings()
    assert settings(backend="mock-hil", backend_options={"device": "hil-noisy"}) == settings(backend="hil-noisy")
    assert settings(backend="mock-hil", backend_options={"device": "reference"}) == settings()
    with HilBackend() as backend:
        assert backend.capabilities == device.capabilities
        network = dg.testing.make_network((4, 6, 3), "axonal", 1.0, capabilities=backend.capabilities)
        inputs = np.full((2, 4), 0.5)
        result = backend.execute(network, inputs, calibration=backend.calibrate(network, seed=0), seed=0)
        assert backend.status()["device"] == "bss2-emulator" and result.output_spike_times.shape == (2, 3)


@pytest.mark.slow
@pytest.mark.usefixtures("default_device")
def test_delgrad_train_on_mock_hil_equals_the_default_device_with_the_same_options(tmp_path):
    on_device = _train(tmp_path, "device", "--backend", "bss2-emulator", "--delays", "axonal", epochs=1)
    on_hil = _train(tmp_path, "hil", "--backend", "mock-hil", "--delays", "axonal", epochs=1)
    assert on_device[0] == on_hil[0] and on_device[1]["epochs"] == on_hil[1]["epochs"]
    assert {**on_hil[1]["config"], "backend": None} == {**on_device[1]["config"], "backend": None}


@pytest.mark.slow
def test_evaluate_through_mock_hil_on_another_device_than_the_runs_says_so(tmp_path):
    """(a run trained on the service's device 'reference', evaluated with device=example: the
    example's accuracy, and no word that the device was another)"""
    _train(tmp_path, "run", "--backend", "mock-hil", "--backend-option", "device=reference", epochs=1,
           extra=["--hidden", "5"])

    def evaluated(*options):
        command = [sys.executable, "-m", "delgrad_core.cli", "evaluate", str(tmp_path / "run"), *options]
        process = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert process.returncode == 0, process.stderr[-3000:]
        return process.stderr

    assert "trained on device" not in evaluated()
    assert f"Warning: {tmp_path / 'run'} was trained on device 'reference', and 'mock-hil' now runs device " \
           "'example': the accuracy is that device's" in evaluated("--backend-option", "device=example")


@pytest.mark.slow
def test_evaluate_through_mock_hil_on_another_device_notes_that_devices_represent(tmp_path):
    """A run trained on the service's device 'reference', evaluated with device=bss2-emulator: not on
    its device, so the chip's represent() (clipped, quantised weights) is noted, as on any other
    backend (only a run on its own device gets no such note)."""
    _train(tmp_path, "run", "--backend", "mock-hil", "--backend-option", "device=reference", epochs=1,
           extra=["--hidden", "5", "--delays", "none", "--tau-ratio", "1"])
    command = [sys.executable, "-m", "delgrad_core.cli", "evaluate", str(tmp_path / "run"), "--backend-option",
               "device=bss2-emulator"]
    process = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    assert "note: 'mock-hil' ran the network as it represents it, not as stored (" in process.stderr, process.stderr
