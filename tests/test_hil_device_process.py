"""The service's device in a process of its own: the same results as the device in-process
(also for networks the child has forgotten), errors as the device raised them, a device process
that dies while idle replaced by the same service (unless it keeps dying: the service stops),
and a local service that dies restarted by its client, which gets the same result."""

import contextlib
import json
import os
import signal
import socket

import numpy as np
import pytest
from _hil import network_and_inputs, test_devices, wait_for  # noqa: F401
from _hil_noisy_device import NoisyDevice
from _processes import process_exists

import delgrad_core as dg

from delgrad_hil import HilBackend
from delgrad_hil._calibration import unwrap
from delgrad_hil._device_process import DeviceFailure, DeviceProcess
from delgrad_hil._service import IDLE_DEATHS_ALLOWED, QUICK_DEATH_S

pytestmark = pytest.mark.usefixtures("test_devices")


@pytest.fixture
def device_process():
    """DeviceProcess(name, options), closed at the end of the test."""
    made = []

    def make(name="hil-noisy", options=None):
        made.append(DeviceProcess(name, options))
        return made[-1]

    yield make
    for process in made:
        process.close()


def _request(network, inputs):
    """A job of `network` on `inputs` with the noisy device's calibration (seed 0)."""
    return dg.ExecutionRequest(network, inputs, NoisyDevice().calibrate(network, seed=0), seed=0)

def _same_result(result, expected):
    for times, reference in zip(result.layer_spike_times, expected.layer_spike_times, strict=True):
        np.testing.assert_array_equal(times, reference)
    assert (result.arrival_times is None) == (expected.arrival_times is None)
    for arrivals, reference in zip(result.arrival_times or (), expected.arrival_times or (), strict=True):
        if reference is None:
            assert arrivals is None
        else:
            np.testing.assert_array_equal(arrivals, reference)
    facts = set(expected.metadata) - {"wall_seconds"}  # (timings differ; mock-hil adds its own)
    assert {k: result.metadata[k] for k in facts} == {k: expected.metadata[k] for k in facts}


def test_results_equal_the_device_in_process_also_for_networks_the_child_forgot(device_process):
    local = NoisyDevice(chip=2)
    networks = [network_and_inputs(seed=seed)[0].frozen_copy() for seed in range(10)]  # (the child keeps 8)
    _, inputs = network_and_inputs()
    calibrations = [local.calibrate(networks[0], seed=seed) for seed in (0, 1)]
    order = [0, 1, 0, *range(2, 10), 0, 1]  # 0 and 1 again after the child forgot them
    requests = [dg.ExecutionRequest(networks[k], inputs, calibrations[i % 2], seed=i) for i, k in enumerate(order)]
    process = device_process("hil-noisy", {"chip": 2})
    assert process.capabilities == local.capabilities
    for pair in (requests[i:i + 2] for i in range(0, len(requests), 2)):  # two at a time, as the service does
        for request in pair:
            process.submit("execute", request)
        for request in pair:
            result, run_s, _ = process.collect("execute")
            _same_result(result, local.execute(request))
            assert run_s > 0
    process.submit("calibrate", (networks[3], 7))
    calibration, _, told = process.collect("calibrate")
    assert calibration.digest == local.calibrate(networks[3], seed=7).digest


def test_errors_come_back_as_the_device_raised_them(device_process):
    with pytest.raises(dg.InvalidValueError) as in_process:
        dg.get_backend("hil-noisy", volts=3)
    with pytest.raises(dg.InvalidValueError) as in_child:
        DeviceProcess("hil-noisy", {"volts": 3})
    assert str(in_child.value) == str(in_process.value)

    network, inputs = network_and_inputs()
    other_chip = NoisyDevice(chip=5).calibrate(network, seed=0)
    process = device_process()
    process.submit("execute", dg.ExecutionRequest(network, inputs, other_chip, seed=0))
    with pytest.raises(DeviceFailure, match="made for another chip") as failure:
        process.collect("execute")
    assert failure.value.fields["error_class"] == "CalibrationError" and failure.value.keep
    process.submit("execute", _request(network, inputs))
    assert process.collect("execute")[0].layer_spike_times[-1].shape == (inputs.shape[0], 3)  # (still serving)


