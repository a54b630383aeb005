"""The `bss2-emulator` backend: a BrainScaleS-2 chip emulated with its job model, mapping,
imperfections, delay elements and calibration (docs/bss2.md)."""

from __future__ import annotations

import warnings

import numpy as np

from delgrad_core import (
    Backend,
    Calibration,
    CalibrationError,
    Capabilities,
    ConformanceProfile,
    ExecutionRequest,
    ExecutionResult,
    InvalidValueError,
    Network,
    UnsupportedNetworkError,
    check_num_threads,
)
from delgrad_core.plugin_tools import checked_number, refuse_unknown_options, share_copied_delays

from delgrad_bss2._cache import cache_path, load_cached, store
from delgrad_bss2._calibration import (
    BACKEND_NAME, cache_key, calibrate_chip, calibration_problem, default_calibration, target_problem, usable)
from delgrad_bss2._chip import Chip
from delgrad_bss2._config import INPUT_DUPLICATION, ChipConfig
from delgrad_bss2._emulator import run_job
from delgrad_bss2._job import (compile_job, copies_before_their_spikes, inputs_outside_the_slot, lost_arrivals, result,
                              unequal_copies)
from delgrad_bss2._mapping import Placement, chip_capabilities, place, resource_problem

__all__ = ["Bss2EmulatorBackend"]

_MAX_CHIP = 2**63 - 1  # (a chip identity travels as a 64-bit integer: in the device service's messages too)


