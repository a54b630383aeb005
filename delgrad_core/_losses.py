"""Losses on output first-spike times and the first-spike readout (docs/model.md §5).

Every loss is a callable ``loss(output_times, labels) -> LossResult``:

- ``output_times``: shape (B, K), spike times of the K output neurons in units of tau_s,
  ``+inf`` for a neuron that stayed silent;
- ``labels``: shape (B,), integer classes in ``range(K)``;
- ``LossResult.per_sample``: shape (B,), the loss of each sample;
- ``LossResult.gradient``: shape (B, K), the derivative of the **batch mean**
  ``per_sample.mean()`` with respect to each output time, i.e. the per-sample derivative
  divided by B. This is what `delgrad_core.backward` expects as ``output_gradient`` when the
  parameter gradients are to be those of the mean loss.

A sample whose label neuron stayed silent has no spike time to differentiate: its loss is a
constant (documented per loss) and its gradient row is zero.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from delgrad_core._errors import InvalidValueError
from delgrad_core._ir import equal_values, real_array
from delgrad_core._numbers import checked_number

__all__ = [
    "LossResult",
    "FirstSpikeLoss",
    "ShiftInvariantSquaredError",
    "TTFSCrossEntropy",
    "available_losses",
    "make_loss",
    "first_spike_prediction",
    "accuracy",
]


@dataclass(frozen=True, eq=False)
class LossResult:
    """Per-sample loss (B,) and the gradient (B, K) of the batch-mean loss w.r.t. output times
    (equal by value)."""

    per_sample: np.ndarray
    gradient: np.ndarray

    __hash__ = None
    __eq__ = equal_values

    @property
    def mean(self) -> float:
        """The batch-mean loss, whose gradient is `gradient`."""
        if not self.per_sample.size:
            raise InvalidValueError("per_sample: the mean loss of an empty batch is undefined")
        return float(self.per_sample.mean())


def _output_times(output_times) -> np.ndarray:
    """Validate output spike times: 2-d float64, finite or +inf."""
    times = real_array(output_times, "output_times")
    if times.ndim != 2 or times.shape[1] == 0:
        raise InvalidValueError(f"output_times: expected shape (batch, n_outputs) with n_outputs >= 1, "
                                f"got {times.shape}")
    if np.any(np.isnan(times) | (times == -np.inf)):
        raise InvalidValueError("output_times: contains NaN or -inf (allowed: finite times, "
                                "or +inf for silent neurons)")
    return times


def _labels(labels, batch: int, n_outputs: int) -> np.ndarray:
    """Validate labels: shape (batch,), integers in [0, n_outputs)."""
    array = np.asarray(labels)
    if array.shape != (batch,):
        raise InvalidValueError(f"labels: expected shape ({batch},), got {array.shape}")
    if batch and not np.issubdtype(array.dtype, np.integer):
        raise InvalidValueError(f"labels: expected integers, got dtype {array.dtype}")
    array = array.astype(np.int64)
    if batch and (array.min() < 0 or array.max() >= n_outputs):
        raise InvalidValueError(f"labels: values must be in [0, {n_outputs - 1}]")
    return array


def _check_parameter(owner: str, name: str, value, positive: bool) -> float:
    """A finite float > 0 (positive) or >= 0, else an error naming the field."""
    return checked_number(value, f"{owner}.{name}", 0, low_open=positive)


class FirstSpikeLoss(ABC):
    """Base class: validation and missing-label handling around a per-sample loss.

    Subclasses implement `_evaluate` for samples whose label neuron spiked and
    `missing_label_loss`, the constant loss of a sample whose label neuron stayed silent.
    """

    name: ClassVar[str]

    @abstractmethod
    def _evaluate(self, times: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-sample loss (b,) and per-sample gradient (b, K); every label time is finite."""

    @abstractmethod
    def missing_label_loss(self, n_outputs: int) -> float:
        """Constant loss of a sample whose label neuron did not spike."""

    def __call__(self, output_times, labels) -> LossResult:
        times = _output_times(output_times)
        batch, n_outputs = times.shape
        labels = _labels(labels, batch, n_outputs)
        gradient = np.zeros((batch, n_outputs))
        spiked = np.isfinite(times[np.arange(batch), labels])
        with np.errstate(over="ignore", invalid="ignore"):  # (reported below, naming the loss)
            per_sample = np.full(batch, self.missing_label_loss(n_outputs))
            if np.any(spiked):
                per_sample[spiked], gradient[spiked] = self._evaluate(times[spiked], labels[spiked])
        finite = np.isfinite(per_sample) & np.isfinite(gradient).all(axis=1)
        if not finite.all():
            spikes = times[np.isfinite(times)]
            latest = f" (spike times up to {spikes.max():.3g} tau_s)" if spikes.size else ""
            raise InvalidValueError(f"loss {self!r}: not finite for {np.count_nonzero(~finite)} of {batch} "
                                    f"samples{latest}; those times or a parameter of the loss are out of its useful "
                                    "range")
        if batch:
            gradient /= batch
        return LossResult(per_sample, gradient)


