"""Network intermediate representation: populations, projections and feed-forward networks.

All times are in model units of tau_s (docs/model.md §1), weights in units of threshold-current
(C_m = 1). Objects are plain and validated on construction; `Network.validate()` re-checks
parameters after they were changed in place (e.g. by an optimiser).  `Network.frozen_copy()`
makes a read-only snapshot (what an execution request carries): it is validated once, cannot be
changed, and skips re-validation.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field, fields

import numpy as np

from delgrad_core._errors import InvalidValueError
from delgrad_core._npz import MAX_ARRAY_ELEMENTS
from delgrad_core._numbers import checked_number

__all__ = ["DelayKind", "NeuronParameters", "Population", "Projection", "Layer", "Network",
           "real_array", "check_type", "equal_values", "immutable_copy", "MIN_TAU_RATIO", "MAX_TAU_RATIO",
           "MIN_THRESHOLD"]


class DelayKind(str, enum.Enum):
    """Where a transmission delay sits (docs/model.md §3)."""

    NONE = "none"
    AXONAL = "axonal"  # one per presynaptic neuron
    DENDRITIC = "dendritic"  # one per postsynaptic neuron
    SYNAPTIC = "synaptic"  # one per synapse

    @classmethod
    def parse(cls, value: "DelayKind | str", field_name: str = "delay_kind") -> "DelayKind":
        """Return the kind named by `value`, or raise naming the allowed values."""
        if isinstance(value, cls):
            return value
        try:
            if not isinstance(value, str):
                raise ValueError
            return cls(value.lower())
        except ValueError:
            allowed = ", ".join(k.value for k in cls)
            raise InvalidValueError(f"{field_name}: unknown delay kind {value!r}; choose one of {allowed}") from None

    def delay_shape(self, n_pre: int, n_post: int) -> tuple[int, ...] | None:
        """Shape of the delay array of a projection of this kind (None: no delays)."""
        return {
            DelayKind.NONE: None,
            DelayKind.AXONAL: (n_pre,),
            DelayKind.DENDRITIC: (n_post,),
            DelayKind.SYNAPTIC: (n_pre, n_post),
        }[self]


def real_array(values, field_name: str) -> np.ndarray:
    """`values` as a contiguous float64 array; integers and floats only (never strings,
    booleans or complex numbers, which numpy would convert)."""
    if values is None:
        raise InvalidValueError(f"{field_name}: expected an array of numbers, got None")
    if np.ma.isMaskedArray(values):  # (np.asarray would drop the mask and read masked entries as numbers)
        raise InvalidValueError(f"{field_name}: a masked array; fill its masked entries first (e.g. "
                                "values.filled(np.inf) for spikes that do not happen)")
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as exc:
        raise InvalidValueError(f"{field_name}: expected an array of numbers ({exc})") from None
    if array.dtype.kind not in "iuf":
        raise InvalidValueError(f"{field_name}: expected an array of real numbers, got {_dtype_name(array)}")
    array = np.asarray(array, dtype=np.float64)
    return np.ascontiguousarray(array) if array.ndim and not array.flags.c_contiguous else array  # (0-d stays 0-d)


def _dtype_name(array: np.ndarray) -> str:
    return {"b": "booleans", "c": "complex numbers", "U": "strings", "S": "bytes", "O": "Python objects",
            "M": "dates", "m": "time differences"}.get(array.dtype.kind, f"dtype {array.dtype}")


def _float_array(value, field_name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Convert to a C-contiguous float64 array, checking finiteness and shape."""
    array = real_array(value, field_name)
    if shape is not None and array.shape != shape:
        raise InvalidValueError(f"{field_name}: expected shape {shape}, got {array.shape}")
    if not np.isfinite(array).all():
        raise InvalidValueError(f"{field_name}: contains NaN or inf")
    return array


def _unchangeable(array: np.ndarray) -> bool:
    """Whether `array`'s values cannot change in place: it is read-only and so is all memory it
    views, down to immutable bytes (a read-only view of a writable array changes with that array,
    and numpy lets an array owning its memory be made writeable, changed and made read-only again)."""
    current = array
    while isinstance(current, np.ndarray):
        if current.flags.writeable:
            return False
        current = current.base
    return isinstance(current, bytes)


