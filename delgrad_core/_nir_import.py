"""NIR graph -> delgrad network (see `delgrad_core.nir` for the mapping and its equations)."""

from __future__ import annotations

import math
import warnings

import numpy as np

from delgrad_core._errors import InvalidValueError
from delgrad_core._ir import DelayKind, Layer, Network, NeuronParameters, Population, Projection
from delgrad_core._nir_common import (
    FORMAT,
    FORMAT_VERSION,
    META_KEY,
    NIRConversionError,
    check_time_scale,
    first_outside_model_range,
    model_range_text,
    require_nir,
    shown,
)
from delgrad_core._nir_export import fanout_matrix, layer_chain
from delgrad_core._nir_graph import Segment, graph_segments, population_size, string_keyed
from delgrad_core._nir_paths import Paths

__all__ = ["from_nir"]

_CUBA_FIELDS = ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in")
_NODE_FIELDS = {"Linear": ("weight",), "Affine": ("weight", "bias"), "Delay": ("delay",), "CubaLIF": _CUBA_FIELDS}


def _delgrad_metadata(node) -> dict:
    meta = getattr(node, "metadata", None)
    entry = meta.get(META_KEY) if isinstance(meta, dict) else None
    return entry if isinstance(entry, dict) else {}


def _is_text(value, text: str) -> bool:
    """Whether a metadata `value` (any type a file may hold: an array too) is the string `text`."""
    return isinstance(value, str) and value == text


def _is_number(value, number: int) -> bool:
    """Whether a metadata `value` (any type a file may hold: an array too) is the number `number`,
    as a Python or numpy int or float (not a bool or an array, which used to raise "The truth
    value of an array ... is ambiguous")."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and value == number


def _graph_metadata(graph) -> dict:
    """delgrad's graph metadata, refusing a format version this delgrad does not know."""
    meta = _delgrad_metadata(graph)
    version = meta.get("version", FORMAT_VERSION)
    if _is_text(meta.get("format"), FORMAT) and not _is_number(version, FORMAT_VERSION):
        raise NIRConversionError(
            f"the graph was written in delgrad's NIR format version {shown(version)}; this delgrad reads version "
            f"{FORMAT_VERSION}"
        )
    return meta


def _time_scale(graph, time_scale) -> float:
    meta = _graph_metadata(graph)
    if time_scale is not None:
        seconds = check_time_scale(time_scale)
        _warn_if_rescaled(seconds, meta.get("time_scale_s"))
        return seconds
    if "time_scale_s" in meta:
        return check_time_scale(meta["time_scale_s"], "graph metadata delgrad.time_scale_s")
    raise NIRConversionError(
        "the graph does not state its time unit (no metadata delgrad.time_scale_s); pass time_scale="
        "seconds per model time unit (CLI: --time-scale SECONDS)"
    )


# (a unit stored as float32 by another tool differs from the same unit given as float64 by ~1e-8)
_SAME_TIME_SCALE_RTOL = 1e-6


def _stored_time_scale(stored) -> float | None:
    """The graph's stored unit (metadata delgrad.time_scale_s) in seconds; None if none or invalid."""
    try:
        return check_time_scale(stored, "graph metadata delgrad.time_scale_s")
    except NIRConversionError:
        return None


def _warn_if_rescaled(time_scale: float, stored) -> None:
    """Warn when `time_scale` (s) differs from the graph's stored unit (metadata, if a valid one):
    the import then describes the same dynamics in other model units."""
    stored_s = _stored_time_scale(stored)
    if stored_s is not None and not math.isclose(time_scale, stored_s, rel_tol=_SAME_TIME_SCALE_RTOL):
        factor = time_scale / stored_s
        warnings.warn(f"time scale {time_scale!r} s per model unit (CLI: --time-scale) differs from the graph's own "
                      f"{stored_s!r} s (metadata delgrad.time_scale_s): the import rescales by {factor:.6g}, dividing "
                      "time constants and delays in model units by it and multiplying weights by it; omit the time "
                      "scale to import in the graph's own unit", UserWarning, stacklevel=2)


def _name(value, default: str) -> str:
    return value if isinstance(value, str) and value else default


