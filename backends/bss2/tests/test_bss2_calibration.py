"""Calibration: binary search against a direct scan, the decay fit against scipy, every
spread shrunk to the required ratio, failures recorded where targets are unreachable, an
uncalibrated chip visibly worse."""

import numpy as np
import pytest
from _bss2_helpers import yin_yang_inputs, yin_yang_network
from scipy.optimize import curve_fit

import delgrad_core as dg
from delgrad_bss2 import Chip, ChipConfig
from delgrad_bss2._calibration import _binary_search, calibrate_chip, default_calibration
from delgrad_bss2._chip import DAC_MAX, DELAY_PARAMETER, NEURON_PARAMETERS
from delgrad_bss2._measure import fit_exponential_decay

# Calibrated / uncalibrated standard deviation of the true values at most (gain and delay
# offset: our choice).
RATIOS = {"leak": 0.3, "threshold": 0.35, "tau_m": 0.45, "tau_s": 0.2, "gain": 0.3, "delay_offset": 0.3}


@pytest.mark.parametrize("increasing", [True, False])
def test_binary_search_finds_the_setting_a_full_scan_finds(increasing):
    rng = np.random.default_rng(0)
    slopes, offsets = rng.uniform(0.1, 2.0, 300), rng.uniform(-200, 1200, 300)

    def measure(dac):  # monotone, noise-free; many targets outside the range
        value = slopes * (dac - offsets)
        return value if increasing else -value

    steps = []
    found = _binary_search(measure, 0.0, increasing, 300, lambda: steps.append(1))
    scan = np.abs(measure(np.arange(DAC_MAX + 1)[:, None])).argmin(axis=0)  # every setting measured
    np.testing.assert_array_equal(np.abs(measure(found)), np.abs(measure(scan)))
    assert len(steps) == 12  # ten halvings of 0..1023, then the last two settings


def test_decay_fit_is_exact_without_noise_and_agrees_with_scipy_with_noise():
    times = 0.5 * np.arange(24)
    amplitude, tau = np.array([60.0, 30.0, 45.0]), np.array([6.0, 2.5, 11.0])
    clean = amplitude[:, None] * np.exp(-times[None, :] / tau[:, None])
    fitted_amplitude, fitted_tau = fit_exponential_decay(times, clean)
    np.testing.assert_allclose(fitted_tau, tau, rtol=1e-12)
    np.testing.assert_allclose(fitted_amplitude, amplitude, rtol=1e-12)
    noisy = clean + np.random.default_rng(1).normal(0.0, 0.2, clean.shape)
    _, fitted_tau = fit_exponential_decay(times, noisy)
    for k in range(3):
        used = noisy[k] > 4.0
        (_, tau_scipy), _ = curve_fit(lambda t, a, s: a * np.exp(-t / s), times[used], noisy[k, used],
                                      p0=(50.0, 5.0))
        assert fitted_tau[k] == pytest.approx(tau_scipy, rel=0.01)
    rising, below = np.linspace(20.0, 25.0, 24)[None, :], np.r_[3.0, np.zeros(23)][None, :]
    assert fit_exponential_decay(times, rising)[1][0] == np.inf
    assert fit_exponential_decay(times, below)[1][0] == 0.0


def _true_values(chip: Chip, calibration) -> dict:
    """(default, calibrated) true values of every parameter, over circuits that passed."""
    values = {}
    for parameter in (*NEURON_PARAMETERS, DELAY_PARAMETER):
        name = parameter.name
        dac = calibration.arrays[f"dac.{name}"]
        ok = calibration.arrays[f"success.{name}"]
        value = chip.delay_offset_us if parameter is DELAY_PARAMETER else \
            (lambda settings, name=name: chip.neuron_value(name, settings))
        values[name] = (value(np.full(dac.size, parameter.default_dac))[ok], value(dac)[ok])
    return values