def check_type(value, expected: type, field_name: str):
    """`value` if it is an `expected`, else `InvalidValueError` naming the field and both types
    (`expected` by where the public API has it: its module without the private parts)."""
    if not isinstance(value, expected):
        public = ".".join(part for part in expected.__module__.split(".") if not part.startswith("_"))
        raise InvalidValueError(f"{field_name}: expected a {public}.{expected.__name__}, got {type(value).__name__}")
    return value


def _filled(size: int, value: float) -> np.ndarray:
    """np.full(size, value), in less than half its time (every kernel call builds the per-neuron
    parameters of each layer)."""
    array = np.empty(size)
    array.fill(value)
    return array


def _per_neuron(value, size: int, field_name: str) -> np.ndarray:
    """Broadcast a scalar or a per-neuron array to shape (size,)."""
    array = _float_array(value, field_name)
    if array.ndim == 0:
        return _filled(size, float(array))
    if array.shape != (size,):
        raise InvalidValueError(f"{field_name}: expected a scalar or shape ({size},), got {array.shape}")
    return array


class _Freezable:
    """Refuses attribute changes once frozen (the arrays are made read-only separately).

    Instances compare equal when they are of one type and their fields are equal, arrays by
    shape and value (a scalar equals an array holding it everywhere: a neuron parameter given
    once or per neuron)."""

    _frozen = False
    __hash__ = None  # (mutable unless frozen, and equal by value: unhashable, as a dataclass with eq)

    def __eq__(self, other):
        return equal_values(self, other)

    def __setattr__(self, name, value):
        if self._frozen:
            raise InvalidValueError(f"{type(self).__name__}.{name}: part of a read-only network snapshot; "
                                    "change a copy instead")
        super().__setattr__(name, value)

    def _freeze(self) -> None:
        object.__setattr__(self, "_frozen", True)

    def __setstate__(self, state: dict) -> None:
        """(pickle and deepcopy) A frozen instance's arrays are read-only in the copy too: it
        stays a snapshot that cannot change, as `ExecutionRequest` and backends rely on."""
        frozen = state.get("_frozen", False)
        for name, value in state.items():
            object.__setattr__(self, name, immutable_copy(value) if frozen and isinstance(value, np.ndarray) else value)

    @classmethod
    def _snapshot(cls, **values):
        """A frozen instance holding `values`, built without the checks of __init__: only for
        parts copied from an object that passed them."""
        instance = cls.__new__(cls)
        for name, value in values.items():
            object.__setattr__(instance, name, value)
        instance._freeze()
        return instance


def equal_values(a, b):
    """`a == b` for dataclass instances holding arrays, by value (the generated __eq__ raised
    numpy's "truth value of an array is ambiguous"): NotImplemented for another type."""
    if type(b) is not type(a):
        return NotImplemented
    return all(_equal_fields(getattr(a, spec.name), getattr(b, spec.name)) for spec in fields(a))


def _equal_fields(a, b) -> bool:
    sequences = (list, tuple)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray) or isinstance(a, sequences) != isinstance(b, sequences):
        try:  # (per-neuron values given as an array or a list, against each other or a scalar)
            a, b = np.asarray(a), np.asarray(b)
        except ValueError:  # (a ragged list)
            return False
        if a.ndim == 0 or b.ndim == 0:  # (a neuron parameter given once for all, or per neuron)
            if a.size == 0 or b.size == 0:  # (no value at all is not the one value)
                return False
            a, b = np.broadcast_arrays(a, b)
        try:
            return np.array_equal(a, b, equal_nan=True)  # (NaN where NaN is: the same values)
        except TypeError:  # (not numbers)
            return np.array_equal(a, b)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):  # (a snapshot holds its layers in a tuple)
        return len(a) == len(b) and all(_equal_fields(x, y) for x, y in zip(a, b))
    return a is b or bool(a == b) or _both_nan(a, b)


def _both_nan(a, b) -> bool:
    return isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)


def immutable_copy(array: np.ndarray) -> np.ndarray:
    """A copy of `array` over immutable bytes: read-only, and numpy refuses to make it writeable
    again, as it would not for a read-only array owning its memory."""
    return np.frombuffer(array.tobytes(), dtype=array.dtype).reshape(array.shape)


def _frozen_array(value):
    """A float64 `immutable_copy` of `value` (a float stays one)."""
    if isinstance(value, float):
        return value
    return immutable_copy(np.asarray(value, dtype=np.float64))


