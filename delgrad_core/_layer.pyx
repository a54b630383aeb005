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
    closed_kernel_and_slope, IntervalTest, input_features, interval_test, may_cross,
    state_from_sums, RATIO_GENERAL,
)

# The layer-wide paths keep exponentials of times measured from a sample's first arrival; they
# serve a sample whose arrival (and, backward, spike) times span at most this many tau_m, so
# that e^{2 span/tau_m} stays far from overflow.  Longer samples take the per-neuron paths.
cdef double _SPAN_LIMIT = 100.0


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


cdef RatioKind _layer_kind(const double[::1] tau_m, const double[::1] tau_s) noexcept nogil:
    """The closed form that every neuron of the layer shares (same tau_m and tau_s), else
    RATIO_GENERAL."""
    cdef Py_ssize_t j
    if tau_m.shape[0] == 0:
        return RATIO_GENERAL
    for j in range(1, tau_m.shape[0]):
        if tau_m[j] != tau_m[0] or tau_s[j] != tau_s[0]:
            return RATIO_GENERAL
    return ratio_kind(tau_m[0], tau_s[0])


cdef double[::1] _column_shift(const double[:, ::1] delays):
    """c_j with d_ij = d_i0 + c_j (delays that keep one input order: none, axonal, dendritic)."""
    cdef Py_ssize_t j, n_post = delays.shape[1]
    cdef double[::1] shift = np.zeros(n_post)
    if delays.shape[0] > 0:
        for j in range(n_post):
            shift[j] = delays[0, j] - delays[0, 0]
    return shift


cdef Py_ssize_t _shared_arrivals(Py_ssize_t b, const double[:, ::1] pre_times,
                                 const double[:, ::1] delays, Arrival* order) noexcept nogil:
    """Inputs of sample b that arrive (t_i + d_i0 finite), sorted by (time, index); their count."""
    cdef Py_ssize_t i, n_active = 0
    cdef double arrival
    for i in range(pre_times.shape[1]):
        arrival = pre_times[b, i] + delays[i, 0]
        if isfinite(arrival):
            order[n_active].index = i
            order[n_active].time = arrival
            n_active += 1
    qsort(order, n_active, sizeof(Arrival), _compare_arrivals)
    return n_active


cdef inline bint _accumulate(const double* w, double p, double q, double* p_sum, double* q_sum,
                             const double* level, IntervalTest test, RatioKind kind,
                             long long* flags, Py_ssize_t n) noexcept nogil:
    """Add one input (features p, q; weight row w) to every neuron's sums, flag the neurons that
    may cross threshold in the interval of `test` and report whether any does (a loop the
    compiler vectorises; the flags are as wide as the sums, so one vector holds both)."""
    cdef Py_ssize_t j
    cdef long long flag, candidate = 0
    for j in range(n):
        p_sum[j] = p_sum[j] + w[j] * p
        q_sum[j] = q_sum[j] + w[j] * q
        flag = may_cross(p_sum[j], q_sum[j], level[j], test, kind)
        flags[j] = flag
        candidate = candidate | flag
    return candidate != 0


cdef void _walk_layer(Py_ssize_t b, const Arrival* order, Py_ssize_t n_active,
                      const double[:, ::1] weights, const double[::1] shift,
                      const double[::1] threshold, double tau_m, double tau_s, RatioKind kind,
                      double[:, ::1] post_times, double* scratch,
                      long long* flags) noexcept nogil:
    """Causal-set search (docs/model.md §2) for every neuron of the layer at once, for inputs
    that reach all neurons in the same order: one pass over the sorted arrivals keeps each
    neuron's sums P, Q (see _psp.pxd), tests each inter-arrival interval with `may_cross`, and
    solves only where that test passes, with the closed forms on the state at the interval's
    start.  A neuron that has fired is retired by setting its test level to +inf.  The spike of
    neuron j is shifted by its column delay c_j (d_ij = d_i0 + c_j)."""
    cdef Py_ssize_t n_post = weights.shape[1], j, k = 0, last
    cdef double* p_sum = scratch
    cdef double* q_sum = scratch + n_post
    cdef double* level = scratch + 2 * n_post
    cdef double t_ref = order[0].time, t_now, t_next, r0, r1, x0, x1, p, q, u, current, s, decay
    cdef IntervalTest test
    cdef bint candidate
    for j in range(n_post):
        p_sum[j] = 0.0
        q_sum[j] = 0.0
        level[j] = threshold[j]
        post_times[b, j] = INFINITY
    while k < n_active:
        t_now = order[k].time
        last = k
        while last + 1 < n_active and order[last + 1].time == t_now:   # tied inputs
            last += 1
        t_next = order[last + 1].time if last + 1 < n_active else INFINITY
        r0 = t_now - t_ref
        r1 = t_next - t_ref
        x0 = exp(-r0 / tau_m)
        x1 = exp(-r1 / tau_m)
        input_features(r0, exp(r0 / tau_m), kind, &p, &q)
        test = interval_test(r0, x0, r1, x1, tau_m, kind)
        while k <= last:   # the test of the last tied input sees the complete sums
            candidate = _accumulate(&weights[order[k].index, 0], p, q, p_sum, q_sum, level, test,
                                    kind, flags, n_post)
            k += 1
        if candidate:
            decay = exp(-(t_next - t_now) / tau_m)
            for j in range(n_post):
                if not flags[j]:
                    continue
                state_from_sums(p_sum[j], q_sum[j], r0, x0, tau_m, kind, &u, &current)
                if u >= threshold[j]:   # reached within rounding at the interval's start
                    s = 0.0
                else:
                    s = first_crossing(u, current, t_next - t_now, decay, threshold[j], tau_m,
                                       tau_s, kind)
                if s >= 0.0:
                    post_times[b, j] = (t_now + s) + shift[j]
                    level[j] = INFINITY


