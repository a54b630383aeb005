"""Delay elements: the register mapping and its bounds, measured arrival times (jitter only where
a delay element exists, copies of an input sharing one element), calibrated offsets."""

import re
import warnings

import numpy as np
import pytest
from _bss2_helpers import ALL_OFF, yin_yang_inputs, yin_yang_network

import delgrad_core as dg
from delgrad_bss2 import ChipConfig
from delgrad_bss2._delays import delays_from_registers, group_triggers, registers_from_delays
from delgrad_core.testing import make_network


def test_register_mapping_is_register_over_eight_plus_two_microseconds():
    config = ChipConfig()
    registers = np.arange(50, 251)
    delays = delays_from_registers(registers, config)
    np.testing.assert_allclose(delays * 6.0, registers / 8 + 2, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(registers_from_delays(delays, config), registers)
    assert delays[0] == pytest.approx(8.25 / 6) and delays[-1] == pytest.approx(33.25 / 6)


@pytest.mark.parametrize("register", [49, 251])
def test_delays_outside_the_register_range_are_refused(register):
    config = ChipConfig()
    with pytest.raises(dg.InvalidValueError, match=f"needs register {register}, outside 50..250"):
        registers_from_delays(np.array([(register / 8 + 2) / 6]), config)


def test_register_bounds_and_step_are_options():
    config = ChipConfig(register_min=10, register_max=20, register_step_us=0.25, delay_offset_us=1.0)
    np.testing.assert_allclose(delays_from_registers(np.array([10, 20]), config) * 6, [3.5, 6.0])
    with pytest.raises(dg.InvalidValueError, match="delay_offset_us: must be a whole number of register steps"):
        ChipConfig(delay_offset_us=2.1)
    for value in (0, -1.0):  # (-1 said ">= 0", then 0 said "must be > 0")
        with pytest.raises(dg.InvalidValueError, match=f"tau_us: expected a number > 0 and <= 1,000,000, got {value}"):
            ChipConfig(tau_us=value)
    for options, message in [({"neuron_circuits": 2**64}, "neuron_circuits: expected at most 65536"),
                             ({"register_max": 2**40}, "register_max: expected at most 2147483647"),
                             ({"timestamp_us": 1e300}, "timestamp_us: must be shorter than the sample slot"),
                             ({"delay_jitter_tau": 1e300}, "delay_jitter_tau: must be shorter than the sample slot"),
                             ({"delay_offset_spread_us": 1e300},
                              "delay_offset_spread_us: must be shorter than the sample slot"),
                             ({"delay_offset_us": 1e300}, "delay_offset_us: 1e\\+300 us is 8e\\+300 register steps"),
                             ({"register_step_us": 1e-300}, r"delay_offset_us: 2.0 us is 2e\+300 register steps "
                                                            r"\(register_step_us 1e-300\); at most 2147483647")]:
        with pytest.raises(dg.InvalidValueError, match=message):  # (they failed later, deep inside)
            ChipConfig(**options)


def test_a_delay_offset_off_the_register_grid_by_a_small_fraction_of_a_step_is_refused():
    """delay_offset_us must be a whole number of register steps, so that delays lie on one grid:
    2.0001 us is 16.0008 steps of 0.125 us, far more than rounding error off 16."""
    with pytest.raises(dg.InvalidValueError, match=r"^delay_offset_us: must be a whole number of register steps "
                                                   r"\(0.125 us\) so that delays lie on one grid, got 2.0001$"):
        ChipConfig(delay_offset_us=2.0001)


def test_a_delay_offset_a_whole_number_of_steps_up_to_rounding_keeps_its_value():
    """delay = register x register_step_us + delay_offset_us (docs/bss2.md), also where
    delay_offset_us / register_step_us falls just short of the whole number (0.3 / 0.1)."""
    config = ChipConfig(register_step_us=0.1, delay_offset_us=0.3)
    registers = np.array([50, 51, 250])
    np.testing.assert_allclose(delays_from_registers(registers, config) * 6, [5.3, 5.4, 25.3], rtol=1e-12)
    np.testing.assert_array_equal(registers_from_delays(np.array([5.3, 5.4, 25.3]) / 6, config), registers)


def test_a_group_is_triggered_by_its_earliest_copy():
    pre = np.array([[3.0, 1.0, 2.0, np.inf, 5.0, 4.0], [np.inf, np.inf, np.inf, 7.0, 6.0, 8.0]])
    np.testing.assert_array_equal(group_triggers(pre, np.array([0, 0, 0, 1, 1, 1])), [[1.0, 4.0], [np.inf, 6.0]])
    np.testing.assert_array_equal(group_triggers(pre, np.arange(6)), pre)


def test_arrivals_are_the_delay_elements_spikes(emulator):
    """On an ideal chip the measured arrival is t_pre + d exactly, shared by the copies of an input."""
    backend, calibration = emulator(**ALL_OFF)
    network = backend.represent(yin_yang_network())
    inputs = yin_yang_inputs()
    result = backend.execute(network, inputs, calibration=calibration, seed=1)
    first, second = result.arrival_times
    assert first.shape == (64, 20) and second.shape == (64, 30)
    np.testing.assert_allclose(first, inputs + network.layers[0].projection.delays, rtol=0, atol=1e-12)
    hidden = result.layer_spike_times[0]
    np.testing.assert_allclose(second, hidden + network.layers[1].projection.delays, rtol=0, atol=1e-12)
    copies = np.copy(inputs)
    copies[:, 1] += 0.5  # a later copy: the element fires after the earliest one, as on the chip
    with pytest.warns(UserWarning, match=r"inputs 0-4 share one delay element as copies of one input \(backend "
                                         r"option input_duplication=5\), but in sample 0 input 1 spikes at .* "
                                         r"set input_duplication=1") as warned:
        again = backend.execute(network, copies, calibration=calibration, seed=1).arrival_times[0]
        backend.execute(network, copies, calibration=calibration, seed=2)  # (said once per backend)
    assert len(warned) == 1
    np.testing.assert_array_equal(again[:, :5], first[:, :5])


def test_a_silent_copy_receives_nothing_from_its_delay_element(emulator):
    """(the element's spike was reported arriving on a copy that sent none, and the result was
    refused as invalid)"""
    backend, calibration = emulator(**ALL_OFF)
    network = backend.represent(yin_yang_network())
    inputs = yin_yang_inputs()
    inputs[0, 1] = inputs[3, 5:10] = np.inf  # (one silent copy; all copies of an input silent)
    with warnings.catch_warnings():  # (that these copies differ: said once per backend, maybe before)
        warnings.simplefilter("ignore")
        result = backend.execute(network, inputs, calibration=calibration, seed=1)
    np.testing.assert_allclose(result.arrival_times[0], inputs + network.layers[0].projection.delays, rtol=0,
                               atol=1e-12)
    assert np.isinf(result.arrival_times[0][0, 1]) and np.isfinite(result.arrival_times[0][0, [0, 2, 3, 4]]).all()
    for chip, reference in zip(result.layer_spike_times, dg.forward(network, inputs)):
        np.testing.assert_allclose(chip, reference, rtol=0, atol=1e-9)


def test_a_copy_spiking_after_its_delay_element_fired_is_refused_naming_the_fix(emulator):
    """(the chip's arrival came before the copy's own spike, and the result was refused as
    invalid: "arrives ... before it was sent", with nothing about copies)"""
    backend, calibration = emulator(**ALL_OFF)
    network = backend.represent(yin_yang_network())
    inputs = yin_yang_inputs()
    inputs[2, :5] = [0.15, 0.15, 0.15, 0.15, 0.15 + network.layers[0].projection.delays[0] + 0.1]
    with warnings.catch_warnings():  # (that these copies differ: said once per backend, maybe before)
        warnings.simplefilter("ignore")
        with pytest.raises(dg.InvalidValueError, match=r"input_spike_times: inputs 0-4 share one delay element as "
                                                       r"copies of one input \(backend option input_duplication=5\); "
                                                       r"in sample 2 it fired at .* tau, before input 4 spiked at .* "
                                                       r"tau, which the chip cannot deliver\. Give copies equal times"):
            backend.execute(network, inputs, calibration=calibration, seed=1)


def test_delay_jitter_has_the_configured_spread_and_only_on_delayed_spikes(emulator):
    backend, calibration = emulator(**dict(ALL_OFF, delay_jitter_tau=0.01))
    network = backend.represent(yin_yang_network())
    inputs = yin_yang_inputs(batch=2000)
    result = backend.execute(network, inputs, calibration=calibration, seed=3)
    error = result.arrival_times[0] - (inputs + network.layers[0].projection.delays)
    assert np.all(error[:, :5] == error[:, :1])  # one element per input: one jitter
    per_spike = error[:, ::5]
    assert abs(per_spike.mean()) < 0.001 and 0.0095 < per_spike.std() < 0.0105
    no_delays = backend.represent(yin_yang_network(kind="none"))
    plain = backend.execute(no_delays, inputs, calibration=calibration, seed=3)
    assert plain.arrival_times is None
    reference = dg.forward(no_delays, inputs)
    np.testing.assert_allclose(plain.layer_spike_times[0], reference[0], rtol=0, atol=1e-9)


def test_calibration_removes_the_delay_offsets_of_the_elements(emulator):
    """Mean arrival error per delay element: the uncalibrated offsets spread by
    delay_offset_spread_us, the calibrated ones sit at the target."""
    spread = {}
    for calibrated in (False, True):
        options = dict(ALL_OFF, fixed_pattern=True, calibrated=calibrated, input_duplication=1)
        backend, calibration = emulator(**options)
        network = backend.represent(yin_yang_network(n_features=40, repeat=1, hidden=30))
        inputs = yin_yang_inputs(batch=200, n_features=40, repeat=1)
        arrivals = backend.execute(network, inputs, calibration=calibration, seed=0).arrival_times[0]
        spread[calibrated] = (arrivals - inputs - network.layers[0].projection.delays).mean(axis=0)
    assert 0.5 < spread[False].std() / (0.2 / 6) < 1.5
    assert np.abs(spread[True]).max() < 0.05 / 6


def test_the_slot_named_for_late_delayed_spikes_holds_them_on_an_uncalibrated_chip(emulator):
    """(the slot named was the nominal arrival's, short of an element whose analog offset is
    late, so the run with it was refused again, naming the same slot)"""
    options = dict(ALL_OFF, fixed_pattern=True, calibrated=False, input_duplication=1)
    backend, calibration = emulator(**options)
    network = backend.represent(make_network((100, 2), "axonal", 1.0, capabilities=backend.capabilities))
    network.layers[0].projection.delays[...] = 1.375  # (the shortest delay: nominal arrivals at 29.98 tau)
    inputs = np.full((1, 100), 30.0 - 1.375 - 0.02)
    with pytest.raises(dg.UnsupportedNetworkError, match=r"slot_tau to at least") as refused:
        backend.execute(network, inputs, calibration=calibration, seed=0)
    slot = float(re.search(r"slot_tau to at least ([\d.]+)", str(refused.value)).group(1))
    assert slot > 30.0
    longer, calibration = emulator(**dict(options, slot_tau=slot))
    arrivals = longer.execute(network, inputs, calibration=calibration, seed=0).arrival_times[0]
    assert np.isfinite(arrivals).all() and 30.0 < arrivals.max() <= slot


def test_a_job_whose_delayed_spikes_would_end_after_the_slot_is_refused_naming_the_slot_it_needs(emulator):
    """(they were lost silently: arrival_times of +inf for spikes that happened, which the
    conformance suite's arrival check failed with slot_tau=6)"""
    backend, calibration = emulator(**dict(ALL_OFF, slot_tau=4.0))
    network = backend.represent(yin_yang_network())
    inputs = yin_yang_inputs()
    with pytest.raises(dg.UnsupportedNetworkError, match=r"cannot fit the network's delayed spikes into the sample "
                                                         r"slot: \d+ delayed spike\(s\) of this job arrive after the "
                                                         r"sample slot of 4 tau .*in layer 0 \(hidden\), sample 0, the "
                                                         r"spike of input line 5-9 due at 4.545 tau") as refused:
        backend.execute(network, inputs, calibration=calibration, seed=0)
    assert refused.value.capability == "resources"
    refused, slots = refused.value, [4.0]
    while len(slots) < 5:  # (a longer slot lets later hidden spikes in, whose arrivals may need more)
        slots.append(float(re.search(r"slot_tau to at least ([\d.]+)", str(refused)).group(1)))
        longer, calibration = emulator(**dict(ALL_OFF, slot_tau=slots[-1]))
        try:
            result = longer.execute(network, inputs, calibration=calibration, seed=0)
            break
        except dg.UnsupportedNetworkError as error:
            refused = error
    assert slots == sorted(slots) and len(slots) < 5
    np.testing.assert_allclose(result.arrival_times[0], inputs + network.layers[0].projection.delays, atol=1e-12)
    hidden = result.layer_spike_times[0]
    np.testing.assert_array_equal(np.isfinite(result.arrival_times[1]), np.isfinite(hidden))


def test_a_delayed_spike_at_the_end_of_the_slot_is_inside_it(emulator):
    """(docs/bss2.md: spikes after the end of their slot are lost; the slot is [0, slot_tau], as for
    the inputs: an element firing at 180 us exactly, input 171.75 us + register 50 / 8 + 2 us, arrives)"""
    backend, calibration = emulator(**dict(ALL_OFF, input_duplication=1))
    network = backend.represent(dg.Network.feedforward([1, 1], delay_kind="axonal", delay_value=8.25 / 6,
                                                       neuron=dg.NeuronParameters(2.6, 1.0, 1.0), weight_mean=3.0,
                                                       weight_std=0.0))
    inputs = np.array([[1.0], [171.75 / 6]])  # (28.625 tau)
    arrivals = backend.execute(network, inputs, calibration=calibration, seed=0).arrival_times[0]
    np.testing.assert_allclose(arrivals[:, 0], [1.0 + 8.25 / 6, 30.0], rtol=0, atol=1e-12)