def _check_feedforward_arguments(sizes, weight_mean, weight_std, delay_value, seed) -> None:
    """Refuse what `Network.feedforward` cannot build, naming the argument (before allocating)."""
    if not isinstance(sizes, (list, tuple)):
        raise InvalidValueError(f"sizes: expected a list or tuple of layer sizes, got {type(sizes).__name__}")
    if len(sizes) < 2:
        raise InvalidValueError(f"sizes: need at least input and output sizes, got {sizes!r}")
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise InvalidValueError(f"sizes: expected positive integers, got {sizes!r}")
    for n_pre, n_post in zip(sizes[:-1], sizes[1:]):
        if int(n_pre) * int(n_post) > MAX_ARRAY_ELEMENTS:
            raise InvalidValueError(f"sizes: a {n_pre} x {n_post} projection has {int(n_pre) * int(n_post):,} weights, "
                                    f"more than the {MAX_ARRAY_ELEMENTS:,} a network file may hold")
    for name, value, low in (("weight_mean", weight_mean, None), ("weight_std", weight_std, 0),
                             ("delay_value", delay_value, 0)):
        checked_number(value, name, low)
    checked_number(seed, "seed", 0, integer=True, optional=True)


# tau_m / tau_s outside this range is refused: below about 1e-3 the solver's terms cancel and it
# reported spikes of neurons that never reach threshold (checked against the membrane on a grid)
MIN_TAU_RATIO = 0.01
MAX_TAU_RATIO = 1e6
# The summed |weight| onto a neuron (its largest synaptic current), and that times its larger time
# constant (up to a factor below 1 the largest membrane potential its inputs can build), are refused
# above this: the solvers' intermediate terms (sums of weights times up to e^{2 x 100}, the general
# solver's K = tau_m tau_s / |tau_m - tau_s|) must stay far from double overflow, where a spike
# would silently turn into silence or come late.
MAX_SYNAPTIC_SCALE = 1e200
# Thresholds below this are refused: the membrane's slope at a crossing, which the gradients divide
# by, could be subnormal.
MIN_THRESHOLD = 1e-300


