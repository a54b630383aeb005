"""A client pointed at an address where no service can ever answer fails at once, naming the
option, the address and what is wrong, instead of waiting attempts x timeout_s in silence:
an ipc socket in a folder that does not exist (or is a file), a host name that does not
resolve.  What can still work (a folder that exists but has no service yet, IP literals,
localhost, a name service that did not answer) keeps the waits and retries."""

import errno
import os
import socket
import threading
import time
from types import SimpleNamespace

import pytest

import delgrad_core as dg
from delgrad_core.cli import main
from delgrad_core.testing import cli_runner

pytest.importorskip("delgrad_hil", reason="delgrad-hil is not installed (pip install ./backends/hil)")

from delgrad_hil import HilBackend  # noqa: E402
from delgrad_hil._address import check_reachable  # noqa: E402
from delgrad_hil._auth import Signer  # noqa: E402
from delgrad_hil._client import ServiceClient  # noqa: E402

TOKEN = "a" * 64
TIMEOUT_S = 6.0  # per attempt; the old code waited ATTEMPTS x TIMEOUT_S before it said anything
ATTEMPTS = 2
UNRESOLVED = "tcp://no-such-host.invalid:5555"


def _missing_folder(tmp_path) -> str:
    return f"ipc://{tmp_path / 'no-such-folder' / 's'}"


def _timed(call):
    """(the exception `call()` raised, the seconds it took)."""
    started = time.monotonic()
    with pytest.raises(dg.BackendUnavailable) as caught:
        call()
    return caught.value, time.monotonic() - started


@pytest.fixture
def token(monkeypatch):
    monkeypatch.setenv("DELGRAD_HIL_TOKEN", TOKEN)


def _calibrate(address):
    def call():
        with HilBackend(address, device="reference", timeout_s=TIMEOUT_S, attempts=ATTEMPTS) as backend:
            try:
                backend.calibrate()
            finally:
                assert backend.retries == 0
    return call


def test_an_ipc_address_in_a_folder_that_does_not_exist_fails_at_once(tmp_path, token):
    address = _missing_folder(tmp_path)
    error, elapsed = _timed(_calibrate(address))
    assert elapsed < TIMEOUT_S / 2, elapsed
    assert str(error) == (f"backend 'mock-hil': address: the folder {tmp_path / 'no-such-folder'} of {address} does "
                          f"not exist, so no service can be listening there; check the path (the service's "
                          f"--address), or create the folder and start the service there")
    assert not error.retryable
    assert not (tmp_path / "no-such-folder").exists()  # (the client creates nothing)


@pytest.mark.parametrize(("socket_path", "problem"), [
    ("a-file/s", "{file}, the folder of {address}, is not a folder"),
    # (a service refuses to serve on a file, but a client waited attempts x timeout_s there)
    ("a-file", "{file} of {address} is not a socket (a file or folder, where no service serves)"),
    ("a-folder", "{folder} of {address} is not a socket (a file or folder, where no service serves)"),
    # (a folder below a file: os.stat raises NotADirectoryError, which also means no such folder)
    ("a-file/sub/s", "the folder {file}/sub of {address} does not exist"),
])
def test_an_ipc_address_on_a_file_fails_at_once(tmp_path, token, socket_path, problem):
    (tmp_path / "a-file").write_text("not a socket\n")
    (tmp_path / "a-folder").mkdir()
    address = f"ipc://{tmp_path / socket_path}"
    error, elapsed = _timed(_calibrate(address))
    assert elapsed < TIMEOUT_S / 2, elapsed
    problem = problem.format(file=tmp_path / "a-file", folder=tmp_path / "a-folder", address=address)
    assert str(error).startswith(f"backend 'mock-hil': address: {problem}, so no "
                                 "service can be listening there; check the path")
    assert (tmp_path / "a-file").read_text() == "not a socket\n"


def test_a_host_name_that_does_not_resolve_fails_at_once(token):
    error, elapsed = _timed(_calibrate(UNRESOLVED))
    assert elapsed < TIMEOUT_S / 2, elapsed
    assert str(error).startswith(f"backend 'mock-hil': address: the host name 'no-such-host.invalid' of {UNRESOLVED} "
                                 "does not resolve (")
    assert str(error).endswith("), so no service can be reached there; check the name, or give the service's IP "
                               "address (e.g. tcp://127.0.0.1:PORT on this machine)")
    assert not error.retryable


