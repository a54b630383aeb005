"""The `mock-hil` backend: a device behind a service process, reached through the HIL protocol.

Calibration and execution run on the service's device; the client sends each request as bytes
(its digest is the job id) and gets the spike times (and observed arrival times) back as
bytes.  Mapping a network onto the device (`represent`, `check_resources`) is host-side work,
as on a real system: the client does it with a local instance of the same device backend
(built from the device's name and options, never calibrated or run) and checks on connect that
the service's device declares the same capabilities.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import warnings

import numpy as np

from delgrad_core import (
    Backend,
    BackendUnavailable,
    Calibration,
    Capabilities,
    DelgradError,
    ExecutionResult,
    ExecutionTimeout,
    FileFormatError,
    InvalidResultError,
    InvalidValueError,
    UnknownOptionError,
    backend_info,
    get_backend,
)
from delgrad_core.plugin_tools import checked_number, factory_defaults

from delgrad_hil._address import check_address, refuse_relative_ipc
from delgrad_hil._calibration import BACKEND_NAME, unwrap, wrap
from delgrad_hil._device import DEFAULT_DEVICE, device_name, setting, took_unasked_defaults, unasked_settings_differ
from delgrad_hil._faults import FaultPlan
from delgrad_hil._limits import MAX_ATTEMPTS, MAX_BACKOFF_S, MAX_JOB_TIMEOUT_S, MAX_TIMEOUT_S, checked_seconds
from delgrad_hil._protocol import CLIENT_ID, CLIENT_ID_RULE, ProtocolError, calibration_job_id, network_payload

__all__ = ["DeviceRefused", "HilBackend"]


def _json_table(options: dict, field_name: str) -> dict:
    """`options` with numpy scalars as Python numbers; refused naming `field_name` if it is not
    JSON (the local service gets it on its command line)."""
    plain = {key: value.item() if isinstance(value, np.generic) else value for key, value in options.items()}
    try:
        json.dumps(plain, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidValueError(f"{field_name}: expected JSON values (numbers, strings, true/false, lists, tables), "
                                f"{exc}") from None
    return plain


def _optional_text(value, name: str) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise InvalidValueError(f"{name}: expected a non-empty string, got {value!r}")
    return value


class _ServiceChanged(BackendUnavailable):
    """The service at the address was restarted with other device options."""


class DeviceRefused(BackendUnavailable):
    """The service at the address answered, with a device this client cannot use (another one
    than asked for, or one not installed here as there)."""


def _welcome_limit(info: dict, field: str, address: str) -> int:
    """The whole number >= 1 of `field` in a service's welcome (its message and queue limits)."""
    value = info.get(field)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DeviceRefused(f"the service at {address} sent a welcome whose {field} is {value!r}, not a whole number "
                            ">= 1 (docs/hil-protocol.md, welcome)", retryable=False)
    return value