@pytest.mark.parametrize("identity", [0, 1, 2])
def test_calibration_shrinks_every_spread_and_records_the_circuits_that_fail(identity):
    chip = Chip(identity, ChipConfig())
    calibration = calibrate_chip(chip)
    for name, (before, after) in _true_values(chip, calibration).items():
        ratio = after.std() / before.std()
        assert ratio <= RATIOS[name], (name, ratio)
        target = calibration.values["targets"][name]
        assert abs(after.mean() - target) < 0.2 * before.std(), name
    failed = set()
    for parameter in (*NEURON_PARAMETERS, DELAY_PARAMETER):
        success = calibration.arrays[f"success.{parameter.name}"]
        np.testing.assert_array_equal(success, chip.reachable(parameter.name))  # fails exactly where unreachable
        if parameter is not DELAY_PARAMETER:
            failed |= set(np.flatnonzero(~success).tolist())
    assert 1 <= len(failed) <= 20 and calibration.values["failed_circuits"] == sorted(failed)
    columns = calibration.values["summary"]["columns"]
    rows = {row[0]: dict(zip(columns, row)) for row in calibration.values["summary"]["rows"]}
    assert rows["threshold"]["ratio"] < RATIOS["threshold"] and rows["tau_s"]["failed"] >= 0


def test_calibration_reports_progress_to_the_end():
    reports = []
    calibrate_chip(Chip(0, ChipConfig()), lambda done, total: reports.append((done, total)))
    done, total = zip(*reports)
    assert list(done) == list(range(1, len(reports) + 1)) and set(total) == {len(reports)}


def test_uncalibrated_spreads_are_the_configured_ones():
    config = ChipConfig()
    chip = Chip(5, config)
    default = default_calibration(chip)
    assert default.values["calibrated"] is False and default.values["failed_circuits"] == []
    defaults = {p.name: np.full(512, p.default_dac) for p in NEURON_PARAMETERS}
    threshold = (chip.neuron_value("threshold", defaults["threshold"]) - 150.0) / config.cadc_per_unit
    leak = (chip.neuron_value("leak", defaults["leak"]) - 80.0) / config.cadc_per_unit
    tau_m = np.log(chip.neuron_value("tau_m", defaults["tau_m"]) / 6.0)
    assert threshold.mean() == pytest.approx(0.13, abs=0.015) and threshold.std() == pytest.approx(0.08, rel=0.12)
    assert leak.std() == pytest.approx(0.075, rel=0.12) and tau_m.std() == pytest.approx(0.15, rel=0.12)


def test_the_declared_conformance_profile_is_the_documented_one():
    """docs/bss2.md, Conformance: calibrated, median spike-time error below 0.15 tau and silent/spiking
    agreement above 85 %; uncalibrated, no agreement claimed and arrivals checked to 0.08 tau."""
    profile = dg.get_backend("bss2-emulator").conformance_profile()
    assert (profile.max_median_error, profile.min_silence_agreement, profile.unsupported) == (0.15, 0.85, {})
    uncalibrated = dg.get_backend("bss2-emulator", calibrated=False).conformance_profile()
    assert uncalibrated.max_median_error == 0.08 and set(uncalibrated.unsupported) == {"agreement"}


def test_an_uncalibrated_chip_is_visibly_worse(emulator):
    errors = {}
    for calibrated in (True, False):
        backend, calibration = emulator(calibrated=calibrated)
        network = backend.represent(yin_yang_network())
        inputs = yin_yang_inputs(batch=200)
        result = backend.execute(network, inputs, calibration=calibration, seed=0)
        errors[calibrated] = dg.testing.compare_spike_times(dg.forward(network, inputs), result.layer_spike_times)
    assert errors[True].median_abs_error < 0.03 and errors[True].silence_agreement > 0.97
    assert errors[False].median_abs_error > 2 * errors[True].median_abs_error
    assert errors[False].silence_agreement < errors[True].silence_agreement


def test_a_calibration_for_another_chip_or_option_set_is_refused(emulator):
    backend, _ = emulator()
    _, other_chip = emulator(chip=1)
    _, uncalibrated = emulator(calibrated=False)
    network = backend.represent(yin_yang_network())
    for calibration in (other_chip, uncalibrated):
        with pytest.raises(dg.CalibrationError, match="made for another chip, option set or emulator version"):
            backend.execute(network, yin_yang_inputs(), calibration=calibration)
    with pytest.raises(dg.CalibrationError, match="needs one"):
        backend.execute(network, yin_yang_inputs())


