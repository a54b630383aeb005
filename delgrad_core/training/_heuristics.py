"""The training heuristics around the exact gradients, each a small object with its own state.

- `SilentNeuronBump`: DelGrad's rule (docs/model.md §5.5): when a layer's silent fraction is too
  high, skip the step and raise the input weights of its silent neurons, doubling while it repeats.
- `SilentNeuronRevival`: raise the input weights of single hidden neurons that stay silent.
- `BestValidation`: model selection, keeps the parameters of the best validation epoch.
- `ParameterAverage`: an exponential moving average of the parameters over the steps, the network
  that is validated, selected and kept.

(The learning-rate schedule is `delgrad_core.training.step_decay_factor`.)

State that must survive a checkpoint is exposed as `state()` (JSON) and `arrays()` (numpy), and
read back with `load(state, arrays)`.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from delgrad_core._errors import InvalidValueError

__all__ = ["SilentNeuronBump", "SilentNeuronRevival", "BestValidation", "ParameterAverage", "SilentNetworkError"]


class SilentNetworkError(InvalidValueError):
    """Neurons that stay silent however far the silent-neuron bump raises their input weights,
    until the next bump would overflow them (the step sizes are not to blame)."""


def _raised(weights: np.ndarray, amount: float, weight_limit: float | None) -> np.ndarray:
    """`weights` raised by `amount`, none beyond `weight_limit` (where the network's weights are
    clipped: a shadow weight above it runs as the limit, and would take the optimiser ever longer
    to bring back); a weight above the limit already stays as it is."""
    with np.errstate(over="ignore"):
        raised = weights + amount
    if weight_limit is None:
        return raised
    return np.where(weights < weight_limit, np.minimum(raised, weight_limit), weights)


@dataclass
class SilentNeuronBump:
    """Skip the step when a layer is too often silent; bump its silent neurons' input weights.

    `limits` has one silent-fraction limit per layer; `bump` None switches the rule off.
    `weight_limit`: the bump raises no weight beyond it (the config's or the backend's clip).
    `max_input_sums`: per layer and neuron, the largest summed |input weights| the network takes
    (`Layer.max_input_weight_sums`); a bump beyond it is refused as overflowing.
    """

    limits: list[float]
    bump: float | None
    level: float | None = None
    weight_limit: float | None = None
    max_input_sums: list[np.ndarray] | None = None

    def __post_init__(self):
        if self.level is None:
            self.level = self.bump

    def skip_step(self, layer_times: list[np.ndarray], params: dict[str, np.ndarray]) -> bool:
        """Apply the rule to one batch's spike times; True means: skip the gradient step."""
        if self.bump is None:
            return False
        raised = {}
        for k, (times, limit) in enumerate(zip(layer_times, self.limits)):
            silent = ~np.isfinite(times)
            if silent.mean() > limit:
                columns = silent.any(axis=0)
                raised[k] = columns, _raised(params[f"layers.{k}.weights"][:, columns], self.level, self.weight_limit)
        for k, (columns, weights) in raised.items():  # (all checked before any changes)
            if not (np.isfinite(weights).all() and self._sums_allowed(k, columns, weights)):
                self._refuse_overflow(k, "their input weights")
            if not math.isfinite(self.level * 2.0):
                self._refuse_overflow(k, "it")
        for k, (columns, weights) in raised.items():
            params[f"layers.{k}.weights"][:, columns] = weights
        self.level = self.level * 2.0 if raised else self.bump
        return bool(raised)

    def _sums_allowed(self, layer: int, columns: np.ndarray, weights: np.ndarray) -> bool:
        if self.max_input_sums is None:
            return True
        return bool((np.abs(weights).sum(axis=0) <= self.max_input_sums[layer][columns]).all())

    def _refuse_overflow(self, layer: int, what: str) -> None:
        """Refuse a bump that has doubled until `what` (it, or the weights it raises) would
        overflow: the neurons stay silent however far their input weights rise (inf weights failed
        the checkpoint, weights beyond the spike-time solver's range the network)."""
        skipped = round(math.log2(self.level) - math.log2(self.bump))
        held = "" if self.weight_limit is None else \
            f" (up to the weight limit {self.weight_limit!r}, where the network's weights are clipped)"
        raise SilentNetworkError(
            f"silent_bump: {skipped} steps in a row were skipped for silent neurons, the bump doubling each time to "
            f"{self.level:.3g}, and the next one overflows {what}: the silent neurons of neuron layer {layer} stay "
            f"silent however far the bump raises their input weights{held}, held down by weight_limit or the "
            "backend's weight limits, or by inputs or a threshold out of reach; check those settings, or turn the "
            "rule off with silent_bump = None")

    def state(self) -> dict:
        return {"bump_level": self.level}

    def load(self, state: dict) -> None:
        """Take the checkpoint's level; it must be the bump doubled a whole number of times
        (ValueError otherwise)."""
        level = state["bump_level"]
        if self.bump is not None and not (level >= self.bump and math.frexp(level / self.bump)[0] == 0.5):
            raise ValueError(f"bump_level {level!r} is not silent_bump {self.bump!r} doubled a whole number of times")
        self.level = level


