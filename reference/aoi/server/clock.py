"""The AOI Server's one clock: the wall time and trio's time, read here and nowhere else.

Two times, two uses. The wall time, seconds since the epoch, is what the protocol speaks:
``created_at``, TTLs, delivery reports. trio's time is what the server waits by:
keepalives, the handshake timeout, rates, ``retry_after_s``. Every part gets the server's
:class:`Clock` and reads both through it, so that a test can run the whole server under
``trio.testing.MockClock``: with :meth:`Clock.following_trio` the wall time moves with
trio's, and a TTL of an hour passes without waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import trio


@dataclass(frozen=True, slots=True)
class Clock:
    wall: Callable[[], float] = time.time
    """Seconds since the epoch."""
    now: Callable[[], float] = trio.current_time
    """trio's time: for deadlines, timeouts and rates (inside ``trio.run`` only)."""

    @classmethod
    def following_trio(cls, epoch: float) -> Clock:
        """A clock whose wall time is ``epoch`` plus trio's time: under a ``MockClock``,
        both move together."""

        def wall() -> float:
            return epoch + trio.current_time()

        return cls(wall=wall)

    def trio_time_at(self, wall: float) -> float:
        """The trio time at which the wall clock will read ``wall`` (to sleep until a TTL
        passes; a wall clock stepped meanwhile moves it, so sleep again after waking)."""
        return self.now() + (wall - self.wall())
