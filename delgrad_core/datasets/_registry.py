"""Datasets by name, from the plugin registry (the core's own and those plugins register)."""

from __future__ import annotations

import warnings

import numpy as np

from delgrad_core._errors import InvalidValueError, PluginError, UnknownOptionError, named_for
from delgrad_core.datasets._dataset import Dataset
from delgrad_core.datasets._errors import DatasetOptionsError

__all__ = ["TRAINING_SPLITS", "available_datasets", "check_dataset_options", "load_dataset"]

#: The splits training loads.
TRAINING_SPLITS = ("train", "validation", "test")


def available_datasets() -> dict[str, tuple[str, ...]]:
    """Registered dataset names, each with its split names."""
    from delgrad_core._plugins import registry

    return {r.name: r.details["splits"] for r in registry().registrations("dataset")}


def check_dataset_options(name: str, options: dict) -> None:
    """Refuse options that the loader of the registered dataset `name` does not take, naming
    those it takes, and ``name`` and ``split`` (`load_dataset`'s own) for any loader."""
    from delgrad_core._plugins import check_parameter_names, registry

    own = ("name", "split")  # (load_dataset's)
    check_parameter_names(f"dataset {name!r}", registry().get("dataset", name).obj, options, "option", skip=own)
    given = sorted(set(options) & set(own))
    if given:  # (a loader taking **options: load_dataset got them twice)
        raise UnknownOptionError(f"dataset {name!r}: {given[0]} is not a dataset option (the dataset's name and "
                                 f"split are load_dataset's own arguments; training loads "
                                 f"{', '.join(TRAINING_SPLITS)})", names=given)


def _field_of(error: InvalidValueError) -> str:
    """The field an error names: the text before its first colon (the message convention)."""
    return str(error).partition(":")[0].strip()


def load_dataset(name: str, split: str = "train", /, **options) -> Dataset:
    """Load split `split` of the registered dataset `name` (`options` go to its loader).

    Unknown names, splits or options raise errors listing the allowed values; an option value the
    loader refuses (its error names the option) raises `DatasetOptionsError`.
    """
    from delgrad_core._plugins import call_plugin, registry

    registration = registry().get("dataset", name)
    splits = registration.details["splits"]
    if split not in splits:
        needed = f" (training needs {', '.join(TRAINING_SPLITS)}: its plugin registers too few)" \
            if split in TRAINING_SPLITS and not set(TRAINING_SPLITS) <= set(splits) else ""
        raise InvalidValueError(f"split: unknown split {split!r} of dataset {name!r}; choose one of "
                                f"{', '.join(splits)}{needed}")
    check_dataset_options(name, options)
    try:
        dataset = call_plugin(registration, "dataset", lambda: registration.obj(split, **options),
                              f"loading {split!r}", arguments_checked=not options)
    except TypeError as exc:  # (with options only: an option of the wrong type, or the loader's own fault)
        raise DatasetOptionsError(f"dataset {name!r}: loading {split!r} with options {options} failed: {exc}") \
            from None
    except InvalidValueError as exc:  # (e.g. labels out of range: say which dataset)
        named = named_for(exc, f"dataset {name!r}", f" (loading {split!r})")
        if type(exc) is InvalidValueError and _field_of(exc) in options:  # (the field as the up-front check names it)
            raise DatasetOptionsError(f"dataset_options: {named}") from exc
        raise named
    if not isinstance(dataset, Dataset):
        raise PluginError(f"dataset {name!r} from {registration.distribution!r}: its loader returned "
                          f"{type(dataset).__name__}, not a Dataset")
    if (dataset.name, dataset.split) != (name, split):
        raise PluginError(f"dataset {name!r} from {registration.distribution!r}: asked for split {split!r} of "
                          f"dataset {name!r}, its loader returned split {dataset.split!r} of dataset "
                          f"{dataset.name!r} (a Dataset's name and split must be those it was loaded as)")
    features = dataset.features  # (finite: a Dataset checks that)
    if features.size and not (features.min() >= 0.0 and features.max() <= 1.0):
        raise PluginError(f"dataset {name!r} from {registration.distribution!r}: the features of split {split!r} "
                          f"must lie in [0, 1] (they span {float(features.min())!r} to {float(features.max())!r})")
    if dataset.n_classes < 2:  # (one output neuron: every loss is 0, every spiking answer right)
        raise PluginError(f"dataset {name!r} from {registration.distribution!r}: split {split!r} has the one class "
                          f"{dataset.class_names[0]!r}; a classification needs at least 2 class names")
    missing = np.flatnonzero(dataset.class_counts() == 0)
    if split == "train" and len(dataset) and missing.size:  # (an empty split is refused where it is used)
        shown = ", ".join(f"{label} ({dataset.class_names[label]!r})" for label in missing[:5])
        more = ", ..." if missing.size > 5 else ""
        warnings.warn(f"dataset {name!r} from {registration.distribution!r}: split 'train' holds no sample of class "
                      f"{shown}{more}, of {dataset.n_classes} (label i is class_names[i], from 0): the network learns "
                      "nothing of it", UserWarning, stacklevel=2)
    return dataset
