"""Faults a hostile-user pass found in mock-hil and its service: training defaults of a shared
service's device, stale and late replies, job deadlines of overlapped jobs, many attempts,
odd addresses, replies at the size limit, the order of a stopping service's checks, SIGHUP."""

import contextlib
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from _hil import (install_test_devices, network_and_inputs, raw_exchange, service_holding_a_reply, signed, wait_for,
                  zmq)

import delgrad_core as dg
from delgrad_core.cli import main
from delgrad_core.testing import cli_runner
from delgrad_core.training import config_with_defaults

from delgrad_hil import HilBackend
from delgrad_hil._address import check_address
from delgrad_hil._auth import Signer
from delgrad_hil._client import ServiceClient, _size_text
from delgrad_hil._protocol import ProtocolError, decode, encode, error_fields, new_header

TOKEN = "a-token-of-sufficient-length"

# a device whose training defaults depend on its options, as the emulator's do (input_duplication)
WIDE_DEVICE = """
from _hil_noisy_device import CAPABILITIES, NoisyDevice
from delgrad_core import hookimpl


class WideDevice(NoisyDevice):
    name = "hil-wide"

    def __init__(self, hidden_default=12, **options):
        super().__init__(**options)
        self.hidden_default = hidden_default


def training_defaults(options):
    return {"hidden": options.get("hidden_default", 12)}


@hookimpl
def delgrad_register_backends(register):
    register("hil-wide", WideDevice, capabilities=CAPABILITIES, training_defaults=training_defaults)
"""


