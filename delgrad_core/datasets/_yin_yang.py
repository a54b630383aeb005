"""The Yin-Yang classification dataset (Kriener, Göltz, Petrovici 2022; docs/model.md §5).

Points (x, y) inside a circle of radius `r_big` centred at (r_big, r_big), classified into the
two halves of a yin-yang symbol and its two dots. The generator reproduces the published one,
including its sequence of calls to numpy's legacy ``RandomState``, so that the standard splits
(train: 5000 samples, seed 42; validation: 1000, seed 41; test: 1000, seed 40) are identical
to the published ones.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from delgrad_core._errors import InvalidValueError
from delgrad_core._ir import real_array
from delgrad_core._numbers import checked_number
from delgrad_core.datasets._dataset import Dataset

__all__ = ["YIN_YANG_CLASS_NAMES", "YIN_YANG_SPLITS", "yin_yang", "yin_yang_class", "yin_yang_plane",
           "yin_yang_samples"]

#: Class names in label order, as published.
YIN_YANG_CLASS_NAMES = ("yin", "yang", "dot")

#: Standard splits: name -> (number of samples, seed).
YIN_YANG_SPLITS = {"train": (5000, 42), "validation": (1000, 41), "test": (1000, 40)}


def _distance(x: float, y: float, x0: float, y0: float) -> float:
    """Euclidean distance, computed as sqrt(dx^2 + dy^2) like the published code (bit-identical)."""
    return math.sqrt((x - x0) * (x - x0) + (y - y0) * (y - y0))


def yin_yang_class(x: float, y: float, r_small: float = 0.1, r_big: float = 0.5) -> int:
    """Class of the point (x, y) of the big circle (docs/model.md §5).

    With d_R, d_L the distances to the dot centres (1.5 r_big, r_big) and (0.5 r_big, r_big):
    2 (dot) if d_R < r_small or d_L < r_small; else 1 if d_R <= r_small or
    r_small < d_L <= r_big / 2 or (y > r_big and d_R > r_big / 2); else 0.  A point outside the
    big circle has no class: `InvalidValueError`, as for coordinates that are no finite numbers.
    """
    r_small, r_big = _radii(r_small, r_big)
    x, y = _coordinate(x, "x"), _coordinate(y, "y")
    if _distance(x, y, r_big, r_big) > r_big:
        raise InvalidValueError(f"(x, y): ({x!r}, {y!r}) lies outside the big circle (centre ({r_big:g}, {r_big:g}), "
                                f"radius {r_big:g}), where no class is defined")
    return _class_of(x, y, r_small, r_big)


def _coordinate(value, name: str) -> float:
    """A coordinate of one point as a float: a finite real number (or a 0-d array of one)."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    return checked_number(value, name, what="a finite number (the coordinate of one point)")


def _class_of(x: float, y: float, r_small: float, r_big: float) -> int:
    """`yin_yang_class` of a point of the circle, without the checks (the generator's loop)."""
    d_right = _distance(x, y, 1.5 * r_big, r_big)
    d_left = _distance(x, y, 0.5 * r_big, r_big)
    if d_right < r_small or d_left < r_small:
        return 2
    if d_right <= r_small or r_small < d_left <= 0.5 * r_big or (y > r_big and d_right > 0.5 * r_big):
        return 1
    return 0


_RADIUS_RANGE = (1e-150, 1e150)  # r_big (beyond, squared distances underflow or overflow: the sampler never ends)


def _radii(r_small, r_big) -> tuple[float, float]:
    """The radii as floats, checked (real numbers: not strings, booleans or None)."""
    for name, value in (("r_small", r_small), ("r_big", r_big)):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise InvalidValueError(f"{name}: expected a number, got {value!r}")
    r_small, r_big = float(r_small), float(r_big)
    if not (math.isfinite(r_big) and r_big > 0):
        raise InvalidValueError(f"r_big: expected a finite value > 0, got {r_big!r}")
    if not _RADIUS_RANGE[0] <= r_big <= _RADIUS_RANGE[1]:  # (squared distances: no underflow to 0, no overflow)
        raise InvalidValueError(f"r_big: expected a value from {_RADIUS_RANGE[0]:g} to {_RADIUS_RANGE[1]:g}, whose "
                                f"square is an ordinary float, got {r_big!r}")
    if not (math.isfinite(r_small) and 0 < r_small < 0.5 * r_big):
        raise InvalidValueError(f"r_small: expected a value in (0, r_big / 2) = (0, {0.5 * r_big}), got {r_small!r}")
    return r_small, r_big


