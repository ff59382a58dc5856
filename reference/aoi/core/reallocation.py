"""How an AOI Client picks, leaves and returns to AOI Servers, as the policy says.

One :class:`Reallocator` serves one group of apps that share a candidate list (a provider's
servers, or an ``app_routes`` entry). The owner reports what happened at a server
(:meth:`Reallocator.report`) and carries out the decision it gets back: connect somewhere at
a given time, tell the apps the AOI path failed, or note that they are served again. Time and
randomness are inputs; every rule is in :data:`RULES` and the few methods below it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from .messages import FailReason, RejectReason
from .policy import Action, Reallocation, ServerEntry


class Outcome(StrEnum):
    ACCEPTED = "accepted"  # welcome
    OVERLOADED = "overloaded"  # reject{overloaded}
    REDIRECTED = "redirected"  # redirect of an established session
    UNREACHABLE = "unreachable"  # no connection, TLS failure, no answer in time
    REFUSED = "refused"  # reject for credentials or the rate of failed hellos
    UNSUPPORTED = "unsupported"  # reject{unsupported_version}: never again with this version
    LOST = "lost"  # an established session dropped without a word


def outcome_of_reject(reason: str) -> Outcome:
    if reason == RejectReason.OVERLOADED:
        return Outcome.OVERLOADED
    if reason == RejectReason.UNSUPPORTED_VERSION:
        return Outcome.UNSUPPORTED
    return Outcome.REFUSED


@dataclass(frozen=True, slots=True)
class Rule:
    """What a failed attempt at a server means."""

    honour_retry_after: bool
    action: Callable[[Reallocation], Action] | None  # None: never fail over to another server
    fail_reason: FailReason
    for_good: bool = False  # the server is never tried again


RULES: Mapping[Outcome, Rule] = {
    Outcome.OVERLOADED: Rule(True, lambda r: r.on_overload, FailReason.OVERLOADED),
    Outcome.REDIRECTED: Rule(True, lambda r: r.on_overload, FailReason.OVERLOADED),
    Outcome.UNREACHABLE: Rule(False, lambda r: r.on_unreachable, FailReason.UNREACHABLE),
    Outcome.REFUSED: Rule(True, None, FailReason.REJECTED),
    # Another server may speak this version; this one never will (protocol 6.6).
    Outcome.UNSUPPORTED: Rule(False, lambda r: r.on_unreachable, FailReason.REJECTED, True),
}


@dataclass(frozen=True, slots=True)
class Connect:
    """Open a session to ``server`` at time ``at`` (never before its cool-down ends)."""

    server: ServerEntry
    at: float


@dataclass(frozen=True, slots=True)
class Served:
    """``server`` accepted. ``moved_from`` names the server the apps were on before, if
    another; ``restored`` says the apps had been told of a failure; at ``return_at`` the
    owner should :meth:`Reallocator.probe` for a more preferred server."""

    server: ServerEntry
    restored: bool
    moved_from: str | None
    return_at: float | None


@dataclass(frozen=True, slots=True)
class Fail:
    """The AOI path is unavailable: tell the apps (if ``notify``), then retry as ``then``."""

    reason: FailReason
    retry_after_s: float | None
    notify: bool
    then: Connect


Decision = Connect | Served | Fail


def server_order(
    servers: Sequence[ServerEntry], selection: str, rng: random.Random
) -> list[ServerEntry]:
    """The one place a policy becomes an order: lowest priority value first, weighted random
    within a priority (``priority_weighted``), or the document's order (``ordered``)."""
    if selection == "ordered":
        return list(servers)
    # Efraimidis-Spirakis: sorting by u^(1/w) descending is a weighted random permutation.
    keyed = [(s.priority, -(rng.random() ** (1.0 / s.weight)), n, s) for n, s in enumerate(servers)]
    return [entry[3] for entry in sorted(keyed)]