@pytest.fixture(scope="module", autouse=True)
def devices(tmp_path_factory):
    """`hil-noisy` and `hil-wide`, here and in the services' processes."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        install_test_devices(tmp_path_factory.mktemp("devices"), monkeypatch,
                             [("delgrad-hil-wide", "hil_wide_device", WIDE_DEVICE, "hil-wide")])
        yield
    dg.refresh_plugins()


def _silent_address() -> str:
    """A loopback tcp address above port 47000 where nothing listens."""
    while True:
        port = random.randint(47001, 60999)
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return f"tcp://127.0.0.1:{port}"


def _requests(backend, n, batch=8):
    network, inputs = network_and_inputs(batch=batch)
    calibration = backend.calibrate(network, seed=0)
    ran = backend.represent(network)
    return [dg.ExecutionRequest(ran, inputs, calibration, seed) for seed in range(n)]


# ---------------------------------------------------------------------------- training defaults
def test_training_defaults_and_identity_follow_the_device_options_of_a_service_at_an_address(start_service,
                                                                                             monkeypatch):
    """(the defaults were those of the client's `device_options`, always {} with an address:
    a service of an emulator with input_duplication=2 trained with inputs repeated 5x)"""
    service = start_service("hil-wide", {"hidden_default": 7, "chip": 2})
    monkeypatch.setenv("DELGRAD_HIL_TOKEN", service.token)
    options = {"address": service.address, "device": "hil-wide"}
    assert config_with_defaults({"backend": "mock-hil", "backend_options": options}).hidden == 7
    assert config_with_defaults({"backend": "hil-wide", "backend_options": {"hidden_default": 7}}).hidden == 7
    assert config_with_defaults({"backend": "mock-hil", "backend_options": {"device": "hil-wide"}}).hidden == 12
    with HilBackend(**options) as backend, dg.get_backend("hil-wide", hidden_default=7, chip=2) as same, \
            dg.get_backend("hil-wide") as other:
        identity = backend.device_identity(backend.calibrate(seed=0))
        assert identity == same.device_identity(same.calibrate(seed=0))
        assert identity != other.device_identity(other.calibrate(seed=0))


@pytest.mark.parametrize("command", [["train", "--epochs", "1"], ["sweep", "--epochs", "1", "--seeds", "1"]])
@pytest.mark.parametrize("value", ["3", "[1, 2]"])
def test_device_options_that_are_no_table_are_a_usage_error_naming_them(command, value, tmp_path):
    """(train, evaluate and sweep said "its training_defaults(options) failed: TypeError: 'int'
    object is not iterable"; calibrate named the option)"""
    result = cli_runner().invoke(main, [*command, "--backend", "mock-hil", "--backend-option",
                                        f"device_options={value}", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "device_options: expected a table of options, got " in result.output, \
        result.output


def test_device_options_none_are_the_defaults_and_an_unknown_device_option_is_named_as_one():
    """(device_options=None, the backend's own default, lost the device's training settings; an
    unknown device option lost its "device_options:")"""
    assert {**config_with_defaults({"backend": "mock-hil", "backend_options": {"device_options": None}}).to_dict(),
            "backend_options": None} == {**config_with_defaults({"backend": "mock-hil"}).to_dict(),
                                         "backend_options": None}
    with pytest.raises(dg.InvalidValueError, match=r"^device_options: backend 'bss2-emulator': unknown option\(s\) "
                                                   r"chipx") as raised:
        dg.get_backend("mock-hil", device_options={"chipx": 1})
    assert not isinstance(raised.value, dg.UnknownOptionError)  # (its names are not mock-hil's options)


def test_training_defaults_of_a_service_that_does_not_answer_are_those_of_the_device_named(monkeypatch):
    """(a SLURM login node that cannot reach the service plans the sweep its compute nodes run:
    the config is built without it, asked once; the run itself needs the service)"""
    monkeypatch.setenv("DELGRAD_HIL_TOKEN", TOKEN)
    options = {"address": _silent_address(), "device": "hil-wide", "timeout_s": 0.5, "attempts": 5}
    started = time.monotonic()
    # (said once: the run then met a refusal, e.g. of the encoder's copies, that blamed its settings)
    with pytest.warns(UserWarning, match=r"the training settings are those of device 'hil-wide' with its default "
                                         r"options, as the service at .* did not say") as told:
        for _ in range(4):  # (asked once, not for every run a sweep plans: that took 91 s for 12 runs)
            assert config_with_defaults({"backend": "mock-hil", "backend_options": options}).hidden == 12
    assert time.monotonic() - started < 0.5 * 4 and len(told) == 1  # (asked 4 times: 4 x 5 attempts of 0.5 s)
    monkeypatch.delenv("DELGRAD_HIL_TOKEN")  # (a login node without the token that compute nodes have)
    with pytest.warns(UserWarning, match="did not say which options it runs"):
        assert config_with_defaults({"backend": "mock-hil", "backend_options": {**options, "timeout_s": 0.4}}).hidden \
            == 12


@pytest.mark.parametrize("command", [["train", "--epochs", "1", "--no-progress"],
                                     ["sweep", "--hidden", "3", "--delays", "none", "--seeds", "1", "--slurm-script",
                                      "job.sh"]])
def test_a_service_owning_another_device_is_refused_at_once_without_a_warning_of_defaults(start_service, monkeypatch,
                                                                                          tmp_path, command):
    """(a warning that the settings were the named device's defaults, as the service "did not say",
    came before the error; a sweep's job script was written for a service that refuses its jobs)"""
    service = start_service("reference")
    monkeypatch.setenv("DELGRAD_HIL_TOKEN", service.token)
    monkeypatch.chdir(tmp_path)
    result = cli_runner().invoke(main, [*command, "--backend", "mock-hil", "--backend-option",
                                        f"address={service.address}", "--backend-option", "device=bss2-emulator",
                                        "--out", "out"])
    assert result.exit_code == 1 and result.stderr == (f"Error: the service at {service.address} owns device "
                                                       "'reference', not 'bss2-emulator'\n"), result.output
    assert not (tmp_path / "out").exists() and not (tmp_path / "job.sh").exists()


def test_a_run_set_up_before_its_service_answered_is_refused_where_it_took_a_setting_the_services_options_change(
        start_service, monkeypatch):
    """(a service started a few seconds after the run: the run took the defaults of the device's
    default options, trained on the service's other options, and exited 0)"""
    monkeypatch.delenv("DELGRAD_HIL_TOKEN", raising=False)
    address = _silent_address()
    options = {"address": address, "device": "hil-wide", "timeout_s": 0.5}
    with pytest.warns(UserWarning, match="did not say which options it runs"):
        taken = config_with_defaults({"backend": "mock-hil", "backend_options": options}).to_dict()
    assert taken["hidden"] == 12
    service = start_service("hil-wide", {"hidden_default": 7}, serve_arguments=["--address", address])
    monkeypatch.setenv("DELGRAD_HIL_TOKEN", service.token)
    with HilBackend(**options) as backend:
        with pytest.raises(dg.BackendUnavailable, match=re.escape(
                f"the service at {address} runs device 'hil-wide' with options {{'hidden_default': 7}}, which set "
                "hidden 7; this run has hidden 12, the defaults of the device's default options, taken as the service "
                "did not answer when the run's settings were made: give the settings its options need, or run again "
                "now that it answers")):
            backend.check_training_settings(taken)
        backend.check_training_settings({**taken, "hidden": 7})  # (given, or stored by the run)
        backend.check_training_settings({**taken, "hidden": [7, 5]})  # (given otherwise: the user's to choose)
        backend.check_training_settings({"encoder_options": {}})  # (a run that uses no hidden: evaluate)
    assert config_with_defaults({"backend": "mock-hil", "backend_options": options}).hidden == 7  # (asked anew)


def test_a_run_set_up_before_its_service_answered_goes_on_with_the_settings_given_or_stored(monkeypatch, tmp_path):
    """(a SLURM script that starts the service and the run together: the run was refused at its
    greeting though it gave the settings the service's options need, and its evaluation though
    its settings are stored)"""
    from delgrad_hil import LocalService

    address = _silent_address()
    arguments = ["--backend", "mock-hil", "--backend-option", f"address={address}", "--backend-option",
                 "device=hil-wide", "--backend-option", "timeout_s=0.5", "--backend-option", "attempts=40"]
    train = ["train", *arguments, "--delays", "axonal", "--epochs", "1", "--no-progress", "--out"]
    for command, status, said in ((train + [str(tmp_path / "run"), "--hidden", "7"], 0, "test accuracy"),
                                  (["evaluate", str(tmp_path / "run")], 0, "test accuracy on mock-hil"),
                                  (train + [str(tmp_path / "took")], 1, "this run has hidden 12, the defaults of")):
        service = LocalService("hil-wide", {"hidden_default": 7}, serve_arguments=["--address", address])
        monkeypatch.setenv("DELGRAD_HIL_TOKEN", service.token)
        starting = threading.Timer(1.0, service.start)  # (after the run's settings are made: 1 attempt of 0.5 s)
        starting.start()
        try:
            result = cli_runner().invoke(main, command)
        finally:
            starting.join()
            service.stop()
        assert result.exit_code == status and said in result.output, result.output
        # (evaluate has the run's settings: no defaults were taken, and it said it took them)
        assert ("did not say which options it runs" in result.output) == (command[0] == "train")


# ---------------------------------------------------------------------------- overlapped jobs
def test_a_late_probe_reply_is_dropped_by_the_next_execute_many():
    """(the probe of a job answered after timeout_s / 2 came back during the next execute_many,
    which raised "answered 'job_state' to a request for 'result'")"""
    network = dg.Network.feedforward([4, 10, 3], delay_kind="synaptic", seed=0)
    requests = [dg.ExecutionRequest(network, network_and_inputs(seed=seed)[1][:, :4], None, seed)
                for seed in range(6)]
    with HilBackend(device="reference", faults={"latency_s": 0.3}, timeout_s=0.4) as backend, \
            dg.get_backend("reference") as reference:
        backend.execute(requests[0])  # (probed after 0.2 s, answered after 0.3 s: the probe's answer comes later)
        results = backend.execute_many(requests[1:])
        expected = reference.execute_many(requests[1:])
    for result, same in zip(results, expected, strict=True):
        assert result.output_spike_times.tobytes() == same.output_spike_times.tobytes()


def test_mock_hil_works_on_a_host_whose_name_a_client_id_cannot_hold(monkeypatch):
    """A client calls itself after its host; a host name such as "lab+pc ü" (characters a client
    id may not have) gave every request "hello header field 'client': expected ..." and mock-hil
    could not be used on that host at all."""
    host = os.uname()
    monkeypatch.setattr(os, "uname", lambda: type(host)((*host[:1], "lab+pc \u00fc", *host[2:])))
    network, inputs = network_and_inputs(kind="none", tau_ratio=2.0)
    with HilBackend(device="reference") as backend:
        backend.execute(backend.represent(network), inputs, seed=0)
        assert backend.status()["jobs_run"] >= 1


@pytest.mark.parametrize(("change", "message"), [
    ({"max_message_bytes": None}, "sent a welcome whose max_message_bytes is None, not a whole number >= 1"),
    ({"max_message_bytes": "abc"}, "sent a welcome whose max_message_bytes is 'abc', not a whole number >= 1"),
    ({"max_message_bytes": -5}, "sent a welcome whose max_message_bytes is -5, not a whole number >= 1"),
    ({"max_queue": 0}, "sent a welcome whose max_queue is 0, not a whole number >= 1"),
    ({"capabilities": {"x": 1}}, "did not describe its device: its capabilities are unreadable"),
])
def test_a_welcome_that_breaks_the_protocol_is_refused_naming_its_field(change, message):
    """A service of another implementation (docs/hil-protocol.md) whose welcome has no valid limits
    or capabilities: a KeyError, a ValueError or a refusal "above the service's limit of -5 bytes"."""
    from delgrad_hil._backend import DeviceRefused

    info = {"ok": True, "stopping": False, "protocol": 2, "service_id": "0" * 16, "pid": 1, "device": "reference",
            "device_options": {}, "capabilities": dg.get_backend("reference").capabilities.to_dict(),
            "max_message_bytes": 2**20, "max_queue": 16, "replay_window_s": 60.0, "uptime_s": 1.0}
    welcome = SimpleNamespace(header={"info": {**info, **change}})
    client = SimpleNamespace(address="tcp://127.0.0.1:9", request=lambda *arguments, **options: welcome)
    with pytest.raises(DeviceRefused, match=re.escape(message)):
        HilBackend("tcp://127.0.0.1:9", token="t" * 16, device="reference")._greet(client)


def test_execute_many_keeps_no_more_jobs_in_flight_than_the_service_queues(start_service):
    """(4 jobs in flight against a service whose queue holds 1: 111 busy refusals in one run, each
    job of the overlap then sent again on its own)"""
    service = start_service(device_options={"job_delay_s": 0.05}, serve_arguments=["--max-queue", "1"])
    with HilBackend(service.address, token=service.token, device="hil-noisy", jobs_in_flight=4) as backend:
        requests = _requests(backend, 12)
        with dg.get_backend("hil-noisy") as device:
            expected = device.execute_many([dg.ExecutionRequest(request.network, request.input_spike_times,
                                                                device.calibrate(seed=0), request.seed)
                                            for request in requests])
        results = backend.execute_many(requests)
        assert backend.status()["refused.busy"] == 0 and backend.retries == 0
    for result, same in zip(results, expected, strict=True):
        assert result.output_spike_times.tobytes() == same.output_spike_times.tobytes()


def test_execute_many_keeps_job_timeout_s_and_the_service_drops_the_jobs_left_queued(start_service):
    """(execute_many waited for its jobs for ever and sent no expires_s: the jobs of a client
    that had given up, or died, still ran)"""
    service = start_service(device_options={"job_delay_s": 1.0})
    with HilBackend(service.address, token=service.token, device="hil-noisy", timeout_s=5, job_timeout_s=1.5,
                    jobs_in_flight=4) as backend:
        requests = _requests(backend, 5)
        started = time.monotonic()
        # (the first goes alone, with its calibration; of the next four one runs, one is held
        # next, two are queued; the second's time is up while it runs)
        with pytest.raises(dg.ExecutionTimeout, match=r"^backend .mock-hil.: job [0-9a-f]{12} did not finish in time "
                                                      r"at .* \(no reply within job_timeout_s=1.5 s, with 3 jobs of "
                                                      r"the batch"):
            backend.execute_many(requests)
        assert time.monotonic() - started < 1.0 + 1.5 + 2.0  # (it waited for ever)
        assert wait_for(lambda: backend.status()["expired"] == 1, timeout_s=10)
        status = backend.status(executions=True)
    assert requests[-1].digest not in status["executions"] and status["queues"] == {}


# ---------------------------------------------------------------------------- option bounds
def test_many_attempts_back_off_up_to_their_cap_without_overflow():
    """(2 ** (attempt - 2) overflowed a float at attempt 1026)"""
    client = ServiceClient(_silent_address(), Signer(TOKEN.encode()), "many-attempts", timeout_s=0.001,
                           attempts=1030, backoff_s=1e-6, max_backoff_s=1e-6)
    try:
        with pytest.raises(dg.BackendUnavailable, match="after 1030 attempts"):
            client.request("health", expect="health")
    finally:
        client.close()
    with pytest.raises(dg.InvalidValueError, match=r"^attempts: expected an integer from 1 to 1000, got 1001"):
        HilBackend(attempts=1001)
    assert HilBackend(attempts=1000).attempts == 1000


def test_the_wait_before_each_retry_doubles_from_backoff_s_up_to_max_backoff_s_with_jitter(monkeypatch):
    """docs (ServiceClient): "Wait before the second attempt, doubled each time up to the maximum;
    each wait is drawn uniformly from [w/2, w]": with backoff_s 0.1 and max_backoff_s 0.3 the
    waits before attempts 2 to 5 lie in [0.05, 0.1], [0.1, 0.2], [0.15, 0.3] and [0.15, 0.3]."""
    waits = []
    monkeypatch.setattr(time, "sleep", waits.append)  # (the client's only sleeps are its waits)
    client = ServiceClient(_silent_address(), Signer(TOKEN.encode()), "backing-off", timeout_s=0.001, attempts=5,
                           backoff_s=0.1, max_backoff_s=0.3)
    try:
        with pytest.raises(dg.BackendUnavailable, match="after 5 attempts"):
            client.request("health", expect="health")
    finally:
        client.close()
    ceilings = [0.1, 0.2, 0.3, 0.3]
    assert len(waits) == 4 and all(w / 2 <= wait <= w for wait, w in zip(waits, ceilings)), waits


@pytest.mark.parametrize("port", ["²", "١٢", "9" * 5000], ids=["superscript", "arabic-indic", "5000-digits"])
def test_a_port_of_other_than_ascii_digits_is_refused_naming_the_option(port, tmp_path):
    """(str.isdigit takes '²', which int() does not: a traceback, or "its factory failed: ValueError")"""
    address = f"tcp://127.0.0.1:{port}"
    with pytest.raises(dg.InvalidValueError, match=r"^address: (expected tcp://HOST:PORT|the port must lie in)"):
        check_address(address)
    with pytest.raises(dg.InvalidValueError, match="^address: "):
        HilBackend(address, token=TOKEN)
    served = cli_runner().invoke(main, ["hil", "serve", "--address", address], env={"DELGRAD_HIL_TOKEN": TOKEN})
    assert served.exit_code == 2 and "--address: " in served.stderr and "Traceback" not in served.output
    trained = cli_runner().invoke(main, ["train", "--backend", "mock-hil", "--backend-option", f"address={address}",
                                         "--epochs", "1", "--out", str(tmp_path / "run")],
                                  env={"DELGRAD_HIL_TOKEN": TOKEN})
    assert trained.exit_code == 2 and "address: " in trained.stderr and "failed" not in trained.output


@pytest.mark.parametrize(("address", "valid"), [("tcp://[::1]:5555", True), ("tcp://[fe80::1%lo]:80", True),
                                              ("tcp://[]:5555", False), ("tcp://[::1:5555", False),
                                              ("tcp://::1:5555", False), ("tcp://my host:5555", False),
                                              ("ipc://", False), ("tcp://127.0.0.1:00000000080", True),
                                              ("tcp://host/path:5555", False), ("tcp://99999", False)],
                         ids=["loopback", "scoped", "empty-brackets", "unclosed", "unbracketed", "space", "no-path",
                              "leading-zeros", "slash", "no-port"])
def test_an_ipv6_host_is_in_brackets_and_other_malformed_addresses_are_refused(address, valid):
    """`check_address`: tcp://HOST:PORT with "an IPv6 host in brackets" (as in URLs, RFC 3986):
    brackets holding nothing are no host; neither is a name with a space or a slash, nor ipc:// a path; a port
    written with leading zeros is its number (80); tcp://99999 has no port (not a port out of range)."""
    if valid:
        assert check_address(address) == address
    else:
        with pytest.raises(dg.InvalidValueError, match="address: expected tcp://HOST:PORT or ipc://PATH"):
            check_address(address)


@pytest.mark.parametrize(("port", "valid"), [(1, True), (65535, True), (0, False), (65536, False)])
def test_a_port_to_connect_to_is_any_tcp_port_from_1_to_65535(port, valid):
    """A TCP port is a 16-bit number (RFC 793), 0 meaning any free one: only a service may ask for it."""
    address = f"tcp://127.0.0.1:{port}"
    if valid:
        assert check_address(address) == address
    else:
        with pytest.raises(dg.InvalidValueError, match=f"the port must lie in 1..65535, got {port} in"):
            check_address(address)


@pytest.mark.parametrize(("port", "valid"), [(0, True), (65535, True), (65536, False), (70000, False)])
def test_a_port_to_serve_on_is_any_tcp_port_from_0_to_65535(port, valid):
    """docs/hil.md: `delgrad hil serve --address` takes port 0 (any free port); a port out of range
    is refused naming the range a service accepts, 0..65535 (not the client's 1..65535)."""
    address = f"tcp://127.0.0.1:{port}"
    if valid:
        assert check_address(address, "--address", serving=True) == address
    else:
        with pytest.raises(dg.InvalidValueError, match=f"^--address: the port must lie in 0..65535, got {port} in"):
            check_address(address, "--address", serving=True)


def test_a_relative_ipc_address_is_refused_naming_its_absolute_path(tmp_path, monkeypatch):
    """(a run recorded it as given: evaluated or resumed from another folder, it reached another
    socket; the run's token_file is recorded absolute)"""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(dg.InvalidValueError, match=f"^address: ipc://s.sock is relative to the current folder.*"
                                                   f"give the absolute path: ipc://{tmp_path}/s.sock$"):
        HilBackend("ipc://s.sock", token=TOKEN)
    for address in (f"ipc://{tmp_path}/s.sock", "ipc://@delgrad-hil-abstract"):
        assert HilBackend(address, token=TOKEN).address == address


# ---------------------------------------------------------------------------- replies at the size limit
@contextlib.contextmanager
def _fake_router(address: str, ready: threading.Event):
    """A ROUTER socket bound at `address` (`ready` is set once it is) and the signer of TOKEN:
    a fake service's end of the protocol."""
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    router.bind(address)
    ready.set()
    try:
        yield router, Signer(TOKEN.encode())
    finally:
        router.close(linger=2000)
        context.term()


def _fake_service(address: str, payload_sizes: list, ready: threading.Event):
    """Answer one request per size in `payload_sizes` with a signed result of that many bytes."""
    with _fake_router(address, ready) as (router, signer):
        for size in payload_sizes:
            if not router.poll(20_000):
                return
            routing_id, *frames = router.recv_multipart()
            request = decode(frames, signer).header
            header = new_header("result", reply_to=request["nonce"], job=request["job"], cached=False, run_s=0.0,
                                service="0" * 16)
            router.send_multipart([routing_id, *encode(signer, header, b"r" * size)])


@contextlib.contextmanager
def _client_of(service, address: str, ready: threading.Event, name: str, *, done=None, **options):
    """A ServiceClient `name` (with `options`) of the fake `service`, run in a thread that sets
    `ready` once it listens at `address`; at the end the client is closed, `done` (if given) set
    and the thread joined."""
    server = threading.Thread(target=service)
    server.start()
    assert ready.wait(10)
    client = ServiceClient(address, Signer(TOKEN.encode()), name, **options)
    try:
        yield client
    finally:
        client.close()
        if done is not None:
            done.set()
        server.join(30)


def test_a_result_at_the_reply_limit_arrives_and_a_larger_reply_is_said_to_be_too_large(tmp_path):
    """(the service refused results above 4 x its limit, the client replies above it, header
    included: a result just under the limit was sent, then dropped as "corrupted")"""
    address, limit = f"ipc://{tmp_path / 's'}", 10_000
    ready = threading.Event()
    sizes = [4 * limit, 4 * limit + 2**16 + 1]
    with _client_of(lambda: _fake_service(address, sizes, ready), address, ready, "at-the-limit", timeout_s=10,
                    attempts=1) as client:
        client.max_message_bytes = limit  # (as a service's welcome says)
        reply = client.request("execute", {"job": "a" * 64}, b"request", expect="result")
        assert len(reply.payload) == 4 * limit
        with pytest.raises(dg.BackendError, match=r"sent a reply of [\d,]+ bytes, too large: a client takes up to "
                                                  r"[\d,]+ bytes .* run the batch in smaller jobs"):
            client.request("execute", {"job": "b" * 64}, b"request", expect="result")


def test_a_result_that_could_not_be_sent_is_refused_before_it_runs(start_service):
    """(it was computed in full, here for 30 s, and then refused)"""
    # (a result limit of 4 x 52,428 bytes)
    service = start_service(device_options={"job_delay_s": 30}, serve_arguments=["--max-message-mb", "0.05"])
    with HilBackend(service.address, token=service.token, device="hil-noisy", job_timeout_s=10) as backend:
        network = dg.testing.make_network((1, 64, 3), "none", 1.0, seed=0)
        calibration = backend.calibrate(network, seed=0)
        inputs = network_and_inputs((1, 64, 3), batch=500)[1]  # (a result of at least 500 x 67 x 8 bytes)
        started = time.monotonic()
        with pytest.raises(dg.BackendError, match=r"the result of this request takes at least 268,000 bytes "
                                                  r"\(batch 500 x 67 neurons x 8 bytes\), above the reply limit "
                                                  r"of 209,712 bytes .* run the batch in smaller jobs"):
            backend.execute(backend.represent(network), inputs, calibration=calibration, seed=0)
        assert time.monotonic() - started < 5


# ---------------------------------------------------------------------------- stopping
def test_a_bad_request_during_a_graceful_stop_is_answered_bad_request(tmp_path):
    """(the service said shutting_down, which a client retries, before it read the payload;
    the documented order checks the payload first)"""
    with service_holding_a_reply(tmp_path, TOKEN, shutdown_grace_s=1.0) as (service, _, dealer):
        service.request_stop()
        assert wait_for(lambda: service.stopping)
        dealer.send_multipart(signed(TOKEN, "execute", b"not a request", job="0" * 64))
        replies = []
        while len(replies) < 2 and dealer.poll(10_000):
            replies.append(decode(dealer.recv_multipart(), Signer(TOKEN.encode()), replies=True).header)
    assert [reply["type"] for reply in replies] == ["health", "error"] and replies[1]["code"] == "bad_request"


@pytest.mark.parametrize("many", [False, True], ids=["execute", "execute_many"])
def test_a_client_waits_out_a_graceful_stop_and_gets_its_result_after_the_restart(tmp_path, many):
    """(a stopping service answers shutting_down at once: the client's quick attempts were all used
    up within a second, long before the service was back, and a training run ended)"""
    from _hil_noisy_device import NoisyDevice
    from delgrad_hil._calibration import unwrap
    from delgrad_hil._device_process import DeviceProcess
    from delgrad_hil._service import DeviceService

    address, signer = f"ipc://{tmp_path / 's'}", Signer(TOKEN.encode())
    services = [DeviceService(DeviceProcess("hil-noisy", {"job_delay_s": 1.0}), signer, address, shutdown_grace_s=10)]

    def serve_twice():  # (the second service, as a supervisor would start it, once the first has ended)
        services[0].serve()
        services.append(DeviceService(DeviceProcess("hil-noisy", {"job_delay_s": 1.0}), signer, address))
        services[1].serve()

    serving = threading.Thread(target=serve_twice)
    serving.start()
    context = zmq.Context()
    occupier = context.socket(zmq.DEALER)  # (its job keeps the stopping service up for a second)
    backend = HilBackend(address, token=TOKEN, device="hil-noisy", timeout_s=1.0, attempts=3, max_backoff_s=0.5)
    try:
        network, inputs = network_and_inputs()
        requests = [dg.ExecutionRequest(backend.represent(network), inputs, backend.calibrate(network, seed=0), seed)
                    for seed in range(3)]
        occupier.connect(address)
        occupier.send_multipart(signed(TOKEN, "execute", requests[2].to_bytes(), job=requests[2].digest))
        assert wait_for(lambda: services[0].scheduler.state("raw-test", requests[2].digest)[0] == "running")
        services[0].request_stop()
        assert wait_for(lambda: services[0].stopping)
        with pytest.warns(UserWarning, match="was restarted .*the same results, so the run goes on"):
            results = backend.execute_many(requests[:2]) if many else [backend.execute(requests[0])]
        assert len(services) == 2  # (answered by the second service)
    finally:
        backend.close()
        occupier.close(linger=0)
        context.term()
        assert wait_for(lambda: len(services) == 2 and services[1].address)
        services[1].request_stop()
        serving.join(timeout=30)
    with NoisyDevice() as device:
        for request, result in zip(requests, results):
            expected = device.execute(request.replace(calibration=unwrap(request.calibration))).layer_spike_times
            for got, want in zip(result.layer_spike_times, expected):
                np.testing.assert_array_equal(got, want)


def test_answers_to_try_again_end_at_the_jobs_own_time_saying_so(tmp_path):
    """(the client's waits between busy answers ignored the job's time: job_timeout_s=2 ended
    after 6 s, saying the service did not answer)"""
    from delgrad_hil import FaultPlan
    from delgrad_hil._device_process import DeviceProcess
    from delgrad_hil._service import DeviceService

    address = f"ipc://{tmp_path / 's'}"
    service = DeviceService(DeviceProcess("reference"), Signer(TOKEN.encode()), address,
                            faults=FaultPlan(busy_fraction=1.0))
    serving = threading.Thread(target=service.serve)
    serving.start()
    network, inputs = network_and_inputs()
    try:
        with HilBackend(address, token=TOKEN, device="reference", job_timeout_s=2.0, max_backoff_s=8.0) as backend:
            started = time.monotonic()
            with pytest.raises(dg.ExecutionTimeout, match=r"did not finish in time at .* \(the service answered busy: "
                                                          r"the device is busy \(injected fault\)\)"):
                backend.execute(network, inputs, seed=0)
            assert time.monotonic() - started < 2.0 + 3.0  # (the greeting is timed too; 6 s before)
    finally:
        service.request_stop()
        serving.join(timeout=30)


def test_a_stopping_service_still_answers_a_job_sent_again_while_it_runs(tmp_path):
    """(it answered shutting_down to the job at its device, sent again by a client that had lost
    patience, which then ran it again after the restart)"""
    from _hil_noisy_device import NoisyDevice
    from delgrad_hil._device_process import DeviceProcess
    from delgrad_hil._service import DeviceService

    address = f"ipc://{tmp_path / 's'}"
    service = DeviceService(DeviceProcess("hil-noisy", {"job_delay_s": 1.0}), Signer(TOKEN.encode()), address,
                            shutdown_grace_s=10)
    serving = threading.Thread(target=service.serve)
    serving.start()
    network, inputs = network_and_inputs()
    with NoisyDevice() as device:
        calibration = device.calibrate(network, seed=0)
    running, other = (dg.ExecutionRequest(network, inputs, calibration, seed) for seed in (0, 1))
    context = zmq.Context()
    sockets = [context.socket(zmq.DEALER) for _ in range(3)]
    try:
        for socket_, request in zip(sockets, (running, running, other)):
            socket_.connect(address)
            socket_.send_multipart(signed(TOKEN, "execute", request.to_bytes(), job=request.digest))
            if socket_ is sockets[0]:
                assert wait_for(lambda: service.scheduler.state("raw-test", running.digest)[0] == "running")
                service.request_stop()
                assert wait_for(lambda: service.stopping)
        replies = [decode(socket_.recv_multipart(), Signer(TOKEN.encode()), replies=True).header
                   for socket_ in sockets if socket_.poll(10_000)]
    finally:
        for socket_ in sockets:
            socket_.close(linger=0)
        context.term()
        service.request_stop()
        serving.join(timeout=30)
    assert [reply["type"] for reply in replies] == ["result", "result", "error"], replies
    assert replies[2]["code"] == "shutting_down"


@pytest.mark.parametrize("nohup", [False, True], ids=["terminal", "nohup"])
def test_sighup_stops_the_service_gracefully_unless_started_under_nohup(tmp_path, nohup):
    """(SIGHUP, e.g. from a closed terminal, ended it at once: status 129, its socket file left;
    a service started under nohup, which ignores SIGHUP, must keep serving)"""
    from delgrad_hil._supervisor import READY_PREFIX

    path = tmp_path / "s"
    command = [sys.executable, "-m", "delgrad_core.cli", "hil", "serve", "--device", "reference", "--address",
               f"ipc://{path}"]
    ignore_sighup = (lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN)) if nohup else None
    process = subprocess.Popen(command, cwd=tmp_path, env=dict(os.environ, DELGRAD_HIL_TOKEN=TOKEN),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=ignore_sighup)
    try:
        assert process.stdout.readline().startswith(READY_PREFIX) and path.exists()
        os.kill(process.pid, signal.SIGHUP)
        if nohup:
            with pytest.raises(subprocess.TimeoutExpired):
                process.wait(timeout=2)
            process.terminate()
        assert process.wait(timeout=20) == 0
        assert "stopping gracefully" in process.stderr.read() and not path.exists()
    finally:
        process.kill()
        process.wait()
        process.stdout.close()
        process.stderr.close()


def test_idle_connections_up_to_the_hard_open_file_limit_do_not_stop_the_service(tmp_path):
    """(with the soft limit of 1024 open files many shells have, that many idle connections, which
    need no token, aborted a service on an ipc:// address: "Too many open files"; on tcp:// it
    stopped answering.  The service now raises its soft limit to the hard one)"""
    import resource

    from delgrad_hil._supervisor import READY_PREFIX

    path = tmp_path / "s"
    command = [sys.executable, "-m", "delgrad_core.cli", "hil", "serve", "--device", "reference", "--address",
               f"ipc://{path}"]
    hard = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 4096)
    process = subprocess.Popen(command, cwd=tmp_path, env=dict(os.environ, DELGRAD_HIL_TOKEN=TOKEN),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (128, hard)))
    peers = []
    try:
        assert process.stdout.readline().startswith(READY_PREFIX)
        limits = (Path("/proc") / str(process.pid) / "limits").read_text()
        assert re.search(rf"Max open files\s+{hard}\s+{hard}", limits), limits
        for _ in range(300):  # (more than the soft limit the service was started with)
            peer = socket.socket(socket.AF_UNIX)
            peer.connect(str(path))
            peers.append(peer)
        time.sleep(0.5)
        reply = raw_exchange(f"ipc://{path}", signed(TOKEN, "health"), timeout_s=10)
        assert reply is not None and decode(reply, Signer(TOKEN.encode()), replies=True).type == "health"
        assert process.poll() is None
    finally:
        for peer in peers:
            peer.close()
        process.kill()
        process.wait()
        process.stdout.close()
        process.stderr.close()