@dataclass(frozen=True)
class SilentNeuronRevival:
    """Raise by `bump` the input weights of hidden neurons silent in more than `limit` of a
    batch's samples, without skipping the step (revives what the layer-wide rule misses: one
    dead neuron of five is below 0.3 of the layer).  `limit` or `bump` None: off."""

    limit: float | None
    bump: float | None
    weight_limit: float | None = None  # (as `SilentNeuronBump`'s)

    def apply(self, layer_times: list[np.ndarray], params: dict[str, np.ndarray]) -> None:
        if self.limit is None or self.bump is None:
            return
        for k, times in enumerate(layer_times[:-1]):
            silent_fraction = (~np.isfinite(times)).mean(axis=0)
            weights, columns = params[f"layers.{k}.weights"], silent_fraction > self.limit
            weights[:, columns] = _raised(weights[:, columns], self.bump, self.weight_limit)


@dataclass
class BestValidation:
    """Keep the parameters of the epoch with the best validation accuracy (if `enabled`)."""

    enabled: bool
    epoch: int = 0
    accuracy: float = -1.0
    params: dict = field(default_factory=dict)

    def after_epoch(self, epoch: int, validation_accuracy: float, params: dict[str, np.ndarray]) -> None:
        if self.enabled and validation_accuracy > self.accuracy:
            self.epoch, self.accuracy = epoch, validation_accuracy
            self.params = {name: value.copy() for name, value in params.items()}

    def selected_epoch(self, last_epoch: int) -> int:
        return self.epoch if self.enabled else last_epoch

    def restore(self, last_epoch: int, params: dict[str, np.ndarray]) -> bool:
        """Write the kept parameters back; False if the last epoch is the one kept."""
        if not self.enabled or not self.params or self.epoch == last_epoch:
            return False
        for name, value in self.params.items():
            params[name][...] = value
        return True

    def state(self) -> dict:
        return {"best_epoch": self.epoch, "best_validation_accuracy": self.accuracy}

    def arrays(self) -> dict[str, np.ndarray]:
        return {f"best.{name}": value for name, value in self.params.items()}

    def load(self, state: dict, arrays: dict[str, np.ndarray]) -> None:
        self.epoch, self.accuracy = state["best_epoch"], state["best_validation_accuracy"]
        self.params = {name[5:]: value for name, value in arrays.items() if name.startswith("best.")}


@dataclass
class ParameterAverage:
    """Exponential moving average of the parameters over training steps (Polyak-Ruppert
    averaging with exponential weights): after every step ``average <- decay average +
    (1 - decay) params``, starting from the parameters after the first step.  `decay` None: off
    (then `current` is the parameters themselves)."""

    decay: float | None
    params: dict = field(default_factory=dict)

    def update(self, params: dict[str, np.ndarray]) -> None:
        if self.decay is None:
            return
        if not self.params:
            self.params = {name: value.copy() for name, value in params.items()}
            return
        for name, value in params.items():
            average = self.params[name]
            average *= self.decay
            average += (1.0 - self.decay) * value

    def current(self, params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The parameters to evaluate: the average once there is one, else `params`."""
        return self.params if self.decay is not None and self.params else params

    @contextmanager
    def swapped_in(self, model):
        """Within the block `model` (a TrainableNetwork) holds the averaged parameters; its own
        come back afterwards, bit for bit."""
        if self.current(model.params) is model.params:
            yield
            return
        own = {name: value.copy() for name, value in model.params.items()}
        _assign(model, self.params)
        try:
            yield
        finally:
            _assign(model, own)

    def write_into(self, model) -> None:
        """Replace `model`'s parameters with the average (no-op when off or empty)."""
        if self.current(model.params) is not model.params:
            _assign(model, self.params)

    def arrays(self) -> dict[str, np.ndarray]:
        return {f"average.{name}": value for name, value in self.params.items()}

    def load(self, arrays: dict[str, np.ndarray]) -> None:
        self.params = {name[8:]: value for name, value in arrays.items() if name.startswith("average.")}


def _assign(model, values: dict[str, np.ndarray]) -> None:
    """Copy `values` into `model`'s parameters (in place) and rebuild its network from them."""
    for name, value in values.items():
        model.params[name][...] = value
    model.apply()
