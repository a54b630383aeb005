"""Networks and inputs on which a backend is compared with the ideal model, generated from what
the backend declares it can run (delay kinds, tau ratios, sizes, weight and delay limits)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from delgrad_core._capabilities import Capabilities
from delgrad_core._ir import DelayKind, Network, NeuronParameters

__all__ = ["ConformanceCase", "DelayLines", "conformance_cases", "delay_lines", "make_network", "supported_setting"]

BATCH_SIZE = 32
_DEFAULT_RATIOS = (2.0, 1.0, 1.5)


@dataclass(frozen=True)
class ConformanceCase:
    """A named network with input spike times (batch, n_inputs) in units of tau_s."""

    id: str
    network: Network
    input_spike_times: np.ndarray


def make_network(sizes, delay_kind: DelayKind | str = DelayKind.NONE, tau_ratio: float = 2.0, seed: int = 0,
                 capabilities: Capabilities | None = None) -> Network:
    """Chain with weights N(1, 1), theta = 1, tau_s = 1 and delays uniform in [0, 1) tau_s (or
    in the first tau_s of the declared delay range); weights and delays inside the declared limits."""
    network = Network.feedforward(
        list(sizes),
        delay_kind=delay_kind,
        neuron=NeuronParameters(threshold=1.0, tau_m=float(tau_ratio), tau_s=1.0),
        weight_mean=1.0,
        weight_std=1.0,
        seed=seed,
    )
    caps = capabilities or Capabilities()
    low, high = caps.delay_range if caps.delay_range is not None else (0.0, 1.0)
    rng = np.random.default_rng(seed + 1000)
    for layer in network.layers:
        projection = layer.projection
        if caps.weight_limit is not None:
            projection.weights = np.clip(projection.weights, -caps.weight_limit, caps.weight_limit)
        if projection.delays is not None:
            projection.delays = rng.uniform(low, min(high, low + 1.0), projection.delays.shape)
    return network


def _fits(sizes, caps: Capabilities) -> bool:
    return ((caps.max_layers is None or len(sizes) - 1 <= caps.max_layers)
            and (caps.max_inputs is None or max(sizes[:-1]) <= caps.max_inputs)
            and (caps.max_layer_size is None or max(sizes[1:]) <= caps.max_layer_size))


def _shape_for(caps: Capabilities, depth: int) -> tuple[int, ...] | None:
    """A chain of `depth` neuron layers like 4-10-3 (or 4-8-6-3), shrunk to the size limits."""
    sizes = (4, 10, 3) if depth == 2 else (4, 8, 6, 3)
    if caps.max_inputs is not None or caps.max_layer_size is not None:
        cap = min(v for v in (caps.max_inputs, caps.max_layer_size) if v is not None)
        sizes = tuple(min(s, cap) for s in sizes)
    return sizes if _fits(sizes, caps) else None


def supported_setting(caps: Capabilities) -> tuple[DelayKind, float]:
    """A delay kind (the simplest the backend has) and a tau ratio it supports."""
    kind = next(k for k in DelayKind if k in caps.delay_kinds)
    ratio = next((r for r in _DEFAULT_RATIOS if caps.supports_ratio(r)), None)
    return kind, ratio if ratio is not None else caps.tau_ratios[0]


def conformance_cases(capabilities: Capabilities | None = None) -> list[ConformanceCase]:
    """Every supported delay kind x every supported ratio (2, 1 and 1.5 when any ratio is
    allowed) on a one-hidden-layer chain, plus a two-hidden-layer chain if allowed, all within
    the declared size, weight and delay limits.

    Inputs follow the Yin-Yang encoding range [0.15, 2.0] tau_s (docs/model.md §5); one input
    per sample is silent (+inf) in a quarter of the samples.
    """
    caps = capabilities or Capabilities()
    kinds = [k for k in DelayKind if k in caps.delay_kinds]
    ratios = caps.tau_ratios if caps.tau_ratios is not None else _DEFAULT_RATIOS
    specs = []
    shallow, deep = _shape_for(caps, 2), _shape_for(caps, 3)
    if shallow is not None:
        specs += [(shallow, kind, ratio) for ratio in ratios for kind in kinds]
    if deep is not None:
        specs.append((deep, kinds[-1], ratios[0]))
    batch = min(BATCH_SIZE, caps.max_batch_size or BATCH_SIZE)
    cases = []
    for seed, (sizes, kind, ratio) in enumerate(specs):
        rng = np.random.default_rng(seed)
        inputs = rng.uniform(0.15, 2.0, (batch, sizes[0]))
        inputs[: batch // 4, seed % sizes[0]] = np.inf
        case_id = "-".join(map(str, sizes)) + f"-{kind.value}-ratio{ratio:g}"
        cases.append(ConformanceCase(case_id, make_network(sizes, kind, ratio, seed, caps), inputs))
    return cases


@dataclass(frozen=True)
class DelayLines:
    """Neurons each driven by one group of input lines through one delay, the delays spread
    over the declared range; `shortest` is the same network with every delay at the range's
    start.  Inputs (batch, n_inputs) in tau_s, one time per group."""

    delays: np.ndarray
    spread: Network
    shortest: Network
    input_spike_times: np.ndarray


_DRIVE = 6.0  # summed weight of a group: its coincident inputs make the neuron spike at any ratio


def delay_lines(capabilities: Capabilities, delay_kind: DelayKind | str, n_lines: int = 8) -> DelayLines | None:
    """Delays from the start to the end of the declared range ([0, 4] tau_s without one) on
    `n_lines` neurons, within the declared size and weight limits; None where fewer than two
    neurons fit.  Each neuron's group of inputs carries weights adding up to at least 6 (a
    neuron at threshold 1 spikes from them), and no other input reaches it."""
    caps = capabilities
    kind = DelayKind.parse(delay_kind)
    weight = min(1.5, caps.weight_limit) if caps.weight_limit is not None else 1.5
    if caps.weight_resolution is not None:
        weight = max(np.floor(weight / caps.weight_resolution), 1.0) * caps.weight_resolution
    group = int(np.ceil(_DRIVE / weight))
    if caps.max_layer_size is not None:
        n_lines = min(n_lines, caps.max_layer_size)
    if caps.max_inputs is not None:
        n_lines = min(n_lines, caps.max_inputs // group)
    if n_lines < 2:
        return None
    low, high = caps.delay_range if caps.delay_range is not None else (0.0, 4.0)
    delays = np.linspace(low, high, n_lines)
    ratio = supported_setting(caps)[1]
    neuron = NeuronParameters(threshold=1.0, tau_m=float(ratio), tau_s=1.0)
    owner = np.repeat(np.arange(n_lines), group)  # the neuron each input line drives
    weights = np.where(owner[:, None] == np.arange(n_lines)[None, :], weight, 0.0)

    def network(line_delays: np.ndarray) -> Network:
        per_synapse = np.where(weights != 0, line_delays[None, :], 0.0)
        built = Network.feedforward([group * n_lines, n_lines], delay_kind=kind, neuron=neuron)
        projection = built.layers[0].projection
        projection.weights = weights
        projection.delays = {DelayKind.AXONAL: line_delays[owner], DelayKind.DENDRITIC: line_delays,
                             DelayKind.SYNAPTIC: per_synapse}[kind]
        return built

    batch = min(BATCH_SIZE, caps.max_batch_size or BATCH_SIZE)
    times = np.random.default_rng(0).uniform(0.15, 2.0, (batch, n_lines))
    return DelayLines(delays, network(delays), network(np.full(n_lines, low)), times[:, owner])
