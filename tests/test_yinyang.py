"""Yin-Yang dataset (Kriener, Göltz, Petrovici 2022), `Dataset` and the dataset registry."""

import numpy as np
import pytest

from delgrad_core import InvalidValueError
from delgrad_core.datasets import (
    YIN_YANG_CLASS_NAMES,
    Dataset,
    available_datasets,
    load_dataset,
    yin_yang,
    yin_yang_class,
    yin_yang_plane,
    yin_yang_samples,
)
from delgrad_core.datasets._dataset import changed_splits

# Published class counts of the standard splits.
PUBLISHED_COUNTS = {"train": [1681, 1702, 1617], "validation": [316, 336, 348], "test": [350, 316, 334]}


@pytest.fixture(scope="module")
def splits():
    return {split: yin_yang(split) for split in PUBLISHED_COUNTS}


def classify_vectorised(points, r_small=0.1, r_big=0.5):
    """Independent, array-based statement of the class rule of docs/model.md §5."""
    x, y = points[:, 0], points[:, 1]
    d_right = np.sqrt((x - 1.5 * r_big) ** 2 + (y - r_big) ** 2)
    d_left = np.sqrt((x - 0.5 * r_big) ** 2 + (y - r_big) ** 2)
    dot = (d_right < r_small) | (d_left < r_small)
    upper = ((d_right <= r_small) | ((d_left > r_small) & (d_left <= 0.5 * r_big))
             | ((y > r_big) & (d_right > 0.5 * r_big)))
    return np.where(dot, 2, np.where(upper, 1, 0))


@pytest.mark.parametrize("split", list(PUBLISHED_COUNTS))
def test_standard_splits_reproduce_published_class_counts(splits, split):
    dataset = splits[split]
    assert len(dataset) == sum(PUBLISHED_COUNTS[split])
    assert dataset.features.shape == (len(dataset), 4) and dataset.features.dtype == np.float64
    assert dataset.labels.dtype == np.int64
    assert dataset.class_counts().tolist() == PUBLISHED_COUNTS[split]
    assert (dataset.name, dataset.split, dataset.class_names) == ("yin_yang", split, YIN_YANG_CLASS_NAMES)


@pytest.mark.parametrize("split", list(PUBLISHED_COUNTS))
def test_features_are_points_of_the_circle_with_mirrored_copies(splits, split):
    features, labels = splits[split].features, splits[split].labels
    assert np.all((features >= 0.0) & (features <= 1.0))
    np.testing.assert_allclose(features[:, :2] + features[:, 2:], 1.0, rtol=0, atol=1e-15)
    assert np.all(np.hypot(features[:, 0] - 0.5, features[:, 1] - 0.5) <= 0.5)
    np.testing.assert_array_equal(classify_vectorised(features[:, :2]), labels)


def test_generation_is_deterministic_and_seeded():
    a_features, a_labels = yin_yang_samples(200, seed=7)
    b_features, b_labels = yin_yang_samples(200, seed=7)
    np.testing.assert_array_equal(a_features, b_features)
    np.testing.assert_array_equal(a_labels, b_labels)
    assert not np.array_equal(a_features, yin_yang_samples(200, seed=8)[0])
    # a shorter run with the train seed is a prefix of the train split
    train = yin_yang("train")
    prefix_features, prefix_labels = yin_yang_samples(50, seed=42)
    np.testing.assert_array_equal(prefix_features, train.features[:50])
    np.testing.assert_array_equal(prefix_labels, train.labels[:50])


def test_other_radii_follow_the_same_rule():
    features, labels = yin_yang_samples(300, seed=3, r_small=0.2, r_big=1.0)
    assert np.all((features[:, :2] >= 0.0) & (features[:, :2] <= 2.0))
    np.testing.assert_array_equal(classify_vectorised(features[:, :2], 0.2, 1.0), labels)
    assert set(labels.tolist()) == {0, 1, 2}


@pytest.mark.parametrize(
    ("point", "expected"),
    [
        ((0.75, 0.5), 2),  # centre of the right dot
        ((0.25, 0.5), 2),  # centre of the left dot
        ((0.5, 0.9), 1),  # top, far from both lobes
        ((0.5, 0.1), 0),  # bottom, far from both lobes
        ((0.25, 0.65), 1),  # left lobe above its dot
        ((0.25, 0.35), 1),  # left lobe below its dot
        ((0.75, 0.65), 0),  # right lobe above its dot
        ((0.75, 0.35), 0),  # right lobe below its dot
    ],
)
def test_class_rule_on_hand_checked_points(point, expected):
    assert yin_yang_class(*point) == expected


