"""Networks and inputs shared by the bss2-emulator tests."""

import numpy as np

import delgrad_core as dg

# Every imperfection switched off: an ideal chip (results equal the reference backend).
ALL_OFF = {"fixed_pattern": False, "threshold_noise": 0.0, "delay_jitter_tau": 0.0, "quantise_times": False}


def yin_yang_network(kind="axonal", seed=0, hidden=30, n_features=4, repeat=5):
    """A 20-30-3 network like a hardware-aware Yin-Yang one (threshold 2.6, tau_m = tau_s),
    with delays in the chip's range, and Yin-Yang-like inputs (each feature repeated)."""
    rng = np.random.default_rng(seed)
    network = dg.Network.feedforward([n_features * repeat, hidden, 3], delay_kind=kind,
                                     neuron=dg.NeuronParameters(2.6, 1.0, 1.0), weight_mean=1.0,
                                     weight_std=0.12, seed=seed)
    network.layers[1].projection.weights[...] = rng.normal(0.3, 0.4, (hidden, 3))
    if kind == "axonal":
        network.layers[0].projection.delays[...] = np.repeat(rng.uniform(2.0, 3.5, n_features), repeat)
        network.layers[1].projection.delays[...] = rng.uniform(2.0, 3.5, hidden)
    return network


def yin_yang_inputs(batch=64, seed=0, n_features=4, repeat=5):
    return np.repeat(np.random.default_rng(seed + 100).uniform(0.15, 2.0, (batch, n_features)), repeat, axis=1)