def test_a_request_quoting_megabytes_is_refused_with_a_short_message_as_what_it_is(tmp_path, caplog):
    """(the bad_request message quoted a 2 MB value in full: one log line of 2 MB, and a reply
    header above 64 KiB, so the client was told too_large instead)"""
    import io
    import json
    import zipfile

    from delgrad_hil._device_process import DeviceProcess
    from delgrad_hil._service import DeviceService

    network, inputs = network_and_inputs(batch=2)
    request = dg.ExecutionRequest(network, inputs, None, 0)
    with zipfile.ZipFile(io.BytesIO(request.to_bytes())) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    document = json.loads(str(np.load(io.BytesIO(members["network.network.json.npy"]))))
    document["layers"][0]["delay_kind"] = "q" * 2_000_000
    stored = io.BytesIO()
    np.save(stored, np.array(json.dumps(document)), allow_pickle=False)
    members["network.network.json.npy"] = stored.getvalue()
    payload = io.BytesIO()
    with zipfile.ZipFile(payload, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    service = DeviceService(DeviceProcess("reference"), Signer(TOKEN.encode()), f"ipc://{tmp_path / 's'}")
    serving = threading.Thread(target=service.serve)
    serving.start()
    try:
        reply = raw_exchange(service.address, signed(TOKEN, "execute", payload.getvalue(), job=request.digest),
                             timeout_s=20)
    finally:
        service.request_stop()
        serving.join(timeout=30)
    header = decode(reply, Signer(TOKEN.encode()), replies=True).header
    assert header["code"] == "bad_request" and "delay_kind" in header["message"], header
    assert len(header["message"]) < 2100
    assert re.search(r"\.\.\. \(cut: [0-9,]+ characters in all\)$", header["message"]), header["message"][-80:]
    assert caplog.records and max(len(record.getMessage()) for record in caplog.records) < 2200


# ---------------------------------------------------------------------------- stale messages, other versions
def test_a_request_queued_while_the_service_was_away_beyond_its_replay_window_is_sent_anew(tmp_path):
    """(ZeroMQ delivers what a client sent while the service was down once it is back: a request
    older than the replay window was refused as a replay, and the client gave up)"""
    from delgrad_hil._device_process import DeviceProcess
    from delgrad_hil._service import DeviceService

    address = f"ipc://{tmp_path / 's'}"
    client = ServiceClient(address, Signer(TOKEN.encode()), "late", timeout_s=10.0, attempts=1)  # (not counted)
    answered = {}
    asking = threading.Thread(target=lambda: answered.update(reply=client.request("health", expect="health")))
    asking.start()
    time.sleep(1.5)  # (the request waits in the client's socket)
    service = DeviceService(DeviceProcess("reference"), Signer(TOKEN.encode()), address, replay_window_s=1.0)
    serving = threading.Thread(target=service.serve)
    serving.start()
    try:
        asking.join(timeout=30)
        assert answered["reply"].type == "health" and service.counts["refused.replayed"] == 1
    finally:
        client.close()
        service.request_stop()
        serving.join(timeout=30)


def _replay_refusing_service(address: str, ready: threading.Event, received: list, done: threading.Event,
                             answers: int = 6):
    """Until `done`, answer up to `answers` requests with a signed `replayed` error (a service whose
    clock disagrees with the client's), then fall silent; `received` gets each request's type."""
    with _fake_router(address, ready) as (router, signer):
        while not done.is_set():
            if len(received) >= answers or not router.poll(50):
                continue
            routing_id, *frames = router.recv_multipart()
            request = decode(frames, signer).header
            received.append(request["type"])
            header = new_header("error", reply_to=request["nonce"], code="replayed", retryable=False,
                                message="sent 120.0 s behind the service's clock, outside the 60 s window",
                                error_class=None, capability=None)
            router.send_multipart([routing_id, *encode(signer, header)])


def _health(client):
    return client.request("health", expect="health")


def _overlapped_job(client):
    return client.request_many([lambda: ("execute", {"job": "f" * 64}, b"request", "job ffff")], expect="result",
                               depth=1, job_timeout_s=30)


@pytest.mark.parametrize(("send", "sent"), [(_health, "health"), (_overlapped_job, "execute")],
                         ids=["request", "a job of an overlapped batch"])
def test_a_request_refused_as_a_replay_is_sent_anew_once_and_then_the_refusal_is_raised(tmp_path, send, sent):
    """docs (ServiceClient): a refusal as a replay may be a message delivered late, so one new message is
    sent (not counted as an attempt); "clocks that disagree fail again": the second refusal is raised
    as it is, not retried until the attempts are used up.  So also for a job of `request_many` (docs/hil.md,
    "How a run survives faults": "A request refused as a replay is sent anew once")."""
    address, ready, received, done = f"ipc://{tmp_path / 's'}", threading.Event(), [], threading.Event()
    with _client_of(lambda: _replay_refusing_service(address, ready, received, done), address, ready, "clock-off",
                    done=done, timeout_s=0.3, attempts=3) as client:
        with pytest.raises(ProtocolError, match="refused the request: sent 120.0 s behind") as info:
            send(client)
        assert info.value.code == "replayed" and received == [sent, sent]


def test_a_service_of_another_protocol_version_is_named_as_such(tmp_path):
    """(its answer, unreadable here, was reported as a corrupted reply after every attempt)"""
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    router.bind(f"ipc://{tmp_path / 's'}")

    def answer():
        if router.poll(10_000):
            routing_id, *_ = router.recv_multipart()
            router.send_multipart([routing_id, b"delgrad-hil/3", b"s" * 32, b"header"])

    answering = threading.Thread(target=answer)
    answering.start()
    client = ServiceClient(f"ipc://{tmp_path / 's'}", Signer(TOKEN.encode()), "versions", timeout_s=5.0)
    try:
        with pytest.raises(dg.BackendUnavailable, match=r"speaks another version of the protocol: protocol "
                                                        r"b'delgrad-hil/3' is not supported; this side speaks "
                                                        r"delgrad-hil/\d+; install the same version of delgrad-hil"):
            client.request("health", expect="health")
    finally:
        answering.join(timeout=20)
        client.close()
        router.close(linger=0)
        context.term()


HELD_IN_A_CYCLE = """
import gc, numpy as np
import delgrad_core as dg
backend = dg.get_backend("mock-hil", device="reference")
network = dg.Network.feedforward([4, 5, 3], seed=0)
backend.execute(network, np.full((2, 4), 0.5), calibration=backend.calibrate(network, seed=0), seed=0)
backend.cycle = backend  # (freed only by the cycle collector, as a trainer nobody closed)
del backend
gc.collect()
print("collected")
"""


def test_a_client_nobody_closed_is_collected_without_hanging(tmp_path):
    """(collected in a reference cycle, e.g. a notebook cell run twice: the ZeroMQ context's
    finaliser could run before its socket was closed and waited for ever, freezing the process
    in whatever code triggered the collection)"""
    process = subprocess.run([sys.executable, "-c", HELD_IN_A_CYCLE], capture_output=True, text=True, timeout=60,
                             cwd=tmp_path, env=dict(os.environ, DELGRAD_BSS2_CACHE=str(tmp_path / "cache")))
    assert process.returncode == 0 and process.stdout == "collected\n", process.stdout + process.stderr


def test_a_calibrate_without_a_seed_is_served_and_an_internal_error_answers_its_request(tmp_path, monkeypatch):
    """The protocol lets a calibrate request leave out its seed (docs/hil-protocol.md: "int, nil or
    absent"): the service failed on it with `internal`, and answered that with reply_to nil, which a
    client reading the document drops as the answer to no request of its own."""
    from delgrad_hil._device_process import DeviceProcess
    from delgrad_hil._protocol import calibration_job_id
    from delgrad_hil._service import DeviceService

    signer = Signer(TOKEN.encode())
    service = DeviceService(DeviceProcess("reference"), signer, f"ipc://{tmp_path / 's'}")
    serving = threading.Thread(target=service.serve)
    serving.start()
    try:
        without_seed = decode(raw_exchange(service.address, signed(TOKEN, "calibrate", job=calibration_job_id(
            None, None))), signer, replies=True).header
        monkeypatch.setattr(service, "_info", lambda message: 1 / 0)  # (a fault of the service)
        health = signed(TOKEN, "health")
        failed = decode(raw_exchange(service.address, health), signer, replies=True).header
    finally:
        service.request_stop()
        serving.join(timeout=30)
    assert without_seed["type"] == "calibration", without_seed
    assert (failed["code"], failed["message"]) == ("internal", "the service failed: ZeroDivisionError"), failed
    assert failed["reply_to"] == decode(health, signer).header["nonce"]


# ---------------------------------------------------------------------------- the client, closer (a mutation pass)
def test_a_results_size_is_told_in_bytes_below_a_tenth_of_a_megabyte_and_in_megabytes_from_there():
    """docs (_size_text): "'16.2 MB', or '812 bytes' below 0.1 MB" (1 MB = 10**6 bytes)."""
    assert _size_text(812) == "812 bytes"
    assert _size_text(99_999) == "99,999 bytes"
    assert _size_text(100_000) == "0.1 MB"
    assert _size_text(16_200_000) == "16.2 MB"


def test_a_reply_whose_payload_frame_alone_is_above_the_reply_limit_is_said_to_be_too_large(tmp_path):
    """docs (hil-protocol, _too_large): a reply above the size a client takes is refused as too large,
    naming it; the client's socket takes somewhat more than that limit per frame (a backstop), so
    that such a reply arrives to be named instead of ZeroMQ dropping it unseen (a silent service)."""
    address, limit = f"ipc://{tmp_path / 's'}", 10_000
    ready = threading.Event()
    # (a payload frame alone some 64 KiB above the largest reply a client takes, header and all)
    with _client_of(lambda: _fake_service(address, [4 * limit + 2 * 2**16], ready), address, ready, "above-the-limit",
                    timeout_s=3, attempts=1) as client:
        client.max_message_bytes = limit  # (as a service's welcome says)
        with pytest.raises(dg.BackendError, match=r"sent a reply of [\d,]+ bytes, too large: a client takes up to "):
            client.request("execute", {"job": "b" * 64}, b"request", expect="result")


def test_a_client_reaches_a_service_at_an_ipv6_literal_address():
    """docs (hil.md): an address may be ``tcp://[::1]:5555`` (an IPv6 host in brackets); the
    client's socket must then speak IPv6 (ZeroMQ sockets are IPv4-only by default)."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.IPV6, 1)
    try:
        port = router.bind_to_random_port("tcp://[::1]")
    except zmq.ZMQError:
        router.close(linger=0)
        context.term()
        pytest.skip("no IPv6 loopback here")
    signer = Signer(TOKEN.encode())

    def answer():
        if router.poll(10_000):
            routing_id, *frames = router.recv_multipart()
            request = decode(frames, signer).header
            header = new_header("result", reply_to=request["nonce"], job=request["job"], cached=False, run_s=0.0,
                                service="0" * 16)
            router.send_multipart([routing_id, *encode(signer, header, b"ok")])

    server = threading.Thread(target=answer)
    server.start()
    client = ServiceClient(f"tcp://[::1]:{port}", Signer(TOKEN.encode()), "over-ipv6", timeout_s=2, attempts=1)
    try:
        assert client.request("execute", {"job": "c" * 64}, b"request", expect="result").payload == b"ok"
    finally:
        client.close()
        server.join(30)
        router.close(linger=0)
        context.term()


def test_a_job_of_an_overlapped_batch_sent_again_counts_as_a_retry(tmp_path):
    """docs (ServiceClient.retries): "attempts beyond the first, over the client's lifetime"; a job
    of `request_many` whose first sending went unanswered is sent again: one retry."""
    address = f"ipc://{tmp_path / 's'}"
    ready = threading.Event()

    def service():  # (drops the first request, answers the next)
        with _fake_router(address, ready) as (router, signer):
            for answered in (False, True):
                if not router.poll(10_000):
                    return
                routing_id, *frames = router.recv_multipart()
                request = decode(frames, signer).header
                if answered:
                    header = new_header("result", reply_to=request["nonce"], job=request["job"], cached=False,
                                        run_s=0.0, service="0" * 16)
                    router.send_multipart([routing_id, *encode(signer, header, b"ok")])

    with _client_of(service, address, ready, "overlapped", timeout_s=0.3, attempts=2, backoff_s=0.01,
                    max_backoff_s=0.01) as client:
        replies = client.request_many([lambda: ("execute", {"job": "d" * 64}, b"request", "job dddd")], expect="result",
                                      depth=1, job_timeout_s=10)
        assert [reply.payload for reply in replies] == [b"ok"] and client.retries == 1


def test_an_overlapped_batch_longer_than_timeout_s_whose_replies_keep_coming_is_not_retried(start_service):
    """docs (ServiceClient.request_many): only trouble such as "a silence of `timeout_s`" ends the
    overlap; a batch whose jobs answer one after another, each well within timeout_s, goes on
    however long it takes in all (here 6 x 0.12 s against a timeout_s of 0.5 s)."""
    service = start_service(device_options={"job_delay_s": 0.12})
    with HilBackend(service.address, token=service.token, device="hil-noisy", timeout_s=0.5, jobs_in_flight=2) \
            as backend:
        requests = _requests(backend, 7)  # (the first goes alone, with its calibration; then 6 overlapped)
        results = backend.execute_many(requests)
        assert len(results) == 7 and backend.retries == 0


def test_an_overlapped_batch_raises_at_once_an_error_answering_a_request_the_service_could_not_read(tmp_path):
    """docs (hil-protocol.md): a reply's `reply_to` is "nil when the request could not be read";
    (ServiceClient.request_many) "An error answer that retrying cannot change is raised", at
    once, not after timeout_s of waiting for a reply naming the job."""
    address = f"ipc://{tmp_path / 's'}"
    ready = threading.Event()

    def service():  # (answers the request with an error that names no request)
        with _fake_router(address, ready) as (router, signer):
            if router.poll(10_000):
                routing_id, *frames = router.recv_multipart()
                decode(frames, signer)
                fields = error_fields("malformed", "could not read it")
                header = new_header(fields.pop("type"), reply_to=None, **fields)
                router.send_multipart([routing_id, *encode(signer, header, None)])

    with _client_of(service, address, ready, "unreadable", timeout_s=10, attempts=1) as client:
        started = time.monotonic()
        with pytest.raises(ProtocolError, match="refused the request: could not read it"):
            client.request_many([lambda: ("execute", {"job": "e" * 64}, b"request", "job eeee")], expect="result",
                                depth=1, job_timeout_s=30)
        assert time.monotonic() - started < 5  # (half timeout_s)


def test_a_job_sent_again_whose_time_runs_out_in_silence_says_the_service_gave_no_answer(tmp_path):
    """docs (hil.md): a job out of time says "what the service last said of the job, or that it said
    nothing yet when the job's time was shorter than timeout_s / 2, when the client first asks"; a job
    sent again was asked about just before (ServiceClient), so silence then is no answer to a question."""
    address, ready, done = f"ipc://{tmp_path / 's'}", threading.Event(), threading.Event()

    def service():  # (answers the first request with a corrupted reply, then nothing)
        with _fake_router(address, ready) as (router, signer):
            if router.poll(10_000):
                routing_id, *frames = router.recv_multipart()
                request = decode(frames, signer).header
                header = new_header("result", reply_to=request["nonce"], job=request["job"], cached=False, run_s=0.0,
                                    service="0" * 16)
                router.send_multipart([routing_id, *encode(signer, header, b"ok")[:-1], b"garbled"])
            done.wait(30)

    with _client_of(service, address, ready, "asked", done=done, timeout_s=4, attempts=3, backoff_s=0.01,
                    max_backoff_s=0.01) as client:
        with pytest.raises(dg.ExecutionTimeout, match=r"job 9999 did not finish in time at .* \(no answer from the "
                                                      r"service: is it running\?\)"):
            client.request("execute", {"job": "9" * 64}, b"request", expect="result", job_timeout_s=0.8,
                           what="job 9999")


def test_a_job_the_service_says_has_finished_while_its_reply_never_came_is_said_to_have_gone_missing(tmp_path):
    """docs (hil-protocol.md, `probe`): `finished` means the result is cached and the reply was
    sent; (ServiceClient._await) a probe answered so is "lost" (the result went missing), not a
    silent service: the attempt ends naming it."""
    address, ready, done = f"ipc://{tmp_path / 's'}", threading.Event(), threading.Event()

    def service():  # (drops the job's reply; answers its probe: finished)
        with _fake_router(address, ready) as (router, signer):
            while not done.is_set():
                if not router.poll(50):
                    continue
                routing_id, *frames = router.recv_multipart()
                request = decode(frames, signer).header
                if request["type"] == "probe":
                    header = new_header("job_state", reply_to=request["nonce"], job=request["job"], state="finished",
                                        result_bytes=2)
                    router.send_multipart([routing_id, *encode(signer, header)])

    with _client_of(service, address, ready, "lost", done=done, timeout_s=0.6, attempts=1) as client:
        with pytest.raises(dg.BackendUnavailable, match=r"job 8888 failed at .* after 1 attempt \([\d.]+ s\); last: "
                                                        r"the result went missing \(the job is finished at the "
                                                        r"service\)"):
            client.request("execute", {"job": "8" * 64}, b"request", expect="result", job_timeout_s=5,
                           what="job 8888")
