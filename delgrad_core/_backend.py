"""Backend interface: how an execution target is called (docs/backends.md).

A backend runs `ExecutionRequest`s on some substrate (ideal simulator, emulator, device) and
returns the first spike time of every neuron, plus observed arrival times where the substrate
measures them.  Gradients are computed on the host from those times (docs/model.md §4).

Subclasses implement `capabilities` and `_execute(request)`; optionally `_calibrate`,
`check_resources`, `represent` (the default applies the constraints the capabilities state),
`conformance_profile` and `_close`.  The public methods validate and refuse unsupported
networks before any substrate work.  As in scikit-learn, constructors only store
configuration.  Backends are context managers: `close()` releases processes and connections.
"""

from __future__ import annotations

import abc
import contextlib
import json
import numbers
import time
import warnings
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from delgrad_core._calibration import Calibration, calibration_key
from delgrad_core._capabilities import Capabilities, apply_constraints
from delgrad_core._errors import (
    BackendError,
    BackendUnavailable,
    DelgradError,
    CalibrationError,
    InvalidResultError,
    InvalidValueError,
    UnsupportedNetworkError,
    described,
    named_for,
)
from delgrad_core._execution import ExecutionRequest, ExecutionResult, check_seed
from delgrad_core._ir import DelayKind, Network
from delgrad_core._numbers import checked_number

__all__ = ["Backend", "ConformanceProfile", "SKIPPABLE_CHECKS", "check_training_settings_of", "close_after_work",
           "exit_closing", "is_device_identity"]

_CHECKED_NETWORKS = 4  # read-only networks whose checks and representation a backend remembers


# checks of the conformance suite a backend may declare it cannot take part in
SKIPPABLE_CHECKS = ("agreement", "silence", "training")


@dataclass(frozen=True)
class ConformanceProfile:
    """How the conformance suite judges a backend (declared by the backend).

    Exact backends (`Capabilities.exact`) must match the ideal model on `represent(network)` to
    `exact_tolerance` (times 1 + |t|).  Others are compared layer by layer over its (sample,
    neuron) entries: silent/spiking must agree in at least `min_silence_agreement`, and the
    median absolute spike-time error must stay below `max_median_error` tau_s.  A spike may come
    before the first arrival of its inputs by `exact_tolerance` (1 + |t|) on exact backends and
    by `causality_tolerance` tau_s on the others, whatever their agreement tolerances (the default
    covers the ticks and offset of hardware timestamps: BrainScaleS-2 at tau = 6 us has 8 ns
    ticks, 0.0013 tau, and an offset of about -80 ns).  `unsupported` maps names of checks the
    backend cannot take part in to the reason (they are skipped with it).
    """

    exact_tolerance: float = 1e-9
    max_median_error: float = 0.01
    min_silence_agreement: float = 0.95
    unsupported: dict = field(default_factory=dict)
    causality_tolerance: float = 0.02  # (after `unsupported`: positional arguments keep their meaning)

    def __post_init__(self):
        for name in ("exact_tolerance", "max_median_error", "min_silence_agreement", "causality_tolerance"):
            checked_number(getattr(self, name), f"ConformanceProfile.{name}", 0)
        if self.min_silence_agreement > 1:
            raise InvalidValueError(f"ConformanceProfile.min_silence_agreement: expected a fraction <= 1, got "
                                    f"{self.min_silence_agreement!r}")
        unknown = sorted(set(self.unsupported) - set(SKIPPABLE_CHECKS)) if isinstance(self.unsupported, dict) else None
        if unknown is None or unknown:
            raise InvalidValueError(f"ConformanceProfile.unsupported: expected a table of check name -> reason with "
                                    f"the checks {', '.join(SKIPPABLE_CHECKS)}, got {self.unsupported!r}")
        for check, reason in self.unsupported.items():  # (the suite skips the check with it)
            if not isinstance(reason, str) or not reason.strip():
                raise InvalidValueError(f"ConformanceProfile.unsupported[{check!r}]: expected the reason the backend "
                                        f"cannot take part in the check (a non-empty string), got {reason!r}")


def exit_closing(closeable, failed: bool) -> None:
    """Close `closeable` where its ``with`` block ends: a failure to close is raised, unless the
    block `failed` (then it is warned of: the error that ended the block is the one to report)."""
    if not failed:
        closeable.close()
        return
    try:
        closeable.close()
    except Exception as close_error:
        warnings.warn(str(close_error), RuntimeWarning, stacklevel=3)