@dataclass(frozen=True)
class ShiftInvariantSquaredError(FirstSpikeLoss):
    """Shift-invariant squared error (DelGrad 2025; docs/model.md §5).

    ``L = 1/2 sum_k ((t_k - t_y) - delta (1 - [k = y]))^2``: every wrong neuron is pulled to
    spike `delta` (units of tau_s) after the label neuron; adding a constant to all times leaves
    L unchanged. A silent wrong neuron (t_k = +inf) is late enough: its term is 0, its gradient 0.
    A silent label neuron gives the constant ``1/2 (K - 1) delta^2``, the loss of an output in
    which all neurons spike together.
    """

    name: ClassVar[str] = "squared"
    delta: float = 0.2

    def __post_init__(self) -> None:
        object.__setattr__(self, "delta", _check_parameter(type(self).__name__, "delta", self.delta, positive=False))

    def missing_label_loss(self, n_outputs: int) -> float:
        return 0.5 * (n_outputs - 1) * np.float64(self.delta) ** 2  # (inf, not OverflowError, for a huge delta)

    def _evaluate(self, times, labels):
        rows = np.arange(times.shape[0])
        label_times = times[rows, labels]
        residual = np.where(np.isfinite(times), times - label_times[:, None] - self.delta, 0.0)
        residual[rows, labels] = 0.0
        gradient = residual.copy()
        gradient[rows, labels] = -residual.sum(axis=1)
        return 0.5 * np.sum(residual**2, axis=1), gradient


@dataclass(frozen=True)
class TTFSCrossEntropy(FirstSpikeLoss):
    """Time-to-first-spike cross-entropy (Göltz et al. 2021, "Fast & Deep"; docs/model.md §5).

    ``L = log sum_k exp(-t_k / xi) + t_y / xi + alpha (exp(t_y / beta) - 1)``, i.e. the
    cross-entropy of ``softmax(-t / xi)`` plus a regulariser pushing the label spike earlier;
    xi and beta in units of tau_s. Evaluated with a shifted log-sum-exp; silent neurons add
    ``exp(-inf) = 0``. A silent label neuron gives the constant ``log K`` (chance-level
    cross-entropy, regulariser excluded).
    """

    name: ClassVar[str] = "crossentropy"
    xi: float = 0.2
    alpha: float = 0.005
    beta: float = 1.0

    def __post_init__(self) -> None:
        owner = type(self).__name__
        for field_name, positive in (("xi", True), ("alpha", False), ("beta", True)):
            value = _check_parameter(owner, field_name, getattr(self, field_name), positive)
            object.__setattr__(self, field_name, value)

    def missing_label_loss(self, n_outputs: int) -> float:
        return math.log(n_outputs)

    def _evaluate(self, times, labels):
        rows = np.arange(times.shape[0])
        label_times = times[rows, labels]
        logits = -times / self.xi  # silent neurons: -inf
        shift = logits.max(axis=1, keepdims=True)  # finite: the label neuron spiked
        weights = np.exp(logits - shift)
        total = weights.sum(axis=1)
        log_sum_exp = shift[:, 0] + np.log(total)
        regulariser = np.exp(label_times / self.beta)
        loss = log_sum_exp + label_times / self.xi + self.alpha * (regulariser - 1.0)
        gradient = -weights / total[:, None] / self.xi
        gradient[rows, labels] += 1.0 / self.xi + self.alpha / self.beta * regulariser
        return loss, gradient


def available_losses() -> tuple[str, ...]:
    """Names accepted by `make_loss` (the core's and those plugins register)."""
    from delgrad_core._plugins import registry

    return tuple(registry().names("loss"))


def make_loss(name: str, **params) -> FirstSpikeLoss:
    """Build the registered loss `name` (e.g. "squared", "crossentropy") with keyword `params`."""
    from delgrad_core._plugins import build_registered

    return build_registered("loss", name, params)


def first_spike_prediction(output_times) -> np.ndarray:
    """Predicted class per sample: the output neuron that spiked first (docs/model.md §5).

    A sample gets -1, no decision, when no output neuron spiked or when several spiked first at
    the same time (a tie, e.g. on a chip's timestamp grid: crediting the lowest index gave a
    network that decides nothing a third of a balanced three-class task).
    """
    times = _output_times(output_times)
    prediction = np.argmin(times, axis=1).astype(np.int64)
    first = np.min(times, axis=1, keepdims=True)
    prediction[np.isinf(first[:, 0]) | (np.sum(times == first, axis=1) > 1)] = -1
    return prediction


def accuracy(output_times, labels) -> float:
    """Fraction of samples whose first-spiking output neuron is the label (silent and tied count
    wrong: `first_spike_prediction`)."""
    times = _output_times(output_times)
    labels = _labels(labels, *times.shape)
    if not len(labels):
        raise InvalidValueError("output_times: accuracy of an empty batch is undefined")
    return float(np.mean(first_spike_prediction(times) == labels))
