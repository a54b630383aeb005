# Inline, nogil building blocks of the LIF neuron with exponential synaptic current (C_m = 1).
#
# State convention: between two input arrivals the neuron is described by (u, I), the membrane
# potential and the synaptic current at the start of the interval.  For an elapsed time s:
#     I(s) = I e^{-s/tau_s}
#     u(s) = u e^{-s/tau_m} + I k(s)
# with the PSP kernel k of docs/model.md §1 (Göltz et al. 2021, eq. 2; Göltz, Weber et al. 2025).

from libc.math cimport exp, expm1, log, log1p, sqrt, fabs, isfinite

# Which closed form a neuron's time constants allow (docs/model.md §2).
cdef enum RatioKind:
    RATIO_ONE = 0       # tau_m == tau_s: Lambert W
    RATIO_TWO = 1       # tau_m == 2 tau_s: quadratic in e^{-t/tau_m}
    RATIO_GENERAL = 2   # anything else: bracketed, safeguarded Newton


cdef inline RatioKind ratio_kind(double tau_m, double tau_s) noexcept nogil:
    if tau_m == tau_s:
        return RATIO_ONE
    if tau_m == 2.0 * tau_s:
        return RATIO_TWO
    return RATIO_GENERAL


cdef inline double psp_kernel(double s, double tau_m, double tau_s) noexcept nogil:
    """k(s) for s >= 0; K (e^{-s/tau_m} - e^{-s/tau_s}) written with expm1 so it stays exact
    as tau_m -> tau_s, where it tends to s e^{-s/tau}."""
    cdef double c
    if tau_m == tau_s:
        return s * exp(-s / tau_m)
    c = 1.0 / tau_s - 1.0 / tau_m
    return exp(-s / tau_m) * (-expm1(-s * c)) / c


cdef inline double psp_kernel_slope(double s, double kernel, double tau_m, double tau_s) noexcept nogil:
    """k'(s) = -k(s)/tau_m + e^{-s/tau_s}: the membrane ODE driven by a unit current."""
    return -kernel / tau_m + exp(-s / tau_s)


cdef inline double lambert_w0(double x) noexcept nogil:
    """Principal branch W0(x) for real x >= -1/e, by Halley's iteration.

    Initial guesses: branch-point series near -1/e (Corless et al. 1996, eq. 4.22), log1p(x)
    for moderate x, log(x) - log(log(x)) for large x.  Returns NaN for x < -1/e.
    """
    cdef double w, p, ew, f, wp1
    cdef int it
    if x < -0.36787944117144233:
        if x > -0.36787944117144233 - 1e-15:
            return -1.0
        return 0.0 / 0.0
    if x == 0.0:
        return 0.0
    if x < -0.25:
        p = sqrt(2.0 * (2.718281828459045 * x + 1.0))
        w = -1.0 + p - p * p / 3.0 + 11.0 / 72.0 * p * p * p
    elif x < 3.0:
        w = log1p(x)
    else:
        w = log(x) - log(log(x))
    for it in range(50):
        ew = exp(w)
        f = w * ew - x
        wp1 = w + 1.0
        if wp1 == 0.0:
            break
        p = f / (ew * wp1 - (w + 2.0) * f / (2.0 * wp1))
        w = w - p
        if fabs(p) <= 1e-15 * (1.0 + fabs(w)):
            break
    return w


cdef inline double step_from_start_slope(double u0, double i0, double theta,
                                        double tau_m) noexcept nogil:
    """s = (theta - u0) / u'(0) with u'(0) = i0 - u0 / tau_m, for a membrane rising at the start.

    The crossing of a membrane that starts within ulps of theta, where the exact root rounds to
    s <= 0 (docs/model.md §2); it keeps the crossing after the start, so its input stays causal.
    """
    return (theta - u0) * tau_m / (i0 * tau_m - u0)


cdef inline double crossing_ratio_one(double u0, double i0, double length, double theta,
                                      double tau) noexcept nogil:
    """First s in [0, length] with (u0 + i0 s) e^{-s/tau} = theta, or -1 (docs/model.md §2, Lambert W).

    With z = s + u0/i0 the condition is (-z/tau) e^{-z/tau} = -(theta/(tau i0)) e^{-u0/(i0 tau)};
    the earlier root is the principal branch.  Assumes u0 < theta and theta > 0.  A membrane
    rising at the start (i0 tau > u0) that reaches theta does so at s > 0: a root at or below 0
    is rounding (the start within ulps of the crossing, e.g. a huge weight's input), and the
    crossing is taken from the membrane's slope at the start, s = (theta - u0) / u'(0), which
    keeps it after the start (the input that caused it stays causal).
    """
    cdef double arg, s
    if i0 <= 0.0:
        return -1.0
    arg = -(theta / (tau * i0)) * exp(-u0 / (i0 * tau))
    if not (arg >= -0.36787944117144233):
        return -1.0
    s = -tau * lambert_w0(arg) - u0 / i0
    if s <= 0.0:
        return step_from_start_slope(u0, i0, theta, tau) if i0 * tau > u0 else -1.0
    if s > length:
        return -1.0
    return s


