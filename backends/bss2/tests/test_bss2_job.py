"""The compiled job: a self-contained program in chip units, and the chip time it reports."""

import re

import numpy as np
import pytest
from _bss2_helpers import yin_yang_inputs, yin_yang_network

import delgrad_core as dg
from delgrad_bss2._config import ChipConfig
from delgrad_bss2._job import (Job, LayerProgram, Recording, compile_job, copies_before_their_spikes,
                               inputs_outside_the_slot, lost_arrivals, unequal_copies)


def _job(emulator, **options):
    backend, calibration = emulator(**options)
    network = backend.represent(yin_yang_network())
    inputs = yin_yang_inputs(batch=8)
    request = dg.ExecutionRequest(network, inputs, calibration, seed=11)
    job = compile_job(request, backend.config, backend.chip, backend._placement(network, calibration), calibration)
    return job, network, inputs, calibration


def test_the_job_holds_integer_signed_rows_registers_settings_and_clocked_inputs(emulator):
    job, network, inputs, calibration = _job(emulator)
    hidden, output = job.layers
    for program, layer in zip(job.layers, network.layers):
        assert program.excitatory.dtype == np.uint8 and program.excitatory.max() <= 63
        assert np.all((program.excitatory == 0) | (program.inhibitory == 0))  # one sign per synapse
        np.testing.assert_array_equal(program.excitatory.astype(int) - program.inhibitory,
                                      np.round(layer.projection.weights * 30).astype(int))
    assert hidden.registers.size == 4 and output.registers.size == 30  # 4 duplicated inputs, 30 hidden neurons
    np.testing.assert_allclose(hidden.registers / 8 + 2, network.layers[0].projection.delays[::5] * 6, atol=1e-9)
    assert job.seed == 11 and job.chip == 0 and job.slot_us == 180.0
    assert set(job.settings) == {"leak", "threshold", "tau_m", "tau_s", "gain", "delay_offset"}
    np.testing.assert_array_equal(job.settings["tau_m"], calibration.arrays["dac.tau_m"])
    ticks = job.input_spikes_us / 0.008
    np.testing.assert_allclose(ticks, np.round(ticks), atol=1e-9)
    lateness_us = job.input_spikes_us - inputs * 6.0  # on the first tick at or after the time: never early
    assert lateness_us.min() >= 0 and lateness_us.max() < 0.008


def test_inputs_outside_the_sample_slot_are_refused(emulator):
    backend, calibration = emulator()
    network = backend.represent(yin_yang_network())
    inputs = yin_yang_inputs(batch=2)
    for bad in (31.0, -0.5, 1e308):  # (1e308 tau overflowed to inf us, read as no spike, with a numpy warning)
        inputs[1, 3] = bad
        with pytest.raises(dg.InvalidValueError, match=rf"input 3 of sample 1 spikes at {re.escape(repr(bad))} tau, "
                                                       r"outside the sample slot \[0, 30\] tau"):
            backend.execute(network, inputs, calibration=calibration)


def test_metadata_reports_chip_time_and_modelled_end_to_end_time(emulator):
    backend, calibration = emulator()
    network = backend.represent(yin_yang_network())
    result = backend.execute(network, yin_yang_inputs(batch=40), calibration=calibration, seed=0)
    meta = result.metadata
    assert meta["chip_seconds"] == pytest.approx(40 * 180e-6) and meta["samples"] == 40
    assert meta["modelled_seconds"] == pytest.approx(0.02 + 40 * (180 + 65) * 1e-6)
    assert meta["neuron_circuits"] == 33 and meta["delay_elements"] == 34 and meta["wall_seconds"] > 0
    fast, fast_calibration = emulator(slot_tau=7.0)  # 42 us slots, as for fast inference
    # (without delays: with them, hidden spikes late in the slot would arrive after it, and the job is refused)
    many = fast.execute(fast.represent(yin_yang_network(kind="none")), yin_yang_inputs(batch=10_000),
                        calibration=fast_calibration, seed=0)
    assert many.metadata["modelled_seconds"] == pytest.approx(1.09, abs=0.005)


