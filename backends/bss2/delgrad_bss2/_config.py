"""Every number of the emulated chip in one validated record; each field is a backend option.

Defaults follow BrainScaleS-2 (HICANN-X: Pehle et al. 2022; calibration as in Billaudelle et al.
2022) and DelGrad's hardware setup (Göltz, Weber, Kriener et al. 2025): 512 neuron circuits,
6-bit weights scaled by 30, tau_m = tau_s = 6 us = 1 model time unit, threshold 2.6 model units
(leak 80 and threshold 150 CADC), 8 ns timestamps, delay elements set by a register
r in 50..250 with delay r/8 + 2 us.  Spreads and noise are in model units at the operating point
unless the name says otherwise; `_rel` marks relative (lognormal) spreads.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from delgrad_core import InvalidValueError
from delgrad_core.plugin_tools import checked_number

__all__ = ["ChipConfig", "CADC_MAX", "INPUT_DUPLICATION", "MEMBRANE_KICK_CADC"]

_WEIGHT_STORAGE_MAX = 255  # a job's excitatory and inhibitory weights are uint8 (delgrad_bss2._job)
INPUT_DUPLICATION = 5  # copies of each input by default, as in DelGrad's chip experiments (backend option)
CADC_MAX = 255  # the potential readout's 8-bit range
MEMBRANE_KICK_CADC = 60.0  # the tau_m experiment starts the membrane this far above its leak (delgrad_bss2._measure)
_CIRCUITS_MAX = 2**16  # (the chip has 512 circuits and 256 rows; more only to explore)
_REGISTER_STEPS_MAX = 2**31 - 1  # (registers and the delay offset in steps are C integers)
# six times the calibration's tolerance on the potentials: the least distance of the threshold from the
# leak, and of the leak from the readout's floor
_POTENTIAL_MARGIN_CADC = 9.0
# largest log-normal spread of tau_m, tau_s and gain: at 6 standard deviations of the difference of
# two, tau_m / tau_s stays within e^(+-4.2), inside the solver's 0.01 to 1e6
_MAX_LOG_SPREAD = 0.5
# the additive spreads of the leak and threshold potentials: 6 standard deviations at most as wide as
# the readout's range (CADC_MAX CADC)
_POTENTIAL_SPREAD_WIDTH = 6.0
# the slot in at most this many clock ticks (times in ticks stay exact doubles)
_SLOT_TICKS_MAX = 2**52
# upper bounds of options whose larger values make times or the modelled job time overflow
_LARGEST = {"tau_us": 10**6, "slot_tau": 10**6, "host_overhead_job_s": 10**6, "host_overhead_sample_us": 10**9,
            "readout_offset_cadc": CADC_MAX / _POTENTIAL_SPREAD_WIDTH, "defect_probability": 1}
# options whose lower bound is not 0: any finite number first, then their own range (`_check_potentials`)
_OWN_LOWER_BOUND = ("leak_cadc", "threshold_cadc")


@dataclass(frozen=True)
class ChipConfig:
    """The emulated chip: resources, units, operating point, delay elements, imperfections.

    Attributes
    ----------
    neuron_circuits : int
        Neuron circuits on the chip (a delay element takes two).
    synapse_rows : int
        Synapse rows reaching one neuron circuit; a signed input takes two (one excitatory,
        one inhibitory row), so a neuron has at most ``synapse_rows // 2`` inputs.
    weight_max : int
        Largest synaptic weight (6 bit: 63).
    weight_scale : float
        Integer weight per model weight unit.
    tau_us : float
        Membrane and synaptic time constant, the model's time unit.
    threshold : float
        Model threshold at the operating point (the calibration targets' threshold).
    leak_cadc, threshold_cadc : float
        Calibration targets of the leak and threshold potentials (CADC units).
    timestamp_us : float
        Clock period of spike timestamps and input spike emission.
    slot_tau : float
        Length of the time slot of one sample; spikes after its end are lost.
    host_overhead_job_s, host_overhead_sample_us : float
        Host time per job and per sample (configuration, transfer) for the modelled end-to-end time.
    register_min, register_max : int
        Bounds of the delay element's register.
    register_step_us, delay_offset_us : float
        Delay of a delay element: ``register * register_step_us + delay_offset_us``.
    fixed_pattern : bool
        Per-circuit spread of the analog parameters (False: an ideal chip whose circuits sit
        exactly at the calibration targets whatever their settings).
    threshold_offset, threshold_spread : float
        Mean and standard deviation of the uncalibrated threshold error (model units).
    leak_spread : float
        Standard deviation of the uncalibrated leak potential (model units).
    tau_m_spread_rel, tau_s_spread_rel, gain_spread_rel : float
        Relative (lognormal) spread of the uncalibrated time constants and synaptic gain.
    delay_offset_spread_us : float
        Spread of the uncalibrated delay element offset.
    readout_offset_cadc : float
        Spread of the per-circuit offset of the potential readout (CADC), which calibration
        cannot see: it leaves a residual error on the calibrated potentials.
    comparator_offset, comparator_spread : float
        Mean and standard deviation of the per-circuit offset (model units) of the spike
        comparator above the threshold potential while a neuron is driven by synaptic input:
        the part of the threshold error that the calibration, which measures the threshold on
        slow rises, cannot see.
    defect_probability : float
        Probability per circuit and parameter that the calibration target lies outside the
        parameter's reachable range (such circuits fail calibration).
    threshold_noise : float
        Trial-to-trial threshold noise (model units), redrawn per execution and neuron; 0: off.
    delay_jitter_tau : float
        Jitter of every delayed spike (model time units); 0: off.
    quantise_times : bool
        Input spikes are emitted and spikes are timestamped on the clock of `timestamp_us`.
    """

    neuron_circuits: int = 512
    synapse_rows: int = 256
    weight_max: int = 63
    weight_scale: float = 30.0
    tau_us: float = 6.0
    threshold: float = 2.6
    leak_cadc: float = 80.0
    threshold_cadc: float = 150.0
    timestamp_us: float = 0.008
    slot_tau: float = 30.0
    host_overhead_job_s: float = 0.02
    host_overhead_sample_us: float = 65.0
    register_min: int = 50
    register_max: int = 250
    register_step_us: float = 0.125
    delay_offset_us: float = 2.0
    fixed_pattern: bool = True
    threshold_offset: float = 0.13
    threshold_spread: float = 0.08
    leak_spread: float = 0.075
    tau_m_spread_rel: float = 0.15
    tau_s_spread_rel: float = 0.15
    gain_spread_rel: float = 0.10
    delay_offset_spread_us: float = 0.2
    readout_offset_cadc: float = 0.4
    comparator_offset: float = 0.13
    comparator_spread: float = 0.08
    defect_probability: float = 0.002
    threshold_noise: float = 0.04
    delay_jitter_tau: float = 0.01
    quantise_times: bool = True

    def __post_init__(self):
        positive = ("weight_scale", "tau_us", "threshold", "timestamp_us", "slot_tau", "register_step_us")
        for spec in dataclasses.fields(self):
            value = getattr(self, spec.name)
            if spec.type == "bool":
                if not isinstance(value, (bool, np.bool_)):
                    raise InvalidValueError(f"{spec.name}: expected true or false, got {value!r}")
                object.__setattr__(self, spec.name, bool(value))
            elif spec.type == "int":
                object.__setattr__(self, spec.name, checked_number(value, spec.name, 1, integer=True))
            else:  # (as a float, -0.0 as 0.0: numpy refuses a scale of -0.0)
                low = None if spec.name in _OWN_LOWER_BOUND else 0
                object.__setattr__(self, spec.name, checked_number(value, spec.name, low, _LARGEST.get(spec.name),
                                                                   low_open=spec.name in positive))
        if self.weight_max > _WEIGHT_STORAGE_MAX:
            raise InvalidValueError(f"weight_max: a job stores weights in 8 bits, expected at most "
                                    f"{_WEIGHT_STORAGE_MAX}, got {self.weight_max}")
        if self.synapse_rows < 2:
            raise InvalidValueError(f"synapse_rows: a signed input needs 2 rows, got {self.synapse_rows}")
        if self.neuron_circuits % 2:
            raise InvalidValueError(f"neuron_circuits: must be even (delay elements take pairs), "
                                    f"got {self.neuron_circuits}")
        if self.register_min > self.register_max:
            raise InvalidValueError(f"register_min: must be <= register_max ({self.register_max}), "
                                    f"got {self.register_min}")
        self._check_potentials()
        offset_steps = self.delay_offset_us / self.register_step_us
        if offset_steps > _REGISTER_STEPS_MAX:
            raise InvalidValueError(f"delay_offset_us: {self.delay_offset_us!r} us is {offset_steps:.3g} register "
                                    f"steps (register_step_us {self.register_step_us!r}); "
                                    f"at most {_REGISTER_STEPS_MAX}")
        if abs(offset_steps - round(offset_steps)) > 1e-9:
            raise InvalidValueError(f"delay_offset_us: must be a whole number of register steps "
                                    f"({self.register_step_us} us) so that delays lie on one grid, "
                                    f"got {self.delay_offset_us}")
        self._check_weight_scale()
        for name, largest in (("neuron_circuits", _CIRCUITS_MAX), ("synapse_rows", _CIRCUITS_MAX),
                              ("register_max", _REGISTER_STEPS_MAX)):
            if getattr(self, name) > largest:
                raise InvalidValueError(f"{name}: expected at most {largest}, got {getattr(self, name)}")
        for name, value_us in (("timestamp_us", self.timestamp_us),
                               ("delay_jitter_tau", self.delay_jitter_tau * self.tau_us),
                               ("delay_offset_spread_us", self.delay_offset_spread_us)):
            if not value_us < self.slot_us:
                raise InvalidValueError(f"{name}: must be shorter than the sample slot ({self.slot_tau:g} tau = "
                                        f"{self.slot_us:g} us, options slot_tau and tau_us), "
                                        f"got {getattr(self, name)!r}")
        if self.slot_us / self.timestamp_us > _SLOT_TICKS_MAX:
            raise InvalidValueError(f"timestamp_us: at least {self.slot_us / _SLOT_TICKS_MAX:.3g} us (the sample slot, "
                                    f"{self.slot_us:g} us, in at most 2**52 clock ticks), got {self.timestamp_us!r}")
        self._check_potential_spreads()
        for name in ("tau_m_spread_rel", "tau_s_spread_rel", "gain_spread_rel"):
            if getattr(self, name) > _MAX_LOG_SPREAD:
                raise InvalidValueError(f"{name}: at most {_MAX_LOG_SPREAD:g} (a log-normal spread; beyond, "
                                        "uncalibrated circuits reach time-constant ratios outside the 0.01 to 1e6 that "
                                        "the spike-time solver serves, or gains of overflowing size), "
                                        f"got {getattr(self, name)!r}")
        self._check_noise_and_delays()

    def _check_potentials(self) -> None:
        """The calibration measures the potentials with the readout (0..CADC_MAX): the leak must
        lie far enough above its floor that a leak below the target reads below it (at the floor
        every lower leak reads 0, so the search drives the leak out of the readout's sight and the
        tau_m experiment sees no decay), and low enough that tau_m's decay from MEMBRANE_KICK_CADC
        above it does not saturate (tau_m would be calibrated wrong); the threshold far enough
        above the leak."""
        for name in ("leak_cadc", "threshold_cadc"):
            if getattr(self, name) > CADC_MAX:
                raise InvalidValueError(f"{name}: the potential readout measures 0..{CADC_MAX} CADC, got "
                                        f"{getattr(self, name)!r}")
        lowest, highest = _POTENTIAL_MARGIN_CADC, CADC_MAX - MEMBRANE_KICK_CADC
        if not lowest <= self.leak_cadc <= highest:
            raise InvalidValueError(f"leak_cadc: expected {lowest:g}..{highest:g} CADC, got {self.leak_cadc:g}: the "
                                    f"calibration reads the leak with the potential readout (0..{CADC_MAX} CADC) and "
                                    f"times the membrane's decay from {MEMBRANE_KICK_CADC:g} CADC above it; lower, a "
                                    "leak below its target reads 0 wherever it lies; higher, the decay saturates")
        if not self.threshold_cadc >= self.leak_cadc + _POTENTIAL_MARGIN_CADC:
            raise InvalidValueError(f"threshold_cadc: must lie at least {_POTENTIAL_MARGIN_CADC:g} CADC above "
                                    f"leak_cadc ({self.leak_cadc:g}; calibration leaves each within 1.5 CADC of its "
                                    f"target), got {self.threshold_cadc:g}")

    def _check_potential_spreads(self) -> None:
        """The spreads of the uncalibrated leak and threshold (model units) at most a sixth of the
        readout's range: beyond, uncalibrated potentials commonly lie outside what the readout
        (and so the calibration) can measure, and huge spreads overflow the chip's arithmetic."""
        largest = CADC_MAX / (_POTENTIAL_SPREAD_WIDTH * self.cadc_per_unit)
        for name in ("leak_spread", "threshold_spread"):
            if getattr(self, name) > largest:
                raise InvalidValueError(f"{name}: at most {largest:.4g} (a sixth of the readout's {CADC_MAX} CADC, at "
                                        f"{self.cadc_per_unit:.4g} CADC per model unit: beyond, uncalibrated "
                                        "potentials commonly lie outside what the readout measures), "
                                        f"got {getattr(self, name)!r}")

    def _check_noise_and_delays(self) -> None:
        """The shortest delay must end inside the sample slot (else every delayed spike is lost);
        delay jitter and threshold noise must stay far (6 standard deviations) from making a delay
        element fire before its trigger, or a threshold fall to the leak."""
        shortest_us = self.register_min * self.register_step_us + self.delay_offset_us
        if not shortest_us < self.slot_us:
            raise InvalidValueError(f"register_min: the shortest delay, {shortest_us:g} us (register_min x "
                                    f"register_step_us + delay_offset_us), must end inside the sample slot of "
                                    f"{self.slot_us:g} us (option slot_tau {self.slot_tau:g}); every delayed spike "
                                    "would be lost")
        if 6 * self.delay_jitter_tau * self.tau_us > shortest_us:
            raise InvalidValueError(f"delay_jitter_tau: at most {shortest_us / (6 * self.tau_us):.4g} tau at tau_us = "
                                    f"{self.tau_us:g} (a sixth of the shortest delay, {shortest_us:g} us): larger "
                                    f"jitter makes delay elements fire before their trigger, got "
                                    f"{self.delay_jitter_tau!r}")
        if 6 * self.delay_offset_spread_us > shortest_us:
            raise InvalidValueError(f"delay_offset_spread_us: at most {shortest_us / 6:.4g} (a sixth of the shortest "
                                    f"delay, {shortest_us:g} us): a larger spread makes uncalibrated delay elements "
                                    f"fire before their trigger, got {self.delay_offset_spread_us!r}")
        for name in ("threshold_noise", "comparator_spread"):
            if 6 * getattr(self, name) > self.threshold:
                raise InvalidValueError(f"{name}: at most {self.threshold / 6:.4g} (a sixth of the threshold "
                                        f"{self.threshold:g} above the leak): larger spreads draw thresholds at or "
                                        f"below the leak, got {getattr(self, name)!r}")
        if self.comparator_offset > self.threshold:
            raise InvalidValueError(f"comparator_offset: at most the threshold {self.threshold:g}, got "
                                    f"{self.comparator_offset!r}")

    def _check_weight_scale(self) -> None:
        """One weight step must resolve the threshold, and the strongest input a neuron can have
        (every row at the largest weight; the PSP s e^{-s} peaks at 1/e) must be able to reach it."""
        if 1.0 / self.weight_scale > self.threshold:
            raise InvalidValueError(f"weight_scale: one weight step (1/weight_scale = {1.0 / self.weight_scale:.3g}) "
                                    f"is larger than the threshold {self.threshold:g} (option threshold); expected at "
                                    f"least {1.0 / self.threshold:.6g}")
        largest_scale = self.max_signed_inputs * self.weight_max / math.e / self.threshold
        if self.weight_scale > largest_scale:
            raise InvalidValueError(f"weight_scale: at {self.weight_scale:g} no neuron could fire (all "
                                    f"{self.max_signed_inputs} inputs (synapse_rows / 2) at the largest weight "
                                    f"{self.weight_max} (weight_max) / weight_scale peak below the threshold "
                                    f"{self.threshold:g} (option threshold)); expected at most {largest_scale:.6g}")

    @property
    def cadc_per_unit(self) -> float:
        """CADC units per model voltage unit (threshold distance / model threshold)."""
        return (self.threshold_cadc - self.leak_cadc) / self.threshold

    @property
    def delay_resolution_tau(self) -> float:
        """Delay step of the register in model units."""
        return self.register_step_us / self.tau_us

    @property
    def delay_offset_steps(self) -> int:
        """The nominal delay offset in register steps (delays lie on one grid)."""
        return round(self.delay_offset_us / self.register_step_us)

    @property
    def slot_us(self) -> float:
        return self.slot_tau * self.tau_us

    @property
    def max_signed_inputs(self) -> int:
        return self.synapse_rows // 2

    @property
    def delay_pairs(self) -> int:
        """Delay elements the chip could hold (every circuit pair)."""
        return self.neuron_circuits // 2

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
