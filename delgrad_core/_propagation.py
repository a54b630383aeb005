"""Exact spike times and exact gradients, layer by layer and for a whole network.

The backward pass needs only the parameters and spike times, which may have been observed on
another simulator or a device, and optionally the observed arrival time of every input at every
neuron (what a chip measures at its delay elements).  Every kernel term is then taken at those
times (DelGrad, Göltz, Weber et al. 2025, "gradients from spike times alone"; docs/model.md §4).

Every public function validates its arrays (shapes along the chain, NaN, dtype) before any
compiled code runs; the kernels in `_layer.pyx` trust what they get.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from delgrad_core._cpu_count import available_cpus
from delgrad_core._errors import InvalidValueError
from delgrad_core._ir import DelayKind, Layer, Network, check_type, real_array
from delgrad_core._kernels import kernels as _layer
from delgrad_core._nominal_slope import nominal_slope_factors
from delgrad_core._numbers import checked_number, number_wanted

__all__ = [
    "forward",
    "backward",
    "layer_forward",
    "layer_backward",
    "LayerBackward",
    "LayerGradients",
    "NetworkGradients",
    "default_num_threads",
    "check_num_threads",
    "MAX_NUM_THREADS",
    "GRADIENT_SLOPES",
    "acausal_arrival",
    "check_spike_times",
]

#: Where `backward` takes each neuron's membrane slope: at the given spike time (exact), or at the
#: nominal neuron's own crossing (DelGrad's reference code for measured times).
GRADIENT_SLOPES = ("observed", "nominal")

# More kernel threads than this are refused: thread creation fails (or crashes) long before a
# machine could use them.
MAX_NUM_THREADS = 256

# Partial gradient sums per call: fixed, so that the sums do not depend on the thread count.
_GRADIENT_SLOTS = 8
# Below this many (sample, synapse) pairs per thread, starting threads costs more than it saves.
_MIN_WORK_PER_THREAD = 100_000
_NO_ARRIVALS = np.zeros((1, 1, 1))


def default_num_threads() -> int:
    """Threads for the kernels: $DELGRAD_NUM_THREADS, else the CPUs available to this process."""
    value = os.environ.get("DELGRAD_NUM_THREADS")
    if value:
        try:
            n = int(value)
        except ValueError:
            n = 0
        return check_num_threads(n, "DELGRAD_NUM_THREADS", shown=value)
    return min(available_cpus(), MAX_NUM_THREADS)


def check_num_threads(value, field_name: str = "n_threads", *, shown=None) -> int:
    """`value` as an int if it is an integer from 1 to `MAX_NUM_THREADS`; else an
    `InvalidValueError` naming `field_name` (and showing `shown`, if given, as the value)."""
    try:
        return checked_number(value, field_name, 1, MAX_NUM_THREADS, integer=True)
    except InvalidValueError:
        if shown is None:
            raise
        raise InvalidValueError(f"{field_name}: expected {number_wanted(1, MAX_NUM_THREADS, integer=True)}, "
                                f"got {shown!r}") from None


def check_spike_times(times, n_columns: int, field_name: str, n_batch: int | None = None) -> np.ndarray:
    """Validate (batch, n) spike times: finite or +inf (silent), never NaN or -inf.  A 1-d array
    is one sample."""
    array = real_array(times, field_name)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != n_columns or (n_batch is not None and array.shape[0] != n_batch):
        batch = "batch" if n_batch is None else n_batch
        raise InvalidValueError(f"{field_name}: expected shape ({batch}, {n_columns}), got {np.shape(times)}")
    if not (array > -np.inf).all():  # (NaN and -inf, in one pass)
        raise InvalidValueError(f"{field_name}: contains NaN or -inf (use +inf for a silent neuron)")
    return array


def acausal_arrival(arrivals: np.ndarray, sent: np.ndarray, field_name: str, *, early: bool = False) -> str | None:
    """What is wrong with observed `arrivals` ((batch, n_pre) or (batch, n_pre, n_post)) of the
    spikes `sent` (batch, n_pre), or None: a spike arrives from a line that sent none, or (unless
    `early` arrivals are allowed) before it was sent (delays are >= 0)."""
    sent = np.broadcast_to(sent if arrivals.ndim == 2 else sent[:, :, None], arrivals.shape)
    acausal = np.isinf(sent) & np.isfinite(arrivals)
    if not early:
        acausal |= arrivals < sent
    if not acausal.any():
        return None
    index = tuple(np.argwhere(acausal)[0])
    line = f"presynaptic line {index[1]} of sample {index[0]}"
    at = f"at {float(arrivals[index])!r}" + ("" if arrivals.ndim == 2 else f" (at neuron {index[2]})")
    sent_at = float(sent[index])
    if np.isinf(sent_at):
        return f"{field_name}: {line} sent no spike, yet one arrives {at}"
    return f"{field_name}: the spike of {line}, sent at {sent_at!r}, arrives {at}, before it was sent"


def _check_arrivals(arrival_times, layer: Layer, pre_times: np.ndarray, field_name: str, *,
                    keep_shared: bool = False) -> np.ndarray | None:
    """Validate observed arrival times of the spikes `pre_times` (checked): (batch, n_pre,
    n_post), or (batch, n_pre) when every neuron sees the same arrival of an input; finite, or
    +inf (never arrived: the only arrival of a silent input).  An arrival may come before its
    spike (a jittered delay of about 0).  Returns the 3-d form the kernels read, or with
    `keep_shared` a (batch, n_pre) array as it came."""
    if arrival_times is None:
        return None
    array = real_array(arrival_times, field_name)
    n_batch, (n_pre, n_post) = pre_times.shape[0], layer.projection.weights.shape
    if array.shape not in ((n_batch, n_pre), (n_batch, n_pre, n_post)):
        raise InvalidValueError(f"{field_name}: expected shape {(n_batch, n_pre, n_post)} or {(n_batch, n_pre)}, "
                                f"got {np.shape(arrival_times)}")
    if not (array > -np.inf).all():  # (NaN and -inf, in one pass)
        raise InvalidValueError(f"{field_name}: contains NaN or -inf (use +inf for an input that never arrived)")
    problem = acausal_arrival(array, pre_times, field_name, early=True)
    if problem:
        raise InvalidValueError(problem)
    if array.ndim == 2 and not keep_shared:
        array = np.ascontiguousarray(np.broadcast_to(array[:, :, None], (n_batch, n_pre, n_post)))
    return array


def _threads(n_threads: int | None, work: int) -> int:
    """Explicit `n_threads`, else as many default threads as `work` synapse steps keep busy."""
    if n_threads is None:
        return max(1, min(default_num_threads(), work // _MIN_WORK_PER_THREAD))
    return check_num_threads(n_threads)


@functools.lru_cache(maxsize=8)
def _zero_delays(shape: tuple[int, int]) -> np.ndarray:
    """A read-only matrix of zero delays, made once per shape: a fresh one per kernel call costs
    more than the work of a small batch (the kernels read its first column, which touches every
    memory page of a new allocation)."""
    zeros = np.zeros(shape)
    zeros.setflags(write=False)
    return zeros


def _arrival_times(projection, pre_times: np.ndarray, arrivals: np.ndarray | None) -> np.ndarray:
    """(batch, n_pre, n_post) arrival times: the observed ones, else spike times plus delays."""
    if arrivals is not None:
        return arrivals
    return pre_times[:, :, None] + _kernel_delays(projection)[None]


def _arrivals_of(projection, pre_times: np.ndarray, arrivals: np.ndarray | None):
    """`samples -> (samples, n_pre, n_post)` arrival times of a slice of the samples (as
    `_arrival_times`; a whole batch of them can be large: 784 x 350 per sample)."""
    return lambda samples: _arrival_times(projection, pre_times[samples],
                                          None if arrivals is None else arrivals[samples])


def _kernel_delays(projection) -> np.ndarray:
    """The (n_pre, n_post) delays the kernels read."""
    if projection.delay_kind is DelayKind.NONE:
        return _zero_delays(projection.weights.shape)
    return projection.delay_matrix()


# a delay below half the spacing of doubles near their maximum (2**970) cannot carry a finite time
# past it: the sum rounds back to the time
_NO_OVERFLOW_DELAY = 2.0**969


def _check_arrivals_stay_finite(projection, pre_times: np.ndarray) -> None:
    """A finite spike time plus its delay must not overflow double to +inf, which reads as an
    input that never arrives."""
    if projection.delay_kind is DelayKind.NONE:
        return
    longest = float(projection.delays.max())
    if longest < _NO_OVERFLOW_DELAY:
        return
    latest = float(np.max(pre_times, where=pre_times < np.inf, initial=-np.inf))
    if latest + longest == np.inf > latest:
        raise InvalidValueError(f"{projection.name}: a spike at {latest!r} tau_s plus a delay of up to {longest!r} "
                                "overflows float64 (arrival times must stay below 1.8e308 tau_s)")


def _forward_layer(layer: Layer, pre_times: np.ndarray, arrivals: np.ndarray | None, threads: int) -> np.ndarray:
    """First spike times; `arrivals` (batch, n_pre) are times at which every neuron sees its
    inputs (they take the place of the input times, with no delays added, and one sort per
    sample then serves the whole layer), (batch, n_pre, n_post) per synapse, or None."""
    projection = layer.projection
    threshold, tau_m, tau_s = layer.neuron_arrays()
    delays = _kernel_delays(projection)
    shared_order = projection.delay_kind is not DelayKind.SYNAPTIC
    if arrivals is not None and arrivals.ndim == 2:
        pre_times, arrivals, delays, shared_order = arrivals, None, _zero_delays(projection.weights.shape), True
    elif arrivals is None:
        _check_arrivals_stay_finite(projection, pre_times)
    out = np.empty((pre_times.shape[0], projection.n_post))
    _layer.forward_layer(
        pre_times,
        projection.weights,
        delays,
        _NO_ARRIVALS if arrivals is None else arrivals,
        arrivals is not None,
        arrivals is None and shared_order,
        threshold,
        tau_m,
        tau_s,
        out,
        threads,
    )
    return out


def layer_forward(layer: Layer, pre_spike_times, *, arrival_times=None, n_threads: int | None = None) -> np.ndarray:
    """Exact first spike times (batch, n_post) of one layer; +inf = no spike.

    Parameters
    ----------
    layer : Layer
    pre_spike_times : array (batch, n_pre)
        Presynaptic spike times in units of tau_s; +inf marks a silent input.
    arrival_times : array (batch, n_pre, n_post) or (batch, n_pre), optional
        Arrival time of input i at neuron j per sample, replacing t_i + d_ij (e.g. with delay
        jitter); the 2-d form gives one arrival per input for every neuron; +inf = the input
        never arrives (the only arrival of a silent input).
    n_threads : int, optional
    """
    check_type(layer, Layer, "layer").validate()
    times = check_spike_times(pre_spike_times, layer.projection.n_pre, "pre_spike_times")
    arrivals = _check_arrivals(arrival_times, layer, times, "arrival_times", keep_shared=True)
    return _forward_layer(layer, times, arrivals, _threads(n_threads, times.shape[0] * layer.projection.weights.size))


def forward(network: Network, input_spike_times, *, n_threads: int | None = None) -> list[np.ndarray]:
    """Exact first spike times of every layer.

    Parameters
    ----------
    network : Network
    input_spike_times : array (batch, n_inputs)
        Input spike times in units of tau_s; +inf marks a silent input.
    n_threads : int, optional
        Threads over the batch (default: up to `default_num_threads()`, fewer for small work).

    Returns
    -------
    list of arrays (batch, layer size), one per layer (input excluded); +inf = no spike.
    """
    check_type(network, Network, "network").validate()
    times = check_spike_times(input_spike_times, network.input.size, "input_spike_times")
    threads = _threads(n_threads, times.shape[0] * sum(layer.projection.weights.size for layer in network.layers))
    layer_times = []
    for layer in network.layers:
        times = _forward_layer(layer, times, None, threads)
        layer_times.append(times)
    return layer_times


@dataclass
class LayerBackward:
    """Everything the backward pass of one layer yields, for a batch.

    weights, delays, threshold : summed over the batch (delays in the projection's delay shape,
        None for delay kind 'none')
    pre_gradient : (batch, n_pre), dL/dt of the presynaptic spike times per sample
    no_crossing : (batch, n_post) bool, the model has no upward threshold crossing at the given
        spike time (a device spiked where the ideal model would not): no gradient
    largest_weight_term : (batch, n_post), max_i |dL/dt_j dt_j/dw_ij| (0 where no gradient)
    guarded : (batch, n_post) bool, entries a guard excluded (see `backward`)
    """

    weights: np.ndarray
    delays: np.ndarray | None
    threshold: np.ndarray
    pre_gradient: np.ndarray
    no_crossing: np.ndarray
    largest_weight_term: np.ndarray
    guarded: np.ndarray


def _backward_layer_shared(layer: Layer, pre_times, post_times, post_gradient, threads,
                           with_pre: bool = True) -> LayerBackward | None:
    """The layer-wide kernel (inputs in the same order at every neuron), or None where its
    conditions do not hold (see `_layer.backward_layer_shared`).  Without `with_pre` the
    pre_gradient is left zero (axonal delays always need it)."""
    projection = layer.projection
    _, tau_m, tau_s = layer.neuron_arrays()
    n_batch = pre_times.shape[0]
    n_pre, n_post = projection.weights.shape
    dendritic = projection.delay_kind is DelayKind.DENDRITIC
    grad_w = np.empty((n_pre, n_post))
    scale = np.zeros((n_batch, n_post))
    column = np.zeros((n_batch, n_post) if dendritic else (1, 1))
    pre_gradient = np.zeros((n_batch, n_pre))
    no_crossing = np.zeros((n_batch, n_post), dtype=np.int8)
    largest = np.zeros((n_batch, n_post))
    if not _layer.backward_layer_shared(
        pre_times, projection.weights, _kernel_delays(projection), tau_m, tau_s, post_times, post_gradient,
        grad_w, scale, column, dendritic, pre_gradient, with_pre or projection.delay_kind is DelayKind.AXONAL,
        no_crossing, largest, threads,
    ):
        return None
    if projection.delay_kind is DelayKind.AXONAL:
        delays = pre_gradient.sum(axis=0)
    elif dendritic:
        delays = column.sum(axis=0)
    else:
        delays = None
    return LayerBackward(
        weights=grad_w,
        delays=delays,
        threshold=scale.sum(axis=0),
        pre_gradient=pre_gradient,
        no_crossing=no_crossing.astype(bool),
        largest_weight_term=largest,
        guarded=np.zeros((n_batch, n_post), dtype=bool),
    )


def _backward_layer(layer: Layer, pre_times, post_times, post_gradient, arrivals, threads,
                    with_pre: bool = True) -> LayerBackward:
    """One layer's backward pass; `with_pre` False allows a kernel to skip dL/dt_pre where no
    parameter of the layer needs it (`backward`'s input_gradient)."""
    projection = layer.projection
    if arrivals is None:
        _check_arrivals_stay_finite(projection, pre_times)
    if arrivals is None and projection.delay_kind is not DelayKind.SYNAPTIC:
        result = _backward_layer_shared(layer, pre_times, post_times, post_gradient, threads, with_pre)
        if result is not None:
            return result
    _, tau_m, tau_s = layer.neuron_arrays()
    n_batch = pre_times.shape[0]
    n_pre, n_post = projection.weights.shape
    slots = max(1, min(_GRADIENT_SLOTS, n_batch))
    grad_w = np.zeros((slots, n_pre, n_post))
    grad_a = np.zeros((slots, n_pre, n_post))
    grad_theta = np.zeros((slots, n_post))
    pre_gradient = np.zeros((n_batch, n_pre))
    no_crossing = np.zeros((n_batch, n_post), dtype=np.int8)
    largest = np.zeros((n_batch, n_post))
    _layer.backward_layer(
        pre_times,
        projection.weights,
        _kernel_delays(projection),
        _NO_ARRIVALS if arrivals is None else arrivals,
        arrivals is not None,
        tau_m,
        tau_s,
        post_times,
        post_gradient,
        grad_w,
        grad_a,
        grad_theta,
        pre_gradient,
        no_crossing,
        largest,
        min(threads, slots),
    )
    return LayerBackward(
        weights=grad_w.sum(axis=0),
        delays=projection.reduce_synapse_gradient(grad_a.sum(axis=0)),
        threshold=grad_theta.sum(axis=0),
        pre_gradient=pre_gradient,
        no_crossing=no_crossing.astype(bool),
        largest_weight_term=largest,
        guarded=np.zeros((n_batch, n_post), dtype=bool),
    )


def _finite_backward_layer(field_name: str, where: str, layer: Layer, pre_times, post_times, post_gradient,
                           arrivals, threads, with_pre: bool = True) -> LayerBackward:
    """`_backward_layer`, refused when a gradient overflowed double (a huge `field_name`, perhaps
    times the large dt/dw of a near-grazing crossing) instead of returning inf or NaN."""
    with np.errstate(over="ignore", invalid="ignore"):
        result = _backward_layer(layer, pre_times, post_times, post_gradient, arrivals, threads, with_pre)
    parts = {"weights": result.weights, "delays": result.delays, "threshold": result.threshold,
             "presynaptic spike times": result.pre_gradient}
    overflowed = [name for name, values in parts.items() if values is not None and not np.isfinite(values).all()]
    if overflowed:
        largest = float(np.abs(post_gradient).max())
        advice = "scale the loss down" if largest > 1.0 else \
            "the spike times' own derivatives overflow: bring the weights, threshold and times to ordinary magnitudes"
        raise InvalidValueError(f"{field_name}: the gradients of {where} overflow float64 ({', '.join(overflowed)}; "
                                f"largest |{field_name}| {largest!r}); {advice}")
    return result


def layer_backward(layer: Layer, pre_spike_times, post_spike_times, post_gradient, *, arrival_times=None,
                   n_threads: int | None = None) -> LayerBackward:
    """Exact gradients of one layer at the given times (implicit function theorem, docs/model.md §4).

    Parameters
    ----------
    layer : Layer
    pre_spike_times : array (batch, n_pre)
    post_spike_times : array (batch, n_post)
        The layer's spike times, computed or observed.
    post_gradient : array (batch, n_post)
        dL/dt of the layer's spike times; zero entries (and silent neurons) pass nothing.  With
        one sample, this and the times may be 1-d.
    arrival_times : array (batch, n_pre, n_post) or (batch, n_pre), optional
        Observed arrival times; every kernel term and the delay gradient are taken there.
    """
    check_type(layer, Layer, "layer").validate()
    pre = check_spike_times(pre_spike_times, layer.projection.n_pre, "pre_spike_times")
    n_batch = pre.shape[0]
    post = check_spike_times(post_spike_times, layer.population.size, "post_spike_times", n_batch)
    gradient = _check_gradient(post_gradient, n_batch, layer.population.size, "post_gradient")
    arrivals = _check_arrivals(arrival_times, layer, pre, "arrival_times")
    threads = _threads(n_threads, n_batch * layer.projection.weights.size)
    return _finite_backward_layer("post_gradient", "the layer", layer, pre, post, gradient, arrivals, threads)


def _check_gradient(values, n_batch: int, n_columns: int, field_name: str) -> np.ndarray:
    """Validate a (batch, n) loss gradient: finite.  A 1-d array is one sample, as for the times."""
    array = real_array(values, field_name)
    if array.ndim == 1 and n_batch == 1:
        array = array[None, :]
    if array.shape != (n_batch, n_columns):
        raise InvalidValueError(f"{field_name}: expected shape ({n_batch}, {n_columns}), got {np.shape(values)}")
    if not np.isfinite(array).all():
        raise InvalidValueError(f"{field_name}: contains NaN or inf")
    return array


@dataclass
class LayerGradients:
    """dL/d(parameters) of one layer, summed over the batch.

    `delays` has the shape of the projection's delays (None for delay kind 'none').
    `no_crossing` counts (sample, neuron) pairs without an upward crossing at the given time,
    `guarded` those a guard excluded; neither passes a gradient.
    """

    weights: np.ndarray
    delays: np.ndarray | None
    threshold: np.ndarray
    no_crossing: int
    guarded: int


@dataclass
class NetworkGradients:
    """Gradients of every layer, plus dL/d(input spike times) per sample (None when `backward`
    was asked for no input gradient)."""

    layers: list[LayerGradients]
    input_spike_times: np.ndarray | None


Guard = Callable[[int, np.ndarray], np.ndarray]


def backward(
    network: Network,
    input_spike_times,
    layer_spike_times: list,
    output_gradient,
    *,
    arrival_times: list | None = None,
    guard: Guard | None = None,
    n_threads: int | None = None,
    input_gradient: bool = True,
    gradient_slope: str = "observed",
) -> NetworkGradients:
    """Exact gradients (implicit function theorem, docs/model.md §4) at the given spike times.

    Parameters
    ----------
    network : Network
    input_spike_times : array (batch, n_inputs)
    layer_spike_times : list of arrays (batch, size)
        Spike times of every layer, from `forward` or observed on a backend or device.
    output_gradient : array (batch, n_outputs)
        dL/dt of the output spike times, finite numbers; the entries of silent neurons are not
        used (a silent neuron has no time to move).  With one sample, this and the times may be 1-d.
    arrival_times : list of (array or None), optional
        Observed arrival times per layer, as in `layer_backward` (None for a layer without
        observations).
    guard : callable, optional
        ``guard(layer_index, largest_weight_term) -> bool mask (batch, n_post)``: entries to
        exclude, decided from max_i |dL/dt_j dt_j/dw_ij| of every (sample, neuron).  Excluded
        entries pass no gradient, as if dL/dt_j were 0 there.  A training decision (e.g. the
        grazing guard of the DelGrad reference code); None keeps the exact gradient.
    n_threads : int, optional
        Threads; the result is bit for bit the same for every thread count.
    input_gradient : bool
        False: no dL/d(input spike times) (`input_spike_times` is None), which spares the first
        layer's kernel the work of those terms; training needs them only for the first layer's
        axonal delays, which get their gradient either way.  The parameter gradients are the
        same bit for bit.
    gradient_slope : str
        "observed" (exact): each neuron's gradient divides by its membrane's slope at the given
        spike time.  "nominal": by the slope of the nominal neuron at its own threshold crossing,
        as DelGrad's reference code does for measured times (tau_m = tau_s only;
        `delgrad_core._nominal_slope`): a training choice for substrates whose thresholds differ
        from the model's.

    Notes
    -----
    A neuron whose membrane, evaluated at the given spike time, is not rising (u'(t) <= 0, e.g.
    a device spiked where the ideal model has no crossing) passes no gradient for that sample.
    """
    check_type(network, Network, "network").validate()
    if not isinstance(input_gradient, (bool, np.bool_)):
        raise InvalidValueError(f"input_gradient: expected True or False, got {input_gradient!r}")
    if guard is not None and not callable(guard):
        raise InvalidValueError(f"guard: expected None or a callable, got {type(guard).__name__}")
    times_in = check_spike_times(input_spike_times, network.input.size, "input_spike_times")
    n_batch = times_in.shape[0]
    if not isinstance(layer_spike_times, (list, tuple)) or len(layer_spike_times) != len(network.layers):
        raise InvalidValueError(
            f"layer_spike_times: expected a list of {len(network.layers)} arrays (one per layer)"
        )
    pre_times = [times_in] + [
        check_spike_times(t, layer.population.size, f"layer_spike_times[{k}]", n_batch)
        for k, (t, layer) in enumerate(zip(layer_spike_times, network.layers))
    ]
    if arrival_times is None:
        arrival_times = [None] * len(network.layers)
    if not isinstance(arrival_times, (list, tuple)) or len(arrival_times) != len(network.layers):
        raise InvalidValueError(f"arrival_times: expected None or a list of {len(network.layers)} entries")
    arrivals = [
        _check_arrivals(a, layer, sent, f"arrival_times[{k}]")
        for k, (a, layer, sent) in enumerate(zip(arrival_times, network.layers, pre_times))
    ]
    delta = _check_gradient(output_gradient, n_batch, network.layers[-1].population.size, "output_gradient")
    if gradient_slope not in GRADIENT_SLOPES:
        raise InvalidValueError(f"gradient_slope: expected one of {', '.join(GRADIENT_SLOPES)}, got {gradient_slope!r}")
    threads = _threads(n_threads, n_batch * sum(layer.projection.weights.size for layer in network.layers))
    gradients = []
    for index in range(len(network.layers) - 1, -1, -1):
        layer = network.layers[index]
        args = (layer, pre_times[index], pre_times[index + 1])
        with_pre = input_gradient or index > 0
        where = f"layer {index}"
        if gradient_slope == "nominal":
            delta = delta * nominal_slope_factors(layer, where, pre_times[index + 1], _arrivals_of(
                layer.projection, pre_times[index], arrivals[index]))
        result = _finite_backward_layer("output_gradient", where, *args, delta, arrivals[index], threads, with_pre)
        if guard is not None:
            returned = guard(index, result.largest_weight_term)
            excluded = np.asarray(returned)
            if excluded.shape != delta.shape or excluded.dtype != np.bool_:
                article = "an" if str(excluded.dtype)[0] in "aeio" else "a"  # (a uint8)
                what = "None" if returned is None else f"{article} {excluded.dtype} array of shape {excluded.shape}"
                raise InvalidValueError(f"guard: returned {what}, expected a bool mask of shape {delta.shape}")
            excluded = excluded & (delta != 0)  # (a new array: the guard's own may be read-only)
            if excluded.any():
                delta = np.where(excluded, 0.0, delta)
                guarded = excluded
                result = _finite_backward_layer("output_gradient", where, *args, delta, arrivals[index], threads,
                                                with_pre)
                result.guarded = guarded
        gradients.append(
            LayerGradients(
                weights=result.weights,
                delays=result.delays,
                threshold=result.threshold,
                no_crossing=int(result.no_crossing.sum()),
                guarded=int(result.guarded.sum()),
            )
        )
        delta = result.pre_gradient
    gradients.reverse()
    return NetworkGradients(layers=gradients, input_spike_times=delta if input_gradient else None)