def test_metadata_says_whether_the_chip_ran_calibrated(emulator):
    """(docs/bss2.md: the metadata report `chip`, `calibrated`, ...)"""
    for calibrated in (True, False):
        backend, calibration = emulator(calibrated=calibrated, chip=2)
        result = backend.execute(backend.represent(yin_yang_network(kind="none")), yin_yang_inputs(batch=2),
                                 calibration=calibration, seed=0)
        assert result.metadata["calibrated"] is calibrated and result.metadata["chip"] == 2


def test_the_device_identity_has_the_options_that_change_spikes_and_not_the_host_overheads(emulator):
    """(docs/backends.md: the options that change results, defaults filled in; the host overheads
    change only the modelled time, docs/bss2.md)"""
    backend, calibration = emulator()
    identity = backend.device_identity(calibration)
    options = identity["options"]
    assert options["input_duplication"] == 5 and options["quantise_times"] is True and options["threshold"] == 2.6
    assert not {"host_overhead_job_s", "host_overhead_sample_us", "n_threads", "cache"} & set(options)
    other_host = dg.get_backend("bss2-emulator", host_overhead_job_s=1.0, host_overhead_sample_us=1.0)
    assert other_host.device_identity(calibration) == identity
    other_copies = dg.get_backend("bss2-emulator", input_duplication=4)
    assert other_copies.device_identity(calibration)["options"] == {**options, "input_duplication": 4}


def test_a_spike_within_one_clock_tick_of_its_input_is_not_stamped_before_it():
    # inputs used to go out on the nearest tick, which can be before their time; a neuron that
    # fired within that tick was then stamped before its input and the result check refused it
    backend = dg.get_backend("bss2-emulator", threshold_noise=0.0, cache=False)
    tick = 0.008 / 6.0
    network = dg.Network.feedforward([20, 3], neuron=dg.NeuronParameters(1e-3, 1.0, 1.0), weight_mean=2.0,
                                     weight_std=0.0)
    inputs = np.full((4, 20), np.inf)
    inputs[:, 0] = 10.4 * tick
    times = backend.execute(network, inputs, calibration=backend.calibrate()).layer_spike_times[0]
    assert np.all(times >= inputs[:, :1]) and np.all(times < inputs[:, :1] + 2 * tick)


@pytest.mark.parametrize("name", ["bss2-emulator", "mock-hil"])
def test_execute_many_refuses_inputs_outside_the_slot_before_the_first_job_runs(name, monkeypatch, tmp_path):
    """(the slot was checked as each job ran: the jobs before the refused one had run; the
    contract says every request is checked first)"""
    if name == "mock-hil":
        pytest.importorskip("delgrad_hil")
    monkeypatch.setenv("DELGRAD_BSS2_CACHE", str(tmp_path))
    network = dg.Network.feedforward([10, 5, 3], neuron=dg.NeuronParameters(2.6, 1.0, 1.0), seed=0)
    inputs = np.full((4, 10), 0.5)
    with dg.get_backend(name) as backend:
        calibration = backend.calibrate(network, seed=0)
        ran = []
        original = type(backend)._execute_many
        monkeypatch.setattr(type(backend), "_execute_many", lambda self, requests: ran.append(len(requests)) or
                            original(self, requests))
        requests = [dg.ExecutionRequest(network, inputs, calibration, 0),
                    dg.ExecutionRequest(network, inputs + 40.0, calibration, 0)]
        with pytest.raises(dg.InvalidValueError, match=r"input 0 of sample 0 spikes at 40.5 tau, outside the sample "
                                                       r"slot \[0, 30\] tau"):
            backend.execute_many(requests)
        assert ran == []


def test_an_input_at_the_end_of_the_slot_is_inside_it():
    """(the slot is [0, slot_tau]: a strict comparison refused an input at 30 tau)"""
    assert inputs_outside_the_slot(np.array([[0.0, 30.0, np.inf]]), ChipConfig()) is None
    assert "spikes at 30.001 tau" in inputs_outside_the_slot(np.array([[0.0, 30.001]]), ChipConfig())


def test_a_request_without_a_seed_runs_with_seed_0(emulator):
    """(docs/bss2.md: a request without a seed runs with seed 0, not with another seed)"""
    backend, calibration = emulator()
    network = backend.represent(yin_yang_network())
    inputs = yin_yang_inputs(batch=16)
    unseeded = backend.execute(network, inputs, calibration=calibration).layer_spike_times
    for seed, same in ((0, True), (1, False)):
        seeded = backend.execute(network, inputs, calibration=calibration, seed=seed).layer_spike_times
        assert all(np.array_equal(a, b) for a, b in zip(unseeded, seeded)) is same