def test_a_batch_of_no_samples_runs_as_in_process(device_process):
    network, inputs = network_and_inputs()
    calibration = NoisyDevice().calibrate(network, seed=0)
    process = device_process()
    for batch in (inputs[:0], inputs):  # (the pipe refused arrays with a zero in their shape)
        request = dg.ExecutionRequest(network, batch, calibration, seed=0)
        process.submit("execute", request)
        _same_result(process.collect("execute")[0], NoisyDevice().execute(request))


def test_a_killed_device_process_is_reported(device_process):
    network, inputs = network_and_inputs()
    process = device_process("hil-noisy", {"job_delay_s": 5.0})
    process.submit("execute", _request(network, inputs))
    os.kill(process._process.pid, signal.SIGKILL)
    with pytest.raises(dg.BackendUnavailable, match=r"the device process of 'hil-noisy' ended \(killed by signal 9\)"):
        process.collect("execute")


def _device_children(service_pid: int) -> set:
    """The running device processes of a service (its children that are not multiprocessing's
    resource tracker; a killed one not yet reaped is not counted)."""
    children = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat, open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    state, parent = stat.read().rsplit(")", 1)[1].split()[:2]
                    command = cmdline.read()
            except OSError:
                continue
            if int(parent) == service_pid and state != "Z" and b"resource_tracker" not in command:
                children.add(int(entry))
    return children


def _device_child(service_pid: int) -> int:
    """The device process of a service."""
    children = _device_children(service_pid)
    assert len(children) == 1, f"device processes under {service_pid}: {children}"
    return children.pop()


def _log_of(service) -> str:
    with open(service._log_path) as log:
        return log.read()


@pytest.mark.slow
def test_a_device_process_that_died_while_idle_is_replaced_and_the_same_service_serves_on():
    """(the service used to stop: a local service's client restarted it, and a service started
    with `delgrad hil serve` ended for every client)"""
    network, inputs = network_and_inputs()
    with HilBackend(device="hil-noisy") as backend:
        calibration = backend.calibrate(network, seed=0)
        request = dg.ExecutionRequest(backend.represent(network), inputs, calibration, seed=3)
        first = backend.execute(request)
        service = backend.local_service
        pid, child = service.pid, _device_child(service.pid)
        os.kill(child, signal.SIGKILL)
        assert wait_for(lambda: backend.status()["device_restarts"] == 1, timeout_s=30)
        again = backend.execute(request.replace(seed=4))
        assert service.pid == pid and service.alive and service.restarts == 0 and backend.retries == 0
        assert _device_child(pid) != child
        assert "device process of 'hil-noisy' ended (killed by signal 9) while idle; restarted it" in _log_of(service)
    _same_result(first, NoisyDevice().execute(request.replace(calibration=unwrap(calibration))))
    _same_result(again, NoisyDevice().execute(request.replace(seed=4, calibration=unwrap(calibration))))


@pytest.mark.slow
def test_a_device_process_that_keeps_dying_while_idle_stops_the_service_saying_why():
    """(a device that dies at once after every start, e.g. a broken installation, must not be
    restarted for ever)"""
    with HilBackend(device="hil-noisy") as backend:
        backend.status()  # (starts the local service)
        service = backend.local_service
        pid = service.pid
        for deaths in range(1, IDLE_DEATHS_ALLOWED + 2):
            os.kill(_device_child(pid), signal.SIGKILL)
            if deaths <= IDLE_DEATHS_ALLOWED:  # (replaced: the next kill finds the new one started)
                assert wait_for(lambda: backend.status()["device_restarts"] == deaths, timeout_s=30)  # noqa: B023
        assert service._process.wait(timeout=30) == 1
        assert (f"ended (killed by signal 9) while idle: {IDLE_DEATHS_ALLOWED + 1} device processes in a row "
                f"ended idle within {QUICK_DEATH_S:g} s of their start, the service does not restart a device that "
                f"keeps ending: stopping the service") in _log_of(service)
        assert backend.status()["device_restarts"] == 0 and service.restarts == 1  # (its client starts it again)


