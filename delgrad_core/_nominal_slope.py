"""The membrane slope DelGrad's reference code divides by when it takes gradients at measured
spike times (tau_m = tau_s; docs/model.md §4, "Slope at the nominal crossing").

For a neuron with tau_m = tau_s = tau that spiked at t, its causal inputs i (arrived at a_i < t,
s_i = t - a_i; one arriving at t contributes nothing, as in the exact gradient) give
A = sum_i w_i e^{-s_i/tau} and the membrane u(t) = sum_i w_i s_i e^{-s_i/tau}.
The exact gradient at t divides by the membrane's slope u'(t) = A (1 + W_t), W_t = -u(t) / (tau A).
The reference code divides by A (1 + W_theta) instead, with W_theta = W0(-theta / (tau A) e^{W_t})
the Lambert-W solution at the nominal threshold theta (Göltz, Weber, Kriener et al. 2025, the
closed form for tau_m = tau_s): the slope of the nominal neuron at its own crossing, carried to t
by the synaptic decay.  Both agree when the measured spike is the nominal one (u(t) = theta).
So every term of the neuron's gradient is the exact one scaled by u'(t) / (A (1 + W_theta)), or
by 0 where the nominal neuron does not cross or A <= 0.
"""

from __future__ import annotations

import numpy as np

from delgrad_core._errors import InvalidValueError
from delgrad_core._ir import Layer
from delgrad_core._kernels import kernels as _layer

__all__ = ["nominal_slope_factors"]

_CHUNK_VALUES = 1 << 20  # (sample, input, neuron) values per chunk of samples, bounding the memory


def nominal_slope_factors(layer: Layer, where: str, post_times: np.ndarray, arrivals_of) -> np.ndarray:
    """(batch, n_post) factors turning the exact gradients of `layer` at the spike times
    `post_times` into the reference code's, given `arrivals_of(samples)`, the arrival times
    (samples, n_pre, n_post) of its inputs for a slice of samples (asked for in chunks, which bound
    the memory); 1 for neurons that did not spike (they pass no gradient anyway)."""
    threshold, tau_m, tau_s = layer.neuron_arrays()
    if not np.array_equal(tau_m, tau_s):
        raise InvalidValueError(f"gradient_slope: 'nominal' needs tau_m = tau_s (the closed form of DelGrad's "
                                f"reference code); {where} has tau_m / tau_s = {float(np.max(tau_m / tau_s)):g}")
    n_batch = post_times.shape[0]
    per_chunk = max(1, _CHUNK_VALUES // max(1, layer.projection.weights.size))
    factors = np.empty_like(post_times)
    for start in range(0, n_batch, per_chunk):
        chunk = slice(start, start + per_chunk)
        factors[chunk] = _factors(layer.projection.weights, threshold, tau_s, post_times[chunk], arrivals_of(chunk))
    return factors


def _factors(weights, threshold, tau, post_times, arrivals) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # (silent neurons, inputs never arrived)
        elapsed = post_times[:, None, :] - arrivals  # s_i = t - a_i
        causal = np.isfinite(post_times)[:, None, :] & (elapsed > 0.0)
        s = np.where(causal, elapsed, 0.0) / tau
        decay = np.where(causal, np.exp(-s), 0.0) * weights  # w_i e^{-s_i/tau}
        a = decay.sum(axis=1)
        u = (decay * s).sum(axis=1) * tau
        w_t = -u / (tau * a)
        z = -threshold / (tau * a) * np.exp(w_t)
        w_theta = _layer.lambert_w0_values(np.ascontiguousarray(z.reshape(-1))).reshape(z.shape)
        factors = (1.0 + w_t) / (1.0 + w_theta)
    usable = (a > 0.0) & np.isfinite(factors)
    return np.where(np.isfinite(post_times), np.where(usable, factors, 0.0), 1.0)
