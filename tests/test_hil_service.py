"""The HIL service as a real process on loopback and its mock-hil clients: authentication,
hostile messages, idempotent jobs, retries after dropped, corrupted and busy replies and after
restarts, concurrent clients, graceful shutdown, and the lifetime of the embedded service."""

import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
from delgrad_core.testing import cli_runner
from _hil import (network_and_inputs, raw_exchange, service_holding_a_reply, signed, test_devices,  # noqa: F401
                  wait_for, zmq)
from _processes import process_exists

import delgrad_core as dg
from delgrad_core.cli import main

from delgrad_hil import HilBackend, LocalService
from delgrad_hil._auth import Signer
from delgrad_hil._calibration import unwrap, wrap
from delgrad_hil._protocol import REFUSAL_CODES, decode

pytestmark = pytest.mark.usefixtures("test_devices")


def _client(service, **options):
    return HilBackend(service.address, token=service.token, **{"device": service.device, **options})


def _reply(service, frames):
    """A service's reply to raw frames, checked and decoded with the right token."""
    reply = raw_exchange(service.address, frames)
    assert reply is not None, "no reply"
    return decode(reply, Signer(service.token.encode()), replies=True).header


def _device_results(requests, chip=0):
    """What the device returns in this process for each request (its calibration unwrapped)."""
    from _hil_noisy_device import NoisyDevice

    with NoisyDevice(chip=chip) as device:
        return [device.execute(request.replace(calibration=unwrap(request.calibration))) for request in requests]


def _requests(backend, n, seed0=0, batch=16):
    network, inputs = network_and_inputs(batch=batch)
    calibration = backend.calibrate(network, seed=0)
    ran = backend.represent(network)
    return [dg.ExecutionRequest(ran, inputs, calibration, seed0 + i) for i in range(n)]


def _assert_same_results(results, expected):
    for result, reference in zip(results, expected, strict=True):
        for a, b in zip(result.layer_spike_times, reference.layer_spike_times, strict=True):
            assert a.tobytes() == b.tobytes()
        for a, b in zip(result.arrival_times, reference.arrival_times, strict=True):
            assert (a is None and b is None) or a.tobytes() == b.tobytes()


# ---------------------------------------------------------------------------- talking to a service
def test_a_client_of_a_service_at_an_address_names_a_device_other_than_the_default(start_service):
    """Without device=, a client assumes the default device (and training takes its settings)."""
    service = start_service()
    with HilBackend(service.address, token=service.token) as backend:
        with pytest.raises(dg.BackendUnavailable, match="owns device 'hil-noisy': name it with device=hil-noisy"):
            backend.capabilities
    with HilBackend(service.address, token=service.token, device="bss2-emulator") as backend:
        with pytest.raises(dg.BackendUnavailable, match="owns device 'hil-noisy', not 'bss2-emulator'"):
            backend.capabilities


def test_a_client_gets_the_devices_results_and_the_service_reports_its_state(start_service):
    service = start_service(device_options={"chip": 2})
    with _client(service, device="hil-noisy") as backend:
        assert backend.capabilities == dg.backend_info("hil-noisy").capabilities
        requests = _requests(backend, 3)
        assert requests[0].calibration.backend == "mock-hil"
        assert requests[0].calibration.values["device"]["values"] == {"chip": 2}
        results = [backend.execute(request) for request in requests]
        _assert_same_results(results, _device_results(requests, chip=2))
        assert results[0].arrival_times[0] is not None and results[0].metadata["chip"] == 2
        again = backend.execute(requests[0])
        assert again.metadata["from_cache"] and again.layer_spike_times[1].tobytes() == \
            results[0].layer_spike_times[1].tobytes()
        status = backend.status(executions=True)
    assert status["device"] == "hil-noisy" and status["device_options"] == {"chip": 2}
    assert status["executed"] == 3 and status["calibrated"] == 1 and status["cache_hits"] == 1
    assert sorted(status["executions"].values()) == [1, 1, 1, 1]  # three jobs and the calibration
    assert status["calibration_digest"] == unwrap(requests[0].calibration).digest and status["uptime_s"] > 0


def test_the_command_line_reports_health_and_status(start_service, monkeypatch):
    service = start_service()
    monkeypatch.setenv("DELGRAD_HIL_TOKEN", service.token)
    runner = cli_runner()
    health = runner.invoke(main, ["hil", "health", "--address", service.address])
    assert health.exit_code == 0 and health.stdout.startswith("ok: device 'hil-noisy'"), health.output
    status = runner.invoke(main, ["hil", "status", "--address", service.address])
    assert status.exit_code == 0 and '"executed": 0' in status.stdout, status.output
    counted = json.loads(status.stdout)  # (every documented counter, also at 0: a client read a missing key)
    assert all(counted[f"refused.{code}"] == 0 for code in REFUSAL_CODES) and "refused.internal" not in counted
    assert counted["dropped"] == counted["corrupted"] == counted["busy"] == 0
    monkeypatch.setenv("DELGRAD_HIL_TOKEN", "a-wrong-token-of-some-length")
    refused = runner.invoke(main, ["hil", "health", "--address", service.address])
    assert refused.exit_code == 1 and "refused the token" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1 and service.token not in refused.output


@pytest.mark.parametrize("address", ["127.0.0.1:5601", "garbage", "http://x", "", "tcp://127.0.0.1:99999",
                                     "tcp://127.0.0.1:0", "tcp://:5555", "inproc://x", "tcp://*:5555"])
def test_a_malformed_address_is_refused_at_once(address, monkeypatch):
    # (ZeroMQ refused several of these on connect and the client then hung in close())
    with pytest.raises(dg.InvalidValueError, match="address: (expected tcp://HOST:PORT or ipc://PATH|the port must)"):
        HilBackend(address or " ", token="a-token-of-sufficient-length")
    monkeypatch.setenv("DELGRAD_HIL_TOKEN", "a-token-of-sufficient-length")
    result = cli_runner().invoke(main, ["hil", "health", "--address", address, "--timeout-s", "1"])
    assert result.exit_code == 2 and "--address: " in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize("arguments", [["serve", "--address", "tcp://127.0.0.1:70000"], ["serve", "--cache-mb", "nan"],
                                       ["serve", "--max-message-mb", "inf"], ["serve", "--max-message-mb", "1e-9"],
                                       ["serve", "--replay-window-s", "nan"], ["serve", "--shutdown-grace-s", "inf"],
                                       ["health", "--timeout-s", "nan"], ["status", "--timeout-s", "inf"],
                                       ["health", "--timeout-s", "1e9"], ["status", "--timeout-s", "3e6"],
                                       ["serve", "--latency-s", "1e300"], ["serve", "--shutdown-grace-s", "1e300"],
                                       ["serve", "--replay-window-s", "1e300"],
                                       # (every request was refused: "sent 0.0 s behind ... the 0.0001 s window")
                                       ["serve", "--replay-window-s", "0.0001"]])
def test_the_commands_refuse_values_they_cannot_use(arguments):
    # (nan as a timeout spun forever; inf and huge sizes ended in tracebacks)
    result = cli_runner().invoke(main, ["hil", *arguments])
    assert result.exit_code == 2 and "Invalid value" in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize(("option", "value", "taken"), [
    ("--shutdown-grace-s", "604800", True), ("--shutdown-grace-s", "604801", False),
    ("--replay-window-s", "1", True), ("--replay-window-s", "0.99", False),
    ("--replay-window-s", "3600", True), ("--replay-window-s", "3601", False),
    ("--latency-s", "3600", True), ("--latency-s", "3601", False),
])
def test_serve_takes_times_up_to_their_documented_limits_and_refuses_beyond_naming_the_option(option, value, taken,
                                                                                            tmp_path):
    """docs/hil.md, "Limits of the time options": `--shutdown-grace-s` at most one week,
    `--replay-window-s` from 1 s to one hour, `--latency-s` at most one hour.  (A value taken
    gets as far as the missing token file, the next usage error.)"""
    result = cli_runner().invoke(main, ["hil", "serve", "--address", f"ipc://{tmp_path / 's'}", option, value,
                                        "--token-file", str(tmp_path / "no-token")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert (f"Invalid value for '{option}'" in result.stderr) != taken, result.stderr
    assert ("Invalid value for --token-file" in result.stderr) == taken, result.stderr

@pytest.mark.parametrize("arguments, message", [
    (["--device", "chip9000"], "Invalid value for --device: no backend 'chip9000' is installed; choose one of "),
    (["--device", "reference", "--device-option", "n_threads=abc"],
     "Invalid value for --device-option: backend 'reference': n_threads: expected an integer from 1 to 256, got 'abc'"),
    (["--device", "reference", "--device-option", "colour=1"],
     "Invalid value for --device-option: backend 'reference': unknown option(s) colour; allowed: n_threads"),
])
def test_serve_names_the_option_of_a_device_it_cannot_build(arguments, message, monkeypatch):
    """(exit status 1 with "Error: n_threads: ...", which named no option of the command)"""
    monkeypatch.setenv("DELGRAD_HIL_TOKEN", "a-token-of-sufficient-length")
    result = cli_runner().invoke(main, ["hil", "serve", "--address", "tcp://127.0.0.1:0", *arguments])
    assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.output


def test_a_fault_seed_without_a_fault_is_said_to_have_no_effect(start_service):
    """(the log said "injecting faults: {... all zero ..., 'seed': 3}")"""
    from delgrad_hil import FaultPlan

    assert FaultPlan(seed=3).active and not FaultPlan(seed=3).injecting and FaultPlan(busy_fraction=0.1).injecting
    service = start_service(device="reference", serve_arguments=["--fault-seed", "3"])
    with open(service._log_path) as handle:
        logged = handle.read()
    assert "--fault-seed 3 has no effect: no fault is injected" in logged and "injecting faults" not in logged


def test_training_refuses_a_token_option_that_the_run_folder_would_keep(tmp_path):
    result = cli_runner().invoke(main, ["train", "--backend", "mock-hil", "--backend-option", "address=tcp://127.0.0.1:1",
                                        "--backend-option", "token=a-token-of-sufficient-length", "--epochs", "1",
                                        "--out", str(tmp_path / "run")])
    assert result.exit_code != 0 and "backend_options.token: a run keeps its settings in plain text" in result.output
    assert "a-token-of-sufficient-length" not in result.output and not (tmp_path / "run").exists()


def test_bad_calibration_seeds_are_refused_before_a_service_starts_and_numpy_numbers_are_taken():
    with HilBackend(device="bss2-emulator", device_options={"chip": np.int64(3)}) as backend:
        for seed in (-5, 1.5, True, 2**70):
            with pytest.raises(dg.InvalidValueError, match=r"seed: expected None or an integer from 0 to 2\*\*63 - 1"):
                backend.calibrate(seed=seed)
        assert backend.local_service is None
        assert backend.device_options == {"chip": 3} and type(backend.device_options["chip"]) is int
    with pytest.raises(dg.InvalidValueError, match="device_options: expected JSON values"):
        HilBackend(device_options={"chip": object()})
    for chip, shown in ((-1, "-1"), (2**64, "18446744073709551616")):  # (2**64 passed, and msgpack could not send
        # the service's greeting: OverflowError)
        with pytest.raises(dg.InvalidValueError, match=r"^device_options: chip: expected an integer from 0 to "
                                                       rf"2\*\*63 - 1, got {shown}"):
            HilBackend(device="bss2-emulator", device_options={"chip": chip}).capabilities  # (it said chip: only)


def test_an_ipc_address_in_use_is_refused_and_its_file_goes_with_the_service(tmp_path):
    import socket

    from delgrad_hil._device_process import DeviceProcess
    from delgrad_hil._service import DeviceService

    path, signer = tmp_path / "s", Signer(b"a-token-of-sufficient-length")
    service = DeviceService(DeviceProcess("reference"), signer, f"ipc://{path}")
    serving = threading.Thread(target=service.serve)
    serving.start()
    try:  # (ZeroMQ let a second service take the path over without a word)
        with pytest.raises(dg.BackendUnavailable, match="another process serves there"):
            DeviceService(None, signer, f"ipc://{path}")  # (refused before it would use its device)
    finally:
        service.request_stop()
        serving.join(timeout=10)
    assert not serving.is_alive() and not path.exists()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))  # a file left by a service that ended: no one listens
    stale.close()
    again = DeviceService(DeviceProcess("reference"), signer, f"ipc://{path}")
    again.request_stop()
    again.serve()
    assert not path.exists()


