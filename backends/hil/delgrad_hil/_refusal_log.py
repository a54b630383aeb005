"""How the service logs the messages it refuses: a line each, up to a rate.

A peer without the token, or a port scanner, can send junk as fast as the network carries it;
a WARNING line for each would fill the service's log (and the disk under it).  The first
`LINES_PER_WINDOW` refusals of every `WINDOW_S` seconds are logged in full, the rest are counted
and logged as one line when the next window opens or the service stops.  Every refusal is
counted in the service's status either way (``refused.<code>``).
"""

from __future__ import annotations

import logging
import time
from collections import Counter

from delgrad_hil._protocol import shortened

__all__ = ["RefusalLog", "LINES_PER_WINDOW", "WINDOW_S"]

LINES_PER_WINDOW = 20
WINDOW_S = 60.0


class RefusalLog:
    """Logs refused messages to `log`, at most `LINES_PER_WINDOW` lines per `WINDOW_S` seconds."""

    def __init__(self, log: logging.Logger, *, clock=time.monotonic):
        self._log = log
        self._clock = clock
        self._window_start = clock()
        self._lines = 0
        self._unlogged = Counter()  # code -> refusals of the window not logged one by one

    def refused(self, code: str, reason: object) -> None:
        """One message refused with the error `code` for `reason`."""
        if self._clock() - self._window_start >= WINDOW_S:
            self.flush()
        if self._lines < LINES_PER_WINDOW:
            self._lines += 1
            self._log.warning("refused a message: %s: %s", code, shortened(reason))
            if self._lines == LINES_PER_WINDOW:
                self._log.warning("%d messages refused within %g s: further refusals in this window are counted, "
                                  "and logged as one line", LINES_PER_WINDOW, WINDOW_S)
        else:
            self._unlogged[code] += 1

    def flush(self) -> None:
        """Log the refusals counted but not logged, and open a new window."""
        if self._unlogged:
            counts = ", ".join(f"{count} {code}" for code, count in sorted(self._unlogged.items()))
            self._log.warning("refused %d more messages, not logged one by one (%s)",
                              sum(self._unlogged.values()), counts)
        self._window_start = self._clock()
        self._lines = 0
        self._unlogged.clear()
