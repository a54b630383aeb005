"""A signal handler runs while a kernel works, so Ctrl-C ends a long forward or backward pass
instead of waiting for it to finish.

Each case starts a kernel call of several seconds with SIGALRM firing every 0.05 s; the handler
raises at its tenth call.  The kernels run pending handlers every 0.05 s, so that exception comes
out of the kernel, and its traceback passes through _layer.pyx.  A kernel that never ran them
would leave the signals pending: Python would run the handler once when the kernel returns (or at
the few Python calls between a kernel's loops), too few times to raise inside the kernel.
"""

import signal
import traceback

import numpy as np
import pytest

import delgrad_core as dg


class _Alarm(Exception):
    pass


class _RaiseAtTenthCall:
    def __init__(self):
        self.calls = 0

    def __call__(self, signum, frame):
        self.calls += 1
        if self.calls == 10:
            raise _Alarm


def _layer(kind: str, tau_m: float, n_pre: int = 400, n_post: int = 400) -> dg.Layer:
    rng = np.random.default_rng(0)
    delays = rng.uniform(0.0, 1.0, (n_pre, n_post)) if kind == "synaptic" else None
    return dg.Layer(dg.Population("hidden", n_post, dg.NeuronParameters(threshold=1.0, tau_m=tau_m, tau_s=1.0)),
                    dg.Projection(rng.normal(0.02, 0.05, (n_pre, n_post)), kind, delays))


def _times(n_batch: int, n: int, offset: float = 0.0) -> np.ndarray:
    return offset + np.random.default_rng(1).uniform(0.0, 2.0, (n_batch, n))


def _forward_per_neuron():
    # tau_m = 1.5 tau_s and synaptic delays: the per-neuron walk with the bracketed solver
    layer, times = _layer("synaptic", 1.5), _times(2000, 400)
    return lambda: dg.layer_forward(layer, times)


def _forward_layer_walk():
    # no delays and tau_m = 2 tau_s: one walk per sample for the whole layer (8000 samples: about 2.5 s;
    # with 2000, 0.6 s, the call ended before the tenth alarm on a quiet machine)
    layer, times = _layer("none", 2.0, 1000, 1000), _times(8000, 1000)
    return lambda: dg.layer_forward(layer, times)


def _backward_per_synapse():
    # synaptic delays: the kernel that accumulates per-synapse gradients in slots
    layer, pre, post, gradient = (_layer("synaptic", 1.5), _times(2000, 400), _times(2000, 400, 2.5),
                                  np.ones((2000, 400)))
    return lambda: dg.layer_backward(layer, pre, post, gradient)


def _backward_layer_wide():
    # no delays and tau_m = 2 tau_s: the layer-wide backward pass (4000 samples: about 2.5 s)
    layer = _layer("none", 2.0, 1000, 1000)
    pre, post, gradient = _times(4000, 1000), _times(4000, 1000, 2.5), np.ones((4000, 1000))
    return lambda: dg.layer_backward(layer, pre, post, gradient)


@pytest.mark.parametrize("prepare", [_forward_per_neuron, _forward_layer_walk, _backward_per_synapse,
                                     _backward_layer_wide], ids=lambda prepare: prepare.__name__.strip("_"))
def test_a_signal_handler_interrupts_a_long_kernel_call(prepare):
    call = prepare()
    previous = signal.signal(signal.SIGALRM, _RaiseAtTenthCall())
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
        with pytest.raises(_Alarm) as raised:
            call()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    files = [frame.filename for frame in traceback.extract_tb(raised.value.__traceback__)]
    assert any(name.endswith("_layer.pyx") for name in files), (
        "the handler raised outside the kernel call:\n" + "\n".join(files))