def test_an_ipc_path_that_is_not_a_socket_is_refused_and_kept(tmp_path):
    from delgrad_hil._service import DeviceService

    signer = Signer(b"a-token-of-sufficient-length")
    important, folder = tmp_path / "important.txt", tmp_path / "folder"
    important.write_text("important\n")
    folder.mkdir()
    link = tmp_path / "link"
    link.symlink_to(important)
    for path in (important, folder, link):  # (ZeroMQ deleted the file and put its socket there)
        with pytest.raises(dg.BackendUnavailable, match=f"{path} exists and is not a socket; choose another path"):
            DeviceService(None, signer, f"ipc://{path}")  # (refused before it would use its device)
    assert important.read_text() == "important\n" and folder.is_dir() and link.is_symlink()
    result = cli_runner().invoke(main, ["hil", "serve", "--device", "reference", "--address", f"ipc://{important}"],
                                 env={"DELGRAD_HIL_TOKEN": "a-token-of-sufficient-length"})
    assert result.exit_code == 1 and "exists and is not a socket" in result.output
    assert important.read_text() == "important\n"
    with pytest.raises(dg.BackendUnavailable, match=f"^cannot serve on ipc://{tmp_path}/missing/socket: its folder "
                                                     f"{tmp_path}/missing does not exist; make it first$"):
        DeviceService(None, signer, f"ipc://{tmp_path}/missing/socket")  # (was "No such file or directory")


def test_a_graceful_stop_sends_replies_held_back_by_the_latency_fault_after_the_grace_period(tmp_path):
    # (the service waited for every delayed reply: with a latency of 1e300 s a SIGTERM never ended it)
    token = "a-token-of-sufficient-length"
    with service_holding_a_reply(tmp_path, token, shutdown_grace_s=0.5) as (service, serving, socket):
        started = time.monotonic()
        service.request_stop()
        serving.join(timeout=20)
        assert not serving.is_alive() and time.monotonic() - started < 10
        assert socket.poll(5_000)  # (sent at the stop, not dropped)
        assert decode(socket.recv_multipart(), Signer(token.encode()), replies=True).type == "health"


@contextlib.contextmanager
def _service_running_a_slow_job(tmp_path, **service_options):
    """A DeviceService in this process (a thread) whose device runs one 30 s job, sent by a raw
    client: yields (service, request, reply), `reply()` waiting for that job's answer."""
    from delgrad_hil._device_process import DeviceProcess
    from delgrad_hil._service import DeviceService

    token = "a-token-of-sufficient-length"
    service = DeviceService(DeviceProcess("hil-noisy", {"job_delay_s": 30}), Signer(token.encode()),
                            f"ipc://{tmp_path / 's'}", **service_options)
    serving = threading.Thread(target=service.serve)
    serving.start()
    context = zmq.Context()
    socket = context.socket(zmq.DEALER)
    try:
        with _client(SimpleNamespace(address=service.address, token=token, device="hil-noisy")) as backend:
            (request,) = _requests(backend, 1)
        socket.connect(service.address)
        socket.send_multipart(signed(token, "execute", request.to_bytes(), client="one", job=request.digest))
        assert wait_for(lambda: service.scheduler.status()["running"] is not None)

        def reply():
            assert socket.poll(10_000)
            return decode(socket.recv_multipart(), Signer(token.encode()), replies=True).header

        yield service, request, reply
    finally:
        socket.close(linger=0)
        context.term()
        service.request_stop()
        serving.join(timeout=10)
    assert not serving.is_alive()


def test_jobs_lost_with_the_device_are_answered_and_not_counted_as_run(tmp_path):
    with _service_running_a_slow_job(tmp_path) as (service, request, reply):
        service.device._process.kill()  # (the device process dies with the job)
        answer = reply()
        assert answer["code"] == "device_error" and answer["retryable"] and "send the job again" in answer["message"]
        assert wait_for(lambda: service.device_restarts == 1) and service.device_lost is None
    assert service.scheduler.counts["executed"] == 0 and request.digest not in service.scheduler.executions
    assert service.scheduler.crashes == {request.digest: 1}


@pytest.mark.slow
def test_a_device_process_that_lived_a_while_before_it_died_idle_starts_the_count_of_quick_deaths_again(tmp_path):
    """(only device processes that end idle soon after their start, in a row, stop the service)"""
    from delgrad_hil._device_process import DeviceProcess
    from delgrad_hil._service import IDLE_DEATHS_ALLOWED, QUICK_DEATH_S, DeviceService

    service = DeviceService(DeviceProcess("hil-noisy"), Signer(b"a-token-of-sufficient-length"),
                            f"ipc://{tmp_path / 's'}")
    serving = threading.Thread(target=service.serve)
    serving.start()
    try:
        for deaths in range(1, IDLE_DEATHS_ALLOWED + 3):
            if deaths == IDLE_DEATHS_ALLOWED + 1:
                service._device_started -= QUICK_DEATH_S  # (as if this one had lived a minute)
            service.device._process.kill()
            assert wait_for(lambda: service.device_restarts == deaths, timeout_s=30), deaths  # noqa: B023
        assert service.device_lost is None and not service.stop_requested
    finally:
        service.request_stop()
        serving.join(timeout=10)
    assert not serving.is_alive()


def test_a_job_still_running_when_the_grace_period_ends_is_answered(tmp_path):
    """(the device thread answers it as the device stops; the service no longer answers the
    running jobs itself before stopping the device, between which a job could finish unanswered)"""
    with _service_running_a_slow_job(tmp_path, shutdown_grace_s=0.4) as (service, _, reply):
        service.request_stop()
        answer = reply()
        assert answer["code"] == "shutting_down" and "stopped while running the job" in answer["message"]


def test_the_devices_warnings_reach_the_client(start_service):
    """(they were in the service's log only)"""
    service = start_service(device_options={"warning": "the chip runs warm"})
    with _client(service) as backend:
        network, inputs = network_and_inputs()
        with pytest.warns(UserWarning, match=r"^backend 'mock-hil' \(device 'hil-noisy'\): UserWarning: the chip "
                                             r"runs warm$"):
            calibration = backend.calibrate(network, seed=0)
        with pytest.warns(UserWarning, match=r"\(device 'hil-noisy'\): RuntimeWarning: the chip runs warm$"):
            backend.execute(network, inputs, calibration=calibration, seed=1)


def test_a_local_services_device_options_reach_it_as_the_json_values_given(start_service):
    """docs/hil.md: `device_options` are JSON values, passed on as `--device-option KEY=VALUE`
    ("VALUE is read as JSON when it can be"): the string "42" stays a string."""
    service = start_service(device_options={"warning": "42", "chip": 1})
    assert _reply(service, signed(service.token, "hello"))["info"]["device_options"] == {"warning": "42", "chip": 1}


def test_a_local_service_serves_with_its_own_fresh_token_whatever_the_environment_holds(start_service, monkeypatch):
    """docs/hil.md: a local service runs "with a fresh random token", also when
    $DELGRAD_HIL_TOKEN holds the token of a shared service."""
    monkeypatch.setenv("DELGRAD_HIL_TOKEN", "the-token-of-a-shared-service")
    service = start_service(device="reference")
    assert service.token != "the-token-of-a-shared-service"
    assert _reply(service, signed(service.token, "health"))["info"]["ok"] is True

def test_a_device_that_prints_much_and_warns_at_length_is_served_on(start_service):
    """(a local service's stdout was a pipe read for the ready line only: after about 64 KiB of
    a device's prints every job hung; a warning of 70,000 characters made its reply's header too
    large, and the result could never be received)"""
    service = start_service(device_options={"print_bytes": 16384, "warning": "w", "warning_repeat": 70_000})
    with _client(service, timeout_s=5.0, job_timeout_s=20.0) as backend, warnings.catch_warnings(record=True) as told:
        warnings.simplefilter("always")
        network, inputs = network_and_inputs()
        calibration = backend.calibrate(network, seed=0)
        results = [backend.execute(network, inputs, calibration=calibration, seed=seed) for seed in range(12)]
    assert len(results) == 12  # 192 KiB printed
    shortened = [str(w.message) for w in told if "RuntimeWarning: www" in str(w.message)]
    assert shortened and all(text.endswith("... (70,016 characters)") and len(text) < 1100 for text in shortened), \
        shortened[:1]


def test_a_reply_header_above_the_protocol_limit_is_an_error_reply_not_corruption(start_service):
    """(device options of 70,000 characters, echoed in the greeting, made every greeting fail its
    check as 'corrupted')"""
    service = start_service(device_options={"warning": "w" * 70_000})
    with pytest.raises(dg.BackendError, match=r"refused the request: the service's welcome reply has a header of "
                                              r"[\d,]+ bytes, above the protocol's 65,536 \(e.g. device options of "
                                              r"that size\)"):
        with _client(service) as backend:
            backend.calibrate(*network_and_inputs()[:1], seed=0)