def _real_array(value, what: str) -> np.ndarray:
    """`value` as float64, refusing complex numbers, booleans, strings and objects (numpy would
    drop an imaginary part with only a warning)."""
    array = np.asarray(value)
    if array.dtype.kind not in "iuf":
        raise NIRConversionError(f"{what}: expected real numbers, got dtype {array.dtype}")
    return array.astype(np.float64)


def _compact(values: np.ndarray) -> float | np.ndarray:
    """A per-neuron array, or one float if all neurons share the value."""
    return float(values[0]) if np.all(values == values[0]) else values.copy()


def _linear_matrix(nir, node, key: str) -> np.ndarray:
    """The matrix of a Linear or a zero-bias Affine node."""
    if isinstance(node, nir.Affine):
        bias = _real_array(node.bias, f"Affine {key!r}.bias")
        if not np.all(np.isfinite(bias)):  # (NaN was called "a nonzero bias")
            raise NIRConversionError(f"Affine {key!r}.bias: expected finite numbers (zeros), got "
                                     f"{bias[~np.isfinite(bias)][0]}")
        if np.any(bias != 0):
            raise NIRConversionError(
                f"Affine {key!r}: a nonzero bias is a constant input current, which delgrad's neuron does not have")
    return _real_array(node.weight, f"{type(node).__name__} {key!r}.weight")


def _fanout_delays(steps: list, n_pre: int) -> np.ndarray | None:
    """Delays (s, n_pre x n_post) of delgrad's synaptic layout, fan-out Linear -> Delay -> Linear,
    line by line (line k = i * n_post + j is synapse ij, whatever its weight), or None if `steps`
    is not that layout."""
    if [place for place, _ in steps] != ["linear", "delay", "linear"]:
        return None
    (_, fanout), (_, seconds), (_, collect) = steps
    n_post = collect.shape[0]
    if fanout.shape != (n_pre * n_post, n_pre) or not np.array_equal(fanout, fanout_matrix(n_pre, n_post)):
        return None
    return seconds.reshape(n_pre, n_post)


def _synaptic_delays(paths: Paths, steps: list, n_pre: int, lif: str) -> np.ndarray:
    """Delays (s, n_pre x n_post) of a synaptic layer, keeping those of synapses of weight 0 where
    the graph determines them, and warning about those it does not (imported as 0)."""
    delays, undetermined = paths.synapse_delays()
    fanout = _fanout_delays(steps, n_pre)
    if fanout is not None:
        return np.where(paths.connected.T, delays.T, fanout)
    if np.any(undetermined):
        post, pre = np.argwhere(undetermined)[0]
        warnings.warn(f"CubaLIF {lif!r}: {int(undetermined.sum())} synapses of weight 0 (e.g. from presynaptic "
                      f"neuron {pre} to neuron {post}) reach it over paths of different delays; they are imported "
                      "with delay 0 (set their delays after import if training should use others)",
                      UserWarning, stacklevel=2)
    return delays.T


def _fold(nir, graph, segment: Segment, n_pre: int) -> tuple[Paths, DelayKind, np.ndarray | None]:
    """Weights and delays (seconds) between two populations, and the delay kind (`_delay_kind`)."""
    paths = Paths(n_pre, f"the connections into {segment.lif!r}")
    steps = []  # ("delay", seconds), ("linear", matrix) or ("scale", None), in order
    for key in segment.ops:
        node = graph.nodes[key]
        if isinstance(node, nir.Delay):
            seconds = _real_array(node.delay, f"Delay {key!r}.delay")
            paths.add_delay(key, seconds)
            steps.append(("delay", seconds))
        elif isinstance(node, nir.Scale):
            paths.apply_scale(f"Scale {key}", _real_array(node.scale, f"Scale {key!r}.scale"))
            steps.append(("scale", None))
        else:
            matrix = _linear_matrix(nir, node, key)
            paths.apply_linear(f"{type(node).__name__} {key}", matrix)
            steps.append(("linear", matrix))
    places = [place for place, _ in steps]
    if "linear" not in places and "scale" not in places:
        raise NIRConversionError(
            f"CubaLIF {segment.lif!r}: no Linear, Affine or Scale node feeds it; delgrad layers are projections "
            "with a weight per synapse"
        )
    kind = _delay_kind(places)
    if kind is DelayKind.NONE:
        return paths, kind, None
    if kind is DelayKind.SYNAPTIC:
        return paths, kind, _synaptic_delays(paths, steps, n_pre, segment.lif)
    return paths, kind, sum(seconds for place, seconds in steps if place == "delay")