@pytest.mark.parametrize(("point", "expected"), [
    ((0.875, 0.5), 1),  # on the right dot's rim, d_R = r_small: "d_R <= r_small" is yang, not dot
    ((0.125, 0.5), 0),  # on the left dot's rim at y = r_big: not a dot, not above the middle: yin
    ((0.25, 0.25), 1),  # on the left lobe's rim, d_L = r_big / 2: "r_small < d_L <= r_big / 2" is yang
])
def test_class_rule_on_the_rims_of_the_dots_and_the_left_lobe(point, expected):
    """Distances exactly equal to the radii (r_small = 1/8 and the points are binary fractions, so they are exact):
    each comparison of docs/model.md §5 decides one of these, a < for a <= moves the point to another class."""
    assert yin_yang_class(*point, r_small=0.125) == expected
    assert classify_vectorised(np.array([point]), r_small=0.125)[0] == expected


def test_the_big_circle_itself_is_inside_and_a_dot_of_half_its_radius_is_not_allowed():
    """The class is defined on the closed disc (the generator keeps points at distance r_big, too), and r_small
    must stay below r_big / 2, where the dots would fill the lobes (an open interval: r_big / 2 itself is refused)."""
    assert yin_yang_class(0.5, 0.0) == 0 and yin_yang_class(0.0, 0.5) == 1  # (distance 0.5 from the centre)
    with pytest.raises(InvalidValueError, match=r"r_small: expected a value in \(0, r_big / 2\) = \(0, 0.25\)"):
        yin_yang_class(0.5, 0.5, r_small=0.25)


def test_plane_features_are_the_points_and_their_mirror_images():
    """Decision maps feed the network (x, y, 1 - x, 1 - y), as the dataset's samples are (the mirrored half
    copied as (x, y) gave a map of another input)."""
    features = yin_yang_plane(np.array([[0.25, 0.75]]), np.array([[0.125, 0.5]]))
    np.testing.assert_array_equal(features, [[0.25, 0.125, 0.75, 0.875], [0.75, 0.5, 0.25, 0.5]])


def test_balanced_in_expectation(splits):
    fractions = splits["train"].class_counts() / len(splits["train"])
    np.testing.assert_allclose(fractions, 1 / 3, atol=0.03)


def test_registry_and_errors():
    assert available_datasets()["yin_yang"] == ("train", "validation", "test")
    loaded = load_dataset("yin_yang", "test")
    np.testing.assert_array_equal(loaded.features, yin_yang("test").features)
    with pytest.raises(ValueError, match="choose one of .*yin_yang"):
        load_dataset("cifar10", "train")
    with pytest.raises(ValueError, match="split: unknown split 'holdout' of dataset 'yin_yang'; choose one of train, "
                                         "validation, test"):  # (the registry's check, before the loader's)
        load_dataset("yin_yang", "holdout")
    with pytest.raises(ValueError, match="choose one of train, validation, test"):
        yin_yang("valid")
    with pytest.raises(ValueError, match="n_samples"):
        yin_yang_samples(-1, seed=0)
    no_features, no_labels = yin_yang_samples(0, seed=0)  # (no samples is allowed: empty arrays)
    assert no_features.shape == (0, 4) and no_labels.shape == (0,)
    with pytest.raises(ValueError, match="r_small"):
        yin_yang_samples(10, seed=0, r_small=0.3, r_big=0.5)
    with pytest.raises(ValueError, match="r_big"):
        yin_yang_samples(10, seed=0, r_big=0.0)
    # (1e-300 was taken, and the rejection sampler never finished)
    with pytest.raises(ValueError, match=r"r_small: expected a value from r_big / 50 to r_big / 2 \(0.01 to 0.25\): "
                                         r"a smaller dot takes the rejection sampler hours, got 1e-300"):
        yin_yang_samples(10, seed=0, r_small=1e-300)
    assert len(yin_yang_samples(30, seed=0, r_small=0.01)[1]) == 30  # (the smallest dot allowed: within a second)
    # (radii whose squares underflow to 0 or overflow to inf: every point drawn was a dot, or outside, for ever)
    for r_small, r_big in ((1e-301, 1e-300), (1e199, 1e200)):
        with pytest.raises(ValueError, match=r"r_big: expected a value from 1e-150 to 1e\+150, whose square is an "
                                             "ordinary float"):
            yin_yang_samples(2, 0, r_small=r_small, r_big=r_big)
    assert yin_yang_samples(30, seed=0, r_small=2e-150, r_big=1e-149)[1].tolist() == \
        yin_yang_samples(30, seed=0, r_small=0.2, r_big=1.0)[1].tolist()  # (the same draws, scaled)
    for value in (None, "0.05", True):  # (None and "abc" ended in float()'s own errors; "0.05" was taken)
        with pytest.raises(ValueError, match=f"r_small: expected a number, got {value!r}"):
            yin_yang_samples(10, seed=0, r_small=value)


