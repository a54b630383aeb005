"""`hil-noisy`: a small noisy device for the mock-hil tests, built like an emulated chip.

Each neuron's threshold is off by a fixed-pattern offset drawn once per `chip`; calibration
measures the offsets (with measurement noise drawn from its seed) and stores corrections; every
run adds trial-to-trial threshold noise drawn from the request's seed.  So results are
deterministic per seed, depend on the seed, and need the calibration of the same chip.  Axonal
delays come back as observed arrival times.  `job_delay_s` makes every job slow (for tests of
waiting and shutdown); `print_bytes` prints that much to stdout at every job (a chatty plugin);
`crash_seed` makes the process running the device die at every job with that seed (a poison job).
"""

import os
import time
import warnings

import numpy as np

from delgrad_core import (Backend, Calibration, CalibrationError, Capabilities, ConformanceProfile, DelayKind,
                          ExecutionResult, Layer, Network, NeuronParameters, Population, calibration_key,
                          forward, hookimpl)

NAME = "hil-noisy"
MAX_NEURONS = 64
MAX_LAYERS = 4
CAPABILITIES = Capabilities(delay_kinds={"none", "axonal"}, tau_ratios=(1.0, 2.0), max_inputs=MAX_NEURONS,
                            max_layer_size=MAX_NEURONS, max_layers=MAX_LAYERS, weight_limit=4.0,
                            weight_resolution=1 / 64, delay_range=(0.0, 2.0), delay_resolution=1 / 32,
                            deterministic=True, seed_independent=False, needs_calibration=True, exact=False)
TRAINING_DEFAULTS = {"delays": "axonal", "hidden": 12, "silent_limit_hidden": 0.3}


class NoisyDevice(Backend):
    name = NAME

    def __init__(self, chip=0, job_delay_s=0.0, warning=None, warning_repeat=1, print_bytes=0, crash_seed=None):
        self.chip = int(chip)
        self.crash_seed = crash_seed
        self.job_delay_s = float(job_delay_s)
        self.print_bytes = int(print_bytes)
        self.warning = None if warning is None else warning * int(warning_repeat)  # (at every calibration and job)
        self.offsets = np.random.default_rng(self.chip).normal(0.05, 0.03, (MAX_LAYERS, MAX_NEURONS))

    @property
    def capabilities(self):
        return CAPABILITIES

    def conformance_profile(self):
        return ConformanceProfile(max_median_error=0.05, min_silence_agreement=0.95)

    def _calibrate(self, network, seed, progress):
        if self.warning:
            warnings.warn(self.warning, stacklevel=2)
        measured = self.offsets + np.random.default_rng([self.chip, seed or 0]).normal(0.0, 0.003, self.offsets.shape)
        return Calibration(self.name, {"chip": self.chip}, calibration_key(self.name, chip=self.chip),
                           {"threshold_correction": measured})

    def _execute(self, request):
        calibration = request.calibration
        if calibration.cache_key != calibration_key(self.name, chip=self.chip):
            raise CalibrationError(f"calibration: made for another chip than chip {self.chip}")
        if request.seed == self.crash_seed:
            os._exit(70)
        time.sleep(self.job_delay_s)
        if self.print_bytes:
            print("x" * (self.print_bytes - 1), flush=True)
        if self.warning:
            warnings.warn(self.warning, RuntimeWarning, stacklevel=2)
        correction = calibration.arrays["threshold_correction"]
        noise = np.random.default_rng(request.seed or 0).normal(0.0, 0.01, (MAX_LAYERS, MAX_NEURONS))
        layers = []
        for k, layer in enumerate(request.network.layers):
            threshold, tau_m, tau_s = layer.neuron_arrays()
            n = layer.population.size
            factor = 1.0 + self.offsets[k, :n] - correction[k, :n] + noise[k, :n]
            population = Population(layer.population.name, n, NeuronParameters(threshold * factor, tau_m, tau_s))
            layers.append(Layer(population, layer.projection))
        times = forward(Network(request.network.input, layers), request.input_spike_times)
        arrivals = []
        for layer, pre in zip(request.network.layers, [request.input_spike_times, *times[:-1]]):
            delayed = layer.projection.delay_kind is DelayKind.AXONAL
            arrivals.append(pre[:, :, None] + layer.projection.delay_matrix()[None] if delayed else None)
        return ExecutionResult(times, {"chip": self.chip}, arrivals)


@hookimpl
def delgrad_register_backends(register):
    register(NAME, NoisyDevice, description="noisy test device of the mock-hil tests", capabilities=CAPABILITIES,
             training_defaults=TRAINING_DEFAULTS)
