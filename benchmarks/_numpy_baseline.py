"""Batch-vectorised NumPy forward and backward of a feed-forward TTFS network (baseline).

Written the way the DelGrad reference code is written in PyTorch: every (sample, input, neuron)
triple is one array element, arrivals are sorted along the input axis, the candidate crossing of
every prefix of the causal set is computed at once from cumulative sums, and the first valid
candidate is picked (docs/model.md §2; Göltz et al. 2021, Methods; Göltz, Weber et al. 2025).
Gradients use the implicit function theorem on whole (batch, input, neuron) arrays (docs/model.md §4).
It serves as an independent check of `delgrad_core` and as the timing baseline.

Only the closed forms tau_m = tau_s (Lambert W) and tau_m = 2 tau_s (quadratic) are supported.
"""

from __future__ import annotations

import numpy as np
from scipy.special import lambertw

from delgrad_core import DelayKind, LayerGradients, Network, NetworkGradients

__all__ = ["forward", "backward"]

_INV_E = np.exp(-1.0)


def _ratio(layer) -> int:
    """1 if tau_m == tau_s for every neuron, 2 if tau_m == 2 tau_s for every neuron, else raise."""
    _, tau_m, tau_s = layer.neuron_arrays()
    if np.all(tau_m == 2.0 * tau_s):
        return 2
    if np.all(tau_m == tau_s):
        return 1
    raise ValueError(
        f"{layer.population.name}.tau_m: the NumPy baseline needs tau_m == tau_s or tau_m == 2 tau_s "
        "for every neuron of a layer"
    )


def _sorted_arrivals(pre_times: np.ndarray, projection) -> tuple[np.ndarray, np.ndarray]:
    """Arrival times a_ij = t_i + d_ij (docs/model.md §3) sorted along the input axis, with the weights
    in the same order; both (batch, n_pre, n_post).  Without synaptic delays one sort per sample
    serves every neuron, because d_ij = r_i + c_j keeps the order of t_i + r_i."""
    kind = projection.delay_kind
    if kind is DelayKind.SYNAPTIC:
        arrivals = pre_times[:, :, None] + projection.delays[None, :, :]
        order = np.argsort(arrivals, axis=1, kind="stable")
        weights = np.broadcast_to(projection.weights, arrivals.shape)
        return np.take_along_axis(arrivals, order, axis=1), np.take_along_axis(weights, order, axis=1)
    row = projection.delays if kind is DelayKind.AXONAL else 0.0
    column = projection.delays if kind is DelayKind.DENDRITIC else 0.0
    shifted = pre_times + row
    order = np.argsort(shifted, axis=1, kind="stable")
    arrivals = np.take_along_axis(shifted, order, axis=1)[:, :, None] + column
    return arrivals, projection.weights[order]


def _prefix_candidates(arrivals, weights, threshold, tau_m, ratio) -> np.ndarray:
    """Crossing time of the membrane driven by the inputs of every prefix of the sorted arrivals
    (NaN where that prefix never reaches threshold), docs/model.md §2 closed forms."""
    active = np.isfinite(arrivals)
    a = np.where(active, arrivals, 0.0)
    w = np.where(active, weights, 0.0)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if ratio == 2:
            # u(t) = A_m x - A_s x^2 with x = e^{-t/tau_m}, K = tau_m tau_s/(tau_m - tau_s) = tau_m
            a_m = tau_m * np.cumsum(w * np.exp(a / tau_m), axis=1)
            a_s = tau_m * np.cumsum(w * np.exp(2.0 * a / tau_m), axis=1)
            disc = a_m * a_m - 4.0 * a_s * threshold
            ok = (a_s > 0.0) & (a_m > 0.0) & (disc >= 0.0)
            return np.where(ok, tau_m * np.log(2.0 * a_s / (a_m + np.sqrt(disc))), np.nan)
        # u(t) = e^{-t/tau}(A t - B), first root by the principal Lambert W branch
        scaled = w * np.exp(a / tau_m)
        big_a = np.cumsum(scaled, axis=1)
        big_b = np.cumsum(scaled * a, axis=1)
        arg = -(threshold / (tau_m * big_a)) * np.exp(big_b / (tau_m * big_a))
        ok = (big_a > 0.0) & (arg >= -_INV_E)
        w0 = lambertw(np.where(ok, arg, 0.0), 0).real
        return np.where(ok, big_b / big_a - tau_m * w0, np.nan)