def test_a_calibration_cannot_be_changed_in_place_and_a_replaced_one_is_checked(emulator):
    """(calibration.arrays was a plain dict: a changed dac.threshold kept the old digest and ran
    other spike times)"""
    import dataclasses

    backend, calibration = emulator(calibrated=False)
    network = backend.represent(yin_yang_network())
    inputs = yin_yang_inputs(batch=5)
    before = backend.execute(network, inputs, calibration=calibration, seed=0).layer_spike_times
    with pytest.raises(dg.InvalidValueError, match="Calibration.arrays: a Calibration is read-only"):
        calibration.arrays["dac.threshold"] = calibration.arrays["dac.threshold"] + 20
    with pytest.raises(dg.InvalidValueError, match="Calibration.values: a Calibration is read-only"):
        calibration.values["failed_circuits"].append(0)
    after = backend.execute(network, inputs, calibration=calibration, seed=0).layer_spike_times
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    forged = dataclasses.replace(calibration, arrays={**calibration.arrays,
                                                      "dac.threshold": calibration.arrays["dac.threshold"] + 5000})
    assert forged.digest != calibration.digest
    with pytest.raises(dg.CalibrationError, match="dac.threshold: settings must lie in 0..1023"):
        backend.execute(network, inputs, calibration=forged)


def test_numpy_bools_are_taken_as_bools_and_ints_are_not():
    """(np.False_ was refused: "calibrated: expected true or false, got np.False_")"""
    backend = dg.get_backend("bss2-emulator", calibrated=np.False_, cache=np.True_)
    assert backend.calibrated is False and backend.cache is True
    assert ChipConfig(quantise_times=np.False_).quantise_times is False
    for value in (0, 1):
        with pytest.raises(dg.InvalidValueError, match="calibrated: expected true or false"):
            dg.get_backend("bss2-emulator", calibrated=value)
        with pytest.raises(dg.InvalidValueError, match="quantise_times: expected true or false"):
            ChipConfig(quantise_times=value)


def test_networks_avoid_the_circuits_that_failed(emulator):
    backend, calibration = emulator(chip=1)
    failed = calibration.values["failed_circuits"]
    assert failed and min(failed) < 33  # chip 1 has a failing circuit among the first ones
    network = backend.represent(yin_yang_network())
    result = backend.execute(network, yin_yang_inputs(), calibration=calibration, seed=0)
    placement = backend._placement(network, calibration)
    used = np.concatenate(placement.neuron_circuits)
    assert not set(used.tolist()) & set(failed) and result.metadata["neuron_circuits"] == 33


def test_a_calibration_that_marks_other_circuits_failed_is_placed_anew_on_the_same_backend(emulator):
    """A calibration of the same key whose flags mark circuit 0 failed (edited consistently, as
    by a user who knows the circuit bad) runs as on a fresh backend, also after the backend ran
    the original calibration (whose placement used circuit 0)."""
    import dataclasses
    backend, calibration = emulator()
    network, inputs = backend.represent(yin_yang_network()), yin_yang_inputs(batch=16)
    backend.execute(network, inputs, calibration=calibration, seed=0)
    assert 0 not in calibration.values["failed_circuits"]
    success = calibration.arrays["success.leak"].copy()
    success[0] = False
    edited = dataclasses.replace(calibration, arrays={**calibration.arrays, "success.leak": success},
                                 values={**calibration.values,
                                         "failed_circuits": sorted({0, *calibration.values["failed_circuits"]})})
    again = backend.execute(network, inputs, calibration=edited, seed=0).layer_spike_times
    fresh = dg.get_backend("bss2-emulator").execute(network, inputs, calibration=edited, seed=0).layer_spike_times
    for got, expected in zip(again, fresh):
        np.testing.assert_array_equal(got, expected)


