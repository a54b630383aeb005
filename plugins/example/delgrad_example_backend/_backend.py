"""A time-stepped simulator of the delgrad neuron: a template for backend plugins.

The neuron (docs/model.md §1, C_m = 1) is  du/dt = -u/tau_m + I,  dI/dt = -I/tau_s.  Between input
arrivals this is linear, so one step of length dt is an exact exponential update:

    I(t + dt) = exp(-dt/tau_s) I(t)
    u(t + dt) = exp(-dt/tau_m) u(t) + k(dt) I(t)          k = PSP kernel of docs/model.md §1

An input of weight w arriving at time a inside a step adds w exp(-(t_end - a)/tau_s) to I and
w k(t_end - a) to u at the end t_end of that step (also exact).  The first sample with u >= theta
is the spike; its time is interpolated linearly between the two samples, in the step of a neuron's
first input of nonzero weight from that arrival on (u = 0 until then), so no spike precedes it.
Errors are O(dt^2) except for a grazing crossing that peaks above threshold between two samples,
which is missed.

To write your own backend, copy this file: keep the `Backend` subclass shape (constructor checks
and stores options, `capabilities` says what you can run, `_execute(request)` returns an
`ExecutionResult`).
"""

from __future__ import annotations

import numpy as np

from delgrad_core import Backend, Capabilities, DelayKind, ExecutionResult, UnsupportedNetworkError
from delgrad_core.plugin_tools import checked_number

__all__ = ["TimeSteppedBackend", "EXAMPLE_CAPABILITIES", "MIN_DT", "MAX_DT", "MAX_STEPS"]

# Everything the model has; not exact (time steps), so the conformance suite compares it
# statistically with the reference.  No noise: deterministic and independent of the seed.
EXAMPLE_CAPABILITIES = Capabilities(delay_kinds=frozenset(DelayKind), deterministic=True, seed_independent=True,
                                    needs_calibration=False, exact=False)

# The time steps allowed, in tau_s.  The work grows as 1/dt (1 / MIN_DT = 100,000 steps per tau_s;
# smaller steps, e.g. 1e-300, would never end), while the error falls as dt^2 and is about 2e-11
# tau_s at MIN_DT, far below what counts as exact (1e-9).  Above MAX_DT the backend fails the
# conformance suite's agreement (median errors above 0.01 tau_s at dt = 0.3); at a few tau_s,
# whole PSPs fall between two samples and are missed.
MIN_DT, MAX_DT = 1e-5, 0.1
# Steps one job may take from its first arrival to its last (10,000 tau_s at the default dt, 100 tau_s
# at MIN_DT: a few minutes for a few samples); one time grid serves the whole job, so a wider span
# would take ever longer.
MAX_STEPS = 10_000_000


def _psp(s, tau_m, tau_s):
    """PSP kernel k(s), s >= 0, of a unit weight (docs/model.md §1), elementwise."""
    s, tau_m, tau_s = np.broadcast_arrays(*(np.asarray(x, dtype=float) for x in (s, tau_m, tau_s)))
    kernel = s * np.exp(-s / tau_s)  # the tau_m == tau_s case
    differ = tau_m != tau_s
    tm, ts, sd = tau_m[differ], tau_s[differ], s[differ]
    kernel[differ] = tm * ts / (tm - ts) * (np.exp(-sd / tm) - np.exp(-sd / ts))
    return kernel


def _amount(value: float, form: str) -> str:
    """`value` in format `form`, or in exponent form from 1e9 on (not hundreds of digits)."""
    return format(value, form) if value < 1e9 else format(value, ".3g")


