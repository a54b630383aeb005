"""The grazing guard: a training decision on top of the exact gradients.

Near a grazing threshold crossing (u'(t) -> 0) the exact gradient dt/dw = -k/u' diverges.  The
DelGrad reference code drops a sample's gradient through neuron j when any
|dL/dt_j dt_j/dw_ij| exceeds 0.2 (docs/model.md §4); the exact backward pass reports that
largest term per (sample, neuron) and this guard decides.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from delgrad_core._numbers import checked_number

__all__ = ["GrazingGuard"]


@dataclass(frozen=True)
class GrazingGuard:
    """Exclude (sample, neuron) entries whose largest weight term exceeds `max_weight_term`.

    Pass an instance as ``guard=`` to `delgrad_core.backward`.
    """

    max_weight_term: float = 0.2

    def __post_init__(self):
        object.__setattr__(self, "max_weight_term", checked_number(self.max_weight_term, "max_weight_term", 0,
                                                                   low_open=True))

    def __call__(self, layer_index: int, largest_weight_term: np.ndarray) -> np.ndarray:
        """True where the entry is excluded: its term above the bound, or not a number."""
        return ~(np.asarray(largest_weight_term, dtype=np.float64) <= self.max_weight_term)