class Reallocator:
    def __init__(
        self,
        policy: Reallocation,
        servers: Sequence[ServerEntry],
        selection: str,
        rng: random.Random,
    ) -> None:
        if not servers:
            raise ValueError("a reallocator needs at least one candidate server")
        self.policy = policy
        self.servers = tuple(servers)
        self.selection = selection
        self.rng = rng
        self.cool_until: dict[str, float] = {}
        self.failures: dict[str, int] = {}
        self.order: list[ServerEntry] = []
        self.tried: list[str] = []
        self.outages = 0
        self.failed = False
        self.served: ServerEntry | None = None
        self._last_served: str | None = None
        self._best = min(s.priority for s in self.servers)

    def start(self, now: float) -> Connect:
        """The first attempt."""
        self._new_round()
        return self._background(now, None, first=True)

    def report(
        self, server_id: str, outcome: Outcome, now: float, retry_after_s: float | None = None
    ) -> Decision:
        """What happened at ``server_id``; returns what to do next."""
        server = self._server(server_id)
        if outcome is Outcome.ACCEPTED:
            return self._accepted(server, now)
        if self.served == server:
            self.served = None
        attempt = self.failures.get(server.id, 0)
        self.failures[server.id] = attempt + 1
        if outcome is Outcome.LOST:
            # Network loss or a crashed server: come back to the same server, spread out.
            self._new_round()
            delay = self.policy.backoff.delay_s(attempt, self.rng.random())
            return Connect(server, max(now + delay, self.cool_until.get(server.id, now)))
        rule = RULES[outcome]
        cool = retry_after_s if rule.honour_retry_after and retry_after_s is not None else None
        if rule.for_good:
            cool = math.inf
        self._cool(server, now + (cool if cool is not None else self.policy.backoff.cap_s(attempt)))
        if server.id not in self.tried:
            self.tried.append(server.id)
        if rule.action is None:
            return self._fail(rule.fail_reason, retry_after_s, now, only=server)
        if rule.action(self.policy) is Action.FAIL_TO_APP:
            return self._fail(rule.fail_reason, retry_after_s, now, only=server)
        candidate = self._untried(now)
        if candidate is None or len(self.tried) >= self.policy.max_servers_tried:
            return self._fail(FailReason.EXHAUSTED, retry_after_s, now, only=None)
        return Connect(candidate, now + self._jitter())

    def probe(self, now: float) -> Connect | None:
        """A more preferred server to try while still served elsewhere, if one is free."""
        if self.served is None or self.served.priority == self._best:
            return None
        for server in server_order(self.servers, self.selection, self.rng):
            if server.priority == self._best and self.cool_until.get(server.id, now) <= now:
                return Connect(server, now)
        return None

    def probe_failed(
        self, server_id: str, now: float, retry_after_s: float | None = None
    ) -> float | None:
        """A :meth:`probe` attempt failed: cool that server; returns when to probe again."""
        server = self._server(server_id)
        attempt = self.failures.get(server.id, 0)
        self.failures[server.id] = attempt + 1
        self._cool(server, now + (retry_after_s or self.policy.backoff.cap_s(attempt)))
        return self._return_at(now)

    # --- rules ---------------------------------------------------------------------------

    def _accepted(self, server: ServerEntry, now: float) -> Served:
        restored, self.failed = self.failed, False
        moved_from = self._last_served if self._last_served not in (None, server.id) else None
        self.served = server
        self._last_served = server.id
        self.tried = []
        self.outages = 0
        self.failures[server.id] = 0
        self.cool_until.pop(server.id, None)
        return Served(server, restored, moved_from, self._return_at(now))

    def _fail(
        self, reason: FailReason, retry_after_s: float | None, now: float, only: ServerEntry | None
    ) -> Fail:
        notify, self.failed = not self.failed, True
        self.outages += 1
        self._new_round()
        return Fail(reason, retry_after_s, notify, self._background(now, only))

    def _background(self, now: float, only: ServerEntry | None, first: bool = False) -> Connect:
        """The next attempt after a round failed: exponential backoff with full jitter, and
        never before the chosen server's cool-down ends."""
        earliest = now
        if not first:
            earliest += self.policy.backoff.delay_s(self.outages - 1, self.rng.random())
        pool = [only] if only is not None else self.order
        for server in pool:
            if self.cool_until.get(server.id, earliest) <= earliest:
                return Connect(server, earliest)
        server = min(pool, key=lambda s: self.cool_until[s.id])
        return Connect(server, self.cool_until[server.id] + self._jitter())

    def _untried(self, now: float) -> ServerEntry | None:
        for server in self.order:
            if server.id not in self.tried and self.cool_until.get(server.id, now) <= now:
                return server
        return None

    def _return_at(self, now: float) -> float | None:
        after = self.policy.return_to_preferred_after_s
        if after <= 0 or self.served is None or self.served.priority == self._best:
            return None
        return now + after

    def _new_round(self) -> None:
        self.order = server_order(self.servers, self.selection, self.rng)
        self.tried = []

    def _cool(self, server: ServerEntry, until: float) -> None:
        self.cool_until[server.id] = max(until, self.cool_until.get(server.id, until))

    def _jitter(self) -> float:
        """A small random spread before the next candidate, so refused clients don't herd."""
        return self.rng.uniform(0.0, self.policy.backoff.initial_ms / 1000.0)

    def _server(self, server_id: str) -> ServerEntry:
        for server in self.servers:
            if server.id == server_id:
                return server
        raise KeyError(server_id)
