# Forward (first spike times) and backward (exact gradients) of one feed-forward layer over a
# batch.  Validation and allocation happen in delgrad_core._propagation; these loops trust shapes.
#
# Arrival time of input i at neuron j: a_ij = t_i + d_ij (docs/model.md §3), or an observed
# arrival time.  Silent inputs have t_i = +inf (or an infinite arrival) and never arrive.

from cython.parallel cimport prange, parallel, threadid
from libc.stdlib cimport malloc, free
from libc.stdint cimport uint64_t
from libc.string cimport memcpy, memset
from libc.math cimport exp, fabs, isfinite, nextafter, INFINITY
from posix.time cimport clock_gettime, timespec

import numpy as np

from delgrad_core._psp cimport (
    RatioKind, ratio_kind, first_crossing, crossing_by, ratio_of, membrane_decay, advance_state, kernel_and_slope,
    lambert_w0, RatioOne, RatioTwo, RatioAny, ClosedRatio, NeuronRatio, closed_kernel_and_slope, IntervalTest,
    input_features, interval_test, crossing_level, may_cross, state_from_sums, kernel_bound,
    RATIO_ONE, RATIO_TWO, RATIO_GENERAL,
)

# The layer-wide paths keep exponentials of times measured from a sample's first arrival; they
# serve a sample whose arrival (and, backward, spike) times span at most this many tau_m, so
# that e^{2 span/tau_m} stays far from overflow.  Longer samples take the per-neuron paths.
cdef double _SPAN_LIMIT = 100.0
# placeholders for arrays that a path never reads
cdef double[::1] _NO_VALUES = np.zeros(1)
cdef double[:, :, ::1] _NO_ARRIVALS = np.zeros((1, 1, 1))


cdef struct Arrival:
    double time
    Py_ssize_t index


# Ctrl-C during a long kernel call.  Python runs signal handlers only between bytecodes of its
# main thread, so the loops below let the calling thread (thread 0 of their team) run them every
# _SIGNAL_INTERVAL seconds; once a handler has raised, every thread skips its remaining samples
# and the call raises that exception.
cdef double _SIGNAL_INTERVAL = 0.05

cdef extern from "Python.h":
    # No exception value declared: the exception a handler raised stays set on the calling
    # thread until _raise_handlers_exception propagates it, after the parallel loop.
    int _run_signal_handlers "PyErr_CheckSignals" ()

cdef extern from *:
    """
    #include <time.h>
    /* a clock read in a few ns (Linux; its ms resolution is plenty here), else the monotonic one */
    #ifdef CLOCK_MONOTONIC_COARSE
    #define DELGRAD_SIGNAL_CLOCK CLOCK_MONOTONIC_COARSE
    #else
    #define DELGRAD_SIGNAL_CLOCK CLOCK_MONOTONIC
    #endif
    """
    const int _SIGNAL_CLOCK "DELGRAD_SIGNAL_CLOCK"


cdef struct Interrupt:
    double next_check       # _SIGNAL_CLOCK seconds
    volatile int raised     # a signal handler raised


cdef inline double _monotonic() noexcept nogil:
    cdef timespec now
    clock_gettime(_SIGNAL_CLOCK, &now)
    return now.tv_sec + 1e-9 * now.tv_nsec


cdef inline Interrupt _no_interrupt() noexcept nogil:
    cdef Interrupt state
    state.next_check = _monotonic() + _SIGNAL_INTERVAL
    state.raised = 0
    return state


cdef bint _interrupted(Interrupt* state, int thread) noexcept nogil:
    """Whether a signal handler has raised during this loop; thread 0 runs the handlers when
    their time has come (in any other thread than Python's main one that does nothing)."""
    if thread == 0 and not state.raised and _monotonic() >= state.next_check:
        with gil:
            if _run_signal_handlers() != 0:
                state.raised = 1
        state.next_check = _monotonic() + _SIGNAL_INTERVAL
    return state.raised


cdef int _raise_handlers_exception() except -1:
    """Propagate the exception a signal handler left set (see _run_signal_handlers)."""
    return -1


cdef inline double _arrival(Py_ssize_t b, Py_ssize_t i, Py_ssize_t j, const double[:, ::1] pre_times,
                            const double[:, ::1] delays, const double[:, :, ::1] arrivals,
                            bint observed) noexcept nogil:
    """a_ij of sample b: observed arrivals[b, i, j] if given, else t_i + d_ij (docs/model.md §3)."""
    if observed:
        return arrivals[b, i, j]
    return pre_times[b, i] + delays[i, j]


cdef inline bint _before(const Arrival* a, const Arrival* b) noexcept nogil:
    """Order of arrivals: by time, ties by input index."""
    return a.time < b.time or (a.time == b.time and a.index < b.index)


cdef inline Py_ssize_t _insertion_sort(Arrival* order, Py_ssize_t n) noexcept nogil:
    """Sort by (time, index); linear time for the nearly sorted orders of neighbouring neurons.
    Returns the number of entries moved (the inversions)."""
    cdef Py_ssize_t k, m, moved = 0
    cdef Arrival item
    for k in range(1, n):
        item = order[k]
        m = k - 1
        while m >= 0 and _before(&item, &order[m]):
            order[m + 1] = order[m]
            m -= 1
        moved += k - 1 - m
        order[m + 1] = item
    return moved


# From this many arrivals on, the neurons with arrivals of their own (synaptic delays) take them from
# a heap, only as far as their spikes, instead of re-sorting the previous neuron's order, in a sample
# whose first neuron spiked within the first quarter of its arrivals.
cdef Py_ssize_t _HEAP_MIN = 16
# A neuron's arrivals are sorted afresh, not from the previous neuron's order, once re-sorting that
# moved more than this many entries per arrival (a fresh sort takes a few passes over them; measured
# with synaptic delays: 2-3 times faster from a few hundred inputs on, the same below).
cdef Py_ssize_t _FRESH_SORT_MOVES = 16
# From this many arrivals on, `_sort_arrivals` uses the radix sort.
cdef Py_ssize_t _RADIX_MIN = 64


