"""scikit-learn's bundled 8 x 8 handwritten digits (1,797 images, no download).

scikit-learn is optional (``pip install 'delgrad[sklearn]'``) and imported only when loading.
The images are partitioned once, stratified by class (`stratified_partition`, seed
`DIGITS_SPLIT_SEED`), into test (359 images, 20 %), validation (180, 10 %) and train (1,258,
the rest). Features are the grey levels 0..16 divided by 16 (float64 in [0, 1]), 64 per image.
"""

from __future__ import annotations

from delgrad_core._errors import InvalidValueError
from delgrad_core.datasets._dataset import Dataset
from delgrad_core.datasets._splits import stratified_partition

__all__ = ["DIGITS_CLASS_NAMES", "DIGITS_SPLITS", "DIGITS_SPLIT_SEED", "digits"]

#: Split name -> number of images.
DIGITS_SPLITS = {"train": 1258, "validation": 180, "test": 359}
#: Seed of the partition into the three splits.
DIGITS_SPLIT_SEED = 0
DIGITS_CLASS_NAMES = tuple(str(digit) for digit in range(10))
# The bundled images take grey levels 0..16.
_MAX_GREY_LEVEL = 16.0


def _load_digits():
    try:
        from sklearn.datasets import load_digits
    except ImportError as error:
        raise ImportError(
            "digits: needs scikit-learn, which is not installed; install it with pip install 'delgrad[sklearn]'"
        ) from error
    return load_digits()


def digits(split: str = "train") -> Dataset:
    """One split of scikit-learn's 8 x 8 digits: ``"train"``, ``"validation"`` or ``"test"``.

    Returns
    -------
    Dataset
        Features float64 in [0, 1], shape (n, 64); labels 0..9, class names ``"0"`` to ``"9"``.

    Raises
    ------
    ImportError
        If scikit-learn is not installed.
    """
    if not isinstance(split, str) or split not in DIGITS_SPLITS:
        raise InvalidValueError(f"split: unknown digits split {split!r}; choose one of {', '.join(DIGITS_SPLITS)}")
    bundle = _load_digits()
    labels = bundle.target
    if labels.shape[0] != sum(DIGITS_SPLITS.values()):
        raise RuntimeError(
            f"digits: scikit-learn bundles {labels.shape[0]} images, expected {sum(DIGITS_SPLITS.values())}"
        )
    order = ("test", "validation", "train")
    parts = dict(zip(order, stratified_partition(labels, [DIGITS_SPLITS[name] for name in order], DIGITS_SPLIT_SEED)))
    kept = parts[split]
    return Dataset("digits", split, bundle.data[kept] / _MAX_GREY_LEVEL, labels[kept], DIGITS_CLASS_NAMES)
