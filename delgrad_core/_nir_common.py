"""Shared pieces of the NIR export and import: errors, the lazy `nir` import, metadata keys.

The `nir` package is an optional extra; it is imported only when a conversion runs, so that
importing `delgrad_core` never needs it.
"""

from __future__ import annotations

import math
import sys

import numpy as np

from delgrad_core._errors import DelgradError, FileFormatError

__all__ = [
    "NIRConversionError",
    "NIRNotInstalledError",
    "require_nir",
    "check_time_scale",
    "shown",
    "META_KEY",
    "FORMAT",
    "FORMAT_VERSION",
]

META_KEY = "delgrad"  # key of delgrad's entries in graph and node metadata
FORMAT = "delgrad-nir"
FORMAT_VERSION = 1


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


def check_time_scale(value, field_name: str = "time_scale") -> float:
    """Seconds per model time unit as a float; must be a finite, normal number > 0 (a
    subnormal one overflows the times divided by it)."""
    if isinstance(value, (bool, np.bool_, str, bytes)):  # (float() would take True as 1 s and "6e-6" as a number)
        raise NIRConversionError(f"{field_name}: expected a number of seconds, got {value!r}")
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise NIRConversionError(f"{field_name}: expected a number of seconds, got {value!r}") from None
    if not math.isfinite(seconds) or seconds < sys.float_info.min:
        raise NIRConversionError(f"{field_name}: expected a finite number of seconds >= {sys.float_info.min!r}, "
                                 f"got {seconds!r}")
    return seconds