@pytest.mark.slow
def test_a_peer_that_completes_the_handshake_and_falls_silent_is_dropped(start_service):
    """(such connections were kept for ever: enough of them exhausted the service's file
    descriptors, and it answered nobody)"""
    import socket

    from delgrad_hil._service import HEARTBEAT_MS

    service = start_service()
    host, port = service.address[len("tcp://"):].rsplit(":", 1)
    with socket.create_connection((host, int(port))) as peer:
        peer.sendall(b"\xff" + b"\0" * 8 + b"\x7f\x03\x01NULL" + b"\0" * 48)  # ZMTP 3.1 greeting, NULL security
        ready = b"\x05READY\x0bSocket-Type" + (6).to_bytes(4, "big") + b"DEALER"
        peer.sendall(b"\x04" + bytes([len(ready)]) + ready)  # then silence: no answer to the service's pings
        peer.settimeout(0.5)
        deadline = time.monotonic() + 5 * HEARTBEAT_MS / 1000
        while time.monotonic() < deadline:
            try:
                if peer.recv(65536) == b"":
                    break  # dropped
            except socket.timeout:
                pass
        else:
            pytest.fail("the silent peer is still connected")


def test_serving_on_a_host_name_of_no_local_interface_says_so():
    from delgrad_hil._service import DeviceService

    with pytest.raises(dg.BackendUnavailable,
                       match="tcp://nohost.invalid:1: no interface of this machine has that host"):
        DeviceService(None, Signer(b"a-token-of-sufficient-length"), "tcp://nohost.invalid:1")


def test_serving_on_a_port_in_use_says_what_to_do():
    """(it said only "Address already in use")"""
    import socket

    from delgrad_hil._service import DeviceService

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"tcp://127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(dg.BackendUnavailable, match=rf"^cannot serve on {address}: the port is in use \(another "
                                                        r"service may listen there\); stop it or choose another port"):
            DeviceService(None, Signer(b"a-token-of-sufficient-length"), address)


def test_new_token_refuses_a_missing_folder_or_a_path_that_is_not_a_file(tmp_path):
    """(usage errors, status 2, as a folder is: /dev/null and the others ended with status 1)"""
    tmp_path.joinpath("a-folder").mkdir()
    for path, message in ((tmp_path / "nodir" / "tok", f"cannot write {tmp_path / 'nodir' / 'tok'}: the folder "
                                                       f"{tmp_path / 'nodir'} does not exist"),
                          ("/dev/null", "/dev/null exists and is not a regular file; choose another path"),
                          # (said that /proc did not exist)
                          ("/proc/no-token", "cannot write /proc/no-token (No such file or directory): the folder "
                                             "/proc takes no new files"),
                          (tmp_path / "a-folder", f"File '{tmp_path / 'a-folder'}' is a directory")):
        result = cli_runner().invoke(main, ["hil", "new-token", str(path)])
        assert result.exit_code == 2 and f"Error: Invalid value for 'PATH': {message}" in result.stderr, result.output


def test_new_token_refuses_an_empty_path():
    result = cli_runner().invoke(main, ["hil", "new-token", ""])
    assert result.exit_code == 2 and "expected a file name, got an empty one" in result.stderr


# ---------------------------------------------------------------------------- hostile messages
def test_a_wrong_or_missing_token_is_refused_at_once_and_the_service_serves_on(start_service):
    service = start_service()
    with HilBackend(service.address, token="a-wrong-token-of-some-length", attempts=5) as backend:
        with pytest.raises(dg.BackendUnavailable, match="refused the token") as info:
            backend.status()
    assert not info.value.retryable
    status = _reply(service, signed(service.token, "status"))["info"]
    assert status["refused.bad_signature"] == 1  # the greeting was not sent again
    frames = signed(service.token, "health")
    unsigned = [frames[0], b"", *frames[2:]]
    assert _reply(service, unsigned)["code"] == "bad_signature"
    assert _reply(service, signed(service.token, "health"))["info"]["ok"] is True


def test_refusals_are_logged_up_to_a_rate_and_the_rest_counted():
    """(a peer without the token got a WARNING line per junk message: it could fill the log)"""
    from delgrad_hil._refusal_log import LINES_PER_WINDOW, WINDOW_S, RefusalLog

    now = [0.0]
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    log = logging.getLogger("test-refusals")
    log.addHandler(handler)
    try:
        refusals = RefusalLog(log, clock=lambda: now[0])
        for index in range(LINES_PER_WINDOW + 30):
            refusals.refused("malformed" if index % 3 else "bad_signature", f"junk {index}")
        assert len(records) == LINES_PER_WINDOW + 1 and records[-1].startswith(f"{LINES_PER_WINDOW} messages refused")
        now[0] = WINDOW_S
        refusals.refused("malformed", "after the window")
        assert records[-2] == "refused 30 more messages, not logged one by one (10 bad_signature, 20 malformed)"
        assert records[-1] == "refused a message: malformed: after the window"
        refusals.flush()  # (nothing left to tell)
        assert len(records) == LINES_PER_WINDOW + 3
    finally:
        log.removeHandler(handler)


