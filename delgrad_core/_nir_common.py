"""Shared pieces of the NIR export and import: errors, the lazy `nir` import, metadata keys and
the allowed time scales and model-unit times.

The `nir` package is an optional extra; it is imported only when a conversion runs, so that
importing `delgrad_core` never needs it.
"""

from __future__ import annotations

import numpy as np

from delgrad_core._errors import DelgradError, FileFormatError

__all__ = [
    "NIRConversionError",
    "NIRNotInstalledError",
    "require_nir",
    "check_time_scale",
    "first_outside_model_range",
    "model_range_text",
    "shown",
    "TIME_SCALE_RANGE_S",
    "META_KEY",
    "FORMAT",
    "FORMAT_VERSION",
]

META_KEY = "delgrad"  # key of delgrad's entries in graph and node metadata
FORMAT = "delgrad-nir"
FORMAT_VERSION = 1
# seconds per model time unit: a picosecond to about 17 minutes
TIME_SCALE_RANGE_S = (1e-12, 1e3)
# time constants in model units (delays: from 0 to the same top); a model unit is meant to be
# about tau_s, so times far outside mean a wrong time scale (and may overflow in seconds)
MODEL_TIME_RANGE = (1e-9, 1e9)


class NIRConversionError(FileFormatError):
    """A network or NIR graph that cannot be converted exactly; the message names the reason."""


class NIRNotInstalledError(DelgradError, ImportError):
    """The optional `nir` package is missing."""


def require_nir():
    """Return the `nir` module, or raise NIRNotInstalledError saying how to install it."""
    try:
        import nir
    except ImportError as exc:
        raise NIRNotInstalledError(
            f"NIR support needs the optional 'nir' package ({exc}); install it with: pip install 'delgrad[nir]'"
        ) from None
    return nir


def shown(value) -> str:
    """repr of a value read from a graph, a numpy scalar as the plain number it holds."""
    return repr(value.item() if isinstance(value, (np.generic, np.ndarray)) and np.ndim(value) == 0 else value)


def check_time_scale(value, field_name: str = "time_scale (CLI: --time-scale)") -> float:
    """Seconds per model time unit as a float, within `TIME_SCALE_RANGE_S`."""
    low, high = TIME_SCALE_RANGE_S
    expected = f"{field_name}: expected a number of seconds from {low:.0e} to {high:.0e}"
    # (float() would take True as 1 s, "6e-6" as a number and numpy's 6e-6+1j as 6e-6, with only a warning)
    if isinstance(value, (bool, np.bool_, str, bytes, complex, np.complexfloating)):
        raise NIRConversionError(f"{expected}, got {shown(value)}")
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise NIRConversionError(f"{expected}, got {value!r}") from None
    if not low <= seconds <= high:  # (NaN too)
        raise NIRConversionError(f"{expected}, got {seconds!r}")
    return seconds


def first_outside_model_range(times, *, delays: bool = False) -> int | None:
    """Flat index of the first of `times` (model units) outside `model_range_text`, or None."""
    times = np.asarray(times, dtype=np.float64).reshape(-1)
    low = 0.0 if delays else MODEL_TIME_RANGE[0]
    outside = ~((times >= low) & (times <= MODEL_TIME_RANGE[1]))  # (NaN too)
    return int(np.argmax(outside)) if np.any(outside) else None


def model_range_text(*, delays: bool = False) -> str:
    """The allowed model-unit times: `MODEL_TIME_RANGE` for time constants, 0 up to its top for delays."""
    low = "0" if delays else f"{MODEL_TIME_RANGE[0]:.0e}"
    return f"{low} to {MODEL_TIME_RANGE[1]:.0e} model units"