cdef inline double crossing_ratio_two(double u0, double i0, double decay_end, double theta,
                                      double tau_m) noexcept nogil:
    """First s in [0, length] for tau_m = 2 tau_s, or -1 (docs/model.md §2, quadratic form).

    With x = e^{-s/tau_m} and K = tau_m: u = (u0 + i0 K) x - i0 K x^2, so the crossing is the
    larger root of i0 K x^2 - (u0 + i0 K) x + theta = 0.  `decay_end` = e^{-length/tau_m} (0 for
    an open interval), so s <= length reads x >= decay_end.  s = -tau_m ln(1 - y) is taken from
    y = 1 - x = 2 (theta - u0) / (i0 K - u0 + sqrt(disc)), the other form of the same root, so that
    a crossing soon after the interval's start keeps its relative precision (1 - x cancels).
    Assumes u0 < theta and theta > 0.  A membrane rising at the start (a > u0) that reaches
    theta does so at s > 0: a root x > 1 is rounding of b = u0 + a (the start within ulps of
    the crossing, e.g. a huge weight's input); the crossing is then taken from y, and should
    that give no s > 0, from the membrane's slope at the start, s = (theta - u0) / u'(0).
    """
    cdef double a = i0 * tau_m
    cdef double b = u0 + a
    cdef double disc, root, x, below, y
    if a <= 0.0 or b <= 0.0:
        return -1.0
    disc = b * b - 4.0 * a * theta
    if isfinite(disc) and b > 1e-145:
        if disc < 0.0:
            return -1.0
        root = sqrt(disc)
    else:  # b * b overflowed (weights ~1e154 and more) or underflowed: the same root, scaled by b
        disc = 1.0 - 4.0 * (a / b) * (theta / b)
        if disc < 0.0:
            return -1.0
        root = b * sqrt(disc)
    x = (b + root) / (2.0 * a)
    if x > 1.0 and not a > u0:  # (falling at the start: the crossing was before it)
        return -1.0
    if x < decay_end or x <= 0.0:
        return -1.0
    below = (a - u0) + root
    y = 2.0 * (theta - u0) / below if below > 0.0 else 1.0
    s = -tau_m * log1p(-y) if y < 1.0 else -tau_m * log(x)
    if s > 0.0:
        return s
    return step_from_start_slope(u0, i0, theta, tau_m) if a > u0 else 0.0


cdef inline double membrane(double s, double u0, double i0, double tau_m, double tau_s) noexcept nogil:
    return u0 * exp(-s / tau_m) + i0 * psp_kernel(s, tau_m, tau_s)


