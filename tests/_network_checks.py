"""Bit-for-bit comparisons of arrays and networks, for the round-trip and resume tests."""

import numpy as np


def assert_bit_identical(a, b):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    assert a.tobytes() == b.tobytes()


def assert_same_network(new, old):
    """Every name, size, delay kind and parameter of `new` equals `old`'s, bit for bit."""
    assert (new.input.name, new.input.size) == (old.input.name, old.input.size)
    assert len(new.layers) == len(old.layers)
    for a, b in zip(new.layers, old.layers):
        assert (a.population.name, a.population.size) == (b.population.name, b.population.size)
        assert a.projection.name == b.projection.name
        assert a.projection.delay_kind is b.projection.delay_kind
        assert_bit_identical(a.projection.weights, b.projection.weights)
        if b.projection.delays is None:
            assert a.projection.delays is None
        else:
            assert_bit_identical(a.projection.delays, b.projection.delays)
        for name in ("threshold", "tau_m", "tau_s"):
            value, expected = getattr(a.population.neuron, name), getattr(b.population.neuron, name)
            assert np.ndim(value) == np.ndim(expected), name
            assert_bit_identical(np.asarray(value, dtype=np.float64), np.asarray(expected, dtype=np.float64))