cdef inline uint64_t _order_key(double time) noexcept nogil:
    """The bits of a finite `time` as an unsigned integer that orders like the number (sign bit
    set for positive numbers, all bits flipped for negative ones; -0 counts as +0, as it compares)."""
    cdef uint64_t bits
    time = time + 0.0
    memcpy(&bits, &time, sizeof(double))
    return ~bits if bits >> 63 else bits | (<uint64_t> 1 << 63)


cdef void _radix_sort(Arrival* order, Py_ssize_t n, Arrival* spare) noexcept nogil:
    """Sort finite arrivals by time, stably (so ties keep the input order, i.e. by index when
    `order` comes by index): least significant byte first over the 8 bytes of `_order_key`,
    skipping bytes that all arrivals share; `spare` holds n entries."""
    cdef Py_ssize_t counts[8 * 256]
    cdef Py_ssize_t k, value, total, count
    cdef int byte
    cdef uint64_t key
    cdef Py_ssize_t* bucket
    cdef Arrival* source = order
    cdef Arrival* target = spare
    cdef Arrival* swap
    memset(counts, 0, sizeof(counts))
    for k in range(n):
        key = _order_key(order[k].time)
        for byte in range(8):
            counts[byte * 256 + <Py_ssize_t> ((key >> (8 * byte)) & 255)] += 1
    for byte in range(8):
        bucket = &counts[byte * 256]
        if bucket[(_order_key(source[0].time) >> (8 * byte)) & 255] == n:
            continue
        total = 0
        for value in range(256):
            count = bucket[value]
            bucket[value] = total
            total += count
        for k in range(n):
            value = (_order_key(source[k].time) >> (8 * byte)) & 255
            target[bucket[value]] = source[k]
            bucket[value] += 1
        swap = source
        source = target
        target = swap
    if source != order:
        memcpy(order, source, n * sizeof(Arrival))


cdef void _sort_arrivals(Arrival* order, Py_ssize_t n, Arrival* spare) noexcept nogil:
    """Sort by (time, index), given arrivals in index order: from _RADIX_MIN arrivals on by
    `_radix_sort`, else insertion sort of runs of 16, then bottom-up merges through `spare`
    (n entries); no comparison callback as with qsort."""
    cdef Py_ssize_t start, width = 16, low, middle, high, left, right, out
    cdef Arrival* source = order
    cdef Arrival* target = spare
    cdef Arrival* swap
    if n >= _RADIX_MIN:
        _radix_sort(order, n, spare)
        return
    start = 0
    while start < n:
        _insertion_sort(order + start, min(width, n - start))
        start += width
    while width < n:
        low = 0
        while low < n:
            middle = min(low + width, n)
            high = min(low + 2 * width, n)
            left = low
            right = middle
            for out in range(low, high):
                if right == high or (left < middle and not _before(&source[right], &source[left])):
                    target[out] = source[left]
                    left += 1
                else:
                    target[out] = source[right]
                    right += 1
            low += 2 * width
        swap = source
        source = target
        target = swap
        width *= 2
    if source != order:
        memcpy(order, source, n * sizeof(Arrival))


cdef Py_ssize_t _sorted_arrivals(Py_ssize_t b, Py_ssize_t j, const double[:, ::1] pre_times,
                                 const double[:, ::1] delays, const double[:, :, ::1] arrivals,
                                 bint observed, Arrival* order) noexcept nogil:
    """The inputs of sample b that arrive at neuron j (finite a_ij), sorted by (time, index) into
    `order`, which has room for 2 n_pre entries (the second half is scratch); their count."""
    cdef Py_ssize_t i, n_active = 0
    cdef double arrival
    for i in range(pre_times.shape[1]):
        arrival = _arrival(b, i, j, pre_times, delays, arrivals, observed)
        if isfinite(arrival):
            order[n_active].index = i
            order[n_active].time = arrival
            n_active += 1
    _sort_arrivals(order, n_active, order + n_active)
    return n_active