@dataclass(eq=False)
class NeuronParameters(_Freezable):
    """LIF neuron with exponential synaptic current (docs/model.md §1), C_m = 1.

    Each field is a scalar or one value per neuron; times in units of tau_s of the model.
    """

    threshold: float | np.ndarray = 1.0
    tau_m: float | np.ndarray = 2.0
    tau_s: float | np.ndarray = 1.0

    def copy(self) -> NeuronParameters:
        """The same parameters with arrays of their own (writable), shared with nothing."""
        return NeuronParameters(*(np.array(value) if isinstance(value, np.ndarray) else
                                  list(value) if isinstance(value, list) else value
                                  for value in (self.threshold, self.tau_m, self.tau_s)))

    def as_arrays(self, size: int, owner: str = "neuron") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-neuron (threshold, tau_m, tau_s), validated (all strictly positive)."""
        arrays = []
        for name in ("threshold", "tau_m", "tau_s"):
            value = getattr(self, name)
            # fast path (every kernel call): a float that passes every check below
            if type(value) is float and math.isfinite(value) and value >= MIN_THRESHOLD:
                arrays.append(_filled(size, value))
                continue
            array = _per_neuron(value, size, f"{owner}.{name}")
            if np.any(array <= 0):
                raise InvalidValueError(f"{owner}.{name}: must be > 0, got min {float(array.min())!r}")
            if name == "threshold" and np.any(array < MIN_THRESHOLD):
                raise InvalidValueError(f"{owner}.threshold: must be >= {MIN_THRESHOLD:g} (below, the membrane's slope "
                                        f"at a crossing can be subnormal and gradients overflow), got min "
                                        f"{float(array.min())!r}")
            arrays.append(array)
        if type(self.tau_m) is float and type(self.tau_s) is float:
            low = high = self.tau_m / self.tau_s
        else:
            ratios = arrays[1] / arrays[2]
            low, high = float(ratios.min(initial=1.0)), float(ratios.max(initial=1.0))
        if not (MIN_TAU_RATIO <= low and high <= MAX_TAU_RATIO):
            bad = low if low < MIN_TAU_RATIO else high
            shown = f"{bad:.6g}" if not MIN_TAU_RATIO <= float(f"{bad:.6g}") <= MAX_TAU_RATIO else repr(bad)
            raise InvalidValueError(f"{owner}.tau_m / {owner}.tau_s: the exact spike-time solver is verified for "
                                    f"ratios from {MIN_TAU_RATIO:g} to {MAX_TAU_RATIO:g}, got {shown}")
        return tuple(arrays)


def _check_name(name, owner: str) -> None:
    if not isinstance(name, str) or not name or "\0" in name:  # (HDF5 names, as in NIR files, end at a NUL)
        raise InvalidValueError(f"{owner}.name: expected a non-empty string without NUL characters, got {name!r}")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:  # (a lone surrogate, as os.fsdecode makes of undecodable bytes: NIR export
        # ended in a bare UnicodeEncodeError)
        raise InvalidValueError(f"{owner}.name: expected text that UTF-8 can encode (files store names in UTF-8), "
                                f"got {name!r}, whose character {exc.start} is a lone surrogate") from None


@dataclass(eq=False)
class Population(_Freezable):
    """A group of neurons. `neuron` is None for the input population (spike sources)."""

    name: str
    size: int
    neuron: NeuronParameters | None = None

    def __post_init__(self):
        self.validate()
        self.size = int(self.size)
        if self.neuron is not None:
            self.neuron.as_arrays(self.size, owner=self.name)

    def validate(self) -> None:
        """Re-check what may have been changed in place: the name, the size and the type of the
        neuron parameters (their values are checked with the layer)."""
        if self._frozen:
            return
        _check_name(self.name, "Population")
        checked_number(self.size, f"{self.name}.size", 1, integer=True)
        if self.size > MAX_ARRAY_ELEMENTS:  # (checked before the neuron parameters take an array per neuron)
            raise InvalidValueError(f"{self.name}.size: at most {MAX_ARRAY_ELEMENTS:,} neurons (what a network file "
                                    f"may hold per array), got {int(self.size):,}")
        if self.neuron is not None:
            check_type(self.neuron, NeuronParameters, f"{self.name}.neuron")


@dataclass(eq=False)
class Projection(_Freezable):
    """All-to-all feed-forward connection with weights (n_pre, n_post) and optional delays.

    Delay shapes by kind: axonal (n_pre,), dendritic (n_post,), synaptic (n_pre, n_post);
    delays are non-negative, in units of tau_s.
    """

    weights: np.ndarray
    delay_kind: DelayKind | str = DelayKind.NONE
    delays: np.ndarray | None = None
    name: str = "projection"

    def __post_init__(self):
        _check_name(self.name, "Projection")
        self.delay_kind = DelayKind.parse(self.delay_kind, f"{self.name}.delay_kind")
        if self.delays is None and self.delay_kind is not DelayKind.NONE:
            weights = _float_array(self.weights, f"{self.name}.weights")
            if weights.ndim == 2:
                self.delays = np.zeros(self.delay_kind.delay_shape(*weights.shape))
        self.validate()

    @property
    def n_pre(self) -> int:
        return self.weights.shape[0]

    @property
    def n_post(self) -> int:
        return self.weights.shape[1]

    def validate(self) -> None:
        """Re-check what may have been changed in place: the name; the arrays are made
        C-contiguous float64 again, their shapes must fit the delay kind, values finite, delays >= 0."""
        checked = self.__dict__.get("_checked")
        if self._frozen or (checked is not None and all(
                mine is seen for mine, seen in zip((self.weights, self.delays, self.delay_kind), checked))):
            return
        _check_name(self.name, "Projection")
        self.delay_kind = DelayKind.parse(self.delay_kind, f"{self.name}.delay_kind")
        self.weights = _float_array(self.weights, f"{self.name}.weights")
        if self.weights.ndim != 2 or 0 in self.weights.shape:
            raise InvalidValueError(
                f"{self.name}.weights: expected a non-empty 2-d array (n_pre, n_post), got shape {self.weights.shape}"
            )
        shape = self.delay_kind.delay_shape(*self.weights.shape)
        if shape is None:
            if self.delays is not None:
                raise InvalidValueError(f"{self.name}.delays: must be None for delay kind 'none'")
            self._remember_if_read_only()
            return
        if self.delays is None:
            raise InvalidValueError(f"{self.name}.delays: missing; delay kind {self.delay_kind.value!r} "
                                    f"needs shape {shape}")
        self.delays = _float_array(self.delays, f"{self.name}.delays", shape)
        if (self.delays < 0).any():
            raise InvalidValueError(f"{self.name}.delays: must be >= 0, got min {float(self.delays.min())!r}")
        self._remember_if_read_only()

    def _remember_if_read_only(self) -> None:
        """Arrays whose values cannot change need no second check: the next validate() of the
        same arrays is free."""
        if _unchangeable(self.weights) and (self.delays is None or _unchangeable(self.delays)):
            object.__setattr__(self, "_checked", (self.weights, self.delays, self.delay_kind))

    def delay_matrix(self) -> np.ndarray:
        """Delays expanded to one value per synapse, shape (n_pre, n_post)."""
        kind = self.delay_kind
        if kind is DelayKind.NONE:
            return np.zeros(self.weights.shape)
        if kind is DelayKind.AXONAL:
            return np.ascontiguousarray(np.broadcast_to(self.delays[:, None], self.weights.shape))
        if kind is DelayKind.DENDRITIC:
            return np.ascontiguousarray(np.broadcast_to(self.delays[None, :], self.weights.shape))
        return self.delays

    def reduce_synapse_gradient(self, per_synapse: np.ndarray) -> np.ndarray | None:
        """Reduce a per-synapse delay gradient (n_pre, n_post) to this projection's delay shape."""
        kind = self.delay_kind
        if kind is DelayKind.NONE:
            return None
        if kind is DelayKind.AXONAL:
            return per_synapse.sum(axis=1)
        if kind is DelayKind.DENDRITIC:
            return per_synapse.sum(axis=0)
        return per_synapse.copy()

    @property
    def n_parameters(self) -> int:
        """Trainable weights and delays of this projection."""
        return self.weights.size + (0 if self.delays is None else self.delays.size)


