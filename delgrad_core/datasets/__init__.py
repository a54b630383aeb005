"""Datasets: the `Dataset` container, Yin-Yang, the image datasets and a small registry."""

from delgrad_core.datasets._dataset import Dataset
from delgrad_core.datasets._digits import DIGITS_CLASS_NAMES, DIGITS_SPLIT_SEED, DIGITS_SPLITS, digits
from delgrad_core.datasets._errors import DatasetFileError, DatasetFilesNotFoundError, DatasetOptionsError
from delgrad_core.datasets._idx import read_idx
from delgrad_core.datasets._mnist import (
    FASHION_MNIST_CLASS_NAMES,
    FASHION_MNIST_DEBIAN_DIR,
    FASHION_MNIST_SPLITS,
    MNIST_CLASS_NAMES,
    MNIST_SPLITS,
    MNIST_VALIDATION_SEED,
    fashion_mnist,
    mnist,
)
from delgrad_core.datasets._registry import available_datasets, load_dataset
from delgrad_core.datasets._yin_yang import (
    YIN_YANG_CLASS_NAMES,
    YIN_YANG_SPLITS,
    yin_yang,
    yin_yang_class,
    yin_yang_plane,
    yin_yang_samples,
)

__all__ = [
    "Dataset",
    "DatasetFileError",
    "DatasetFilesNotFoundError",
    "DatasetOptionsError",
    "available_datasets",
    "load_dataset",
    "read_idx",
    "DIGITS_CLASS_NAMES",
    "DIGITS_SPLITS",
    "DIGITS_SPLIT_SEED",
    "digits",
    "FASHION_MNIST_CLASS_NAMES",
    "FASHION_MNIST_DEBIAN_DIR",
    "FASHION_MNIST_SPLITS",
    "fashion_mnist",
    "MNIST_CLASS_NAMES",
    "MNIST_SPLITS",
    "MNIST_VALIDATION_SEED",
    "mnist",
    "YIN_YANG_CLASS_NAMES",
    "YIN_YANG_SPLITS",
    "yin_yang",
    "yin_yang_class",
    "yin_yang_plane",
    "yin_yang_samples",
]
