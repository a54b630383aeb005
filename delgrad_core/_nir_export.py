"""delgrad network -> NIR graph (see `delgrad_core.nir` for the mapping and its equations)."""

from __future__ import annotations

import numpy as np

from delgrad_core._ir import DelayKind, Layer, Network, check_type
from delgrad_core._npz import MAX_ARRAY_ELEMENTS
from delgrad_core._nir_common import (
    FORMAT,
    FORMAT_VERSION,
    META_KEY,
    NIRConversionError,
    check_time_scale,
    first_outside_model_range,
    model_range_text,
    require_nir,
)

__all__ = ["to_nir", "layer_chain", "fanout_matrix", "check_readable_size", "SPIKE_CONVENTION", "TTFS_CONVENTION"]

TTFS_CONVENTION = (
    "time-to-first-spike: each neuron emits at most one spike per sample, its first threshold "
    "crossing; later crossings never happen, so v_reset is never used"
)
SPIKE_CONVENTION = (
    "an input spike is a unit-area Dirac pulse in time measured in seconds; through Linear weight W "
    "it makes the CubaLIF current I jump by w_in * W / tau_syn"
)


def _metadata_value(value) -> float | np.ndarray:
    """A neuron or delay parameter for metadata: a float, or a float64 array (never 0-d)."""
    array = np.asarray(value, dtype=np.float64)
    return float(array) if array.ndim == 0 else array.copy()


def fanout_matrix(n_pre: int, n_post: int) -> np.ndarray:
    """0/1 matrix (n_pre * n_post, n_pre): line k = i * n_post + j copies presynaptic neuron i."""
    fanout = np.zeros((n_pre * n_post, n_pre))
    fanout[np.arange(n_pre * n_post), np.repeat(np.arange(n_pre), n_post)] = 1.0
    return fanout


def _synaptic_weights(weights: np.ndarray) -> np.ndarray:
    """Matrix (n_post, n_pre * n_post) taking line k = i * n_post + j to neuron j with weight w_ij."""
    n_pre, n_post = weights.shape
    collect = np.zeros((n_post, n_pre * n_post))
    collect[np.tile(np.arange(n_post), n_pre), np.arange(n_pre * n_post)] = weights.reshape(-1)
    return collect


def _cuba_lif(nir, layer: Layer, time_scale: float):
    """CubaLIF whose state (v, I) equals delgrad's (u, I) with time in seconds (module docstring)."""
    threshold, tau_m, tau_s = layer.neuron_arrays()
    neuron = layer.population.neuron
    tau_syn = tau_s * time_scale
    return nir.CubaLIF(
        tau_syn=tau_syn,
        tau_mem=tau_m * time_scale,
        r=tau_m.copy(),
        v_leak=np.zeros_like(threshold),
        v_threshold=threshold.copy(),
        v_reset=np.zeros_like(threshold),
        w_in=tau_syn.copy(),
        metadata={
            META_KEY: {
                "population": layer.population.name,
                "threshold": _metadata_value(neuron.threshold),
                "tau_m": _metadata_value(neuron.tau_m),
                "tau_s": _metadata_value(neuron.tau_s),
                "first_spike_only": True,
            }
        },
    )


def _check_model_times(layer: Layer) -> None:
    """Refuse time constants and delays (model units) outside the range an import accepts."""
    _, tau_m, tau_s = layer.neuron_arrays()
    name, projection = layer.population.name, layer.projection
    for field, times, delays in ((f"{name}.tau_m", tau_m, False), (f"{name}.tau_s", tau_s, False),
                                 (f"{projection.name}.delays", projection.delays, True)):
        bad = None if times is None else first_outside_model_range(times, delays=delays)
        if bad is not None:
            raise NIRConversionError(f"{field}: {float(times.flat[bad])!r} is outside the "
                                     f"{model_range_text(delays=delays)} that a NIR import accepts")


