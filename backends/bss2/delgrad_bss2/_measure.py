"""Emulated measurement experiments, run on all circuits of a chip at once.

What a calibration on the chip can observe (in the spirit of calix, Billaudelle et al. 2022):
potentials read by the CADC (integer samples with read noise and a per-circuit offset), membrane
and synaptic-input traces sampled by the CADC, and spike timestamps on the 8 ns clock.  Each
experiment returns its estimate per circuit (or delay element); the truth stays in `Chip`.
"""

from __future__ import annotations

import copy
import itertools
import math

import numpy as np

from delgrad_bss2._chip import Chip
from delgrad_bss2._config import CADC_MAX, MEMBRANE_KICK_CADC
from delgrad_bss2._units import timestamped_us

__all__ = ["Experiments", "fit_exponential_decay"]

READ_NOISE_CADC = 1.0
N_READS = 32  # reads of a resting potential; spikes of a threshold measurement
N_TRACES = 32  # repetitions averaged into one trace
N_DELAY_TRIALS = 64
MAX_TRIALS = 8192  # repetitions a noisy experiment may grow to (see `_averaged`)
TRACE_STEP_US = 0.5
TRACE_SAMPLES = 24
SYNAPSE_BASELINE_CADC = 100.0  # synaptic-input readout at zero current
SYNAPSE_AMPLITUDE_CADC = 60.0  # response to a weight-63 test spike at gain 1
FIT_FLOOR_CADC = 4.0  # trace samples closer than this to the baseline are not fitted
# samples drawn at once by a repeated read or a noisy experiment's trials (bounds their memory:
# 2^20 x 12 bytes for reads, x 28 bytes for threshold trials)
CHUNK_SAMPLES = 2**20


def fit_exponential_decay(times_us: np.ndarray, traces: np.ndarray, floor: float = FIT_FLOOR_CADC):
    """Fit ``A exp(-t / tau)`` to each row of `traces` (baseline removed).

    Weighted least squares on log(trace) over the samples above `floor`, with weights trace^2
    (the variance of the log of a noisy sample falls as 1 / trace^2).

    Returns
    -------
    amplitude, tau_us : arrays (n_rows,)
        tau is +inf for a trace that does not decay, 0 for one below `floor` from its second
        sample on (amplitude then the first sample).
    """
    used = traces > floor
    weights = np.where(used, traces, 0.0) ** 2
    logs = np.log(np.where(used, traces, 1.0))
    s, st, stt = weights.sum(1), weights @ times_us, weights @ times_us**2
    sy, sty = (weights * logs).sum(1), (weights * logs) @ times_us
    enough = used.sum(1) >= 2
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(enough, (s * sty - st * sy) / (s * stt - st**2), 0.0)
        intercept = np.where(enough, (sy - slope * st) / s, 0.0)
        tau = np.where(slope < 0, -1.0 / slope, np.inf)
    amplitude = np.where(enough, np.exp(intercept), np.maximum(traces[:, 0], 0.0))
    return amplitude, np.where(enough, tau, 0.0)


