"""Run a compiled job on an emulated chip.

Each neuron circuit realises the network's neuron with the analog values its settings give on
this chip: the threshold distance (threshold minus leak potential, plus the spike comparator's
offset and trial-to-trial noise drawn per job and neuron), tau_m and tau_s (different per
circuit: the any-ratio solver of `delgrad_core.layer_forward` computes its first spike) and the
synaptic gain scaling its integer weights.  Errors are relative to the calibration targets, so a network with other
neuron parameters than the operating point keeps the chip's relative errors.  Delay elements
fire after their register's delay, their analog offset and jitter.  Spikes after the end of a
sample's slot are lost; recorded spikes carry 8 ns timestamps.
"""

from __future__ import annotations

import numpy as np

from delgrad_core import BackendError, Layer, NeuronParameters, Population, Projection, layer_forward

from delgrad_bss2._chip import Chip
from delgrad_bss2._delays import element_spikes_us, group_triggers, line_arrivals_us
from delgrad_bss2._job import Job, LayerProgram, Recording
from delgrad_bss2._units import timestamped_us, weights_from_integers

__all__ = ["run_job"]

_TRIAL_STREAM = 0x7E
_WORD = 2**32


def _trial_entropy(chip: int, seed: int) -> list[int]:
    """The entropy of a job's trial-to-trial randomness: [chip, seed, stream].  `SeedSequence`
    reads each number as its 32-bit words, one after the other, so (chip 2**32, seed 5) read as
    (chip 0, seed 5 * 2**32 + 1); a chip identity of 2**32 or more therefore has a form of its
    own, chip and seed in two words each (5 words: the other forms have 3 or 4)."""
    if chip < _WORD:
        return [chip, seed, _TRIAL_STREAM]
    return [chip % _WORD, chip // _WORD, seed % _WORD, seed // _WORD, _TRIAL_STREAM]


def _neuron_parameters(chip: Chip, job: Job, program: LayerProgram, rng: np.random.Generator):
    """(threshold, tau_m, tau_s, gain) of the layer's circuits in model units."""
    config = chip.config
    circuits = program.neuron_circuits

    def value(name):
        return chip.neuron_value(name, job.settings[name][circuits], circuits)

    steady = value("threshold") + chip.comparator_offset_cadc[circuits] - value("leak")
    distance = steady
    if config.threshold_noise > 0:
        distance = steady + rng.normal(0.0, config.threshold_noise * config.cadc_per_unit, circuits.size)
    if np.any(distance <= 0):
        index = np.argmax(distance <= 0)
        circuit = circuits[index]
        cause = (f"threshold_noise={config.threshold_noise:g} drew it there in this run; lower that option"
                 if steady[index] > 0 else "it lies there without noise: the chip's fixed-pattern spread or options, "
                 "or the calibration's settings of it (dac.threshold, dac.leak), put it there (a calibration that "
                 "calibrate() measured on this chip, or lower spread options, avoid it)")
        raise BackendError(f"chip {job.chip}: neuron circuit {circuit} has its threshold at or below its leak "
                           f"potential (it would fire without input); {cause}")
    threshold = program.threshold * distance / (config.threshold_cadc - config.leak_cadc)
    tau_m = program.tau_m * value("tau_m") / config.tau_us
    tau_s = program.tau_s * value("tau_s") / config.tau_us
    return threshold, tau_m, tau_s, value("gain")


def run_job(chip: Chip, job: Job, n_threads: int | None = None) -> Recording:
    """Emulate `job` on `chip`; all randomness comes from (chip identity, job seed)."""
    config = chip.config
    rng = np.random.default_rng(np.random.SeedSequence(_trial_entropy(job.chip, job.seed)))
    pre_us = job.input_spikes_us
    neuron_spikes, delay_spikes, latest_lost_us = [], [], -np.inf
    for program in job.layers:
        threshold, tau_m, tau_s, gain = _neuron_parameters(chip, job, program, rng)
        integers = program.excitatory.astype(np.int16) - program.inhibitory
        weights = weights_from_integers(integers, config) * gain[None, :]
        arrivals = elements = None
        if program.registers is not None:
            offsets = chip.delay_offset_us(job.settings["delay_offset"][program.delay_elements], program.delay_elements)
            elements = element_spikes_us(group_triggers(pre_us, program.delay_groups), program.registers, offsets,
                                         config, rng)
            late = np.isfinite(elements) & (elements > job.slot_us)
            latest_lost_us = max(latest_lost_us, float(elements[late].max(initial=-np.inf)))
            elements[late] = np.inf
            arrivals = line_arrivals_us(elements, program.delay_groups, pre_us) / config.tau_us
        layer = Layer(Population(program.name, program.neuron_circuits.size, NeuronParameters(threshold, tau_m, tau_s)),
                      Projection(weights))
        post_us = layer_forward(layer, pre_us / config.tau_us, arrival_times=arrivals, n_threads=n_threads) \
            * config.tau_us
        post_us[post_us > job.slot_us] = np.inf
        neuron_spikes.append(timestamped_us(post_us, config))
        delay_spikes.append(None if elements is None else timestamped_us(elements, config))
        pre_us = post_us
    return Recording(neuron_spikes, delay_spikes, latest_lost_us)
