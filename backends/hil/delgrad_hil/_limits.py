"""Upper bounds of the time options and of `attempts` (docs/hil.md, "Limits of the time options").

Larger values are refused, naming the option: beyond them a wait is surely a mistake, and far
beyond them the waits overflow (ZeroMQ takes its timeouts in milliseconds as a C int).
"""

from __future__ import annotations

from delgrad_core import InvalidValueError
from delgrad_core.plugin_tools import checked_number, shown_number

__all__ = ["MAX_ATTEMPTS", "MAX_TIMEOUT_S", "MAX_JOB_TIMEOUT_S", "MAX_BACKOFF_S", "MAX_LATENCY_S",
           "MAX_SHUTDOWN_GRACE_S", "MAX_REPLAY_WINDOW_S", "MIN_REPLAY_WINDOW_S", "checked_seconds"]

_DAY_S = 86_400.0
MAX_TIMEOUT_S = _DAY_S  # one day of silence: how long a client waits for any answer (timeout_s, --timeout-s)
MAX_JOB_TIMEOUT_S = 7 * _DAY_S  # one week for a job or a calibration, queued and running
MAX_BACKOFF_S = 3_600.0  # one hour between attempts
MAX_LATENCY_S = 3_600.0  # one hour of added delay per reply (a fault for tests)
MAX_SHUTDOWN_GRACE_S = 7 * _DAY_S  # as long as a job may take
MAX_REPLAY_WINDOW_S = 3_600.0  # one hour: the service remembers every nonce of the window (a million at most)
MIN_REPLAY_WINDOW_S = 1.0  # a message in transit, or from a clock a little apart, must still be taken
MAX_ATTEMPTS = 1000  # per request: a silent service takes 1000 x timeout_s (plus the waits) to be given up


def _seconds_text(seconds: float) -> str:
    """``86400 s (one day)`` and the like."""
    names = {_DAY_S: "one day", 7 * _DAY_S: "one week", 3_600.0: "one hour"}
    return f"{seconds:g} s ({names[seconds]})" if seconds in names else f"{seconds:g} s"


def checked_seconds(value, field: str, maximum: float, *, zero_allowed: bool = False) -> float:
    """`value` as a float if it is a number of seconds > 0 (>= 0 if `zero_allowed`) and at most
    `maximum`; otherwise an `InvalidValueError` naming `field` and the bounds."""
    try:
        return checked_number(value, field, 0, maximum, low_open=not zero_allowed)
    except InvalidValueError:
        raise InvalidValueError(f"{field}: expected a number of seconds {'>=' if zero_allowed else '>'} 0 and at "
                                f"most {_seconds_text(maximum)}, got {shown_number(value)}") from None