def test_every_window_after_the_first_logs_at_most_its_lines_too(caplog):
    """docs/hil.md: refused messages "are logged a line each for the first 20 of every minute;
    further ones ... are counted and logged as one line when the next minute's first one arrives"
    (the second minute opens a window of its own, as the third does)."""
    from delgrad_hil._refusal_log import LINES_PER_WINDOW, WINDOW_S, RefusalLog

    now = [0.0]
    refusals = RefusalLog(logging.getLogger("test-refusal-windows"), clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test-refusal-windows"):
        for minute in range(3):
            now[0] = minute * WINDOW_S + 1.0
            for index in range(LINES_PER_WINDOW + 5):
                refusals.refused("malformed", f"junk {index}")
    assert sum(message.startswith("refused a message: ") for message in caplog.messages) == 3 * LINES_PER_WINDOW
    assert caplog.messages.count("refused 5 more messages, not logged one by one (5 malformed)") == 2

def test_a_flood_of_junk_is_counted_in_the_status_and_not_logged_line_by_line(start_service):
    from delgrad_hil._refusal_log import LINES_PER_WINDOW

    service = start_service(device="reference")
    for _ in range(3 * LINES_PER_WINDOW):
        assert _reply(service, [b"garbage"])["code"] == "malformed"
    assert _reply(service, signed(service.token, "status"))["info"]["refused.malformed"] == 3 * LINES_PER_WINDOW
    service._release()  # (a graceful stop, which keeps the log)
    with open(service._log_path) as handle:
        logged = handle.read()
    assert logged.count("refused a message: malformed") == LINES_PER_WINDOW
    assert f"refused {2 * LINES_PER_WINDOW} more messages, not logged one by one ({2 * LINES_PER_WINDOW} malformed)" \
        in logged


def test_oversize_malformed_truncated_and_replayed_requests_get_errors_and_the_service_serves_on(start_service):
    service = start_service(device="reference", serve_arguments=["--max-message-mb", "0.05"])
    network, inputs = network_and_inputs(batch=8)
    big = dg.ExecutionRequest(network, np.full((2000, 4), 0.5), None, 0)
    header = _reply(service, signed(service.token, "execute", big.to_bytes(), job=big.digest))
    assert header["code"] == "too_large" and "above the limit" in header["message"] and not header["retryable"]
    for frames, code in (([b"garbage"], "malformed"), ([b"delgrad-hil/2", b"x" * 32, b"\xc1"], "bad_signature"),
                         ([b"delgrad-hil/7", b"", b""], "unsupported_version")):
        assert _reply(service, frames)["code"] == code
    request = dg.ExecutionRequest(network, inputs, None, 0)
    frames = signed(service.token, "execute", request.to_bytes(), job=request.digest)
    truncated = frames[:3] + [frames[3][: len(frames[3]) // 2]]
    assert _reply(service, truncated)["code"] == "bad_signature"
    assert _reply(service, frames)["type"] == "result"
    replayed = _reply(service, frames)
    assert replayed["code"] == "replayed" and "received before" in replayed["message"]
    other = dg.ExecutionRequest(network, inputs, None, 1)
    mismatch = _reply(service, signed(service.token, "execute", request.to_bytes(), job=other.digest))
    assert mismatch["code"] == "bad_request"
    status = _reply(service, signed(service.token, "status", executions=True))["info"]
    assert status["executions"] == {request.digest: 1}
    assert status["refused.too_large"] == 1 and status["refused.replayed"] == 1


def test_a_client_refuses_to_send_what_the_service_would_refuse(start_service):
    service = start_service(device="reference", serve_arguments=["--max-message-mb", "0.05"])
    network, _ = network_and_inputs()
    with _client(service) as backend:
        with pytest.raises(dg.BackendError, match=r"execute message \([0-9,]+ bytes\) is above the service's limit "
                                                  r"of 52,428 bytes"):
            backend.execute(network, np.full((2000, 4), 0.5), seed=0)


def test_a_result_above_the_reply_limit_is_refused_instead_of_lost(start_service):
    # (the client drops replies above 4 x the limit: it used to wait for such a result forever)
    service = start_service(device="reference", serve_arguments=["--max-message-mb", "0.05"])
    network = dg.Network.feedforward([4, 200, 3], neuron=dg.NeuronParameters(1.0, 1.0, 1.0), seed=0)
    with _client(service, timeout_s=2.0, attempts=2) as backend:
        with pytest.raises(dg.BackendError, match=r"the result of [0-9,]+ bytes is above the reply limit of 209,712 "
                                                  r"bytes .* run the batch in smaller jobs"):
            # (129 x 203 spike times fit, with the archive's own bytes they do not: refused after the run)
            backend.execute(network, np.full((129, 4), 0.5), seed=0)
        assert backend.execute(network, np.full((20, 4), 0.5), seed=0).layer_spike_times[0].shape == (20, 200)


def test_a_result_that_cannot_arrive_within_timeout_s_is_named_with_its_size(start_service):
    # (a reply counts once it has arrived whole: the client said only "no answer ... after 2 attempts")
    service = start_service(device="reference")
    network = dg.Network.feedforward([4, 200, 3], neuron=dg.NeuronParameters(1.0, 1.0, 1.0), seed=0)
    inputs = np.full((20_000, 4), 0.5)  # a result of 32.5 MB: signing it alone takes the service about 0.03 s
    with _client(service, client_id="large", timeout_s=5.0) as backend:
        backend.execute(network, inputs, seed=0)  # (run once: cached at the service for this client)
    said = []
    for _ in range(8):  # (the service's short answer to the probe must come within the 0.02 s too: on a busy
        # machine it may not, and the client then rightly says "no answer"; the old client always said that.
        # Rarely, the reply itself arrives within 0.02 s: that try tells nothing either)
        with _client(service, client_id="large", timeout_s=0.02, attempts=2, backoff_s=0.5,
                     max_backoff_s=0.5) as backend:
            try:
                backend.execute(network, inputs, seed=0)
                continue
            except dg.BackendUnavailable as exc:
                said.append(str(exc))
        if not said[-1].startswith("no answer from"):
            break
    assert said, "the 32.5 MB reply arrived within 0.02 s in each of 8 tries"
    assert re.search(r"job [0-9a-f]{12} failed at .* after 2 attempts .*; last: the job finished at the service \(a "
                     r"result of 32\.5 MB\), but its reply did not arrive within timeout_s=0.02 s .*raise timeout_s",
                     said[-1]), said


# ---------------------------------------------------------------------------- idempotent jobs
def test_a_duplicate_of_a_running_job_waits_for_it(start_service):
    service = start_service(device_options={"job_delay_s": 1.0})
    with _client(service) as backend:
        request = _requests(backend, 1)[0]
    payload = request.to_bytes()
    replies = []

    def send():
        replies.append(raw_exchange(service.address, signed(service.token, "execute", payload, client="twin",
                                                             job=request.digest)))

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
        time.sleep(0.2)
    for thread in threads:
        thread.join()
    headers = [decode(reply, Signer(service.token.encode()), replies=True) for reply in replies]
    assert [h.header["type"] for h in headers] == ["result", "result"] and headers[0].payload == headers[1].payload
    status = _reply(service, signed(service.token, "status", executions=True))["info"]
    assert status["executions"][request.digest] == 1 and status["joined"] == 1


def _run_all(backend, requests, overlapped: bool):
    """The requests' results, one after another or through `execute_many` (jobs in flight)."""
    return backend.execute_many(requests) if overlapped else [backend.execute(request) for request in requests]


@pytest.mark.parametrize("overlapped", [False, True], ids=["one-at-a-time", "in-flight"])
@pytest.mark.parametrize("faults", [{"drop_fraction": 0.3, "corrupt_fraction": 0.3, "seed": 1},
                                    {"busy_fraction": 0.5, "latency_s": 0.01, "seed": 2}], ids=["drop-corrupt", "busy"])
def test_jobs_survive_dropped_corrupted_and_busy_replies(start_service, faults, overlapped):
    service = start_service(faults=faults)
    with _client(service, timeout_s=0.5, attempts=10, backoff_s=0.01, jobs_in_flight=3) as backend:
        requests = _requests(backend, 10)
        results = _run_all(backend, requests, overlapped)
        status = backend.status(executions=True)
        assert backend.retries > 0
    _assert_same_results(results, _device_results(requests))
    assert sorted(status["executions"].values()) == [1] * 11  # ten jobs and the calibration, each run once
    injected = status.get("dropped", 0) + status.get("corrupted", 0) + status.get("busy", 0)
    assert injected >= 3


@pytest.mark.parametrize("overlapped", [False, True], ids=["one-at-a-time", "in-flight"])
def test_a_job_survives_a_restart_of_the_service(start_service, overlapped):
    service = start_service(faults={"exit_after_jobs": 4})  # the calibration and three jobs, then exit
    restarts, ended_with = threading.Event(), []

    def supervise():
        if wait_for(lambda: not service.alive, timeout_s=60):
            ended_with.append(service._process.returncode)
            service.ensure_running()
            restarts.set()

    watcher = threading.Thread(target=supervise)
    watcher.start()
    with _client(service, timeout_s=0.5, attempts=20, backoff_s=0.05) as backend:
        requests = _requests(backend, 5)
        with pytest.warns(UserWarning, match=f"the service at {re.escape(service.address)} was restarted") as told:
            results = _run_all(backend, requests, overlapped)
        status = backend.status(executions=True)
    watcher.join()
    assert restarts.is_set() and service.restarts == 1
    assert ended_with == [75]  # docs/hil.md, "Faults": "the process exits (status 75)"
    assert len([w for w in told if "was restarted" in str(w.message)]) == 1
    _assert_same_results(results, _device_results(requests))
    assert len(status["executions"]) == 3 and status["uptime_s"] < 30  # the new process ran jobs 3, 4, 5


def test_the_embedded_service_is_restarted_by_its_client():
    # the calibration and three jobs, exit before the third reply; the new process runs jobs 3 and 4
    with HilBackend(device="hil-noisy", faults={"exit_after_jobs": 4}, timeout_s=5.0, attempts=5) as backend:
        requests = _requests(backend, 4)
        results = [backend.execute(request) for request in requests]
        assert backend.local_service.restarts == 1
    _assert_same_results(results, _device_results(requests))


def test_four_concurrent_clients_lose_and_duplicate_no_job(start_service):
    service = start_service(faults={"drop_fraction": 0.15, "corrupt_fraction": 0.1, "seed": 3})
    outcomes, errors = {}, []

    def client(index):
        try:
            with _client(service, timeout_s=1.0, attempts=10, backoff_s=0.02) as backend:
                requests = _requests(backend, 6, seed0=100 * index)
                outcomes[index] = (requests, [backend.execute(request) for request in requests])
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    for requests, results in outcomes.values():
        _assert_same_results(results, _device_results(requests))
    status = _reply(service, signed(service.token, "status", executions=True))["info"]
    jobs = {request.digest for requests, _ in outcomes.values() for request in requests}
    assert len(jobs) == 24 and jobs <= set(status["executions"])
    assert all(status["executions"][job] == 1 for job in jobs)
    assert status["executed"] == 24 and status["calibrated"] == 4  # each client calibrates: its own job


# ---------------------------------------------------------------------------- errors and timeouts
def test_device_errors_come_back_as_themselves(start_service):
    from _hil_noisy_device import NoisyDevice

    service = start_service()
    network, inputs = network_and_inputs()
    other_chip = wrap(NoisyDevice(chip=7).calibrate(network, seed=0))
    with _client(service) as backend:
        with pytest.raises(dg.CalibrationError, match="made for another chip") as info:
            backend.execute(network, inputs, calibration=other_chip, seed=0)
        # among jobs in flight too, and the client goes on working after it
        # the service holds that calibration now: later jobs name it by digest and go in flight
        backend._sent_calibrations.add(other_chip.digest)
        requests = [dg.ExecutionRequest(network, inputs, other_chip, seed) for seed in range(1, 4)]
        with pytest.raises(dg.CalibrationError, match="made for another chip"):
            backend.execute_many(requests)
        good = _requests(backend, 3)
        _assert_same_results(backend.execute_many(good), _device_results(good))
    assert not info.value.retryable and service.address in str(info.value)


def test_jobs_in_flight_are_run_once_each_and_come_back_in_order(start_service):
    service = start_service(device_options={"job_delay_s": 0.02})
    with _client(service, jobs_in_flight=4) as backend:
        requests = _requests(backend, 9) + _requests(backend, 2, seed0=50, batch=5)
        results = backend.execute_many(requests)
        assert backend.execute_many([]) == []
        status = backend.status(executions=True)
        assert backend.retries == 0
    _assert_same_results(results, _device_results(requests))
    assert [result.output_spike_times.shape[0] for result in results] == [16] * 9 + [5] * 2
    assert sorted(status["executions"].values()) == [1] * 12  # eleven jobs and the calibration
    assert status["most_queued"] >= 2  # jobs waited at the service while another ran


def test_a_time_too_short_for_any_answer_is_not_blamed_on_the_service(start_service, monkeypatch):
    # (job_timeout_s=1e-6 said "no answer from the service: is it running?" of a healthy service)
    service = start_service(device="reference")
    with _client(service, job_timeout_s=1e-6) as backend:
        request = _requests(backend, 1)[0]
        with pytest.raises(dg.ExecutionTimeout, match="did not finish in time .*the service said nothing about it "
                                                      r"yet: the client asks after timeout_s / 2 = 2.5 s") as info:
            backend.execute(request)
        assert "is it running" not in str(info.value)
    monkeypatch.setenv("DELGRAD_HIL_TOKEN", "x" * 20)
    with zmq.Context() as context, context.socket(zmq.ROUTER) as silent:  # accepts, never answers
        address = f"tcp://127.0.0.1:{silent.bind_to_random_port('tcp://127.0.0.1')}"
        result = cli_runner().invoke(main, ["hil", "health", "--address", address, "--timeout-s", "1e-9"])
        assert result.exit_code == 1 and "timeout_s=1e-09 s may be too small for any answer" in result.stderr
        result = cli_runner().invoke(main, ["hil", "health", "--address", address, "--timeout-s", "0.05"])
        assert result.exit_code == 1 and "too small" not in result.stderr


def test_no_answer_and_slow_jobs_are_told_apart(start_service):
    with zmq.Context() as context, context.socket(zmq.ROUTER) as silent:  # accepts, never answers
        port = silent.bind_to_random_port("tcp://127.0.0.1")
        address = f"tcp://127.0.0.1:{port}"
        with HilBackend(address, token="x" * 20, timeout_s=0.2, attempts=3, backoff_s=0.01) as backend:
            with pytest.raises(dg.BackendUnavailable, match=rf"no answer from {address} after 3 attempts \(\d"):
                backend.status()
    service = start_service(device_options={"job_delay_s": 3.0})
    with _client(service, timeout_s=0.3, job_timeout_s=1.5, attempts=2) as backend:
        request = _requests(backend, 1)[0]
        started = time.monotonic()
        with pytest.raises(dg.ExecutionTimeout, match="job [0-9a-f]{12} did not finish in time .*it is running"):
            backend.execute(request)  # (two failed attempts would have ended sooner, in BackendUnavailable)
        assert time.monotonic() - started >= 1.5
    with _client(service, timeout_s=0.2, job_timeout_s=1.0, attempts=20, backoff_s=0.01) as backend:
        request = _requests(backend, 1, seed0=1)[0]
        os.kill(service.pid, signal.SIGSTOP)  # (greeted and calibrated: now the service is silent)
        try:
            started = time.monotonic()
            with pytest.raises(dg.ExecutionTimeout, match="did not finish in time .*no answer from the service"):
                backend.execute(request)
            # (not greeted again first: 20 attempts at the silent service took 22 s more)
            assert time.monotonic() - started < 10
        finally:
            os.kill(service.pid, signal.SIGCONT)


def test_options_of_a_service_are_refused_for_a_client_at_an_address_naming_only_those_given():
    with pytest.raises(ValueError, match=r"^device_options: set by the service at an address"):
        HilBackend("tcp://127.0.0.1:5555", token="x" * 20, device_options={"chip": 3})
    with pytest.raises(ValueError, match=r"^device_options, faults: set by the service"):
        HilBackend("tcp://127.0.0.1:5555", token="x" * 20, device_options={"chip": 3}, faults={"drop_fraction": 0.1})


def test_without_the_default_device_a_device_must_be_named(monkeypatch):
    from delgrad_hil import _device

    installed = _device.available_backends()  # (the default device hidden: it is installed wherever this runs)
    monkeypatch.setattr(_device, "available_backends", lambda: [info for info in installed
                                                                if info.name != _device.DEFAULT_DEVICE])
    with HilBackend() as backend:
        with pytest.raises(dg.BackendUnavailable, match="default device 'bss2-emulator' is not installed.*hil-noisy"):
            backend.capabilities


def test_bad_options_are_refused_naming_the_option():
    with pytest.raises(dg.InvalidValueError, match="cannot be its own device"):
        HilBackend(device="mock-hil").capabilities
    with pytest.raises(dg.InvalidValueError, match="^token: only for a service at an address"):
        HilBackend(token="x" * 20)
    with pytest.raises(dg.InvalidValueError, match="^token_file: only for a service at an address"):
        HilBackend(token_file="some-file")
    with pytest.raises(dg.InvalidValueError, match="^device: no backend 'nonexistent' is installed; choose one of"):
        HilBackend(device="nonexistent").capabilities
    for wrong in ("a b", "x" * 129):  # refused before a local service starts
        with pytest.raises(dg.InvalidValueError, match=r"^client_id: expected 1-128 characters"):
            HilBackend(client_id=wrong)
    with pytest.raises(dg.InvalidValueError, match="faults.exit_after_jobs"):
        HilBackend(faults={"exit_after_jobs": 0})
    # (the run restarted the service four times, then said "no answer after 5 attempts")
    with pytest.raises(dg.InvalidValueError, match="faults.exit_after_jobs: at least 2 for the local service, got 1"):
        HilBackend(faults={"exit_after_jobs": 1})
    for wrong in (0, 17, True, 2.0):
        with pytest.raises(dg.InvalidValueError, match=r"jobs_in_flight: expected an integer from 1 to 16"):
            HilBackend(jobs_in_flight=wrong)
    # (huge times overflowed in ZeroMQ or time.sleep, blamed on the plugin's capabilities)
    for name, most in (("timeout_s", "86400 s (one day)"), ("job_timeout_s", "604800 s (one week)"),
                       ("calibration_timeout_s", "604800 s (one week)"), ("backoff_s", "3600 s (one hour)"),
                       ("max_backoff_s", "3600 s (one hour)")):
        for wrong in (1e9, 1e308):
            with pytest.raises(dg.InvalidValueError,
                               match=rf"^{name}: expected a number of seconds > 0 and at most {re.escape(most)}, got"):
                HilBackend(**{name: wrong})
    with pytest.raises(dg.InvalidValueError, match=r"faults.latency_s: .* at most 3600 s \(one hour\), got 1e\+300"):
        HilBackend(faults={"latency_s": 1e300})
    assert HilBackend(timeout_s=86400, job_timeout_s=604800, backoff_s=3600, max_backoff_s=3600).timeout_s == 86400
    with pytest.raises(dg.InvalidValueError, match=r"^backoff_s: 5 s is above max_backoff_s \(2 s\), the cap of the "
                                                   r"waits between attempts; raise max_backoff_s too$"):
        HilBackend(backoff_s=5)  # (every wait was the default cap, 2 s: the 5 s given was not taken)
    assert HilBackend(timeout_s=np.int64(3)).timeout_s == 3.0  # (numpy's integers were refused as no number)
    with pytest.raises(dg.InvalidValueError, match=r"^timeout_s: .*, got the integer 1.00e\+400$"):  # (not 401 digits)
        HilBackend(timeout_s=10**400)


def test_a_time_option_of_zero_is_refused():
    """(`checked_seconds`: a number of seconds > 0, as the message of a larger one says too)"""
    for name in ("timeout_s", "job_timeout_s", "calibration_timeout_s", "backoff_s", "max_backoff_s"):
        with pytest.raises(dg.InvalidValueError, match=rf"^{name}: expected a number of seconds > 0 and at most"):
            HilBackend(**{name: 0})

def test_serve_without_a_token_or_on_a_taken_port_is_a_one_line_error(start_service, tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "DELGRAD_HIL_TOKEN"}
    command = [sys.executable, "-m", "delgrad_core.cli", "hil", "serve", "--device", "reference"]
    process = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert process.returncode == 1 and process.stderr.startswith("Error: no token: set $DELGRAD_HIL_TOKEN")
    service = start_service(device="reference")
    process = subprocess.run(command + ["--address", service.address], cwd=tmp_path, capture_output=True,
                             text=True, timeout=60, env=dict(env, DELGRAD_HIL_TOKEN="t" * 20))
    assert process.returncode == 1 and process.stderr.strip().splitlines() == [
        f"Error: cannot serve on {service.address}: the port is in use (another service may listen there); stop it "
        "or choose another port"], process.stderr


@pytest.mark.slow
def test_a_service_started_with_its_standard_output_closed_serves(tmp_path):
    """(some launchers close stdout: the service's device process ended with an AttributeError
    traceback, and the service with it)"""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "delgrad_core.cli", "hil", "serve", "--device", "reference", "--address",
               f"tcp://127.0.0.1:{port}"]
    env = dict(os.environ, DELGRAD_HIL_TOKEN="t" * 32)
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=None, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: os.close(1))
    try:
        with HilBackend(f"tcp://127.0.0.1:{port}", token="t" * 32, device="reference", timeout_s=20,
                        attempts=1) as backend:
            network = dg.Network.feedforward([4, 5, 3], seed=0)
            backend.execute(network, np.full((2, 4), 0.5))
    finally:
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    assert "Traceback" not in stderr and process.returncode == 0, stderr  # (a graceful stop, docs/hil.md)


# ---------------------------------------------------------------------------- lifetime
def test_sigterm_finishes_the_running_jobs_and_rejects_the_queued_ones(start_service):
    service = start_service(device_options={"job_delay_s": 1.5})
    with _client(service) as backend:
        first, second, third = _requests(backend, 3)
    sockets, context = [], zmq.Context()
    status = lambda: _reply(service, signed(service.token, "status"))["info"]  # noqa: E731
    # (the device process holds two jobs: one runs, the next waits in its pipe)
    for request, state in ((first, lambda info: info["running"] is not None),
                           (second, lambda info: info["next"] is not None),
                           (third, lambda info: info["queues"] == {"one": 1})):
        socket = context.socket(zmq.DEALER)
        socket.connect(service.address)
        socket.send_multipart(signed(service.token, "execute", request.to_bytes(), client="one", job=request.digest))
        sockets.append(socket)
        assert wait_for(lambda: state(status()))
    os.kill(service.pid, signal.SIGTERM)
    replies = []
    for socket in sockets:
        assert socket.poll(10_000)
        replies.append(decode(socket.recv_multipart(), Signer(service.token.encode()), replies=True).header)
        socket.close(linger=0)
    context.term()
    assert replies[2]["code"] == "shutting_down" and replies[2]["retryable"]
    assert replies[0]["type"] == replies[1]["type"] == "result"
    assert wait_for(lambda: not service.alive, timeout_s=10) and service._process.returncode == 0


@pytest.mark.slow
def test_a_client_whose_service_stopped_says_that_it_was_shutting_down(start_service):
    """(it said only "no answer" after its last attempts, which the stopped service left silent)"""
    service = start_service(device_options={"job_delay_s": 0.5})
    with _client(service) as setup:
        *held, waiting = _requests(setup, 3)
    status = lambda: _reply(service, signed(service.token, "status"))["info"]  # noqa: E731
    context, sockets = zmq.Context(), []
    # (the device process holds two jobs: one runs, the next waits in its pipe; the client's waits in the queue)
    for request, state in zip(held, (lambda info: info["running"] is not None, lambda info: info["next"] is not None)):
        sockets.append(context.socket(zmq.DEALER))
        sockets[-1].connect(service.address)
        sockets[-1].send_multipart(signed(service.token, "execute", request.to_bytes(), client="one",
                                          job=request.digest))
        assert wait_for(lambda: state(status()))
    outcome = {}

    def execute():
        # (the attempts after the first wait 1-2 s and 2-4 s: the service has stopped by then)
        with _client(service, timeout_s=1.0, attempts=3, backoff_s=2.0, max_backoff_s=4.0) as backend:
            with pytest.raises(dg.BackendUnavailable) as caught:
                backend.execute(waiting)
            outcome["error"] = str(caught.value)

    client = threading.Thread(target=execute)
    client.start()
    assert wait_for(lambda: sum(status()["queues"].values()) == 1)
    os.kill(service.pid, signal.SIGTERM)
    client.join(timeout=60)
    for socket in sockets:
        socket.close(linger=0)
    context.term()
    assert wait_for(lambda: not service.alive)
    error = outcome.get("error", "")
    assert (error.startswith("backend 'mock-hil': no answer")
            and "at attempt 1 it answered that it was shutting down" in error), error


@pytest.mark.slow
def test_a_second_sigterm_stops_at_once_leaving_no_socket_file_or_device_process(tmp_path):
    from delgrad_hil._supervisor import READY_PREFIX

    path, token = tmp_path / "s", "t" * 20
    service = SimpleNamespace(address=f"ipc://{path}", token=token, device="hil-noisy")
    command = [sys.executable, "-m", "delgrad_core.cli", "hil", "serve", "--device", "hil-noisy", "--device-option",
               "job_delay_s=2", "--address", service.address]
    process = subprocess.Popen(command, cwd=tmp_path, env=dict(os.environ, DELGRAD_HIL_TOKEN=token),  # (not the
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # source tree)
    try:
        assert process.stdout.readline().startswith(READY_PREFIX)
        with _client(service) as backend:
            (request,) = _requests(backend, 1)
        context = zmq.Context()
        socket = context.socket(zmq.DEALER)
        socket.connect(service.address)
        socket.send_multipart(signed(token, "execute", request.to_bytes(), client="one", job=request.digest))
        assert wait_for(lambda: _reply(service, signed(token, "status"))["info"]["running"] is not None)
        with open(f"/proc/{process.pid}/task/{process.pid}/children") as handle:
            children = [int(pid) for pid in handle.read().split()]  # (the device process, and a resource tracker)
        os.kill(process.pid, signal.SIGTERM)  # (graceful: waits for the running job)
        time.sleep(0.3)
        os.kill(process.pid, signal.SIGTERM)  # at once
        assert process.wait(timeout=5) == 128 + signal.SIGTERM
        assert not path.exists() and wait_for(lambda: not any(map(process_exists, children)), timeout_s=5)
        socket.close(linger=0)
        context.term()
    finally:
        process.kill()
        process.wait()


def test_the_embedded_service_starts_on_use_and_stops_on_close():
    backend = HilBackend(device="hil-noisy")
    backend.capabilities  # the mapping needs no service
    assert backend.local_service is None
    network, inputs = network_and_inputs()
    backend.execute(network, inputs, calibration=backend.calibrate(network, seed=0), seed=0)
    pid, log = backend.local_service.pid, backend.local_service._log_path
    assert process_exists(pid) and backend.local_service.address.startswith("tcp://127.0.0.1:")
    backend.close()
    assert wait_for(lambda: not process_exists(pid), timeout_s=10) and not os.path.exists(log)
    with pytest.raises(dg.BackendUnavailable, match="closed"):
        backend.calibrate(network, seed=0)


CLIENT = """
    import sys
    import numpy as np
    import delgrad_core as dg
    from delgrad_hil import HilBackend

    backend = HilBackend(device="hil-noisy")
    network = dg.testing.make_network((4, 6, 3), "axonal", 1.0)
    backend.calibrate(network, seed=0)
    print(backend.local_service.pid, backend.local_service._log_path, flush=True)
    {ending}
"""


@pytest.mark.parametrize(("ending", "how"), [("import time; time.sleep(60)", "killed"),
                                              ("sys.exit(0)  # without close()", "exit"),
                                              ("import os; os._exit(3)", "crash")])
def test_the_embedded_service_never_outlives_its_client(tmp_path, ending, how):
    script = tmp_path / "client.py"
    script.write_text(textwrap.dedent(CLIENT.format(ending=ending)))
    client = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, stdout=subprocess.PIPE, text=True)
    try:
        pid, log = client.stdout.readline().split()
        pid = int(pid)
        assert process_exists(pid) and os.path.exists(log)
        if how == "killed":
            client.kill()
        client.wait(timeout=30)
        assert wait_for(lambda: not process_exists(pid), timeout_s=10), f"service {pid} outlived its client"
        assert not os.path.exists(log)  # (a killed client's service removes it when it sees its parent gone)
    finally:
        client.kill()
        client.stdout.close()


def test_a_calibration_travels_once_then_by_digest_and_again_after_a_restart(start_service, monkeypatch):
    service = start_service()
    sent = []
    original = HilBackend._job

    def recording(request, *, include_calibration):
        sent.append(include_calibration)
        return original(request, include_calibration=include_calibration)

    monkeypatch.setattr(HilBackend, "_job", staticmethod(recording))
    with _client(service, timeout_s=0.5, attempts=20, backoff_s=0.05) as backend:
        requests = _requests(backend, 4)
        results = [backend.execute(request) for request in requests[:2]]
        service.stop()
        service.start()  # a new service process on the same port: it has never seen the calibration
        with pytest.warns(UserWarning, match="was restarted .*the same results, so the run goes on"):
            results += [backend.execute(request) for request in requests[2:]]
    assert sent == [True, False, False, True, False]  # full, digest, digest refused -> full, digest
    _assert_same_results(results, _device_results(requests))


@pytest.mark.parametrize(("first", "then", "message"), [
    (("reference", None), ("example", None), "owns device 'example', not 'reference'"),
    (("reference", None), ("bss2-emulator", None), "owns device 'bss2-emulator', not 'reference'"),  # (it refuses
    # the network: that refusal, a usage error, came instead)
    (("example", {"dt": 0.001}), ("example", {"dt": 0.05}), "was restarted with device options"),
    (("reference", {"n_threads": 1}), ("reference", {"n_threads": 2}), None),  # (result-neutral: was refused)
    (("example", None), ("example", {"dt": 0.001}), None),  # (the default written out: was refused)
])
def test_a_service_restarted_with_another_device_or_options_is_refused_unless_result_neutral(start_service, first, then,
                                                                                            message):
    """(a shared service restarted at the same address with another device was used on: results
    came from the other device without a word)"""
    service = start_service(device=first[0], device_options=first[1])
    network, inputs = network_and_inputs(kind="none", tau_ratio=2.0)
    with _client(service) as backend:
        ran = backend.represent(network)
        backend.execute(ran, inputs, seed=0)
        service.stop()
        other = LocalService(*then)
        other.token, other.address = service.token, service.address  # (the same address and token)
        try:
            other.start()
            if message is None:
                with pytest.warns(UserWarning, match="was restarted .*the same results, so the run goes on"):
                    backend.execute(ran, inputs, seed=1)
                return
            with pytest.raises(dg.BackendUnavailable, match=message):
                backend.execute(ran, inputs, seed=1)
        finally:
            other.stop()


def test_a_calibration_refused_by_a_service_restarted_with_other_options_names_the_restart(start_service):
    """(the device's "calibration: made for another chip" came first, with advice to calibrate the
    backend, which a client cannot act on; the restart with other device options was not said)"""
    service = start_service(device="hil-noisy", device_options={"chip": 1})
    network, inputs = network_and_inputs()
    with _client(service, device="hil-noisy") as backend:
        calibration = backend.calibrate(network, seed=0)
        ran = backend.represent(network)
        backend.execute(ran, inputs, calibration=calibration, seed=0)
        service.stop()
        other = LocalService("hil-noisy", {"chip": 2})
        other.token, other.address = service.token, service.address  # (the same address and token)
        try:
            other.start()
            with pytest.raises(dg.BackendUnavailable, match=r"was restarted with device options \{'chip': 2\}, not "
                                                            r"\{'chip': 1\}") as raised:
                backend.execute(ran, inputs, calibration=calibration, seed=1)
            assert isinstance(raised.value.__cause__, dg.CalibrationError)
        finally:
            other.stop()


def test_a_forked_child_neither_uses_nor_ends_its_parents_backend(tmp_path):
    """(a child hung in a poll for over a minute after 'restarting' a second service, and a
    child that just exited removed its parent's service log)"""
    import multiprocessing

    network, inputs = network_and_inputs()
    with HilBackend(device="reference", timeout_s=2, attempts=2) as backend:
        ran = backend.represent(network)
        backend.execute(ran, inputs, seed=0)
        outcome = multiprocessing.get_context("fork").Queue()

        def child():
            try:
                backend.execute(ran, inputs, seed=1)
                outcome.put("ran")
            except dg.BackendUnavailable as exc:
                outcome.put(str(exc))

        process = multiprocessing.get_context("fork").Process(target=child)
        process.start()
        process.join(30)
        assert process.exitcode == 0 and "a child process cannot share; make a backend in this process" in \
            outcome.get(timeout=5)
        assert backend.local_service.alive and os.path.exists(backend.local_service._log_path)
        closing = multiprocessing.get_context("fork").Process(target=backend.close)  # (a child's `with` block)
        closing.start()
        closing.join(30)
        assert backend.local_service.alive and os.path.exists(backend.local_service._log_path)
        backend.execute(ran, inputs, seed=2)  # (the parent's backend still works)


FORKED_CHILD_EXITS = """
    import os
    import sys
    from delgrad_hil import LocalService

    service = LocalService("reference")
    service.start()
    child = os.fork()
    if child == 0:
        sys.exit(0)  # (a normal exit: the clean-up at exit runs in the child too)
    os.waitpid(child, 0)
    print(service.alive, os.path.exists(service._log_path), flush=True)
    service.stop()
"""


def test_a_forked_child_that_exits_normally_leaves_its_parents_local_service_and_log(tmp_path):
    """(the clean-up at exit of a LocalService never stopped ends its process and log "only in
    the process that started it": a forked child that exits inherits it)"""
    script = tmp_path / "fork.py"
    script.write_text(textwrap.dedent(FORKED_CHILD_EXITS))
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["True", "True"], result.stderr


def test_a_local_service_starts_once_in_a_session_of_its_own_and_not_before_start():
    """LocalService.start: "Start the service (if it is not running)"; ensure_running restarts
    it only "if its process has ended"."""
    service = LocalService("reference")
    try:
        assert service.ensure_running() is False and service.pid is None and service.restarts == 0
        service.start()
        pid, address = service.pid, service.address
        service.start()
        assert service.pid == pid and service.address == address and service.alive and service.restarts == 0
        # (in a session of its own: a Ctrl-C at the terminal reaches the client, which stops the service)
        assert os.getsid(service.pid) == service.pid != os.getsid(0)
    finally:
        service.stop()


def test_a_local_service_that_ended_is_restarted_on_its_port_saying_so_in_one_warning(caplog):
    """docs/hil.md: "If it ends in the middle of a run ... the client restarts it, on the same port
    when it is free"; "its client reports a restart as one warning line"."""
    service = LocalService("reference")
    try:
        service.start()
        pid, address = service.pid, service.address
        os.kill(pid, signal.SIGKILL)
        assert service._process.wait(timeout=10) == -signal.SIGKILL and not service.alive
        with caplog.at_level(logging.WARNING, logger="delgrad_hil.supervisor"):
            assert service.ensure_running() is True
        assert service.alive and service.pid != pid and service.address == address and service.restarts == 1
        assert [record.getMessage() for record in caplog.records] == \
            ["the local service ended (killed by signal 9); restarting it"]  # (it said "exit status -9")
        assert service.ensure_running() is False and service.restarts == 1  # (running: nothing to do)
    finally:
        service.stop()


def test_a_local_service_that_cannot_start_says_why_and_keeps_no_process():
    service = LocalService("no-such-device")
    with pytest.raises(dg.BackendUnavailable, match=r"^the local mock-hil service for device 'no-such-device' did not "
                                                    r"start: .*no backend 'no-such-device' is installed") as raised:
        service.start()
    assert not raised.value.retryable and service.pid is None and service.address is None
    service.stop()
    assert not os.path.exists(service._log_path)
    slow = LocalService("reference", startup_timeout_s=0.01)  # ("how long to wait for the service to report ...")
    try:
        with pytest.raises(dg.BackendUnavailable, match="'reference' did not start"):
            slow.start()
        assert slow.pid is None and slow.address is None
    finally:
        slow.stop()


def test_a_local_service_that_did_not_start_leaves_no_log_once_dropped():
    """(_end: "End the process and remove the log of a LocalService that was never stopped
    (dropped, or alive at exit)"; a failed start left its log behind)"""
    import gc

    service = LocalService("no-such-device")
    log = service._log_path
    with pytest.raises(dg.BackendUnavailable, match="did not start"):
        service.start()
    del service
    gc.collect()
    try:
        assert not os.path.exists(log)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(log)


def test_a_backend_whose_local_service_did_not_start_leaves_no_log(monkeypatch, tmp_path):
    """(HilBackend stops the local service whose start failed; checked while the traceback still
    holds the service, so that not its collection but the stop removes the log)"""
    import tempfile

    import delgrad_hil._supervisor as supervisor

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(supervisor, "_BOOT", "import sys; sys.exit('no service today')")
    network, inputs = network_and_inputs(kind="none", tau_ratio=2.0)
    with HilBackend(device="reference") as backend:
        ran = backend.represent(network)
        with pytest.raises(dg.BackendUnavailable, match="did not start: no service today") as raised:
            backend.execute(ran, inputs, seed=0)
        assert raised.traceback and list(tmp_path.iterdir()) == []


def test_jobs_in_flight_answered_by_a_restarted_service(start_service):
    """(a greeting from inside the batch waited for the lock the batch held: execute_many hung
    for ever once a restarted service answered)"""
    network, inputs = network_and_inputs(kind="none", tau_ratio=2.0)
    with HilBackend(device="reference", timeout_s=2, attempts=5) as backend:
        ran = backend.represent(network)
        backend.execute(ran, inputs, seed=0)
        os.kill(backend.local_service.pid, signal.SIGKILL)
        assert wait_for(lambda: not backend.local_service.alive)
        requests = [dg.ExecutionRequest(ran, inputs, None, seed) for seed in range(1, 6)]
        results = _run_in_thread(lambda: backend.execute_many(requests), timeout_s=60)
    with dg.get_backend("reference") as reference:
        expected = reference.execute_many(requests)
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got.output_spike_times, want.output_spike_times)


