"""Agreement of observed spike times with the ideal model.

Exact backends (`Capabilities.exact`) must match to a tolerance (times 1 + |t|) with identical
silent neurons.  Others are compared statistically over all (sample, neuron) entries of all
layers: silent/spiking must agree in more than a fraction of the entries, and the median
absolute spike-time error over entries spiking in both must stay below a bound (in tau_s).  The
defaults are those of `delgrad_core.ConformanceProfile`; a backend declares its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from delgrad_core._backend import ConformanceProfile

__all__ = ["Agreement", "compare_spike_times"]

_DEFAULT = ConformanceProfile()


@dataclass(frozen=True)
class Agreement:
    """Comparison of two lists of (batch, size) spike-time arrays (+inf = silent)."""

    silence_agreement: float  # fraction of entries silent in both or spiking in both
    median_abs_error: float  # over entries spiking in both; 0 if there are none
    max_abs_error: float
    max_scaled_error: float  # max |observed - expected| / (1 + |expected|)
    n_spiking_in_both: int

    def exact(self, tolerance: float = _DEFAULT.exact_tolerance) -> bool:
        """Identical silent sets and |observed - expected| <= tolerance (1 + |expected|)."""
        return self.silence_agreement == 1.0 and self.max_scaled_error <= tolerance

    def statistical(self, max_median_error: float = _DEFAULT.max_median_error,
                    min_silence: float = _DEFAULT.min_silence_agreement) -> bool:
        return self.silence_agreement > min_silence and self.median_abs_error < max_median_error


def compare_spike_times(expected: list, observed: list) -> Agreement:
    """Pool all layers and compare `observed` with `expected` spike times."""
    if len(expected) != len(observed):
        raise ValueError(f"observed: expected {len(expected)} layers, got {len(observed)}")
    ref, obs = [], []
    for k, (e, o) in enumerate(zip(expected, observed)):
        e, o = np.asarray(e, dtype=float), np.asarray(o, dtype=float)
        if e.shape != o.shape:
            raise ValueError(f"observed[{k}]: expected shape {e.shape}, got {o.shape}")
        ref.append(e.ravel())
        obs.append(o.ravel())
    ref, obs = np.concatenate(ref), np.concatenate(obs)
    spiking_ref, spiking_obs = np.isfinite(ref), np.isfinite(obs)
    both = spiking_ref & spiking_obs
    error = np.abs(ref[both] - obs[both])
    return Agreement(
        silence_agreement=float(np.mean(spiking_ref == spiking_obs)) if ref.size else 1.0,
        median_abs_error=float(np.median(error)) if error.size else 0.0,
        max_abs_error=float(error.max()) if error.size else 0.0,
        max_scaled_error=float(np.max(error / (1.0 + np.abs(ref[both])))) if error.size else 0.0,
        n_spiking_in_both=int(both.sum()),
    )