_SMALLEST_DOT = 50  # r_big / r_small at most: about 1,600 points drawn per dot sample


def yin_yang_samples(
    n_samples: int, seed: int, r_small: float = 0.1, r_big: float = 0.5
) -> tuple[np.ndarray, np.ndarray]:
    """Draw `n_samples` Yin-Yang points with the published generator.

    Per sample: the goal class is ``rng.randint(3)``; then ``rng.rand(2) * 2 * r_big`` is drawn
    until the point lies inside the big circle and has the goal class (rejection sampling, which
    balances the classes in expectation). ``rng = np.random.RandomState(seed)``.

    Returns
    -------
    features : ndarray, shape (n_samples, 4)
        ``(x, y, 1 - x, 1 - y)``, as published (in [0, 1] for r_big <= 0.5 only).
    labels : ndarray of int64, shape (n_samples,)
    """
    checked_number(n_samples, "n_samples", 0, integer=True)
    checked_number(seed, "seed", 0, 2**32 - 1, integer=True, optional="fresh entropy")  # (numpy's RandomState)
    r_small, r_big = _radii(r_small, r_big)
    if r_small < r_big / _SMALLEST_DOT:  # (the sampler draws about (r_big / r_small)^2 / 1.6 points per dot sample)
        raise InvalidValueError(f"r_small: expected a value from r_big / {_SMALLEST_DOT} to r_big / 2 "
                                f"({r_big / _SMALLEST_DOT:g} to {0.5 * r_big:g}): a smaller dot takes the rejection "
                                f"sampler hours, got {r_small!r}")
    rng = np.random.RandomState(seed)
    points = np.empty((int(n_samples), 2))
    labels = np.empty(int(n_samples), dtype=np.int64)
    for i in range(int(n_samples)):
        goal = rng.randint(3)
        while True:
            x, y = rng.rand(2) * 2.0 * r_big
            if _distance(x, y, r_big, r_big) > r_big:
                continue
            if _class_of(x, y, r_small, r_big) == goal:
                break
        points[i] = x, y
        labels[i] = goal
    return np.concatenate([points, 1.0 - points], axis=1), labels


def yin_yang_plane(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Features (x, y, 1 - x, 1 - y) of points of the plane (for decision maps): `x` and `y`
    arrays of one shape, of finite numbers."""
    coordinates = [real_array(x, "x"), real_array(y, "y")]
    for name, array in zip("xy", coordinates):
        if not np.all(np.isfinite(array)):
            raise InvalidValueError(f"{name}: expected finite numbers, got NaN or infinity")
    if coordinates[0].shape != coordinates[1].shape:
        raise InvalidValueError(f"x, y: expected arrays of one shape, got {coordinates[0].shape} and "
                                f"{coordinates[1].shape}")
    points = np.stack([np.ravel(coordinates[0]), np.ravel(coordinates[1])], axis=1)
    return np.concatenate([points, 1.0 - points], axis=1)


def yin_yang(split: str = "train") -> Dataset:
    """One standard split of Yin-Yang: ``"train"``, ``"validation"`` or ``"test"``."""
    if not isinstance(split, str) or split not in YIN_YANG_SPLITS:
        raise InvalidValueError(f"split: unknown Yin-Yang split {split!r}; choose one of {', '.join(YIN_YANG_SPLITS)}")
    n_samples, seed = YIN_YANG_SPLITS[split]
    features, labels = yin_yang_samples(n_samples, seed)
    return Dataset("yin_yang", split, features, labels, YIN_YANG_CLASS_NAMES)