@pytest.mark.parametrize("command", ["health", "status"])
@pytest.mark.parametrize("kind", ["ipc", "tcp"])
def test_the_commands_say_at_once_that_the_address_cannot_work(command, kind, tmp_path, token):
    address = _missing_folder(tmp_path) if kind == "ipc" else UNRESOLVED
    started = time.monotonic()
    result = cli_runner().invoke(main, ["hil", command, "--address", address, "--timeout-s", str(TIMEOUT_S)])
    elapsed = time.monotonic() - started
    assert elapsed < TIMEOUT_S / 2, elapsed
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert len(result.stderr.strip().splitlines()) == 1
    expected = "does not exist, so no service can be listening" if kind == "ipc" else "does not resolve"
    assert result.stderr.startswith("Error: --address: the ") and address in result.stderr, result.stderr
    assert expected in result.stderr, result.stderr


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:1", "tcp://localhost:1", "tcp://[::1]:1", "tcp://*:1",
                                     "ipc://@delgrad-hil-abstract", "ipc://relative-socket"])
def test_literals_localhost_abstract_and_relative_ipc_addresses_are_not_refused(address, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "@delgrad-hil-abstract").write_text("a file, not the abstract socket of that name\n")
    check_reachable(address)


def test_an_ipc_folder_that_exists_still_waits_for_a_service_to_come(tmp_path, token):
    # (a service may start there later: the client keeps its waits and retries)
    address = f"ipc://{tmp_path / 's'}"
    with HilBackend(address, device="reference", timeout_s=0.3, attempts=1) as backend:
        with pytest.raises(dg.BackendUnavailable, match=f"no answer from {address} after 1 attempt"):
            backend.calibrate()


@pytest.mark.parametrize("failure", [socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"),
                                     OSError(errno.ENETUNREACH, "Network is unreachable"),
                                     UnicodeError("label too long"), ValueError("embedded null character")])
def test_only_a_definite_resolution_failure_is_refused(failure, monkeypatch):
    def failing(error):
        def getaddrinfo(*args, **kwargs):
            raise error
        return getaddrinfo

    monkeypatch.setattr(socket, "getaddrinfo", failing(failure))
    check_reachable("tcp://some-host.example:5555")  # (left to the waits and retries)
    monkeypatch.setattr(socket, "getaddrinfo", failing(socket.gaierror(socket.EAI_NONAME, "Name or service not known")))
    with pytest.raises(dg.BackendUnavailable, match="address: the host name 'some-host.example' of "
                                                    r"tcp://some-host.example:5555 does not resolve \(Name or service"):
        check_reachable("tcp://some-host.example:5555")


def test_an_ipc_folder_that_cannot_be_looked_at_is_left_to_the_waits(tmp_path, monkeypatch):
    """docs/hil.md and `check_reachable`: only definite answers count; a folder that cannot be looked
    at (permissions) leaves the address to the client's waits and retries, which say what they saw."""
    real_stat, folder = os.stat, tmp_path / "locked"

    def stat(path, *args, **kwargs):
        if str(path) == str(folder):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)
    check_reachable(f"ipc://{folder / 's'}")  # (no BackendUnavailable: the folder may well exist)


def test_a_local_service_address_is_not_checked(tmp_path):
    # (the client of a local service connects where that service serves)
    service = SimpleNamespace(address=_missing_folder(tmp_path), alive=True, ensure_running=lambda: False)
    client = ServiceClient(None, Signer(TOKEN.encode()), "client-1", service=service)
    client.close()


def test_a_service_on_ipc_in_an_existing_folder_is_reached(tmp_path, token):
    from delgrad_hil._device_process import DeviceProcess
    from delgrad_hil._service import DeviceService

    address = f"ipc://{tmp_path / 's'}"
    service = DeviceService(DeviceProcess("reference"), Signer(TOKEN.encode()), address)
    serving = threading.Thread(target=service.serve)
    serving.start()
    try:
        with HilBackend(address, device="reference", timeout_s=10, attempts=2) as backend:
            assert backend.status()["device"] == "reference"
    finally:
        service.request_stop()
        serving.join(timeout=30)
    assert not serving.is_alive()
