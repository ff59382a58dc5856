"""The faults of the broken targets that concern the HTTP layer's deadlines (docs/protocol.md
3.9; see :mod:`tests.suite.broken.faults`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

NO_DEADLINE_S = 3600.0  # what the fault waits for a request head or body: an hour


def no_request_deadlines() -> None:
    """Waits an hour for a slow request: the head and body deadlines of the HTTP layer are
    an hour, whatever ``request_head_timeout_s`` and ``request_body_timeout_s`` say.

    A client that sends half a request and then nothing holds its connection (and the
    server's memory for it) for that hour; a few hundred such clients exhaust
    ``max_connections`` (slowloris). AOI-GEN-007 requires 408 or a close once the declared
    deadline has passed. Idle connections are still closed after ``idle_timeout_s``, and
    complete requests are served as by the reference.
    """
    from aoi.net.http import HttpServer

    original = HttpServer.__init__

    def __init__(self: HttpServer, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.head_timeout_s = self.body_timeout_s = NO_DEADLINE_S

    HttpServer.__init__ = __init__  # type: ignore[method-assign]


HTTP_FAULTS: tuple[Callable[[], None], ...] = (no_request_deadlines,)
