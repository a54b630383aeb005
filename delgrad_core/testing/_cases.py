"""Networks and inputs on which a backend is compared with the ideal model, generated from what
the backend declares it can run (delay kinds, tau ratios, sizes, weight and delay limits)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from delgrad_core._capabilities import Capabilities
from delgrad_core._errors import InvalidValueError
from delgrad_core._ir import DelayKind, Layer, Network, NeuronParameters, Population, Projection, check_type
from delgrad_core._numbers import checked_number
from delgrad_core._propagation import forward

__all__ = ["BATCH_SIZE", "ConformanceCase", "DelayLines", "batch_within", "conformance_cases", "delay_lines",
           "drive_scale", "input_copies", "input_lines", "input_times", "make_network", "supported_setting",
           "within_layers"]

BATCH_SIZE = 32
_DEFAULT_RATIOS = (2.0, 1.0, 1.5)


@dataclass(frozen=True)
class ConformanceCase:
    """A named network with input spike times (batch, n_inputs) in units of tau_s."""

    id: str
    network: Network
    input_spike_times: np.ndarray


def make_network(sizes, delay_kind: DelayKind | str = DelayKind.NONE, tau_ratio: float = 2.0, seed: int = 0,
                 capabilities: Capabilities | None = None, copies: int = 1, neurons_vary: bool = False) -> Network:
    """Chain with weights N(1, 1), theta = 1, tau_s = 1 and delays uniform in [0, 1) tau_s (or
    in the first tau_s of the declared delay range); weights and delays inside the declared limits.
    A `weight_limit` below 2 scales weights and thresholds by limit / 2 (the same spike times)
    before the weights are clipped to it, so that clipping cuts as much drive as it does at 2
    (clipped at 0.45, weights of N(1, 1) left every neuron silent, and agreement compared no spike).
    With `copies` > 1 the inputs come in groups of that many copies of one input: the network
    drawn for `sizes[0] / copies` inputs, each input's weights split over its copies (a group
    drives like the one input) and its delays repeated.  With `neurons_vary`, every neuron has
    its own threshold (uniform in [0.7, 1.5)) and tau_s (uniform in [0.7, 1.4)), tau_m =
    `tau_ratio` x its tau_s: a backend that runs one value for all, or theta = 1 or tau_s = 1,
    shows it."""
    _check_inputs_in_copies(sizes, copies)
    caps = Capabilities() if capabilities is None else check_type(capabilities, Capabilities, "capabilities")
    scale = drive_scale(caps)
    network = Network.feedforward(
        [sizes[0] // copies, *sizes[1:]],
        delay_kind=delay_kind,
        neuron=NeuronParameters(threshold=scale, tau_m=float(tau_ratio), tau_s=1.0),
        weight_mean=scale,
        weight_std=scale,
        seed=seed,
    )
    low, high = caps.delay_range if caps.delay_range is not None else (0.0, 1.0)
    rng = np.random.default_rng(seed + 1000)
    for layer in network.layers:
        projection = layer.projection
        if caps.weight_limit is not None:
            projection.weights = np.clip(projection.weights, -caps.weight_limit, caps.weight_limit)
        if projection.delays is not None:
            projection.delays = rng.uniform(low, min(high, low + 1.0), projection.delays.shape)
    if neurons_vary:
        for layer in network.layers:
            n = layer.population.size
            tau_s = rng.uniform(0.7, 1.4, n)
            layer.population.neuron = NeuronParameters(scale * rng.uniform(0.7, 1.5, n), float(tau_ratio) * tau_s,
                                                        tau_s)
    return network if copies == 1 else _in_copies(network, copies, np.random.default_rng(seed + 2000))


def _check_inputs_in_copies(sizes, copies) -> None:
    """Refuse `sizes` without a whole number of inputs `sizes[0]` and `copies` that is no positive
    integer dividing it (the network would have other inputs than asked), naming the argument."""
    copies = checked_number(copies, "copies", 1, integer=True)
    inputs = sizes[0] if isinstance(sizes, (list, tuple)) and sizes else None
    if isinstance(inputs, bool) or not isinstance(inputs, (int, np.integer)) or inputs < 1:
        raise InvalidValueError(f"sizes: expected a list or tuple of positive integers, got {sizes!r}")
    if inputs % copies:
        raise InvalidValueError(f"copies: the {inputs} inputs (sizes[0]) are no whole number of groups of "
                                f"{copies} copies")


def drive_scale(caps: Capabilities) -> float:
    """The factor on weights and thresholds (the same spike times) that keeps a network drawn for
    weights near 1 and threshold 1 inside a declared `weight_limit` below 2 without cutting its
    drive: limit / 2, else 1."""
    return 1.0 if caps.weight_limit is None else min(1.0, caps.weight_limit / 2)


def _in_copies(network: Network, copies: int, rng: np.random.Generator) -> Network:
    """`network` with each input replaced by `copies` copies of it, which share its delays and
    its weights, split unevenly (shares from 0.2 to 1.8 of an even one: a backend that drives
    with one copy's weight for all must show it)."""
    first = network.layers[0].projection
    delays = first.delays
    if delays is not None and first.delay_kind is not DelayKind.DENDRITIC:  # (axonal and synaptic: per input line)
        delays = np.repeat(delays, copies, axis=0)
    shares = rng.uniform(0.2, 1.8, (first.n_pre, copies, first.n_post))
    shares /= shares.sum(axis=1, keepdims=True)
    weights = (first.weights[:, None, :] * shares).reshape(first.n_pre * copies, first.n_post)
    projection = Projection(weights, first.delay_kind, delays, first.name)
    return Network(Population(network.input.name, network.input.size * copies),
                   [Layer(network.layers[0].population, projection), *network.layers[1:]])


def input_lines(caps: Capabilities) -> int:
    """Input lines of a network of 4 inputs, each as often as the backend takes copies of one
    (4 lines where so many exceed its fan-in limit)."""
    lines = 4 * (caps.input_copies or 1)
    return lines if caps.max_inputs is None or lines <= caps.max_inputs else 4


def input_copies(caps: Capabilities, n_inputs: int) -> int:
    """How many consecutive input lines of a network with `n_inputs` inputs the backend takes as
    copies of one input (`Capabilities.input_copies` where it divides `n_inputs`, else 1)."""
    copies = caps.input_copies or 1
    return copies if n_inputs % copies == 0 else 1


def input_times(rng: np.random.Generator, batch: int, n_inputs: int, caps: Capabilities, low: float = 0.15,
                high: float = 2.0, silent_line: int | None = None, copies: int | None = None) -> np.ndarray:
    """Input spike times (batch, n_inputs) uniform in [low, high) tau_s, equal within each group of
    `copies` lines (default: as many as the backend takes as copies of one input); with
    `silent_line`, that input (modulo the number of distinct inputs; all its copies) is silent
    (+inf) in the first quarter of the samples."""
    copies = input_copies(caps, n_inputs) if copies is None else copies
    times = rng.uniform(low, high, (batch, n_inputs // copies))
    if silent_line is not None:
        times[: batch // 4, silent_line % times.shape[1]] = np.inf
    return np.repeat(times, copies, axis=1)


def _fits(sizes, caps: Capabilities) -> bool:
    return ((caps.max_layers is None or len(sizes) - 1 <= caps.max_layers)
            and (caps.max_inputs is None or max(sizes[:-1]) <= caps.max_inputs)
            and (caps.max_layer_size is None or max(sizes[1:]) <= caps.max_layer_size))


def within_layers(sizes, caps: Capabilities) -> tuple[int, ...]:
    """`sizes` without the hidden layers beyond the declared `max_layers` (with 1: input and
    output only)."""
    if caps.max_layers is not None and len(sizes) - 1 > caps.max_layers:
        return (sizes[0], *sizes[len(sizes) - caps.max_layers:])
    return tuple(sizes)


_SHAPES = {"shallow": (4, 10, 3), "deep": (4, 8, 6, 3), "wide": (8, 40, 10)}  # (inputs before their copies)


def _shape_for(caps: Capabilities, shape: str) -> tuple[int, ...] | None:
    """The chain `_SHAPES[shape]` (the shallow and wide ones without their hidden layer where
    only one neuron layer is allowed), its inputs as many times as the backend takes copies of
    one input, shrunk to the size limits."""
    inputs, *neurons = _SHAPES[shape]
    sizes = (inputs * (caps.input_copies or 1), *neurons)
    if shape != "deep":
        sizes = within_layers(sizes, caps)
    if caps.max_inputs is not None or caps.max_layer_size is not None:
        cap = min(v for v in (caps.max_inputs, caps.max_layer_size) if v is not None)
        sizes = tuple(min(s, cap) for s in sizes)
    return sizes if _fits(sizes, caps) else None


def supported_setting(caps: Capabilities) -> tuple[DelayKind, float]:
    """A delay kind (the simplest the backend has) and a tau ratio it supports."""
    check_type(caps, Capabilities, "caps")
    kind = next(k for k in DelayKind if k in caps.delay_kinds)
    ratio = next((r for r in _DEFAULT_RATIOS if caps.supports_ratio(r)), None)
    return kind, ratio if ratio is not None else caps.tau_ratios[0]


def batch_within(caps: Capabilities, wanted: int) -> int:
    """`wanted` samples, or as many as the backend's declared `max_batch_size` allows."""
    return min(wanted, caps.max_batch_size or wanted)


def conformance_cases(capabilities: Capabilities | None = None) -> list[ConformanceCase]:
    """Every supported delay kind x every supported ratio (2, 1 and 1.5 when any ratio is
    allowed) on a one-hidden-layer chain, plus a two-hidden-layer chain if allowed, all within
    the declared size, weight and delay limits.

    Inputs follow the Yin-Yang encoding range [0.15, 2.0] tau_s (docs/model.md §5), in copies
    where the backend takes copies (`input_times`); then two more cases have independent inputs
    the backend must not take as copies: with axonal delays a number that is no multiple of the
    copies, without axonal delays (the first other kind) the same number as the cases in copies.
    Then the one-hidden-layer chain with a threshold and tau_s of its own for every neuron.
    Last, where the limits allow more than the others' sizes, a wide chain (8 inputs, 40 hidden
    neurons, 10 outputs) with the simplest kind and the first ratio: a limit on fan-in or layer
    size that the backend has but does not declare shows there.
    One input is silent (+inf) in a quarter of the samples.
    """
    caps = Capabilities() if capabilities is None else check_type(capabilities, Capabilities, "capabilities")
    kinds = [k for k in DelayKind if k in caps.delay_kinds]
    ratios = caps.tau_ratios if caps.tau_ratios is not None else _DEFAULT_RATIOS
    specs = []  # (sizes, delay kind, ratio, inputs independent even where the backend takes copies, neurons vary)
    shallow, deep, wide = (_shape_for(caps, shape) for shape in ("shallow", "deep", "wide"))
    if shallow is not None:
        specs += [(shallow, kind, ratio, False, False) for ratio in ratios for kind in kinds]
    if deep is not None:
        specs.append((deep, kinds[-1], ratios[0], False, False))
    copies = caps.input_copies or 1
    if copies > 1 and shallow is not None:
        independent = (4 if 4 % copies else 5, *shallow[1:])  # (no multiple of the copies)
        if DelayKind.AXONAL in kinds and _fits(independent, caps):
            specs.append((independent, DelayKind.AXONAL, ratios[0], False, False))
        other = next((kind for kind in kinds if kind is not DelayKind.AXONAL), None)  # (no delay to share)
        if other is not None and input_copies(caps, shallow[0]) > 1:
            specs.append((shallow, other, ratios[0], True, False))
    if shallow is not None:
        specs.append((shallow, kinds[-1], ratios[0], False, True))
    if wide is not None and shallow is not None and max(wide) > max(shallow):
        specs.append((wide, kinds[0], ratios[0], False, False))
    batch = batch_within(caps, BATCH_SIZE)
    cases = []
    for seed, (sizes, kind, ratio, independent, vary) in enumerate(specs):
        taken = input_copies(caps, sizes[0])  # (the network's weights split over them also where inputs are not)
        inputs = input_times(np.random.default_rng(seed), batch, sizes[0], caps, silent_line=seed,
                             copies=1 if independent else taken)
        case_id = ("-".join(map(str, sizes)) + f"-{kind.value}-ratio{ratio:g}" + ("-independent" if independent else "")
                   + ("-neurons-vary" if vary else ""))
        network = _spiking(make_network(sizes, kind, ratio, seed, caps, copies=taken, neurons_vary=vary), inputs)
        cases.append(ConformanceCase(case_id, network, inputs))
    return cases


_SPIKING = 0.25  # of a layer's (sample, neuron) entries that spike in the ideal model, at least


def _spiking(network: Network, inputs: np.ndarray) -> Network:
    """`network` with the thresholds of each layer halved (in order from the first) until that
    layer spikes in at least `_SPIKING` of its entries in the ideal model (at most 30 times):
    at tau_m = 0.1 tau_s, weights of N(1, 1) left every neuron silent, and agreement compared
    no spike.  The cases of the usual ratios (1 to 2) spike enough as drawn."""
    times = forward(network, inputs)
    for k, layer in enumerate(network.layers):
        for _ in range(30):
            if np.isfinite(times[k]).mean() >= _SPIKING:
                break
            neuron = layer.population.neuron
            layer.population.neuron = NeuronParameters(np.asarray(neuron.threshold) / 2, neuron.tau_m, neuron.tau_s)
            times = forward(network, inputs)
    return network


@dataclass(frozen=True)
class DelayLines:
    """Neurons each driven by its own group of `group` input lines of weight `weight` through one
    delay, and by nothing else; `delays` (one per neuron) spread evenly over the declared range.
    Inputs (batch, n_inputs) in tau_s, one time per sample on every line (a backend may take
    neighbouring lines as copies of one input)."""

    delays: np.ndarray
    input_spike_times: np.ndarray
    delay_kind: DelayKind
    neuron: NeuronParameters
    weight: float
    group: int

    def network(self, line_delays: np.ndarray | None = None) -> Network:
        """The network with `line_delays` (one per neuron; default: `delays`)."""
        line_delays = self.delays if line_delays is None else np.asarray(line_delays, dtype=float)
        n_lines = self.delays.size
        owner = np.repeat(np.arange(n_lines), self.group)  # the neuron each input line drives
        network = Network.feedforward([self.group * n_lines, n_lines], delay_kind=self.delay_kind, neuron=self.neuron)
        projection = network.layers[0].projection
        projection.weights = np.where(owner[:, None] == np.arange(n_lines)[None, :], self.weight, 0.0)
        projection.delays = {DelayKind.AXONAL: line_delays[owner], DelayKind.DENDRITIC: line_delays,
                             DelayKind.SYNAPTIC: np.where(projection.weights != 0, line_delays[None, :], 0.0)
                             }[self.delay_kind]
        return network


_DRIVE = 6.0  # summed weight of a group to try first (a neuron at threshold 1 and ratio >= 0.3 spikes)
_MAX_GROUP = 64


def _group_that_spikes(neuron: NeuronParameters, weight: float, most: int) -> int | None:
    """The fewest coincident inputs of `weight` (from ceil(6 / weight), doubling, at most `most`)
    that make `neuron` spike in the ideal model; None if none do."""
    group = int(np.ceil(_DRIVE / weight))
    while group <= most:
        single = Network.feedforward([group, 1], neuron=neuron, weight_mean=weight, weight_std=0.0)
        if np.isfinite(forward(single, np.zeros((1, group)))[0]).all():
            return group
        group *= 2
    return None


def delay_lines(capabilities: Capabilities, delay_kind: DelayKind | str, n_lines: int = 8) -> DelayLines | None:
    """Delays from the start to the end of the declared range ([0, 4] tau_s without one) on up
    to `n_lines` neurons, within the declared size and weight limits: each neuron driven by a
    group of coincident inputs at the largest weight allowed (at most 6), the group as small as
    makes it spike in the ideal model (rounded up to whole groups of the backend's input copies
    where that fits, else as many neurons as make the input count no multiple of them).  None
    where fewer than two neurons fit."""
    caps = check_type(capabilities, Capabilities, "capabilities")
    n_lines = checked_number(n_lines, "n_lines", 1, integer=True)
    weight = min(_DRIVE, caps.weight_limit) if caps.weight_limit is not None else _DRIVE
    if caps.weight_resolution is not None:
        weight = max(np.floor(weight / caps.weight_resolution), 1.0) * caps.weight_resolution
    neuron = NeuronParameters(threshold=1.0, tau_m=float(supported_setting(caps)[1]), tau_s=1.0)
    fan_in = min(_MAX_GROUP, caps.max_inputs // 2) if caps.max_inputs is not None else _MAX_GROUP
    group = _group_that_spikes(neuron, weight, fan_in)
    if group is None:
        return None
    copies = caps.input_copies or 1
    whole = -(-group // copies) * copies
    if whole <= fan_in:  # (whole groups of the backend's input copies: no copies straddle two delays)
        group = whole
    n_lines = min(n_lines, caps.max_layer_size or n_lines, caps.max_inputs // group if caps.max_inputs else n_lines)
    if group % copies and (group * n_lines) % copies == 0:
        n_lines -= 1  # (an input count no multiple of the copies: the backend takes every line as independent)
    if n_lines < 2:
        return None
    low, high = caps.delay_range if caps.delay_range is not None else (0.0, 4.0)
    batch = batch_within(caps, BATCH_SIZE)
    times = np.random.default_rng(0).uniform(0.15, 2.0, (batch, 1))  # (every line at once: any lines may be copies)
    return DelayLines(np.linspace(low, high, n_lines), np.repeat(times, group * n_lines, axis=1),
                      DelayKind.parse(delay_kind), neuron, float(weight), group)