class Experiments:
    """Measurement experiments on `chip`, with noise drawn from `rng`.

    Every method takes the DAC settings of all circuits (dict name -> array) and returns one
    estimate per circuit (per delay element for `delay_offset`).
    """

    def __init__(self, chip: Chip, rng: np.random.Generator, standard_errors: dict | None = None):
        self.chip = chip
        self.config = chip.config
        self.rng = rng
        self.n = chip.config.neuron_circuits
        # experiment name -> the standard error its mean should reach (more trials if needed)
        self.standard_errors = dict(standard_errors or {})

    def _read(self, potential_cadc: np.ndarray) -> np.ndarray:
        """CADC samples of potentials (..., n_circuits): offset, noise, integer, saturating."""
        reads = self.rng.standard_normal(np.shape(potential_cadc), dtype=np.float32)
        reads *= READ_NOISE_CADC
        reads += potential_cadc + self.chip.readout_offset_cadc
        np.rint(reads, out=reads)
        return np.clip(reads, 0, CADC_MAX, out=reads)

    def _mean_read(self, potential_cadc: np.ndarray, count: int) -> np.ndarray:
        """The mean of `count` reads of `potential_cadc` (..., n_circuits), drawn in chunks of
        repetitions (bounded memory) from the one random stream and summed in order: the numbers
        of `self._read` of all repetitions at once, averaged by numpy."""
        chunks = (self._read(np.broadcast_to(potential_cadc, (size, *potential_cadc.shape)))
                  for size in _chunk_sizes(count, potential_cadc.size))
        return _sum_rows(chunks) / count

    def _noisy_reads(self, potential_cadc: np.ndarray, spread: float, count: int):
        """`count` reads (chunks of (k, n_circuits)) of `potential_cadc` (n_circuits,), each with
        fresh Gaussian noise of `spread`: the numbers of drawing the noise of all reads, then the
        reads, at once from the one stream.  The noise is drawn twice: first only to move the
        stream past it to the reads, then again chunk by chunk from a copy of the stream."""
        sizes = _chunk_sizes(count, potential_cadc.size)
        noise = copy.deepcopy(self.rng)
        for size in sizes:
            self.rng.normal(0.0, spread, (size, potential_cadc.size))
        for size in sizes:
            yield self._read(potential_cadc + noise.normal(0.0, spread, (size, potential_cadc.size)))

    def _value(self, name: str, settings: dict) -> np.ndarray:
        return self.chip.neuron_value(name, settings[name])

    def leak(self, settings: dict) -> np.ndarray:
        """Resting potential (CADC): the mean of repeated reads."""
        leak = self._value("leak", settings)
        return self._mean_read(leak, N_READS)

    def threshold(self, settings: dict) -> np.ndarray:
        """Threshold potential (CADC): reads triggered by the neuron's own spikes while a
        constant current drives it; each spike sees a fresh trial-to-trial threshold noise."""
        threshold = self._value("threshold", settings)
        spread = self.config.threshold_noise * self.config.cadc_per_unit
        return _averaged(lambda count: self._noisy_reads(threshold, spread, count), N_READS,
                         self.standard_errors.get("threshold"))

    def _decay(self, baseline: np.ndarray, amplitude: np.ndarray, tau_us: np.ndarray):
        """Averaged traces of ``baseline + amplitude exp(-t / tau)`` minus the averaged resting
        reads, fitted: (amplitude, tau_us) per circuit."""
        times = TRACE_STEP_US * np.arange(TRACE_SAMPLES)
        exact = baseline[:, None] + amplitude[:, None] * np.exp(-times[None, :] / tau_us[:, None])
        traces = self._mean_read(exact.T, N_TRACES).T
        rest = self._mean_read(baseline, N_READS)
        return fit_exponential_decay(times, traces - rest[:, None])

    def membrane_tau(self, settings: dict) -> np.ndarray:
        """Membrane time constant (us): the membrane is set above its leak potential and its
        decay back is sampled and fitted."""
        _, tau = self._decay(self._value("leak", settings), np.full(self.n, MEMBRANE_KICK_CADC),
                             self._value("tau_m", settings))
        return tau

    def synaptic_input(self, settings: dict) -> tuple[np.ndarray, np.ndarray]:
        """Synaptic time constant (us) and gain: the synaptic-input readout after a test spike
        of weight 63, fitted; the gain is the fitted amplitude over the nominal one."""
        amplitude, tau = self._decay(np.full(self.n, SYNAPSE_BASELINE_CADC),
                                     SYNAPSE_AMPLITUDE_CADC * self._value("gain", settings),
                                     self._value("tau_s", settings))
        return tau, amplitude / SYNAPSE_AMPLITUDE_CADC

    def delay_offset(self, dac: np.ndarray) -> np.ndarray:
        """Delay offset (us) of every delay element: trigger it with the smallest register,
        timestamp its spikes (with jitter) and subtract the register's share of the delay."""
        config = self.config
        register_us = config.register_min * config.register_step_us
        offset = self.chip.delay_offset_us(dac)

        def stamps(count):
            for size in _chunk_sizes(count, offset.size):
                jitter = self.rng.normal(0.0, config.delay_jitter_tau * config.tau_us, (size, offset.size))
                yield timestamped_us(register_us + offset + jitter, config)

        half_tick = 0.5 * config.timestamp_us if config.quantise_times else 0.0
        return _averaged(stamps, N_DELAY_TRIALS, self.standard_errors.get("delay_offset")) + half_tick - register_us


def _chunk_sizes(count: int, samples_per_trial: int) -> list[int]:
    """`count` trials split into chunks of at most `CHUNK_SAMPLES` samples (one trial at least)."""
    per_chunk = max(1, CHUNK_SAMPLES // samples_per_trial)
    return [min(per_chunk, count - start) for start in range(0, count, per_chunk)]


def _sum_rows(chunks) -> np.ndarray:
    """The sum over the rows (axis 0) of all `chunks`, added one by one in order: numpy's order
    for a sum over axis 0 of all chunks at once, unless a row is one number (then pairwise)."""
    total = None
    for row in itertools.chain.from_iterable(chunks):
        if total is None:
            total = row.copy()
        else:
            total += row
    return total


def _trials_needed(samples: np.ndarray, standard_error: float) -> int:
    """Trials (at least those of `samples`, at most `MAX_TRIALS`) for a mean to reach
    `standard_error`, judged from the spread of `samples` (k, n): the median over circuits of the
    sample standard deviation, as an experimenter would judge it."""
    count = len(samples)
    with np.errstate(over="ignore", invalid="ignore"):  # (inf samples of an unmeasurable circuit)
        spread = float(np.median(np.std(samples, axis=0, ddof=1)))
    # (a spread of inf or NaN: samples of a circuit that cannot be measured; more would not help)
    ratio = spread / standard_error
    if not math.isfinite(ratio):
        return count
    return MAX_TRIALS if ratio > MAX_TRIALS else max(count, min(MAX_TRIALS, math.ceil(ratio * ratio)))


def _averaged(trials, count: int, standard_error: float | None) -> np.ndarray:
    """Mean over trials of the samples `trials(k)` yields ((k_i, n) chunks of k trials): `count`
    trials, and more (`_trials_needed`) when `standard_error` is given.  With trial-to-trial noise
    far above the default, a fixed count would fail healthy circuits.  The extra trials are summed
    chunk by chunk as drawn (bounded memory): the numbers of numpy's mean of all trials at once."""
    samples = np.concatenate(list(trials(count)))
    needed = count if standard_error is None else _trials_needed(samples, standard_error)
    extra = trials(needed - count)
    if samples.shape[1] == 1:  # (numpy sums single numbers pairwise; at most MAX_TRIALS of them)
        return np.concatenate([samples, *extra]).mean(axis=0)
    return _sum_rows(itertools.chain([samples], extra)) / needed
