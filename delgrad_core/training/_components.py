"""Losses and encoders of a run, built from the registry with the config's settings."""

from __future__ import annotations

import inspect

from delgrad_core._errors import InvalidValueError
from delgrad_core._plugins import build_registered, registry
from delgrad_core.training._config import TrainingConfig

__all__ = ["component"]


def component(kind: str, name: str, config: TrainingConfig, options: dict):
    """The registered `kind` `name`, built from the config fields named after its parameters
    (``loss_delta`` -> ``delta`` for losses, ``t_early`` for encoders) plus `options`."""
    factory = registry().get(kind, name).obj
    prefix = "loss_" if kind == "loss" else ""
    values = config.to_dict()
    parameters = {p: values[prefix + p] for p in inspect.signature(factory).parameters
                  if prefix + p in values and values[prefix + p] is not None}
    served = sorted(set(parameters) & set(options))
    if served:  # one place per value: the field (which metrics.json records as used)
        raise InvalidValueError(f"{kind}_options: set {', '.join(prefix + p for p in served)} instead of the "
                                f"option {', '.join(served)} ({kind} {name!r} takes it from that setting)")
    return build_registered(kind, name, {**parameters, **options})
