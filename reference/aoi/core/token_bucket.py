"""A token bucket: at most ``burst`` events at once, ``rate_per_s`` on average.

The one rate limiter of the AOI Server (hello attempts, session shedding, server-app pushes).
Time is an argument, so a test can run an hour of traffic in a loop and the shell passes its
one clock (``trio.current_time()``).
"""

from __future__ import annotations

import math

# Refill arithmetic in floats can leave 0.9999999999 of a token where a whole one is due; a
# caller that waited exactly ``retry_after`` must then be let through, not sent to wait again.
_EPSILON = 1e-9


class TokenBucket:
    """Starts full. Each :meth:`take` spends tokens; they come back at ``rate_per_s`` up to
    ``burst``. A clock that goes backwards refills nothing (and takes nothing back)."""

    __slots__ = ("_tokens", "_updated", "burst", "rate_per_s")

    def __init__(self, rate_per_s: float, burst: float) -> None:
        if not rate_per_s > 0 or not math.isfinite(rate_per_s):
            raise ValueError(f"rate_per_s must be a positive number, got {rate_per_s!r}")
        if not burst >= 1 or not math.isfinite(burst):
            raise ValueError(f"burst must be at least 1, got {burst!r}")
        self.rate_per_s = float(rate_per_s)
        self.burst = float(burst)
        self._tokens = self.burst
        self._updated: float | None = None

    def tokens(self, now: float) -> float:
        """The tokens available at ``now`` (never more than ``burst``)."""
        self._refill(now)
        return self._tokens

    def take(self, now: float, n: float = 1) -> bool:
        """Spend ``n`` tokens if they are there; ``False`` (spending nothing) otherwise."""
        self._refill(now)
        if self._tokens + _EPSILON * max(1.0, n) < n:
            return False
        self._tokens = max(0.0, self._tokens - n)
        return True

    def take_up_to(self, now: float, n: int) -> int:
        """Spend as many whole tokens as are there, at most ``n``; returns how many."""
        self._refill(now)
        granted = max(0, min(n, math.floor(self._tokens + _EPSILON)))
        self._tokens = max(0.0, self._tokens - granted)
        return granted

    def retry_after(self, now: float, n: float = 1) -> float:
        """Seconds from ``now`` until ``n`` tokens are there: 0 if they are now, ``inf`` if
        ``n`` exceeds ``burst`` (the bucket never holds that many)."""
        self._refill(now)
        if self._tokens + _EPSILON * max(1.0, n) >= n:
            return 0.0
        if n > self.burst:
            return math.inf
        return (n - self._tokens) / self.rate_per_s

    def _refill(self, now: float) -> None:
        if self._updated is None:
            self._updated = now
            return
        elapsed = now - self._updated
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate_per_s)
            self._updated = now
