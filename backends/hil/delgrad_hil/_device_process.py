"""The service's device in a child process of its own, fed over a pipe (docs/hil.md).

Python runs one thread of a process at a time.  In the service's own process the device waited
for the message thread (reading, checking and signing messages) and ran with its memory moving
between the two cores' caches: a job of 2.8 ms took 3.4 ms of the device thread's CPU.  In a
process of its own the device runs as it does in-process.

The pipe carries a msgpack header (the device's metadata in it as JSON text, as a result's bytes
hold it) and raw float64 frames, never pickle.  A network or a
calibration travels once (as npz bytes) and is named by a key afterwards; the parent decides
what the child keeps and tells it what to forget.  A job whose frames the child could not read
empties both sides' store (the reply says so), so the two never disagree for longer than the
job already in the pipe.  The parent hands over up to `DEPTH` jobs, so the child starts the next
job as soon as it finishes one; a writer thread sends them, so that the parent can read a large
result while a large job is on its way (sending and reading in one thread would deadlock once
both fill the pipe's buffer).  A child that has died is replaced in place by `restart`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import queue
import signal
import sys
import threading
import time
import warnings
from collections import OrderedDict

import msgpack
import numpy as np

from delgrad_core import (
    BackendUnavailable,
    Calibration,
    Capabilities,
    DelgradError,
    ExecutionRequest,
    ExecutionResult,
    get_backend,
    load_network,
)

from delgrad_hil._protocol import device_error, failure_fields, network_payload
from delgrad_hil._supervisor import how_it_ended, watch_parent

__all__ = ["DeviceProcess", "DeviceFailure", "DEPTH", "LOG_FORMAT"]

log = logging.getLogger("delgrad_hil.device")

LOG_FORMAT = "%(asctime)s delgrad-hil[%(process)d] %(levelname)s %(message)s"
DEPTH = 2  # jobs handed to the child at once: one runs, the next waits in the pipe
_KEPT = 8  # networks and calibrations the child keeps
_START_TIMEOUT_S = 120.0  # for the child to import and build its device
_STOP_TIMEOUT_S = 2.0  # for the child to end after it was asked to, before it is killed
_PARENT_WATCH_S = 0.2  # how often the child checks that the service is still its parent


class DeviceFailure(Exception):
    """A job the device refused or failed; `fields` are the error reply's fields and `keep`
    says whether the outcome may be cached (a retry cannot change it)."""

    def __init__(self, fields: dict):
        super().__init__(fields["message"])
        self.fields = fields
        self.keep = fields["code"] == "device_error" and not fields["retryable"]


def _pack(header: dict) -> bytes:
    return msgpack.packb(header, use_bin_type=True)


def _unpack(data: bytes) -> dict:
    return msgpack.unpackb(data, raw=False, use_list=True)


def _floats(data: bytes, shape) -> np.ndarray:
    return np.frombuffer(data, dtype=np.float64).reshape(shape)


def _raw(values) -> np.ndarray:
    """`values` as float64 bytes for `send_bytes` (a flat uint8 view: the pipe refuses arrays
    with a zero in their shape, e.g. a batch of no samples)."""
    return np.ascontiguousarray(values, dtype=np.float64).reshape(-1).view(np.uint8)


class DeviceProcess:
    """A device backend (by name and options) running in a child process.

    `submit` hands a job over and returns at once; `collect` returns the outcome of the oldest
    job handed over: (the result or calibration, the device's run time in seconds), or raises
    `DeviceFailure`, or `BackendUnavailable` if the child has ended.  `stop` ends the child,
    `close` also releases the pipe.
    """

    depth = DEPTH

    def __init__(self, name: str, options: dict | None = None, *, log_level: int = logging.INFO):
        self.name = name
        self.options = dict(options or {})  # (reported to clients)
        self._log_level = log_level
        self._start()

    def _start(self) -> None:
        """Start the child and wait until it has built its device (both sides' stores empty)."""
        context = multiprocessing.get_context("spawn")  # (no fork: the parent runs threads)
        self._pipe, child_end = context.Pipe()
        self._process = context.Process(target=_child_main, name=f"delgrad-hil-device-{self.name}",
                                        args=(child_end, self.name, self.options, self._log_level, os.getpid()))
        self._process.start()
        child_end.close()
        self._networks: OrderedDict[int, object] = OrderedDict()  # id -> network the child holds
        self._calibrations: OrderedDict[str, None] = OrderedDict()  # digests of the child's calibrations
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()  # messages (lists of frames) for the writer
        self._stopped = False
        self._writer = threading.Thread(target=self._write, name="delgrad-hil-device-writer", daemon=True)
        self._writer.start()
        try:
            if not self._pipe.poll(_START_TIMEOUT_S):
                raise BackendUnavailable(f"the device process of {self.name!r} did not start within "
                                         f"{_START_TIMEOUT_S:g} s")
            hello = self._receive()
            if not hello["ok"]:
                raise device_error(hello["error"], hello["error"]["message"])
        except BaseException:
            self.close()
            raise
        self.capabilities = Capabilities.from_dict(hello["capabilities"])

    def restart(self) -> None:
        """Start a new child in place of one that has ended (the jobs handed to the old one are
        lost; the new one starts with nothing stored)."""
        self.close()
        self._start()

    @property
    def channel(self):
        """The pipe end to wait on (`multiprocessing.connection.wait`): readable when an outcome
        is ready to collect, or the child has ended."""
        return self._pipe

    # -- handing jobs over -------------------------------------------------------------------------
    def submit(self, kind: str, work) -> None:
        """Hand over an execute job (`work`: a request whose calibration is the device's) or a
        calibrate job (`work`: (network or None, seed))."""
        if self._stopped:
            raise self.ended_error()
        if kind == "execute":
            header, frames = self._execute_message(work)
        else:
            network, seed = work
            header = {"op": "calibrate", "seed": seed, "network": network is not None}
            frames = [] if network is None else [network_payload(network)]
        self._outbox.put([_pack(header), *frames])

    def _execute_message(self, request: ExecutionRequest) -> tuple[dict, list]:
        network, calibration = request.network, request.calibration
        header = {"op": "execute", "network": id(network), "seed": request.seed,
                  "shape": list(request.input_spike_times.shape),
                  "calibration": None if calibration is None else calibration.digest}
        frames = []
        if id(network) in self._networks:
            self._networks.move_to_end(id(network))
        else:
            self._networks[id(network)] = network  # (held here, so its id is not reused)
            header["network_bytes"] = True
            frames.append(network_payload(network))
            header["forget_networks"] = self._trim(self._networks)
        if calibration is not None:
            if calibration.digest in self._calibrations:
                self._calibrations.move_to_end(calibration.digest)
            else:
                self._calibrations[calibration.digest] = None
                header["calibration_bytes"] = True
                frames.append(calibration.to_bytes())
                header["forget_calibrations"] = self._trim(self._calibrations)
        frames.append(_raw(request.input_spike_times))
        return header, frames

    @staticmethod
    def _trim(kept: OrderedDict) -> list:
        forgotten = []
        while len(kept) > _KEPT:
            forgotten.append(kept.popitem(last=False)[0])
        return forgotten

    def _write(self) -> None:
        while (message := self._outbox.get()) is not None:
            try:
                for frame in message:
                    self._pipe.send_bytes(frame)
            except OSError:  # the child has ended: `collect` reports it
                return
            except Exception:  # a fault of this module, the pipe out of step: end the child (`collect` says so)
                log.exception("could not hand a job to the device process")
                self._process.kill()
                return

    # -- collecting outcomes -----------------------------------------------------------------------
    def collect(self, kind: str) -> tuple[object, float, list]:
        """(result or calibration, run seconds, the warnings the device gave) of the oldest job
        handed over, of `kind`.  A reply this side cannot read leaves the pipe out of step: the
        child is ended then."""
        try:
            header = self._receive()
            if not header["ok"]:
                if header.get("emptied"):  # the child could not read a job's frames and emptied its store
                    self._networks.clear()
                    self._calibrations.clear()
                raise DeviceFailure(header["error"])
            told = header["warnings"]
            if kind != "execute":
                return Calibration.from_bytes(self._pipe.recv_bytes()), header["run_s"], told
            times = [_floats(self._pipe.recv_bytes(), shape) for shape in header["layers"]]
            arrivals = header["arrivals"]
            if arrivals is not None:
                arrivals = [None if shape is None else _floats(self._pipe.recv_bytes(), shape) for shape in arrivals]
            return ExecutionResult(times, json.loads(header["metadata"]), arrivals), header["run_s"], told
        except (DeviceFailure, BackendUnavailable):  # (the latter: the child ended; said by the caller)
            raise
        except (OSError, EOFError):
            raise self.ended_error() from None
        except Exception:
            log.exception("could not read a reply of the device process")
            self._process.kill()
            raise self.ended_error() from None

    def _receive(self) -> dict:
        try:
            data = self._pipe.recv_bytes()
        except (OSError, EOFError):
            raise self.ended_error() from None
        return _unpack(data)

    def ended_error(self) -> BackendUnavailable:
        """The error to raise when the child has ended (its pipe reached its end)."""
        self._process.join(_STOP_TIMEOUT_S)
        return BackendUnavailable(f"the device process of {self.name!r} ended ({how_it_ended(self._process.exitcode)})",
                                  retryable=True)

    # -- ending --------------------------------------------------------------------------------------
    def stop(self, *, at_once: bool = False) -> None:
        """End the child: it closes its device after the jobs already handed over, or is killed
        if that takes longer than a moment (`at_once`: killed without waiting, for jobs whose
        time is up).  A thread waiting on `channel` then sees its end."""
        if self._stopped:
            return
        self._stopped = True
        self._outbox.put([_pack({"op": "stop"})])
        self._outbox.put(None)
        self._process.join(0.0 if at_once else _STOP_TIMEOUT_S)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._writer.join(_STOP_TIMEOUT_S)  # (ends with the child: its pipe breaks)

    def kill(self) -> None:
        """End the child at once (for a process that is about to end without cleaning up)."""
        self._process.kill()

    def close(self) -> None:
        """`stop`, then release the pipe."""
        self.stop()
        self._pipe.close()


# -- the child ---------------------------------------------------------------------------------
def _child_main(pipe, name: str, options: dict, log_level: int, parent_pid: int) -> None:
    """Build the device, then run the jobs the pipe brings until it says stop or closes."""
    watch_parent(parent_pid, interval_s=_PARENT_WATCH_S)  # (a device must not run on for a service that is gone)
    # signals to the whole process group (Ctrl-C, a supervisor's SIGTERM, the SIGHUP of a closed
    # terminal) are for the service, which finishes its jobs and then stops this process
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    # what the device prints goes to the log: the service's stdout, which this process inherits,
    # may be a pipe read for the ready line only, and a full pipe would stop the device (a service
    # started with its stdout or stderr closed, as by some launchers, has none to redirect)
    if sys.stdout is not None and sys.stderr is not None:
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    logging.basicConfig(stream=sys.stderr, level=log_level, format=LOG_FORMAT)
    logging.captureWarnings(True)
    try:
        device = get_backend(name, **options)
    except BaseException as exc:
        pipe.send_bytes(_pack({"ok": False, "error": failure_fields(exc)}))
        return
    store = _Store()
    with device:
        try:
            pipe.send_bytes(_pack({"ok": True, "capabilities": device.capabilities.to_dict()}))
            while (header := _unpack(pipe.recv_bytes()))["op"] != "stop":
                if header["op"] == "execute":
                    reply = _run_execute(pipe, device, header, store)
                else:
                    reply = _run_calibrate(pipe, device, header)
                for frame in reply:
                    pipe.send_bytes(frame)
        except (EOFError, OSError):  # the service closed the pipe or ended
            return


class _Store:
    """The networks (by key) and calibrations (by digest) the child holds."""

    def __init__(self):
        self.networks: dict = {}
        self.calibrations: dict = {}

    def update(self, header: dict, network_frame, calibration_frame) -> None:
        for key in header.get("forget_networks", ()):
            self.networks.pop(key, None)
        for digest in header.get("forget_calibrations", ()):
            self.calibrations.pop(digest, None)
        if network_frame is not None:
            self.networks[header["network"]] = load_network(network_frame).frozen_copy()
        if calibration_frame is not None:
            self.calibrations[header["calibration"]] = Calibration.from_bytes(calibration_frame)

    def request(self, header: dict, inputs: bytes) -> ExecutionRequest:
        digest = header["calibration"]
        try:
            network = self.networks[header["network"]]
            calibration = None if digest is None else self.calibrations[digest]
        except KeyError:  # (emptied after an earlier job's frames could not be read: the parent sends it again)
            raise BackendUnavailable("the device process no longer holds this job's network or calibration; "
                                     "send the job again", retryable=True) from None
        return ExecutionRequest(network, _floats(inputs, header["shape"]), calibration, header["seed"])


_WARNING_CHARACTERS = 1000  # of one warning told to a client, at most (a reply's header is limited)


def _shortened(line: str) -> str:
    return (line if len(line) <= _WARNING_CHARACTERS
            else f"{line[:_WARNING_CHARACTERS - 30]} ... ({len(line):,} characters)")


@contextlib.contextmanager
def _recorded_warnings(told: list):
    """Collect the warnings the device gives inside the block into `told` (a line each, each
    once) and log them: the service tells them to the job's client, who would not see this
    process's log."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)  # (what a backend tells its user: every time; others as
        try:                                           # the filters say, e.g. no DeprecationWarning)
            yield
        finally:
            for item in caught:
                line = _shortened(f"{item.category.__name__}: {item.message}")
                if line not in told:
                    told.append(line)
                    log.warning("%s", line)


def _failure(exc: Exception, *, emptied: bool = False) -> list:
    if not isinstance(exc, DelgradError):  # (a fault of the device or of this module: worth a traceback)
        log.exception("a job failed inside the device process")
    return [_pack({"ok": False, "error": failure_fields(exc), "emptied": emptied})]


def _run_execute(pipe, device, header: dict, store: _Store) -> list:
    """The reply frames of an execute job (its frames are read from the pipe first, whatever
    happens, so that the pipe stays in step)."""
    network_frame = pipe.recv_bytes() if header.get("network_bytes") else None
    calibration_frame = pipe.recv_bytes() if header.get("calibration_bytes") else None
    inputs = pipe.recv_bytes()
    try:
        store.update(header, network_frame, calibration_frame)
        request = store.request(header, inputs)
    except Exception as exc:
        store.networks.clear()
        store.calibrations.clear()
        return _failure(exc, emptied=True)
    try:
        started, told = time.perf_counter(), []
        with _recorded_warnings(told):
            result = device.execute(request)
        run_s = time.perf_counter() - started
        result.metadata.pop("wall_seconds", None)  # (the service reports run_s)
        arrivals = result.arrival_times
        head = _pack({"ok": True, "run_s": run_s, "warnings": told,
                      "metadata": json.dumps(result.metadata, allow_nan=False),
                      "layers": [list(times.shape) for times in result.layer_spike_times],
                      "arrivals": None if arrivals is None else
                      [None if values is None else list(values.shape) for values in arrivals]})
        arrays = [_raw(values) for values in [*result.layer_spike_times, *(arrivals or ())] if values is not None]
    except Exception as exc:
        return _failure(exc)
    return [head, *arrays]


def _run_calibrate(pipe, device, header: dict) -> list:
    """The reply frames of a calibrate job."""
    network_frame = pipe.recv_bytes() if header["network"] else None
    try:
        network = None if network_frame is None else load_network(network_frame)
        started, told = time.perf_counter(), []
        with _recorded_warnings(told):
            calibration = device.calibrate(network, seed=header["seed"])
        run_s = time.perf_counter() - started
        return [_pack({"ok": True, "run_s": run_s, "warnings": told}), calibration.to_bytes()]
    except Exception as exc:
        return _failure(exc)
