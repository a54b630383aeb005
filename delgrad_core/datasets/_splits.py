"""Reproducible, stratified partition of a labelled set into parts of given sizes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from delgrad_core._errors import InvalidValueError

__all__ = ["stratified_partition"]


def _apportion(class_counts: np.ndarray, part_sizes: np.ndarray) -> np.ndarray:
    """Samples of each class in each part: the exact share rounded down or up, margins kept.

    The exact shares ``class_counts[c] * part_sizes[p] / n`` have integer row and column sums,
    so such a rounding exists; the round-ups are placed by augmenting paths (bipartite
    b-matching between classes and parts).

    Returns
    -------
    ndarray of int64, shape (n_classes, n_parts)
    """
    n_samples = int(class_counts.sum())
    scaled = np.outer(class_counts, part_sizes)  # n_samples times the exact shares
    counts = scaled // n_samples
    can_round_up = scaled % n_samples > 0
    rounded_up = np.zeros_like(can_round_up)
    free = part_sizes - counts.sum(axis=0)  # round-ups each part still takes

    def augment(label: int, seen: set[int]) -> bool:
        for part in np.flatnonzero(can_round_up[label] & ~rounded_up[label]):
            if part in seen:
                continue
            seen.add(part)
            if free[part] > 0:
                free[part] -= 1
                rounded_up[label, part] = True
                return True
            for other in np.flatnonzero(rounded_up[:, part]):
                if augment(int(other), seen):  # `other` rounds up elsewhere and leaves `part` to `label`
                    rounded_up[other, part] = False
                    rounded_up[label, part] = True
                    return True
        return False

    for label, count in enumerate(class_counts):
        for _ in range(int(count - counts[label].sum())):
            if not augment(label, set()):  # cannot happen: the exact shares are a fractional solution
                raise RuntimeError("stratified_partition: no rounding of the class shares found")
    return counts + rounded_up


def stratified_partition(labels: np.ndarray, part_sizes: Sequence[int], seed: int) -> tuple[np.ndarray, ...]:
    """Split sample indices into disjoint parts of exactly `part_sizes` samples, stratified by label.

    Each class gives each part its exact share ``n_class * part_size / n_samples`` rounded down or
    up. Which samples of a class go to which part is random: sample i gets the key ``p[i]`` of a
    permutation ``p`` drawn from ``np.random.RandomState(seed)`` (numpy's frozen legacy generator,
    so the result does not change across numpy versions), and the class's samples, in the order
    of their keys, are cut into consecutive runs.

    Parameters
    ----------
    labels : ndarray of int, shape (n_samples,)
    part_sizes : sequence of int
        Sizes of the parts; they must add up to ``n_samples``.
    seed : int

    Returns
    -------
    tuple of ndarray of int64
        One sorted index array per part.
    """
    labels = np.asarray(labels)
    sizes = np.array([int(size) for size in part_sizes], dtype=np.int64)
    if labels.ndim != 1:
        raise InvalidValueError(f"labels: expected a 1-d array, got shape {labels.shape}")
    if sizes.size == 0 or sizes.min() < 0 or sizes.sum() != labels.shape[0]:
        raise InvalidValueError(
            f"part_sizes: expected non-negative sizes adding up to {labels.shape[0]}, got {sizes.tolist()}"
        )
    if labels.shape[0] == 0:
        return tuple(np.zeros(0, dtype=np.int64) for _ in sizes)
    random_key = np.random.RandomState(seed).permutation(labels.shape[0])
    order = np.lexsort((random_key, labels))  # by class, randomly within a class
    _, class_counts = np.unique(labels, return_counts=True)
    counts = _apportion(class_counts.astype(np.int64), sizes)
    # cut the class blocks of `order` into runs of counts[class, part] samples
    part_of = np.repeat(np.tile(np.arange(sizes.size), class_counts.size), counts.ravel())
    return tuple(np.sort(order[part_of == part]) for part in range(sizes.size))
