"""What the chip can run and where it runs it: capabilities, the represented network, resources
and the placement of neurons and delay elements on circuits."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from delgrad_core import Capabilities, DelayKind, Network, UnsupportedNetworkError
from delgrad_core.plugin_tools import inputs_in_copies

from delgrad_bss2._calibration import BACKEND_NAME
from delgrad_bss2._config import ChipConfig
from delgrad_bss2._delays import delays_from_registers

__all__ = ["chip_capabilities", "delay_groups", "resource_problem", "Placement", "place"]


def chip_capabilities(config: ChipConfig, duplication: int) -> Capabilities:
    """Axonal or no delays, tau_m = tau_s, one hidden layer, signed 6-bit weights, delays on
    the register grid, inputs in `duplication` copies, calibration required, seeded noise."""
    return Capabilities(
        delay_kinds=frozenset({DelayKind.NONE, DelayKind.AXONAL}),
        tau_ratios=(1.0,),
        max_inputs=config.max_signed_inputs,
        max_layers=2,
        weight_limit=config.weight_max / config.weight_scale,
        weight_resolution=1.0 / config.weight_scale,
        delay_range=tuple(float(d) for d in delays_from_registers(np.array([config.register_min, config.register_max]),
                                                                  config)),
        delay_resolution=config.delay_resolution_tau,
        input_copies=duplication,
        deterministic=True,
        seed_independent=False,
        needs_calibration=True,
        exact=False,
    )


def delay_groups(network: Network, duplication: int) -> list[np.ndarray | None]:
    """Per layer: the delay element (0, 1, ...) of each presynaptic line, None without delays."""
    groups = []
    for k, layer in enumerate(network.layers):
        projection = layer.projection
        if projection.delay_kind is DelayKind.NONE:
            groups.append(None)
        elif k == 0 and inputs_in_copies(network, duplication):
            groups.append(np.arange(projection.n_pre) // duplication)
        else:
            groups.append(np.arange(projection.n_pre))
    return groups


def _delay_elements(groups: list[np.ndarray | None]) -> int:
    return sum(int(g[-1]) + 1 for g in groups if g is not None)


def resource_problem(network: Network, config: ChipConfig, duplication: int) -> str | None:
    """Why `network` does not fit on the chip's neuron circuits (None: it fits)."""
    elements = _delay_elements(delay_groups(network, duplication))
    needed = sum(layer.population.size for layer in network.layers) + 2 * elements
    if needed <= config.neuron_circuits:
        return None
    parts = [f"{layer.population.size} {layer.population.name}" for layer in network.layers]
    if elements:
        parts.append(f"2 x {elements} delay lines")
    return (f"needs {needed} neuron circuits ({' + '.join(parts)}), the chip has {config.neuron_circuits}: "
            f"{needed - config.neuron_circuits} too many")


@dataclass(frozen=True)
class Placement:
    """Where a network sits: per layer, the neuron circuit of each neuron, the delay element
    (circuit pair index) of each delay group and the group of each presynaptic line."""

    neuron_circuits: tuple
    delay_elements: tuple
    delay_groups: tuple


def place(network: Network, duplication: int, usable_circuits: np.ndarray,
          usable_elements: np.ndarray, calibration_problem: str | None = None) -> Placement:
    """Delay elements from the top of the chip down, neurons from circuit 0 up, skipping
    circuits and elements that failed calibration (`calibration_problem`, if given, says why
    so many did: `target_problem`)."""
    groups = delay_groups(network, duplication)
    n_elements = _delay_elements(groups)
    candidates = np.flatnonzero(usable_elements)[::-1]
    elements = candidates[:n_elements]
    free = usable_circuits.copy()
    free[2 * elements] = free[2 * elements + 1] = False
    circuits = np.flatnonzero(free)
    n_neurons = sum(layer.population.size for layer in network.layers)
    if elements.size < n_elements or circuits.size < n_neurons:
        failed = int(np.count_nonzero(~usable_circuits))
        raise UnsupportedNetworkError(
            f"backend {BACKEND_NAME!r} cannot place the network with this calibration: it needs {n_neurons} neuron "
            f"circuits and {n_elements} delay elements; after placing "
            f"{elements.size} delay elements {circuits.size} usable circuits are left ({failed} circuits and "
            f"{int(np.count_nonzero(~usable_elements))} delay elements failed calibration"
            + (f"; {calibration_problem})" if calibration_problem else ")"),
            capability="resources")
    neuron_circuits, element_index, start, first_element = [], [], 0, 0
    for layer, group in zip(network.layers, groups):
        neuron_circuits.append(circuits[start:start + layer.population.size])
        start += layer.population.size
        if group is None:
            element_index.append(None)
        else:
            element_index.append(elements[first_element:first_element + int(group[-1]) + 1])
            first_element += int(group[-1]) + 1
    return Placement(tuple(neuron_circuits), tuple(element_index), tuple(groups))
