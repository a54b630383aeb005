"""Run a network over a whole dataset split on a backend, in batches the backend accepts."""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from delgrad_core._errors import InvalidValueError
from delgrad_core._execution import MAX_SEED, ExecutionRequest

__all__ = ["output_spike_times", "results_in_jobs", "check_fits_dataset", "draw_seed", "EVALUATION_CHUNK"]

# Largest batch sent to a backend that declares no limit, and the most samples handed to one
# `execute_many` call (their full results, every layer's times, are held until it returns).
EVALUATION_CHUNK = 10_000

# Synapse-samples per job of an exact, noise-free backend when no job size is set.  A job's kernel
# call cannot be interrupted, so a large network runs in jobs of at most about a second
# (784-350-10: 241 samples, 0.2-0.7 s on the reference backend) and Ctrl-C is answered between
# them; a small one keeps a single job (4-30-3: every sample up to EVALUATION_CHUNK).  The
# reference backend's outputs are bit-identical in any split.  Other backends keep their jobs: a
# noisy one draws its noise per job, and an approximate one may depend on its job's other samples
# (the example backend's time grid starts at the job's first input).
_SYNAPSE_SAMPLES_PER_JOB = 2**26


def draw_seed(rng: np.random.Generator) -> int:
    """The seed of a job on a noisy backend, drawn from `rng` (a run's or an evaluation's
    generator), so that every job draws its own noise."""
    return int(rng.integers(MAX_SEED))


def check_fits_dataset(network, n_inputs: int, n_classes: int, what: str = "network") -> None:
    """Refuse a network whose input or output size does not fit the encoded dataset."""
    if network.input.size != n_inputs:
        raise InvalidValueError(f"{what}: has {network.input.size} inputs but the encoded dataset has {n_inputs}")
    n_outputs = network.layers[-1].population.size
    if n_outputs != n_classes:
        raise InvalidValueError(f"{what}: has {n_outputs} output neurons but the dataset has {n_classes} classes")


def results_in_jobs(backend, ran, input_spike_times: np.ndarray, calibration, next_seed: Callable[[], int | None],
                    per_job: int) -> list:
    """The results of running the snapshot `ran` on the samples in jobs of `per_job` samples,
    in order, from one `execute_many` call; `next_seed()` gives each job's seed."""
    requests = [ExecutionRequest(ran, input_spike_times[start:start + per_job], calibration, next_seed())
                for start in range(0, len(input_spike_times), per_job)]
    return backend.execute_many(requests)


def output_spike_times(backend, network, input_spike_times: np.ndarray, calibration,
                       next_seed: Callable[[], int | None], batch_size: int | None = None) -> np.ndarray:
    """Output spike times of every sample, running `network` (as the backend represents it) in
    jobs of `batch_size` samples (None: the backend's `max_batch_size`, else `EVALUATION_CHUNK`,
    on an exact, noise-free backend at most `_SYNAPSE_SAMPLES_PER_JOB` synapse-samples; never
    above either limit), handed to `execute_many` in groups; `next_seed()` gives each job's seed, so
    that on a noisy backend every job draws its own noise (called once on a seed-independent one)."""
    ran = network.frozen_copy()  # one snapshot that every job shares (represented once, by the backend)
    capabilities = backend.capabilities
    if capabilities.deterministic and capabilities.seed_independent:
        # (one draw, at the first job, for every job: the split changes no result here, so it must not
        # change how many seeds a run's generator gives, and with them the run's later batches)
        next_seed = functools.cache(next_seed)
    largest = capabilities.max_batch_size or EVALUATION_CHUNK
    if batch_size is None and capabilities.exact and capabilities.deterministic and capabilities.seed_independent:
        synapses = sum(layer.projection.n_pre * layer.projection.n_post for layer in network.layers)
        batch_size = max(1, _SYNAPSE_SAMPLES_PER_JOB // synapses)
    chunk = min(batch_size or largest, largest)
    per_call, outputs = max(1, EVALUATION_CHUNK // chunk) * chunk, []
    for start in range(0, len(input_spike_times), per_call):
        results = results_in_jobs(backend, ran, input_spike_times[start:start + per_call], calibration, next_seed,
                                  chunk)
        outputs.extend(result.output_spike_times for result in results)
    if not outputs:
        return np.empty((0, network.layers[-1].population.size))
    return np.concatenate(outputs)