def _delay_kind(places: list[str]) -> DelayKind:
    """The delay kind of a chain of "delay", "linear" (Linear, Affine) and "scale" steps.

    Only a Linear mixes lines; a Scale keeps them.  Delays before every Linear sit on one line per
    presynaptic neuron (axonal), delays after every Linear on one per postsynaptic neuron
    (dendritic), others are synaptic.  Without a Linear each line is one neuron on both sides and
    the Scales are the weights: delays after all of them are dendritic, others axonal.
    """
    delays = [index for index, place in enumerate(places) if place == "delay"]
    if not delays:
        return DelayKind.NONE
    mixing = [index for index, place in enumerate(places) if place == "linear"]
    weights = mixing or [index for index, place in enumerate(places) if place == "scale"]
    if min(delays) > max(weights):
        return DelayKind.DENDRITIC
    if max(delays) < min(weights) or not mixing:
        return DelayKind.AXONAL
    return DelayKind.SYNAPTIC


def _cuba_arrays(node, segment: Segment, n_post: int) -> dict[str, np.ndarray]:
    """The CubaLIF's values, one per neuron: as many as the nodes feeding it (`segment.ops`) have lines."""
    arrays, key = {}, segment.lif
    for field in _CUBA_FIELDS:
        value = _real_array(getattr(node, field), f"CubaLIF {key!r}.{field}")
        if value.shape not in ((), (n_post,), (1,)):
            raise NIRConversionError(f"CubaLIF {key!r}.{field}: expected shape ({n_post},), got {value.shape}: the "
                                     f"nodes feeding it ({', '.join(map(repr, segment.ops))}) have {n_post} output "
                                     f"lines, one per neuron it should have")
        value = np.broadcast_to(value, (n_post,)).copy()
        if not np.all(np.isfinite(value)):
            raise NIRConversionError(f"CubaLIF {key!r}.{field}: contains NaN or inf")
        arrays[field] = value
    return arrays


def _model_times(field: str, seconds: np.ndarray, time_scale: float, *, delays: bool = False) -> np.ndarray:
    """`seconds` in model units, refusing values outside `model_range_text`."""
    with np.errstate(over="ignore"):  # (an overflow to inf is refused next)
        times = seconds / time_scale
    bad = first_outside_model_range(times, delays=delays)
    if bad is not None:
        raise NIRConversionError(
            f"{field}: {float(seconds.flat[bad])!r} s is {float(times.flat[bad])!r} model units of {time_scale!r} s, "
            f"outside the allowed {model_range_text(delays=delays)}; choose a time scale (CLI: --time-scale) nearer "
            "the graph's times"
        )
    return times


def _imported_weights(paths: Paths, p: dict[str, np.ndarray], tau_m: np.ndarray, where: str) -> np.ndarray:
    """delgrad's weights (n_pre, n_post) w_ij = W_ji r_j w_in_j / (tau_m,j tau_syn,j), refusing
    finite node values whose product overflows (it used to be refused as weights "contain NaN or
    inf", which the graph's do not)."""
    # I_delgrad = r I_nir / tau_m and each spike adds w_in W / tau_syn to I_nir (module docstring)
    with np.errstate(over="ignore", invalid="ignore"):  # (an overflow is refused next)
        weights = paths.weight.T * (p["r"] * p["w_in"] / (tau_m * p["tau_syn"]))[None, :]
    bad = ~np.isfinite(weights)
    if np.any(bad):
        pre, post = np.argwhere(bad)[0]
        raise NIRConversionError(
            f"{where}: the weight from presynaptic neuron {pre} to neuron {post}, the summed Linear weights "
            f"{float(paths.weight[post, pre])!r} times r * w_in / (tau_mem in model units * tau_syn in s) = "
            f"{float(p['r'][post])!r} * {float(p['w_in'][post])!r} / ({float(tau_m[post])!r} * "
            f"{float(p['tau_syn'][post])!r}), is not a finite number; scale the weights, r or w_in down"
        )
    return weights


