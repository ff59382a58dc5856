"""What the server knows of its own load, and the overload decisions taken from it."""

from __future__ import annotations

import time

import trio

from aoi.core.overload import DRAINING, Load, OverloadControl, Refusal

from .hub import Hub
from .store import Store

LAG_PROBE_S = 0.1
# Being full (max_sessions) or draining refuses new sessions only; these also make the
# push API answer 503, because they mean a push accepted now could not be served promptly.
PUSH_TRIGGERS = frozenset({"loop_lag", "store_backlog"})


class LoadMonitor:
    """Feeds the core's OverloadControl with sessions, event-loop lag and store backlog."""

    def __init__(self, control: OverloadControl, hub: Hub, store: Store) -> None:
        self.control = control
        self.hub = hub
        self.store = store
        self.draining = False
        self.loop_lag_ms = 0.0
        self.admitting = 0  # hellos admitted whose session the store is still recording

    def load(self) -> Load:
        return Load(
            sessions=self.hub.established + self.admitting,
            loop_lag_ms=self.loop_lag_ms,
            store_backlog=self.store.backlog(),
            draining=self.draining,
            store_failing=self.store.failure is not None,
        )

    def admit_hello(self, now: float) -> Refusal | None:
        return self.control.admit_hello(now, self.load())

    def status(self) -> str:
        return self.control.status(self.load())

    def overloaded(self) -> bool:
        """Whether new sessions are refused for load (drain mode aside)."""
        return any(reason != DRAINING for reason in self.control.reasons(self.load()))

    def refuses_pushes(self) -> bool:
        return not PUSH_TRIGGERS.isdisjoint(self.control.reasons(self.load()))

    def retry_after(self) -> float:
        return self.control.retry_after(self.load())

    async def measure_lag(self) -> None:
        """Sleep a fixed time, see how late we wake: that is what every task waits extra.

        Measured in real time (``perf_counter``), not the server's clock: the lag is how
        busy this machine's event loop is, and a virtual clock that jumps (a test's) is
        not the loop being late."""
        while True:
            before = time.perf_counter()
            await trio.sleep(LAG_PROBE_S)
            late = max(0.0, time.perf_counter() - before - LAG_PROBE_S) * 1000.0
            # Quick to rise, slow to fall, so one quiet tick doesn't end an overload.
            self.loop_lag_ms = (
                late if late > self.loop_lag_ms else 0.8 * self.loop_lag_ms + 0.2 * late
            )
