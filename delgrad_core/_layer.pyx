# Forward (first spike times) and backward (exact gradients) of one feed-forward layer over a
# batch.  Validation and allocation happen in delgrad_core._propagation; these loops trust shapes.
#
# Arrival time of input i at neuron j: a_ij = t_i + d_ij (docs/model.md §3), or an observed
# arrival time.  Silent inputs have t_i = +inf (or an infinite arrival) and never arrive.

from cython.parallel cimport prange, parallel, threadid
from libc.stdlib cimport malloc, free, qsort
from libc.math cimport exp, fabs, isfinite, INFINITY

import numpy as np

from delgrad_core._psp cimport (
    RatioKind, ratio_kind, first_crossing, advance_state, kernel_and_slope, lambert_w0,
    RATIO_GENERAL,
)


cdef struct Arrival:
    double time
    Py_ssize_t index


cdef inline double _arrival(Py_ssize_t b, Py_ssize_t i, Py_ssize_t j, const double[:, ::1] pre_times,
                            const double[:, ::1] delays, const double[:, :, ::1] arrivals,
                            bint observed) noexcept nogil:
    """a_ij of sample b: observed arrivals[b, i, j] if given, else t_i + d_ij (docs/model.md §3)."""
    if observed:
        return arrivals[b, i, j]
    return pre_times[b, i] + delays[i, j]


cdef int _compare_arrivals(const void* left, const void* right) noexcept nogil:
    cdef const Arrival* a = <const Arrival*> left
    cdef const Arrival* b = <const Arrival*> right
    if a.time < b.time:
        return -1
    if a.time > b.time:
        return 1
    return (a.index > b.index) - (a.index < b.index)


cdef inline void _insertion_sort(Arrival* order, Py_ssize_t n) noexcept nogil:
    """Sort by (time, index); linear time for the nearly sorted orders of neighbouring neurons."""
    cdef Py_ssize_t k, m
    cdef Arrival item
    for k in range(1, n):
        item = order[k]
        m = k - 1
        while m >= 0 and _compare_arrivals(&order[m], &item) > 0:
            order[m + 1] = order[m]
            m -= 1
        order[m + 1] = item


cdef double _first_spike(const Arrival* order, Py_ssize_t n_active, Py_ssize_t j,
                         const double[:, ::1] weights, double theta, double tau_m, double tau_s,
                         RatioKind kind) noexcept nogil:
    """Causal-set search (docs/model.md §2): walk the sorted arrivals, keeping the membrane state at
    the latest arrival, and return the first crossing before the next arrival (or +inf)."""
    cdef double u = 0.0, current = 0.0, t_now = 0.0, arrival, length, decay_m, s
    cdef Py_ssize_t k, i
    if n_active == 0:
        return INFINITY
    for k in range(n_active):
        i = order[k].index
        arrival = order[k].time
        if k > 0:
            length = arrival - t_now
            if length > 0.0:
                decay_m = exp(-length / tau_m)
                s = first_crossing(u, current, length, decay_m, theta, tau_m, tau_s, kind)
                if s >= 0.0:
                    return t_now + s
                advance_state(&u, &current, length, decay_m, tau_m, tau_s, kind)
        current = current + weights[i, j]
        t_now = arrival
    s = first_crossing(u, current, INFINITY, 0.0, theta, tau_m, tau_s, kind)
    return t_now + s if s >= 0.0 else INFINITY


cdef void _forward_sample(Py_ssize_t b, const double[:, ::1] pre_times,
                          const double[:, ::1] weights, const double[:, ::1] delays,
                          const double[:, :, ::1] arrivals, bint observed,
                          bint shared_order, const double[::1] threshold,
                          const double[::1] tau_m, const double[::1] tau_s,
                          const int[::1] kinds, double[:, ::1] post_times,
                          Arrival* order) noexcept nogil:
    cdef Py_ssize_t n_pre = weights.shape[0], n_post = weights.shape[1]
    cdef Py_ssize_t i, j, k, n_active = 0
    cdef double arrival
    for i in range(n_pre):
        arrival = _arrival(b, i, 0, pre_times, delays, arrivals, observed)
        if isfinite(arrival):
            order[n_active].index = i
            order[n_active].time = arrival
            n_active += 1
    qsort(order, n_active, sizeof(Arrival), _compare_arrivals)
    for j in range(n_post):
        if j > 0:
            for k in range(n_active):
                order[k].time = _arrival(b, order[k].index, j, pre_times, delays, arrivals, observed)
            if not shared_order:
                # per-synapse arrivals: re-sort the previous neuron's order (nearly sorted already)
                _insertion_sort(order, n_active)
        post_times[b, j] = _first_spike(order, n_active, j, weights, threshold[j], tau_m[j], tau_s[j],
                                        <RatioKind> kinds[j])


