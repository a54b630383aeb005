"""One training step: encode -> represent -> execute -> loss -> exact gradients at the observed
times on the network that ran -> update of the float shadow parameters (docs/training.md)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from delgrad_core._errors import InvalidResultError
from delgrad_core._execution import ExecutionResult
from delgrad_core._losses import accuracy
from delgrad_core._propagation import backward
from delgrad_core.training._evaluation import results_in_jobs
from delgrad_core.training._heuristics import SilentNeuronBump, SilentNeuronRevival
from delgrad_core.training._optim import Adam
from delgrad_core.training._parameters import TrainableNetwork

__all__ = ["StepResult", "TrainingStep"]


def _joined(results: list[ExecutionResult], backend_name: str) -> ExecutionResult:
    """One result of the jobs of a batch, their samples in order."""
    n_layers = len(results[0].layer_spike_times)
    arrivals = [result.arrival_times or [None] * n_layers for result in results]
    joined_arrivals = []
    for index, layer in enumerate(zip(*arrivals)):
        reported = [times is not None for times in layer]
        if any(reported) and not all(reported):
            raise InvalidResultError(f"backend {backend_name!r}: arrival times of layer {index} came with some jobs of "
                                     "a batch and not with others")
        joined_arrivals.append(np.concatenate(layer) if all(reported) else None)
    return ExecutionResult([np.concatenate(layer) for layer in zip(*(r.layer_spike_times for r in results))], {},
                           None if all(result.arrival_times is None for result in results) else joined_arrivals)


@dataclass(frozen=True)
class StepResult:
    """What one step reports: the batch's mean loss and accuracy, whether the gradient step was
    skipped (silent neurons), and the (sample, neuron) entries without gradient."""

    loss: float
    accuracy: float
    skipped: bool
    no_crossing: int
    guarded: int


@dataclass
class TrainingStep:
    """The parts one step needs; calling it trains on one batch."""

    model: TrainableNetwork
    backend: object
    calibration: object
    encoder: Callable
    loss: Callable
    optimiser: Adam
    guard: Callable | None
    bump: SilentNeuronBump
    revival: SilentNeuronRevival
    next_seed: Callable[[], int]
    gradient_slope: str  # (backward's: "observed" exact, or "nominal")

    def run(self, input_spike_times: np.ndarray):
        """Execute the shadow network as the backend represents it, in jobs of at most the
        backend's `max_batch_size` samples (each with its own seed): (network that ran, result
        of the whole batch)."""
        ran = self.backend.represent_checked(self.model.network).frozen_copy()  # one snapshot that every job shares
        per_job = self.backend.capabilities.max_batch_size or max(len(input_spike_times), 1)
        results = results_in_jobs(self.backend, ran, input_spike_times, self.calibration, self.next_seed, per_job)
        return ran, results[0] if len(results) == 1 else _joined(results, self.backend.name)

    def __call__(self, features: np.ndarray, labels: np.ndarray, lr_factor: float) -> StepResult:
        inputs = self.encoder(features)
        ran, result = self.run(inputs)
        times = result.layer_spike_times
        loss = self.loss(times[-1], labels)
        mean_loss, batch_accuracy = float(loss.per_sample.mean()), accuracy(times[-1], labels)
        self.revival.apply(times, self.model.params)
        if self.bump.skip_step(times, self.model.params):
            self.model.apply()
            return StepResult(mean_loss, batch_accuracy, True, 0, 0)
        # the grazing guard compares |dL/dt_j dt_j/dw_ij| of the batch-mean loss, as autograd's
        # incoming gradient in the DelGrad reference code does (docs/model.md §4)
        gradients = backward(ran, inputs, times, loss.gradient, arrival_times=result.arrival_times, guard=self.guard,
                             input_gradient=False, gradient_slope=self.gradient_slope)
        self.optimiser.step(self.model.params, self.model.parameter_gradients(gradients), lr_factor)
        self.model.constrain()
        self.model.apply()
        return StepResult(mean_loss, batch_accuracy, False, sum(layer.no_crossing for layer in gradients.layers),
                          sum(layer.guarded for layer in gradients.layers))