def test_a_chip_where_every_circuit_fails_gives_a_calibration_that_refuses_networks():
    # (the summary's means over no circuit were NaN, which ended the calibration with a JSON error)
    backend = dg.get_backend("bss2-emulator", defect_probability=1.0, cache=False)
    with pytest.warns(UserWarning, match="512 of 512 neuron circuits failed calibration"):
        calibration = backend.calibrate()
    rows = {row[0]: row for row in calibration.values["summary"]["rows"]}
    assert rows["leak"][3:8] == [None] * 5 and rows["leak"][8] == 512 and rows["delay_offset"][8] == 256
    assert len(calibration.values["failed_circuits"]) == 512
    with pytest.raises(dg.UnsupportedNetworkError, match="512 circuits and 256 delay elements failed calibration"):
        backend.execute(yin_yang_network(), yin_yang_inputs(), calibration=calibration)


def test_noisier_measurements_are_repeated_until_only_the_unreachable_circuits_fail():
    # with 5x the threshold noise and 10x the delay jitter, a fixed number of trials failed
    # about a hundred healthy circuits and half of the delay elements
    def failures(**options):
        values = dg.get_backend("bss2-emulator", cache=False, **options).calibrate().values
        return values["failed_circuits"], values["failed_delay_elements"]

    quiet = failures(threshold_noise=0.0, delay_jitter_tau=0.0)
    assert quiet[0] and quiet[1]  # chip 0 has defects
    assert failures(threshold_noise=0.2, delay_jitter_tau=0.1) == quiet


def test_targets_out_of_reach_are_refused_or_named(tmp_path, monkeypatch):
    """(a threshold target above the readout's range, or a tau most circuits cannot reach,
    calibrated 'successfully' with every circuit failed, and training then said only that no
    circuit was usable)"""
    monkeypatch.setenv("DELGRAD_BSS2_CACHE", str(tmp_path))
    with pytest.raises(dg.InvalidValueError, match="threshold_cadc: the potential readout measures 0..255 CADC"):
        dg.get_backend("bss2-emulator", threshold_cadc=300)
    backend = dg.get_backend("bss2-emulator", tau_us=600.0, delay_jitter_tau=0.002)  # (0.01 tau: 6 us of jitter)
    problem = (r"\d+ of 512 neuron circuits failed calibration \(tau_m on \d+, tau_s on \d+\): its targets lie "
               r"outside what most circuits reach; check the options tau_us, tau_m_spread_rel, tau_s_spread_rel and "
               r"defect_probability")
    with pytest.warns(UserWarning, match="chip 0: " + problem):
        calibration = backend.calibrate()
    network = dg.Network.feedforward([4, 60, 3], neuron=dg.NeuronParameters(2.6, 1.0, 1.0), seed=0)
    with pytest.raises(dg.UnsupportedNetworkError, match="delay elements failed calibration; " + problem):
        backend.execute(network, np.full((1, 4), 0.5), calibration=calibration)
    spread = dg.get_backend("bss2-emulator", timestamp_us=50.0)  # (no warning; the refusal named no option)
    with pytest.warns(UserWarning, match=r"chip 0: 25\d of 256 delay elements failed calibration: .* check the options "
                                         r"delay_offset_spread_us, delay_jitter_tau, timestamp_us, register_step_us"):
        spread.calibrate()
    offset = dg.get_backend("bss2-emulator", threshold_offset=100.0)  # (the advice named other options)
    with pytest.warns(UserWarning, match=r"\(threshold on 512\): .* check the options threshold_cadc, "
                                         r"threshold_offset, threshold_spread, threshold_noise, readout_offset_cadc"):
        offset.calibrate()


def test_time_constants_no_measurement_can_resolve_fail_calibration_instead_of_crashing():
    # (tau_us = 1e300: the delay elements' jitter of 0.01 tau overflowed their timestamps to inf,
    # and sizing the number of trials from their spread raised OverflowError; tau_us is now at most
    # 1e6, such jitter is refused, and without it the chip calibrates)
    with pytest.raises(dg.InvalidValueError, match="tau_us: expected a number > 0 and <= 1,000,000, got 1e"):
        ChipConfig(tau_us=1e300)
    with pytest.raises(dg.InvalidValueError, match="delay_jitter_tau: at most 1.375e-06 tau at tau_us = 1e"):
        ChipConfig(tau_us=1e6)
    calibration = calibrate_chip(Chip(0, ChipConfig(tau_us=1e6, delay_jitter_tau=0.0)))
    assert len(calibration.values["failed_circuits"]) > 500  # (no time constant of 1e6 us is reached)