cdef inline double crossing_general(double u0, double i0, double length, double theta,
                                    double tau_m, double tau_s) noexcept nogil:
    """First s in [0, length] with u(s) = theta for any tau_m, tau_s, or -1 (docs/model.md §2).

    u(s) = c_m e^{-s/tau_m} - c_s e^{-s/tau_s} (or (u0 + i0 s) e^{-s/tau} if tau_m == tau_s) has
    at most one extremum; it splits [0, length] into monotone pieces.  The increasing piece that
    reaches theta brackets the root, which a Newton iteration safeguarded by bisection finds to
    machine precision.
    """
    cdef double k_gain, c_s, relative_u0
    cdef double s_ext = -1.0, lo, hi, s, u, du, step
    cdef int it
    cdef bint rising_at_start = (-u0 / tau_m + i0) > 0.0
    if tau_m == tau_s:
        # u'(s) = (i0 - (u0 + i0 s)/tau) e^{-s/tau} vanishes at s = tau - u0/i0
        if i0 != 0.0:
            s_ext = tau_m - u0 / i0
    else:
        # u' = 0 at s = K ln((c_s tau_m) / (c_m tau_s)), K = tau_m tau_s / (tau_m - tau_s), c_s = i0 K,
        # c_m = u0 + c_s, written as K (ln(1 + (tau_m - tau_s)/tau_s) - ln(1 + u0/c_s)): with tau_m
        # within a few ulps of tau_s, K ~ 1e15 and the plain logarithm of the ratio was rounding noise
        # (a wrong bracket: late or missed spikes).  tau_m - tau_s is exact there.
        k_gain = tau_s * (tau_m / (tau_m - tau_s))   # (tau_m tau_s overflows for time units ~1e155)
        c_s = i0 * k_gain
        if c_s != 0.0:
            relative_u0 = u0 / c_s
            if relative_u0 > -1.0:
                s_ext = k_gain * (log1p((tau_m - tau_s) / tau_s) - log1p(relative_u0))
    if not (s_ext > 0.0 and s_ext < length):
        s_ext = -1.0
    if s_ext > 0.0:
        if rising_at_start:          # maximum: the rising piece is [0, s_ext]
            lo = 0.0
            hi = s_ext
        else:                        # minimum: the rising piece is [s_ext, length]
            lo = s_ext
            hi = length
    else:                            # monotone on [0, length]
        lo = 0.0
        hi = length
    if not isfinite(hi):
        return -1.0
    if membrane(hi, u0, i0, tau_m, tau_s) < theta:
        return -1.0
    if membrane(lo, u0, i0, tau_m, tau_s) >= theta:
        return lo
    s = 0.5 * (lo + hi)
    for it in range(100):
        u = membrane(s, u0, i0, tau_m, tau_s) - theta
        if u == 0.0:
            return s
        if u < 0.0:
            lo = s
        else:
            hi = s
        du = -(u + theta) / tau_m + i0 * exp(-s / tau_s)
        step = u / du if du > 0.0 else 0.0
        if du > 0.0 and lo < s - step < hi:
            s = s - step
        else:
            step = s - 0.5 * (lo + hi)
            s = 0.5 * (lo + hi)
        # (relative to tau_s: times in seconds, tau_s ~ 1e-6, need it; the same test for tau_s = 1)
        if fabs(step) <= 1e-15 * (tau_s + s) or hi - lo <= 1e-15 * (tau_s + s):
            return s
    return s


# Compile-time choice of a solver: loops over intervals or inputs are specialised for each ratio
# (Cython fused types over empty tags), so that they carry no branch and take a closed form inline
# (the general solver, inlined beside them, made the crossing too large for the compiler to inline).
cdef struct RatioOne:      # tau_m == tau_s
    char unused
cdef struct RatioTwo:      # tau_m == 2 tau_s
    char unused
cdef struct RatioAny:      # any ratio: the bracketed solver
    char unused
ctypedef fused ClosedRatio:
    RatioOne
    RatioTwo
ctypedef fused NeuronRatio:
    RatioOne
    RatioTwo
    RatioAny


cdef inline RatioKind ratio_of(NeuronRatio tag) noexcept nogil:
    if NeuronRatio is RatioOne:
        return RATIO_ONE
    elif NeuronRatio is RatioTwo:
        return RATIO_TWO
    else:
        return RATIO_GENERAL


cdef inline double crossing_by(NeuronRatio tag, double u0, double i0, double length, double decay_m,
                               double theta, double tau_m, double tau_s) noexcept nogil:
    """First threshold crossing s in [0, length] (length may be +inf) of the state (u0, i0), or -1,
    by the solver of `tag`; `decay_m` = e^{-length/tau_m}.  A state at or above theta has crossed
    (within rounding, at the end of the interval before, whose solver put it an ulp beyond): s = 0."""
    if u0 >= theta:
        return 0.0
    if NeuronRatio is RatioOne:
        return crossing_ratio_one(u0, i0, length, theta, tau_m)
    elif NeuronRatio is RatioTwo:
        return crossing_ratio_two(u0, i0, decay_m, theta, tau_m)
    else:
        return crossing_general(u0, i0, length, theta, tau_m, tau_s)


cdef inline double first_crossing(double u0, double i0, double length, double decay_m, double theta,
                                  double tau_m, double tau_s, RatioKind kind) noexcept nogil:
    """`crossing_by` with the solver of `kind`, chosen at run time."""
    cdef RatioOne one
    cdef RatioTwo two
    cdef RatioAny other
    if kind == RATIO_ONE:
        return crossing_by(one, u0, i0, length, decay_m, theta, tau_m, tau_s)
    if kind == RATIO_TWO:
        return crossing_by(two, u0, i0, length, decay_m, theta, tau_m, tau_s)
    return crossing_by(other, u0, i0, length, decay_m, theta, tau_m, tau_s)


