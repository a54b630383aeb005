"""Losses on first-spike times and the first-spike readout (delgrad_core._losses)."""

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import logsumexp

from delgrad_core._losses import (
    LossResult,
    ShiftInvariantSquaredError,
    TTFSCrossEntropy,
    accuracy,
    available_losses,
    first_spike_prediction,
    make_loss,
)

INF = np.inf
LOSSES = [
    ShiftInvariantSquaredError(),
    ShiftInvariantSquaredError(delta=0.3),
    TTFSCrossEntropy(),
    TTFSCrossEntropy(xi=0.5, alpha=0.1, beta=2.0),
]


def reference_loss(loss, times, label):
    """Loop-based evaluation of one sample straight from the formulas of docs/model.md §5."""
    t_y = times[label]
    if loss.name == "squared":
        total = 0.0
        for k, t_k in enumerate(times):
            if k != label and math.isfinite(t_k):
                total += 0.5 * ((t_k - t_y) - loss.delta) ** 2
        return total
    finite = [-t_k / loss.xi for t_k in times if math.isfinite(t_k)]
    return logsumexp(finite) + t_y / loss.xi + loss.alpha * (math.exp(t_y / loss.beta) - 1.0)


@st.composite
def output_batches(draw):
    """(times (B, K), labels (B,)) with some silent non-label neurons; every label spikes."""
    batch = draw(st.integers(1, 4))
    n_outputs = draw(st.integers(2, 4))
    values = draw(st.lists(st.floats(0.0, 5.0), min_size=batch * n_outputs, max_size=batch * n_outputs))
    silent = draw(st.lists(st.booleans(), min_size=batch * n_outputs, max_size=batch * n_outputs))
    labels = np.array(draw(st.lists(st.integers(0, n_outputs - 1), min_size=batch, max_size=batch)))
    times = np.array(values).reshape(batch, n_outputs)
    times[np.array(silent).reshape(batch, n_outputs)] = INF
    times[np.arange(batch), labels] = np.array(values).reshape(batch, n_outputs)[np.arange(batch), labels]
    return times, labels


@pytest.mark.parametrize("loss", LOSSES, ids=repr)
@settings(max_examples=40, deadline=None)
@given(data=output_batches())
def test_gradient_matches_central_differences_of_mean_loss(loss, data):
    times, labels = data
    result = loss(times, labels)
    assert isinstance(result, LossResult)
    assert result.per_sample.shape == labels.shape and result.gradient.shape == times.shape
    h = 1e-6
    for b, k in zip(*np.nonzero(np.isfinite(times))):
        up, down = times.copy(), times.copy()
        up[b, k] += h
        down[b, k] -= h
        numeric = (loss(up, labels).mean - loss(down, labels).mean) / (2 * h)
        assert result.gradient[b, k] == pytest.approx(numeric, rel=1e-5, abs=1e-7)
    assert np.all(result.gradient[np.isinf(times)] == 0.0)


@pytest.mark.parametrize("loss", LOSSES, ids=repr)
@settings(max_examples=40, deadline=None)
@given(data=output_batches())
def test_values_match_loop_reference(loss, data):
    times, labels = data
    result = loss(times, labels)
    expected = [reference_loss(loss, row, label) for row, label in zip(times, labels)]
    np.testing.assert_allclose(result.per_sample, expected, rtol=1e-12, atol=1e-12)
    assert result.mean == pytest.approx(np.mean(expected), rel=1e-12, abs=1e-12)


def test_loss_results_compare_by_value():
    """(== raised numpy's "truth value of an array is ambiguous")"""
    loss = make_loss("squared")
    times = np.array([[1.0, 2.0, 3.0], [2.0, 1.0, np.inf]])
    assert loss(times, [0, 1]) == loss(times.copy(), [0, 1]) and loss(times, [0, 1]) != loss(times, [1, 1])
    from delgrad_core.training._trainer import Evaluation  # (NaN where NaN is: the same values)

    nan = Evaluation(float("nan"), 0.5, np.array([[np.nan, 1.0]]), np.array([0]))
    assert nan == Evaluation(float("nan"), 0.5, np.array([[np.nan, 1.0]]), np.array([0]))
    assert nan != Evaluation(float("nan"), 0.5, np.array([[np.nan, 2.0]]), np.array([0]))
    assert Evaluation(1.0, 0.5, np.zeros((0, 3)), np.zeros(0)) != Evaluation(1.0, 0.5, 7.0, 3)  # (none is not 7)


