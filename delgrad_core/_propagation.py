"""Whole-network forward pass (spike times of every layer) and exact backward pass.

The backward pass needs only the parameters and spike times, which may have been observed on
another simulator or a device (DelGrad, Göltz, Weber et al. 2025, "gradients from spike times
alone"; MODEL.md §4).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from delgrad_core import _layer
from delgrad_core._ir import DelayKind, Network

__all__ = [
    "forward",
    "backward",
    "LayerGradients",
    "NetworkGradients",
    "default_num_threads",
]


def default_num_threads() -> int:
    """Threads for the kernels: $DELGRAD_NUM_THREADS, else the CPUs available to this process."""
    value = os.environ.get("DELGRAD_NUM_THREADS")
    if value:
        try:
            n = int(value)
        except ValueError:
            raise ValueError(f"DELGRAD_NUM_THREADS: expected a positive integer, got {value!r}") from None
        if n < 1:
            raise ValueError(f"DELGRAD_NUM_THREADS: expected a positive integer, got {value!r}")
        return n
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def _check_times(times, n_columns: int, field_name: str) -> np.ndarray:
    """Validate a (batch, n) array of spike times: finite or +inf (silent), never NaN or -inf."""
    array = np.ascontiguousarray(times, dtype=np.float64)
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2 or array.shape[1] != n_columns:
        raise ValueError(f"{field_name}: expected shape (batch, {n_columns}), got {np.shape(times)}")
    if np.any(np.isnan(array)) or np.any(array == -np.inf):
        raise ValueError(f"{field_name}: contains NaN or -inf (use +inf for a silent neuron)")
    return array


# Below this many (sample, synapse) pairs per thread, starting threads costs more than it saves.
_MIN_WORK_PER_THREAD = 100_000


def _threads(n_threads: int | None, network: Network, n_batch: int) -> int:
    """Explicit `n_threads`, else as many default threads as the batch's work can keep busy."""
    if n_threads is None:
        work = n_batch * sum(layer.projection.weights.size for layer in network.layers)
        return max(1, min(default_num_threads(), work // _MIN_WORK_PER_THREAD))
    if int(n_threads) < 1:
        raise ValueError(f"n_threads: expected a positive integer, got {n_threads!r}")
    return int(n_threads)


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
    network.validate()
    times = _check_times(input_spike_times, network.input.size, "input_spike_times")
    threads = _threads(n_threads, network, times.shape[0])
    layer_times = []
    for layer in network.layers:
        projection = layer.projection
        threshold, tau_m, tau_s = layer.neuron_arrays()
        out = np.empty((times.shape[0], projection.n_post))
        _layer.forward_layer(
            times,
            projection.weights,
            projection.delay_matrix(),
            projection.delay_kind is not DelayKind.SYNAPTIC,
            threshold,
            tau_m,
            tau_s,
            out,
            threads,
        )
        layer_times.append(out)
        times = out
    return layer_times


@dataclass
class LayerGradients:
    """dL/d(parameters) of one layer, summed over the batch.

    `delays` has the shape of the projection's delays (None for delay kind 'none');
    `dropped` counts (sample, neuron) pairs whose gradient was zeroed (no upward crossing at the
    given time, or a near-grazing crossing, see `backward`).
    """

    weights: np.ndarray
    delays: np.ndarray | None
    threshold: np.ndarray
    dropped: int


@dataclass
class NetworkGradients:
    """Gradients of every layer, plus dL/d(input spike times) per sample."""

    layers: list[LayerGradients]
    input_spike_times: np.ndarray


def backward(
    network: Network,
    input_spike_times,
    layer_spike_times: list,
    output_gradient,
    *,
    max_weight_term: float | None = None,
    n_threads: int | None = None,
) -> NetworkGradients:
    """Exact gradients (implicit function theorem, MODEL.md §4) at the given spike times.

    Parameters
    ----------
    network : Network
    input_spike_times : array (batch, n_inputs)
    layer_spike_times : list of arrays (batch, size)
        Spike times of every layer, from `forward` or observed on a backend or device.
    output_gradient : array (batch, n_outputs)
        dL/dt of the output spike times; entries of silent neurons are ignored.
    max_weight_term : float, optional
        Grazing guard of the DelGrad reference code: if |dL/dt_j dt_j/dw_ij| exceeds this for any
        input i, neuron j's gradient for that sample is dropped.  None (default) keeps all.
    n_threads : int, optional

    Notes
    -----
    A neuron whose membrane, evaluated at the given spike time, is not rising (u'(t) <= 0, e.g.
    a device spiked where the ideal model has no crossing) passes no gradient for that sample.
    """
    network.validate()
    times_in = _check_times(input_spike_times, network.input.size, "input_spike_times")
    threads = _threads(n_threads, network, times_in.shape[0])
    if len(layer_spike_times) != len(network.layers):
        raise ValueError(
            f"layer_spike_times: expected {len(network.layers)} arrays (one per layer), got {len(layer_spike_times)}"
        )
    pre_times = [times_in] + [
        _check_times(t, layer.population.size, f"layer_spike_times[{k}]")
        for k, (t, layer) in enumerate(zip(layer_spike_times, network.layers))
    ]
    n_batch = times_in.shape[0]
    if any(t.shape[0] != n_batch for t in pre_times):
        raise ValueError("layer_spike_times: every array needs the batch size of input_spike_times")
    n_outputs = network.layers[-1].population.size
    delta = np.ascontiguousarray(output_gradient, dtype=np.float64)
    if delta.size != n_batch * n_outputs or not np.all(np.isfinite(delta)):
        raise ValueError(f"output_gradient: expected finite values of shape ({n_batch}, {n_outputs})")
    delta = delta.reshape(n_batch, n_outputs)
    max_term = np.inf if max_weight_term is None else float(max_weight_term)
    gradients = []
    for index in range(len(network.layers) - 1, -1, -1):
        layer = network.layers[index]
        projection = layer.projection
        _, tau_m, tau_s = layer.neuron_arrays()
        n_pre, n_post = projection.weights.shape
        grad_w = np.zeros((threads, n_pre, n_post))
        grad_a = np.zeros((threads, n_pre, n_post))
        grad_theta = np.zeros((threads, n_post))
        delta_pre = np.zeros((n_batch, n_pre))
        zeroed = np.zeros((n_batch, n_post), dtype=np.int8)
        _layer.backward_layer(
            pre_times[index],
            projection.weights,
            projection.delay_matrix(),
            tau_m,
            tau_s,
            pre_times[index + 1],
            delta,
            max_term,
            grad_w,
            grad_a,
            grad_theta,
            delta_pre,
            zeroed,
            threads,
        )
        gradients.append(
            LayerGradients(
                weights=grad_w.sum(axis=0),
                delays=projection.reduce_synapse_gradient(grad_a.sum(axis=0)),
                threshold=grad_theta.sum(axis=0),
                dropped=int(np.count_nonzero(zeroed)),
            )
        )
        delta = delta_pre
    gradients.reverse()
    return NetworkGradients(layers=gradients, input_spike_times=delta)