def _simulate_layer(pre_times, weights, delays, threshold, tau_m, tau_s, dt):
    """First spike times (batch, n_post) of one layer driven by pre_times (batch, n_pre)."""
    batch, n_post = pre_times.shape[0], weights.shape[1]
    spike_times = np.full(batch * n_post, np.inf)

    # Every input event: arrival time a, weight w, and the flat index of the neuron it hits.
    arrivals = pre_times[:, :, None] + delays[None, :, :]  # (batch, n_pre, n_post)
    b, i, j = np.nonzero(np.isfinite(arrivals))  # silent inputs (+inf) never arrive
    if b.size == 0:
        return spike_times.reshape(batch, n_post)
    a = arrivals[b, i, j]
    t0 = a.min()
    span = a.max() - t0
    if span / dt > MAX_STEPS:
        raise UnsupportedNetworkError(
            f"backend 'example' cannot run the job: its arrivals (inputs after their delays, or a layer's spikes) "
            f"span {_amount(span, ',.1f')} tau_s, {_amount(span / dt, ',.0f')} steps of dt = {dt:g}; at most "
            f"{MAX_STEPS:,} per job (a larger dt, shorter delays or inputs closer together)", capability="resources")
    step = np.floor((a - t0) / dt).astype(np.int64)  # event lies in [t0 + step dt, t0 + (step+1) dt)
    order = np.argsort(step, kind="stable")
    step, a, w, j, target = step[order], a[order], weights[i, j][order], j[order], (b * n_post + j)[order]
    remaining = t0 + (step + 1) * dt - a  # time from arrival to the end of its step
    jump_current = w * np.exp(-remaining / tau_s[j])
    jump_voltage = w * _psp(remaining, tau_m[j], tau_s[j])
    first_event = np.searchsorted(step, np.arange(step[-1] + 2))  # events of step n: [first[n], first[n+1])
    last_step, first_arrival = np.full(batch * n_post, -1), np.full(batch * n_post, np.inf)
    np.maximum.at(last_step, target, step)
    np.minimum.at(first_arrival, target, np.where(w != 0, a, np.inf))  # u = 0 until then

    # Per-neuron constants, repeated over the batch (flat index = sample * n_post + neuron).
    theta, taus = np.tile(threshold, batch), np.tile(tau_s, batch)
    decay_u, decay_i = np.tile(np.exp(-dt / tau_m), batch), np.tile(np.exp(-dt / tau_s), batch)
    couple = np.tile(_psp(dt, tau_m, tau_s), batch)

    u, current = np.zeros(batch * n_post), np.zeros(batch * n_post)
    spiked = np.zeros(batch * n_post, dtype=bool)
    n = 0
    while True:
        u_next = decay_u * u + couple * current
        current = decay_i * current
        if n + 1 < first_event.size:
            events = slice(first_event[n], first_event[n + 1])
            np.add.at(u_next, target[events], jump_voltage[events])
            np.add.at(current, target[events], jump_current[events])
        crossed = (u_next >= theta) & ~spiked
        if crossed.any():  # linear interpolation between the two samples, or the first arrival and the end
            fraction = (theta[crossed] - u[crossed]) / (u_next[crossed] - u[crossed])
            start, end = np.maximum(t0 + n * dt, first_arrival[crossed]), t0 + (n + 1) * dt
            spike_times[crossed] = start + fraction * np.maximum(end - start, 0)
            spiked |= crossed
        u = u_next
        n += 1
        # A neuron is finished when it spiked, or when no input is left and it cannot reach
        # threshold any more: u(t) <= max(u, 0) + max(I, 0) tau_s since k(s) <= tau_s.
        if n % 64 == 0:
            unreachable = (n > last_step) & (np.maximum(u, 0) + np.maximum(current, 0) * taus < theta)
            if np.all(spiked | unreachable):
                return spike_times.reshape(batch, n_post)


def _checked_dt(dt) -> float:
    """`dt` as a float if it is a number of tau_s from MIN_DT to MAX_DT; else an error naming it."""
    return checked_number(dt, "dt", MIN_DT, MAX_DT, what="a number of tau_s")


class TimeSteppedBackend(Backend):
    """Fixed-step simulation of the delgrad neuron, vectorised over batch and neurons.

    Parameters
    ----------
    dt : float
        Time step in units of tau_s, from MIN_DT to MAX_DT (default 0.001).
    """

    name = "example"

    def __init__(self, dt: float = 0.001):
        self.dt = _checked_dt(dt)  # (checked here: get_backend refuses a bad option at once)

    @property
    def capabilities(self) -> Capabilities:
        return EXAMPLE_CAPABILITIES

    def _device_identity(self, calibration) -> dict:
        """The base identity and `dt`, which changes spike times: a run resumed, or a sweep's
        trial reused, on a backend of another step is refused."""
        return {**super()._device_identity(calibration), "options": {"dt": self.dt}}

    def _execute(self, request) -> ExecutionResult:
        times, layer_spike_times, dt = request.input_spike_times, [], self.dt
        for layer in request.network.layers:  # feed-forward, one spike per neuron: layer by layer
            threshold, tau_m, tau_s = layer.neuron_arrays()
            projection = layer.projection
            times = _simulate_layer(times, projection.weights, projection.delay_matrix(), threshold, tau_m, tau_s, dt)
            layer_spike_times.append(times)
        return ExecutionResult(layer_spike_times, {"dt": dt})
