"""The compiled job: a complete, self-contained program for the emulated chip.

A job holds everything the chip needs and nothing from the host's model: integer weights on
excitatory and inhibitory synapse rows, delay-element registers, the circuits' analog settings
(from the calibration), input spikes per sample slot on the 8 ns clock, the slot length and the
seed of the run's noise.  Compiling converts model units to chip units; `result` converts the
chip's recorded spikes back.
"""

from __future__ import annotations

from dataclasses import dataclass

import math

import numpy as np

from delgrad_core import Calibration, ExecutionRequest, ExecutionResult

from delgrad_bss2._config import ChipConfig
from delgrad_bss2._delays import (delays_from_registers, group_starts, group_triggers, line_arrivals_us,
                                  registers_from_delays)
from delgrad_bss2._mapping import Placement
from delgrad_bss2._units import emitted_us, tau_from_us, us_from_tau, weight_integers

__all__ = ["LayerProgram", "Job", "Recording", "compile_job", "copies_before_their_spikes", "inputs_outside_the_slot",
           "lost_arrivals", "result", "unequal_copies"]


@dataclass(frozen=True)
class LayerProgram:
    """One layer as configured on the chip.

    Attributes
    ----------
    name : str
    neuron_circuits : (n_post,) circuit of each neuron
    excitatory, inhibitory : (n_pre, n_post) uint8 weights (0..weight_max) on the excitatory and
        the inhibitory row of each presynaptic line
    threshold, tau_m, tau_s : (n_post,) the network's neuron parameters in model units (the
        chip realises them with its calibrated relative errors)
    delay_groups : (n_pre,) delay element of each presynaptic line, or None (no delays)
    delay_elements : (n_groups,) circuit pair of each delay element, or None
    registers : (n_groups,) register of each delay element, or None
    """

    name: str
    neuron_circuits: np.ndarray
    excitatory: np.ndarray
    inhibitory: np.ndarray
    threshold: np.ndarray
    tau_m: np.ndarray
    tau_s: np.ndarray
    delay_groups: np.ndarray | None
    delay_elements: np.ndarray | None
    registers: np.ndarray | None


@dataclass(frozen=True)
class Job:
    """A program for chip `chip`: layers, analog settings (DAC values per circuit and per delay
    element), input spikes (n_slots, n_inputs) in us from each slot's start (+inf: none), slot
    length and the seed of trial-to-trial noise."""

    chip: int
    seed: int
    layers: tuple
    settings: dict
    input_spikes_us: np.ndarray
    slot_us: float

    @property
    def n_slots(self) -> int:
        return int(self.input_spikes_us.shape[0])

    @property
    def runtime_us(self) -> float:
        """Chip time of the whole job: one slot per sample."""
        return self.n_slots * self.slot_us


@dataclass(frozen=True)
class Recording:
    """What the chip records in a job, per layer, in us from each slot's start (+inf: none):
    timestamps of the neurons' first spikes (n_slots, n_post) and of the delay elements'
    spikes (n_slots, n_groups), None for a layer without delay elements.  Also, known to the
    emulator only (for the advice of `lost_arrivals`), the latest time a delay element fired
    after its slot had ended (-inf: none did)."""

    neuron_spikes_us: list
    delay_spikes_us: list
    latest_lost_delay_spike_us: float = -math.inf


def inputs_outside_the_slot(times_tau: np.ndarray, config: ChipConfig) -> str | None:
    """Which input spikes outside the sample slot, or None (checked in tau, before the conversion
    to us: 1e308 tau overflows to inf us, which reads as no spike)."""
    outside = np.isfinite(times_tau) & ((times_tau < 0) | (times_tau > config.slot_tau))
    if not outside.any():
        return None
    b, i = np.argwhere(outside)[0]
    return (f"input_spike_times: input {i} of sample {b} spikes at {float(times_tau[b, i])!r} tau, outside the sample "
            f"slot [0, {config.slot_tau:g}] tau (backend option slot_tau)")


def _input_spikes_us(times_tau: np.ndarray, config: ChipConfig) -> np.ndarray:
    """Input spike times (inside the slot: `inputs_outside_the_slot`) on the emission clock, in us."""
    return emitted_us(us_from_tau(times_tau, config), config)


def _shared_element(groups: np.ndarray, line: int) -> str:
    """The input lines that share `line`'s delay element as copies of one input, described."""
    copies = np.flatnonzero(groups == groups[line])
    return (f"inputs {copies[0]}-{copies[-1]} share one delay element as copies of one input (backend option "
            f"input_duplication={copies.size})")


def unequal_copies(times_tau: np.ndarray, groups: np.ndarray | None) -> str | None:
    """What differs between input lines that the chip takes as copies of one input (one delay
    element per group of `input_duplication` lines, fired by the earliest copy), or None."""
    if groups is None:
        return None
    first_of_group = group_starts(groups)
    if first_of_group.size == groups.size:
        return None
    differ = times_tau != times_tau[:, first_of_group][:, groups]
    if not differ.any():
        return None
    b, i = np.argwhere(differ)[0]
    first = np.flatnonzero(groups == groups[i])[0]
    return (f"{_shared_element(groups, i)}, but in sample {b} input {i} spikes at {float(times_tau[b, i])!r} tau "
            f"and input {first} at {float(times_tau[b, first])!r}: the element fires at the earliest copy. "
            f"If these inputs are not copies, set input_duplication=1; if they are, give them equal times "
            f"(encoder option repeat)")


