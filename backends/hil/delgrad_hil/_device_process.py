"""The service's device in a child process of its own, fed over a pipe (docs/hil.md).

Python runs one thread of a process at a time.  In the service's own process the device waited
for the message thread (reading, checking and signing messages) and ran with its memory moving
between the two cores' caches: a job of 2.8 ms took 3.4 ms of the device thread's CPU.  In a
process of its own the device runs as it does in-process.

The pipe carries a msgpack header and raw float64 frames, never pickle.  A network or a
calibration travels once (as npz bytes) and is named by a key afterwards; the parent decides
what the child keeps and tells it what to forget, so the two never disagree.  The parent hands
over up to `DEPTH` jobs, so the child starts the next job as soon as it finishes one.
"""

from __future__ import annotations

import io
import logging
import multiprocessing
import signal
import time
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
    save_network,
)

from delgrad_hil._protocol import error_fields

__all__ = ["DeviceProcess", "DeviceFailure", "DEPTH"]

log = logging.getLogger("delgrad_hil.device")

DEPTH = 2  # jobs handed to the child at once: one runs, the next waits in the pipe
_KEPT = 8  # networks and calibrations the child keeps
_START_TIMEOUT_S = 120.0  # for the child to import and build its device
_STOP_TIMEOUT_S = 2.0  # for the child to end after its pipe closed, before it is killed


class DeviceFailure(Exception):
    """A job the device refused or failed; `fields` are the error reply's fields and `keep`
    says whether the outcome may be cached (a retry cannot change it)."""

    def __init__(self, fields: dict):
        super().__init__(fields["message"])
        self.fields = fields
        self.keep = fields["code"] == "device_error" and not fields["retryable"]


def failure_fields(exc: BaseException) -> dict:
    """The error reply's fields for a job that raised `exc` on the device."""
    if isinstance(exc, DelgradError):
        return error_fields("device_error", str(exc), retryable=exc.retryable, error_class=type(exc).__name__,
                            capability=getattr(exc, "capability", None))
    return error_fields("internal", f"the service failed: {type(exc).__name__}: {exc}")


def _pack(header: dict) -> bytes:
    return msgpack.packb(header, use_bin_type=True)


def _unpack(data: bytes) -> dict:
    return msgpack.unpackb(data, raw=False, use_list=True)


def _network_bytes(network) -> bytes:
    buffer = io.BytesIO()
    save_network(network, buffer)
    return buffer.getvalue()


def _floats(data: bytes, shape) -> np.ndarray:
    return np.frombuffer(data, dtype=np.float64).reshape(shape)