@dataclass(eq=False)
class Layer(_Freezable):
    """A population of neurons and the projection that feeds it from the previous layer."""

    population: Population
    projection: Projection

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Re-check the projection, its fit to the population, and the neuron parameters."""
        if self._frozen:
            return
        check_type(self.population, Population, "Layer.population")
        check_type(self.projection, Projection, "Layer.projection")
        self.population.validate()
        if self.population.neuron is None:
            raise InvalidValueError(f"{self.population.name}.neuron: a layer needs neuron parameters")
        self.projection.validate()
        if self.projection.n_post != self.population.size:
            raise InvalidValueError(
                f"{self.projection.name}.weights: has {self.projection.n_post} columns but "
                f"population {self.population.name!r} has size {self.population.size}"
            )
        _, tau_m, tau_s = self.neuron_arrays()
        with np.errstate(over="ignore"):
            scale = np.abs(self.projection.weights).sum(axis=0) * np.maximum(np.maximum(tau_m, tau_s), 1.0)
        if not scale.max() <= MAX_SYNAPTIC_SCALE:
            neuron = int(np.argmax(scale))
            raise InvalidValueError(
                f"{self.projection.name}.weights: the summed |weights| onto neuron {neuron} of "
                f"{self.population.name!r}, times its larger time constant where that is above 1, is "
                f"{scale[neuron]:.3g}, above {MAX_SYNAPTIC_SCALE:g} (the spike-time solver would overflow); "
                "scale the weights and the threshold down together"
            )

    def max_input_weight_sums(self) -> np.ndarray:
        """Per neuron, the largest summed |input weights| `validate` accepts: `MAX_SYNAPTIC_SCALE`
        over its larger time constant where that is above 1 (slightly less, for rounding)."""
        _, tau_m, tau_s = self.neuron_arrays()
        return MAX_SYNAPTIC_SCALE * (1 - 1e-12) / np.maximum(np.maximum(tau_m, tau_s), 1.0)

    def neuron_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-neuron (threshold, tau_m, tau_s) of this layer's population."""
        cached = self.__dict__.get("_neuron_arrays")
        if cached is not None:
            return cached
        arrays = self.population.neuron.as_arrays(self.population.size, owner=self.population.name)
        if self._frozen:
            arrays = tuple(_frozen_array(array) for array in arrays)
            object.__setattr__(self, "_neuron_arrays", arrays)
        return arrays


