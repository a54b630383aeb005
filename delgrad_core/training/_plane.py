"""The decision plane of a 2-d task: a dataset's registered `plane(x, y)` over a grid of the unit
square, its features checked and encoded (the trainer's `decision_plane`, drawn after training)."""

from __future__ import annotations

import numpy as np

from delgrad_core._errors import InvalidValueError, PluginError
from delgrad_core._plugins import call_plugin, registry

__all__ = ["MAX_PLANE_RESOLUTION", "plane_inputs"]

MAX_PLANE_RESOLUTION = 1000  # points a side (a million points: about a minute on the emulated chip)
_ROUNDING = 1e-9  # features this far outside [0, 1] are taken as rounding and clipped


def plane_inputs(dataset: str, encoder, n_features: int, resolution: int):
    """(x grid, y grid, encoded features of every grid point) of the plane of `dataset` on a grid
    of `resolution` points a side, or None for a dataset without one.  Features of the wrong
    shape (`n_features` each), that are no numbers, outside [0, 1] (beyond rounding) or that
    `encoder` refuses are the plane's fault, named so."""
    registration = registry().get("dataset", dataset)
    plane = registration.details.get("plane")
    if plane is None:
        return None
    grid_x, grid_y = np.meshgrid(np.linspace(0.0, 1.0, resolution), np.linspace(0.0, 1.0, resolution))
    features = call_plugin(registration, "dataset", lambda: plane(grid_x, grid_y), "its plane",
                           arguments_checked=True)
    grid = f"a grid of {resolution} x {resolution}"
    try:
        features = np.asarray(features, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise _plane_fault(registration, f"values that are not numbers on {grid} ({exc})") from None
    if features.shape not in ((grid_x.size, n_features), (*grid_x.shape, n_features)):
        raise _plane_fault(registration, f"shape {features.shape} for grids of shape {grid_x.shape}; expected "
                                         f"({grid_x.size}, {n_features}) or {(*grid_x.shape, n_features)}")
    outside = ~((features >= -_ROUNDING) & (features <= 1.0 + _ROUNDING))  # (NaN too)
    if outside.any():
        raise _plane_fault(registration, f"features outside [0, 1] on {grid}, e.g. {float(features[outside][0])!r} "
                                         "(features lie in [0, 1], as a loader's do)")
    try:  # (clipped: rounding only)
        return grid_x, grid_y, encoder(np.clip(features.reshape(grid_x.size, n_features), 0.0, 1.0))
    except InvalidValueError as exc:  # (at the full grid only after training, with the run saved)
        raise _plane_fault(registration, f"features the encoder refuses on {grid}: {exc}") from None


def _plane_fault(registration, returned: str) -> PluginError:
    """The error of a dataset's plane that `returned` what it should not."""
    return PluginError(f"dataset {registration.name!r} from {registration.distribution!r}: its plane returned "
                       f"{returned}")
