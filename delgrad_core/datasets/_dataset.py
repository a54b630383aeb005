"""The `Dataset` container: features, integer labels and class names of one split."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from delgrad_core._errors import InvalidValueError
from delgrad_core._ir import equal_values, real_array
from delgrad_core._numbers import checked_number

__all__ = ["Dataset", "hand_over", "split_digests", "changed_splits"]


@dataclass(frozen=True)
class _HandedOver:
    """Features a loader of this package made for one `Dataset` alone, kept by it without a copy."""

    array: np.ndarray


def hand_over(features: np.ndarray) -> _HandedOver:
    """Pass freshly made float64 `features` to `Dataset` without the defensive copy.

    Package-internal, for loaders whose feature arrays are large (Fashion-MNIST's train split
    is 345 MB): the caller must keep no other reference to `features` or to a view of it.
    """
    return _HandedOver(features)


@dataclass(frozen=True, eq=False)
class Dataset:
    """One split of a labelled dataset.

    Parameters
    ----------
    name, split : str
        Registry name of the dataset (e.g. ``"yin_yang"``) and the split (e.g. ``"train"``).
    features : ndarray of float64, shape (n_samples, n_features)
    labels : ndarray of int64, shape (n_samples,)
        Class indices in ``range(len(class_names))``.
    class_names : tuple of str
        Name of each class, indexed by label.

    The arrays are copied (features made by this package's loaders are handed over instead)
    and made read-only on construction.
    """

    name: str
    split: str
    features: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    __hash__ = None
    __eq__ = equal_values  # (by value: the generated == raised numpy's "truth value ... is ambiguous")

    def __post_init__(self) -> None:
        for field_name in ("name", "split"):
            value = getattr(self, field_name)
            if not isinstance(value, str) or not value:
                raise InvalidValueError(f"Dataset.{field_name}: expected a non-empty string, got {value!r}")
        ordered = isinstance(self.class_names, (list, tuple, np.ndarray))  # (a set's order is the process's)
        class_names = tuple(self.class_names) if ordered else ()
        if not class_names or not all(isinstance(c, str) and c for c in class_names) \
                or len(set(class_names)) < len(class_names):
            raise InvalidValueError(f"Dataset.class_names: expected a non-empty tuple (or list) of distinct non-empty "
                                    f"strings, class i's name at index i, got {self.class_names!r}")
        if isinstance(self.features, _HandedOver):
            features = np.asarray(self.features.array, dtype=np.float64)
        else:  # (real numbers only: numpy would read strings as numbers and drop imaginary parts)
            features = np.array(real_array(self.features, "Dataset.features"))
        if features.ndim != 2:
            hint = " (one feature each: features[:, None])" if features.ndim == 1 else \
                " (flatten each sample: features.reshape(len(features), -1))" if features.ndim > 2 else ""
            raise InvalidValueError(f"Dataset.features: expected a 2-d array (n_samples, n_features), got "
                                    f"{features.ndim}-d{hint}")
        if features.shape[1] == 0:
            raise InvalidValueError(f"Dataset.features: expected at least one feature per sample, got shape "
                                    f"{features.shape}")
        if not np.all(np.isfinite(features)):
            raise InvalidValueError("Dataset.features: contains NaN or inf")
        labels = np.asarray(self.labels)
        if labels.ndim != 1 or labels.shape[0] != features.shape[0]:
            raise InvalidValueError(f"Dataset.labels: expected shape ({features.shape[0]},), got {labels.shape}")
        if labels.size and not np.issubdtype(labels.dtype, np.integer):
            raise InvalidValueError(f"Dataset.labels: expected integers, got dtype {labels.dtype}")
        outside = (labels < 0) | (labels >= len(class_names))  # (before the cast: uint64 2**63 would wrap)
        if np.any(outside):
            first = int(np.argmax(outside))
            raise InvalidValueError(f"Dataset.labels: values must be in [0, {len(class_names) - 1}] (label i is "
                                    f"class_names[i]); {int(outside.sum())} are not, the first, of sample {first}, "
                                    f"is {int(labels[first])}")
        labels = labels.astype(np.int64)
        features.setflags(write=False)
        labels.setflags(write=False)
        object.__setattr__(self, "features", features)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "class_names", class_names)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def n_features(self) -> int:
        """Number of features per sample."""
        return int(self.features.shape[1])

    @property
    def n_classes(self) -> int:
        """Number of classes (length of `class_names`)."""
        return len(self.class_names)

    def digest(self) -> str:
        """SHA-256 (hex) of the class names, features and labels: equal for equal data (a run
        records it to notice data that changed under it)."""
        hasher = hashlib.sha256(json.dumps(list(self.class_names)).encode())
        for array in (self.features, self.labels):
            hasher.update(f"|{array.dtype.str}|{array.shape}|".encode())
            hasher.update(np.ascontiguousarray(array).data)
        return hasher.hexdigest()

    def class_counts(self) -> np.ndarray:
        """Number of samples of each class, shape (n_classes,)."""
        return np.bincount(self.labels, minlength=self.n_classes)

    def batches(
        self, batch_size: int, rng: np.random.Generator | np.random.RandomState | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(features, labels)`` mini-batches covering every sample once.

        In order if `rng` is None, else in the order of ``rng.permutation(len(self))`` (numpy
        Generator or RandomState); the last batch may be smaller than `batch_size`.
        """
        batch_size = checked_number(batch_size, "batch_size", 1, integer=True)
        if rng is not None and not isinstance(rng, (np.random.Generator, np.random.RandomState)):
            raise InvalidValueError(f"rng: expected a numpy Generator or RandomState (e.g. "
                                    f"np.random.default_rng(seed)) or None, got {rng!r}")
        order = np.arange(len(self)) if rng is None else rng.permutation(len(self))
        for start in range(0, len(self), int(batch_size)):
            index = order[start : start + int(batch_size)]
            yield self.features[index], self.labels[index]


def split_digests(datasets) -> dict:
    """{split: digest} of `datasets` (a run records it to find changed data: `changed_splits`)."""
    return {data.split: data.digest() for data in datasets}


def changed_splits(recorded: dict, current: dict) -> list[str]:
    """The splits of `current` ({split: digest}) whose digest differs from, or is missing in,
    the one a run `recorded`."""
    return [split for split, digest in current.items() if recorded.get(split) != digest]