def _check_bool(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidValueError(f"{name}: expected true or false, got {value!r}")
    return bool(value)


class Bss2EmulatorBackend(Backend):
    """An emulated BrainScaleS-2 chip.

    Parameters
    ----------
    chip : int
        Chip identity: draws the chip's fixed-pattern spread and defects (reproducible).
    calibrated : bool
        Calibrate the chip (default); False runs it at the default settings.
    cache : bool
        Keep calibrations in the on-disk cache (see `delgrad_bss2.cache_directory`).
    input_duplication : int
        Copies per input (at most ``synapse_rows // 2``): consecutive input lines in groups of
        this size share one delay element when the input count is a multiple of it.
    n_threads : int, optional
        Threads of the spike-time kernels.
    **options
        Any field of `ChipConfig` (chip numbers, imperfections and their switches).
    """

    name = BACKEND_NAME
    # (the host overheads change only the modelled time in a result's metadata, not its spikes)
    result_neutral_options = frozenset({"n_threads", "cache", "host_overhead_job_s", "host_overhead_sample_us"})

    def __init__(self, chip: int = 0, *, calibrated: bool = True, cache: bool = True,
                 input_duplication: int = INPUT_DUPLICATION, n_threads: int | None = None, **options):
        self.chip = checked_number(chip, "chip", 0, _MAX_CHIP, integer=True)
        self.calibrated = _check_bool(calibrated, "calibrated")
        self.cache = _check_bool(cache, "cache")
        self.n_threads = None if n_threads is None else check_num_threads(n_threads)
        refuse_unknown_options(f"backend {BACKEND_NAME!r}", options,
                               ["chip", "calibrated", "cache", "input_duplication", "n_threads",
                                *ChipConfig.__dataclass_fields__])
        self.config = ChipConfig(**options)
        # (more copies of one input than a neuron's synapse_rows / 2 signed inputs never fit)
        self.input_duplication = checked_number(input_duplication, "input_duplication", 1,
                                                self.config.max_signed_inputs, integer=True)
        self._capabilities = chip_capabilities(self.config, self.input_duplication)
        self._key = cache_key(self.chip, self.config, self.calibrated)
        self._chip_model: Chip | None = None
        self._placements: dict[tuple, Placement] = {}
        self._warned_copies = False
        self._warned_averaged = False
        self._checked_calibrations: set[str] = set()  # digests

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    def check_resources(self, network: Network) -> str | None:
        return resource_problem(network, self.config, self.input_duplication)

    def represent(self, network: Network) -> Network:
        """Weights clipped to +-weight_max / weight_scale and quantised to 1 / weight_scale;
        delays of duplicated inputs shared (their mean, with a warning once per backend when
        they differed), on the register grid and bounded."""
        shared = share_copied_delays(network, self.input_duplication)
        if shared is not network and not self._warned_averaged:
            self._warned_averaged = True  # (once per backend: a training run represents every step)
            warnings.warn(f"backend {BACKEND_NAME!r}: the {self.input_duplication} copies of an input have different "
                          "delays; one delay element serves them all, so the chip runs their mean (train with "
                          f"shared_input_delays = {self.input_duplication} to learn one delay per input)", UserWarning,
                          stacklevel=2)
        return super().represent(shared)

    def _device_identity(self, calibration: Calibration) -> dict:
        """The calibration's key and digest, and every option that changes spike times (the
        chip's numbers with their defaults but the host overheads, which change only the modelled
        time; input duplication; the chip and `calibrated` are in the key)."""
        options = {name: value for name, value in self.config.to_dict().items()
                   if name not in self.result_neutral_options}
        return {**super()._device_identity(calibration),
                "options": {**options, "input_duplication": self.input_duplication}}

    def conformance_profile(self) -> ConformanceProfile:
        """Calibrated, on the suite's cases (inputs in copies; chips 0-4 at seeds 0-2, chips 5-11
        at seed 0), the median spike-time error of every layer stays below 0.13 tau and
        silent/spiking agrees in at least 89 %: declared with margin.  (The comparator's offset,
        which calibration leaves, dominates: without it, 0.024 tau and 97.8 %.)  Uncalibrated,
        spike times carry the raw fixed-pattern spread (median error up to 0.44 tau on chips 0-4):
        no agreement is claimed; the arrivals carry the uncalibrated delay offsets (median distance from t + d up to
        0.043 tau), declared as 0.08."""
        if not self.calibrated:
            return ConformanceProfile(max_median_error=0.08, unsupported={
                "agreement": "uncalibrated chip: spike times carry the raw fixed-pattern spread "
                             "(median error up to ~0.44 tau, silent/spiking agreement down to ~68 %)"})
        return ConformanceProfile(max_median_error=0.15, min_silence_agreement=0.85)

    def _emulated_chip(self) -> Chip:
        if self._chip_model is None:
            self._chip_model = Chip(self.chip, self.config)
        return self._chip_model

    def _calibrate(self, network, seed, progress) -> Calibration:
        """The chip's calibration (every circuit; independent of `network` and `seed`): from the
        cache, else measured (or the default settings if not `calibrated`) and cached."""
        self.calibration_cache = None
        if self.cache:
            cached = load_cached(self._key)
            problem = None if cached is None else calibration_problem(cached, self.chip, self.config, self.calibrated)
            if problem:
                warnings.warn(f"ignoring the cached calibration {cache_path(self._key)}: {problem}; it is measured "
                              "again and replaced", stacklevel=3)
            elif cached is not None:
                self.calibration_cache = ("hit", str(cache_path(self._key)))
                return cached
        chip = self._emulated_chip()
        calibration = calibrate_chip(chip, progress) if self.calibrated else default_calibration(chip)
        problem = target_problem(calibration)
        if problem:
            warnings.warn(f"chip {self.chip}: {problem}", UserWarning, stacklevel=3)
        if self.cache:
            self.calibration_cache = store(calibration)
        return calibration

    def _placement(self, network: Network, calibration: Calibration) -> Placement:
        shape = (calibration.digest, tuple(network.sizes),
                 tuple(layer.projection.delay_kind for layer in network.layers))
        if shape not in self._placements:
            circuits, elements = usable(calibration)
            self._placements[shape] = place(network, self.input_duplication, circuits, elements,
                                            target_problem(calibration))
        return self._placements[shape]

    def check_request(self, request: ExecutionRequest) -> None:
        """Input spikes must lie in the sample slot."""
        problem = inputs_outside_the_slot(request.input_spike_times, self.config)
        if problem:
            raise InvalidValueError(problem)

    def _execute(self, request: ExecutionRequest) -> ExecutionResult:
        calibration = request.calibration
        if calibration.cache_key != self._key:
            raise CalibrationError(
                f"calibration: made for another chip, option set or emulator version (key {calibration.cache_key!r}, "
                f"this backend needs {self._key!r}); calibrate this backend")
        if calibration.digest not in self._checked_calibrations:
            problem = calibration_problem(calibration, self.chip, self.config, self.calibrated)
            if problem:
                raise CalibrationError(f"calibration: {problem} (its contents do not fit its key); calibrate this "
                                       "backend")
            self._checked_calibrations.add(calibration.digest)
        placement = self._placement(request.network, calibration)
        job = compile_job(request, self.config, self.chip, placement, calibration)
        if not self._warned_copies:
            problem = unequal_copies(request.input_spike_times, placement.delay_groups[0])
            if problem:
                self._warned_copies = True  # (once per backend: a training run would repeat it every step)
                warnings.warn(problem, UserWarning, stacklevel=2)
        recording = run_job(self._emulated_chip(), job, self.n_threads)
        problem = copies_before_their_spikes(job, recording, self.config)
        if problem:
            raise InvalidValueError(problem)
        problem = lost_arrivals(job, recording, self.config)
        if problem:
            raise UnsupportedNetworkError(f"backend {BACKEND_NAME!r} cannot fit the network's delayed spikes into the "
                                          f"sample slot: {problem}", capability="resources")
        return result(job, recording, self.config, {"calibrated": bool(calibration.values["calibrated"])})