def close_after_work(closeable, outcome: str) -> None:
    """Close `closeable` (a backend, or a trainer that closes one) once its work is done: a
    `BackendError` while closing is then a warning ending with `outcome` (e.g. "the run is
    complete"), not an error that would hide the work's results."""
    try:
        closeable.close()
    except BackendError as exc:
        warnings.warn(f"{exc}; {outcome}", RuntimeWarning, stacklevel=3)


def _owned(result: ExecutionResult) -> ExecutionResult:
    """`result` with copies of its lists, arrays and metadata table (not of tables inside it),
    which the backend may reuse for its next job (anything else is left for
    `ExecutionResult.validate` to refuse)."""
    def copied(values):
        return [value.copy() if isinstance(value, np.ndarray) else value for value in values] \
            if isinstance(values, list) else values

    metadata = dict(result.metadata) if isinstance(result.metadata, dict) else result.metadata
    return ExecutionResult(copied(result.layer_spike_times), metadata, copied(result.arrival_times))


def _byte_bounds(array: np.ndarray) -> tuple[int, int]:
    """The first and one past the last byte address `array` reads."""
    low = high = array.__array_interface__["data"][0]
    for extent, stride in zip(array.shape, array.strides):
        reach = (extent - 1) * stride
        low, high = (low + reach, high) if reach < 0 else (low, high + reach)
    return low, high + array.itemsize


def _jobs_sharing_memory(results: list) -> tuple[int, int] | None:
    """(i, j), i < j, of two jobs whose writeable result arrays overlap in memory (a backend that
    filled the same buffers for each job: all but the last hold another job's times), else None.
    Read-only arrays, which a cache may hand to several jobs, are left out."""
    extents = sorted((*_byte_bounds(array), job) for job, result in enumerate(results)
                     for array in (*result.layer_spike_times, *(result.arrival_times or ()))
                     if isinstance(array, np.ndarray) and array.size and array.flags.writeable)
    reach, owner = None, None  # (the furthest end met so far, and the job whose array reaches it)
    for low, high, job in extents:
        if reach is not None and low < reach and job != owner:
            return min(job, owner), max(job, owner)
        if reach is None or high > reach:
            reach, owner = high, job
    return None


def check_training_settings_of(backend: "Backend", settings: dict) -> None:
    """`backend.check_training_settings(settings)`, its unexpected exceptions a `BackendError`
    naming the backend, as for its other methods; a value returned (a reason, as
    `check_resources` returns one) is refused, as it refused nothing."""
    with backend._failures_named("checking the training settings"):
        returned = backend.check_training_settings(settings)
    _refuse_returned(backend, "check_training_settings", returned)


def _refuse_returned(backend: "Backend", method: str, returned) -> None:
    """Refuse a value a refusing method (`check_request`, `check_training_settings`) returned:
    such a method refuses by raising, and returns nothing."""
    if returned is not None:
        shown = repr(returned)
        shown = shown if len(shown) <= 100 else shown[:97] + "..."
        raise InvalidResultError(f"backend {backend.name!r}: {method} returned {type(returned).__name__} ({shown}), "
                                 "not None: it refuses by raising InvalidValueError naming what, and returns nothing")


def is_device_identity(value) -> bool:
    """Whether `value` has the form of `Backend.device_identity`: a table of backend,
    calibration_key, calibration_digest (strings) and, optionally, options (a table)."""
    return (isinstance(value, dict)
            and all(isinstance(value.get(name), str) for name in ("backend", "calibration_key", "calibration_digest"))
            and isinstance(value.get("options", {}), dict))