def _general_layer(nir, graph, segment: Segment, n_pre: int, time_scale: float, allow_reset: bool) -> Layer:
    """Read one layer from the node values alone (any exporter's graph)."""
    paths, kind, delays_s = _fold(nir, graph, segment, n_pre)
    lif = graph.nodes[segment.lif]
    n_post = paths.n_lines
    p = _cuba_arrays(lif, segment, n_post)
    where = f"CubaLIF {segment.lif!r}"
    if np.any(p["tau_syn"] <= 0) or np.any(p["tau_mem"] <= 0):
        raise NIRConversionError(f"{where}: tau_syn and tau_mem must be > 0")
    if np.any(p["v_leak"] != 0):
        raise NIRConversionError(
            f"{where}: v_leak = {float(p['v_leak'][p['v_leak'] != 0][0])!r}, but delgrad's neuron rests at 0 "
            "and NIR does not say whether a neuron starts at v_leak or at 0; shift v_leak, v_threshold and v_reset "
            "to v_leak = 0"
        )
    if np.any(p["v_threshold"] <= 0):
        raise NIRConversionError(f"{where}: v_threshold must be above the resting potential 0")
    if not allow_reset:
        raise NIRConversionError(
            f"{where}: after a spike NIR resets v to v_reset and the neuron may spike again, and this layer feeds "
            "another one, so the reset would matter; delgrad keeps only each neuron's first spike and the graph "
            "does not declare that (metadata delgrad.first_spike_only). Pass first_spike_only=True "
            "(CLI: --first-spike-only) to import it keeping first spikes only"
        )
    tau_m = _model_times(f"{where}.tau_mem", p["tau_mem"], time_scale)
    tau_s = _model_times(f"{where}.tau_syn", p["tau_syn"], time_scale)
    delays = None if delays_s is None else _model_times(f"the delays into {where}", delays_s, time_scale, delays=True)
    weights = _imported_weights(paths, p, tau_m, where)
    meta = _delgrad_metadata(lif)
    population = _name(meta.get("population"), segment.lif)
    projection = Projection(
        weights=weights,
        delay_kind=kind,
        delays=delays,
        name=f"{population}.projection",
    )
    neuron = NeuronParameters(_compact(p["v_threshold"]), _compact(tau_m), _compact(tau_s))
    return Layer(Population(population, n_post, neuron), projection)


def _metadata_param(value):
    """A model-unit value from node metadata as float or float64 array; NIRConversionError (a
    ValueError) for anything but real numbers (a complex one lost its imaginary part with a numpy
    warning, text was parsed as a number)."""
    array = _real_array(value, "metadata")
    return float(array) if array.ndim == 0 else array


def _same_nodes(expected, actual) -> bool:
    """Same node types and bit-for-bit equal parameter arrays."""
    if len(expected) != len(actual):
        return False
    for want, have in zip(expected, actual):
        if type(want) is not type(have):
            return False
        for field in _NODE_FIELDS[type(want).__name__]:
            a, b = np.asarray(getattr(want, field)), np.asarray(getattr(have, field))
            if a.shape != b.shape or not np.array_equal(a, b):
                return False
    return True