cdef inline double membrane_decay(double length, double tau_m, double* rest) noexcept nogil:
    """e^{-length/tau_m}, and 1 minus it in `rest`, each within about an ulp, from one exponential:
    above 1/2 the decay is 1 + expm1 (1 - e^{-x} would cancel for a short interval: an error of
    ~1e-16 tau_m / length per interval, which many short intervals between strong inputs added up
    to 1e-14), below it `rest` is 1 - e^{-x} (no cancellation)."""
    cdef double x = -length / tau_m
    cdef double decay
    if x < -0.6931471805599453:  # (-ln 2)
        decay = exp(x)
        rest[0] = 1.0 - decay
        return decay
    rest[0] = -expm1(x)
    return 1.0 - rest[0]


cdef inline void advance_state(double* u, double* current, double length, double decay_m,
                               double rest_m, double tau_m, double tau_s, RatioKind kind) noexcept nogil:
    """Propagate (u, I) by `length` with no new input; `decay_m` = e^{-length/tau_m} and `rest_m`
    = 1 - decay_m, as `membrane_decay` gives them.  The closed-form ratios reuse them
    (e^{-L/tau_s} = decay_m^2 and K (x - x^2) = K x (1 - x) for tau_m = 2 tau_s)."""
    cdef double decay_s
    if kind == RATIO_ONE:
        u[0] = u[0] * decay_m + current[0] * (length * decay_m)  # (I L overflows for long gaps: inf x 0)
        current[0] = current[0] * decay_m
    elif kind == RATIO_TWO:
        decay_s = decay_m * decay_m
        u[0] = u[0] * decay_m + current[0] * tau_m * (decay_m * rest_m)
        current[0] = current[0] * decay_s
    else:
        u[0] = u[0] * decay_m + current[0] * psp_kernel(length, tau_m, tau_s)
        current[0] = current[0] * exp(-length / tau_s)


cdef inline double closed_kernel_and_slope(ClosedRatio tag, double x, double s, double tau_m,
                                           double* kernel) noexcept nogil:
    """Store k(s) in `kernel` and return k'(s), given x = e^{-s/tau_m} (docs/model.md §1).
    tau_m = tau_s: k = s x, k' = x - k/tau_m; tau_m = 2 tau_s (K = tau_m): k = K (x - x^2),
    k' = 2 x^2 - x.  No transcendental call, so the caller may form x as a product of
    per-input and per-neuron exponentials."""
    if ClosedRatio is RatioOne:
        kernel[0] = s * x
        return x - kernel[0] / tau_m
    else:
        # (x - x^2 cancels for s << tau_m: the kernel's error stays within a few ulps of K, a relative
        # error of ~1e-16 tau_m / s; expm1 here would cost the backward's vectorised loop a call per synapse)
        kernel[0] = tau_m * (x - x * x)
        return 2.0 * x * x - x


cdef inline double kernel_and_slope(double s, double tau_m, double tau_s, RatioKind kind,
                                    double* kernel) noexcept nogil:
    """Store k(s) in `kernel` and return k'(s) = -k(s)/tau_m + e^{-s/tau_s}, with one exp for
    the closed-form ratios."""
    cdef RatioOne one
    cdef RatioTwo two
    if kind == RATIO_ONE:
        return closed_kernel_and_slope(one, exp(-s / tau_m), s, tau_m, kernel)
    if kind == RATIO_TWO:
        return closed_kernel_and_slope(two, exp(-s / tau_m), s, tau_m, kernel)
    kernel[0] = psp_kernel(s, tau_m, tau_s)
    return psp_kernel_slope(s, kernel[0], tau_m, tau_s)


# Sums over the causal set (docs/model.md §2, closed forms; Göltz et al. 2021, Methods).  With a
# reference time t_ref, r = t - t_ref, x = e^{-r/tau_m} and E_i = e^{(a_i - t_ref)/tau_m} of every
# input that has arrived, the membrane of a neuron is a function of two sums P = sum_i w_i p_i,
# Q = sum_i w_i q_i over its inputs (K = tau_m for tau_m = 2 tau_s):
#     tau_m = 2 tau_s:  (p_i, q_i) = (E_i, E_i^2),             u = K x (P - Q x),  I = Q x^2
#     tau_m = tau_s:    (p_i, q_i) = (E_i, (a_i - t_ref) E_i), u = x (P r - Q),    I = P x
# Every neuron that sees the inputs in the same order accumulates its sums from the same (p_i, q_i),
# so a whole layer is walked at once with no transcendental call per synapse.

