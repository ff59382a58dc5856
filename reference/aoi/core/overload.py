"""AOI Server overload control: whom to admit at ``hello``, what health says, whom to shed.

A server that refuses everybody when it is busy keeps serving those it already has
(AOI-OLC-004): refusing at ``hello`` is cheap, a session is not. So a valid client is refused
with ``reject{overloaded}`` (AOI-OLC-002) while the load is over any threshold in
:data:`TRIGGERS`, while hello attempts come faster than a token bucket allows, or in drain
mode; the refusal carries a jittered ``retry_after_s`` that grows with load and the
configured alternates (AOI-OLC-003), so refused clients neither come back together nor
come back to a server that is still full. Above a high watermark the server may also shed
established sessions with ``redirect``, a few per second (AOI-OLC-010).

The shell measures the load (sessions, event-loop lag, store backlog) and passes it in with
the time; nothing here reads a clock.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .token_bucket import TokenBucket

MAX_RETRY_AFTER_S = 3600.0
JITTER = (0.5, 1.5)  # a refusal's retry_after_s is the base times a uniform draw in here


@dataclass(frozen=True, slots=True)
class OverloadSettings:
    """The ``[overload]`` table of the server configuration (defaults as in conventions.md)."""

    max_sessions: int = 10_000
    hello_rate_per_s: float = 500.0
    hello_burst: int = 1000
    max_loop_lag_ms: float = 500.0
    max_store_backlog: int = 20_000
    retry_after_s: float = 30.0
    alternates: tuple[str, ...] = ()
    shed: bool = False
    shed_high_water: float = 1.1
    shed_rate_per_s: float = 10.0

    def __post_init__(self) -> None:
        # The rest is checked where the configuration is read, with its place; this one
        # guards the promise that a refusal always asks the client to wait a while.
        if not 0 < self.retry_after_s <= MAX_RETRY_AFTER_S:
            raise ValueError(f"retry_after_s must be in (0, 3600], got {self.retry_after_s!r}")


@dataclass(frozen=True, slots=True)
class Load:
    """What the shell measured just now."""

    sessions: int
    loop_lag_ms: float
    store_backlog: int
    draining: bool = False
    store_failing: bool = False  # the store's writes fail (disk full, read-only, I/O)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Refuse this hello with ``reject{overloaded}``. ``reasons`` names every trigger that
    fired (for logs and metrics, not for the wire)."""

    reasons: tuple[str, ...]
    retry_after_s: float
    servers: tuple[str, ...]


HELLO_RATE = "hello_rate"
DRAINING = "draining"

# Conditions of the load that refuse new sessions. All but ``draining`` also make health
# say ``overloaded``; the hello bucket does not, because a burst of hellos says nothing
# about whether the server can serve pushes (AOI-3) right now.
TRIGGERS: Mapping[str, Callable[[OverloadSettings, Load], bool]] = {
    "max_sessions": lambda s, load: load.sessions >= s.max_sessions,
    "loop_lag": lambda s, load: load.loop_lag_ms > s.max_loop_lag_ms,
    "store_backlog": lambda s, load: load.store_backlog > s.max_store_backlog,
    "store_failing": lambda s, load: load.store_failing,
    DRAINING: lambda s, load: load.draining,
}


class OverloadControl:
    def __init__(self, settings: OverloadSettings, rng: random.Random) -> None:
        self.settings = settings
        self.rng = rng
        # Hello *attempts* that passed the credential check; failed ones are metered per
        # client and source elsewhere (AOI-SEC-003), so a flood of bad credentials cannot
        # lock valid clients out.
        self.hello_bucket = TokenBucket(settings.hello_rate_per_s, settings.hello_burst)
        # One second's worth of burst: the shell may ask every second, or more often.
        self.shed_bucket = TokenBucket(
            settings.shed_rate_per_s, max(1, math.ceil(settings.shed_rate_per_s))
        )

    def reasons(self, load: Load) -> tuple[str, ...]:
        """The triggers of :data:`TRIGGERS` that hold for ``load``, in table order."""
        return tuple(name for name, holds in TRIGGERS.items() if holds(self.settings, load))

    def admit_hello(self, now: float, load: Load) -> Refusal | None:
        """``None`` to admit a hello whose credentials were valid, else why not.

        Called after the credential check: an invalid client is told so, never
        ``overloaded`` (AOI-OLC-002). Every call spends a hello token when one is there.
        """
        reasons = self.reasons(load)
        if not self.hello_bucket.take(now):
            reasons += (HELLO_RATE,)
        if not reasons:
            return None
        return Refusal(reasons, self.retry_after(load), self.settings.alternates)

    def status(self, load: Load) -> str:
        """``ok``, ``overloaded`` or ``draining``, as ``GET /v1/health`` reports it."""
        reasons = self.reasons(load)
        if DRAINING in reasons:
            return "draining"
        return "overloaded" if reasons else "ok"

    def load_factor(self, load: Load) -> float:
        """Sessions over ``max_sessions`` (health's ``load``). ``max_sessions = 0`` (refuse
        everybody) counts as 1, so the factor stays a finite number."""
        return load.sessions / max(1, self.settings.max_sessions)

    def pressure(self, load: Load) -> float:
        """How far past its limits the server is: the largest of sessions, loop lag and
        store backlog, each over its threshold (1.0 = at a limit)."""
        s = self.settings
        return max(
            load.sessions / max(1, s.max_sessions),
            load.loop_lag_ms / s.max_loop_lag_ms if s.max_loop_lag_ms > 0 else 0.0,
            load.store_backlog / max(1, s.max_store_backlog),
        )

    def to_shed(self, now: float, load: Load) -> int:
        """How many established sessions to ``redirect`` now, none unless ``shed`` is on: in
        drain mode all of them (maintenance), else those that bring :meth:`pressure` back to
        ``shed_high_water``; at most ``shed_rate_per_s`` on average either way."""
        if not self.settings.shed:
            return 0
        if load.draining:
            excess = load.sessions
        else:
            pressure, high_water = self.pressure(load), self.settings.shed_high_water
            if pressure <= high_water:
                return 0
            # Rounding guards against 109.99999 sessions of headroom shedding one too many.
            excess = load.sessions - math.floor(round(load.sessions * high_water / pressure, 6))
        return self.shed_bucket.take_up_to(now, excess)

    def retry_after(self, load: Load) -> float:
        """Seconds a refused client should wait: the base, times :meth:`pressure` when that
        is above 1, jittered by x0.5..1.5 so refused clients spread out; at most an hour."""
        grown = self.settings.retry_after_s * max(1.0, self.pressure(load))
        # Cap before the jitter, so even the longest waits are spread out.
        base = min(grown, MAX_RETRY_AFTER_S / JITTER[1])
        return min(MAX_RETRY_AFTER_S, base * self.rng.uniform(*JITTER))
