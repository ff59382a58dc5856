"""A log event that a peer can cause at will, written at most once per interval.

An attacker who makes the server fail the same way a thousand times a second must not
make it write a thousand log lines a second: the first occurrence is logged at once, the
rest of the interval's are counted, and the next one logged after the interval says how
many were left out (``suppressed``).
"""

from __future__ import annotations

import logging
import time
from typing import Any

INTERVAL_S = 10.0


class Throttled:
    def __init__(self, log: logging.Logger, event: str, interval_s: float = INTERVAL_S) -> None:
        self.log = log
        self.event = event
        self.interval_s = interval_s
        self.total = 0
        self._suppressed = 0
        self._next_at = 0.0

    def report(self, *, exc_info: bool = False, **fields: Any) -> None:
        """One occurrence, with its details; logged (at error level) unless one was logged
        less than ``interval_s`` ago."""
        self.total += 1
        now = time.monotonic()
        if now < self._next_at:
            self._suppressed += 1
            return
        self._next_at = now + self.interval_s
        if self._suppressed:
            fields["suppressed"] = self._suppressed
            self._suppressed = 0
        self.log.error(self.event, exc_info=exc_info, extra=fields)
