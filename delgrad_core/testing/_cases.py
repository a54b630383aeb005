"""Small fixed networks and inputs on which backends are compared with the ideal model."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from delgrad_core._ir import DelayKind, Network, NeuronParameters

__all__ = ["ConformanceCase", "conformance_cases", "make_network"]

BATCH_SIZE = 32


@dataclass(frozen=True)
class ConformanceCase:
    """A named network with input spike times (batch, n_inputs) in units of tau_s."""

    id: str
    network: Network
    input_spike_times: np.ndarray


def make_network(sizes, delay_kind: DelayKind | str = DelayKind.NONE, tau_ratio: float = 2.0, seed: int = 0) -> Network:
    """Chain with weights N(1, 1), theta = 1, tau_s = 1 and delays uniform in [0, 1) tau_s."""
    network = Network.feedforward(
        list(sizes),
        delay_kind=delay_kind,
        neuron=NeuronParameters(threshold=1.0, tau_m=float(tau_ratio), tau_s=1.0),
        weight_mean=1.0,
        weight_std=1.0,
        seed=seed,
    )
    rng = np.random.default_rng(seed + 1000)
    for layer in network.layers:
        projection = layer.projection
        if projection.delays is not None:
            projection.delays = rng.uniform(0.0, 1.0, projection.delays.shape)
    return network


def conformance_cases() -> list[ConformanceCase]:
    """Every delay kind at tau_m/tau_s = 2, ratios 1 and 1.5, and a two-hidden-layer chain.

    Inputs follow the Yin-Yang encoding range [0.15, 2.0] tau_s (MODEL.md §5); one input per
    sample is silent (+inf) in a quarter of the samples.
    """
    specs = [((4, 10, 3), kind, 2.0) for kind in DelayKind]
    specs += [((4, 10, 3), DelayKind.NONE, 1.0), ((4, 10, 3), DelayKind.SYNAPTIC, 1.0)]
    specs += [((4, 10, 3), DelayKind.DENDRITIC, 1.5), ((4, 8, 6, 3), DelayKind.AXONAL, 2.0)]
    cases = []
    for seed, (sizes, kind, ratio) in enumerate(specs):
        rng = np.random.default_rng(seed)
        inputs = rng.uniform(0.15, 2.0, (BATCH_SIZE, sizes[0]))
        inputs[: BATCH_SIZE // 4, seed % sizes[0]] = np.inf
        case_id = "-".join(map(str, sizes)) + f"-{kind.value}-ratio{ratio:g}"
        cases.append(ConformanceCase(case_id, make_network(sizes, kind, ratio, seed), inputs))
    return cases