def _run_in_thread(call, timeout_s: float):
    """`call()` in a thread; fails the test instead of hanging it."""
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(value=call()), daemon=True)
    thread.start()
    thread.join(timeout_s)
    assert not thread.is_alive(), f"no answer within {timeout_s} s (hung)"
    return outcome["value"]


# ---------------------------------------------------------------------------- crashes, give-ups, stops
def test_a_job_that_crashes_the_device_is_refused_after_its_second_crash_and_the_service_serves_on(start_service):
    """(each attempt used to stop the service: a supervisor restarted it for every client, and the
    client retried until its attempts were used up)"""
    service = start_service(device_options={"crash_seed": 7})
    with _client(service, attempts=5, backoff_s=0.01) as backend, _client(service) as other:
        (poison,) = _requests(backend, 1, seed0=7)
        with pytest.raises(dg.BackendError, match=r"execute job [0-9a-f]{16}\.\.\. crashed the device process 2 "
                                                  r"times .*does not run it again") as refused:
            backend.execute(poison)
        assert type(refused.value) is dg.BackendError and backend.retries == 1  # (once, after the first crash)
        (fine,) = _requests(other, 1, seed0=1)
        result = other.execute(fine)
        with pytest.raises(dg.BackendError, match="crashed the device process 2 times"):
            other.execute(poison)  # (refused at once, for every client: the device is not crashed again)
        status = other.status(executions=True)
    assert service.alive and service.restarts == 0 and status["uptime_s"] > 0
    assert status["device_restarts"] == 2 and status["crashed_jobs"] == {poison.digest: 2} \
        and status["crashed_jobs_counted"] == 1
    assert poison.digest not in status["executions"] and status["executed"] == 1
    _assert_same_results([result], _device_results([fine]))