def layer_chain(nir, layer: Layer, time_scale: float, prefix: str) -> list[tuple[str, object]]:
    """NIR nodes (key, node) from the previous population to this layer's CubaLIF, in order,
    refusing times outside the range an import accepts (`_check_model_times`).

    none: Linear; axonal: Delay (n_pre) -> Linear; dendritic: Linear -> Delay (n_post);
    synaptic: Linear (0/1 fan-out to n_pre * n_post lines) -> Delay (one per synapse) -> Linear.
    """
    _check_model_times(layer)
    projection = layer.projection
    kind = projection.delay_kind
    linear_meta = {META_KEY: {"projection": projection.name, "delay_kind": kind.value}}
    delay_meta = {} if projection.delays is None else {META_KEY: {"delays": _metadata_value(projection.delays)}}
    chain = []
    if kind is DelayKind.SYNAPTIC:
        n_pre, n_post = projection.weights.shape
        chain.append((f"{prefix}.fanout", nir.Linear(weight=fanout_matrix(n_pre, n_post), metadata={
            META_KEY: {"role": "synaptic-delay fan-out: line k = i * n_post + j carries presynaptic neuron i"}})))
        chain.append((f"{prefix}.delay", nir.Delay(delay=(projection.delays * time_scale).reshape(-1),
                                                   metadata=delay_meta)))
        chain.append((f"{prefix}.linear", nir.Linear(weight=_synaptic_weights(projection.weights),
                                                     metadata=linear_meta)))
    else:
        linear = (f"{prefix}.linear", nir.Linear(weight=np.ascontiguousarray(projection.weights.T),
                                                 metadata=linear_meta))
        if kind is DelayKind.NONE:
            chain.append(linear)
        else:
            delay = (f"{prefix}.delay", nir.Delay(delay=projection.delays * time_scale, metadata=delay_meta))
            chain.extend([delay, linear] if kind is DelayKind.AXONAL else [linear, delay])
    chain.append((f"{prefix}.lif", _cuba_lif(nir, layer, time_scale)))
    return chain


def _chain_elements(layer: Layer) -> int:
    """An upper bound on the array elements `layer_chain` writes for `layer`: its matrices and
    delays exactly, 16 per neuron and 64 for the CubaLIF's vectors and the metadata."""
    n_pre, n_post = layer.projection.weights.shape
    kind = layer.projection.delay_kind
    if kind is DelayKind.SYNAPTIC:  # fan-out, delays (node and metadata), collecting matrix
        matrices = n_pre * n_post * n_pre + 2 * n_pre * n_post + n_post * n_pre * n_post
    else:
        matrices = n_pre * n_post + 2 * {DelayKind.NONE: 0, DelayKind.AXONAL: n_pre, DelayKind.DENDRITIC: n_post}[kind]
    return matrices + 16 * n_post + 64


def check_readable_size(network: Network) -> None:
    """Refuse, before building anything, a graph with more elements than `load_nir` reads (for
    a file: an in-memory graph may be larger)."""
    elements = [_chain_elements(layer) for layer in network.layers]
    if sum(elements) > MAX_ARRAY_ELEMENTS:
        largest = max(range(len(elements)), key=elements.__getitem__)
        layer = network.layers[largest]
        raise NIRConversionError(
            f"network: as a NIR graph it would hold about {sum(elements):,} array elements, more than the "
            f"{MAX_ARRAY_ELEMENTS:,} that load_nir reads (population {layer.population.name!r}, "
            f"{layer.projection.delay_kind.value} delays: {elements[largest]:,}; synaptic delays take "
            "n_pre^2 n_post + n_pre n_post^2 elements, a fan-out and a collecting matrix)")


def _node_prefixes(network: Network) -> list[str]:
    """One node-key prefix per layer: the population name ('/' would nest HDF5 groups), else layerN."""
    prefixes = [layer.population.name.replace("/", "_") for layer in network.layers]
    if len(set(prefixes)) != len(prefixes):
        prefixes = [f"layer{index}" for index in range(len(network.layers))]
    return prefixes


def to_nir(network: Network, *, time_scale: float):
    """Return a `nir.NIRGraph` computing the same first spike times as `network`.

    `time_scale` is the number of seconds in one model time unit (NIR times are in seconds),
    within `TIME_SCALE_RANGE_S`; the network's times must lie within `model_range_text`.
    """
    nir = require_nir()
    time_scale = check_time_scale(time_scale)
    check_type(network, Network, "network")
    try:
        network.validate()
    except ValueError as exc:
        raise NIRConversionError(f"invalid network: {exc}") from None
    from delgrad_core import __version__

    nodes = {"input": nir.Input(input_type=np.array([network.input.size]))}
    keys = ["input"]
    for layer, prefix in zip(network.layers, _node_prefixes(network)):
        for key, node in layer_chain(nir, layer, time_scale, prefix):
            nodes[key] = node
            keys.append(key)
    nodes["output"] = nir.Output(output_type=np.array([network.layers[-1].population.size]))
    keys.append("output")
    metadata = {
        META_KEY: {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "delgrad_version": __version__,
            "time_scale_s": time_scale,
            "time_unit": "NIR times are seconds; one delgrad model time unit is time_scale_s seconds",
            "first_spike_only": True,
            "spikes": TTFS_CONVENTION,
            "input_spikes": SPIKE_CONVENTION,
            "input_population": network.input.name,
        }
    }
    return nir.NIRGraph(nodes=nodes, edges=list(zip(keys[:-1], keys[1:])), metadata=metadata)
