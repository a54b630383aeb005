"""Datasets: the `Dataset` container, the Yin-Yang generator and a small registry."""

from delgrad_core.datasets._dataset import Dataset
from delgrad_core.datasets._registry import available_datasets, load_dataset
from delgrad_core.datasets._yin_yang import (
    YIN_YANG_CLASS_NAMES,
    YIN_YANG_SPLITS,
    yin_yang,
    yin_yang_class,
    yin_yang_samples,
)

__all__ = [
    "Dataset",
    "available_datasets",
    "load_dataset",
    "YIN_YANG_CLASS_NAMES",
    "YIN_YANG_SPLITS",
    "yin_yang",
    "yin_yang_class",
    "yin_yang_samples",
]
