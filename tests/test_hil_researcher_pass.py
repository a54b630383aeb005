"""A researcher's workflow through mock-hil: runs resumed, evaluated and checked as their
options and the service they reach change."""

import numpy as np
import pytest

import delgrad_core as dg

pytest.importorskip("delgrad_hil", reason="delgrad-hil is not installed (pip install ./backends/hil)")

from delgrad_core.training import Trainer, TrainingConfig  # noqa: E402
from delgrad_hil import HilBackend  # noqa: E402
from _hil import test_devices  # noqa: E402,F401

SHORT = dict(backend="mock-hil", hidden=5, delays="none", batch_size=250)


def test_a_run_trained_with_injected_faults_resumes_without_them(tmp_path):
    """(a run trained with `faults` could be resumed only with the same faults, "written with
    different settings", although the faults never change a result: the network is the same)"""
    out = tmp_path / "run"
    faulty = {"device": "reference", "faults": {"busy_fraction": 0.2, "seed": 3}}
    with Trainer(TrainingConfig(**SHORT, epochs=1, backend_options=faulty), out_dir=out) as trainer:
        trainer.fit(progress=False)
    with Trainer(TrainingConfig(**SHORT, epochs=2, backend_options={"device": "reference"}), out_dir=out,
                 resume=True) as trainer:
        trainer.fit(progress=False)
        assert trainer.epoch == 2


def test_device_options_at_an_address_say_how_to_leave_out_a_runs_own():
    """(`delgrad evaluate RUN --backend-option address=...` of a run trained on the local service
    with device_options was refused, "set by the service at an address", with no word that
    device_options={} given over the run's own lets it be evaluated there)"""
    with pytest.raises(dg.InvalidValueError, match=r"^device_options, faults: set by the service at an address "
                       r"\(delgrad hil serve\), not by its clients; leave them out, or give device_options=\{\} "
                       r"faults=\{\} over a run's own \(to evaluate at an address a run of the local service\)$"):
        HilBackend("tcp://127.0.0.1:5555", device_options={"chip": 3}, faults={"drop_fraction": 0.1})
    HilBackend("tcp://127.0.0.1:5555", device_options={}, faults={}).close()


@pytest.mark.parametrize("command", [["hil", "health"], ["hil", "status"], ["hil", "serve", "--device", "reference"]])
def test_a_token_file_that_gives_no_token_is_a_usage_error_naming_the_option(command, tmp_path):
    """(`delgrad hil health --token-file nope` said "token_file: cannot read nope", the name of
    mock-hil's option, with status 1)"""
    from delgrad_core.cli import main
    from delgrad_core.testing import cli_runner

    short = tmp_path / "short"
    short.write_text("abc")
    for path, problem in ((tmp_path / "nope", f"cannot read {tmp_path / 'nope'} (No such file or directory)"),
                          (short, f"{short}: the token must have at least 16 characters (make one with `delgrad hil "
                                  "new-token FILE`)")):
        result = cli_runner().invoke(main, [*command, "--address", "tcp://127.0.0.1:5555", "--token-file", str(path)])
        assert result.exit_code == 2, result.output
        assert result.output.strip().splitlines()[-1] == f"Error: Invalid value for --token-file: {problem}"


@pytest.mark.parametrize("command, port_zero", [("health", ""), ("status", ""), ("serve", " (port 0: any free port)")])
def test_a_malformed_address_is_said_as_click_says_an_invalid_value(command, port_zero):
    """(said "Error: Invalid value: --address: expected ...", unlike --device and --device-option)"""
    from delgrad_core.cli import main
    from delgrad_core.testing import cli_runner

    result = cli_runner().invoke(main, ["hil", command, "--address", "tcp://127.0.0.1:5611/"])
    assert result.exit_code == 2 and result.output.strip().splitlines()[-1] == \
        f"Error: Invalid value for --address: expected tcp://HOST:PORT{port_zero} or ipc://PATH, got " \
        "'tcp://127.0.0.1:5611/'"