class DeviceProcess:
    """A device backend (by name and options) running in a child process.

    `submit` hands a job over and returns at once; `collect` returns the outcome of the oldest
    job handed over: (the result or calibration, the device's run time in seconds), or raises
    `DeviceFailure`, or `BackendUnavailable` if the child has ended.
    """

    depth = DEPTH

    def __init__(self, name: str, options: dict | None = None):
        self.name = name
        context = multiprocessing.get_context("spawn")  # (no fork: the parent runs threads)
        self._pipe, child_end = context.Pipe()
        self._process = context.Process(target=_child_main, args=(child_end, name, dict(options or {})),
                                        name=f"delgrad-hil-device-{name}", daemon=True)
        self._process.start()
        child_end.close()
        self._networks: OrderedDict[int, object] = OrderedDict()  # id -> network the child holds
        self._calibrations: OrderedDict[str, None] = OrderedDict()  # digests of the child's calibrations
        self._handed: list[str] = []  # kinds of the jobs handed over, oldest first
        self._forget_all = False  # the child may not hold what the mirrors say (a job failed inside it)
        if not self._pipe.poll(_START_TIMEOUT_S):
            self.close()
            raise BackendUnavailable(f"the device process of {name!r} did not start within {_START_TIMEOUT_S:g} s")
        hello = self._receive()
        if not hello["ok"]:
            self.close()
            raise _rebuilt(hello["error"])
        self.capabilities = Capabilities.from_dict(hello["capabilities"])

    @property
    def channel(self):
        """The pipe end to wait on (`multiprocessing.connection.wait`): readable when an outcome
        is ready to collect, or the child has ended."""
        return self._pipe

    # -- handing jobs over -------------------------------------------------------------------------
    def submit(self, kind: str, work) -> None:
        """Hand over an execute job (`work`: a request whose calibration is the device's) or a
        calibrate job (`work`: (network or None, seed))."""
        try:
            if kind == "execute":
                self._send_execute(work)
            else:
                network, seed = work
                frames = [] if network is None else [_network_bytes(network)]
                self._send({"op": "calibrate", "seed": seed, "network": network is not None}, frames)
        except OSError:
            raise self.ended() from None
        self._handed.append(kind)

    def _send_execute(self, request: ExecutionRequest) -> None:
        network, calibration = request.network, request.calibration
        header = {"op": "execute", "network": id(network), "seed": request.seed,
                  "shape": list(request.input_spike_times.shape),
                  "calibration": None if calibration is None else calibration.digest}
        if self._forget_all:
            header["forget_all"], self._forget_all = True, False
        frames = []
        if id(network) in self._networks:
            self._networks.move_to_end(id(network))
        else:
            self._networks[id(network)] = network  # (held here, so its id is not reused)
            header["network_bytes"] = True
            frames.append(_network_bytes(network))
            header["forget_networks"] = self._trim(self._networks)
        if calibration is not None:
            if calibration.digest in self._calibrations:
                self._calibrations.move_to_end(calibration.digest)
            else:
                self._calibrations[calibration.digest] = None
                header["calibration_bytes"] = True
                frames.append(calibration.to_bytes())
                header["forget_calibrations"] = self._trim(self._calibrations)
        frames.append(request.input_spike_times)
        self._send(header, frames)

    @staticmethod
    def _trim(kept: OrderedDict) -> list:
        forgotten = []
        while len(kept) > _KEPT:
            forgotten.append(kept.popitem(last=False)[0])
        return forgotten

    def _send(self, header: dict, frames: list) -> None:
        self._pipe.send_bytes(_pack(header))
        for frame in frames:
            self._pipe.send_bytes(frame)

    # -- collecting outcomes -----------------------------------------------------------------------
    def collect(self) -> tuple[object, float]:
        """(result or calibration, run seconds) of the oldest job handed over."""
        kind = self._handed.pop(0)
        try:
            header = self._receive()
            if not header["ok"]:
                if header["error"]["code"] == "internal":  # (e.g. a network the child could not read)
                    self._networks.clear()
                    self._calibrations.clear()
                    self._forget_all = True
                raise DeviceFailure(header["error"])
            if kind != "execute":
                return Calibration.from_bytes(self._pipe.recv_bytes()), header["run_s"]
            times = [_floats(self._pipe.recv_bytes(), shape) for shape in header["layers"]]
            arrivals = header["arrivals"]
            if arrivals is not None:
                arrivals = [None if shape is None else _floats(self._pipe.recv_bytes(), shape) for shape in arrivals]
        except (OSError, EOFError):
            raise self.ended() from None
        return ExecutionResult(times, header["metadata"], arrivals), header["run_s"]

    def _receive(self) -> dict:
        try:
            return _unpack(self._pipe.recv_bytes())
        except (OSError, EOFError):
            raise self.ended() from None

    def ended(self) -> BackendUnavailable:
        """The error saying that the child has ended (its pipe reached its end)."""
        self._process.join(_STOP_TIMEOUT_S)
        status = self._process.exitcode
        return BackendUnavailable(f"the device process of {self.name!r} ended (exit status {status}); see the "
                                  f"service log", retryable=True)

    def close(self) -> None:
        """End the child: it finishes the job it runs within a short time, else it is killed."""
        self._pipe.close()
        self._process.join(_STOP_TIMEOUT_S)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()