cdef struct IntervalTest:
    # Coefficients of `may_cross` for the interval [r0, r1] between two arrivals (r1 = +inf after
    # the last one, where x1 = 0).
    double end_p        # u(r1) = end_p P - end_q Q
    double end_q
    double vertex_lo    # the membrane's maximum lies in the interval iff G > 0 and
    double vertex_hi    # vertex_lo G <= H <= vertex_hi G; (G, H) = (Q, P) (ratio 2), (P, Q) (1)
    double peak         # bound on the maximum's height per unit of the sums


cdef inline void input_features(ClosedRatio tag, double shifted, double growth, double* p,
                                double* q) noexcept nogil:
    """(p_i, q_i) of an input that arrives `shifted` = a_i - t_ref after the reference time, with
    `growth` = e^{shifted/tau_m}."""
    p[0] = growth
    if ClosedRatio is RatioOne:
        q[0] = shifted * growth
    else:
        q[0] = growth * growth


cdef inline IntervalTest interval_test(ClosedRatio tag, double r0, double x0, double r1, double x1,
                                       double tau_m) noexcept nogil:
    """`may_cross` coefficients for [r0, r1] (reference-relative times, x = e^{-r/tau_m})."""
    cdef IntervalTest test
    if ClosedRatio is RatioOne:
        # u(r) = e^{-r/tau} (P r - Q): extremum at r = tau + Q/P, a maximum P tau e^{-r/tau}
        # when P > 0
        test.end_p = x1 * r1 if x1 > 0.0 else 0.0
        test.end_q = x1
        test.vertex_lo = r0 - tau_m
        test.vertex_hi = r1 - tau_m
        test.peak = tau_m * x0
    else:
        # u(x) = K (P x - Q x^2): extremum at x = P/(2Q), a maximum K P^2/(4Q) when Q > 0
        test.end_p = tau_m * x1
        test.end_q = tau_m * x1 * x1
        test.vertex_lo = 2.0 * x1
        test.vertex_hi = 2.0 * x0
        test.peak = 0.25 * tau_m
    return test


cdef inline double crossing_level(double theta) noexcept nogil:
    """The level `may_cross` compares with: theta lowered by a relative 1e-9, far more than the
    few ulps of rounding in the sums, so that an interval in which the exact solver finds a
    crossing is never rejected."""
    return theta * (1.0 - 1e-9)


cdef inline bint may_cross(ClosedRatio tag, double p_sum, double q_sum, double level,
                           IntervalTest test) noexcept nogil:
    """Necessary condition for a threshold crossing of the membrane given by the sums in the
    interval of `test`, without transcendental call: either u(r1) >= level, or the membrane's
    maximum lies inside the interval and reaches level (= crossing_level(theta)).  With level =
    +inf (a neuron that has fired) it is false.  (For tau_m = 2 tau_s the maximum's height is
    compared as P peak (P/Q), bounded because P/Q <= 2 x0 there: P^2 peak against level Q would
    overflow on one side first for huge weights and thresholds, and miss the crossing.)"""
    cdef bint at_end = test.end_p * p_sum - test.end_q * q_sum >= level
    if ClosedRatio is RatioOne:
        return at_end | ((p_sum > 0.0) & (test.vertex_lo * p_sum <= q_sum)
                         & (q_sum <= test.vertex_hi * p_sum) & (p_sum * test.peak >= level))
    else:
        return at_end | ((q_sum > 0.0) & (test.vertex_lo * q_sum <= p_sum)
                         & (p_sum <= test.vertex_hi * q_sum)
                         & (p_sum * test.peak * (p_sum / q_sum) >= level))


cdef inline double kernel_bound(ClosedRatio tag, double span, double tau_m) noexcept nogil:
    """An upper bound of k(s) over 0 <= s <= span (span may be +inf): min(span, peak).  k(0) = 0,
    k'(0) = 1 and k is concave up to its peak (at s = tau ln 2, k = tau/4 for tau_m = 2 tau_s;
    at s = tau, k = tau/e for tau_m = tau_s), so k(s) <= s there, and k <= peak everywhere."""
    if ClosedRatio is RatioOne:
        return min(span, tau_m * 0.36787944117144233)
    else:
        return min(span, 0.25 * tau_m)


cdef inline void state_from_sums(ClosedRatio tag, double p_sum, double q_sum, double r, double x,
                                 double tau_m, double* u, double* current) noexcept nogil:
    """Membrane potential and synaptic current at reference-relative time r (x = e^{-r/tau_m})."""
    if ClosedRatio is RatioOne:
        current[0] = p_sum * x
        u[0] = x * (p_sum * r - q_sum)
    else:
        current[0] = q_sum * x * x
        u[0] = tau_m * x * (p_sum - q_sum * x)
