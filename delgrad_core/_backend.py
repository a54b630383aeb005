"""Backend interface: what an execution target declares, and how it is called.

A backend runs a `Network` on some substrate (ideal simulator, emulator, device) and returns the
first spike time of every neuron (ARCHITECTURE.md "Contracts": Backend).  Gradients are then
computed on the host from those observed times (MODEL.md §4, "gradients from spike times alone").

Subclasses implement `capabilities` and `_execute` (and `_calibrate` if they need calibration);
the public `execute` / `calibrate` refuse unsupported networks before any work is done.
As in scikit-learn, constructors only store configuration.
"""

from __future__ import annotations

import abc
import hashlib
import json
import math
import time
from dataclasses import dataclass, field

import numpy as np

from delgrad_core._ir import DelayKind, Network
from delgrad_core._propagation import _check_times

__all__ = [
    "Backend",
    "Capabilities",
    "Calibration",
    "ExecutionResult",
    "UnsupportedNetworkError",
    "calibration_key",
]

_RATIO_RTOL = 1e-9


class UnsupportedNetworkError(ValueError):
    """The network needs a capability the backend does not have.

    `capability` names the field of `Capabilities` that is missing (e.g. "delay_kinds").
    """

    def __init__(self, message: str, *, capability: str):
        super().__init__(message)
        self.capability = capability