def forward_layer(const double[:, ::1] pre_times, const double[:, ::1] weights,
                  const double[:, ::1] delays, const double[:, :, ::1] arrivals, bint observed,
                  bint shared_order, const double[::1] threshold, const double[::1] tau_m,
                  const double[::1] tau_s, double[:, ::1] post_times, int n_threads,
                  bint general_solver_only=False):
    """Write the first spike time of every (sample, neuron) into `post_times` (+inf: silent).

    Arrivals are t_i + d_ij, or the given `arrivals[b, i, j]` when `observed` (then `arrivals`
    has shape (batch, n_pre, n_post); otherwise it is a placeholder that is never read).
    `shared_order` states that every neuron sees its inputs in the same order (d_ij = r_i + c_j:
    no, axonal or dendritic delays), so one sort per sample serves every neuron.
    `general_solver_only` forces the bracketed solver (to cross-check the closed forms).
    """
    cdef Py_ssize_t n_batch = pre_times.shape[0], n_pre = weights.shape[0]
    cdef Py_ssize_t n_post = weights.shape[1], b, j
    cdef int[::1] kinds = _ratio_kinds(tau_m, tau_s, general_solver_only)
    cdef Py_ssize_t stride = n_pre + 1
    cdef Arrival* orders = <Arrival*> malloc(n_threads * stride * sizeof(Arrival))
    if orders == NULL:
        raise MemoryError("forward_layer: could not allocate the arrival buffers")
    try:
        with nogil, parallel(num_threads=n_threads):
            for b in prange(n_batch, schedule='guided'):
                _forward_sample(b, pre_times, weights, delays, arrivals, observed, shared_order,
                                threshold, tau_m, tau_s, kinds, post_times,
                                orders + threadid() * stride)
    finally:
        free(orders)


cdef int[::1] _ratio_kinds(const double[::1] tau_m, const double[::1] tau_s, bint general_only):
    cdef Py_ssize_t j, n = tau_m.shape[0]
    cdef int[::1] kinds = np.zeros(n, dtype=np.intc)
    for j in range(n):
        kinds[j] = RATIO_GENERAL if general_only else ratio_kind(tau_m[j], tau_s[j])
    return kinds


cdef void _backward_sample(Py_ssize_t b, const double[:, ::1] pre_times,
                           const double[:, ::1] weights, const double[:, ::1] delays,
                           const double[:, :, ::1] arrivals, bint observed,
                           const double[::1] tau_m, const double[::1] tau_s,
                           const int[::1] kinds,
                           const double[:, ::1] post_times, const double[:, ::1] delta_post,
                           double[:, ::1] grad_weights, double[:, ::1] grad_arrivals,
                           double[::1] grad_threshold, double[:, ::1] delta_pre,
                           signed char[:, ::1] no_crossing, double[:, ::1] largest_term,
                           double* kernel, double* slope) noexcept nogil:
    """Implicit-function-theorem gradients at the given spike times (docs/model.md §4):
    dt/dw_i = -k(t - a_i)/u'(t), dt/da_i = w_i k'(t - a_i)/u'(t), dt/dtheta = 1/u'(t)."""
    cdef Py_ssize_t n_pre = weights.shape[0], n_post = weights.shape[1], i, j
    cdef double t, delta, arrival, s, u_slope, scale, g, term, largest
    for j in range(n_post):
        t = post_times[b, j]
        delta = delta_post[b, j]
        if not isfinite(t) or delta == 0.0:
            continue
        u_slope = 0.0
        for i in range(n_pre):
            arrival = _arrival(b, i, j, pre_times, delays, arrivals, observed)
            if arrival < t:
                s = t - arrival
                slope[i] = kernel_and_slope(s, tau_m[j], tau_s[j], <RatioKind> kinds[j], &kernel[i])
                u_slope = u_slope + weights[i, j] * slope[i]
            else:
                kernel[i] = 0.0
                slope[i] = 0.0
        if not (u_slope > 0.0):
            no_crossing[b, j] = 1   # no upward crossing at t in the model: no gradient
            continue
        scale = delta / u_slope
        largest = 0.0
        for i in range(n_pre):
            if slope[i] != 0.0 or kernel[i] != 0.0:
                term = -scale * kernel[i]
                grad_weights[i, j] += term
                g = scale * weights[i, j] * slope[i]
                grad_arrivals[i, j] += g
                delta_pre[b, i] += g
                if fabs(term) > largest:
                    largest = fabs(term)
        largest_term[b, j] = largest
        grad_threshold[j] += scale