class HilBackend(Backend):
    """A device behind a (local or shared) HIL service.

    Parameters
    ----------
    address : str, optional
        Endpoint of a running service, e.g. ``tcp://127.0.0.1:5555``, whose token comes from
        `token`, `token_file` or ``$DELGRAD_HIL_TOKEN``.  Without it the backend starts its own
        service on first use (a child process on a free loopback port with a fresh token) and
        stops it on `close()`.
    device : str, optional
        The device of the local service (default: ``bss2-emulator`` when installed); with an
        `address`, the device the service must own (checked on connect).
    device_options : dict, optional
        Options of the local service's device (e.g. ``{"chip": 3}``).
    token, token_file : str, optional
        The shared token of the service at `address`, or a file holding it.
    faults : dict, optional
        Faults the local service injects (`FaultPlan` fields, e.g. ``{"drop_fraction": 0.1}``).
    timeout_s : float
        How long the client waits for any answer from the service (a reply, or the state of a
        job that takes longer) before it counts a failed attempt.
    job_timeout_s, calibration_timeout_s : float
        How long an execution or a calibration may take in all (queued and running).
    attempts : int
        Attempts per request (retries of the same job id).
    jobs_in_flight : int
        How many jobs of one `execute_many` call (e.g. the batches of an evaluation) are at the
        service at once: the device runs one while the next travels (1: one after another).
    backoff_s, max_backoff_s : float
        First wait between attempts and its cap (doubling, with jitter).
    client_id : str, optional
        This client's identity at the service (default: host, process and a random part).
    """

    name = BACKEND_NAME
    # how the client waits and retries, the faults it survives and where it sends (a result is the
    # same with them: the device behind an address is compared by the identity a run records)
    result_neutral_options = frozenset({"address", "timeout_s", "job_timeout_s", "calibration_timeout_s", "attempts",
                                        "jobs_in_flight", "backoff_s", "max_backoff_s", "client_id", "token_file",
                                        "faults"})

    def __init__(self, address: str | None = None, *, device: str | None = None, device_options: dict | None = None,
                 token: str | None = None, token_file: str | None = None, faults: dict | None = None,
                 timeout_s: float = 5.0, job_timeout_s: float = 600.0, calibration_timeout_s: float = 3600.0,
                 attempts: int = 5, jobs_in_flight: int = 4,
                 backoff_s: float = 0.05, max_backoff_s: float = 2.0, client_id: str | None = None):
        self.address = _optional_text(address, "address")
        if self.address is not None:
            check_address(self.address)
            refuse_relative_ipc(self.address)
        self.device = _optional_text(device, "device")
        if device_options is not None and not isinstance(device_options, dict):
            raise InvalidValueError(f"device_options: expected a table of options, got {device_options!r}")
        self.device_options = _json_table(device_options or {}, "device_options")
        self.token = token
        self.token_file = token_file
        self.faults = FaultPlan.from_dict(faults)
        if self.faults.exit_after_jobs == 1:  # (the local service is restarted on the job it ended on)
            raise InvalidValueError("faults.exit_after_jobs: at least 2 for the local service, got 1: it is restarted "
                                    "for the job it ended on, and would end on that job every time")
        if self.address is None and (token is not None or token_file is not None):
            given = "token" if token is not None else "token_file"
            raise InvalidValueError(f"{given}: only for a service at an address (the local service makes its own)")
        if self.address is not None and (self.device_options or self.faults.active):
            given = [name for name, value in (("device_options", self.device_options),
                                              ("faults", self.faults.active)) if value]
            raise InvalidValueError(f"{', '.join(given)}: set by the service at an address (delgrad hil serve), not "
                                    f"by its clients; leave {'them' if len(given) > 1 else 'it'} out, or give "
                                    f"{' '.join(name + '={}' for name in given)} over a run's own (to evaluate at an "
                                    "address a run of the local service)")
        self.timeout_s = checked_seconds(timeout_s, "timeout_s", MAX_TIMEOUT_S)
        self.job_timeout_s = checked_seconds(job_timeout_s, "job_timeout_s", MAX_JOB_TIMEOUT_S)
        self.calibration_timeout_s = checked_seconds(calibration_timeout_s, "calibration_timeout_s", MAX_JOB_TIMEOUT_S)
        self.attempts = checked_number(attempts, "attempts", 1, MAX_ATTEMPTS, integer=True)
        # (a service queues 16 jobs per client by default)
        self.jobs_in_flight = checked_number(jobs_in_flight, "jobs_in_flight", 1, 16, integer=True)
        self.backoff_s = checked_seconds(backoff_s, "backoff_s", MAX_BACKOFF_S)
        self.max_backoff_s = checked_seconds(max_backoff_s, "max_backoff_s", MAX_BACKOFF_S)
        if self.backoff_s > self.max_backoff_s:  # (every wait would be the cap: the backoff_s given not taken)
            raise InvalidValueError(f"backoff_s: {self.backoff_s:g} s is above max_backoff_s ({self.max_backoff_s:g} "
                                    "s), the cap of the waits between attempts; raise max_backoff_s too")
        self.client_id = _optional_text(client_id, "client_id")
        if self.client_id is not None and not CLIENT_ID.fullmatch(self.client_id):
            raise InvalidValueError(f"client_id: expected {CLIENT_ID_RULE}, got {self.client_id!r}")
        self.local_service = None
        self._model: Backend | None = None
        self._client = None
        self._service_id = None  # of the service greeted last
        self._service_device = None  # its device's name, at the last greeting
        self._service_device_options = None  # its device's options, at the last greeting
        self._unasked_defaults: dict = {}  # setting -> (as the service's options give it, as taken unasked)
        self._owner_pid = os.getpid()
        self._sent_calibrations: set[str] = set()  # digests of calibrations the service has received

    # -- the device, as the host maps networks onto it ---------------------------------------------
    def _device_model(self) -> Backend:
        if self._model is None:
            if self.address is None:
                name = device_name(self.device)
                try:
                    self._model = get_backend(name, **self.device_options)
                except InvalidValueError as exc:
                    if type(exc) not in (InvalidValueError, UnknownOptionError):
                        raise
                    # (not an UnknownOptionError: the names are the device's options, not mock-hil's)
                    raise InvalidValueError(f"device_options: {exc}") from exc
            else:
                self._session()  # the service says which device it owns
        return self._model

    @property
    def capabilities(self) -> Capabilities:
        return self._device_model().capabilities

    def represent(self, network):
        return self._device_model().represent(network)

    def check_resources(self, network):
        return self._device_model().check_resources(network)

    def check_request(self, request):
        return self._device_model().check_request(request)  # (here, before any job of a batch is sent)

    def conformance_profile(self):
        return self._device_model().conformance_profile()

    def _device_identity(self, calibration):
        """The identity of the service's device (built here with its options) with the device's
        calibration: a run compares equal with the same device run in-process."""
        return self._device_model().device_identity(unwrap(calibration))

    # -- the service ----------------------------------------------------------------------------
    def _session(self):
        """The connection to the service, opened on first use (starting the local service)."""
        self._check_open()
        if os.getpid() != self._owner_pid:
            raise BackendUnavailable(f"backend {self.name!r}: made in process {self._owner_pid}, whose connection and "
                                     "local service a child process cannot share; make a backend in this process",
                                     retryable=False)
        if self._client is None:
            from delgrad_hil._auth import Signer, load_token
            from delgrad_hil._client import ServiceClient, new_client_id
            from delgrad_hil._supervisor import LocalService

            service = None
            if self.address is None:
                service = LocalService(self._device_model().name, self.device_options, self.faults)
                try:
                    service.start()
                except BaseException:
                    service.stop()
                    raise
                token = service.token.encode()
            else:
                token = load_token(self.token, self.token_file)
            client = ServiceClient(self.address, Signer(token), self.client_id or new_client_id(),
                                   timeout_s=self.timeout_s, attempts=self.attempts, backoff_s=self.backoff_s,
                                   max_backoff_s=self.max_backoff_s, service=service)
            try:
                self._greet(client)
            except BaseException:
                client.close()
                if service is not None:
                    service.stop()
                raise
            self._client, self.local_service = client, service
        return self._client

    def _greet(self, client) -> None:
        """Greet the service: its device must be the one asked for and, greeted again after a
        restart, have the options it had at the first greeting; its message and queue limits are
        taken."""
        info = client.request("hello", expect="welcome", what="the greeting").header["info"]
        self._check_device(info, client.address)
        options = info.get("device_options")
        if self._service_id is not None and self._results_differ(options, self._service_device_options):
            raise _ServiceChanged(f"the service at {client.address} was restarted with device options {options}, "
                                  f"not {self._service_device_options}", retryable=False)
        self._service_id = info.get("service_id")
        self._service_device, self._service_device_options = info["device"], options
        self._unasked_defaults = unasked_settings_differ(client.address, info["device"], options)
        client.max_message_bytes = _welcome_limit(info, "max_message_bytes", client.address)
        client.max_queue = None if info.get("max_queue") is None else _welcome_limit(info, "max_queue", client.address)

    def check_training_settings(self, settings: dict) -> None:
        """Refuse the settings this process took from the defaults of the device's default options
        (its service did not answer then) that the service's options give otherwise; settings
        given, or stored by a run, that are what the service's options give go on (the service is
        asked only where such defaults were taken)."""
        if self.address is None or not took_unasked_defaults(self.address, self.device or DEFAULT_DEVICE):
            return
        self._session()
        missing = object()
        taken = {field: needed for field, (needed, default) in self._unasked_defaults.items()
                 if setting(settings, field, missing) == default}
        if taken:
            def shown(values):
                return " and ".join(f"{field} {value!r}" for field, value in values.items())

            raise BackendUnavailable(
                f"the service at {self._client.address} runs device {self._service_device!r} with options "
                f"{self._service_device_options}, which set {shown(taken)}; this run has "
                f"{shown({field: self._unasked_defaults[field][1] for field in taken})}, the defaults of the device's "
                "default options, taken as the service did not answer when the run's settings were made: give the "
                "settings its options need, or run again now that it answers", retryable=False)

    def _results_differ(self, options: dict, before: dict) -> bool:
        """Whether device `options` may give other results than the options `before` (those the
        device declares result-neutral aside, e.g. a thread count; an option left out is its
        default in the device's factory, e.g. chip 0 given or not)."""
        neutral = backend_info(self._service_device).details.get("result_neutral_options", frozenset())
        defaults = factory_defaults("backend", self._service_device)
        return {k: v for k, v in {**defaults, **options}.items() if k not in neutral} != \
            {k: v for k, v in {**defaults, **before}.items() if k not in neutral}

    def _check_device(self, info: dict, address: str) -> None:
        """The service's device must be the one asked for, installed here with the same
        capabilities (the host maps networks with it)."""
        name, options = info.get("device"), info.get("device_options")
        if not isinstance(name, str) or not isinstance(options, dict) or not isinstance(info.get("capabilities"), dict):
            raise DeviceRefused(f"the service at {address} did not describe its device", retryable=False)
        if self.device is not None and name != self.device:
            raise DeviceRefused(f"the service at {address} owns device {name!r}, not {self.device!r}",
                                retryable=False)
        if self.device is None and self.address is not None and name != DEFAULT_DEVICE:
            raise DeviceRefused(f"the service at {address} owns device {name!r}: name it with device={name} "
                                f"(without it, mock-hil takes the default device {DEFAULT_DEVICE!r} and its "
                                f"training settings)", retryable=False)
        if self._model is None:
            try:
                self._model = get_backend(name, **options)
            except Exception as exc:
                raise DeviceRefused(f"the service at {address} owns device {name!r}, which this client needs "
                                    f"installed to map networks onto it: {exc}", retryable=False) from None
        try:
            capabilities = Capabilities.from_dict(info["capabilities"])
        except InvalidValueError as exc:
            raise DeviceRefused(f"the service at {address} did not describe its device: its capabilities are "
                                f"unreadable ({exc})", retryable=False) from None
        if capabilities != self._model.capabilities:
            raise DeviceRefused(f"the service at {address} reports other capabilities for device {name!r} "
                                f"than the same device here (another version or other options)", retryable=False)

    def service_device(self) -> tuple[str, dict]:
        """(name, options) of the device of the service at `address`, as it says when greeted
        (the training defaults follow them)."""
        self._session()
        return self._service_device, dict(self._service_device_options)

    def status(self, *, executions: bool = False) -> dict:
        """The service's status: queues, jobs run, cache, faults, uptime, calibration digest; with
        `executions`, how often each job id ran on the device."""
        return self._session().request("status", {"executions": executions}, expect="status").header["info"]

    @property
    def retries(self) -> int:
        """Attempts beyond the first made so far (retried jobs)."""
        return 0 if self._client is None else self._client.retries

    # -- work -----------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _restart_named(self):
        """A device's refusal from a service restarted with another device or other device options
        (e.g. of a network or a calibration made before) is that restart's: greet again before
        passing it on, so that the restart is the error.  A job out of time is no refusal:
        greeting a silent service would first wait out every attempt (22 s with 20 attempts,
        after a job_timeout_s of 1 s)."""
        try:
            yield
        except DelgradError as exc:
            if isinstance(exc, (BackendUnavailable, ExecutionTimeout)) or self._client is None:
                raise
            try:
                self._greet(self._client)
            except (_ServiceChanged, DeviceRefused) as changed:  # (restarted with another device or options)
                raise changed from exc
            except DelgradError:
                pass  # (the refusal itself is the better report)
            raise

    def _calibrate(self, network, seed, progress) -> Calibration:
        payload = network_payload(network)
        job = calibration_job_id(seed, payload)
        with self._restart_named():
            reply = self._session().request("calibrate", {"job": job, "seed": seed}, payload, expect="calibration",
                                            job_timeout_s=self.calibration_timeout_s,
                                            what=f"calibration job {job[:12]}")
        self._tell_warnings(reply.header)
        try:
            self._check_same_service(reply.header["service"])
            return wrap(Calibration.from_bytes(reply.payload))
        except FileFormatError as exc:
            raise InvalidResultError(f"backend {self.name!r}: the service sent an unreadable calibration ({exc})") \
                from None

    def _execute(self, request) -> ExecutionResult:
        calibration = None if request.calibration is None else request.calibration.digest
        by_digest = calibration is not None and calibration in self._sent_calibrations
        try:
            reply = self._send_job(request, include_calibration=not by_digest)
        except ProtocolError as exc:
            if not by_digest or exc.code != "unknown_calibration":
                raise
            self._sent_calibrations.clear()  # the service forgot it (e.g. restarted): send it again in full
            reply = self._send_job(request, include_calibration=True)
        if calibration is not None:
            self._sent_calibrations.add(calibration)
        self._check_same_service(reply.header["service"])
        return self._result(reply, request.digest)

    def _execute_many(self, requests) -> list[ExecutionResult]:
        """Up to `jobs_in_flight` jobs at the service at once (the device runs one while the
        next travels); a job whose calibration the service has not received goes alone, with
        the calibration in full."""
        results: list[ExecutionResult] = []
        with self._restart_named():
            while len(results) < len(requests):
                first = end = len(results)
                while end < len(requests) and self._calibration_sent(requests[end]):
                    end += 1
                if end - first < 2 or self.jobs_in_flight == 1:
                    results.append(self._execute(requests[first]))
                else:
                    results.extend(self._overlapped(requests[first:end]))
        return results

    def _overlapped(self, requests) -> list[ExecutionResult]:
        """Jobs whose calibration the service holds, `jobs_in_flight` at a time."""
        done: dict[int, ExecutionResult] = {}

        services: set[str] = set()  # that answered: checked after the batch, whose lock a greeting would wait for

        def receive(index, reply):
            services.add(reply.header["service"])
            done[index] = self._result(reply, requests[index].digest)
            return done[index]

        results = None
        try:
            results = self._session().request_many(
                [functools.partial(self._job, request, include_calibration=False) for request in requests],
                expect="result", depth=self.jobs_in_flight, job_timeout_s=self.job_timeout_s, receive=receive)
        except ProtocolError as exc:
            if exc.code != "unknown_calibration":
                raise
            self._sent_calibrations.clear()  # the service forgot it (e.g. restarted): send it again in full
        for service in sorted(services):
            self._check_same_service(service)
        if results is not None:
            return results
        rest = iter(self._execute_many([request for index, request in enumerate(requests) if index not in done]))
        return [done[index] if index in done else next(rest) for index in range(len(requests))]

    def _send_job(self, request, *, include_calibration: bool):
        message_type, fields, payload, what = self._job(request, include_calibration=include_calibration)
        return self._session().request(message_type, fields, payload, expect="result",
                                       job_timeout_s=self.job_timeout_s, what=what)

    def _calibration_sent(self, request) -> bool:
        return request.calibration is None or request.calibration.digest in self._sent_calibrations

    @staticmethod
    def _job(request, *, include_calibration: bool) -> tuple:
        """(message type, fields, payload, description) of an execute job; the calibration
        travels in full, or as its digest once the service holds it (a large calibration then
        costs nothing per job)."""
        job = request.digest
        return "execute", {"job": job}, request.to_bytes(include_calibration=include_calibration), f"job {job[:12]}"

    def _check_same_service(self, service: str) -> None:
        """A job answered by another service than the one greeted (restarted at the address)
        may have run on another device or device options: greet it and check them again,
        refusing the answer of another one.  The restart of a shared service is told (a local
        one's client restarted it and said so)."""
        if service != self._service_id:
            before = self._service_id
            self._greet(self._client)
            if self.address is not None and before is not None:
                warnings.warn(f"backend {self.name!r}: the service at {self.address} was restarted (service {before}, "
                              f"now {self._service_id}); its device and options give the same results, so the run "
                              "goes on", UserWarning, stacklevel=2)

    def _result(self, reply, job: str) -> ExecutionResult:
        if reply.header["job"] != job:
            raise InvalidResultError(f"backend {self.name!r}: the service answered job {reply.header['job'][:12]} "
                                     f"to job {job[:12]}")
        try:
            result = ExecutionResult.from_bytes(reply.payload)
        except FileFormatError as exc:
            raise InvalidResultError(f"backend {self.name!r}: the service sent an unreadable result ({exc})") from None
        result.metadata.update(device_wall_seconds=reply.header["run_s"], from_cache=reply.header["cached"])
        self._tell_warnings(reply.header)
        return result

    def _tell_warnings(self, header: dict) -> None:
        """Warn here what the device warned about in the service's process."""
        for line in header.get("warnings", ()):
            warnings.warn(f"backend {self.name!r} (device {device_name(self.device)!r}): {line}", UserWarning,
                          stacklevel=4)

    def _close(self) -> None:
        if os.getpid() == self._owner_pid:  # (a forked child's copy leaves its parent's service alone)
            if self._client is not None:
                self._client.close()
            if self.local_service is not None:
                self.local_service.stop()
        if self._model is not None:
            self._model.close()
