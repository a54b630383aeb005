"""Delay elements: a pair of neuron circuits per delayed line (as in DelGrad's BrainScaleS-2
experiments, Göltz, Weber, Kriener et al. 2025).

The first circuit of the pair is triggered by the presynaptic spike and held in its refractory
period for ``register * register_step_us`` (the refractory counter); when released, the second
circuit fires after the pair's analog offset (``delay_offset_us``, calibrated per element).
The copies of a duplicated input share one element, triggered by the earliest copy; its spike
reaches every copy that spiked.
"""

from __future__ import annotations

import numpy as np

from delgrad_core import InvalidValueError

from delgrad_bss2._config import ChipConfig

__all__ = ["registers_from_delays", "delays_from_registers", "group_starts", "group_triggers", "element_spikes_us",
           "line_arrivals_us"]


def registers_from_delays(delays_tau: np.ndarray, config: ChipConfig) -> np.ndarray:
    """Register values of delays (model units) on the register grid: the inverse of
    `delays_from_registers`; refuses delays outside the register range."""
    registers = np.round(delays_tau / config.delay_resolution_tau).astype(np.int64) - config.delay_offset_steps
    outside = (registers < config.register_min) | (registers > config.register_max)
    if outside.any():
        raise InvalidValueError(
            f"delays: {delays_tau[outside][0]!r} tau needs register {registers[outside][0]}, outside "
            f"{config.register_min}..{config.register_max}; run backend.represent(network) first")
    return registers


def delays_from_registers(registers: np.ndarray, config: ChipConfig) -> np.ndarray:
    """Nominal delays (model units) of register values, (register * step + offset) / tau,
    computed as whole multiples of the delay resolution (the grid `represent` rounds to)."""
    return (registers + config.delay_offset_steps) * config.delay_resolution_tau


def group_starts(groups: np.ndarray) -> np.ndarray:
    """Index of the first line of every delay element's group; `groups` numbers the lines'
    elements 0, 0, ..., 1, 1, ... (consecutive)."""
    return np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])


def group_triggers(pre_us: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Trigger time of every delay element (batch, n_groups): the earliest spike of its
    presynaptic lines (`groups` as for `group_starts`)."""
    starts = group_starts(groups)
    if starts.size == groups.size:
        return pre_us
    return np.minimum.reduceat(pre_us, starts, axis=1)


def element_spikes_us(trigger_us: np.ndarray, registers: np.ndarray, offsets_us: np.ndarray, config: ChipConfig,
                      rng: np.random.Generator) -> np.ndarray:
    """Spike times of delay elements (batch, n_elements) triggered at `trigger_us` (+inf: never):
    trigger + register * step + the element's analog offset, plus Gaussian jitter of
    `config.delay_jitter_tau` tau per spike."""
    fire = trigger_us + (registers * config.register_step_us + offsets_us)[None, :]
    if config.delay_jitter_tau == 0:
        return fire
    return fire + rng.normal(0.0, config.delay_jitter_tau * config.tau_us, fire.shape)


def line_arrivals_us(elements_us: np.ndarray, groups: np.ndarray, pre_us: np.ndarray) -> np.ndarray:
    """Arrival time of every presynaptic line (batch, n_pre): its element's spike
    (`elements_us`, grouped as for `group_starts`), for the lines that spiked (`pre_us` finite);
    a silent copy of a duplicated input receives nothing."""
    return np.where(np.isfinite(pre_us), elements_us[:, groups], np.inf)