def test_dataset_validation_and_read_only_arrays():
    dataset = Dataset("toy", "train", [[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]], [0, 1, 1], ("a", "b"))
    assert len(dataset) == 3 and dataset.n_features == 2 and dataset.n_classes == 2
    with pytest.raises(ValueError):
        dataset.features[0, 0] = 2.0
    with pytest.raises(ValueError, match="Dataset.labels"):
        Dataset("toy", "train", [[0.0], [1.0]], [0, 2], ("a", "b"))
    with pytest.raises(ValueError, match="Dataset.labels"):
        Dataset("toy", "train", [[0.0], [1.0]], [0], ("a", "b"))
    with pytest.raises(ValueError, match="Dataset.features"):
        Dataset("toy", "train", [0.0, 1.0], [0, 1], ("a", "b"))
    with pytest.raises(ValueError, match="Dataset.features"):
        Dataset("toy", "train", [[np.nan], [1.0]], [0, 1], ("a", "b"))
    with pytest.raises(ValueError, match="Dataset.name"):
        Dataset("", "train", [[0.0]], [0], ("a",))
    # (numpy read strings as numbers and dropped imaginary parts with a warning; a string of class
    # names was split into its letters)
    for features, kind in (([["0.5", "1e3"]], "strings"), ([[1 + 2j, 0.5]], "complex numbers"),
                           ([[True, False]], "booleans")):
        with pytest.raises(ValueError, match=f"Dataset.features: expected an array of real numbers, got {kind}"):
            Dataset("toy", "train", features, [0], ("a", "b"))
    # (a set or dict of names was taken in the order of the process's string hashes: label 0 was
    # 'dog' in one run and 'cat' in the next, and the split's digest changed with it)
    for names in ("abc", {"cat", "dog"}, {"cat": 0, "dog": 1}, ("a", "a"), ("a", "")):
        with pytest.raises(ValueError, match=r"^Dataset.class_names: expected a non-empty tuple \(or list\) of "
                                             r"distinct non-empty strings, class i's name at index i, got "):
            Dataset("toy", "train", np.zeros((2, 2)), [0, 1], names)
    # (== raised numpy's "truth value of an array is ambiguous")
    toy = Dataset("toy", "train", [[0.1, 0.2], [0.3, 0.4]], [0, 1], ["a", "b"])
    assert toy == Dataset("toy", "train", [[0.1, 0.2], [0.3, 0.4]], [0, 1], ("a", "b")) and yin_yang("test") == \
        yin_yang("test")
    assert toy != Dataset("toy", "train", [[0.1, 0.2], [0.3, 0.5]], [0, 1], ("a", "b")) and toy != "toy"


def test_batches_cover_every_sample_once():
    dataset = yin_yang("validation")
    ordered = list(dataset.batches(300))
    assert [len(labels) for _, labels in ordered] == [300, 300, 300, 100]
    np.testing.assert_array_equal(np.concatenate([f for f, _ in ordered]), dataset.features)
    shuffled = list(dataset.batches(256, rng=np.random.default_rng(0)))
    features = np.concatenate([f for f, _ in shuffled])
    labels = np.concatenate([lab for _, lab in shuffled])
    assert not np.array_equal(features, dataset.features)
    order = np.lexsort(features.T[::-1])
    reference = np.lexsort(dataset.features.T[::-1])
    np.testing.assert_array_equal(features[order], dataset.features[reference])
    np.testing.assert_array_equal(labels[order], dataset.labels[reference])
    with pytest.raises(ValueError, match=r"rng: expected a numpy Generator or RandomState \(e.g. "
                                         r"np.random.default_rng\(seed\)\) or None, got 0"):
        next(dataset.batches(1, 0))  # (AttributeError: 'int' object has no attribute 'permutation')
    with pytest.raises(ValueError, match="batch_size"):
        next(dataset.batches(0))


