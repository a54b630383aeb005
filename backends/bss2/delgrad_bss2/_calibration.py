"""Calibration: per-circuit DAC settings found by measuring and binary search.

Like calix on BrainScaleS-2 (Billaudelle et al. 2022), each parameter of every circuit is
searched over its 10-bit setting: measure, compare with the target, halve the interval (all
circuits in parallel).  The better of the last two settings is kept and measured once more; a
circuit whose final measurement misses the target by more than the tolerance failed (its target
lies outside its reachable range) and is recorded.  Order: leak, threshold, membrane time
constant, synaptic time constant, synaptic gain, then the delay offset of every delay element.
The calibration's `values["summary"]` reports the measured spread before and after.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable

import numpy as np

from delgrad_core import Calibration, calibration_key

from delgrad_bss2._chip import DAC_MAX, DELAY_PARAMETER, EMULATOR_VERSION, NEURON_PARAMETERS, AnalogParameter, Chip
from delgrad_bss2._config import ChipConfig
from delgrad_bss2._measure import Experiments

__all__ = ["BACKEND_NAME", "CALIBRATION_NEUTRAL_OPTIONS", "SUMMARY_COLUMNS", "TOLERANCE", "cache_key", "calibrate_chip",
           "calibration_problem", "default_calibration", "target_problem", "usable"]

BACKEND_NAME = "bss2-emulator"
_MEASUREMENT_STREAM = 0xCA
SEARCH_STEPS = math.ceil(math.log2(DAC_MAX + 1))
# A circuit passes if its final measurement lies this close to the target (absolute in the
# unit for potentials and the delay offset, relative for time constants and gain).
TOLERANCE = {"leak": 1.5, "threshold": 1.5, "tau_m": 0.05, "tau_s": 0.05, "gain": 0.05, "delay_offset": 0.05}
# the noisy measurements (threshold: trial-to-trial noise; delay offset: jitter) repeat until
# their standard error is at most this fraction of the tolerance
_ERROR_MARGIN = 5
_MEASUREMENTS_PER_PARAMETER = 1 + SEARCH_STEPS + 2 + 1  # uncalibrated, search, last two, final
_PARAMETERS = (*NEURON_PARAMETERS, DELAY_PARAMETER)
# options that neither the chip's fixed pattern nor any measurement reads (synapses, weights, the
# sample slot, the longest register, the modelled host time): left out of the cache key, so that
# changing them reuses the calibration; any other option (and any new one) is part of the key
CALIBRATION_NEUTRAL_OPTIONS = frozenset({"synapse_rows", "weight_max", "weight_scale", "slot_tau", "register_max",
                                         "host_overhead_job_s", "host_overhead_sample_us", "comparator_offset",
                                         "comparator_spread"})


def _targets(config: ChipConfig) -> dict:
    """The calibration target of every parameter, by name."""
    return {p.name: p.target(config) for p in _PARAMETERS}


def cache_key(chip: int, config: ChipConfig, calibrated: bool) -> str:
    """What a calibration depends on: chip identity, emulator version, targets and every option
    but the `CALIBRATION_NEUTRAL_OPTIONS`."""
    targets = _targets(config)
    options = {name: value for name, value in config.to_dict().items() if name not in CALIBRATION_NEUTRAL_OPTIONS}
    return calibration_key(BACKEND_NAME, chip=chip, emulator_version=EMULATOR_VERSION, calibrated=calibrated,
                           targets=targets, options=options)


def _error(parameter: AnalogParameter, measured: np.ndarray, target: float) -> np.ndarray:
    if parameter.transfer == "linear":
        return np.abs(measured - target)
    with np.errstate(invalid="ignore"):
        return np.abs(measured / target - 1.0)


def _binary_search(measure: Callable[[np.ndarray], np.ndarray], target: float, increasing: bool, n: int,
                   step: Callable[[], None]) -> np.ndarray:
    """The setting in 0..DAC_MAX whose measurement is closest to `target`, per circuit, for a
    measurement that grows (`increasing`) or falls with the setting."""
    low, high = np.zeros(n, dtype=np.int64), np.full(n, DAC_MAX, dtype=np.int64)
    for _ in range(SEARCH_STEPS):
        middle = (low + high) // 2
        value = measure(middle)
        larger = value < target if increasing else value > target  # the target needs a larger setting
        low, high = np.where(larger, middle, low), np.where(larger, high, middle)
        step()
    at_low, at_high = measure(low), measure(high)
    step()
    step()
    return np.where(np.abs(at_high - target) < np.abs(at_low - target), high, low)


def _measurement(experiments: Experiments, name: str, settings: dict) -> Callable[[np.ndarray], np.ndarray]:
    """A function setting `name` to the given DAC values (the others as in `settings`) and
    measuring it."""
    if name == DELAY_PARAMETER.name:
        return experiments.delay_offset
    method = {"leak": experiments.leak, "threshold": experiments.threshold, "tau_m": experiments.membrane_tau,
              "tau_s": lambda s: experiments.synaptic_input(s)[0],
              "gain": lambda s: experiments.synaptic_input(s)[1]}[name]
    return lambda dac: method({**settings, name: dac})


SUMMARY_COLUMNS = ["parameter", "unit", "target", "uncalibrated_mean", "uncalibrated_std", "calibrated_mean",
                   "calibrated_std", "ratio", "failed"]


def _statistic(function, values: np.ndarray) -> float | None:
    """`function` of `values` (the circuits that passed), or None when there are none or the
    measurements are not finite (extreme chip options): the summary stays valid JSON."""
    if values.size == 0:
        return None
    with np.errstate(all="ignore"):
        result = float(function(values))
    return result if np.isfinite(result) else None


def _row(parameter: AnalogParameter, target: float, before: np.ndarray, after: np.ndarray | None,
         success: np.ndarray) -> list:
    """Summary of one parameter (`SUMMARY_COLUMNS`): measured mean and std before and after,
    over the circuits that passed (None where no circuit passed)."""
    before_std = _statistic(np.std, before[success])
    row = [parameter.name, parameter.unit, target, _statistic(np.mean, before[success]), before_std]
    if after is None:
        return row + [None] * 4
    after_std = _statistic(np.std, after[success])
    ratio = after_std / before_std if after_std is not None and before_std else None
    return row + [_statistic(np.mean, after[success]), after_std, ratio, int(np.count_nonzero(~success))]


def _calibration(chip: Chip, calibrated: bool, settings: dict, success: dict, rows: list) -> Calibration:
    config = chip.config
    circuits_ok = np.logical_and.reduce([success[p.name] for p in NEURON_PARAMETERS])
    values = {
        "chip": chip.identity,
        "emulator_version": EMULATOR_VERSION,
        "calibrated": calibrated,
        "targets": _targets(config),
        "summary": {"columns": SUMMARY_COLUMNS, "rows": rows},
        "failed_circuits": np.flatnonzero(~circuits_ok).tolist(),
        "failed_delay_elements": np.flatnonzero(~success[DELAY_PARAMETER.name]).tolist(),
    }
    arrays = {f"dac.{name}": dac.astype(np.int16) for name, dac in settings.items()}
    arrays.update({f"success.{name}": ok for name, ok in success.items()})
    return Calibration(BACKEND_NAME, values, cache_key(chip.identity, config, calibrated), arrays)


def _default_settings(config: ChipConfig) -> dict:
    settings = {p.name: np.full(config.neuron_circuits, p.default_dac, dtype=np.int64) for p in NEURON_PARAMETERS}
    settings[DELAY_PARAMETER.name] = np.full(config.delay_pairs, DELAY_PARAMETER.default_dac, dtype=np.int64)
    return settings


def _experiments(chip: Chip) -> Experiments:
    return Experiments(chip, np.random.default_rng(np.random.SeedSequence([chip.identity, _MEASUREMENT_STREAM])),
                       {name: TOLERANCE[name] / _ERROR_MARGIN for name in ("threshold", "delay_offset")})


def calibrate_chip(chip: Chip, progress: Callable[[int, int], None] | None = None) -> Calibration:
    """Calibrate every circuit and delay element of `chip` to the targets of its config.

    `progress(done, total)` is called after every measurement.
    """
    experiments = _experiments(chip)
    settings = _default_settings(chip.config)
    total = _MEASUREMENTS_PER_PARAMETER * len(_PARAMETERS)
    done = 0

    def step():
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    success, rows = {}, []
    for parameter in _PARAMETERS:
        target = parameter.target(chip.config)
        measure = _measurement(experiments, parameter.name, settings)
        before = measure(settings[parameter.name])
        step()
        increasing = parameter.transfer != "inverse"
        settings[parameter.name] = _binary_search(measure, target, increasing, before.size, step)
        after = measure(settings[parameter.name])
        step()
        success[parameter.name] = _error(parameter, after, target) <= TOLERANCE[parameter.name]
        rows.append(_row(parameter, target, before, after, success[parameter.name]))
    return _calibration(chip, True, settings, success, rows)


def default_calibration(chip: Chip) -> Calibration:
    """The uncalibrated chip: default settings everywhere (measured once for the summary;
    every circuit counts as usable)."""
    experiments = _experiments(chip)
    settings = _default_settings(chip.config)
    success = {name: np.ones(dac.size, dtype=bool) for name, dac in settings.items()}
    rows = [_row(p, p.target(chip.config), _measurement(experiments, p.name, settings)(settings[p.name]), None,
                 success[p.name]) for p in _PARAMETERS]
    return _calibration(chip, False, settings, success, rows)


def calibration_problem(calibration: Calibration, chip: int, config: ChipConfig, calibrated: bool) -> str | None:
    """What makes `calibration` unusable on chip `chip` of `config` (its key matched, but a file
    or a caller may have changed its contents), or None: whether it records the chip, emulator
    version, targets and calibration the key stands for, a summary table, every parameter's
    settings (integers in 0..DAC_MAX) and success flags (booleans), one per circuit or delay
    element."""
    arrays, values = calibration.arrays, calibration.values
    if calibration.backend != BACKEND_NAME:
        return f"backend: expected {BACKEND_NAME!r}, got {calibration.backend!r}"
    for name, expected in (("calibrated", calibrated), ("chip", chip), ("emulator_version", EMULATOR_VERSION),
                           ("targets", _targets(config))):
        got = values.get(name)
        if got != expected or isinstance(got, bool) != isinstance(expected, bool):  # (true is not 1)
            return f"values.{name}: expected {json.dumps(expected)}, got {json.dumps(got)}"
    summary = values.get("summary")
    if not (isinstance(summary, dict) and summary.get("columns") == SUMMARY_COLUMNS
            and isinstance(summary.get("rows"), list)
            and all(isinstance(row, list) and len(row) == len(SUMMARY_COLUMNS) for row in summary["rows"])):
        return f"values.summary: expected a table of the columns {', '.join(SUMMARY_COLUMNS)}"
    for parameter in _PARAMETERS:
        size = config.delay_pairs if parameter is DELAY_PARAMETER else config.neuron_circuits
        dac, success = arrays.get(f"dac.{parameter.name}"), arrays.get(f"success.{parameter.name}")
        for name, array, kind in ((f"dac.{parameter.name}", dac, "iu"), (f"success.{parameter.name}", success, "b")):
            if array is None or array.dtype.kind not in kind or array.shape != (size,):
                what = "integers" if kind == "iu" else "booleans"
                return f"{name}: expected {size} {what}, got " + ("nothing" if array is None else
                                                                  f"{array.dtype} of shape {array.shape}")
        if dac.size and not (dac.min() >= 0 and dac.max() <= DAC_MAX):
            return f"dac.{parameter.name}: settings must lie in 0..{DAC_MAX}, got {dac.min()}..{dac.max()}"
    circuits_ok, elements_ok = usable(calibration)
    for name, ok in (("failed_circuits", circuits_ok), ("failed_delay_elements", elements_ok)):
        if values.get(name) != np.flatnonzero(~ok).tolist():
            return f"values.{name}: expected the {np.count_nonzero(~ok)} that the success flags mark failed"
    return None


# the options that set each parameter's target or make it hard to reach
_OPTIONS_OF = {
    "leak": ("leak_cadc", "leak_spread", "readout_offset_cadc"),
    "threshold": ("threshold_cadc", "threshold_offset", "threshold_spread", "threshold_noise", "readout_offset_cadc"),
    "tau_m": ("tau_us", "tau_m_spread_rel"),
    "tau_s": ("tau_us", "tau_s_spread_rel"),
    "gain": ("gain_spread_rel",),
    "delay_offset": ("delay_offset_spread_us", "delay_jitter_tau", "timestamp_us", "register_step_us"),
}


def target_problem(calibration: Calibration) -> str | None:
    """None unless more than half of the neuron circuits or of the delay elements failed
    calibration (a few per cent fail on a chip at its defaults); then what failed and which
    options to check: the targets, not a few defects, are the likely cause."""
    return "; ".join(filter(None, (_circuits_problem(calibration), _delay_elements_problem(calibration)))) or None


def _circuits_problem(calibration: Calibration) -> str | None:
    arrays = calibration.arrays
    n_circuits = arrays[f"success.{NEURON_PARAMETERS[0].name}"].size
    if len(calibration.values["failed_circuits"]) <= n_circuits // 2:
        return None
    failed = {p.name: int(np.count_nonzero(~arrays[f"success.{p.name}"])) for p in NEURON_PARAMETERS}
    worst = [name for name, count in failed.items() if count > n_circuits // 2] or [max(failed, key=failed.get)]
    options = dict.fromkeys(option for name in worst for option in _OPTIONS_OF[name])
    return (f"{len(calibration.values['failed_circuits'])} of {n_circuits} neuron circuits failed calibration ("
            + ", ".join(f"{name} on {failed[name]}" for name in worst) + "): its targets lie outside what most "
            f"circuits reach; check the options {', '.join(options)} and defect_probability")


def _delay_elements_problem(calibration: Calibration) -> str | None:
    n_elements = calibration.arrays[f"success.{DELAY_PARAMETER.name}"].size
    failed = len(calibration.values["failed_delay_elements"])
    if failed <= n_elements // 2:
        return None
    return (f"{failed} of {n_elements} delay elements failed calibration: their timing lies outside what the "
            f"register can correct, or cannot be measured; check the options {', '.join(_OPTIONS_OF['delay_offset'])} "
            "and defect_probability")


def usable(calibration: Calibration) -> tuple[np.ndarray, np.ndarray]:
    """(circuits, delay elements) that passed calibration, as bool arrays."""
    arrays = calibration.arrays
    circuits = np.logical_and.reduce([arrays[f"success.{p.name}"] for p in NEURON_PARAMETERS])
    return circuits, arrays[f"success.{DELAY_PARAMETER.name}"]