def copies_before_their_spikes(job: Job, recording: Recording, config: ChipConfig) -> str | None:
    """What the chip could not deliver, or None: a delay element fired by an earlier copy of a
    duplicated input before a later copy of its group spiked (that copy's spike would arrive
    before it was sent)."""
    groups, elements_us = job.layers[0].delay_groups, recording.delay_spikes_us[0]
    if groups is None or elements_us is None:
        return None
    pre_us = job.input_spikes_us
    early = line_arrivals_us(elements_us, groups, pre_us) < pre_us
    if not early.any():
        return None
    b, i = np.argwhere(early)[0]
    return (f"input_spike_times: {_shared_element(groups, i)}; in sample {b} it fired at "
            f"{float(tau_from_us(elements_us[b, groups[i]], config))!r} tau, before input {i} spiked at "
            f"{float(tau_from_us(pre_us[b, i], config))!r} tau, which the chip cannot deliver. Give copies equal times "
            f"(encoder option repeat = input_duplication), or set input_duplication=1 for inputs that are not copies")


def _lost_in_layer(k: int, program: LayerProgram, pre_us: np.ndarray, elements_us: np.ndarray,
                   config: ChipConfig) -> tuple[int, str]:
    """The delayed spikes of layer `k` whose element was triggered inside the slot but did not
    fire inside it: (count, the first one described)."""
    triggers_us = group_triggers(pre_us, program.delay_groups)
    lost = np.isfinite(triggers_us) & ~np.isfinite(elements_us)
    if not lost.any():
        return 0, ""
    due_tau = tau_from_us(triggers_us, config) + delays_from_registers(program.registers, config)
    sample, element = np.argwhere(lost)[0]
    lines = np.flatnonzero(program.delay_groups == element)
    first = (f"in layer {k} ({program.name}), sample {sample}, the spike of input line "
             f"{lines[0]}{'' if lines.size == 1 else f'-{lines[-1]}'} due at {due_tau[sample, element]:.4g} tau")
    return int(lost.sum()), first


def lost_arrivals(job: Job, recording: Recording, config: ChipConfig) -> str | None:
    """What the recording lost of the delayed spikes, or None: a delay element triggered inside
    a sample's slot that did not fire inside it (no event crosses slots), and the slot length
    that would hold the latest of them (when it fired, with the element's analog offset and this
    run's jitter, plus 6 standard deviations of the jitter for another run's)."""
    pre_us, count, first = job.input_spikes_us, 0, ""
    for k, (program, elements_us) in enumerate(zip(job.layers, recording.delay_spikes_us)):
        if elements_us is not None:
            lost, description = _lost_in_layer(k, program, pre_us, elements_us, config)
            count, first = count + lost, first or description
        pre_us = recording.neuron_spikes_us[k]
    if not count:
        return None
    latest = float(tau_from_us(recording.latest_lost_delay_spike_us, config))
    needed = math.ceil((latest + 6 * config.delay_jitter_tau) * 100) / 100
    return (f"{count} delayed spike(s) of this job arrive after the sample slot of {config.slot_tau:g} tau and would "
            f"be lost ({first}); set the backend option slot_tau to at least {needed:g}, or make the spikes earlier "
            "or the delays shorter")


def compile_job(request: ExecutionRequest, config: ChipConfig, chip: int, placement: Placement,
                calibration: Calibration) -> Job:
    """The job running `request` (its network already represented) on chip `chip`."""
    layers = []
    for k, layer in enumerate(request.network.layers):
        projection = layer.projection
        integers = weight_integers(projection.weights, config)
        threshold, tau_m, tau_s = layer.neuron_arrays()
        groups = placement.delay_groups[k]
        registers = None
        if groups is not None:
            registers = registers_from_delays(projection.delays[group_starts(groups)], config)
        layers.append(LayerProgram(
            name=layer.population.name,
            neuron_circuits=placement.neuron_circuits[k],
            excitatory=np.clip(integers, 0, None).astype(np.uint8),
            inhibitory=np.clip(-integers, 0, None).astype(np.uint8),
            threshold=threshold,
            tau_m=tau_m,
            tau_s=tau_s,
            delay_groups=groups,
            delay_elements=placement.delay_elements[k],
            registers=registers,
        ))
    settings = {name[len("dac."):]: array for name, array in calibration.arrays.items() if name.startswith("dac.")}
    seed = 0 if request.seed is None else request.seed
    return Job(chip, seed, tuple(layers), settings, _input_spikes_us(request.input_spike_times, config), config.slot_us)


def result(job: Job, recording: Recording, config: ChipConfig, metadata: dict) -> ExecutionResult:
    """The recording in model units: spike times per layer and, where delay elements exist, the
    measured arrival times in the compact (batch, n_pre) form."""
    times = [tau_from_us(spikes, config) for spikes in recording.neuron_spikes_us]
    pre_us = [job.input_spikes_us, *recording.neuron_spikes_us[:-1]]
    arrivals = [None if spikes is None else tau_from_us(line_arrivals_us(spikes, program.delay_groups, pre), config)
                for program, spikes, pre in zip(job.layers, recording.delay_spikes_us, pre_us)]
    chip_seconds = job.runtime_us * 1e-6
    metadata = {
        **metadata,
        "chip": job.chip,
        "samples": job.n_slots,
        "slot_us": job.slot_us,
        "chip_seconds": chip_seconds,
        "modelled_seconds": config.host_overhead_job_s + chip_seconds
        + job.n_slots * config.host_overhead_sample_us * 1e-6,
        "neuron_circuits": int(sum(p.neuron_circuits.size for p in job.layers)),
        "delay_elements": int(sum(0 if p.registers is None else p.registers.size for p in job.layers)),
    }
    return ExecutionResult(times, metadata, None if all(a is None for a in arrivals) else arrivals)