def _program(name, n_pre, groups, registers):
    """A layer program of one neuron with `n_pre` lines in delay `groups`, one element per register."""
    empty = np.zeros((n_pre, 1), np.uint8)
    return LayerProgram(name, np.array([0]), empty, empty, np.ones(1), np.ones(1), np.ones(1), np.asarray(groups),
                        np.arange(len(registers)), np.asarray(registers))


def test_the_slot_named_for_a_lost_delayed_spike_adds_six_jitter_deviations():
    """(the advice named the slot that held this run's spike, too short for the next run's jitter)"""
    config = ChipConfig()  # jitter 0.01 tau
    job = Job(0, 0, (_program("hidden", 1, [0], [250]),), {}, np.array([[170.0]]), 180.0)
    recording = Recording([np.array([[np.inf]])], [np.array([[np.inf]])], latest_lost_delay_spike_us=200.0)
    # 200 us = 33.333 tau, + 6 x 0.01 tau = 33.393 tau, rounded up to the hundredth
    assert "set the backend option slot_tau to at least 33.4," in lost_arrivals(job, recording, config)


def test_unequal_copies_name_the_differing_copy_and_the_first_copy_of_its_group():
    """(docs/bss2.md: copies with different times share one element, which fires at the earliest
    copy's time; the warning compares the differing copy with its group's first line)"""
    groups = np.repeat(np.arange(2), 3)  # (input_duplication=3: lines 0-2 and 3-5)
    times = np.array([[1.0, 1.0, 1.0, 2.0, 2.0, 2.0], [1.0, 1.0, 1.0, 2.0, 2.0, 2.5]])
    said = unequal_copies(times, groups)
    assert said.startswith("inputs 3-5 share one delay element as copies of one input (backend option "
                           "input_duplication=3), but in sample 1 input 5 spikes at 2.5 tau and input 3 at 2.0")
    assert unequal_copies(times[:1], groups) is None  # (equal copies)
    assert unequal_copies(times, np.arange(6)) is None and unequal_copies(times, None) is None  # (no copies)


def test_a_copy_after_its_element_fired_is_named_with_the_time_of_its_own_element_and_its_own_spike():
    """(docs/bss2.md: a copy that spikes only after the element fired cannot be delivered; the
    refusal names when that copy's element fired and when that copy spiked, in tau)"""
    program = _program("hidden", 4, [0, 0, 1, 1], [0, 0])
    job = Job(0, 0, (program,), {}, np.array([[6.0, 6.0, 12.0, 30.0]]), 180.0)  # (us: 1, 1, 2 and 5 tau)
    recording = Recording([np.array([[np.inf]])], [np.array([[18.0, 24.0]])])  # (the elements fire at 3 and 4 tau)
    assert ("inputs 2-3 share one delay element as copies of one input (backend option input_duplication=2); in "
            "sample 0 it fired at 4.0 tau, before input 3 spiked at 5.0 tau, which the chip cannot deliver"
            in copies_before_their_spikes(job, recording, ChipConfig()))


def test_lost_delayed_spikes_are_counted_over_every_layer_and_the_first_one_is_named():
    """(docs/bss2.md: a job whose delayed spikes fire after the slot is refused; the advice counts
    every lost spike, of every layer and element, and names the first: one line without its group range)"""
    hidden, output = _program("hidden", 2, [0, 1], [250, 250]), _program("output", 1, [0], [250])
    job = Job(0, 0, (hidden, output), {}, np.array([[170.0, 175.0]]), 180.0)
    recording = Recording([np.array([[172.0]]), np.array([[np.inf]])],  # (a hidden spike at 172 us triggers too)
                          [np.array([[np.inf, np.inf]]), np.array([[np.inf]])], latest_lost_delay_spike_us=200.0)
    said = lost_arrivals(job, recording, ChipConfig())
    assert said.startswith("3 delayed spike(s) of this job arrive after the sample slot of 30 tau and would be lost "
                           "(in layer 0 (hidden), sample 0, the spike of input line 0 due at 33.88 tau); ")