def test_squared_error_hand_checked():
    times = np.array([[1.0, 1.5, INF], [0.5, 0.5, 0.7]])
    result = ShiftInvariantSquaredError(delta=0.2)(times, [0, 2])
    # row 0: 1/2 (0.5 - 0.2)^2; row 1: 2 * 1/2 (-0.2 - 0.2)^2
    np.testing.assert_allclose(result.per_sample, [0.045, 0.16])
    # per-sample gradients divided by B = 2
    np.testing.assert_allclose(result.gradient, [[-0.15, 0.15, 0.0], [-0.2, -0.2, 0.4]])


def test_squared_error_is_zero_at_target_and_shift_invariant():
    loss = ShiftInvariantSquaredError(delta=0.2)
    target = np.array([[1.2, 1.0, 1.2]])
    result = loss(target, [1])
    assert result.per_sample[0] == pytest.approx(0.0, abs=1e-30)
    np.testing.assert_allclose(result.gradient, 0.0, atol=1e-15)
    times = np.array([[0.3, 1.7, 2.2, INF]])
    assert loss(times + 10.0, [2]).per_sample[0] == pytest.approx(loss(times, [2]).per_sample[0], rel=1e-12)


def test_crossentropy_hand_checked():
    # two outputs at 0 and xi * log 3: softmax(-t / xi) = (3/4, 1/4), label 0 -> -log(3/4)
    xi = 0.2
    times = np.array([[0.0, xi * math.log(3.0)]])
    result = TTFSCrossEntropy(xi=xi, alpha=0.0)(times, [0])
    assert result.per_sample[0] == pytest.approx(-math.log(0.75), rel=1e-12)
    np.testing.assert_allclose(result.gradient, [[(1 - 0.75) / xi, -0.25 / xi]], rtol=1e-12)
    # regulariser alpha (exp(t_y / beta) - 1) at t_y = 0 is zero; at t_y = 1 it is alpha (e - 1)
    shifted = TTFSCrossEntropy(xi=xi, alpha=0.5, beta=1.0)(times + 1.0, [0])
    assert shifted.per_sample[0] == pytest.approx(-math.log(0.75) + 0.5 * (math.e - 1), rel=1e-12)


def test_crossentropy_silent_outputs_contribute_nothing():
    loss = TTFSCrossEntropy()
    with_silent = loss(np.array([[1.0, INF, 1.3]]), [0])
    without = loss(np.array([[1.0, 1.3]]), [0])
    assert with_silent.per_sample[0] == pytest.approx(without.per_sample[0], rel=1e-14)
    assert with_silent.gradient[0, 1] == 0.0
    only_label = loss(np.array([[0.0, INF, INF]]), [0])
    assert only_label.per_sample[0] == pytest.approx(0.0, abs=1e-15)


def test_crossentropy_is_stable_for_late_spikes():
    loss = TTFSCrossEntropy(alpha=0.0)
    times = np.array([[1.0, 1.4, 3.0]])
    late = loss(times + 500.0, [1])  # exp(-2500) underflows without the shift
    assert np.all(np.isfinite(late.per_sample)) and np.all(np.isfinite(late.gradient))
    assert late.per_sample[0] == pytest.approx(loss(times, [1]).per_sample[0], rel=1e-10)
    np.testing.assert_allclose(late.gradient, loss(times, [1]).gradient, rtol=1e-10)


@pytest.mark.parametrize(
    ("loss", "expected"),
    [(ShiftInvariantSquaredError(delta=0.2), 0.5 * 2 * 0.04), (TTFSCrossEntropy(), math.log(3))],
    ids=["squared", "crossentropy"],
)
def test_missing_label_spike_gives_constant_loss_and_no_gradient(loss, expected):
    times = np.array([[INF, 1.0, 2.0], [0.7, 1.0, 1.2], [INF, INF, INF], [INF, 0.1, 5.0]])
    labels = np.array([0, 0, 1, 0])
    result = loss(times, labels)
    np.testing.assert_allclose(result.per_sample[[0, 2, 3]], expected)
    assert loss.missing_label_loss(3) == pytest.approx(expected)
    assert np.all(result.gradient[[0, 2, 3]] == 0.0)
    alone = loss(times[[1]], labels[[1]])
    assert result.per_sample[1] == pytest.approx(alone.per_sample[0], rel=1e-14)
    np.testing.assert_allclose(result.gradient[1] * 4, alone.gradient[0], rtol=1e-14)