@pytest.mark.parametrize(("point", "message"), [
    ((float("nan"), 0.5), "x: expected a finite number"),  # (was class 0)
    ((0.5, float("inf")), "y: expected a finite number"),
    ((np.array([0.5]), 0.5), r"x: expected a finite number \(the coordinate of one point\), got array"),
    ((5.0, 5.0), r"\(x, y\): \(5.0, 5.0\) lies outside the big circle"),  # (was class 1)
    ((0.0, 0.0), "lies outside the big circle"),
])
def test_class_rule_refuses_points_it_does_not_classify(point, message):
    with pytest.raises(InvalidValueError, match=message):
        yin_yang_class(*point)
    assert yin_yang_class(np.array(0.75), np.float32(0.5)) == 2  # (a 0-d array is one number)


def toy(features, labels, class_names=("a", "b")):
    """A Dataset named toy, split train."""
    return Dataset("toy", "train", features, labels, class_names)


@pytest.mark.parametrize("other", [
    toy([[0.0], [0.0]], [0, 0]),  # the same 24 zero bytes (3 features + 1 label), cut into other shapes
    toy([[0.0, 0.0, 0.0]], [0], ("b", "a")),  # other class names
    toy([[0.0, 0.0, 0.0]], [1]),  # another label
    toy([[0.0, 0.0, 0.5]], [0]),  # another feature
])
def test_digest_tells_apart_datasets_that_differ_in_any_part(other):
    """The digest covers the class names and the shapes and values of the features and labels."""
    reference = toy([[0.0, 0.0, 0.0]], [0])
    assert reference.digest() == toy([[0.0, 0.0, 0.0]], [0]).digest()
    assert other.digest() != reference.digest()


def test_changed_splits_names_splits_changed_or_not_recorded():
    """A split whose digest differs, or that the run did not record, counts as changed."""
    recorded = {"train": "d1", "test": "d3"}
    assert changed_splits(recorded, {"train": "d1", "validation": "d2", "test": "d4"}) == ["validation", "test"]
    assert changed_splits(recorded, dict(recorded)) == []


@pytest.mark.parametrize(("n_samples", "batch_size", "sizes"), [(7, 3, [3, 3, 1]), (6, 3, [3, 3]), (1, 5, [1])])
def test_batches_keep_a_last_batch_of_one_sample(n_samples, batch_size, sizes):
    """In order, every sample once: a last batch may hold a single sample."""
    dataset = toy(np.linspace(0, 1, n_samples)[:, None], np.arange(n_samples) % 2)
    batches = list(dataset.batches(batch_size))
    assert [len(labels) for _, labels in batches] == sizes
    np.testing.assert_array_equal(np.concatenate([labels for _, labels in batches]), np.arange(n_samples) % 2)


def test_dataset_labels_are_read_only_and_class_counts_count_empty_classes():
    """Labels are frozen like the features; class_counts has one entry per class name, trailing empty ones too."""
    dataset = toy([[0.5], [0.5]], [0, 0], ("a", "b", "c"))
    with pytest.raises(ValueError):
        dataset.labels[0] = 1
    assert dataset.class_counts().tolist() == [2, 0, 0]


@pytest.mark.parametrize(("labels", "message"), [
    ([0.0, 1.0], "Dataset.labels: expected integers, got dtype float64"),
    ([[0], [1]], r"Dataset.labels: expected shape \(2,\), got \(2, 1\)"),
    (np.array([0, 2**63], np.uint64), r"Dataset.labels: .* the first, of sample 1, is 9223372036854775808$"),
])
def test_dataset_refuses_labels_that_are_no_integers_or_not_1_d(labels, message):
    """(float labels would be truncated to classes; a column of labels would be taken for n samples; a
    uint64 label of 2**63 was shown wrapped to a negative number)"""
    with pytest.raises(InvalidValueError, match=message):
        toy([[0.0], [1.0]], labels)