def _raw_job(context, service, request, client: str):
    """A DEALER socket that has sent `request` as `client` (without a deadline)."""
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(service.address)
    socket.send_multipart(signed(service.token, "execute", request.to_bytes(), client=client, job=request.digest))
    return socket


def test_a_queued_job_whose_client_timed_out_never_starts_and_the_same_job_of_another_client_does(start_service):
    """(the service used to run a job nobody waited for any more)"""
    service = start_service(device_options={"job_delay_s": 0.7})
    status = lambda: _reply(service, signed(service.token, "status", executions=True))["info"]  # noqa: E731
    with _client(service, timeout_s=0.2, job_timeout_s=0.3, attempts=1) as impatient, zmq.Context() as context:
        running, next_, job = _requests(impatient, 3)
        sockets = [_raw_job(context, service, running, "busy")]
        assert wait_for(lambda: status()["running"] is not None)
        sockets.append(_raw_job(context, service, next_, "busy"))  # (held by the device to run next)
        assert wait_for(lambda: status()["next"] is not None)
        with pytest.raises(dg.ExecutionTimeout, match="the service says it is queued"):
            impatient.execute(job)
        sockets.append(_raw_job(context, service, job, "patient"))  # the same job, waited for
        assert sockets[-1].poll(10_000)
        answer = decode(sockets[-1].recv_multipart(), Signer(service.token.encode()), replies=True)
        assert answer.type == "result"
        for socket in sockets:
            socket.close()
    info = status()
    assert info["executions"][job.digest] == 1 and info["expired"] == 1 and info["queues"] == {}


