"""Latency encoding of features into input spike times (docs/model.md §5)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from delgrad_core._encoding import LatencyEncoder
from delgrad_core.datasets import yin_yang


def test_reference_mapping():
    encoder = LatencyEncoder()
    assert (encoder.t_early, encoder.t_late) == (0.15, 2.0)
    np.testing.assert_allclose(encoder([[0.0, 1.0, 0.5, 0.25]]), [[0.15, 2.0, 1.075, 0.6125]], rtol=1e-15)


@settings(max_examples=50, deadline=None)
@given(
    values=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=12),
    t_early=st.floats(-5.0, 5.0),
    span=st.floats(0.01, 10.0),
)
def test_linear_and_invertible(values, t_early, span):
    encoder = LatencyEncoder(t_early, t_early + span)
    features = np.array(values)
    times = encoder(features)
    assert times.shape == features.shape and times.dtype == np.float64
    assert np.all((times >= encoder.t_early - 1e-12) & (times <= encoder.t_late + 1e-12))
    recovered = (times - encoder.t_early) / (encoder.t_late - encoder.t_early)
    np.testing.assert_allclose(recovered, features, atol=1e-9)
    # order is preserved: larger features spike later
    order = np.argsort(features, kind="stable")
    assert np.all(np.diff(times[order]) >= 0)


def test_yin_yang_inputs_lie_in_the_reference_window():
    times = LatencyEncoder()(yin_yang("test").features)
    assert times.shape == (1000, 4)
    assert times.min() >= 0.15 and times.max() <= 2.0


@pytest.mark.parametrize("bad", [[0.2, 1.5], [-0.1], [[0.3, np.nan]], [np.inf]])
def test_out_of_range_or_nan_features_are_refused(bad):
    with pytest.raises(ValueError, match=r"features: values must lie in \[0, 1\]"):
        LatencyEncoder()(bad)


def test_a_refusal_of_features_counts_them_and_names_the_first():
    with pytest.raises(ValueError, match=r"features: values must lie in \[0, 1\] \(no NaN\); 2 do not, the first at "
                                         r"index \(0, 1\) is 1.5$"):
        LatencyEncoder()([[0.2, 1.5], [0.3, -2.0]])


def test_times_given_as_numpy_or_integer_numbers_are_kept_as_floats():
    """(a numpy number was kept as given: its repr differed, and json cannot write it)"""
    encoder = LatencyEncoder(t_early=np.int64(0), t_late=np.float32(2.0))
    assert type(encoder.t_early) is float and type(encoder.t_late) is float
    assert encoder == LatencyEncoder(0.0, 2.0)

def test_non_numeric_features_are_refused():
    with pytest.raises(ValueError, match="features"):
        LatencyEncoder()([["a", "b"]])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"t_early": 2.0, "t_late": 1.0}, ValueError, "LatencyEncoder.t_late"),
        ({"t_early": 1.0, "t_late": 1.0}, ValueError, "LatencyEncoder.t_late"),
        ({"t_early": float("nan")}, ValueError, "LatencyEncoder.t_early"),
        ({"t_late": float("inf")}, ValueError, "LatencyEncoder.t_late"),
        ({"t_early": "0.1"}, ValueError, "LatencyEncoder.t_early"),
    ],
)
def test_bad_parameters_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        LatencyEncoder(**kwargs)


def test_pairs_and_repeats():
    encoder = LatencyEncoder(t_early=0.0, t_late=1.0, repeat=2, pairs=True)
    times = encoder(np.array([[0.25, 1.0]]))
    np.testing.assert_allclose(times, [[0.25, 0.25, 1.0, 1.0, 0.75, 0.75, 0.0, 0.0]])
    assert encoder.n_inputs(2) == 8
    with pytest.raises(ValueError, match="LatencyEncoder.pairs"):
        LatencyEncoder(pairs="yes")