@pytest.mark.parametrize(("leak", "threshold"), [(9.0, 150.0), (195.0, 240.0)])
def test_the_extreme_leak_targets_still_calibrate_tau_m(leak, threshold):
    """At the ends of the leak_cadc range the tau_m experiment still reads its decay (at 0 or
    above 200 it did not: tau_m failed everywhere, or was set up to 40 % short unnoticed)."""
    chip = Chip(0, ChipConfig(leak_cadc=leak, threshold_cadc=threshold))
    calibration = calibrate_chip(chip)
    circuits_ok = np.ones(512, bool)
    circuits_ok[calibration.values["failed_circuits"]] = False
    tau_m = chip.neuron_value("tau_m", calibration.arrays["dac.tau_m"])[circuits_ok]
    assert abs(tau_m.mean() / 6.0 - 1) < 0.005 and tau_m.std() < 0.05
    np.testing.assert_array_equal(calibration.arrays["success.leak"], chip.reachable("leak"))


def _measured_in_chunks(monkeypatch, chip, run, chunk_samples: int):
    """(`run(experiments, settings)`'s values, the peak of traced memory in bytes) with
    `CHUNK_SAMPLES` set to `chunk_samples`, on fresh experiments of `chip`."""
    import tracemalloc

    from delgrad_bss2._calibration import _default_settings, _experiments

    monkeypatch.setattr("delgrad_bss2._measure.CHUNK_SAMPLES", chunk_samples)
    experiments, settings = _experiments(chip), _default_settings(chip.config)
    tracemalloc.start()
    try:
        values = run(experiments, settings)
        return values, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_repeated_reads_are_drawn_in_chunks_with_the_same_numbers(monkeypatch):
    """(65536 circuits took 0.7 GB: the 32 x 24 trace samples of every circuit were drawn at once)"""
    chip = Chip(0, ChipConfig(neuron_circuits=4096))

    def run(experiments, settings):
        return experiments.leak(settings), experiments.membrane_tau(settings), experiments.threshold(settings)

    at_once, at_once_bytes = _measured_in_chunks(monkeypatch, chip, run, 2**40)
    chunked, chunked_bytes = _measured_in_chunks(monkeypatch, chip, run, 2**16)
    for whole, parts in zip(at_once, chunked):
        np.testing.assert_array_equal(parts, whole)
    assert at_once_bytes > 30e6 and chunked_bytes < 6e6  # (32 x 24 x 4096 reads of 4 + 8 bytes at once)


def test_extra_trials_of_noisy_experiments_are_drawn_in_chunks_with_the_same_numbers(monkeypatch):
    """(with far more noise than the default, the extra trials were drawn at once: 8192 of every
    circuit, 0.85 GB for the threshold of 8192 circuits)"""

    # noise and jitter near their largest, on a wide potential range: 8192 trials of each experiment
    chip = Chip(1, ChipConfig(threshold_noise=0.43, delay_jitter_tau=0.2, leak_cadc=20.0, threshold_cadc=240.0))

    def run(experiments, settings):  # (the leak: the stream left where drawing at once left it)
        return (experiments.threshold(settings), experiments.delay_offset(settings["delay_offset"]),
                experiments.leak(settings))

    at_once, at_once_bytes = _measured_in_chunks(monkeypatch, chip, run, 2**40)
    chunked, chunked_bytes = _measured_in_chunks(monkeypatch, chip, run, 2**14)
    for whole, parts in zip(at_once, chunked):
        np.testing.assert_array_equal(parts, whole)
    assert at_once_bytes > 40e6 and chunked_bytes < 4e6  # (at once: 8192 trials of 512 circuits, 0.06 GB)


def test_the_potential_readout_saturates_at_0_and_255():
    """(reads outside the readout's 0..255 CADC came back as numbers no CADC can give)"""
    from delgrad_bss2._chip import Chip
    from delgrad_bss2._config import ChipConfig
    from delgrad_bss2._measure import Experiments
    chip = Chip(0, ChipConfig(neuron_circuits=4, readout_offset_cadc=0.0))
    reads = Experiments(chip, np.random.default_rng(0))._read(np.array([-50.0, 20.0, 100.0, 400.0]))
    assert reads[0] == 0 and reads[3] == 255 and np.all(reads == np.round(reads))


