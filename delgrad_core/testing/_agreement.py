"""Agreement of observed spike times with the ideal model.

Exact backends (`Capabilities.exact`) must match to a tolerance (times 1 + |t|) with identical
silent neurons.  Others are compared statistically over the (sample, neuron) entries of a layer:
silent/spiking must agree in at least a fraction of the entries, and the median absolute
spike-time error over entries spiking in both must stay below a bound (in tau_s).  The
conformance suite judges every layer on its own (`compare_layers`), so a wrong output layer
cannot hide behind many correct hidden neurons; `compare_spike_times` pools all layers.  The
defaults are those of `delgrad_core.ConformanceProfile`; a backend declares its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from delgrad_core._backend import ConformanceProfile

__all__ = ["Agreement", "compare_layers", "compare_spike_times"]

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
        return self.exact_problem(tolerance) is None

    def statistical(self, max_median_error: float = _DEFAULT.max_median_error,
                    min_silence: float = _DEFAULT.min_silence_agreement) -> bool:
        return self.statistical_problem(max_median_error, min_silence) is None

    def exact_problem(self, tolerance: float = _DEFAULT.exact_tolerance) -> str | None:
        """What breaks exact agreement, measured vs allowed (None if nothing does)."""
        problems = []
        if self.silence_agreement != 1.0:
            problems.append(f"silent/spiking differs in {1.0 - self.silence_agreement:.1%} of the entries, allowed: "
                            f"none (exact backend)")
        if self.max_scaled_error > tolerance:
            problems.append(f"max |error| / (1 + |t_ref|) = {self.max_scaled_error:.3g}, allowed <= {tolerance:g} "
                            f"(exact_tolerance)")
        return "; ".join(problems) or None

    def statistical_problem(self, max_median_error: float = _DEFAULT.max_median_error,
                            min_silence: float = _DEFAULT.min_silence_agreement) -> str | None:
        """What breaks statistical agreement, measured vs allowed (None if nothing does)."""
        problems = []
        if not self.silence_agreement >= min_silence:  # (at least: 1 asks for the same silent sets)
            problems.append(f"silent/spiking agreement {self.silence_agreement:.3f}, needs >= {min_silence:g} "
                            f"(min_silence_agreement)")
        if not self.median_abs_error < max_median_error:
            problems.append(f"median |error| {self.median_abs_error:.3g} tau_s over {self.n_spiking_in_both} spikes, "
                            f"allowed < {max_median_error:g} (max_median_error)")
        return "; ".join(problems) or None


def _layer_pairs(expected: list, observed: list) -> list[tuple[np.ndarray, np.ndarray]]:
    """(expected, observed) float arrays of each layer, their count and shapes checked."""
    if len(expected) != len(observed):
        raise ValueError(f"observed: expected {len(expected)} layers, got {len(observed)}")
    pairs = []
    for k, (e, o) in enumerate(zip(expected, observed)):
        e, o = np.asarray(e, dtype=float), np.asarray(o, dtype=float)
        if e.shape != o.shape:
            raise ValueError(f"observed[{k}]: expected shape {e.shape}, got {o.shape}")
        pairs.append((e, o))
    return pairs


def _compare(ref: np.ndarray, obs: np.ndarray) -> Agreement:
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


def compare_spike_times(expected: list, observed: list) -> Agreement:
    """Pool all layers and compare `observed` with `expected` spike times."""
    pairs = _layer_pairs(expected, observed)
    return _compare(np.concatenate([e.ravel() for e, _ in pairs]), np.concatenate([o.ravel() for _, o in pairs]))


def compare_layers(expected: list, observed: list) -> list[Agreement]:
    """One `Agreement` per layer: `observed[k]` compared with `expected[k]` alone."""
    return [_compare(e.ravel(), o.ravel()) for e, o in _layer_pairs(expected, observed)]