def _rebuilt(fields: dict) -> Exception:
    """The device's construction error, as the class it was when it is one of delgrad's."""
    import delgrad_core

    error_class = getattr(delgrad_core, fields.get("error_class") or "", None)
    if isinstance(error_class, type) and issubclass(error_class, DelgradError):
        try:
            return error_class(fields["message"])
        except TypeError:  # (an error class with required fields of its own)
            pass
    return BackendUnavailable(fields["message"], retryable=False)


# -- the child ---------------------------------------------------------------------------------
def _child_main(pipe, name: str, options: dict) -> None:
    """Build the device, then run the jobs the pipe brings until it closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # (Ctrl-C reaches the whole group: the service stops the device)
    try:
        device = get_backend(name, **options)
    except BaseException as exc:
        pipe.send_bytes(_pack({"ok": False, "error": failure_fields(exc)}))
        return
    networks, calibrations = {}, {}
    with device:
        try:
            pipe.send_bytes(_pack({"ok": True, "capabilities": device.capabilities.to_dict()}))
            while True:
                header = _unpack(pipe.recv_bytes())
                if header["op"] == "execute":
                    _run_execute(pipe, device, header, networks, calibrations)
                else:
                    _run_calibrate(pipe, device, header)
        except (EOFError, OSError):  # the service closed the pipe or ended
            return


def _run_execute(pipe, device, header: dict, networks: dict, calibrations: dict) -> None:
    if header.get("forget_all"):
        networks.clear()
        calibrations.clear()
    for key in header.get("forget_networks", ()):
        networks.pop(key, None)
    for digest in header.get("forget_calibrations", ()):
        calibrations.pop(digest, None)
    network_frame = pipe.recv_bytes() if header.get("network_bytes") else None
    calibration_frame = pipe.recv_bytes() if header.get("calibration_bytes") else None
    inputs = _floats(pipe.recv_bytes(), header["shape"])
    try:
        if network_frame is not None:
            networks[header["network"]] = load_network(io.BytesIO(network_frame)).frozen_copy()
        if calibration_frame is not None:
            calibrations[header["calibration"]] = Calibration.from_bytes(calibration_frame)
        calibration = None if header["calibration"] is None else calibrations[header["calibration"]]
        request = ExecutionRequest(networks[header["network"]], inputs, calibration, header["seed"])
        started = time.perf_counter()
        result = device.execute(request)
        run_s = time.perf_counter() - started
    except Exception as exc:
        _send_failure(pipe, exc)
        return
    result.metadata.pop("wall_seconds", None)  # (the service reports run_s)
    arrivals = result.arrival_times
    pipe.send_bytes(_pack({"ok": True, "run_s": run_s, "metadata": result.metadata,
                           "layers": [list(times.shape) for times in result.layer_spike_times],
                           "arrivals": None if arrivals is None else
                           [None if values is None else list(values.shape) for values in arrivals]}))
    for values in [*result.layer_spike_times, *(arrivals or ())]:
        if values is not None:
            pipe.send_bytes(np.ascontiguousarray(values, dtype=np.float64))


def _run_calibrate(pipe, device, header: dict) -> None:
    network_frame = pipe.recv_bytes() if header["network"] else None
    try:
        network = None if network_frame is None else load_network(io.BytesIO(network_frame))
        started = time.perf_counter()
        calibration = device.calibrate(network, seed=header["seed"])
        run_s = time.perf_counter() - started
        payload = calibration.to_bytes()
    except Exception as exc:
        _send_failure(pipe, exc)
        return
    pipe.send_bytes(_pack({"ok": True, "run_s": run_s}))
    pipe.send_bytes(payload)


def _send_failure(pipe, exc: Exception) -> None:
    if not isinstance(exc, DelgradError):
        log.exception("a job failed inside the device process")
    pipe.send_bytes(_pack({"ok": False, "error": failure_fields(exc)}))
