"""Chip units <-> model units.

Model: times in units of tau (tau_m = tau_s), weights in threshold-current units, threshold 2.6
at the operating point.  Chip: microseconds on an 8 ns clock, integer 6-bit weights with a sign
per synapse row, potentials in CADC units.
"""

from __future__ import annotations

import numpy as np

from delgrad_bss2._config import ChipConfig

__all__ = ["us_from_tau", "tau_from_us", "emitted_us", "timestamped_us", "weight_integers", "weights_from_integers"]


def us_from_tau(times_tau, config: ChipConfig) -> np.ndarray:
    return np.asarray(times_tau, dtype=float) * config.tau_us


def tau_from_us(times_us, config: ChipConfig) -> np.ndarray:
    return np.asarray(times_us, dtype=float) / config.tau_us


_ON_TICK_ULPS = 8  # a time this many float steps from a tick is on it: 0.1 tau = 0.6000000000000001 us is tick 75


def _ticks(times_us: np.ndarray, config: ChipConfig) -> np.ndarray:
    """`times_us` in clock ticks, those within rounding error (a few float steps) of a whole
    tick on it: a time converted from tau to us lands a rounding error beside the tick it names."""
    ticks = np.asarray(times_us, dtype=float) / config.timestamp_us
    whole = np.round(ticks)
    with np.errstate(invalid="ignore"):  # (inf - inf: silence stays inf)
        on_tick = np.abs(ticks - whole) <= _ON_TICK_ULPS * np.spacing(np.maximum(1.0, np.abs(whole)))
    return np.where(on_tick, whole, ticks)


def emitted_us(times_us: np.ndarray, config: ChipConfig) -> np.ndarray:
    """When the FPGA emits spikes scheduled at `times_us`: on the first clock tick at or after
    that time (never early: a neuron's spike, stamped at the start of its tick, then never
    precedes the input that caused it)."""
    if not config.quantise_times:
        return times_us
    return np.ceil(_ticks(times_us, config)) * config.timestamp_us


def timestamped_us(times_us: np.ndarray, config: ChipConfig) -> np.ndarray:
    """The timestamps of events at `times_us`: the start of the clock period they fall in."""
    if not config.quantise_times:
        return times_us
    return np.floor(_ticks(times_us, config)) * config.timestamp_us


def weight_integers(weights: np.ndarray, config: ChipConfig) -> np.ndarray:
    """Signed integer weights (|w| <= weight_max) of model weights: round(w * weight_scale)."""
    return np.clip(np.round(weights * config.weight_scale), -config.weight_max, config.weight_max).astype(np.int16)


def weights_from_integers(integers: np.ndarray, config: ChipConfig) -> np.ndarray:
    return integers / config.weight_scale
