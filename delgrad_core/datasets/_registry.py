"""A small name -> loader registry so that further datasets can be added next to Yin-Yang."""

from __future__ import annotations

from collections.abc import Callable

from delgrad_core.datasets._dataset import Dataset
from delgrad_core.datasets._digits import DIGITS_SPLITS, digits
from delgrad_core.datasets._mnist import FASHION_MNIST_SPLITS, MNIST_SPLITS, fashion_mnist, mnist
from delgrad_core.datasets._yin_yang import YIN_YANG_SPLITS, yin_yang

__all__ = ["available_datasets", "load_dataset"]

# name -> (loader taking the split name, allowed split names)
_LOADERS: dict[str, tuple[Callable[[str], Dataset], tuple[str, ...]]] = {
    "yin_yang": (yin_yang, tuple(YIN_YANG_SPLITS)),
    # the image datasets read their files from the default directory (environment variable or Debian's)
    "fashion_mnist": (fashion_mnist, tuple(FASHION_MNIST_SPLITS)),
    "mnist": (mnist, tuple(MNIST_SPLITS)),
    "digits": (digits, tuple(DIGITS_SPLITS)),
}


def available_datasets() -> dict[str, tuple[str, ...]]:
    """Registered dataset names, each with its split names."""
    return {name: splits for name, (_, splits) in _LOADERS.items()}


def load_dataset(name: str, split: str = "train") -> Dataset:
    """Load split `split` of the registered dataset `name`.

    Unknown names or splits raise ``ValueError`` listing the allowed values.
    """
    if name not in _LOADERS:
        raise ValueError(f"name: unknown dataset {name!r}; choose one of {', '.join(sorted(_LOADERS))}")
    loader, splits = _LOADERS[name]
    if split not in splits:
        raise ValueError(f"split: unknown split {split!r} of dataset {name!r}; choose one of {', '.join(splits)}")
    return loader(split)