def backward_layer(const double[:, ::1] pre_times, const double[:, ::1] weights,
                   const double[:, ::1] delays, const double[:, :, ::1] arrivals, bint observed,
                   const double[::1] tau_m, const double[::1] tau_s,
                   const double[:, ::1] post_times, const double[:, ::1] delta_post,
                   double[:, :, ::1] grad_weights, double[:, :, ::1] grad_arrivals,
                   double[:, ::1] grad_threshold, double[:, ::1] delta_pre,
                   signed char[:, ::1] no_crossing, double[:, ::1] largest_term, int n_threads):
    """Accumulate dL/dw, dL/da (per synapse), dL/dtheta and write dL/dt_pre into `delta_pre`,
    given dL/dt_post = `delta_post` (a zero entry skips that sample and neuron).

    Samples are split into `grad_weights.shape[0]` contiguous slots, each summed in sample order
    into its own slice; the caller adds the slices in a fixed order.  The slots do not depend on
    the thread count, so the sums are bit for bit the same with any number of threads.

    Reports per (sample, neuron): `no_crossing` = 1 where the model has no upward crossing at
    the given time (no gradient), and `largest_term` = max_i |delta_j dt_j/dw_ij| (the quantity
    a grazing guard compares; the caller decides).
    """
    cdef Py_ssize_t n_batch = pre_times.shape[0], n_pre = weights.shape[0], b, slot
    cdef Py_ssize_t n_slots = grad_weights.shape[0], first, last
    cdef int[::1] kinds = _ratio_kinds(tau_m, tau_s, False)
    cdef Py_ssize_t stride = 2 * (n_pre + 1)
    cdef double* scratch = <double*> malloc(n_threads * stride * sizeof(double))
    cdef double* mine
    if scratch == NULL:
        raise MemoryError("backward_layer: could not allocate scratch buffers")
    try:
        with nogil, parallel(num_threads=n_threads):
            mine = scratch + threadid() * stride
            for slot in prange(n_slots, schedule='dynamic'):
                first = (slot * n_batch) // n_slots
                last = ((slot + 1) * n_batch) // n_slots
                for b in range(first, last):
                    _backward_sample(b, pre_times, weights, delays, arrivals, observed, tau_m, tau_s,
                                     kinds, post_times, delta_post, grad_weights[slot],
                                     grad_arrivals[slot], grad_threshold[slot], delta_pre,
                                     no_crossing, largest_term, mine, mine + n_pre + 1)
    finally:
        free(scratch)


def first_crossing_time(double u0, double current, double length, double theta,
                        double tau_m, double tau_s, bint general_solver_only=False):
    """First s in [0, length] at which the state (u0, current) reaches theta, or -1 (testing)."""
    cdef RatioKind kind = RATIO_GENERAL if general_solver_only else ratio_kind(tau_m, tau_s)
    return first_crossing(u0, current, length, exp(-length / tau_m), theta, tau_m, tau_s, kind)


def lambert_w0_real(double x):
    """Principal branch of the Lambert W function for real x >= -1/e (exposed for testing)."""
    return lambert_w0(x)