def test_a_graceful_stop_ends_a_job_that_outlasts_the_grace_period_at_once(start_service):
    """(the device process got 2 s more to end by itself, which a running job never does)"""
    service = start_service(device_options={"job_delay_s": 30}, serve_arguments=["--shutdown-grace-s", "0.5"])
    with _client(service) as backend:
        (request,) = _requests(backend, 1)
    with zmq.Context() as context:
        socket = _raw_job(context, service, request, "one")
        assert wait_for(lambda: _reply(service, signed(service.token, "status"))["info"]["running"] is not None)
        started = time.monotonic()
        os.kill(service.pid, signal.SIGTERM)
        assert socket.poll(10_000)
        answer = decode(socket.recv_multipart(), Signer(service.token.encode()), replies=True).header
        assert service._process.wait(timeout=10) == 0
        stopped_s = time.monotonic() - started
        socket.close()
    assert answer["code"] == "shutting_down" and "stopped while running the job" in answer["message"]
    assert 0.5 <= stopped_s < 2.0, stopped_s  # (2.5 s when the device process got 2 s more)


def test_a_client_gives_up_on_a_dead_service_after_its_attempts_times_timeout_s(start_service):
    """(a job's attempt waited `timeout_s` for an answer, then as long again for the answer to a
    probe: with the defaults a dead service was given up after 50 s instead of 25)"""
    service = start_service()
    with _client(service, timeout_s=0.5, attempts=3, backoff_s=0.01, max_backoff_s=0.01) as backend:
        (request,) = _requests(backend, 1)
        os.kill(service.pid, signal.SIGKILL)
        assert wait_for(lambda: not service.alive)
        started = time.monotonic()
        with pytest.raises(dg.BackendUnavailable, match=rf"no answer from {service.address} after 3 attempts"):
            backend.execute(request)
        given_up_s = time.monotonic() - started
    assert 1.5 <= given_up_s < 2.6, given_up_s  # (3 s when each attempt waited twice)


def test_a_result_answering_another_job_than_the_one_asked_is_refused():
    """A reply's `job` must be the job id asked for (docs/hil-protocol.md: the job id is the
    request's digest); a valid result of another job is an InvalidResultError, never returned."""
    from delgrad_hil._protocol import Message

    network, inputs = network_and_inputs(batch=4)
    with dg.get_backend("reference") as reference:
        request = dg.ExecutionRequest(network, inputs, None, 0)
        payload = reference.execute(request).to_bytes()
    other = dg.ExecutionRequest(network, inputs, None, 1)
    reply = Message({"type": "result", "job": other.digest, "cached": False, "run_s": 0.0, "service": "0" * 16},
                    payload)
    backend = HilBackend(device="reference")
    try:
        assert backend._result(Message({**reply.header, "job": request.digest}, payload), request.digest) \
            .output_spike_times.shape == (4, network.sizes[-1])
        with pytest.raises(dg.InvalidResultError,
                           match=f"answered job {other.digest[:12]} to job {request.digest[:12]}"):
            backend._result(reply, request.digest)
    finally:
        backend.close()


def test_a_job_reply_tells_at_most_20_of_the_devices_warnings():
    """docs/hil-protocol.md: a job reply's optional `warnings` are "the warnings the device gave
    while it ran the job, one string each, ..., at most 20" (the first ones)."""
    from delgrad_hil._service import DeviceService

    for count in (20, 21, 30):
        told = [f"UserWarning: warning {k}" for k in range(count)]
        result = SimpleNamespace(to_bytes=lambda: b"result bytes")
        service = object.__new__(DeviceService)  # (only what a job's outcome needs: no socket, no device process)
        service.device = SimpleNamespace(collect=lambda kind, told=told, result=result: (result, 0.5, told))
        service.max_message_bytes, service.service_id = 2**20, "0" * 16
        outcome = service._outcome(SimpleNamespace(kind="execute", job_id="a" * 64))
        assert outcome.header["warnings"] == told[:20] and outcome.payload == b"result bytes"


def test_a_client_notices_at_once_that_its_local_service_ended_instead_of_waiting_out_timeout_s():
    """docs (ServiceClient, `service`): "a wait stops as soon as its process has ended, and it is
    restarted before the next attempt" (the job the service ended on is not given timeout_s / 2
    and then timeout_s of silence)."""
    # (the calibration and two jobs, exit before the third reply)
    with HilBackend(device="hil-noisy", faults={"exit_after_jobs": 3}, timeout_s=30.0, attempts=2) as backend:
        requests = _requests(backend, 2)
        backend.execute(requests[0])
        started = time.monotonic()
        backend.execute(requests[1])
        took = time.monotonic() - started
        assert backend.local_service.restarts == 1
    assert took < 15.0, took  # (timeout_s / 2, when a silent service is probed)


def test_a_backoff_s_equal_to_max_backoff_s_is_taken():
    """docs (hil.md): "a `backoff_s` above `max_backoff_s` is refused" (every wait would be the
    cap); one equal to it is not above it."""
    backend = HilBackend(backoff_s=0.5, max_backoff_s=0.5)
    assert (backend.backoff_s, backend.max_backoff_s) == (0.5, 0.5)
    with pytest.raises(dg.InvalidValueError, match=r"^backoff_s: 0.6 s is above max_backoff_s \(0.5 s\)"):
        HilBackend(backoff_s=0.6, max_backoff_s=0.5)


