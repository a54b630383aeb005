"""The check of one number given for a named field, with one rule and one message form for
every option, setting and argument: "FIELD: expected an integer from 1 to 16, got 0"."""

from __future__ import annotations

import decimal
import math
import numbers

import numpy as np

from delgrad_core._errors import InvalidValueError

__all__ = ["checked_number", "number_wanted", "shown_number"]


def _bound(value) -> str:
    """A bound as a message shows it: 2**63 - 1 as such, other integers from 10,000 grouped."""
    if isinstance(value, int) and value >= 2**16 and (value + 1).bit_count() == 1:
        return f"2**{value.bit_length()} - 1"
    return f"{value:,}" if isinstance(value, int) and abs(value) >= 10_000 else str(value)


def number_wanted(low=None, high=None, *, low_open: bool = False, high_open: bool = False, integer: bool = False,
                  optional: bool | str = False, what: str | None = None) -> str:
    """What a `checked_number` with these bounds asks for, e.g. "an integer from 1 to 16",
    "a finite number > 0" or "None or a number from 0 to 1" ("None (MEANING) or ..." if
    `optional` is a text saying what None means); `what` replaces "an integer" or "a (finite)
    number" (e.g. "a number of seconds")."""
    if what is None:
        what = "an integer" if integer else "a number" if high is not None else "a finite number"
    if low is not None and high is not None and not low_open and not high_open:
        bounds = f"from {_bound(low)} to {_bound(high)}"
    else:
        bounds = " and ".join(([f"{'>' if low_open else '>='} {_bound(low)}"] if low is not None else [])
                              + ([f"{'<' if high_open else '<='} {_bound(high)}"] if high is not None else []))
    none = f"None ({optional}) or " if isinstance(optional, str) else "None or " if optional else ""
    return none + " ".join(filter(None, [what, bounds]))


def shown_number(value) -> str:
    """`value` as a message shows it: repr, but an integer of more than 30 digits in exponent form
    ("the integer 1.00e+400", not 401 digits; 2**63 in full, as it lies just beyond a bound)."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10 ** 30:
        return f"the integer {decimal.Decimal(value):.3g}"
    return repr(value)


def _is_finite(value) -> bool:
    """math.isfinite, False for an integer too large for a float (10**400) rather than an error."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def checked_number(value, field: str, low=None, high=None, *, low_open: bool = False, high_open: bool = False,
                   integer: bool = False, optional: bool | str = False, what: str | None = None):
    """`value` as a Python int (`integer`) or float (-0.0 as 0.0) if it is a finite number (an
    integer: Python's or numpy's, never a bool) within the bounds; None for None if `optional`
    (True, or a text saying what None means).
    Otherwise an `InvalidValueError` naming `field` and what it takes (see `number_wanted`)."""
    if value is None and optional:
        return None
    kind = numbers.Integral if integer else numbers.Real  # (numpy's numbers are registered there)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, kind) or not _is_finite(value) \
            or (low is not None and (value <= low if low_open else value < low)) \
            or (high is not None and (value >= high if high_open else value > high)):
        wanted = number_wanted(low, high, low_open=low_open, high_open=high_open, integer=integer,
                               optional=optional, what=what)
        raise InvalidValueError(f"{field}: expected {wanted}, got {shown_number(value)}")
    return int(value) if integer else float(value) + 0.0
