# Forward (first spike times) and backward (exact gradients) of one feed-forward layer over a
# batch.  Validation and allocation happen in delgrad_core._propagation; these loops trust shapes.
#
# Arrival time of input i at neuron j: a_ij = t_i + d_ij (MODEL.md §3).  Silent inputs have
# t_i = +inf and never arrive.

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


cdef double _first_spike(const Arrival* order, Py_ssize_t n_active, Py_ssize_t b, Py_ssize_t j,
                         const double[:, ::1] pre_times, const double[:, ::1] weights,
                         const double[:, ::1] delays, double theta, double tau_m, double tau_s,
                         RatioKind kind) noexcept nogil:
    """Causal-set search (MODEL.md §2): walk the sorted arrivals, keeping the membrane state at
    the latest arrival, and return the first crossing before the next arrival (or +inf)."""
    cdef double u = 0.0, current = 0.0, t_now = 0.0, arrival, length, decay_m, s
    cdef Py_ssize_t k, i
    if n_active == 0:
        return INFINITY
    for k in range(n_active):
        i = order[k].index
        arrival = pre_times[b, i] + delays[i, j]
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
                          bint shared_order, const double[::1] threshold,
                          const double[::1] tau_m, const double[::1] tau_s,
                          const int[::1] kinds, double[:, ::1] post_times,
                          Arrival* order) noexcept nogil:
    cdef Py_ssize_t n_pre = weights.shape[0], n_post = weights.shape[1]
    cdef Py_ssize_t i, j, k, n_active = 0
    for i in range(n_pre):
        if isfinite(pre_times[b, i]):
            order[n_active].index = i
            order[n_active].time = pre_times[b, i] + delays[i, 0]
            n_active += 1
    qsort(order, n_active, sizeof(Arrival), _compare_arrivals)
    for j in range(n_post):
        if not shared_order:
            # per-synapse delays: re-sort the previous neuron's order (nearly sorted already)
            for k in range(n_active):
                i = order[k].index
                order[k].time = pre_times[b, i] + delays[i, j]
            _insertion_sort(order, n_active)
        post_times[b, j] = _first_spike(order, n_active, b, j, pre_times, weights, delays,
                                        threshold[j], tau_m[j], tau_s[j], <RatioKind> kinds[j])


def forward_layer(const double[:, ::1] pre_times, const double[:, ::1] weights,
                  const double[:, ::1] delays, bint shared_order,
                  const double[::1] threshold, const double[::1] tau_m, const double[::1] tau_s,
                  double[:, ::1] post_times, int n_threads, bint general_solver_only=False):
    """Write the first spike time of every (sample, neuron) into `post_times` (+inf: silent).

    `shared_order` states that d_ij = r_i + c_j (no or axonal or dendritic delays), so one sort
    of the arrivals per sample serves every postsynaptic neuron.  `general_solver_only` forces
    the bracketed solver for every neuron (used to cross-check the closed forms).
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
                _forward_sample(b, pre_times, weights, delays, shared_order, threshold,
                                tau_m, tau_s, kinds, post_times, orders + threadid() * stride)
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
                           const double[::1] tau_m, const double[::1] tau_s,
                           const int[::1] kinds,
                           const double[:, ::1] post_times, const double[:, ::1] delta_post,
                           double max_weight_term, double[:, ::1] grad_weights,
                           double[:, ::1] grad_arrivals, double[::1] grad_threshold,
                           double[:, ::1] delta_pre, signed char[:, ::1] zeroed,
                           double* kernel, double* slope) noexcept nogil:
    """Implicit-function-theorem gradients at the given spike times (MODEL.md §4):
    dt/dw_i = -k(t - a_i)/u'(t), dt/da_i = w_i k'(t - a_i)/u'(t), dt/dtheta = 1/u'(t)."""
    cdef Py_ssize_t n_pre = weights.shape[0], n_post = weights.shape[1], i, j
    cdef double t, delta, arrival, s, u_slope, scale, g
    cdef bint drop
    for j in range(n_post):
        t = post_times[b, j]
        delta = delta_post[b, j]
        if not isfinite(t) or delta == 0.0:
            continue
        u_slope = 0.0
        for i in range(n_pre):
            arrival = pre_times[b, i] + delays[i, j]
            if arrival < t:
                s = t - arrival
                slope[i] = kernel_and_slope(s, tau_m[j], tau_s[j], <RatioKind> kinds[j], &kernel[i])
                u_slope = u_slope + weights[i, j] * slope[i]
            else:
                kernel[i] = 0.0
                slope[i] = 0.0
        if not (u_slope > 0.0):
            zeroed[b, j] = 1   # no upward crossing at t in the model: no gradient
            continue
        scale = delta / u_slope
        drop = False
        if isfinite(max_weight_term):
            for i in range(n_pre):
                if fabs(scale * kernel[i]) > max_weight_term:
                    drop = True
                    break
        if drop:
            zeroed[b, j] = 2   # near-grazing crossing: gradient dropped for this sample
            continue
        for i in range(n_pre):
            if slope[i] != 0.0 or kernel[i] != 0.0:
                grad_weights[i, j] += -scale * kernel[i]
                g = scale * weights[i, j] * slope[i]
                grad_arrivals[i, j] += g
                delta_pre[b, i] += g
        grad_threshold[j] += scale


def backward_layer(const double[:, ::1] pre_times, const double[:, ::1] weights,
                   const double[:, ::1] delays, const double[::1] tau_m,
                   const double[::1] tau_s, const double[:, ::1] post_times,
                   const double[:, ::1] delta_post, double max_weight_term,
                   double[:, :, ::1] grad_weights, double[:, :, ::1] grad_arrivals,
                   double[:, ::1] grad_threshold, double[:, ::1] delta_pre,
                   signed char[:, ::1] zeroed, int n_threads):
    """Accumulate dL/dw, dL/da (per synapse), dL/dtheta into per-thread slices
    (first axis = thread) and write dL/dt_pre into `delta_pre`, given dL/dt_post = `delta_post`.
    The static schedule gives each thread the same samples on every call, so the sums (and a
    training run) are bit-for-bit reproducible for a fixed thread count.

    `zeroed[b, j]` is set to 1 where the model has no upward crossing at the given time and to
    2 where |delta_j dt_j/dw_ij| > `max_weight_term` for some i (the sample's gradient through
    that neuron is dropped, as in the DelGrad reference code).
    """
    cdef Py_ssize_t n_batch = pre_times.shape[0], n_pre = weights.shape[0], b
    cdef int[::1] kinds = _ratio_kinds(tau_m, tau_s, False)
    cdef Py_ssize_t stride = 2 * (n_pre + 1)
    cdef double* scratch = <double*> malloc(n_threads * stride * sizeof(double))
    cdef double* mine
    cdef int tid
    if scratch == NULL:
        raise MemoryError("backward_layer: could not allocate scratch buffers")
    try:
        with nogil, parallel(num_threads=n_threads):
            tid = threadid()
            mine = scratch + tid * stride
            for b in prange(n_batch, schedule='static'):
                _backward_sample(b, pre_times, weights, delays, tau_m, tau_s, kinds, post_times,
                                 delta_post, max_weight_term, grad_weights[tid],
                                 grad_arrivals[tid], grad_threshold[tid], delta_pre, zeroed,
                                 mine, mine + n_pre + 1)
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
