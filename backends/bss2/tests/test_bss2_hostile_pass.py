"""Inputs found in a hostile pass over the backend's options and training defaults: each ended in
a silently different setting or a message that did not name the option or its allowed values."""

import numpy as np
import pytest

import delgrad_core as dg
from delgrad_bss2 import ChipConfig
from delgrad_bss2._plugin import training_defaults
from delgrad_core.training import config_with_defaults

from _bss2_helpers import yin_yang_inputs, yin_yang_network


def _defaults(**options):
    config = config_with_defaults({"backend": "bss2-emulator", "backend_options": options}).resolved()
    return config.encoder_options, config.shared_input_delays, config.threshold


def test_training_defaults_take_numpy_numbers_as_the_backend_does():
    """(numpy's numbers, which the backend and the config take, kept the defaults: a chip set to
    threshold np.float32(2.0) trained the network at 2.6, and np.int64(2) copies repeated the
    inputs 5x)"""
    assert _defaults(input_duplication=np.int64(2), threshold=np.float32(2.0)) == ({"repeat": 2}, 2, 2.0)
    assert _defaults(input_duplication=np.int64(2), threshold=np.float32(2.0)) == _defaults(input_duplication=2,
                                                                                            threshold=2.0)
    kept = training_defaults({"input_duplication": np.True_, "threshold": np.float64("nan")})  # (refused when built)
    assert (kept["encoder_options"], kept["shared_input_delays"], kept["threshold"]) == ({"repeat": 5}, 5, 2.6)


# (an odd synapse_rows: "a neuron has at most synapse_rows // 2 inputs", ChipConfig's docstring)
@pytest.mark.parametrize(("options", "largest"), [({}, 128), ({"synapse_rows": 512}, 256),
                                                   ({"synapse_rows": 257}, 128)])
def test_more_copies_of_an_input_than_a_neuron_takes_are_refused_naming_the_range(options, largest):
    """(input_duplication=200 was taken, and training failed on the encoder's repeat or the input
    count, naming neither the option nor its range; evaluation ran it as no copies)"""
    assert dg.get_backend("bss2-emulator", input_duplication=largest, **options).capabilities.input_copies == largest
    for value in (0, largest + 1, 10**30):
        with pytest.raises(dg.InvalidValueError, match=rf"^input_duplication: expected an integer from 1 to "
                                                       rf"{largest}, got"):
            dg.get_backend("bss2-emulator", input_duplication=value, **options)
    assert _defaults(input_duplication=largest + 1, **options)[:2] == ({"repeat": 5}, 5)  # (refused when built)


def test_an_unknown_option_is_an_unknown_option_error_naming_it():
    """(docs/backends.md: `UnknownOptionError`, options a backend does not take, in `.names`)"""
    with pytest.raises(dg.UnknownOptionError, match="unknown option") as raised:
        dg.get_backend("bss2-emulator", leak=80.0, chip=1)
    assert list(raised.value.names) == ["leak"]


def test_an_unknown_option_is_told_the_options_there_are():
    """The project's messages name the allowed values: here every option of docs/bss2.md's table."""
    with pytest.raises(dg.UnknownOptionError) as raised:
        dg.get_backend("bss2-emulator", leak=80.0)
    named, listed = str(raised.value).split("; allowed: ")
    assert named == "backend 'bss2-emulator': unknown option(s) leak (did you mean leak_cadc?)"
    documented = ("neuron_circuits synapse_rows weight_max weight_scale tau_us threshold leak_cadc threshold_cadc "
                  "timestamp_us slot_tau host_overhead_job_s host_overhead_sample_us register_min register_max "
                  "register_step_us delay_offset_us fixed_pattern threshold_offset threshold_spread leak_spread "
                  "tau_m_spread_rel tau_s_spread_rel gain_spread_rel delay_offset_spread_us readout_offset_cadc "
                  "defect_probability comparator_offset comparator_spread threshold_noise delay_jitter_tau "
                  "quantise_times").split()
    assert sorted(listed.split(", ")) == sorted(["chip", "calibrated", "cache", "input_duplication", "n_threads",
                                                 *documented])


def test_a_misspelt_option_is_told_the_closest_one_as_the_other_backends_do():
    with pytest.raises(dg.UnknownOptionError, match=r"^backend 'bss2-emulator': unknown option\(s\) chipp \(did you "
                                                    r"mean chip\?\); allowed: chip, calibrated, "):
        dg.get_backend("bss2-emulator", chipp=1)


def test_the_chip_identity_is_an_integer_from_0_to_2_63_minus_1():
    """(docs/bss2.md's option table: "an integer from 0 to 2^63 - 1")"""
    assert dg.get_backend("bss2-emulator", chip=2**63 - 1, cache=False).chip == 2**63 - 1
    for value in (-1, 2**63):
        with pytest.raises(dg.InvalidValueError, match=r"^chip: expected an integer from 0 to "):
            dg.get_backend("bss2-emulator", chip=value)


@pytest.mark.parametrize(("options", "message"), [
    ({"leak_cadc": -1}, r"leak_cadc: expected 9..195 CADC, got -1"),
    ({"threshold_cadc": -1}, r"threshold_cadc: must lie at least 9 CADC above leak_cadc \(80;"),
    ({"leak_cadc": float("nan")}, r"leak_cadc: expected a finite number, got nan"),
    ({"defect_probability": -0.5}, r"defect_probability: expected a number from 0 to 1, got -0.5"),
    ({"defect_probability": 2}, r"defect_probability: expected a number from 0 to 1, got 2"),
])
def test_an_option_out_of_range_is_refused_with_its_whole_range(options, message):
    """(leak_cadc=-1 was told 'expected a finite number >= 0', and 0 then 'expected 9..195';
    defect_probability=-0.5 '>= 0' and 2 'must be <= 1')"""
    with pytest.raises(dg.InvalidValueError, match=f"^{message}"):
        ChipConfig(**options)


def test_two_chips_never_draw_the_same_trial_noise():
    """(chip 2**32 with seed 5 drew the threshold noise and delay jitter of chip 0 with seed
    5 * 2**32 + 1: the random numbers' entropy ran the chip's and the seed's 32-bit words together)"""
    network, inputs = yin_yang_network(), yin_yang_inputs(batch=20)
    times = {}
    for chip, seed in ((2**32, 5), (0, 5 * 2**32 + 1)):  # (no fixed pattern: the chips differ in their noise only)
        with dg.get_backend("bss2-emulator", chip=chip, fixed_pattern=False, calibrated=False) as backend:
            times[chip] = backend.execute(backend.represent(network), inputs, calibration=backend.calibrate(),
                                          seed=seed).layer_spike_times[-1]
    assert np.isfinite(times[0]).any() and not np.array_equal(times[2**32], times[0], equal_nan=True)