@pytest.mark.slow
@pytest.mark.parametrize("port_taken", [False, True], ids=["same-port", "port-taken"])
def test_a_local_service_that_died_is_restarted_by_its_client_which_gets_the_same_result(port_taken):
    network, inputs = network_and_inputs()
    with HilBackend(device="hil-noisy") as backend, contextlib.ExitStack() as cleanup:
        calibration = backend.calibrate(network, seed=0)
        request = dg.ExecutionRequest(backend.represent(network), inputs, calibration, seed=3)
        first = backend.execute(request)
        pid, address = backend.local_service.pid, backend.local_service.address
        os.kill(pid, signal.SIGKILL)
        # (reaped: its threads have ended and released the port; a process whose main thread
        # ended may still hold it)
        assert backend.local_service._process.wait(timeout=15) == -signal.SIGKILL
        if port_taken:  # (the new service listens elsewhere: the client must not send to the old port)
            blocker = cleanup.enter_context(socket.socket())
            blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            blocker.bind(("127.0.0.1", int(address.rpartition(":")[2])))
            blocker.listen()
        again = backend.execute(request.replace(seed=4))  # the client starts the service again
        assert backend.local_service.pid != pid and backend.local_service.restarts == 1 and backend.retries == 0
        assert (backend.local_service.address != address) == port_taken
    _same_result(first, NoisyDevice().execute(request.replace(calibration=unwrap(calibration))))
    _same_result(again, NoisyDevice().execute(request.replace(seed=4, calibration=unwrap(calibration))))


def test_jobs_larger_than_the_pipe_buffer_go_through(device_process):
    import threading

    network = dg.testing.make_network((40, 60, 3), "none", 1.0, seed=0)
    inputs = np.random.default_rng(0).uniform(0.15, 2.0, (1000, 40))  # 320 kB in, about 500 kB out per job
    requests = [dg.ExecutionRequest(network, inputs, seed=seed) for seed in (0, 1)]
    process, results = device_process("reference"), []

    def run():  # (handing the second job over while the first result waits must not deadlock)
        for request in requests:
            process.submit("execute", request)
        results.extend(process.collect("execute")[0] for _ in requests)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive() and len(results) == 2
    for result, request in zip(results, requests):
        _same_result(result, dg.get_backend("reference").execute(request))


def test_a_job_the_child_cannot_read_empties_both_sides_and_the_next_one_runs(device_process, monkeypatch):
    import delgrad_hil._device_process as module

    network, inputs = network_and_inputs()
    network = network.frozen_copy()
    calibration = NoisyDevice().calibrate(network, seed=0)
    process = device_process()
    readable = module.network_payload
    monkeypatch.setattr(module, "network_payload", lambda network: b"not an npz archive")
    process.submit("execute", dg.ExecutionRequest(network, inputs, calibration, seed=0))
    with pytest.raises(DeviceFailure, match="not an npz|not a zip|npz") as failure:
        process.collect("execute")
    assert failure.value.fields["error_class"] == "FileFormatError"
    monkeypatch.setattr(module, "network_payload", readable)
    request = dg.ExecutionRequest(network, inputs, calibration, seed=1)  # the same network: sent again in full
    process.submit("execute", request)
    _same_result(process.collect("execute")[0], NoisyDevice().execute(request))


_ODD_METADATA_DEVICE = """
from delgrad_core import hookimpl
from _hil_noisy_device import CAPABILITIES, NoisyDevice


class OddMetadata(NoisyDevice):
    name = "hil-odd-metadata"

    def _execute(self, request):
        result = super()._execute(request)
        result.metadata.update({"per_layer": {0: 12}, "big": 2**70})  # (JSON, but not msgpack's plain maps)
        return result


@hookimpl
def delgrad_register_backends(register):
    register("hil-odd-metadata", OddMetadata, capabilities=CAPABILITIES)
"""