def test_a_job_out_of_time_names_the_option_of_its_kind():
    """(an execution out of time said "raise job_timeout_s or calibration_timeout_s", leaving the
    researcher to guess which of the two the job was under)"""
    network = dg.Network.feedforward([4, 5, 3], delay_kind="synaptic", seed=0)
    with HilBackend(device="reference", faults={"latency_s": 0.5}, job_timeout_s=0.2,
                    calibration_timeout_s=0.2) as backend:
        with pytest.raises(dg.ExecutionTimeout, match=r"; raise calibration_timeout_s for slow calibrations or a slow "
                                                      r"link$"):
            backend.calibrate(network, seed=0)
        with pytest.raises(dg.ExecutionTimeout, match=r"; raise job_timeout_s for slow jobs or a slow link$"):
            backend.execute(network, np.full((2, 4), 0.5))


@pytest.mark.usefixtures("test_devices")
def test_a_run_resumes_at_a_service_moved_to_another_address_if_it_runs_the_same_chip(start_service, monkeypatch,
                                                                                        tmp_path):
    """(a service restarted on another node or port: the resume was refused, "written with
    different settings: backend_options.address", though the chip was the same; the device's
    recorded identity tells another chip)"""
    out = tmp_path / "run"

    def config(epochs, service):
        options = {"address": service.address, "device": "hil-noisy"}
        return TrainingConfig(**SHORT, epochs=epochs, backend_options=options)

    first = start_service("hil-noisy", {"chip": 2})
    monkeypatch.setenv("DELGRAD_HIL_TOKEN", first.token)
    with Trainer(config(1, first), out_dir=out) as trainer:
        trainer.fit(progress=False)
    first.stop()
    same_chip, other_chip = start_service("hil-noisy", {"chip": 2}), start_service("hil-noisy", {"chip": 3})
    assert len({first.address, same_chip.address, other_chip.address}) == 3
    monkeypatch.setenv("DELGRAD_HIL_TOKEN", other_chip.token)
    with pytest.raises(ValueError, match=r"resume: device 'hil-noisy' is not the one the run was trained on: "
                                         r"calibrated as 'hil-noisy-\w+', now as 'hil-noisy-\w+' \(another chip"):
        with Trainer(config(2, other_chip), out_dir=out, resume=True) as trainer:
            trainer.fit(progress=False)
    monkeypatch.setenv("DELGRAD_HIL_TOKEN", same_chip.token)
    with Trainer(config(2, same_chip), out_dir=out, resume=True) as trainer:
        trainer.fit(progress=False)
        assert trainer.epoch == 2


@pytest.mark.usefixtures("test_devices")
def test_a_sweep_at_a_service_of_another_chip_leaves_out_the_trials_of_the_first(start_service, monkeypatch, tmp_path):
    """(a sweep kept the finished trials of chip 2 beside those it trained at a service of chip 3:
    the address is result-neutral, so the trials' settings were the same)"""
    from delgrad_core.training._sweep import SweepError, run_sweep

    def sweep(service, n_seeds):
        monkeypatch.setenv("DELGRAD_HIL_TOKEN", service.token)
        settings = {**SHORT, "epochs": 1, "backend_options": {"address": service.address, "device": "hil-noisy"}}
        return run_sweep(settings, [5], ["none"], n_seeds, tmp_path / "s", jobs=1, echo=lambda line: None)

    first = start_service("hil-noisy", {"chip": 2})
    sweep(first, 1)
    first.stop()
    with pytest.raises(SweepError, match=r"1 run\(s\) were trained earlier on another device than the runs trained "
                                         r"now .*\n.*none-h5-s0-\w+ \(calibrated as 'hil-noisy-\w+', now as "
                                         r"'hil-noisy-\w+' \(another chip"):
        sweep(start_service("hil-noisy", {"chip": 3}), 2)
    assert (tmp_path / "s" / "sweep.csv").read_text().count("\n") == 2  # (the header, seed 1 of chip 3)