def forward_layer(const double[:, ::1] pre_times, const double[:, ::1] weights,
                  const double[:, ::1] delays, const double[:, :, ::1] arrivals, bint observed,
                  bint shared_order, const double[::1] threshold, const double[::1] tau_m,
                  const double[::1] tau_s, double[:, ::1] post_times, int n_threads,
                  bint general_solver_only=False, bint layer_walk=True):
    """Write the first spike time of every (sample, neuron) into `post_times` (+inf: silent).

    Arrivals are t_i + d_ij, or the given `arrivals[b, i, j]` when `observed` (then `arrivals`
    has shape (batch, n_pre, n_post); otherwise it is a placeholder that is never read).
    `shared_order` states that every neuron sees its inputs in the same order (d_ij = r_i + c_j:
    no, axonal or dendritic delays), so one sort per sample serves every neuron.  If moreover all
    neurons share tau_m = tau_s or tau_m = 2 tau_s, a sample whose arrivals span at most
    _SPAN_LIMIT tau_m is walked once for the whole layer (`_walk_layer`); `layer_walk=False`
    keeps the per-neuron walk (to cross-check the two).
    `general_solver_only` forces the bracketed solver (to cross-check the closed forms).
    """
    cdef Py_ssize_t n_batch = pre_times.shape[0], n_pre = weights.shape[0]
    cdef Py_ssize_t n_post = weights.shape[1], b, n_active
    cdef int[::1] kinds = _ratio_kinds(tau_m, tau_s, general_solver_only)
    cdef RatioKind walk_kind = RATIO_GENERAL
    cdef double[::1] shift = _column_shift(delays)
    cdef Py_ssize_t stride = n_pre + 1, sums_stride = 3 * n_post + 1
    cdef Arrival* orders
    cdef Arrival* order
    cdef double* sums
    cdef long long* flags
    if shared_order and layer_walk and not observed and not general_solver_only:
        walk_kind = _layer_kind(tau_m, tau_s)
    orders = <Arrival*> malloc(n_threads * stride * sizeof(Arrival))
    sums = <double*> malloc(n_threads * sums_stride * sizeof(double))
    flags = <long long*> malloc(n_threads * sums_stride * sizeof(long long))
    if orders == NULL or sums == NULL or flags == NULL:
        free(orders)
        free(sums)
        free(flags)
        raise MemoryError("forward_layer: could not allocate the arrival buffers")
    try:
        with nogil, parallel(num_threads=n_threads):
            order = orders + threadid() * stride
            for b in prange(n_batch, schedule='guided'):
                if walk_kind != RATIO_GENERAL:
                    n_active = _shared_arrivals(b, pre_times, delays, order)
                    if n_active == 0 or order[n_active - 1].time - order[0].time <= _SPAN_LIMIT * tau_m[0]:
                        if n_active == 0:
                            post_times[b, :] = INFINITY
                        else:
                            _walk_layer(b, order, n_active, weights, shift, threshold, tau_m[0],
                                        tau_s[0], walk_kind, post_times,
                                        sums + threadid() * sums_stride,
                                        flags + threadid() * sums_stride)
                        continue
                _forward_sample(b, pre_times, weights, delays, arrivals, observed, shared_order,
                                threshold, tau_m, tau_s, kinds, post_times, order)
    finally:
        free(orders)
        free(sums)
        free(flags)


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