@dataclass(eq=False)
class Network(_Freezable):
    """Feed-forward chain: input population -> layers[0] -> ... -> layers[-1] (the output)."""

    input: Population
    layers: list[Layer] = field(default_factory=list)

    def __post_init__(self):
        if isinstance(self.layers, tuple):
            self.layers = list(self.layers)
        self.validate()

    def validate(self) -> None:
        """Check the input, every layer and the shapes along the chain (run before any kernel
        sees it).  A frozen snapshot was checked when it was made and cannot change."""
        if self._frozen:
            return
        check_type(self.input, Population, "Network.input")
        self.input.validate()
        if self.input.neuron is not None:
            raise InvalidValueError(f"{self.input.name}.neuron: the input population has no neuron parameters")
        if not isinstance(self.layers, list):
            raise InvalidValueError(f"Network.layers: expected a list of Layer objects, "
                                    f"got {type(self.layers).__name__}")
        if not self.layers:
            raise InvalidValueError("Network.layers: needs at least one layer")
        n_pre = self.input.size
        names = {self.input.name}
        for layer in self.layers:
            if not isinstance(layer, Layer):
                raise InvalidValueError(f"Network.layers: expected Layer objects, got {type(layer).__name__}")
            layer.validate()
            name = layer.population.name
            if name in names:
                raise InvalidValueError(f"Network.layers: duplicate population name {name!r}")
            names.add(name)
            if layer.projection.n_pre != n_pre:
                raise InvalidValueError(
                    f"{layer.projection.name}.weights: has {layer.projection.n_pre} rows but the "
                    f"previous population has size {n_pre}"
                )
            n_pre = layer.population.size

    def frozen_copy(self) -> "Network":
        """A validated, read-only snapshot with private copies of every array (or `self` if it
        is one already), its layers a tuple.  The network is validated once; its copied parts
        are not checked again."""
        if self._frozen:
            return self
        self.validate()
        layers = []
        for layer in self.layers:
            population, neuron, projection = layer.population, layer.population.neuron, layer.projection
            layers.append(Layer._snapshot(
                population=Population._snapshot(name=population.name, size=population.size,
                                                neuron=NeuronParameters._snapshot(**{
                                                    name: _frozen_array(getattr(neuron, name))
                                                    for name in ("threshold", "tau_m", "tau_s")})),
                projection=Projection._snapshot(
                    weights=_frozen_array(projection.weights), delay_kind=projection.delay_kind,
                    delays=None if projection.delays is None else _frozen_array(projection.delays),
                    name=projection.name),
            ))
        return Network._snapshot(input=Population._snapshot(name=self.input.name, size=self.input.size, neuron=None),
                                 layers=tuple(layers))  # (a list could still gain or swap layers)

    @property
    def sizes(self) -> list[int]:
        """Population sizes from input to output."""
        return [self.input.size] + [layer.population.size for layer in self.layers]

    @property
    def n_parameters(self) -> int:
        """Number of trainable weights and delays."""
        return sum(layer.projection.n_parameters for layer in self.layers)

    @classmethod
    def feedforward(
        cls,
        sizes: list[int],
        *,
        delay_kind: DelayKind | str | list = DelayKind.NONE,
        neuron: NeuronParameters | None = None,
        weight_mean: float = 1.0,
        weight_std: float = 1.0,
        delay_value: float = 0.0,
        seed: int | None = 0,
    ) -> "Network":
        """Build an all-to-all chain with Gaussian weights N(mean, std) and constant delays.

        `sizes` lists the population sizes from input to output, e.g. [4, 30, 3]; `delay_kind`
        is one kind for every layer or a list with one per layer.
        """
        _check_feedforward_arguments(sizes, weight_mean, weight_std, delay_value, seed)
        rng = np.random.default_rng(seed)
        neuron = check_type(neuron, NeuronParameters, "neuron") if neuron is not None else NeuronParameters()
        kinds = delay_kind if isinstance(delay_kind, (list, tuple)) else [delay_kind] * (len(sizes) - 1)
        if len(kinds) != len(sizes) - 1:
            raise InvalidValueError(f"delay_kind: expected one kind or {len(sizes) - 1} (one per layer), "
                                    f"got {len(kinds)}")
        kinds = [DelayKind.parse(kind) for kind in kinds]
        layers = []
        names = [f"hidden{i}" for i in range(1, len(sizes) - 1)] + ["output"]
        if len(sizes) == 3:
            names[0] = "hidden"
        for name, n_pre, n_post, kind in zip(names, sizes[:-1], sizes[1:], kinds):
            shape = kind.delay_shape(n_pre, n_post)
            projection = Projection(
                weights=rng.normal(weight_mean, weight_std, size=(n_pre, n_post)),
                delay_kind=kind,
                delays=None if shape is None else np.full(shape, float(delay_value)),
                name=f"{name}.projection",
            )
            population = Population(name, n_post, neuron.copy())  # (each layer its own arrays: not the caller's)
            layers.append(Layer(population, projection))
        return cls(Population("input", sizes[0]), layers)