def _optional_positive_int(value, field_name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"Capabilities.{field_name}: expected None or a positive integer, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Capabilities:
    """What a backend can run.

    Attributes
    ----------
    delay_kinds : frozenset of DelayKind
        Delay kinds the backend implements (MODEL.md §3).
    tau_ratios : tuple of float or None
        Allowed tau_m / tau_s ratios (None: any ratio).
    max_inputs : int or None
        Largest fan-in (presynaptic population size) of any projection; None = unbounded.
    max_layer_size : int or None
        Largest number of neurons in one layer; None = unbounded.
    max_layers : int or None
        Largest number of neuron layers (input excluded); None = unbounded.
    weight_resolution : float or None
        Smallest weight step the substrate resolves (None: continuous weights).
    deterministic : bool
        Same network and inputs always give identical spike times.
    needs_calibration : bool
        `calibrate` must be run and its result passed to `execute`.
    exact : bool
        Spike times equal the ideal model to ~1e-9 (else they are compared statistically).
    """

    delay_kinds: frozenset = frozenset(DelayKind)
    tau_ratios: tuple | None = None
    max_inputs: int | None = None
    max_layer_size: int | None = None
    max_layers: int | None = None
    weight_resolution: float | None = None
    deterministic: bool = True
    needs_calibration: bool = False
    exact: bool = False

    def __post_init__(self):
        kinds = self.delay_kinds
        if isinstance(kinds, (str, DelayKind)):
            raise TypeError("Capabilities.delay_kinds: expected a collection of delay kinds, got a single value")
        set_ = object.__setattr__
        set_(self, "delay_kinds", frozenset(DelayKind.parse(k, "Capabilities.delay_kinds") for k in kinds))
        if self.tau_ratios is not None:
            ratios = tuple(float(r) for r in self.tau_ratios)
            if not ratios or not all(math.isfinite(r) and r > 0 for r in ratios):
                raise ValueError(
                    f"Capabilities.tau_ratios: expected None or a non-empty tuple of positive numbers, "
                    f"got {self.tau_ratios!r}"
                )
            set_(self, "tau_ratios", ratios)
        for name in ("max_inputs", "max_layer_size", "max_layers"):
            set_(self, name, _optional_positive_int(getattr(self, name), name))
        if self.weight_resolution is not None:
            resolution = float(self.weight_resolution)
            if not (math.isfinite(resolution) and resolution > 0):
                raise ValueError(
                    f"Capabilities.weight_resolution: expected None or a positive number, got {self.weight_resolution!r}"
                )
            set_(self, "weight_resolution", resolution)
        for name in ("deterministic", "needs_calibration", "exact"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"Capabilities.{name}: expected a bool, got {getattr(self, name)!r}")

    def to_dict(self) -> dict:
        """A JSON-able dict (delay kinds sorted by name)."""
        return {
            "delay_kinds": sorted(kind.value for kind in self.delay_kinds),
            "tau_ratios": None if self.tau_ratios is None else list(self.tau_ratios),
            "max_inputs": self.max_inputs,
            "max_layer_size": self.max_layer_size,
            "max_layers": self.max_layers,
            "weight_resolution": self.weight_resolution,
            "deterministic": self.deterministic,
            "needs_calibration": self.needs_calibration,
            "exact": self.exact,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "Capabilities":
        """Inverse of `to_dict`."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"Capabilities: unknown fields {sorted(unknown)}; allowed: {sorted(cls.__dataclass_fields__)}")
        return cls(**data)

    def supports_ratio(self, ratio: float) -> bool:
        """True if tau_m / tau_s = `ratio` is allowed."""
        if self.tau_ratios is None:
            return True
        return any(math.isclose(ratio, allowed, rel_tol=_RATIO_RTOL) for allowed in self.tau_ratios)


@dataclass(frozen=True)
class Calibration:
    """Result of `Backend.calibrate`: plain JSON values, cacheable under `cache_key`.

    `values` must be JSON-serialisable (numbers, strings, lists, dicts, bools, None).
    """

    backend: str
    values: dict = field(default_factory=dict)
    cache_key: str = ""

    def __post_init__(self):
        if not isinstance(self.backend, str) or not self.backend:
            raise ValueError(f"Calibration.backend: expected a non-empty string, got {self.backend!r}")
        if not isinstance(self.values, dict):
            raise TypeError(f"Calibration.values: expected a dict, got {type(self.values).__name__}")
        if not isinstance(self.cache_key, str):
            raise TypeError(f"Calibration.cache_key: expected a string, got {self.cache_key!r}")
        try:
            # Normalise (tuples -> lists, numpy scalars rejected) so equality survives a round trip.
            object.__setattr__(self, "values", json.loads(json.dumps(self.values, allow_nan=False)))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"Calibration.values: not JSON-serialisable ({exc})") from None

    def to_json(self) -> str:
        return json.dumps({"backend": self.backend, "cache_key": self.cache_key, "values": self.values}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Calibration":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"Calibration: invalid JSON ({exc})") from None
        if not isinstance(data, dict) or set(data) != {"backend", "cache_key", "values"}:
            raise ValueError("Calibration: expected a JSON object with keys backend, cache_key, values")
        return cls(**data)


def calibration_key(backend_name: str, network: Network, options: dict | None = None) -> str:
    """Hash of what a calibration depends on: backend, its options, sizes and neuron parameters."""
    neurons = [
        [array.tolist() for array in layer.neuron_arrays()] for layer in network.layers
    ]
    payload = {"backend": backend_name, "options": options or {}, "sizes": network.sizes, "neurons": neurons}
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
    return f"{backend_name}-{digest[:16]}"


@dataclass
class ExecutionResult:
    """Spike times of every layer, (batch, size) each, in units of tau_s; +inf = silent.

    `metadata` holds backend-specific facts such as wall_seconds or hardware_seconds.
    """

    layer_spike_times: list
    metadata: dict = field(default_factory=dict)

    @property
    def output_spike_times(self) -> np.ndarray:
        return self.layer_spike_times[-1]


class Backend(abc.ABC):
    """An execution target for networks.

    Subclasses set `name`, implement the `capabilities` property and `_execute`; backends with
    `capabilities.needs_calibration` also implement `_calibrate`.
    """

    name: str = ""

    @property
    @abc.abstractmethod
    def capabilities(self) -> Capabilities:
        """What this backend can run."""

    @abc.abstractmethod
    def _execute(self, network: Network, input_spike_times: np.ndarray, calibration, seed) -> ExecutionResult:
        """Run a supported network on validated (batch, n_inputs) input times."""

    def _calibrate(self, network: Network, seed) -> Calibration:
        """Default for backends that need no calibration: an empty calibration."""
        return Calibration(self.name, {}, calibration_key(self.name, network))

    def check_supported(self, network: Network) -> None:
        """Raise `UnsupportedNetworkError` naming the first capability `network` needs but lacks."""
        if not isinstance(network, Network):
            raise TypeError(f"network: expected a delgrad_core.Network, got {type(network).__name__}")
        network.validate()
        caps = self.capabilities
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
                        f"{prefix} tau_m/tau_s ratio {ratio:g} in layer {population.name!r} (supports: {allowed})",
                        capability="tau_ratios",
                    )

    def calibrate(self, network: Network, *, seed: int | None = None) -> Calibration:
        """Calibrate the substrate for `network` (refused first if unsupported)."""
        self.check_supported(network)
        calibration = self._calibrate(network, seed)
        if not isinstance(calibration, Calibration):
            raise TypeError(f"backend {self.name!r}: _calibrate returned {type(calibration).__name__}, not Calibration")
        return calibration

    def execute(
        self, network: Network, input_spike_times, *, calibration: Calibration | None = None, seed: int | None = None
    ) -> ExecutionResult:
        """Run `network` on `input_spike_times` (batch, n_inputs); +inf marks a silent input.

        Unsupported networks are refused before anything runs.  Adds `wall_seconds` to the
        metadata unless the backend set it.
        """
        self.check_supported(network)
        times = _check_times(input_spike_times, network.input.size, "input_spike_times")
        if calibration is not None:
            if not isinstance(calibration, Calibration):
                raise TypeError(f"calibration: expected a Calibration, got {type(calibration).__name__}")
            if calibration.backend != self.name:
                raise ValueError(
                    f"calibration: made for backend {calibration.backend!r}, not {self.name!r}"
                )
        elif self.capabilities.needs_calibration:
            raise ValueError(f"calibration: backend {self.name!r} needs one; call calibrate(network) first")
        start = time.perf_counter()
        result = self._execute(network, times, calibration, seed)
        if not isinstance(result, ExecutionResult):
            raise TypeError(f"backend {self.name!r}: _execute returned {type(result).__name__}, not ExecutionResult")
        result.metadata.setdefault("wall_seconds", time.perf_counter() - start)
        return result

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