def test_the_decay_fit_weights_each_log_sample_by_its_squared_value():
    """(unweighted, or weighted by the value only, the fit follows the noisy small samples)"""
    from delgrad_bss2._measure import fit_exponential_decay
    times = np.array([0.0, 0.5, 1.0, 1.5, 2.0])
    trace = np.array([60.0, 45.0, 40.0, 20.0, 17.0])  # not an exponential: the weights matter
    slope, intercept = np.polyfit(times, np.log(trace), 1, w=trace)  # (polyfit's w weighs residuals: trace^2)
    amplitude, tau = fit_exponential_decay(times, trace[None, :])
    assert tau[0] == pytest.approx(-1 / slope, rel=1e-9) and amplitude[0] == pytest.approx(np.exp(intercept), rel=1e-9)


def test_a_decay_of_two_samples_above_the_floor_is_the_exponential_through_them():
    """Two samples determine the exponential: tau = (t2 - t1) / ln(y1 / y2), A = y1 exp(t1 / tau);
    with one sample above the floor there is no decay to fit (tau 0, the first sample)."""
    from delgrad_bss2._measure import FIT_FLOOR_CADC, fit_exponential_decay
    times = np.array([0.0, 0.5, 1.0, 1.5])
    traces = np.array([[40.0, 20.0, 3.0, 1.0], [30.0, 2.0, 1.0, 0.0]])
    assert FIT_FLOOR_CADC == 4.0  # (the samples 3, 2, 1 and 0 lie below it)
    amplitude, tau = fit_exponential_decay(times, traces)
    assert tau[0] == pytest.approx(0.5 / np.log(2.0), rel=1e-12) and amplitude[0] == pytest.approx(40.0, rel=1e-12)
    assert tau[1] == 0.0 and amplitude[1] == 30.0


def test_the_delay_offset_measurement_centres_the_clock_tick():
    """(timestamps mark the start of their 8 ns tick: without half a tick added back, every
    measured delay offset came out 4 ns short)"""
    from delgrad_bss2._chip import Chip
    from delgrad_bss2._config import ChipConfig
    from delgrad_bss2._measure import Experiments
    chip = Chip(0, ChipConfig(fixed_pattern=False))  # every element's offset is exactly 2 us
    measured = Experiments(chip, np.random.default_rng(0)).delay_offset(np.full(256, 500))
    # 64 trials x 256 elements of 0.06 us jitter: the mean's standard error is 0.0005 us
    assert measured.mean() == pytest.approx(2.0, abs=0.0015)


@pytest.mark.parametrize("part", ["circuits", "delay_elements"])
def test_failures_are_blamed_on_the_targets_only_when_more_than_half_fail(emulator, part):
    """(a comparison of "at least half" blamed the targets of a chip on which exactly half failed)"""
    import dataclasses

    from delgrad_bss2._calibration import target_problem
    _, calibration = emulator()
    name, size = ("success.leak", 512) if part == "circuits" else ("success.delay_offset", 256)

    def failing(count):  # the first `count` fail (only in `name`), every other one passes
        arrays = {key: np.ones_like(array) if key.startswith("success.") else array
                  for key, array in calibration.arrays.items()}
        arrays[name] = np.arange(size) >= count
        values = {**calibration.values, "failed_circuits": [], "failed_delay_elements": [],
                  f"failed_{part}": list(range(count))}
        return dataclasses.replace(calibration, values=values, arrays=arrays)

    assert target_problem(failing(size // 2)) is None
    assert "failed calibration" in target_problem(failing(size // 2 + 1))


def test_the_measurement_noise_of_a_calibration_belongs_to_the_chip_identity():
    """(noise drawn from a stream shared by all chips: chips that differ only in their identity
    measured identical numbers)"""
    summaries = [dg.get_backend("bss2-emulator", chip=chip, fixed_pattern=False, cache=False).calibrate()
                 .values["summary"]["rows"] for chip in (0, 1)]  # (no fixed pattern: the chips are equal)
    assert summaries[0] != summaries[1]