def test_a_calibration_out_of_time_at_a_silent_service_is_raised_without_greeting_it_first(start_service):
    """docs (HilBackend._restart_named): "A job out of time is no refusal: greeting a silent service
    would first wait out every attempt" (here 20 x 0.5 s after a calibration_timeout_s of 1 s)."""
    service = start_service()
    network, _ = network_and_inputs(batch=4)
    with HilBackend(service.address, token=service.token, device="hil-noisy", timeout_s=0.5, attempts=20,
                    calibration_timeout_s=1.0) as backend:
        backend.status()  # (greeted while it answers)
        os.kill(service.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(dg.ExecutionTimeout, match="raise calibration_timeout_s"):
                backend.calibrate(network, seed=0)
            took = time.monotonic() - started
        finally:
            os.kill(service.pid, signal.SIGCONT)
    assert took < 5.0, took


def test_the_restart_of_a_local_service_is_not_told_again_as_that_of_a_shared_one():
    """docs (HilBackend._check_same_service): "The restart of a shared service is told (a local
    one's client restarted it and said so)": no warning that the service at an address was restarted."""
    with HilBackend(device="hil-noisy", faults={"exit_after_jobs": 3}, timeout_s=5.0, attempts=5) as backend:
        requests = _requests(backend, 3)
        with warnings.catch_warnings(record=True) as told:
            warnings.simplefilter("always")
            for request in requests:
                backend.execute(request)
        assert backend.local_service.restarts == 1
    assert not [w for w in told if "was restarted" in str(w.message)], [str(w.message) for w in told]


# ---------------------------------------------------------------------------- one service in this process
@contextlib.contextmanager
def _service_in_process(tmp_path, **service_options):
    """A DeviceService built in this process and never served, its device process replaced by a
    stand-in whose every job returns b"result bytes": yields a namespace of the `service`, the
    replies it `sent` (decoded), `hand(frames)` and `ask(type, payload, **fields)`, which hand it
    one message and return the replies it sent at once, and `run_next_job()`, which runs the next
    queued job and returns the replies sent for it."""
    from delgrad_hil._service import DeviceService

    token = "a-token-of-sufficient-length"
    device = SimpleNamespace(name="reference", options={}, capabilities=dg.backend_info("reference").capabilities,
                             collect=lambda kind: (SimpleNamespace(to_bytes=lambda: b"result bytes"), 0.5, []))
    service = DeviceService(device, Signer(token.encode()), f"ipc://{tmp_path / 's'}", **service_options)
    sent = []
    service._send = lambda frames: sent.append(decode(frames[1:], Signer(token.encode()), replies=True))

    def hand(frames):
        sent.clear()
        service._handle([zmq.Frame(b"peer"), *map(zmq.Frame, frames)])
        return list(sent)

    def run_next_job():
        sent.clear()
        job = service.scheduler.take()
        service._record(job, service._outcome(job))
        service._answer_finished()
        return list(sent)

    try:
        yield SimpleNamespace(service=service, sent=sent, hand=hand, run_next_job=run_next_job,
                              ask=lambda message_type, payload=None, **fields:
                              hand(signed(token, message_type, payload, **fields)))
    finally:
        service._context.destroy(linger=0)
        os.close(service._queued_tx)
        os.close(service._queued_rx)


def _executes(seeds=(0,), **options):
    """Execution requests of one network and its inputs, one per seed."""
    network, inputs = network_and_inputs(**{"batch": 4, **options})
    return [dg.ExecutionRequest(network, inputs, None, seed) for seed in seeds]


def _execute(hub, request, client="c1"):
    return hub.ask("execute", request.to_bytes(), client=client, job=request.digest)


def test_health_hello_and_status_tell_the_documented_facts(tmp_path):
    """docs/hil-protocol.md: `health` tells ok, device, uptime_s and stopping only; `max_queue`
    is the limit of one client's queue; a status lists `executions` only when asked to."""
    with _service_in_process(tmp_path, max_queued_per_client=3, max_queued=50) as hub:
        (health,) = hub.ask("health")
        assert health.type == "health" and sorted(health.header["info"]) == ["device", "ok", "stopping", "uptime_s"]
        (welcome,) = hub.ask("hello")
        assert welcome.header["info"]["max_queue"] == 3
        (status,) = hub.ask("status")
        assert "executions" not in status.header["info"] and status.header["info"]["max_queue"] == 3
        (status,) = hub.ask("status", executions=True)
        assert status.header["info"]["executions"] == {}


def test_a_probe_tells_result_bytes_only_of_a_finished_job_with_a_result(tmp_path):
    """docs/hil-protocol.md (`job_state`): "with `finished`, `result_bytes` (the size of the
    reply's payload; absent for an error ...)"."""
    (request,) = _executes()
    with _service_in_process(tmp_path) as hub:
        probe = lambda: hub.ask("probe", client="c1", job=request.digest)[0].header  # noqa: E731
        assert probe()["state"] == "unknown" and "result_bytes" not in probe()
        assert _execute(hub, request) == []
        assert probe()["state"] == "queued" and "result_bytes" not in probe()
        (result,) = hub.run_next_job()
        assert result.type == "result" and result.payload == b"result bytes" and result.header["cached"] is False
        assert probe()["state"] == "finished" and probe()["result_bytes"] == len(b"result bytes")


def test_an_execute_whose_spike_times_alone_exceed_4_times_the_message_limit_is_too_large_before_it_runs(tmp_path):
    """docs/hil-protocol.md: "an execute whose result could not be sent (its spike times alone,
    batch x neurons x 8 bytes, above 4 times the limit) is `too_large`, before it runs"; at the
    limit exactly it is queued."""
    (request,) = _executes(sizes=(2, 60, 4), kind="none", batch=128)
    spike_bytes = 128 * 64 * 8  # batch x (60 + 4) neurons x 8 bytes
    assert len(request.to_bytes()) < spike_bytes // 4 - 1000  # (the request itself is below both limits)
    with _service_in_process(tmp_path, max_message_bytes=spike_bytes // 4) as hub:
        assert _execute(hub, request) == [] and hub.service.scheduler.status()["queues"] == {"c1": 1}
    with _service_in_process(tmp_path, max_message_bytes=spike_bytes // 4 - 1) as hub:
        (refused,) = _execute(hub, request)
        assert refused.header["code"] == "too_large" and hub.service.scheduler.status()["queues"] == {}
        assert refused.header["message"].startswith(f"the result of this request takes at least {spike_bytes:,} "
                                                    "bytes (batch 128 x 64 neurons x 8 bytes), above the reply "
                                                    f"limit of {spike_bytes - 4:,} bytes")


def test_the_jobs_of_one_network_share_one_network_object(tmp_path):
    """(the device then checks and represents the network of an evaluation's jobs once)"""
    requests = _executes(range(10))  # (more jobs than the 8 networks kept, all of one network)
    with _service_in_process(tmp_path) as hub:
        for request in requests:
            assert _execute(hub, request) == []
        works = [hub.service.scheduler.take().work for _ in requests]
    assert all(work.network is works[0].network for work in works) and works[0].network == requests[0].network


def test_a_stopping_service_refuses_new_jobs_and_still_answers_one_it_holds_the_result_of(tmp_path):
    """docs/hil-protocol.md (`shutting_down`): "the service is stopping: send the job again after
    its restart (a job it runs or holds the result of is still answered)"."""
    done, new = _executes((0, 1))
    with _service_in_process(tmp_path) as hub:
        _execute(hub, done)
        hub.run_next_job()
        hub.service._begin_shutdown()
        (refused,) = _execute(hub, new)
        assert refused.header["code"] == "shutting_down" and refused.header["retryable"] is True
        (answered,) = _execute(hub, done)
        assert answered.type == "result" and answered.header["cached"] is True and answered.payload == b"result bytes"


def test_a_job_beyond_a_full_queue_is_answered_busy_in_reply_to_its_message(tmp_path):
    """docs/hil-protocol.md: "the queues are full (`busy` ...)", retryable; the refusal answers
    the message refused (its `reply_to` is the message's nonce) and is counted."""
    first, second = _executes((0, 1))
    with _service_in_process(tmp_path, max_queued_per_client=1) as hub:
        assert _execute(hub, first) == []
        frames = signed("a-token-of-sufficient-length", "execute", second.to_bytes(), client="c1", job=second.digest)
        (refused,) = hub.hand(frames)
        assert refused.header["code"] == "busy" and refused.header["retryable"] is True
        assert refused.header["message"].startswith("the queues are full: 1 jobs of this client")
        assert refused.header["reply_to"] == decode(frames, Signer(b"a-token-of-sufficient-length")).header["nonce"]
        assert hub.ask("status")[0].header["info"]["refused.busy"] == 1


def test_a_fault_of_the_service_while_handling_a_message_is_answered_internal_and_it_serves_on(tmp_path,
                                                                                                monkeypatch):
    """Any message that cannot be served gets an error reply; nothing a client sends stops the
    service (here a fault of its scheduler)."""
    (request,) = _executes()
    with _service_in_process(tmp_path) as hub:
        monkeypatch.setattr(hub.service.scheduler, "submit", lambda *args: 1 / 0)
        (failed,) = _execute(hub, request)
        assert failed.header["code"] == "internal" and failed.header["message"] == \
            "the service failed: ZeroDivisionError"
        assert failed.header["reply_to"] is not None and hub.ask("health")[0].header["info"]["ok"] is True


def test_a_job_lost_with_the_device_process_is_answered_try_again_and_runs_when_sent_again(tmp_path):
    """A job whose device process died is answered "send the job again" (retryable, an error
    reply: no `cached` field) and not from the cache: sent again, it is queued to run."""
    from collections import deque

    (request,) = _executes()
    with _service_in_process(tmp_path) as hub:
        _execute(hub, request)
        crashed = deque([hub.service.scheduler.take()])
        hub.service._answer_crashed(dg.BackendUnavailable("the device process ended"), crashed)
        hub.service._answer_finished()
        (answer,) = hub.sent
        assert answer.header["code"] == "device_error" and answer.header["retryable"] is True
        assert "send the job again" in answer.header["message"] and "cached" not in answer.header
        assert _execute(hub, request) == [] and hub.service.scheduler.status()["queues"] == {"c1": 1}


def test_injected_faults_drop_job_replies_and_answer_jobs_busy_and_status_counts_them(tmp_path):
    """docs (FaultPlan): `drop_fraction` is the fraction of job replies dropped, `busy_fraction`
    that of job requests answered "busy" instead of queued."""
    from delgrad_hil import FaultPlan

    (request,) = _executes()
    with _service_in_process(tmp_path, faults=FaultPlan(drop_fraction=1.0)) as hub:
        _execute(hub, request)
        assert hub.run_next_job() == []
        (status,) = hub.ask("status")  # (not a job reply: sent)
        assert status.header["info"]["dropped"] == 1 and status.header["info"]["executed"] == 1
    with _service_in_process(tmp_path, faults=FaultPlan(busy_fraction=1.0)) as hub:
        (refused,) = _execute(hub, request)
        assert refused.header["code"] == "busy" and refused.header["message"] == "the device is busy (injected fault)"
        (status,) = hub.ask("status")
        assert status.header["info"]["busy"] == 1 and status.header["info"]["queues"] == {}