def test_first_spike_prediction_and_ties():
    times = np.array([[1.0, 0.5, 0.9], [0.3, 0.3, 0.3], [INF, 0.8, 0.8], [INF, INF, INF], [2.0, INF, INF]])
    np.testing.assert_array_equal(first_spike_prediction(times), [1, -1, -1, -1, 0])  # (ties: no decision)
    assert accuracy(times, [1, 0, 2, 0, 0]) == pytest.approx(2 / 5)
    later_tie = np.array([[0.2, 0.5, 0.5], [INF, 0.1, INF]])  # (a tie behind the first spike decides nothing)
    np.testing.assert_array_equal(first_spike_prediction(later_tie), [0, 1])
    assert first_spike_prediction(times).dtype == np.int64


def test_factory_and_parameter_errors():
    assert set(available_losses()) == {"squared", "crossentropy"}
    assert make_loss("squared", delta=0.3) == ShiftInvariantSquaredError(delta=0.3)
    assert make_loss("crossentropy", xi=0.4) == TTFSCrossEntropy(xi=0.4)
    with pytest.raises(ValueError, match="crossentropy, squared"):
        make_loss("hinge")
    with pytest.raises(ValueError, match="allowed: delta"):
        make_loss("squared", xi=0.1)
    with pytest.raises(ValueError, match="TTFSCrossEntropy.xi"):
        TTFSCrossEntropy(xi=0.0)
    with pytest.raises(ValueError, match="TTFSCrossEntropy.alpha"):
        TTFSCrossEntropy(alpha=-1.0)
    with pytest.raises(ValueError, match="ShiftInvariantSquaredError.delta"):
        ShiftInvariantSquaredError(delta=float("nan"))
    with pytest.raises(ValueError, match="delta"):
        ShiftInvariantSquaredError(delta="0.2")


@pytest.mark.parametrize(
    ("times", "labels", "match"),
    [
        ([[1.0, np.nan]], [0], "output_times"),
        ([[1.0, -INF]], [0], "output_times"),
        ([1.0, 2.0], [0], "output_times"),
        (np.zeros((2, 0)), [0, 0], r"output_times: .* n_outputs >= 1"),  # (not "labels: values must be in [0, -1]")
        ([[1.0, 2.0]], [2], "labels"),
        ([[1.0, 2.0]], [-1], "labels"),
        ([[1.0, 2.0]], [0, 1], "labels"),
        ([[1.0, 2.0]], [0.5], "labels"),
    ],
)
def test_bad_inputs_name_the_field(times, labels, match):
    for loss in (ShiftInvariantSquaredError(), TTFSCrossEntropy()):
        with pytest.raises(ValueError, match=match):
            loss(times, labels)
    with pytest.raises(ValueError, match=match):
        accuracy(times, labels)


def test_a_loss_that_overflows_is_an_error_naming_its_parameters():
    """exp(t_y / beta) overflows for beta = 0.005 and a label spike after 3.55 tau_s."""
    times = np.array([[4.0, 1.0, np.inf], [0.5, 1.0, 2.0]])
    loss = TTFSCrossEntropy(beta=0.005)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's overflow warning is not shown on top
        with pytest.raises(ValueError, match=r"beta=0.005\): not finite for 1 of 2 samples .*up to 4 tau_s"):
            loss(times, [0, 0])
        assert np.isfinite(loss(times, [1, 0]).per_sample).all()  # no label spike late enough
        # (delta**2 of a silent label's constant loss raised Python's OverflowError, naming nothing)
        for labels in ([1, 0], [2, 2]):
            with pytest.raises(ValueError, match=r"ShiftInvariantSquaredError\(delta=1e\+200\): not finite for "):
                ShiftInvariantSquaredError(delta=1e200)(times, labels)


def test_a_loss_whose_gradient_alone_is_not_finite_is_an_error():
    """xi = 1e-310 and outputs tied at 0: the loss is log 2, finite, but its gradient -1/2 / xi overflows (checking
    the loss only would hand an infinite gradient to backward)."""
    loss = TTFSCrossEntropy(xi=1e-310)
    with pytest.raises(ValueError, match=r"TTFSCrossEntropy\(xi=1e-310.*not finite for 1 of 1 samples"):
        loss(np.array([[0.0, 0.0]]), [0])


def test_a_single_silent_output_decides_nothing():
    """With one output neuron there is no tie to tell a silent sample: it must still be -1, no decision (crediting
    the only neuron counted a network that never spikes as always right)."""
    times = np.array([[INF], [0.5]])
    np.testing.assert_array_equal(first_spike_prediction(times), [-1, 0])
    assert accuracy(times, [0, 0]) == 0.5


def test_accuracy_of_an_empty_batch_is_an_error():
    """(the mean of no samples is NaN, with numpy's warning, not an accuracy)"""
    with pytest.raises(ValueError, match="accuracy of an empty batch is undefined"):
        accuracy(np.zeros((0, 3)), np.zeros(0, dtype=np.int64))