def test_metadata_that_json_allows_comes_back_as_from_the_device_and_replies_stay_in_step(tmp_path, monkeypatch):
    from _hil import install_test_devices

    install_test_devices(tmp_path, monkeypatch, [("delgrad-hil-oddmeta", "_hil_odd_metadata", _ODD_METADATA_DEVICE,
                                                  "hil-odd-metadata")])
    network, inputs = network_and_inputs()
    device = dg.get_backend("hil-odd-metadata")
    calibration = device.calibrate(network, seed=0)
    process = DeviceProcess("hil-odd-metadata")
    try:
        requests = [dg.ExecutionRequest(network, inputs, calibration, seed=seed) for seed in range(4)]
        for request in requests:  # (two at a time, in step: each result is its own job's)
            process.submit("execute", request)
            if request.seed % 2:
                for earlier in requests[request.seed - 1:request.seed + 1]:
                    result, expected = process.collect("execute")[0], device.execute(earlier)
                    expected.metadata = json.loads(json.dumps(expected.metadata))  # (as a result's bytes hold it)
                    assert result.metadata["per_layer"] == {"0": 12} and result.metadata["big"] == 2**70
                    _same_result(result, expected)
    finally:
        process.close()


@pytest.mark.slow
def test_the_device_process_ends_with_its_service_however_that_ends():
    import threading

    from delgrad_hil import LocalService

    network, inputs = network_and_inputs()
    for how in ("group SIGTERM", "SIGKILL"):
        service = LocalService("hil-noisy", {"job_delay_s": 1.0})
        service.start()
        try:
            with HilBackend(service.address, token=service.token, device="hil-noisy") as backend:
                calibration = backend.calibrate(network, seed=0)
                child = _device_child(service.pid)
                if how == "SIGKILL":
                    os.kill(service.pid, signal.SIGKILL)
                else:  # (a supervisor stopping the whole group while a job runs: it finishes, status 0)
                    results = []
                    running = threading.Thread(target=lambda: results.append(
                        backend.execute(network, inputs, calibration=calibration, seed=0)))
                    running.start()
                    with HilBackend(service.address, token=service.token, device="hil-noisy") as watcher:
                        assert wait_for(lambda: watcher.status()["running"] is not None)
                    os.killpg(service.pid, signal.SIGTERM)
                    running.join(timeout=30)
                    assert len(results) == 1
                    assert wait_for(lambda: not service.alive, timeout_s=15) and service._process.returncode == 0
            assert wait_for(lambda: not process_exists(child), timeout_s=10), how
        finally:
            service.stop()


def test_the_child_is_told_to_forget_the_least_recently_used_network_beyond_eight(device_process, monkeypatch):
    """delgrad_hil/_device_process.py: the child keeps 8 networks, "the parent decides what the
    child keeps and tells it what to forget": a network is sent in full once, then named by its
    key, and the one used longest ago is forgotten first (a network used again counts as recent).
    (Without the forget lists the child's store grew with every network; all results stayed right.)"""
    import delgrad_hil._device_process as module

    headers = []
    packed = module._pack
    monkeypatch.setattr(module, "_pack", lambda header: headers.append(header) or packed(header))
    networks = [network_and_inputs(seed=seed)[0].frozen_copy() for seed in range(10)]
    _, inputs = network_and_inputs()
    calibration = NoisyDevice().calibrate(networks[0], seed=0)
    process = device_process()
    order = [*range(8), 0, 8, 9]  # 0 used again before 8 and 9 come: 1 and 2 are forgotten
    for k in order:
        process.submit("execute", dg.ExecutionRequest(networks[k], inputs, calibration, seed=k))
        process.collect("execute")
    sent = [header for header in headers if header.get("op") == "execute"]
    assert [bool(header.get("network_bytes")) for header in sent] == [True] * 8 + [False, True, True]
    assert [header.get("forget_networks") for header in sent] == [[]] * 8 + [None, [id(networks[1])],
                                                                            [id(networks[2])]]


def test_a_job_the_writer_cannot_hand_over_ends_the_child_and_is_reported(device_process, monkeypatch):
    """delgrad_hil/_device_process.py: a fault of the module while handing a job over leaves the
    pipe out of step: the writer ends the child and `collect` says the device process ended
    (instead of waiting for ever for a reply to a job the child never got whole)."""
    import threading

    import delgrad_hil._device_process as module

    network, inputs = network_and_inputs()
    process = device_process()
    monkeypatch.setattr(module, "_raw", lambda values: "not bytes")  # (send_bytes refuses a str)
    process.submit("execute", _request(network, inputs))
    outcome = []

    def collect():
        try:
            process.collect("execute")
        except dg.BackendUnavailable as exc:
            outcome.append(exc)

    collector = threading.Thread(target=collect, daemon=True)
    collector.start()
    collector.join(timeout=10)
    assert not collector.is_alive()
    assert "the device process of 'hil-noisy' ended (killed by signal 9)" in str(outcome[0])


