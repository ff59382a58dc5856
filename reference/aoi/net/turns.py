"""Turns: the work of connections not yet trusted is done a few connections at a time.

trio runs every task that is ready in one batch, so a storm of new connections (thousands
of upgrades and hellos arriving together) makes every batch long, and an established
session waits for the whole batch at each of the few steps a notification takes. So a
connection that has not authenticated yet works only while it holds a turn, and there are
few turns (:data:`TURNS`): it takes one when the peer's bytes arrive, gives it back before
it waits for more, and stops taking turns once trusted (its first HTTP request answered,
or its hello welcomed). Waiting connections hold no turn, so slow peers cannot use them
up; those that wait for a turn are served in order.
"""

from __future__ import annotations

import trio

TURNS = 4


class Turns:
    def __init__(self, slots: int = TURNS) -> None:
        self._limiter = trio.CapacityLimiter(slots)

    def ticket(self) -> Ticket:
        return Ticket(self._limiter)


class Ticket:
    """One connection's right to turns, until :meth:`finish`."""

    __slots__ = ("_held", "_limiter")

    def __init__(self, limiter: trio.CapacityLimiter | None) -> None:
        self._limiter = limiter  # None: trusted, takes no turns
        self._held = False

    @property
    def untrusted(self) -> bool:
        """Whether its holder works in turns (a check cheaper than :meth:`take`)."""
        return self._limiter is not None

    async def take(self) -> None:
        """Before working on bytes that arrived: wait for a turn (none once trusted)."""
        if self._limiter is not None and not self._held:
            await self._limiter.acquire_on_behalf_of(self)
            self._held = True

    def give_back(self) -> None:
        """Before waiting for the peer."""
        if self._held:
            assert self._limiter is not None
            self._limiter.release_on_behalf_of(self)
            self._held = False

    def finish(self) -> None:
        """The connection is trusted (or ends): no more turns."""
        self.give_back()
        self._limiter = None


TRUSTED = Ticket(None)
