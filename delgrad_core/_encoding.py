"""Encoders turning features into input spike times (docs/model.md §5)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from delgrad_core._errors import InvalidValueError
from delgrad_core._ir import real_array
from delgrad_core._numbers import checked_number

__all__ = ["LatencyEncoder"]

# Copies of an input at most: BrainScaleS-2 uses 5; a thousand copies of Yin-Yang's 4 inputs
# already make 4,000 input lines, and 10^5 made one kernel call run for minutes.
MAX_REPEAT = 1000


@dataclass(frozen=True)
class LatencyEncoder:
    """Linear latency code: feature v in [0, 1] spikes at ``t_early + v (t_late - t_early)``.

    Times are in units of tau_s; the defaults 0.15 and 2.0 are the Yin-Yang reference settings
    (docs/model.md §5).  With `pairs`, every feature v also gives a second input coding 1 - v
    (so bright and dark pixels both spike early somewhere, as Yin-Yang's (x, y, 1-x, 1-y) do):
    inputs are (v_1..v_n, 1-v_1..1-v_n).  Each input then becomes `repeat` consecutive input
    neurons firing at the same time (hardware duplicates inputs to drive neurons harder:
    (a, b) with repeat 2 gives (a, a, b, b)).
    """

    t_early: float = 0.15
    t_late: float = 2.0
    repeat: int = 1
    pairs: bool = False

    def __post_init__(self) -> None:
        for field_name in ("t_early", "t_late"):
            value = checked_number(getattr(self, field_name), f"LatencyEncoder.{field_name}")
            object.__setattr__(self, field_name, value)
        checked_number(self.repeat, "LatencyEncoder.repeat", 1, MAX_REPEAT, integer=True)
        if not isinstance(self.pairs, (bool, np.bool_)):
            raise InvalidValueError(f"LatencyEncoder.pairs: expected true or false, got {self.pairs!r}")
        object.__setattr__(self, "pairs", bool(self.pairs))
        if not self.t_late > self.t_early:
            raise InvalidValueError(
                f"LatencyEncoder.t_late: must be greater than t_early={self.t_early}, got {self.t_late}"
            )
        if not math.isfinite(self.t_late - self.t_early):
            raise InvalidValueError(f"LatencyEncoder.t_late - t_early: must be a finite span, got {self.t_early!r} to "
                                    f"{self.t_late!r}")

    def n_inputs(self, n_features: int) -> int:
        """Input neurons for `n_features` features: `repeat` each, twice with `pairs`."""
        return checked_number(n_features, "n_features", 0, integer=True) * self.repeat * (2 if self.pairs else 1)

    def __call__(self, features) -> np.ndarray:
        """Spike times (float64, same shape as `features`) of features in [0, 1]."""
        values = real_array(features, "features")
        if values.ndim == 0:
            raise InvalidValueError("features: expected an array (n_samples, n_features), got a single number")
        bad = ~((values >= 0.0) & (values <= 1.0))  # also true for NaN
        if np.any(bad):
            index = tuple(int(i) for i in np.argwhere(bad)[0])
            raise InvalidValueError(
                f"features: values must lie in [0, 1] (no NaN); {int(bad.sum())} do not, "
                f"the first at index {index} is {float(values[index])!r}"
            )
        if self.pairs:
            values = np.concatenate([values, 1.0 - values], axis=-1)
        times = self.t_early + values * (self.t_late - self.t_early)
        return np.repeat(times, self.repeat, axis=-1) if self.repeat > 1 else times