@pytest.mark.parametrize("at_once", [False, True], ids=["after-a-moment", "at-once"])
def test_stop_kills_a_child_whose_job_runs_on(device_process, monkeypatch, at_once):
    """delgrad_hil/_device_process.py, `stop`: the child "is killed if that takes longer than a
    moment (`at_once`: killed without waiting, for jobs whose time is up)"; a job handed over
    after that is refused as the device process having ended."""
    import time

    import delgrad_hil._device_process as module

    if not at_once:
        monkeypatch.setattr(module, "_STOP_TIMEOUT_S", 0.5)  # (the moment waited, 2 s, shortened)
    network, inputs = network_and_inputs()
    process = device_process("hil-noisy", {"job_delay_s": 30.0})
    request = _request(network, inputs)
    process.submit("execute", request)
    time.sleep(0.2)  # (the job runs)
    started = time.monotonic()
    process.stop(at_once=at_once)
    assert time.monotonic() - started < 10.0  # (not the job's 30 s; a generous bound for a loaded machine)
    assert not process._process.is_alive() and process._process.exitcode == -signal.SIGKILL
    with pytest.raises(dg.BackendUnavailable, match=r"the device process of 'hil-noisy' ended \(killed by signal 9\)"):
        process.submit("execute", request)


def test_a_closed_device_process_releases_its_pipe(device_process):
    """delgrad_hil/_device_process.py: "`close` also releases the pipe"."""
    process = device_process()
    process.close()
    assert process.channel.closed and not process._process.is_alive()


def test_a_warning_told_to_the_client_is_at_most_1000_characters():
    """delgrad_hil/_device_process.py: at most 1000 characters of one warning are told to a client
    (a reply's header is limited); a longer one is cut and says its length."""
    from delgrad_hil._device_process import _shortened

    assert _shortened("w" * 1000) == "w" * 1000
    cut = _shortened("w" * 1001)
    assert len(cut) <= 1000 and cut.endswith("w ... (1,001 characters)") and cut.startswith("w" * 900)


def test_the_warnings_of_a_job_are_told_once_each_and_every_time_a_job_gives_them():
    """delgrad_hil/_device_process.py: the device's warnings are collected "a line each, each
    once", and a backend's UserWarning every time (not once per process, as Python's default
    filter would)."""
    import warnings

    from delgrad_hil._device_process import _recorded_warnings

    def job():
        warnings.warn("the chip runs warm", stacklevel=1)

    for _ in range(2):
        told = []
        with _recorded_warnings(told):
            job()
            job()
        assert told == ["UserWarning: the chip runs warm"]


def test_a_network_the_child_holds_is_kept_alive_so_that_no_other_network_takes_its_key(device_process):
    """delgrad_hil/_device_process.py: a network travels once and "is named by a key afterwards"
    (its id), so the parent holds it while the child does: a network its caller let go must not
    be freed, or a new network could get its id and run as the old one."""
    import gc
    import weakref

    network, inputs = network_and_inputs(seed=1)
    network = network.frozen_copy()
    process = device_process()
    process.submit("execute", _request(network, inputs))
    process.collect("execute")
    held = weakref.ref(network)
    del network
    gc.collect()
    assert held() is not None


def test_only_a_device_error_the_device_marks_final_may_be_kept():
    """docs/hil-protocol.md: "an error the device marks retryable is not kept" in the cache of
    outcomes; nor is an internal failure (a fault of the service or of this module): `keep`
    only where a retry cannot change the outcome."""
    from delgrad_hil._protocol import error_fields

    assert DeviceFailure(error_fields("device_error", "refused", retryable=False, error_class="CalibrationError")).keep
    assert not DeviceFailure(error_fields("device_error", "gone", retryable=True,
                                          error_class="BackendUnavailable")).keep
    assert not DeviceFailure(error_fields("internal", "the service failed: KeyError: 'x'")).keep