cdef inline void _sift_down(Arrival* heap, Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    """Restore the min-heap order by (time, index) of heap[0:n] below entry k."""
    cdef Arrival item = heap[k]
    cdef Py_ssize_t child
    while True:
        child = 2 * k + 1
        if child >= n:
            break
        if child + 1 < n and _before(&heap[child + 1], &heap[child]):
            child += 1
        if not _before(&heap[child], &item):
            break
        heap[k] = heap[child]
        k = child
    heap[k] = item


cdef inline Arrival _heap_pop(Arrival* heap, Py_ssize_t n) noexcept nogil:
    """Take the earliest arrival out of the min-heap heap[0:n] (n >= 1), which keeps n - 1; it is
    put at heap[n - 1], so that heap[0:n] still holds the same arrivals."""
    cdef Arrival first = heap[0]
    heap[0] = heap[n - 1]
    heap[n - 1] = first
    _sift_down(heap, n - 1, 0)
    return first


cdef inline double _after(double t_now, double s) noexcept nogil:
    """The spike time t_now + s of a crossing s >= 0 after the interval's start t_now, at least one
    ulp later when s > 0: a crossing that rounded onto the arrival that caused it would make that
    input look non-causal to the backward (arrival < t), whose gradients would then be those of the
    other inputs (W a / theta > 1e16)."""
    cdef double t = t_now + s
    return nextafter(t_now, INFINITY) if s > 0.0 and t == t_now else t


cdef double _first_spike(NeuronRatio tag, Arrival* order, Py_ssize_t n_active, bint unsorted, Py_ssize_t j,
                         const double[:, ::1] weights, double theta, double tau_m, double tau_s,
                         Py_ssize_t* taken) noexcept nogil:
    """Causal-set search (docs/model.md §2): walk the arrivals by (time, index), keeping the membrane
    state at the latest arrival, and return the first crossing before the next arrival (or +inf);
    `taken` is set to the number of arrivals walked.  `order` holds them sorted, or with `unsorted`
    in any order: it is then made a heap, from which the arrivals are taken in the same order, only
    as far as the spike."""
    cdef double u = 0.0, current = 0.0, t_now = 0.0, arrival, length, decay_m, rest_m, s
    cdef Py_ssize_t k, i
    cdef Arrival next_arrival
    taken[0] = n_active
    if n_active == 0:
        return INFINITY
    if unsorted:
        for k in range(n_active // 2 - 1, -1, -1):
            _sift_down(order, n_active, k)
    for k in range(n_active):
        next_arrival = _heap_pop(order, n_active - k) if unsorted else order[k]
        i = next_arrival.index
        arrival = next_arrival.time
        if k > 0:
            length = arrival - t_now
            if length > 0.0:
                decay_m = membrane_decay(length, tau_m, &rest_m)
                s = crossing_by(tag, u, current, length, decay_m, theta, tau_m, tau_s)
                if s >= 0.0:
                    taken[0] = k
                    return _after(t_now, s)
                advance_state(&u, &current, length, decay_m, rest_m, tau_m, tau_s, ratio_of(tag))
        current = current + weights[i, j]
        t_now = arrival
    s = crossing_by(tag, u, current, INFINITY, 0.0, theta, tau_m, tau_s)
    return _after(t_now, s) if s >= 0.0 else INFINITY


cdef double _neuron_first_spike(RatioKind kind, Arrival* order, Py_ssize_t n_active, bint unsorted, Py_ssize_t j,
                                const double[:, ::1] weights, double theta, double tau_m, double tau_s,
                                Py_ssize_t* taken) noexcept nogil:
    """`_first_spike` by the solver of `kind`."""
    cdef RatioOne one
    cdef RatioTwo two
    cdef RatioAny other
    if kind == RATIO_ONE:
        return _first_spike(one, order, n_active, unsorted, j, weights, theta, tau_m, tau_s, taken)
    if kind == RATIO_TWO:
        return _first_spike(two, order, n_active, unsorted, j, weights, theta, tau_m, tau_s, taken)
    return _first_spike(other, order, n_active, unsorted, j, weights, theta, tau_m, tau_s, taken)


cdef void _forward_sample(Py_ssize_t b, const double[:, ::1] pre_times,
                          const double[:, ::1] weights, const double[:, ::1] delays,
                          const double[:, :, ::1] arrivals, bint observed,
                          bint shared_order, const double[::1] threshold,
                          const double[::1] tau_m, const double[::1] tau_s,
                          const int[::1] kinds, double[:, ::1] post_times,
                          Arrival* order) noexcept nogil:
    cdef Py_ssize_t n_post = weights.shape[1], j, k, taken
    cdef Py_ssize_t n_active = _sorted_arrivals(b, 0, pre_times, delays, arrivals, observed, order)
    cdef bint heap = False, afresh = False
    for j in range(n_post):
        if afresh:
            _sorted_arrivals(b, j, pre_times, delays, arrivals, observed, order)
        elif j > 0:
            for k in range(n_active):
                order[k].time = _arrival(b, order[k].index, j, pre_times, delays, arrivals, observed)
            # per-synapse arrivals: re-sort the previous neuron's order (nearly sorted, unless the delays
            # scatter it: then each neuron's arrivals are sorted afresh, in n log n steps or fewer)
            if not shared_order and not heap:
                afresh = _insertion_sort(order, n_active) > _FRESH_SORT_MOVES * n_active
        post_times[b, j] = _neuron_first_spike(<RatioKind> kinds[j], order, n_active, heap, j, weights,
                                               threshold[j], tau_m[j], tau_s[j], &taken)
        if j == 0 and not shared_order and n_active >= _HEAP_MIN and 4 * taken < n_active:
            # the first neuron spiked early in its arrivals: the others of this sample take theirs from
            # a heap, only as far as their spikes, instead of sorting them all
            heap = True


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


cdef Py_ssize_t _reference_column(const double[:, ::1] delays):
    """The neuron r whose arrivals t_i + d_ir the layer-wide passes take for every neuron's,
    shifted by c_j (delays that keep one input order: d_ij = d_ir + c_j): the one of the
    smallest |d_0j|, so that no neuron's times are computed from far larger ones (a dendritic
    delay of 1e10 on one neuron would otherwise round away the others' input times)."""
    cdef Py_ssize_t j, reference = 0
    if delays.shape[0] > 0:
        for j in range(1, delays.shape[1]):
            if fabs(delays[0, j]) < fabs(delays[0, reference]):
                reference = j
    return reference


cdef double[::1] _column_shift(const double[:, ::1] delays, Py_ssize_t reference):
    """c_j with d_ij = d_ir + c_j, r the `reference` neuron (delays that keep one input order:
    none, axonal, dendritic)."""
    cdef Py_ssize_t j, n_post = delays.shape[1]
    cdef double[::1] shift = np.zeros(n_post)
    if delays.shape[0] > 0:
        for j in range(n_post):
            shift[j] = delays[0, j] - delays[0, reference]
    return shift


# Relative distance (about 4.5 ulps of |t_j| + |c_j| + |a_i|) within which the layer-wide
# backward takes a spike as too near an arrival to tell their order from shifted times.
cdef double _NEAR = 1e-15


# Inter-arrival intervals per block of the layer-wide walk (see `_walk_layer`).
cdef Py_ssize_t _BLOCK = 8


cdef inline void _accumulate(const double* w, double p, double q, double* p_sum, double* q_sum,
                             Py_ssize_t n) noexcept nogil:
    """Add one input (features p, q; weight row w) to every neuron's sums (a loop the compiler
    vectorises)."""
    cdef Py_ssize_t j
    for j in range(n):
        p_sum[j] = p_sum[j] + w[j] * p
        q_sum[j] = q_sum[j] + w[j] * q


cdef double[::1] _largest_excitation(const double[:, ::1] weights):
    """max(0, max_j w_ij) per input i: a bound on what input i adds to any neuron's current."""
    cdef Py_ssize_t i, j
    cdef double[::1] largest = np.zeros(weights.shape[0])
    for i in range(weights.shape[0]):
        for j in range(weights.shape[1]):
            largest[i] = max(largest[i], weights[i, j])
    return largest


cdef inline bint _flag_hot(ClosedRatio tag, const double* p_sum, const double* q_sum,
                           const double* level, double r, double x, IntervalTest block,
                           double margin, double tau_m, long long* flags,
                           Py_ssize_t n) noexcept nogil:
    """Flag the neurons whose membrane may reach threshold within a block of intervals, given
    their sums at the block's start (reference-relative time r, x = e^{-r/tau_m}), and report
    whether any does.  Over the block the membrane is the trajectory u_pre of the inputs before
    it plus sum_i w_ij k(t - a_i) over the block's inputs, which is at most `margin` =
    max k over the block's span times sum_i max(0, max_j w_ij); so a neuron can cross only if
    u_pre reaches level - margin somewhere in the block: at its start, or (`may_cross` with the
    whole block as interval) at its end or at its maximum inside it."""
    cdef Py_ssize_t j
    cdef double u, current, lowered
    cdef long long hot, any_hot = 0
    for j in range(n):
        state_from_sums(tag, p_sum[j], q_sum[j], r, x, tau_m, &u, &current)
        lowered = level[j] - margin
        hot = (u >= lowered) | may_cross(tag, p_sum[j], q_sum[j], lowered, block)
        flags[j] = hot
        any_hot = any_hot | hot
    return any_hot != 0


cdef inline double _shifted_spike(Py_ssize_t b, Py_ssize_t j, double spike, double s, const Arrival* order,
                                  Py_ssize_t first, Py_ssize_t last, const double[:, ::1] pre_times,
                                  const double[:, ::1] delays) noexcept nogil:
    """`spike`, the crossing s after the inputs order[first:last] (one arrival time) plus the
    column delay of neuron j, made later than each of their arrivals t_i + d_ij as the backward
    computes them: the shift added last can round a crossing within an ulp back onto them."""
    cdef Py_ssize_t k
    cdef double arrival = _arrival(b, order[first].index, j, pre_times, delays, _NO_ARRIVALS, False)
    if s > 0.0 and s <= 1e-15 * (fabs(spike) + fabs(arrival)):
        for k in range(first, last):  # (a few ulps from them: rare, so the check costs nothing otherwise)
            arrival = _arrival(b, order[k].index, j, pre_times, delays, _NO_ARRIVALS, False)
            if not spike > arrival:
                spike = nextafter(arrival, INFINITY)
    return spike


cdef double _own_first_spike(ClosedRatio tag, Py_ssize_t b, Py_ssize_t j, const Arrival* order,
                             Py_ssize_t n_active, const double[:, ::1] pre_times,
                             const double[:, ::1] delays, const double[:, ::1] weights, double theta,
                             double tau_m, double tau_s, Arrival* own_order) noexcept nogil:
    """Neuron j's first spike by the neuron-by-neuron search over its own arrivals t_i + d_ij
    (the inputs of `order`, re-sorted in `own_order`: the shift by c_j may round near-ties
    apart)."""
    cdef Py_ssize_t k, taken
    for k in range(n_active):
        own_order[k].index = order[k].index
        own_order[k].time = _arrival(b, order[k].index, j, pre_times, delays, _NO_ARRIVALS, False)
    _insertion_sort(own_order, n_active)
    return _first_spike(tag, own_order, n_active, False, j, weights, theta, tau_m, tau_s, &taken)


cdef void _walk_layer(ClosedRatio tag, Py_ssize_t b, const Arrival* order, Py_ssize_t n_active,
                      const double[:, ::1] pre_times, const double[:, ::1] delays,
                      const double[:, ::1] weights, const double[::1] excitation,
                      const double[::1] shift, const double[::1] threshold, double tau_m,
                      double tau_s, double[:, ::1] post_times, double* scratch,
                      long long* flags, Arrival* own_order) noexcept nogil:
    """Causal-set search (docs/model.md §2) for every neuron of the layer at once, for inputs
    that reach all neurons in the same order.  One pass over the sorted arrivals keeps each
    neuron's sums P, Q (see _psp.pxd), a block of _BLOCK inter-arrival intervals at a time:
    the block's inputs are added to every neuron (vectorised), then `_flag_hot` bounds each
    neuron's membrane over the block from its sums at the block's start (with
    `excitation[i]` = max(0, max_j w_ij) for the block's inputs), and only the few
    neurons that may reach threshold replay the block input by input, testing each interval
    with `may_cross` and solving with the closed forms on the state at the interval's start
    where that test passes.  The replay takes the sums after the block's last group of tied
    arrivals from the vectorised pass, and a group of more than _BLOCK tied arrivals (e.g. every
    black pixel of an image, coded at the same time) forms a block of its own, so its inputs
    are never replayed one by one.  A neuron that has fired is retired by setting its level to +inf.
    The spike of neuron j is shifted by its column delay c_j (d_ij = d_ir + c_j, r the neuron
    whose arrivals `order` holds).  `own_order` is room for n_active arrivals (for
    `_own_first_spike`)."""
    cdef Py_ssize_t n_post = weights.shape[1], n_pre = weights.shape[0], j, k = 0, end, m, group, last_group
    cdef Py_ssize_t tied_from
    cdef double* p_now = scratch
    cdef double* q_now = scratch + n_post
    cdef double* p_start = scratch + 2 * n_post     # the sums at the block's start
    cdef double* q_start = scratch + 3 * n_post
    cdef double* level = scratch + 4 * n_post
    cdef double* feature_p = scratch + 5 * n_post   # per sorted input: p_i, q_i, x_i
    cdef double* feature_q = feature_p + n_pre
    cdef double* decay_at = feature_q + n_pre
    cdef double t_ref = order[0].time, t_start, t_end, t_now, t_next, r0, x0, x1, p, q
    cdef double u, current, s, spike, block_excitation
    cdef IntervalTest test
    for j in range(n_post):
        p_now[j] = 0.0
        q_now[j] = 0.0
        level[j] = crossing_level(threshold[j])
        post_times[b, j] = INFINITY
    for m in range(n_active):
        r0 = order[m].time - t_ref
        input_features(tag, r0, exp(r0 / tau_m), &feature_p[m], &feature_q[m])
        decay_at[m] = exp(-r0 / tau_m)
    while k < n_active:
        memcpy(p_start, p_now, n_post * sizeof(double))
        memcpy(q_start, q_now, n_post * sizeof(double))
        end = k
        last_group = k
        for group in range(_BLOCK):         # the block: up to _BLOCK groups of tied arrivals
            if end == n_active:
                break
            t_now = order[end].time
            m = end
            while m < n_active and order[m].time == t_now:
                m += 1
            if m - end > _BLOCK and group > 0:
                break                       # a large group of tied arrivals gets a block of its own
            last_group = end
            end = m
            if m - last_group > _BLOCK:
                break
        block_excitation = 0.0
        for m in range(k, end):
            _accumulate(&weights[order[m].index, 0], feature_p[m], feature_q[m], p_now, q_now,
                        n_post)
            block_excitation = block_excitation + excitation[order[m].index]
        t_start = order[k].time
        t_end = order[end].time if end < n_active else INFINITY
        test = interval_test(tag, t_start - t_ref, decay_at[k], t_end - t_ref,
                             decay_at[end] if end < n_active else 0.0, tau_m)
        if _flag_hot(tag, p_start, q_start, level, t_start - t_ref, decay_at[k], test,
                     kernel_bound(tag, t_end - t_start, tau_m) * block_excitation, tau_m, flags,
                     n_post):
            for j in range(n_post):
                if not flags[j]:
                    continue
                p = p_start[j]
                q = q_start[j]
                m = k
                while m < end:   # replay the block for neuron j, interval by interval
                    t_now = order[m].time
                    tied_from = m
                    r0 = t_now - t_ref
                    x0 = decay_at[m]
                    if m == last_group:  # the sums after the block's last group are known
                        p = p_now[j]
                        q = q_now[j]
                        m = end
                    while m < end and order[m].time == t_now:
                        p = p + weights[order[m].index, j] * feature_p[m]
                        q = q + weights[order[m].index, j] * feature_q[m]
                        m += 1
                    t_next = order[m].time if m < n_active else INFINITY
                    x1 = decay_at[m] if m < n_active else 0.0
                    test = interval_test(tag, r0, x0, t_next - t_ref, x1, tau_m)
                    if not may_cross(tag, p, q, level[j], test):
                        continue
                    state_from_sums(tag, p, q, r0, x0, tau_m, &u, &current)
                    if u >= threshold[j]:
                        # at or above threshold at the interval's start, by the sums: a crossing within
                        # rounding of this arrival, before or after it (the sums of a huge weight's
                        # input round u up: its crossing an ulp after it was put on it, and the input
                        # that caused it looked acausal to the backward); the neuron's own search,
                        # which carries u across its arrivals, decides
                        post_times[b, j] = _own_first_spike(tag, b, j, order, n_active, pre_times, delays,
                                                            weights, threshold[j], tau_m, tau_s, own_order)
                        level[j] = INFINITY
                        break
                    s = crossing_by(tag, u, current, t_next - t_now, exp(-(t_next - t_now) / tau_m),
                                    threshold[j], tau_m, tau_s)
                    if s >= 0.0:
                        spike = _after(t_now, s) + shift[j]
                        if shift[j] != 0.0:
                            spike = _shifted_spike(b, j, spike, s, order, tied_from, m, pre_times, delays)
                        post_times[b, j] = spike
                        level[j] = INFINITY
                        break
        k = end


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
    cdef Py_ssize_t n_post = weights.shape[1], b
    cdef int[::1] kinds = _ratio_kinds(tau_m, tau_s, general_solver_only)
    cdef RatioKind walk_kind = RATIO_GENERAL
    cdef Py_ssize_t reference = _reference_column(delays)
    cdef double[::1] shift, excitation
    cdef Py_ssize_t stride = 2 * n_pre + 1, sums_stride = 5 * n_post + 3 * n_pre + 1
    cdef Arrival* orders
    cdef Arrival* order
    cdef double* sums
    cdef long long* flags
    cdef Interrupt interrupt = _no_interrupt()
    if shared_order and layer_walk and not observed and not general_solver_only:
        walk_kind = _layer_kind(tau_m, tau_s)
    shift = _column_shift(delays, reference) if walk_kind != RATIO_GENERAL else _NO_VALUES
    excitation = _largest_excitation(weights) if walk_kind != RATIO_GENERAL else _NO_VALUES
    orders = <Arrival*> malloc(n_threads * stride * sizeof(Arrival))
    sums = <double*> malloc(n_threads * sums_stride * sizeof(double))
    flags = <long long*> malloc(n_threads * (n_post + 1) * sizeof(long long))
    if orders == NULL or sums == NULL or flags == NULL:
        free(orders)
        free(sums)
        free(flags)
        raise MemoryError("forward_layer: could not allocate the arrival buffers")
    try:
        with nogil, parallel(num_threads=n_threads):
            order = orders + threadid() * stride
            for b in prange(n_batch, schedule='guided'):
                if _interrupted(&interrupt, threadid()):
                    continue
                if walk_kind == RATIO_GENERAL or not _walk_sample(
                        walk_kind, b, pre_times, weights, delays, excitation, reference, shift, threshold,
                        tau_m[0], tau_s[0], post_times, order, sums + threadid() * sums_stride,
                        flags + threadid() * (n_post + 1)):
                    _forward_sample(b, pre_times, weights, delays, arrivals, observed, shared_order,
                                    threshold, tau_m, tau_s, kinds, post_times, order)
    finally:
        free(orders)
        free(sums)
        free(flags)
    if interrupt.raised:
        _raise_handlers_exception()


cdef bint _walk_sample(RatioKind kind, Py_ssize_t b, const double[:, ::1] pre_times,
                       const double[:, ::1] weights, const double[:, ::1] delays,
                       const double[::1] excitation, Py_ssize_t reference, const double[::1] shift,
                       const double[::1] threshold, double tau_m, double tau_s,
                       double[:, ::1] post_times, Arrival* order, double* scratch,
                       long long* flags) noexcept nogil:
    """Spike times of sample b by the layer-wide walk over the arrivals at the `reference`
    neuron (each neuron's spike shifted by its `shift`), or False (nothing written) if they
    span more than _SPAN_LIMIT tau_m."""
    cdef RatioOne one
    cdef RatioTwo two
    cdef Py_ssize_t j
    cdef Py_ssize_t n_active = _sorted_arrivals(b, reference, pre_times, delays, _NO_ARRIVALS, False, order)
    if n_active == 0:
        for j in range(post_times.shape[1]):
            post_times[b, j] = INFINITY
    elif order[n_active - 1].time - order[0].time > _SPAN_LIMIT * tau_m:
        return False
    elif kind == RATIO_ONE:
        _walk_layer(one, b, order, n_active, pre_times, delays, weights, excitation, shift, threshold, tau_m, tau_s,
                    post_times, scratch, flags, order + n_active)
    else:
        _walk_layer(two, b, order, n_active, pre_times, delays, weights, excitation, shift, threshold, tau_m, tau_s,
                    post_times, scratch, flags, order + n_active)
    return True


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
    cdef Interrupt interrupt = _no_interrupt()
    if scratch == NULL:
        raise MemoryError("backward_layer: could not allocate scratch buffers")
    try:
        with nogil, parallel(num_threads=n_threads):
            mine = scratch + threadid() * stride
            for slot in prange(n_slots, schedule='dynamic'):
                first = (slot * n_batch) // n_slots
                last = ((slot + 1) * n_batch) // n_slots
                for b in range(first, last):
                    if _interrupted(&interrupt, threadid()):
                        break
                    _backward_sample(b, pre_times, weights, delays, arrivals, observed, tau_m, tau_s,
                                     kinds, post_times, delta_post, grad_weights[slot],
                                     grad_arrivals[slot], grad_threshold[slot], delta_pre,
                                     no_crossing, largest_term, mine, mine + n_pre + 1)
    finally:
        free(scratch)
    if interrupt.raised:
        _raise_handlers_exception()


cdef double _sample_exponentials(Py_ssize_t b, const double[:, ::1] pre_times,
                                 const double[:, ::1] delays, Py_ssize_t reference,
                                 const double[::1] shift,
                                 const double[:, ::1] post_times, const double[:, ::1] delta_post,
                                 double tau_m, double[:, ::1] arrival, double[:, ::1] growth,
                                 double[:, ::1] spike, double[:, ::1] decay, double[::1] last_spike) noexcept nogil:
    """Per-sample factors of x_ij = e^{-(t_j - a_ij)/tau_m} = decay_j growth_i for the layer-wide
    backward pass, measured from the sample's first arrival t_ref: arrival a_i = t_i + d_ir at the
    `reference` neuron r and
    growth_i = e^{(a_i - t_ref)/tau_m} (0 if the input is silent); spike_j = t_j - c_j, the spike
    time seen against a_i (-inf where no gradient is wanted: silent neuron or zero dL/dt_j) and
    decay_j = e^{-(spike_j - t_ref)/tau_m} (0 unless spike_j > t_ref); last_spike = max_j spike_j.
    Returns the span of these times in units of tau_m (0 without arrivals)."""
    cdef Py_ssize_t i, j
    cdef double t_ref = INFINITY, last = -INFINITY, latest_spike = -INFINITY, a, t
    for i in range(pre_times.shape[1]):
        a = pre_times[b, i] + delays[i, reference]
        arrival[b, i] = a
        if isfinite(a):
            t_ref = min(t_ref, a)
            last = max(last, a)
    if not isfinite(t_ref):
        t_ref = 0.0
    for i in range(pre_times.shape[1]):
        a = arrival[b, i]
        growth[b, i] = exp((a - t_ref) / tau_m) if isfinite(a) else 0.0
    for j in range(post_times.shape[1]):
        t = post_times[b, j]
        if isfinite(t) and delta_post[b, j] != 0.0:
            t = t - shift[j]
            spike[b, j] = t
            decay[b, j] = exp(-(t - t_ref) / tau_m) if t > t_ref else 0.0
            last = max(last, t)
            latest_spike = max(latest_spike, t)
        else:
            spike[b, j] = -INFINITY
            decay[b, j] = 0.0
    last_spike[b] = latest_spike
    return (last - t_ref) / tau_m if isfinite(last) else 0.0


cdef inline double _sum(const double* values, Py_ssize_t n) noexcept nogil:
    """values[0] + ... + values[n-1] in 16 interleaved partial sums, added in a fixed order at the
    end: the inner loop is four independent vector additions instead of one chain of n scalar
    additions (the same order for every thread count)."""
    cdef double part[16]
    cdef double total = 0.0
    cdef Py_ssize_t j = 0, lane
    for lane in range(16):
        part[lane] = 0.0
    while j + 16 <= n:
        for lane in range(16):
            part[lane] = part[lane] + values[j + lane]
        j += 16
    while j < n:
        part[j % 16] = part[j % 16] + values[j]
        j += 1
    for lane in range(16):
        total = total + part[lane]
    return total


cdef bint _neuron_scales(ClosedRatio tag, Py_ssize_t b, const double[:, ::1] weights,
                         double tau_m, const double[:, ::1] arrival, const double[:, ::1] growth,
                         double[:, ::1] spike, const double[:, ::1] decay,
                         const double[::1] shift, bint shifted,
                         const double[:, ::1] delta_post, double[:, ::1] scale,
                         double[:, ::1] column, bint with_column, signed char[:, ::1] no_crossing,
                         double[:, ::1] largest_term, double* scratch) noexcept nogil:
    """Per-neuron terms of one sample (docs/model.md §4), input row by input row with k(t_j - a_i)
    and k'(t_j - a_i) from x = decay_j growth_i: u'(t_j) = sum_i w_ij k'_ij and max_i |k_ij|;
    then scale_j = dL/dt_j / u'(t_j), max_i |scale_j k_ij| = |scale_j| max_i |k_ij| (rounding
    is monotone) and, if `with_column`, sum_i scale_j w_ij k'_ij = scale_j u'(t_j).  A neuron
    without an upward crossing gets scale 0 and spike -inf.
    Where the neurons' arrivals are shifted (`shifted`: some c_j != 0), returns False if a
    spike lies within rounding of an arrival (t_j - c_j against a_i, |t_j| + |c_j| + |a_i| ulps):
    whether that input came before the spike may then read otherwise than from the neuron's own
    arrival t_i + d_ij (a huge weight's crossing is the next double after its arrival)."""
    cdef Py_ssize_t n_pre = weights.shape[0], n_post = weights.shape[1], i, j
    cdef double* u_slope = scratch
    cdef double* kernel_max = scratch + n_post
    cdef double* rounding = scratch + 2 * n_post   # |t_j - c_j - a_i| below rounding[j] + _NEAR |a_i|: near
    cdef const double* w
    cdef const double* t = &spike[b, 0]
    cdef const double* x = &decay[b, 0]
    cdef double* sc = &scale[b, 0]
    cdef double a, e, slope, kernel, slack, last = -INFINITY, widest = 0.0
    cdef long long near = 0
    for j in range(n_post):
        u_slope[j] = 0.0
        kernel_max[j] = 0.0
        last = max(last, t[j])
        rounding[j] = _NEAR * (fabs(t[j]) + fabs(shift[j])) if shifted and isfinite(t[j]) else -1.0
        widest = max(widest, rounding[j])
    for i in range(n_pre):
        e = growth[b, i]
        a = arrival[b, i]
        if e == 0.0:
            continue
        if not (a < last):
            near = near | (shifted and a - last <= widest + _NEAR * fabs(a))
            continue
        if shifted:
            slack = _NEAR * fabs(a)
            for j in range(n_post):
                near = near | (fabs(t[j] - a) <= rounding[j] + slack)
        w = &weights[i, 0]
        for j in range(n_post):
            # every operand is loaded and evaluated unconditionally, then selected: the
            # compiler turns the loop into plain vector arithmetic and masks
            slope = w[j] * closed_kernel_and_slope(tag, x[j] * e, t[j] - a, tau_m, &kernel)
            u_slope[j] += slope if a < t[j] else 0.0
            kernel_max[j] = max(kernel_max[j], fabs(kernel) if a < t[j] else 0.0)
    if near:
        return False
    for j in range(n_post):
        sc[j] = 0.0
        if t[j] == -INFINITY:
            continue
        if u_slope[j] > 0.0:
            sc[j] = delta_post[b, j] / u_slope[j]
            largest_term[b, j] = fabs(sc[j]) * kernel_max[j]
            if with_column:
                column[b, j] = sc[j] * u_slope[j]
        else:
            no_crossing[b, j] = 1   # no upward crossing at t in the model: no gradient
            spike[b, j] = -INFINITY
    return True


# Input rows that `_input_gradients` takes together, so that each sample's per-neuron arrays are
# read from memory once per block of rows and then from the L1 cache.
cdef Py_ssize_t _ROW_BLOCK = 4


cdef void _input_gradients(ClosedRatio tag, Py_ssize_t first, const double[:, ::1] weights,
                           double tau_m, const double[:, ::1] arrival, const double[:, ::1] growth,
                           const double[:, ::1] spike, const double[:, ::1] decay,
                           const double[:, ::1] scale, const double[::1] last_spike,
                           double[:, ::1] grad_weights, double[:, ::1] delta_pre, bint with_pre,
                           double* terms) noexcept nogil:
    """Everything that inputs first, ..., first + _ROW_BLOCK - 1 receive: dL/dw_ij =
    -sum_b scale_bj k_bij, summed in sample order, and, if `with_pre`, dL/dt_bi =
    sum_j scale_bj w_ij k'_bij per sample (docs/model.md §4)."""
    cdef Py_ssize_t n_post = weights.shape[1], last = min(first + _ROW_BLOCK, weights.shape[0])
    cdef Py_ssize_t b, i, j
    cdef double* acc
    cdef const double* w
    cdef const double* t
    cdef const double* x
    cdef const double* sc
    cdef double a, e, slope, kernel
    for i in range(first, last):
        for j in range(n_post):
            grad_weights[i, j] = 0.0
    for b in range(arrival.shape[0]):
        t = &spike[b, 0]
        x = &decay[b, 0]
        sc = &scale[b, 0]
        for i in range(first, last):
            e = growth[b, i]
            a = arrival[b, i]
            if e == 0.0 or not (a < last_spike[b]):
                continue
            acc = &grad_weights[i, 0]
            w = &weights[i, 0]
            if not with_pre:    # the same dL/dw without the slopes
                for j in range(n_post):
                    closed_kernel_and_slope(tag, x[j] * e, t[j] - a, tau_m, &kernel)
                    kernel = sc[j] * kernel
                    acc[j] -= kernel if a < t[j] else 0.0
                continue
            for j in range(n_post):
                slope = closed_kernel_and_slope(tag, x[j] * e, t[j] - a, tau_m, &kernel)
                kernel = sc[j] * kernel
                slope = sc[j] * w[j] * slope
                acc[j] -= kernel if a < t[j] else 0.0
                terms[j] = slope if a < t[j] else 0.0
            delta_pre[b, i] = _sum(terms, n_post)


def backward_layer_shared(const double[:, ::1] pre_times, const double[:, ::1] weights,
                          const double[:, ::1] delays, const double[::1] tau_m,
                          const double[::1] tau_s, const double[:, ::1] post_times,
                          const double[:, ::1] delta_post, double[:, ::1] grad_weights,
                          double[:, ::1] scale, double[:, ::1] column, bint with_column,
                          double[:, ::1] delta_pre, bint with_pre, signed char[:, ::1] no_crossing,
                          double[:, ::1] largest_term, int n_threads):
    """Layer-wide backward pass for inputs that reach every neuron in the same order
    (d_ij = d_ir + c_j) when all neurons share tau_m = tau_s or tau_m = 2 tau_s, no
    sample's times span more than _SPAN_LIMIT tau_m, and (where some c_j != 0) no spike lies
    within rounding of an arrival.  Returns False, having written nothing but `scale`,
    `column`, `no_crossing` and `largest_term` (for the caller to discard), where these
    conditions do not hold (the caller then uses `backward_layer`).

    Writes dL/dw summed over the batch into `grad_weights`, and per (sample, neuron)
    `scale` = dL/dt_j / u'(t_j) (dL/dtheta_j is its sum over samples), `column` =
    sum_i dL/da_ij if `with_column` (the dendritic delay gradient), `no_crossing` and
    `largest_term` as `backward_layer` does; `delta_pre` gets dL/dt_pre if `with_pre` (else it is
    left as it is, and the pass skips the slopes k' it alone needs).  Every sum runs in a
    fixed order, so the results do not depend on the number of threads.  k and k' come from
    products of per-sample exponentials (`_sample_exponentials`) instead of one exp per synapse;
    the relative rounding of x is then a few ulps times (1 + |t - t_ref|/tau_m), which for
    tau_m = 2 tau_s bounds the error of k = K (x - x^2) by about that many ulps of K, the same
    form of bound as for x = exp(-s/tau_m) per synapse.
    """
    cdef Py_ssize_t n_batch = pre_times.shape[0], n_pre = weights.shape[0]
    cdef Py_ssize_t n_post = weights.shape[1], b, block, j
    cdef RatioKind kind = _layer_kind(tau_m, tau_s)
    cdef Py_ssize_t reference = _reference_column(delays)
    cdef double[::1] shift, span, last_spike
    cdef double[:, ::1] arrival, growth, spike, decay
    cdef Py_ssize_t stride = 3 * n_post + 1
    cdef double* scratch
    cdef RatioOne one
    cdef RatioTwo two
    cdef Interrupt interrupt = _no_interrupt()
    cdef bint shifted
    cdef Py_ssize_t n_near = 0   # samples with a spike near an arrival (a prange reduction)
    if kind == RATIO_GENERAL:
        return False
    shift = _column_shift(delays, reference)
    shifted = False
    for j in range(n_post):
        shifted = shifted or shift[j] != 0.0
    span = np.zeros(n_batch)
    arrival = np.empty((n_batch, n_pre))
    growth = np.empty((n_batch, n_pre))
    spike = np.empty((n_batch, n_post))
    decay = np.empty((n_batch, n_post))
    last_spike = np.empty(n_batch)
    with nogil, parallel(num_threads=n_threads):
        for b in prange(n_batch, schedule='static'):
            span[b] = _sample_exponentials(b, pre_times, delays, reference, shift, post_times, delta_post,
                                           tau_m[0], arrival, growth, spike, decay, last_spike)
    for b in range(n_batch):
        if span[b] > _SPAN_LIMIT:
            return False
    scratch = <double*> malloc(n_threads * stride * sizeof(double))
    if scratch == NULL:
        raise MemoryError("backward_layer_shared: could not allocate scratch buffers")
    try:
        with nogil, parallel(num_threads=n_threads):
            for b in prange(n_batch, schedule='guided'):
                if _interrupted(&interrupt, threadid()):
                    continue
                if kind == RATIO_ONE:
                    if not _neuron_scales(one, b, weights, tau_m[0], arrival, growth, spike, decay, shift,
                                          shifted, delta_post, scale, column, with_column, no_crossing,
                                          largest_term, scratch + threadid() * stride):
                        n_near += 1
                else:
                    if not _neuron_scales(two, b, weights, tau_m[0], arrival, growth, spike, decay, shift,
                                          shifted, delta_post, scale, column, with_column, no_crossing,
                                          largest_term, scratch + threadid() * stride):
                        n_near += 1
        if interrupt.raised:
            _raise_handlers_exception()
        if n_near > 0:  # (the per-synapse pass compares each spike with the neuron's own arrivals)
            return False
        with nogil, parallel(num_threads=n_threads):
            for block in prange((n_pre + _ROW_BLOCK - 1) // _ROW_BLOCK, schedule='guided'):
                if _interrupted(&interrupt, threadid()):
                    continue
                if kind == RATIO_ONE:
                    _input_gradients(one, block * _ROW_BLOCK, weights, tau_m[0], arrival, growth,
                                     spike, decay, scale, last_spike, grad_weights, delta_pre,
                                     with_pre, scratch + threadid() * stride)
                else:
                    _input_gradients(two, block * _ROW_BLOCK, weights, tau_m[0], arrival, growth,
                                     spike, decay, scale, last_spike, grad_weights, delta_pre,
                                     with_pre, scratch + threadid() * stride)
    finally:
        free(scratch)
    if interrupt.raised:
        _raise_handlers_exception()
    return True


def arrival_order(const double[::1] times):
    """Indices of the finite `times` in the order the kernels walk them, by (time, index)
    (exposed for testing the sorts)."""
    cdef Py_ssize_t n = 0, i
    cdef Arrival* order = <Arrival*> malloc(max(1, 2 * times.shape[0]) * sizeof(Arrival))
    if order == NULL:
        raise MemoryError("arrival_order: could not allocate")
    try:
        for i in range(times.shape[0]):
            if isfinite(times[i]):
                order[n].time = times[i]
                order[n].index = i
                n += 1
        _sort_arrivals(order, n, order + n)
        return np.array([order[i].index for i in range(n)], dtype=np.intp)
    finally:
        free(order)


def first_crossing_time(double u0, double current, double length, double theta,
                        double tau_m, double tau_s, bint general_solver_only=False):
    """First s in [0, length] at which the state (u0, current) reaches theta, or -1 (testing)."""
    cdef RatioKind kind = RATIO_GENERAL if general_solver_only else ratio_kind(tau_m, tau_s)
    return first_crossing(u0, current, length, exp(-length / tau_m), theta, tau_m, tau_s, kind)


def lambert_w0_real(double x):
    """Principal branch of the Lambert W function for real x >= -1/e (exposed for testing)."""
    return lambert_w0(x)


def lambert_w0_values(const double[::1] x):
    """W0 of every element of `x` (NaN below -1/e), as a new array."""
    cdef Py_ssize_t k, n = x.shape[0]
    w_array = np.empty(n)
    cdef double[::1] w = w_array
    with nogil:
        for k in range(n):
            w[k] = lambert_w0(x[k])
    return w_array
