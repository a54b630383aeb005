"""The unit of work a backend runs (`ExecutionRequest`) and what it returns (`ExecutionResult`).

A request is self-contained: a snapshot of the network's parameters, the input spike times, the
calibration and the seed.  Both travel as bytes in delgrad's npz + JSON format (no pickle), so
a request can cross a process or a network; a request's `digest` (SHA-256 of its canonical
content, the same on every machine) serves as an idempotent job id.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field

import numpy as np

from delgrad_core._calibration import Calibration
from delgrad_core._errors import CalibrationError, FileFormatError, InvalidResultError, InvalidValueError
from delgrad_core._ir import Network, immutable_copy, real_array
from delgrad_core._npz import archive_of_bytes, hash_arrays, json_array, npz_bytes
from delgrad_core._numbers import checked_number
from delgrad_core._propagation import acausal_arrival, check_spike_times
from delgrad_core._serialization import network_arrays, network_from_archive

__all__ = ["ExecutionRequest", "ExecutionResult", "MAX_SEED", "check_seed"]

MAX_SEED = 2**63 - 1
_REQUEST_FORMAT = "delgrad-request"
_RESULT_FORMAT = "delgrad-result"
_VERSION = 1


def check_seed(seed) -> int | None:
    """`seed` as an int in [0, MAX_SEED], or None; an error naming the field otherwise."""
    return checked_number(seed, "seed", 0, MAX_SEED, integer=True, optional=True)


@dataclass(frozen=True, eq=False)
class ExecutionRequest:
    """Everything one `Backend.execute` call needs.

    Parameters
    ----------
    network : Network
        Copied on construction (a parameter snapshot; later changes to the original do not
        affect the request).
    input_spike_times : array (batch, n_inputs)
        In units of tau_s; +inf marks a silent input.
    calibration : Calibration, optional
    seed : int, optional
        For backends with noise; results must depend only on the request and its seed.
    """

    network: Network
    input_spike_times: np.ndarray
    calibration: Calibration | None = None
    seed: int | None = None
    _digest: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self):
        if not isinstance(self.network, Network):
            raise InvalidValueError(f"network: expected a delgrad_core.Network, got {type(self.network).__name__}")
        set_ = object.__setattr__
        set_(self, "network", self.network.frozen_copy())
        times = check_spike_times(self.input_spike_times, self.network.input.size, "input_spike_times")
        if np.ndim(self.input_spike_times) != 2:  # (check_spike_times takes a 1-d array as one sample)
            raise InvalidValueError(f"input_spike_times: expected shape (batch, {self.network.input.size}), got "
                                    f"{np.shape(self.input_spike_times)}")
        set_(self, "input_spike_times", immutable_copy(times))
        if self.calibration is not None and not isinstance(self.calibration, Calibration):
            raise InvalidValueError(f"calibration: expected a Calibration or None, "
                                    f"got {type(self.calibration).__name__}")
        set_(self, "seed", check_seed(self.seed))

    def __reduce__(self):  # (pickle and deepcopy build it anew: read-only again, its digest computed again)
        return ExecutionRequest, (self.network, self.input_spike_times, self.calibration, self.seed)

    @property
    def batch_size(self) -> int:
        return int(self.input_spike_times.shape[0])

    def replace(self, **changes) -> "ExecutionRequest":
        """A request with some fields replaced (e.g. a slice of the batch)."""
        values = {"network": self.network, "input_spike_times": self.input_spike_times,
                  "calibration": self.calibration, "seed": self.seed}
        values.update(changes)
        return ExecutionRequest(**values)

    def _document(self) -> dict:
        return {"format": _REQUEST_FORMAT, "version": _VERSION, "seed": self.seed,
                "calibration": None if self.calibration is None else self.calibration.digest}

    @property
    def digest(self) -> str:
        """SHA-256 (hex) of the network, inputs, calibration and seed: an idempotent job id."""
        if self._digest is None:
            hasher = hashlib.sha256(json.dumps(self._document(), sort_keys=True).encode())
            hash_arrays(hasher, network_arrays(self.network))
            hash_arrays(hasher, {"input_spike_times": self.input_spike_times})
            object.__setattr__(self, "_digest", hasher.hexdigest())
        return self._digest

    def __eq__(self, other) -> bool:
        return isinstance(other, ExecutionRequest) and self.digest == other.digest

    def __hash__(self) -> int:
        return hash(self.digest)

    def to_bytes(self, *, include_calibration: bool = True) -> bytes:
        """The request as an npz archive (deterministic bytes, no pickle).  Without
        `include_calibration` only the calibration's digest travels: for a receiver that holds
        the calibration already (`from_bytes(..., calibrations=...)`)."""
        arrays = network_arrays(self.network, prefix="network.")
        arrays["input_spike_times"] = self.input_spike_times
        if self.calibration is not None and include_calibration:
            arrays.update(self.calibration.archive_arrays(prefix="calibration."))
        arrays["request.json"] = json_array(self._document())
        return npz_bytes(arrays)

    @classmethod
    def from_bytes(cls, data, *, calibrations: Mapping[str, Calibration] | None = None,
                   networks: MutableMapping[str, Network] | None = None) -> "ExecutionRequest":
        """Inverse of `to_bytes`; anything malformed is a `FileFormatError`.  A request that
        carries only its calibration's digest takes the calibration from `calibrations`
        (digest -> Calibration); `CalibrationError` if it is not there.  `networks` (digest of
        a network's stored bytes -> read-only network) lets requests with the same network
        share one network object: a receiver's cache, looked up and filled here."""
        with archive_of_bytes(data, "delgrad execution request", stored_only=True) as archive:
            document = archive.json("request.json")
            if document.get("format") != _REQUEST_FORMAT or document.get("version") != _VERSION:
                raise FileFormatError(f"{archive.source}: not a delgrad request version {_VERSION}")
            network_key = None if networks is None else archive.digest("network.")
            network = None if networks is None else networks.get(network_key)
            if network is None:
                network = network_from_archive(archive, prefix="network.", read_only=True)
                try:
                    network = network.frozen_copy()
                except InvalidValueError as exc:
                    raise FileFormatError(f"{archive.source}: invalid request: {exc}") from None
                if networks is not None:
                    networks[network_key] = network
            calibration, digest = None, document.get("calibration")
            if digest is not None:
                if "calibration.calibration.json" in archive:
                    calibration = Calibration.from_archive(archive, prefix="calibration.")
                    if calibration.digest != digest:
                        raise FileFormatError(f"{archive.source}: the calibration does not match its digest")
                elif isinstance(digest, str) and calibrations is not None and digest in calibrations:
                    calibration = calibrations[digest]
                else:
                    raise CalibrationError(f"{archive.source}: the request refers to calibration {str(digest)[:12]}, "
                                           "which is not known here; send it with the calibration")
            inputs = archive.array("input_spike_times", kind="f")
            try:
                return cls(network, inputs, calibration, document.get("seed"))
            except InvalidValueError as exc:
                raise FileFormatError(f"{archive.source}: invalid request: {exc}") from None


def _float_arrays(values, field_name: str, allow_none: bool = False) -> list:
    """`values` (a list or tuple) as float64 arrays (None kept if `allow_none`);
    `InvalidResultError` naming the field otherwise."""
    if not isinstance(values, (list, tuple)):
        raise InvalidResultError(f"{field_name}: expected a list of arrays, got {type(values).__name__}")
    try:
        return [None if value is None and allow_none else real_array(value, f"{field_name}[{k}]")
                for k, value in enumerate(values)]
    except InvalidValueError as exc:
        raise InvalidResultError(str(exc)) from None


def _described(value) -> str:
    """'a tuple of 2', 'a list of 3', or the type's name."""
    return f"a {type(value).__name__} of {len(value)}" if isinstance(value, (list, tuple)) else type(value).__name__


def _unsilent_problem(array: np.ndarray, field_name: str) -> str | None:
    """What is wrong with spike times that hold NaN or -inf (silence is +inf), or None."""
    if not (array > -np.inf).all():  # (x > -inf is False exactly for NaN and -inf)
        return f"{field_name}: contains NaN or -inf (silence must be +inf)"
    return None


def _check_layer_array(array, expected_shape: tuple, field_name: str, allow_2d_arrivals: bool = False):
    if type(array) is not np.ndarray:  # (a subclass such as np.matrix or a masked array passes checks it fails)
        raise InvalidResultError(f"{field_name}: expected a float64 numpy.ndarray, got {type(array).__name__}")
    if array.dtype != np.float64:  # (results travel and compare bit for bit as float64)
        raise InvalidResultError(f"{field_name}: expected a float64 array, got dtype {array.dtype}")
    shapes = [expected_shape]
    if allow_2d_arrivals:
        shapes.append(expected_shape[:2])
    if array.shape not in shapes:
        raise InvalidResultError(f"{field_name}: expected shape {' or '.join(map(str, shapes))}, got {array.shape}")
    problem = _unsilent_problem(array, field_name)
    if problem:
        raise InvalidResultError(problem)


@dataclass
class ExecutionResult:
    """Spike times of every layer, (batch, size) each, in units of tau_s; +inf = silent.

    `arrival_times` optionally carries, per layer, observed arrival times of presynaptic spikes
    at the layer's neurons: (batch, n_pre, n_post), or (batch, n_pre) when every neuron sees the
    same arrival (e.g. a delay element per input line), or None for a layer without
    observations.  `metadata` holds JSON facts such as wall_seconds or chip_seconds.
    """

    layer_spike_times: list
    metadata: dict = field(default_factory=dict)
    arrival_times: list | None = None

    @property
    def output_spike_times(self) -> np.ndarray:
        return self.layer_spike_times[-1]

    def validate(self, request: ExecutionRequest, backend_name: str = "backend") -> "ExecutionResult":
        """Check the result against its request: types, shapes, no NaN or -inf, no spike before
        the sample's first input nor in a layer whose inputs are all silent for that sample; raise
        `InvalidResultError` naming the backend and field."""
        prefix = f"backend {backend_name!r} returned an invalid result: "
        network, batch = request.network, request.batch_size
        try:
            if not isinstance(self.layer_spike_times, list) or len(self.layer_spike_times) != len(network.layers):
                raise InvalidResultError(f"layer_spike_times: expected a list of {len(network.layers)} arrays, got "
                                         f"{_described(self.layer_spike_times)}")
            if not isinstance(self.metadata, dict) or not all(isinstance(k, str) for k in self.metadata):
                raise InvalidResultError("metadata: expected a dict with string keys")
            try:
                json.dumps(self.metadata, allow_nan=False)
            except (TypeError, ValueError, RecursionError) as exc:  # (RecursionError: tables nested too deep)
                raise InvalidResultError(f"metadata: expected JSON values (numbers, strings, lists, tables; e.g. "
                                         f"float() of a numpy number): {exc}") from None
            with np.errstate(invalid="ignore"):
                earliest = np.min(request.input_spike_times, axis=1, initial=np.inf)
            n_pre = network.input.size
            nothing_arrives = np.isinf(earliest)  # (per sample: the layer before is silent, or no input spikes)
            for k, (times, layer) in enumerate(zip(self.layer_spike_times, network.layers)):
                _check_layer_array(times, (batch, layer.population.size), f"layer_spike_times[{k}]")
                early = times < earliest[:, None]
                spiking = times < np.inf
                unfed = spiking & nothing_arrives[:, None]
                if unfed.any():
                    b, j = np.argwhere(unfed)[0]
                    silent = "no input spike" if k == 0 else f"no spike in layer_spike_times[{k - 1}]"
                    raise InvalidResultError(f"layer_spike_times[{k}]: neuron {j} of sample {b} spikes at "
                                             f"{float(times[b, j])!r} although the sample has {silent} (silence "
                                             "is +inf)")
                if early.any():
                    b, j = np.argwhere(early)[0]
                    raise InvalidResultError(
                        f"layer_spike_times[{k}]: neuron {j} of sample {b} spikes at {float(times[b, j])!r}, "
                        f"before the sample's first input ({float(earliest[b])!r})"
                    )
                nothing_arrives = ~spiking.any(axis=1)
            if self.arrival_times is not None:
                if not isinstance(self.arrival_times, list) or len(self.arrival_times) != len(network.layers):
                    raise InvalidResultError(f"arrival_times: expected None or a list of {len(network.layers)} entries")
                for k, (arrivals, layer) in enumerate(zip(self.arrival_times, network.layers)):
                    if arrivals is not None:
                        _check_layer_array(arrivals, (batch, n_pre, layer.population.size), f"arrival_times[{k}]",
                                           allow_2d_arrivals=True)
                        sent = request.input_spike_times if k == 0 else self.layer_spike_times[k - 1]
                        problem = acausal_arrival(arrivals, np.asarray(sent, dtype=float), f"arrival_times[{k}]")
                        if problem:
                            raise InvalidResultError(problem)
                    n_pre = layer.population.size
        except InvalidResultError as exc:
            raise InvalidResultError(prefix + str(exc)) from None
        return self

    def to_bytes(self) -> bytes:
        """The result as an npz archive (deterministic bytes; metadata must be JSON; spike times
        without NaN or -inf, which `from_bytes` refuses)."""
        arrays = {}
        for k, times in enumerate(_float_arrays(self.layer_spike_times, "layer_spike_times")):
            problem = _unsilent_problem(times, f"layer_spike_times[{k}]")
            if problem:
                raise InvalidResultError(problem)
            arrays[f"layer_spike_times.{k}"] = times
        layers_with_arrivals = []
        arrival_times = self.arrival_times if self.arrival_times is not None else []
        for k, arrivals in enumerate(_float_arrays(arrival_times, "arrival_times", allow_none=True)):
            if arrivals is not None:
                arrays[f"arrival_times.{k}"] = arrivals
                layers_with_arrivals.append(k)
        try:
            arrays["result.json"] = json_array({
                "format": _RESULT_FORMAT, "version": _VERSION, "n_layers": len(self.layer_spike_times),
                "arrival_layers": None if self.arrival_times is None else layers_with_arrivals,
                "metadata": self.metadata,
            })
        except (TypeError, ValueError) as exc:
            raise InvalidResultError(f"metadata: not JSON-serialisable ({exc})") from None
        return npz_bytes(arrays)

    @classmethod
    def from_bytes(cls, data) -> "ExecutionResult":
        """Inverse of `to_bytes`; anything malformed is a `FileFormatError`."""
        with archive_of_bytes(data, "delgrad execution result", stored_only=True) as archive:
            document = archive.json("result.json")
            if document.get("format") != _RESULT_FORMAT or document.get("version") != _VERSION:
                raise FileFormatError(f"{archive.source}: not a delgrad result version {_VERSION}")
            n_layers = document.get("n_layers")
            if isinstance(n_layers, bool) or not isinstance(n_layers, int) or not 1 <= n_layers <= 10_000:
                raise FileFormatError(f"{archive.source}: n_layers: expected a positive integer, got {n_layers!r}")
            times = [archive.array(f"layer_spike_times.{k}", kind="f") for k in range(n_layers)]
            for k, array in enumerate(times):
                problem = _unsilent_problem(array, f"layer_spike_times.{k}")
                if problem:
                    raise FileFormatError(f"{archive.source}: {problem}")
            arrival_layers = document.get("arrival_layers")
            arrivals = None
            if arrival_layers is not None:
                if not isinstance(arrival_layers, list) or not all(
                        isinstance(k, int) and 0 <= k < n_layers for k in arrival_layers):
                    raise FileFormatError(f"{archive.source}: arrival_layers: expected layer indices")
                arrivals = [archive.array(f"arrival_times.{k}", kind="f") if k in arrival_layers else None
                            for k in range(n_layers)]
            metadata = document.get("metadata")
            if not isinstance(metadata, dict):
                raise FileFormatError(f"{archive.source}: metadata: expected a JSON object")
            return cls(times, metadata, arrivals)