def _exact_layer(nir, graph, segment: Segment, n_pre: int, time_scale: float) -> tuple[Layer | None, bool]:
    """The layer as delgrad wrote it, if the node metadata reproduces the nodes bit for bit, and
    whether the metadata made a layer whose nodes differ from the graph's (edited since?).

    The metadata holds the model-unit values (time constants, delays) that seconds cannot give
    back exactly; it is trusted only when exporting it again yields exactly the graph's nodes.
    """
    lif = graph.nodes[segment.lif]
    neuron_meta = _delgrad_metadata(lif)
    nodes = [graph.nodes[key] for key in segment.ops]
    linear = next((node for node in reversed(nodes) if isinstance(node, nir.Linear)), None)
    linear_meta = _delgrad_metadata(linear)
    if not neuron_meta or not isinstance(linear, nir.Linear) or "delay_kind" not in linear_meta:
        return None, False
    try:
        kind = DelayKind.parse(linear_meta["delay_kind"])
        weight = _real_array(linear.weight, "Linear weight")
        if kind is DelayKind.SYNAPTIC:
            n_post = weight.shape[0]
            if np.shape(getattr(nodes[0], "weight", None)) != (n_pre * n_post, n_pre):
                return None, False  # (no fan-out node as delgrad writes it: none is built to compare, it may be huge)
            weights = weight[np.tile(np.arange(n_post), n_pre), np.arange(n_pre * n_post)].reshape(n_pre, n_post)
        else:
            weights = weight.T.copy()
        delays = None
        if kind is not DelayKind.NONE:
            delay_nodes = [node for node in nodes if isinstance(node, nir.Delay)]
            delays = _metadata_param(_delgrad_metadata(delay_nodes[0])["delays"]) if delay_nodes else None
        neuron = NeuronParameters(*(_metadata_param(neuron_meta[n]) for n in ("threshold", "tau_m", "tau_s")))
        name = _name(neuron_meta.get("population"), segment.lif)
        projection = Projection(weights, kind, delays, name=_name(linear_meta.get("projection"), f"{name}.projection"))
        layer = Layer(Population(name, weights.shape[1], neuron), projection)
        expected = [node for _, node in layer_chain(nir, layer, time_scale, "check")]
    except (KeyError, IndexError, TypeError, ValueError):
        return None, False
    same = _same_nodes(expected, nodes + [lif])
    return (layer if same else None), not same


def from_nir(graph, *, time_scale: float | None = None, first_spike_only: bool = False) -> Network:
    """Return the delgrad network a `nir.NIRGraph` describes, or raise NIRConversionError saying why not.

    `time_scale` (seconds per model time unit) defaults to the one delgrad stored in the graph's
    metadata.  `first_spike_only=True` accepts graphs whose hidden CubaLIF layers could spike
    again after their reset, keeping only each neuron's first spike (delgrad's model).
    """
    nir = require_nir()
    if not isinstance(first_spike_only, (bool, np.bool_)):  # ("false" would count as true)
        raise InvalidValueError(f"first_spike_only: expected True or False, got {first_spike_only!r}")
    graph = string_keyed(nir, graph)
    input_key, segments, output_key = graph_segments(nir, graph)
    time_scale = _time_scale(graph, time_scale)
    graph_meta = _graph_metadata(graph)
    own_unit = time_scale == _stored_time_scale(graph_meta.get("time_scale_s"))  # (as delgrad wrote the nodes)
    declared_single_spike = graph_meta.get("first_spike_only", False)
    if not isinstance(declared_single_spike, (bool, np.bool_)):  # ("false" would count as true)
        raise NIRConversionError(f"metadata delgrad.first_spike_only: expected true or false, "
                                 f"got {shown(declared_single_spike)}")
    n_pre = n_in = population_size(nir, graph.nodes[input_key], input_key)
    layers = []
    for index, segment in enumerate(segments):
        allow_reset = first_spike_only or declared_single_spike or index == len(segments) - 1
        # (node metadata vouches for a layer delgrad wrote, unless the graph states first_spike_only: false)
        exact = allow_reset or "first_spike_only" not in graph_meta
        layer, differs = _exact_layer(nir, graph, segment, n_pre, time_scale) if exact else (None, False)
        if differs and own_unit:
            warnings.warn(f"CubaLIF {segment.lif!r} and the nodes before it differ from what delgrad wrote with "
                          "them (their metadata): edited since? The layer is imported from the nodes' values, where "
                          "a field a node lacks takes NIR's default (e.g. w_in 1, v_reset 0)", UserWarning,
                          stacklevel=2)
        if layer is None:
            try:
                layer = _general_layer(nir, graph, segment, n_pre, time_scale, allow_reset)
            except ValueError as exc:
                if isinstance(exc, NIRConversionError):
                    raise
                raise NIRConversionError(f"CubaLIF {segment.lif!r}: {exc}") from None
        layers.append(layer)
        n_pre = layer.population.size
    n_out = population_size(nir, graph.nodes[output_key], output_key)
    if n_out != n_pre:
        raise NIRConversionError(f"Output {output_key!r} has size {n_out}, but the last CubaLIF has {n_pre} neurons")
    try:
        return Network(Population(_name(graph_meta.get("input_population"), input_key), n_in), layers)
    except ValueError as exc:
        raise NIRConversionError(f"the imported network is invalid: {exc}") from None