def test_a_result_from_the_device_process_holds_no_wall_seconds(device_process):
    """docs/hil-protocol.md: "the service removes the `wall_seconds` that `Backend.execute` adds;
    the device's time is `run_s`", so the same job gives the same bytes every time."""
    network, inputs = network_and_inputs()
    request = _request(network, inputs)
    process = device_process()
    outcomes = []
    for _ in range(2):
        process.submit("execute", request)
        outcomes.append(process.collect("execute"))
    assert all("wall_seconds" not in result.metadata and run_s > 0 for result, run_s, _ in outcomes)
    assert outcomes[0][0].metadata == outcomes[1][0].metadata


def test_a_restarted_device_process_leaves_no_writer_of_the_old_child_behind(device_process):
    """delgrad_hil/_device_process.py: `restart` starts "a new child in place of one that has
    ended": the old child is stopped and its writer thread ends (one was left waiting for ever at
    every restart), and the new child serves."""
    import threading

    def writers():
        return sum(thread.name == "delgrad-hil-device-writer" for thread in threading.enumerate())

    before = writers()
    process = device_process()
    old = process._process
    process.restart()
    assert not old.is_alive() and process._process.is_alive() and writers() == before + 1
    network, inputs = network_and_inputs()
    process.submit("execute", _request(network, inputs))
    assert process.collect("execute")[0].layer_spike_times[-1].shape == (inputs.shape[0], 3)


def test_a_device_process_ended_just_now_is_reported_with_how_it_ended(device_process):
    """delgrad_hil/_device_process.py: the error for a child that has ended says how ("killed by
    signal 9"), also when asked the moment it was killed (it waits for the child's end: the
    status was None then)."""
    process = device_process()
    process.kill()
    assert str(process.ended_error()) == "the device process of 'hil-noisy' ended (killed by signal 9)"


def test_a_job_already_in_the_pipe_when_the_child_emptied_its_store_may_be_sent_again(device_process, monkeypatch):
    """delgrad_hil/_device_process.py: stores "never disagree for longer than the job already in
    the pipe": that job, naming a network the child no longer holds, fails retryable (not kept:
    a retry sends the network again and runs)."""
    import delgrad_hil._device_process as module

    network, inputs = network_and_inputs()
    network = network.frozen_copy()
    unreadable = network_and_inputs(seed=1)[0].frozen_copy()
    calibration = NoisyDevice().calibrate(network, seed=0)
    process = device_process()
    request = dg.ExecutionRequest(network, inputs, calibration, seed=0)
    process.submit("execute", request)
    process.collect("execute")  # (the child holds the network now)
    readable = module.network_payload
    monkeypatch.setattr(module, "network_payload", lambda network: b"not an npz archive")
    process.submit("execute", dg.ExecutionRequest(unreadable, inputs, calibration, seed=0))
    process.submit("execute", request)  # (named by its key: in the pipe before the child empties its store)
    monkeypatch.setattr(module, "network_payload", readable)
    with pytest.raises(DeviceFailure, match="npz"):
        process.collect("execute")
    with pytest.raises(DeviceFailure, match="no longer holds this job's network") as in_the_pipe:
        process.collect("execute")
    assert in_the_pipe.value.fields["retryable"] and not in_the_pipe.value.keep
    process.submit("execute", request)
    _same_result(process.collect("execute")[0], NoisyDevice().execute(request))


def test_a_reply_this_side_cannot_read_ends_the_child(device_process, monkeypatch):
    """delgrad_hil/_device_process.py, `collect`: "A reply this side cannot read leaves the pipe
    out of step: the child is ended then" (and said to have ended, not left running with the rest
    of the reply in the pipe)."""
    import delgrad_hil._device_process as module

    def unreadable(data, shape):
        raise ValueError("cannot read this reply")

    network, inputs = network_and_inputs()
    process = device_process()
    monkeypatch.setattr(module, "_floats", unreadable)
    process.submit("execute", _request(network, inputs))
    with pytest.raises(dg.BackendUnavailable, match=r"the device process of 'hil-noisy' ended \(killed by signal 9\)"):
        process.collect("execute")
    assert not process._process.is_alive()
