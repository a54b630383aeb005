"""One emulated chip: its identity and the hidden analog truth of every circuit.

Each neuron circuit has five analog parameters set by 10-bit DAC values (capacitive-memory
cells, as on BrainScaleS-2: Pehle et al. 2022): leak and threshold potential (CADC units),
membrane and synaptic time constant (us) and synaptic gain (relative).  Each delay element (a
pair of circuits) has one: its delay offset (us).  A parameter reaches its value through a
per-circuit transfer function:

- linear (potentials, delay offset): ``target + slope_j (x - x0_j)``;
- proportional (gain, bias current ``x + 1``): ``target (x + 1) / (x0_j + 1)``;
- inverse (time constants): ``target (x0_j + 1) / (x + 1)``;

where ``x0_j`` is the (hidden) setting at which circuit j would meet the target.  At the default
setting the uncalibrated error has the spread of `ChipConfig`.  A few circuits are defective:
their value saturates short of the target, so no setting reaches it.  Everything is drawn from
the chip identity alone, so one chip is the same in every process.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from delgrad_bss2._config import ChipConfig

__all__ = ["EMULATOR_VERSION", "DAC_MAX", "AnalogParameter", "NEURON_PARAMETERS", "DELAY_PARAMETER", "Chip"]

# Part of every calibration cache key: change it whenever the emulated chip changes.
EMULATOR_VERSION = 4  # 2: inputs on the next clock tick; noisy calibration measurements repeat as needed;
# 3: the spike comparator's offset; 4: times on a tick up to rounding error are on it (emitted and stamped there)
DAC_MAX = 1023
_FIXED_PATTERN_STREAM = 0xF1
# Defective circuits saturate this many (uncalibrated) spreads short of the target.
_DEFECT_MARGIN = (1.5, 4.0)
# Relative spread of the slope of linear transfer functions.
_SLOPE_SPREAD = 0.05


@dataclass(frozen=True)
class AnalogParameter:
    """An analog parameter of a circuit: name, unit, transfer kind, default DAC setting and,
    for linear transfers, the nominal slope (unit per DAC step)."""

    name: str
    unit: str
    transfer: str
    default_dac: int
    slope: float = 0.0

    def target(self, config: ChipConfig) -> float:
        """The calibration target in chip units."""
        return {"leak": config.leak_cadc, "threshold": config.threshold_cadc, "tau_m": config.tau_us,
                "tau_s": config.tau_us, "gain": 1.0, "delay_offset": config.delay_offset_us}[self.name]

    def uncalibrated_error(self, config: ChipConfig) -> tuple[float, float]:
        """(mean, std) of the error at the default setting: additive in the unit for linear
        parameters, of the log of value/target for the others."""
        per_unit = config.cadc_per_unit
        return {
            "leak": (0.0, config.leak_spread * per_unit),
            "threshold": (config.threshold_offset * per_unit, config.threshold_spread * per_unit),
            "tau_m": (0.0, config.tau_m_spread_rel),
            "tau_s": (0.0, config.tau_s_spread_rel),
            "gain": (0.0, config.gain_spread_rel),
            "delay_offset": (0.0, config.delay_offset_spread_us),
        }[self.name]


NEURON_PARAMETERS = (
    AnalogParameter("leak", "CADC", "linear", 400, 0.2),
    AnalogParameter("threshold", "CADC", "linear", 500, 0.3),
    AnalogParameter("tau_m", "us", "inverse", 400),
    AnalogParameter("tau_s", "us", "inverse", 400),
    AnalogParameter("gain", "1", "proportional", 500),
)
DELAY_PARAMETER = AnalogParameter("delay_offset", "us", "linear", 500, 0.004)


@dataclass(frozen=True)
class _Transfer:
    """Per-circuit transfer function of one parameter (arrays over circuits)."""

    parameter: AnalogParameter
    target: float
    x0: np.ndarray
    slope: np.ndarray
    low: np.ndarray
    high: np.ndarray

    def __call__(self, dac: np.ndarray, index) -> np.ndarray:
        x = np.asarray(dac, dtype=float)
        x0 = self.x0[index]
        kind = self.parameter.transfer
        if kind == "linear":
            value = self.target + self.slope[index] * (x - x0)
        elif kind == "proportional":
            value = self.target * (x + 1.0) / (x0 + 1.0)
        else:
            value = self.target * (x0 + 1.0) / (x + 1.0)
        return np.clip(value, self.low[index], self.high[index])


def _draw_transfer(parameter: AnalogParameter, n: int, config: ChipConfig, rng: np.random.Generator) -> _Transfer:
    target = parameter.target(config)
    mean, std = parameter.uncalibrated_error(config)
    error = rng.normal(mean, std, n)
    slope = parameter.slope * (1.0 + _SLOPE_SPREAD * rng.standard_normal(n))
    default = float(parameter.default_dac)
    if parameter.transfer == "linear":
        x0 = default - error / slope
    elif parameter.transfer == "proportional":
        x0 = (default + 1.0) / np.exp(error) - 1.0
    else:
        x0 = (default + 1.0) * np.exp(error) - 1.0
    low, high = np.full(n, -np.inf), np.full(n, np.inf)
    defective = rng.random(n) < config.defect_probability
    margin = std * rng.uniform(*_DEFECT_MARGIN, n)
    above = rng.random(n) < 0.5  # the value stays above the target (else below it)
    if parameter.transfer == "linear":
        short_high, short_low = target - margin, target + margin
    else:
        short_high, short_low = target * np.exp(-margin), target * np.exp(margin)
    high = np.where(defective & ~above, short_high, high)
    low = np.where(defective & above, short_low, low)
    return _Transfer(parameter, target, x0, slope, low, high)


class Chip:
    """The analog truth of chip `identity`: what the calibration measures and jobs run on.

    Parameters
    ----------
    identity : int
        The chip; equal identities (and configs) give identical chips in every process.
    config : ChipConfig
    """

    def __init__(self, identity: int, config: ChipConfig):
        self.identity = identity
        self.config = config
        n = config.neuron_circuits
        rng = np.random.default_rng(np.random.SeedSequence([identity, _FIXED_PATTERN_STREAM]))
        self._transfers = {p.name: _draw_transfer(p, n, config, rng) for p in NEURON_PARAMETERS}
        self._delay = _draw_transfer(DELAY_PARAMETER, config.delay_pairs, config, rng)
        spread = config.readout_offset_cadc if config.fixed_pattern else 0.0
        self.readout_offset_cadc = rng.normal(0.0, spread, n)
        mean, spread = (config.comparator_offset, config.comparator_spread) if config.fixed_pattern else (0.0, 0.0)
        self.comparator_offset_cadc = rng.normal(mean, spread, n) * config.cadc_per_unit

    def neuron_value(self, name: str, dac, circuits=slice(None)) -> np.ndarray:
        """Physical value of parameter `name` of `circuits` at DAC settings `dac`."""
        transfer = self._transfers[name]
        if not self.config.fixed_pattern:
            return np.full(np.shape(transfer.x0[circuits]), transfer.target)
        return transfer(dac, circuits)

    def delay_offset_us(self, dac, pairs=slice(None)) -> np.ndarray:
        """Delay offset (us) of delay elements `pairs` at DAC settings `dac`."""
        if not self.config.fixed_pattern:
            return np.full(np.shape(self._delay.x0[pairs]), self._delay.target)
        return self._delay(dac, pairs)

    def reachable(self, name: str) -> np.ndarray:
        """Per circuit (or delay element): can some setting reach the target? (The truth a
        calibration can only find out by trying; for tests.)"""
        transfer = self._delay if name == DELAY_PARAMETER.name else self._transfers[name]
        if not self.config.fixed_pattern:
            return np.ones(transfer.x0.shape, dtype=bool)
        ends = transfer(np.array([0, DAC_MAX])[:, None], slice(None))
        return (ends.min(axis=0) <= transfer.target) & (transfer.target <= ends.max(axis=0))
