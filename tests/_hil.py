"""Helpers of the mock-hil tests: the noisy test device installed for this process and its
children, local services, raw messages to a service, and a small network with its inputs."""

import contextlib
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import delgrad_core as dg
from delgrad_core.testing import write_distribution

pytest.importorskip("delgrad_hil", reason="delgrad-hil is not installed (pip install ./backends/hil)")
zmq = pytest.importorskip("zmq")

from delgrad_hil._auth import Signer  # noqa: E402
from delgrad_hil._protocol import encode, new_header  # noqa: E402

TESTS = Path(__file__).parent


def install_test_devices(root, monkeypatch, extra_distributions=()):
    """Register `hil-noisy` (tests/_hil_noisy_device.py) here and in child processes; also the
    distributions (name, module, source, entry point name) of `extra_distributions`."""
    write_distribution(root, "delgrad-hil-testdevice", "1.0", {},
                       {"delgrad.backends": {"hil-noisy": "_hil_noisy_device"}})
    for dist, module, source, entry_name in extra_distributions:
        write_distribution(root, dist, "1.0", {module: source}, {"delgrad.backends": {entry_name: module}})
    monkeypatch.syspath_prepend(str(root))
    path = os.pathsep.join(filter(None, [str(root), str(TESTS), os.environ.get("PYTHONPATH")]))
    monkeypatch.setenv("PYTHONPATH", path)
    monkeypatch.setenv("DELGRAD_STRICT_PLUGINS", "1")
    dg.refresh_plugins()


@pytest.fixture(scope="module")
def test_devices(tmp_path_factory):
    """The test device registered for the tests of a module (and their child processes)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        install_test_devices(tmp_path_factory.mktemp("devices"), monkeypatch)
        yield
    dg.refresh_plugins()


def network_and_inputs(sizes=(4, 10, 3), kind="axonal", batch=32, seed=0, tau_ratio=1.0):
    """A network the test devices run (weights and delays within their limits) and inputs."""
    network = dg.testing.make_network(sizes, kind, tau_ratio, seed=seed)
    inputs = np.random.default_rng(seed).uniform(0.15, 2.0, (batch, sizes[0]))
    return network, inputs


def raw_exchange(address: str, frames, timeout_s: float = 5.0):
    """Send `frames` as they are from a fresh DEALER socket; the reply frames or None."""
    context = zmq.Context()
    socket = context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(address)
    try:
        socket.send_multipart(frames)
        if socket.poll(int(timeout_s * 1000)):
            return socket.recv_multipart()
        return None
    finally:
        socket.close()
        context.term()


def signed(token: str, message_type: str, payload=None, **fields):
    """The frames of a correctly signed request (a fresh nonce and the current time)."""
    header = new_header(message_type, client=fields.pop("client", "raw-test"), **fields)
    return encode(Signer(token.encode()), header, payload)


def wait_for(condition, timeout_s: float = 10.0, interval_s: float = 0.05) -> bool:
    """Poll `condition()` until it is true (True) or the time is up (False)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval_s)
    return condition()


@contextlib.contextmanager
def service_holding_a_reply(tmp_path, token: str, shutdown_grace_s: float):
    """A reference-device service serving in a thread on ``ipc://tmp_path/s``, and a DEALER
    socket whose health request it holds back (the latency fault: it keeps a stopping service
    alive for its grace period): (service, its thread, the socket); stopped, joined and closed
    at the end."""
    from delgrad_hil import FaultPlan
    from delgrad_hil._device_process import DeviceProcess
    from delgrad_hil._service import DeviceService

    service = DeviceService(DeviceProcess("reference"), Signer(token.encode()), f"ipc://{tmp_path / 's'}",
                            faults=FaultPlan(latency_s=3600), shutdown_grace_s=shutdown_grace_s)
    serving = threading.Thread(target=service.serve)
    serving.start()
    context = zmq.Context()
    socket = context.socket(zmq.DEALER)
    try:
        socket.connect(service.address)
        socket.send_multipart(signed(token, "health"))
        assert wait_for(lambda: service._delayed)
        yield service, serving, socket
    finally:
        service.request_stop()
        serving.join(timeout=20)
        socket.close(linger=0)
        context.term()
