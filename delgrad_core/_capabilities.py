"""What a backend can run and the constraints its substrate imposes (docs/backends.md).

`Capabilities` is static data: readable without building the backend (a plugin passes it at
registration), JSON round-trippable, validated field by field.  `apply_constraints` turns a
network into what a substrate with these constraints actually runs: weights clipped and
quantised, delays rounded to the delay grid and bounded.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from delgrad_core._errors import InvalidValueError
from delgrad_core._ir import DelayKind, Layer, Network, Population, Projection, check_type
from delgrad_core._numbers import checked_number
from delgrad_core._options import check_known_names

__all__ = ["Capabilities", "apply_constraints", "check_weight_grid", "inputs_in_copies", "share_copied_delays"]

_RATIO_RTOL = 1e-9


def _optional_positive_int(value, field_name: str) -> int | None:
    return checked_number(value, f"Capabilities.{field_name}", 1, integer=True, optional=True)


def _optional_positive_float(value, field_name: str) -> float | None:
    return checked_number(value, f"Capabilities.{field_name}", 0, low_open=True, optional=True)


def check_weight_grid(limit: float | None, resolution: float | None, prefix: str = "") -> None:
    """Refuse a weight resolution above the weight limit (every weight would round to 0)."""
    if None not in (limit, resolution) and resolution > limit:
        raise InvalidValueError(f"{prefix}weight_resolution: {resolution!r} is above {prefix}weight_limit {limit!r}: "
                                "every weight would round to 0")


def _grid_steps(low: float, high: float, step: float) -> tuple[int, int]:
    """The first and last multiples of `step` within [low, high], as counts of steps (a multiple
    a rounding error outside counts as inside: 6 x 0.1 is 0.6000000000000001)."""
    return math.ceil(low / step * (1 - 1e-12)), math.floor(high / step * (1 + 1e-12))


def _real_numbers(values) -> tuple:
    """`values` (a list, tuple, array, ... of real numbers) as floats; () if it is not one (a
    string or bytes, whose characters are not numbers, a table, or anything else)."""
    if isinstance(values, (str, bytes, bytearray, Mapping)) or not isinstance(values, Iterable):
        return ()
    try:
        values = list(values)
    except TypeError:  # (a 0-d array: iterable by its type, not by its shape)
        return ()
    if not all(isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)) for v in values):
        return ()
    return tuple(float(v) for v in values)


@dataclass(frozen=True)
class Capabilities:
    """What a backend can run.

    Attributes
    ----------
    delay_kinds : frozenset of DelayKind
        Delay kinds the backend implements (docs/model.md §3).
    tau_ratios : tuple of float or None
        Allowed tau_m / tau_s ratios (None: any ratio).
    max_inputs, max_layer_size, max_layers : int or None
        Largest fan-in of a projection, neurons in a layer, neuron layers; None = unbounded.
    max_batch_size : int or None
        Largest number of samples one `execute` call accepts; callers split larger batches.
    weight_limit : float or None
        Largest |weight| the substrate represents (weights beyond are clipped).
    weight_resolution : float or None
        Weight step: weights run as integer multiples of it (None: continuous).
    delay_range : (float, float) or None
        Smallest and largest delay in units of tau_s (delays beyond are clipped).
    delay_resolution : float or None
        Delay step in units of tau_s: delays run as integer multiples of it.
    input_copies : int or None
        With axonal delays in the first layer and an input count that is a multiple of it, the
        substrate takes each group of this many consecutive input lines as copies of one input
        sharing one delay (a chip duplicating its inputs): copies must spike together.  Other
        networks' input lines are independent; None: always.
    deterministic : bool
        The same request (network, inputs, calibration, seed) always gives the same result.
    seed_independent : bool
        The result does not depend on the seed at all (no noise).
    needs_calibration : bool
        `calibrate` must be run and its result passed to `execute`.
    exact : bool
        Spike times equal the ideal model on `represent(network)` to ~1e-9 (else they are
        compared statistically).
    """

    delay_kinds: frozenset = frozenset(DelayKind)
    tau_ratios: tuple | None = None
    max_inputs: int | None = None
    max_layer_size: int | None = None
    max_layers: int | None = None
    max_batch_size: int | None = None
    weight_limit: float | None = None
    weight_resolution: float | None = None
    delay_range: tuple | None = None
    delay_resolution: float | None = None
    input_copies: int | None = None
    deterministic: bool = True
    seed_independent: bool = True
    needs_calibration: bool = False
    exact: bool = False

    def __post_init__(self):
        set_ = object.__setattr__
        kinds = self.delay_kinds
        if isinstance(kinds, (str, DelayKind)):
            raise InvalidValueError("Capabilities.delay_kinds: expected a collection of delay kinds, "
                                    "got a single value")
        set_(self, "delay_kinds", frozenset(DelayKind.parse(k, "Capabilities.delay_kinds") for k in kinds))
        if not self.delay_kinds:
            raise InvalidValueError("Capabilities.delay_kinds: expected at least one delay kind (a backend without "
                                    "delays declares {'none'})")
        if self.tau_ratios is not None:
            ratios = _real_numbers(self.tau_ratios)
            if not ratios or not all(math.isfinite(r) and r > 0 for r in ratios):
                raise InvalidValueError(
                    f"Capabilities.tau_ratios: expected None or a non-empty list of positive numbers, "
                    f"got {self.tau_ratios!r}"
                )
            set_(self, "tau_ratios", ratios)
        for name in ("max_inputs", "max_layer_size", "max_layers", "max_batch_size", "input_copies"):
            set_(self, name, _optional_positive_int(getattr(self, name), name))
        for name in ("weight_limit", "weight_resolution", "delay_resolution"):
            set_(self, name, _optional_positive_float(getattr(self, name), name))
        check_weight_grid(self.weight_limit, self.weight_resolution, "Capabilities.")
        if self.delay_range is not None:
            bounds = _real_numbers(self.delay_range)
            low, high = bounds if len(bounds) == 2 else (math.nan, math.nan)
            if not (math.isfinite(low) and math.isfinite(high) and 0 <= low <= high):
                raise InvalidValueError(
                    "Capabilities.delay_range: expected None or (min, max) with 0 <= min <= max, "
                    f"got {self.delay_range!r}"
                )
            set_(self, "delay_range", (low, high))
            if self.delay_resolution is not None:
                first, last = _grid_steps(low, high, self.delay_resolution)
                if first > last:
                    raise InvalidValueError(f"Capabilities.delay_range: {(low, high)!r} holds no multiple of "
                                            f"delay_resolution {self.delay_resolution!r}: every delay would leave the "
                                            "range or the grid")
        for name in ("deterministic", "seed_independent", "needs_calibration", "exact"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidValueError(f"Capabilities.{name}: expected a bool, got {getattr(self, name)!r}")
        if self.seed_independent and not self.deterministic:
            raise InvalidValueError("Capabilities.seed_independent: a seed-independent backend must be deterministic "
                                    "(seed_independent defaults to true: with deterministic=False, set "
                                    "seed_independent=False too)")

    def to_dict(self) -> dict:
        """A JSON-able dict (delay kinds sorted by name)."""
        data = dataclasses.asdict(self)
        data["delay_kinds"] = sorted(kind.value for kind in self.delay_kinds)
        for name in ("tau_ratios", "delay_range"):
            if data[name] is not None:
                data[name] = list(data[name])
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Capabilities":
        """Inverse of `to_dict`."""
        return cls(**check_known_names(data, [f.name for f in dataclasses.fields(cls)], "Capabilities"))

    def supports_ratio(self, ratio: float) -> bool:
        """True if tau_m / tau_s = `ratio` is allowed."""
        if self.tau_ratios is None:
            return True
        return any(math.isclose(ratio, allowed, rel_tol=_RATIO_RTOL) for allowed in self.tau_ratios)

    @property
    def constrains_parameters(self) -> bool:
        """True if `apply_constraints` can change a network."""
        return (self.input_copies or 1) > 1 or any(
            getattr(self, name) is not None
            for name in ("weight_limit", "weight_resolution", "delay_range", "delay_resolution"))

    def constrain_weights(self, weights: np.ndarray) -> np.ndarray:
        """Weights as the substrate runs them: clipped to +-weight_limit, then rounded to a
        multiple of weight_resolution that stays within the limit (a multiple on the limit is the
        limit itself: 6 x 0.1 is 0.6000000000000001, above 0.6)."""
        limit, step = self.weight_limit, self.weight_resolution
        if limit is not None:
            weights = np.clip(weights, -limit, limit)
        if step is not None:
            steps = np.round(weights / step)
            if limit is not None:
                largest = math.floor(limit / step * (1 + 1e-12))
                steps = np.clip(steps, -largest, largest)
            weights = steps * step
            if limit is not None:
                weights = np.clip(weights, -limit, limit)
        return weights

    def constrain_delays(self, delays: np.ndarray) -> np.ndarray:
        """Delays as the substrate runs them: rounded to a multiple of delay_resolution within
        delay_range (beyond an end off the grid: the last multiple before it, so that constraining
        twice changes nothing more), else bounded to the range."""
        step, bounds = self.delay_resolution, self.delay_range
        if step is not None:
            steps = np.round(delays / step)
            if bounds is not None:
                steps = np.clip(steps, *_grid_steps(*bounds, step))
            delays = steps * step
        if bounds is not None:
            delays = np.clip(delays, *bounds)
        return delays


def inputs_in_copies(network: Network, copies: int | None) -> bool:
    """Whether a substrate taking inputs in groups of `copies` (`Capabilities.input_copies`) takes
    `network`'s inputs as copies of one input sharing one delay: `copies` above 1, axonal delays
    in the first layer and an input count that is a multiple of `copies` (None: no copies)."""
    check_type(network, Network, "network")
    copies = 1 if copies is None else checked_number(copies, "copies", 1, integer=True)
    projection = network.layers[0].projection
    return copies > 1 and projection.delay_kind is DelayKind.AXONAL and projection.n_pre % copies == 0


def share_copied_delays(network: Network, copies: int | None) -> Network:
    """`network` with the axonal delays of each group of `copies` consecutive input lines (the
    copies of one input, `Capabilities.input_copies`) replaced by their mean; `network` itself if
    they already agree or its inputs are not taken as copies (`inputs_in_copies`)."""
    if not inputs_in_copies(network, copies):
        return network
    copies = int(copies)
    first = network.layers[0]
    projection = first.projection
    groups = projection.delays.reshape(-1, copies)
    if np.all(groups == groups[:, :1]):
        return network
    shared = Projection(projection.weights, DelayKind.AXONAL, np.repeat(groups.mean(axis=1), copies), projection.name)
    return Network(Population(network.input.name, network.input.size),
                   [Layer(first.population, shared), *network.layers[1:]])


def apply_constraints(network: Network, capabilities: Capabilities) -> Network:
    """The network a substrate with `capabilities` runs: the delays of an input's copies shared
    (`share_copied_delays`), weights and delays clipped and on their grids; `network` itself if
    nothing changes."""
    check_type(network, Network, "network")
    if not capabilities.constrains_parameters:
        return network
    given, network = network, share_copied_delays(network, capabilities.input_copies)
    changed = network is not given
    layers = []
    for layer in network.layers:
        projection = layer.projection
        weights = capabilities.constrain_weights(projection.weights)
        delays = None if projection.delays is None else capabilities.constrain_delays(projection.delays)
        changed |= not np.array_equal(weights, projection.weights)
        changed |= delays is not None and not np.array_equal(delays, projection.delays)
        population = Population(layer.population.name, layer.population.size, layer.population.neuron.copy())
        layers.append(Layer(population, Projection(weights, projection.delay_kind, delays, projection.name)))
    if not changed:
        return given
    return Network(Population(network.input.name, network.input.size), layers)