def _layer_forward(pre_times: np.ndarray, layer) -> np.ndarray:
    """First spike times (batch, n_post) of one layer; +inf = silent."""
    threshold, tau_m, _ = layer.neuron_arrays()
    arrivals, weights = _sorted_arrivals(pre_times, layer.projection)
    candidates = _prefix_candidates(arrivals, weights, threshold, tau_m, _ratio(layer))
    following = np.concatenate([arrivals[:, 1:], np.full_like(arrivals[:, :1], np.inf)], axis=1)
    with np.errstate(invalid="ignore"):
        valid = (candidates >= arrivals) & (candidates <= following)
    first = np.argmax(valid, axis=1)[:, None, :]
    times = np.take_along_axis(candidates, first, axis=1)[:, 0, :]
    return np.where(valid.any(axis=1), times, np.inf)


def forward(network: Network, input_spike_times) -> list[np.ndarray]:
    """Spike times of every layer, (batch, size) each; +inf = silent (same contract as
    `delgrad_core.forward`)."""
    times = np.asarray(input_spike_times, dtype=np.float64)
    result = []
    for layer in network.layers:
        times = _layer_forward(times, layer)
        result.append(times)
    return result


def _kernels(lag, tau_m, tau_s, ratio) -> tuple[np.ndarray, np.ndarray]:
    """PSP k(s) and its slope k'(s) for s = t - a (docs/model.md §1); zero where s = +inf."""
    if ratio == 1:
        decay = np.exp(-lag / tau_m)
        finite_lag = np.where(np.isfinite(lag), lag, 0.0)
        return finite_lag * decay, decay * (1.0 - finite_lag / tau_m)
    gain = tau_m * tau_s / (tau_m - tau_s)
    decay_m = np.exp(-lag / tau_m)
    decay_s = np.exp(-lag / tau_s)
    return gain * (decay_m - decay_s), gain * (decay_s / tau_s - decay_m / tau_m)


def _layer_backward(pre_times, post_times, delta, layer, max_weight_term):
    """One layer of docs/model.md §4: dt/dw_i = -k/u', dt/da_i = w_i k'/u', dt/dtheta = 1/u'.
    (sample, neuron) pairs with u'(t) <= 0 count as no_crossing, those whose largest
    |dL/dt dt/dw_i| exceeds `max_weight_term` as guarded (the grazing guard of the DelGrad
    reference code, `delgrad_core.training.GrazingGuard`); neither passes a gradient.

    Returns (LayerGradients, dL/dt_pre of shape (batch, n_pre))."""
    projection = layer.projection
    _, tau_m, tau_s = layer.neuron_arrays()
    weights = projection.weights
    with np.errstate(invalid="ignore"):
        lag = post_times[:, None, :] - (pre_times[:, :, None] + projection.delay_matrix())
        lag = np.where(lag > 0.0, lag, np.inf)  # only causal inputs (a_i < t) contribute
    kernel, slope = _kernels(lag, tau_m, tau_s, _ratio(layer))
    u_slope = np.einsum("bij,ij->bj", slope, weights)
    wanted = np.isfinite(post_times) & (delta != 0.0)
    rising = u_slope > 0.0
    scale = np.where(wanted & rising, delta / np.where(rising, u_slope, 1.0), 0.0)
    grazing = np.abs(scale[:, None, :] * kernel).max(axis=1) > max_weight_term
    scale = np.where(grazing, 0.0, scale)
    per_synapse = slope * weights * scale[:, None, :]
    gradients = LayerGradients(
        weights=-np.einsum("bij,bj->ij", kernel, scale),
        delays=projection.reduce_synapse_gradient(per_synapse.sum(axis=0)),
        threshold=scale.sum(axis=0),
        no_crossing=int(np.count_nonzero(wanted & ~rising)),
        guarded=int(np.count_nonzero(wanted & rising & grazing)),
    )
    return gradients, per_synapse.sum(axis=2)


def backward(network: Network, input_spike_times, layer_spike_times, output_gradient,
             max_weight_term: float | None = None) -> NetworkGradients:
    """Exact gradients at the given spike times (same contract as `delgrad_core.backward` with
    ``guard=GrazingGuard(max_weight_term)``, or no guard if None)."""
    pre = [np.asarray(input_spike_times, dtype=np.float64)] + [np.asarray(t) for t in layer_spike_times]
    delta = np.asarray(output_gradient, dtype=np.float64)
    limit = np.inf if max_weight_term is None else float(max_weight_term)
    layers = []
    for index in range(len(network.layers) - 1, -1, -1):
        gradients, delta = _layer_backward(pre[index], pre[index + 1], delta, network.layers[index], limit)
        layers.append(gradients)
    layers.reverse()
    return NetworkGradients(layers=layers, input_spike_times=delta)