class Backend(abc.ABC):
    """An execution target for networks.

    Subclasses set `name`, implement the `capabilities` property and `_execute`; backends with
    `capabilities.needs_calibration` also implement `_calibrate`.
    """

    name: str = ""
    _closed: bool = False
    #: How the last `calibrate` call was served by a backend that caches calibrations:
    #: ``("hit", path)`` when read from its cache, ``("stored", path)`` when made and stored
    #: there, ``("not_stored", path)`` when the cache could not be written; None when the
    #: backend keeps no cache (or has not calibrated yet).
    calibration_cache: tuple[str, str] | None = None
    #: Options that never change a result (threads, caching, timeouts, retries): a run may be
    #: resumed with other values of these.
    result_neutral_options: frozenset = frozenset()
    _checked_networks: OrderedDict | None = None  # id -> (weak reference, represented network)

    # -- what subclasses provide ---------------------------------------------------------------
    @property
    @abc.abstractmethod
    def capabilities(self) -> Capabilities:
        """What this backend can run (static; also passed at registration)."""

    @abc.abstractmethod
    def _execute(self, request: ExecutionRequest) -> ExecutionResult:
        """Run a validated request whose network is supported and representable."""

    def _calibrate(self, network: Network | None, seed: int | None, progress) -> Calibration:
        """Default for backends without calibration: an empty one.  `progress(done, total)`
        (or None) may be called to report long work."""
        return Calibration(self.name, {}, calibration_key(self.name))

    def check_resources(self, network: Network) -> str | None:
        """Why `network` does not fit the substrate's resources (None: it fits)."""
        return None

    def check_training_settings(self, settings: dict) -> None:
        """Refuse training `settings` (a run's, `TrainingConfig.to_dict()`, or those of them it
        uses) this backend cannot run with, e.g. defaults it registered before it knew its
        device's options; by default none."""

    def _device_identity(self, calibration: Calibration) -> dict:
        """See `device_identity`: the backend's name and `calibration`'s key and digest; a
        backend adds the options that change its results (with their defaults filled in) under
        "options", and one that forwards jobs to another backend's device returns that
        device's identity."""
        return {"backend": self.name, "calibration_key": calibration.cache_key,
                "calibration_digest": calibration.digest}

    def represent(self, network: Network) -> Network:
        """The network the substrate actually runs (weights clipped and quantised, delays
        rounded and bounded, as the capabilities state); `network` itself if nothing changes."""
        return apply_constraints(network, self.capabilities)

    def conformance_profile(self) -> ConformanceProfile:
        """Tolerances and unsupported checks for the conformance suite."""
        return ConformanceProfile()

    def _close(self) -> None:
        """Release processes, connections, devices (called once by `close`)."""

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        """Release what the backend holds; later calls are refused.  Safe to call twice."""
        if not self._closed:
            self._closed = True
            with self._failures_named("closing"):
                self._close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "Backend":
        self._check_open()  # (a closed backend entered without a word, to refuse the work inside)
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        exit_closing(self, exc_type is not None)

    def _check_open(self) -> None:
        if self._closed:
            raise BackendUnavailable(f"backend {self.name!r} is closed", retryable=False)

    def __reduce_ex__(self, protocol):
        """Backends do not travel between processes: they may hold processes, connections,
        devices and caches of this one."""
        raise InvalidValueError(f"backend {self.name!r}: a backend object cannot be pickled or copied; give another "
                                f"process its name and options, and build it there (get_backend(name, **options))")

    # -- checks --------------------------------------------------------------------------------
    def can_run(self, network: Network) -> str | None:
        """None if the backend can run `network`, else the reason why not."""
        try:
            self.check_supported(network)
        except UnsupportedNetworkError as exc:
            return str(exc)
        return None

    def check_supported(self, network: Network) -> None:
        """Raise `UnsupportedNetworkError` naming the first capability `network` needs but lacks."""
        if not isinstance(network, Network):
            raise InvalidValueError(f"network: expected a delgrad_core.Network, got {type(network).__name__}")
        network.validate()
        with self._failures_named("reporting its capabilities"):
            caps = self.capabilities
        if not isinstance(caps, Capabilities):
            raise InvalidResultError(f"backend {self.name!r}: its capabilities are a {type(caps).__name__}, not a "
                                     "delgrad_core.Capabilities")
        prefix = f"backend {self.name!r} does not support"
        if caps.max_layers is not None and len(network.layers) > caps.max_layers:
            raise UnsupportedNetworkError(
                f"{prefix} {len(network.layers)} layers (max_layers: {caps.max_layers})", capability="max_layers"
            )
        for layer in network.layers:
            projection, population = layer.projection, layer.population
            if projection.delay_kind not in caps.delay_kinds:
                supported = ", ".join(k.value for k in DelayKind if k in caps.delay_kinds) or "none at all"
                raise UnsupportedNetworkError(
                    f"{prefix} delay kind {projection.delay_kind.value!r} (supports: {supported}) "
                    f"in {projection.name!r}",
                    capability="delay_kinds",
                )
            if caps.max_inputs is not None and projection.n_pre > caps.max_inputs:
                raise UnsupportedNetworkError(
                    f"{prefix} {projection.n_pre} inputs per neuron in {projection.name!r} "
                    f"(max_inputs: {caps.max_inputs})",
                    capability="max_inputs",
                )
            if caps.max_layer_size is not None and population.size > caps.max_layer_size:
                raise UnsupportedNetworkError(
                    f"{prefix} {population.size} neurons in layer {population.name!r} "
                    f"(max_layer_size: {caps.max_layer_size})",
                    capability="max_layer_size",
                )
            _, tau_m, tau_s = layer.neuron_arrays()
            for ratio in np.unique(tau_m / tau_s):
                if not caps.supports_ratio(float(ratio)):
                    allowed = ", ".join(f"{r:g}" for r in caps.tau_ratios)
                    raise UnsupportedNetworkError(
                        f"{prefix} tau_m/tau_s ratio {ratio:.12g} in layer {population.name!r} (supports: {allowed})",
                        capability="tau_ratios",
                    )
        with self._on_snapshot(network, "checking its resources", "check_resources", "do not change it") as snapshot:
            reason = self.check_resources(snapshot)
        if reason is not None and not (isinstance(reason, str) and reason.strip()):  # ("": refused, saying nothing)
            shown = type(reason).__name__ if not isinstance(reason, str) else "an empty string"
            raise InvalidResultError(f"backend {self.name!r}: check_resources returned {shown}, not a reason "
                                     "(a non-empty str) or None (it fits)")
        if reason is not None:
            raise UnsupportedNetworkError(f"backend {self.name!r} cannot place the network: {reason}",
                                          capability="resources")

    # -- work ----------------------------------------------------------------------------------
    def calibrate(self, network: Network | None = None, *, seed: int | None = None,
                  progress: Callable[[int, int], None] | None = None) -> Calibration:
        """Calibrate the substrate (for `network`, refused first if unsupported, or in general).

        `progress(done, total)` is called as the work proceeds if the backend reports it.
        """
        self._check_open()
        seed = check_seed(seed)
        if progress is not None and not callable(progress):
            raise InvalidValueError(f"progress: expected None or a callable progress(done, total), got "
                                    f"{type(progress).__name__}")
        if network is not None:
            if not isinstance(network, Network):
                raise InvalidValueError(f"network: expected None or a delgrad_core.Network, got "
                                        f"{type(network).__name__}")
            network = network.frozen_copy()  # (one snapshot for the check and for _calibrate)
            self.check_supported(network)
        with self._on_snapshot(network, "calibrating", "_calibrate", "do not change it") as snapshot:
            checked = None if progress is None else self._checked_progress(progress)
            calibration = self._calibrate(snapshot, seed, checked)
        if not isinstance(calibration, Calibration):
            raise InvalidResultError(
                f"backend {self.name!r}: _calibrate returned {type(calibration).__name__}, not a Calibration"
            )
        if calibration.backend != self.name:
            raise InvalidResultError(f"backend {self.name!r}: _calibrate returned a calibration of backend "
                                     f"{calibration.backend!r}")
        return calibration

    def _checked_progress(self, progress: Callable[[int, int], None]) -> Callable[[int, int], None]:
        """`progress`, passed only reports of whole numbers 0 <= done <= total (others are refused
        as the backend's fault: a NaN ended a progress bar in a traceback)."""
        def report(done, total) -> None:
            if not all(isinstance(n, numbers.Integral) and not isinstance(n, (bool, np.bool_)) for n in (done, total)) \
                    or not 0 <= done <= total:
                raise InvalidResultError(f"backend {self.name!r}: reported calibration progress ({done!r}, {total!r}); "
                                         "expected whole numbers 0 <= done <= total")
            progress(int(done), int(total))

        return report

    def execute(self, request, input_spike_times=None, *, calibration: Calibration | None = None,
                seed: int | None = None) -> ExecutionResult:
        """Run an `ExecutionRequest` (or a network with its inputs, calibration and seed).

        The network is refused before anything runs if unsupported, then replaced by
        `represent(network)` (what the substrate runs).  The result is checked against the
        request (`InvalidResultError` if it breaks the contract); `wall_seconds` is added to
        its metadata unless the backend set it.
        """
        self._check_open()
        if isinstance(request, ExecutionRequest):
            if input_spike_times is not None or calibration is not None or seed is not None:
                raise InvalidValueError("execute: pass either an ExecutionRequest or network, inputs, calibration, "
                                        "seed")
        elif not isinstance(request, Network):
            raise InvalidValueError(f"request: expected an ExecutionRequest, or a Network with input_spike_times, got "
                                    f"{type(request).__name__}")
        else:
            request = request.frozen_copy()  # (the snapshot the request holds: copied once, checked once)
            self.check_supported(request)  # an unsupported network is refused before its inputs are read
            if input_spike_times is None:
                raise InvalidValueError("input_spike_times: required when executing a network")
            request = ExecutionRequest(request, input_spike_times, calibration, seed)
        return self.execute_many([request])[0]

    def execute_many(self, requests) -> list[ExecutionResult]:
        """Run several `ExecutionRequest`s; the results, in order, are those `execute` gives
        for each request.

        Every request is checked (and represented) before the first one runs.  A backend may
        keep several jobs in flight (a remote device overlaps transfers with execution); the
        default runs them one after another.
        """
        self._check_open()
        if isinstance(requests, (ExecutionRequest, Network)) or not hasattr(requests, "__iter__"):
            raise InvalidValueError(f"requests: expected a list of ExecutionRequest objects, got "
                                    f"{type(requests).__name__} (one request: use execute)")
        prepared = [self._prepared(request) for request in requests]
        start = time.perf_counter()
        with self._failures_named("executing"):
            results = self._execute_many(prepared)
        per_job_s = (time.perf_counter() - start) / max(len(prepared), 1)
        if not isinstance(results, list) or len(results) != len(prepared):
            raise InvalidResultError(f"backend {self.name!r}: _execute_many returned no list of {len(prepared)} "
                                     f"results")
        for index, result in enumerate(results):
            if not isinstance(result, ExecutionResult):
                own_batching = type(self)._execute_many is not Backend._execute_many
                method = f"_execute_many (item {index})" if own_batching else "_execute"
                raise InvalidResultError(f"backend {self.name!r}: {method} returned {type(result).__name__}, not an "
                                         "ExecutionResult")
        shared = _jobs_sharing_memory(results)  # (before the results' checks, which such results fail in other words)
        if shared is not None:
            raise InvalidResultError(f"backend {self.name!r}: _execute_many returned results of jobs {shared[0]} and "
                                     f"{shared[1]} whose arrays share memory (buffers filled again for each job hold "
                                     "another job's times); return new arrays for each job")
        for request, result in zip(prepared, results):
            result.validate(request, self.name)
            result.metadata.setdefault("wall_seconds", per_job_s)
        return results

    def _execute_many(self, requests: list[ExecutionRequest]) -> list[ExecutionResult]:
        """Run checked, represented requests; the default runs `_execute` on each in turn."""
        results = []
        for request in requests:
            start = time.perf_counter()
            result = self._execute(request)
            if isinstance(result, ExecutionResult):
                result = _owned(result)  # (a backend may fill the same buffers for its next job)
                result.metadata.setdefault("wall_seconds", time.perf_counter() - start)
            results.append(result)
        return results

    def _prepared(self, request) -> ExecutionRequest:
        """`request` checked against this backend, its network replaced by `represent(network)`."""
        if not isinstance(request, ExecutionRequest):
            raise InvalidValueError(f"requests: expected ExecutionRequest objects, got {type(request).__name__}")
        network = self._checked(request.network)
        self._check_calibration(request.calibration)
        max_batch = self.capabilities.max_batch_size
        if max_batch is not None and request.batch_size > max_batch:
            raise UnsupportedNetworkError(
                f"backend {self.name!r} does not support batches of {request.batch_size} samples "
                f"(max_batch_size: {max_batch}); split the batch", capability="max_batch_size")
        prepared = request if network is request.network else request.replace(network=network)
        with self._failures_named("checking the request"):
            returned = self.check_request(prepared)
        _refuse_returned(self, "check_request", returned)  # (a reason returned, as check_resources does)
        return prepared

    def check_request(self, request: ExecutionRequest) -> None:
        """Refuse (an `InvalidValueError` naming what) a request whose inputs, calibration or
        seed the substrate cannot run, e.g. input spikes outside its time window.  Called for
        every request of `execute_many` before the first one runs, its network already checked
        and represented; the default refuses nothing."""

    def _checked(self, network: Network) -> Network:
        """`represent(network)` after `check_supported(network)`; both are remembered for the
        last few read-only networks met, by identity (the jobs of an evaluation share one)."""
        remembered = self._checked_networks
        if remembered is None:
            remembered = self._checked_networks = OrderedDict()
        known = remembered.get(id(network))
        if known is not None and known[0]() is network:
            return known[1]
        self.check_supported(network)
        represented = self.represent_checked(network)
        if represented is not network:
            represented = represented.frozen_copy()  # (what the requests hold: one snapshot for all)
        if network._frozen:  # (a snapshot never changes; requests hold snapshots)
            remembered[id(network)] = (weakref.ref(network), represented)
            while len(remembered) > _CHECKED_NETWORKS:
                remembered.popitem(last=False)
        return represented

    @contextlib.contextmanager
    def _failures_named(self, doing: str):
        """Turn an unexpected exception of the substrate code into a `BackendError` naming the
        backend, and prefix a plain `InvalidValueError` of it with the backend's name (the
        original stays attached as the cause), and its own `BackendError`s too (the same error,
        its message prefixed where it does not name the backend)."""
        owner = f"backend {self.name!r}"
        try:
            yield
        except InvalidValueError as exc:  # (the request was checked: a value the backend's own code refuses)
            raise named_for(exc, owner, f" while {doing}")
        except BackendError as exc:  # (e.g. "board lost power": which board, the user may not know)
            if owner not in str(exc) and len(exc.args) == 1 and isinstance(exc.args[0], str):
                exc.args = (f"{owner}: {exc.args[0]}",)
            raise
        except (DelgradError, KeyboardInterrupt, MemoryError, GeneratorExit):
            raise
        except BaseException as exc:  # (SystemExit too: a device library calling sys.exit must not end the host's
            # command as if it had succeeded; and a library's own BaseException, which a Dask worker loses)
            raise BackendError(f"{owner} failed while {doing}: {described(exc)}") from exc

    def device_identity(self, calibration: Calibration) -> dict:
        """What decides this backend's results besides a request's network, inputs and seed,
        as a JSON table that runs record and compare (a run resumed or evaluated on another
        identity is told so): {"backend", "calibration_key", "calibration_digest"[, "options"]}.
        A backend forwarding jobs to another one's device gives that device's identity, so that
        a run compares equal with the device run in-process."""
        if not isinstance(calibration, Calibration):  # (its backend's AttributeError was a BackendError)
            raise InvalidValueError(f"calibration: expected a Calibration, got {type(calibration).__name__}")
        with self._failures_named("describing its device"):
            identity = self._device_identity(calibration)
        if not is_device_identity(identity):
            raise InvalidResultError(f"backend {self.name!r}: _device_identity returned {identity!r}, not a table "
                                     "of backend, calibration_key, calibration_digest (strings) and options")
        try:
            return json.loads(json.dumps(identity))
        except (TypeError, ValueError) as exc:
            raise InvalidResultError(f"backend {self.name!r}: _device_identity returned values JSON cannot hold "
                                     f"({exc})") from None

    def represent_checked(self, network: Network) -> Network:
        """`represent(network)`, checked: a network of the same layer sizes and delay kinds
        (`InvalidResultError` naming the backend otherwise)."""
        with self._on_snapshot(network, "representing the network", "represent",
                               "build and return a new Network instead of changing it") as snapshot:
            represented = self.represent(snapshot)
        if not isinstance(represented, Network):
            raise InvalidResultError(f"backend {self.name!r}: represent returned {type(represented).__name__}, "
                                     "not a Network")
        kinds = [layer.projection.delay_kind.value for layer in network.layers]
        represented_kinds = [layer.projection.delay_kind.value for layer in represented.layers]
        if represented.sizes != network.sizes or represented_kinds != kinds:
            raise InvalidResultError(
                f"backend {self.name!r}: represent changed the network's layer sizes or delay kinds (from "
                f"{list(network.sizes)} {kinds} to {list(represented.sizes)} {represented_kinds}); it may only "
                "change weights, delays and neuron parameters")
        return represented

    @contextlib.contextmanager
    def _on_snapshot(self, network: Network | None, doing: str, hook_name: str, advice: str):
        """Within: the backend's own `hook_name` runs on the read-only snapshot of `network` this
        yields (never the caller's arrays; None for None), its failures named
        (`_failures_named(doing)`); a write to the snapshot is told to the plugin's author with
        `advice`."""
        snapshot = None if network is None else network.frozen_copy()
        try:
            with self._failures_named(doing):
                yield snapshot
        except BackendError as exc:
            if not isinstance(exc.__cause__, ValueError) or "read-only" not in str(exc.__cause__):
                raise
            raise BackendError(f"{exc} ({hook_name} receives a read-only snapshot of the network: "
                               f"{advice})") from exc.__cause__

    def _check_calibration(self, calibration: Calibration | None) -> None:
        if calibration is not None:
            if calibration.backend != self.name:
                raise CalibrationError(f"calibration: made for backend {calibration.backend!r}, not {self.name!r}")
        elif self.capabilities.needs_calibration:
            raise CalibrationError(f"calibration: backend {self.name!r} needs one; call calibrate() first")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
