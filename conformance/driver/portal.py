"""The one blocking portal of a run: synchronous steps drive trio code only through it.

Every call is complete in itself: it enters and leaves its trio scopes inside one portal
call. Long-lived work (a connection's reader) runs as a task of the portal started with
:meth:`Portal.start_task`, and later calls talk to it through its own state.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

T = TypeVar("T")


class Portal:
    def __init__(self) -> None:
        self._cm: AbstractContextManager[BlockingPortal] = start_blocking_portal(backend="trio")
        self._portal = self._cm.__enter__()

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        return self._portal.call(fn, *args)

    def start_task(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> tuple[Future[Any], Any]:
        """Start ``fn(*args, task_status=...)``; return once it reported ``started(value)``."""
        return self._portal.start_task(fn, *args)

    def close(self) -> None:
        """Cancel whatever still runs (nothing should) and stop the event loop thread."""
        self._portal.call(self._portal.stop, True)
        self._cm.__exit__(None, None, None)
