"""MNIST and Fashion-MNIST from their original IDX files, by one loader.

Both datasets ship as the same four files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each optionally gzipped): 60,000 training
and 10,000 test images of 28 x 28 grey levels 0..255 with labels 0..9. The splits:

- ``test``: the 10,000 t10k images;
- ``validation``: one twelfth (rounded down) of the training file, 5,000 of 60,000 images,
  chosen by `stratified_partition` with seed `MNIST_VALIDATION_SEED` (about as many images of
  each class as the training file holds in proportion);
- ``train``: the other 55,000 images of the training file.

Features are the grey levels divided by 255 (float64 in [0, 1]), flattened row by row.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from delgrad_core._errors import InvalidValueError
from delgrad_core._numbers import checked_number
from delgrad_core.datasets._dataset import Dataset, hand_over
from delgrad_core.datasets._errors import DatasetFileError, DatasetFilesNotFoundError
from delgrad_core.datasets._idx import read_idx
from delgrad_core.datasets._resample import area_average
from delgrad_core.datasets._splits import stratified_partition

__all__ = [
    "FASHION_MNIST_CLASS_NAMES",
    "FASHION_MNIST_DEBIAN_DIR",
    "FASHION_MNIST_SPLITS",
    "MNIST_CLASS_NAMES",
    "MNIST_IMAGE_PIXELS",
    "MNIST_SPLITS",
    "MNIST_VALIDATION_SEED",
    "fashion_mnist",
    "mnist",
]

#: Side of the original images, in pixels.
MNIST_IMAGE_PIXELS = 28
#: Split name -> number of images (with the original files).
MNIST_SPLITS = {"train": 55_000, "validation": 5_000, "test": 10_000}
FASHION_MNIST_SPLITS = dict(MNIST_SPLITS)
#: Seed of the partition of the training file into the train and validation splits.
MNIST_VALIDATION_SEED = 0
MNIST_CLASS_NAMES = tuple(str(digit) for digit in range(10))
FASHION_MNIST_CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
#: Where Debian's package ``dataset-fashion-mnist`` installs the four gzipped files.
FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

# split -> (images file, labels file), without the optional ".gz"
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class _Source:
    """Where one of the two datasets is found and how to get it."""

    name: str
    title: str
    class_names: tuple[str, ...]
    environment_variable: str
    download_url: str
    mirror_url: str | None = None
    debian_package: str | None = None
    debian_dir: Path | None = None


_FASHION_MNIST = _Source(
    "fashion_mnist", "Fashion-MNIST", FASHION_MNIST_CLASS_NAMES, "DELGRAD_FASHION_MNIST_DIR",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    debian_package="dataset-fashion-mnist", debian_dir=FASHION_MNIST_DEBIAN_DIR,
)
_MNIST = _Source("mnist", "MNIST", MNIST_CLASS_NAMES, "DELGRAD_MNIST_DIR", "http://yann.lecun.com/exdb/mnist/",
                 mirror_url="https://ossci-datasets.s3.amazonaws.com/mnist/")  # (torchvision's mirror)


def _expanded(path: str | os.PathLike, what: str) -> Path:
    """`path` with a leading ~ or ~user expanded; an error naming `what` if it cannot be."""
    try:
        return Path(path).expanduser()
    except RuntimeError as exc:  # ("Could not determine home directory": no such user, or no $HOME)
        raise InvalidValueError(f"{what}: cannot expand {os.fspath(path)!r} ({exc})") from None


def _directory(source: _Source, directory: str | os.PathLike | None) -> tuple[Path | None, str]:
    """The directory to read from and how it was chosen (option, environment, Debian's location)."""
    if directory is not None:
        if not isinstance(directory, (str, os.PathLike)):
            raise InvalidValueError(f"directory: expected a folder path, got {type(directory).__name__}")
        if not os.fspath(directory):  # (read as the working directory; an empty variable counts as unset)
            raise InvalidValueError("directory: expected a folder path, got an empty one")
        return _expanded(directory, "directory"), "given by the directory option"
    from_environment = os.environ.get(source.environment_variable, "")
    if from_environment:
        return _expanded(from_environment, f"${source.environment_variable}"), f"from ${source.environment_variable}"
    if source.debian_dir is not None:
        return source.debian_dir, f"where Debian's package {source.debian_package} installs them"
    unset = "empty" if source.environment_variable in os.environ else "unset"
    return None, f"no directory given, ${source.environment_variable} {unset}, and Debian has no {source.title} package"


def _how_to_get(source: _Source) -> str:
    names = ", ".join(f"{stem}.gz" for pair in _FILES.values() for stem in pair)
    lines = [f"To get the {source.title} files:"]
    if source.debian_package is not None:
        lines.append(f"  - on Debian: apt-get install {source.debian_package} "
                     f"(installs them in {source.debian_dir}), or")
    mirror = f" (or its mirror {source.mirror_url})" if source.mirror_url else ""
    lines.append(f"  - download {names} from {source.download_url}{mirror} into a directory,")
    lines.append(
        f"then set the environment variable {source.environment_variable} to that directory (or give it as "
        f"--dataset-option directory=PATH, from Python as directory=...)."
    )
    return "\n".join(lines)


def _why_not_a_file(path: Path) -> str:
    """Why a name that is there is no file to read ('' if nothing is there)."""
    if path.is_symlink() and not path.exists():
        return f" ({path.name} is a link to nothing)"
    return f" ({path.name} is not a regular file)" if path.exists() else ""


def _find_files(source: _Source, part: str, directory: str | os.PathLike | None) -> tuple[Path, Path]:
    """Paths of the images and labels files of `part` ("train" or "test"); plain files win over .gz."""
    where, how = _directory(source, directory)
    found, missing = [], []
    for stem in _FILES[part]:
        candidates = [] if where is None else [where / stem, where / f"{stem}.gz"]
        try:
            path = next((candidate for candidate in candidates if candidate.is_file()), None)
        except OSError as error:  # (a name too long, a folder that may not be entered)
            raise DatasetFileError(f"{source.title}: cannot look into {where} ({how}): {error.strerror or error}") \
                from None
        found.append(path)
        if path is None:
            missing.append(f"{stem}[.gz]" + "".join(_why_not_a_file(candidate) for candidate in candidates))
    if missing:
        if where is None:
            place = f"({how})"
        else:
            shown = repr(str(where)) if str(where) != str(where).strip() else str(where)  # (a stray space shows)
            problem = "" if where.is_dir() else "; not a directory" if where.exists() else "; no such directory"
            place = f"in {shown} ({how}{problem})"
        raise DatasetFilesNotFoundError(f"{source.title}: missing {' and '.join(missing)} {place}.\n"
                                        f"{_how_to_get(source)}")
    return found[0], found[1]


_FEWEST_TRAINING_IMAGES = 12  # (a twelfth of them is the validation split)


def _read_images_and_labels(images_path: Path, labels_path: Path, n_classes: int,
                            fewest: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The uint8 images (n, 28, 28) and labels (n,) of one pair of files, checked against each other."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    side = MNIST_IMAGE_PIXELS
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (side, side):
        raise DatasetFileError(
            f"{images_path}: expected uint8 images of shape (n, {side}, {side}), got {images.dtype.name} {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DatasetFileError(f"{labels_path}: expected a 1-d array of uint8 labels, "
                               f"got {labels.dtype.name} {labels.shape}")
    if labels.shape[0] != images.shape[0]:
        raise DatasetFileError(
            f"{labels_path}: holds {labels.shape[0]} labels but {images_path} holds {images.shape[0]} images"
        )
    if labels.size and labels.max() >= n_classes:
        raise DatasetFileError(f"{labels_path}: label {labels.max()} out of range 0..{n_classes - 1}")
    if labels.shape[0] < fewest:
        raise DatasetFileError(f"{images_path}: holds {labels.shape[0]} images; at least {fewest} are needed"
                               + (" (a twelfth of the training images is the validation split)" if fewest > 1 else ""))
    return images, labels


def _features(images: np.ndarray, size: int | None) -> np.ndarray:
    """Grey levels / 255 as float64, flattened; area-averaged to `size` x `size` pixels first if given."""
    if size is None:
        return images.reshape(images.shape[0], -1) / 255.0
    averaged = area_average(images, size)
    averaged /= 255.0
    return averaged.reshape(images.shape[0], -1)


def _check_size(size: int | None) -> None:
    checked_number(size, "size", 1, MNIST_IMAGE_PIXELS, integer=True, optional=True, what="an integer side in pixels")


def _load(source: _Source, split: str, directory: str | os.PathLike | None, size: int | None) -> Dataset:
    if not isinstance(split, str) or split not in MNIST_SPLITS:
        raise InvalidValueError(f"split: unknown {source.title} split {split!r}; "
                                f"choose one of {', '.join(MNIST_SPLITS)}")
    _check_size(size)
    part = "test" if split == "test" else "train"
    images, labels = _read_images_and_labels(*_find_files(source, part, directory), len(source.class_names),
                                             _FEWEST_TRAINING_IMAGES if part == "train" else 1)
    if part == "train":
        n_validation = labels.shape[0] // 12
        validation, train = stratified_partition(
            labels, (n_validation, labels.shape[0] - n_validation), MNIST_VALIDATION_SEED
        )
        kept = validation if split == "validation" else train
        images, labels = images[kept], labels[kept]
    return Dataset(source.name, split, hand_over(_features(images, size)), labels, source.class_names)


def fashion_mnist(split: str = "train", *, directory: str | os.PathLike | None = None,
                  size: int | None = None) -> Dataset:
    """One split of Fashion-MNIST (Zalando's clothing images): ``"train"``, ``"validation"`` or ``"test"``.

    Parameters
    ----------
    split : str
        ``"train"`` (55,000 images), ``"validation"`` (5,000, held out of the training file) or
        ``"test"`` (10,000).
    directory : str or path-like, optional
        Directory of the four IDX files (plain or ``.gz``). Default: ``$DELGRAD_FASHION_MNIST_DIR``,
        else `FASHION_MNIST_DEBIAN_DIR` (Debian's package ``dataset-fashion-mnist``).
    size : int, optional
        Downsample the 28 x 28 images to `size` x `size` pixels by area averaging (14: exactly
        2 x 2 mean pooling; 16: overlap-weighted means over 1.75 x 1.75 pixel areas).

    Returns
    -------
    Dataset
        Features float64 in [0, 1], shape (n, 784) or (n, size**2); labels 0..9 indexing
        `FASHION_MNIST_CLASS_NAMES`.

    Raises
    ------
    DatasetFilesNotFoundError
        If the files are missing; the message says how to get them.
    DatasetFileError
        If a file is malformed.
    """
    return _load(_FASHION_MNIST, split, directory, size)


def mnist(split: str = "train", *, directory: str | os.PathLike | None = None, size: int | None = None) -> Dataset:
    """One split of MNIST (handwritten digits), exactly as `fashion_mnist` does for Fashion-MNIST.

    The directory defaults to ``$DELGRAD_MNIST_DIR``; Debian has no MNIST package, so there is no
    further default. Class names are ``"0"`` to ``"9"``.
    """
    return _load(_MNIST, split, directory, size)
