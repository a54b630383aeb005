"""Independent reference for first spike times: exact integration of the neuron ODE.

The state x = (u, I) obeys the linear system (docs/model.md §1, C_m = 1)

    du/dt = -u/tau_m + I,    dI/dt = -I/tau_s,

with a jump I += w_i at each arrival a_i.  Between arrivals the state is propagated with the
matrix exponential exp(M s) of M = [[-1/tau_m, 1], [0, -1/tau_s]], sampled on a fine grid; the
first upward threshold crossing is refined by bisection (scipy.optimize.brentq)
on the exactly propagated state.  A grid maximum just below threshold is refined by bounded
maximisation, so that crossings that graze between two grid points are not missed.

exp(M s) is evaluated by scipy.sparse.linalg.expm_multiply (truncated Taylor series with scaling,
Al-Mohy & Higham 2011), which agrees with scipy.linalg.expm to rounding (checked in
test_spike_times.py) but needs no LAPACK solve: the Pade solve of scipy.linalg.expm becomes
~1000x slower for 2x2 matrices when a multithreaded OpenBLAS competes for busy cores.

Nothing here uses delgrad's kernels or closed forms; only plain parameter arrays are read from
the IR objects.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq, minimize_scalar
from scipy.sparse.linalg import expm_multiply

__all__ = ["propagator", "neuron_first_spike", "network_spike_times", "delay_matrix"]

GRID_STEP = 2e-3  # units of tau_s
HORIZON = 60.0  # how long (in units of max(tau_m, tau_s)) to follow the membrane after the last arrival
_NEAR_THRESHOLD = 1e-3  # a grid maximum this close below threshold is refined by maximisation


def _generator(tau_m: float, tau_s: float) -> np.ndarray:
    return np.array([[-1.0 / tau_m, 1.0], [0.0, -1.0 / tau_s]])


def propagator(tau_m: float, tau_s: float, s: float) -> np.ndarray:
    """exp(M s): maps the state (u, I) at time t to the state at t + s when no input arrives."""
    return _propagate(_generator(tau_m, tau_s), s)


def _propagate(generator: np.ndarray, s: float) -> np.ndarray:
    return expm_multiply(generator * s, np.eye(2))


def _grid_states(generator: np.ndarray, state: np.ndarray, step: float, n_steps: int) -> np.ndarray:
    """States at s = 0, step, ..., n_steps * step, shape (n_steps + 1, 2).

    Uses blocks of B steps: the first block by repeated exp(M step), later blocks by applying
    exp(M B step) to the previous block, so rounding grows only over ~sqrt(n) products.
    """
    n_points = n_steps + 1
    block = max(1, math.isqrt(n_points))
    one_step = _propagate(generator, step)
    first = np.empty((block, 2))
    first[0] = state
    for k in range(1, block):
        first[k] = one_step @ first[k - 1]
    block_step = _propagate(generator, step * block)
    blocks = [first]
    while len(blocks) * block < n_points:
        blocks.append(blocks[-1] @ block_step.T)
    return np.concatenate(blocks)[:n_points]


def _crossing_in_segment(generator, state, length, theta, grid_step):
    """First s in [0, length] with u(s) = theta (u(0) < theta assumed), or None."""

    def excess(s):
        return (_propagate(generator, s) @ state)[0] - theta

    n_steps = max(1, math.ceil(length / grid_step))
    step = length / n_steps
    u = _grid_states(generator, state, step, n_steps)[:, 0]
    above = np.flatnonzero(u >= theta)
    if above.size:
        k = above[0]
        if k == 0:
            return 0.0
        return brentq(excess, (k - 1) * step, k * step, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500)
    k = int(np.argmax(u))
    if u[k] < theta - _NEAR_THRESHOLD * max(1.0, abs(theta)):
        return None
    lo, hi = max(0, k - 1) * step, min(n_steps, k + 1) * step
    peak = minimize_scalar(lambda s: -excess(s), bounds=(lo, hi), method="bounded", options={"xatol": 1e-14})
    if -peak.fun < 0.0:
        return None
    return brentq(excess, lo, peak.x, xtol=1e-15, rtol=4 * np.finfo(float).eps, maxiter=500)


def neuron_first_spike(
    arrival_times,
    weights,
    threshold: float,
    tau_m: float,
    tau_s: float,
    *,
    grid_step: float = GRID_STEP,
    horizon: float = HORIZON,
) -> tuple[float, float]:
    """First threshold crossing of one neuron and du/dt there: (t, slope), or (inf, nan).

    `arrival_times` may contain +inf (never arrives); `horizon` (in units of the larger time
    constant) bounds the search after the last arrival.
    """
    arrival_times = np.asarray(arrival_times, dtype=float)
    weights = np.asarray(weights, dtype=float)
    finite = np.isfinite(arrival_times)
    order = np.argsort(arrival_times[finite], kind="stable")
    times = arrival_times[finite][order]
    jumps = weights[finite][order]
    if times.size == 0:
        return math.inf, math.nan
    generator = _generator(tau_m, tau_s)
    state = np.zeros(2)
    ends = np.append(times[1:], times[-1] + horizon * max(tau_m, tau_s))
    for start, end, jump in zip(times, ends, jumps):
        state = state + np.array([0.0, jump])
        length = end - start
        if length <= 0.0:
            continue
        s = _crossing_in_segment(generator, state, length, threshold, grid_step)
        if s is not None:
            u, current = _propagate(generator, s) @ state
            return float(start + s), float(-u / tau_m + current)
        state = _propagate(generator, length) @ state
    return math.inf, math.nan


def delay_matrix(projection) -> np.ndarray:
    """Per-synapse delays d_ij (docs/model.md §3), expanded here from the projection's raw arrays."""
    shape = projection.weights.shape
    kind = getattr(projection.delay_kind, "value", projection.delay_kind)
    if kind == "none":
        return np.zeros(shape)
    delays = np.asarray(projection.delays, dtype=float)
    if kind == "axonal":
        return np.repeat(delays[:, None], shape[1], axis=1)
    if kind == "dendritic":
        return np.repeat(delays[None, :], shape[0], axis=0)
    if kind == "synaptic":
        return delays.copy()
    raise ValueError(f"unknown delay kind {kind!r}")


def network_spike_times(network, input_spike_times, *, with_slopes: bool = False):
    """Reference spike times of every layer, shape (batch, size) each; optionally the slopes."""
    times = np.atleast_2d(np.asarray(input_spike_times, dtype=float))
    all_times, all_slopes = [], []
    for layer in network.layers:
        weights = np.asarray(layer.projection.weights, dtype=float)
        delays = delay_matrix(layer.projection)
        n_post = weights.shape[1]
        neuron = layer.population.neuron
        params = [np.broadcast_to(np.asarray(getattr(neuron, n), dtype=float), (n_post,))
                  for n in ("threshold", "tau_m", "tau_s")]
        out = np.empty((times.shape[0], n_post))
        slopes = np.empty_like(out)
        for b in range(times.shape[0]):
            for j in range(n_post):
                out[b, j], slopes[b, j] = neuron_first_spike(
                    times[b] + delays[:, j], weights[:, j], params[0][j], params[1][j], params[2][j]
                )
        all_times.append(out)
        all_slopes.append(slopes)
        times = out
    return (all_times, all_slopes) if with_slopes else all_times
