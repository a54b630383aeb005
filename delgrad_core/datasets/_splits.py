"""Reproducible, stratified partition of a labelled set into parts of given sizes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["stratified_partition"]


def _evenly_spaced(n_items: int, n_picked: int) -> np.ndarray:
    """Boolean mask of exactly `n_picked` of `n_items` positions, spread as evenly as possible."""
    position = np.arange(n_items, dtype=np.int64)
    return (position + 1) * n_picked // n_items > position * n_picked // n_items


def stratified_partition(labels: np.ndarray, part_sizes: Sequence[int], seed: int) -> tuple[np.ndarray, ...]:
    """Split sample indices into disjoint parts of exactly `part_sizes` samples, stratified by label.

    The samples are ordered by label and, within a label, by a random permutation drawn from
    ``np.random.RandomState(seed)`` (numpy's frozen legacy generator, so the result does not change
    across numpy versions). The first part takes evenly spaced positions of that order, each
    later part evenly spaced positions of what is left. Each class therefore contributes its
    share of every part up to one sample.

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
    sizes = [int(size) for size in part_sizes]
    if labels.ndim != 1:
        raise ValueError(f"labels: expected a 1-d array, got shape {labels.shape}")
    if not sizes or min(sizes) < 0 or sum(sizes) != labels.shape[0]:
        raise ValueError(f"part_sizes: expected non-negative sizes adding up to {labels.shape[0]}, got {sizes}")
    random_key = np.random.RandomState(seed).permutation(labels.shape[0])
    remaining = np.lexsort((random_key, labels))
    parts = []
    for size in sizes:
        picked = _evenly_spaced(remaining.shape[0], size)
        parts.append(np.sort(remaining[picked]))
        remaining = remaining[~picked]
    return tuple(parts)
