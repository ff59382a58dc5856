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

import trio
from anyio.from_thread import BlockingPortal, start_blocking_portal
from trio import TaskStatus

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


class LoopbackListener:
    """A TCP server of the suite on a free loopback port, run as a task of the portal:
    :meth:`start` returns once it listens on :attr:`port`; each connection goes to
    :meth:`_handle`, in a nursery that :meth:`stop` cancels and waits for."""

    def __init__(self, portal: Portal) -> None:
        self.portal = portal
        self.port = 0
        self._scope: trio.CancelScope | None = None
        self._finished: trio.Event | None = None

    def start(self) -> None:
        self.portal.start_task(self._run)

    def stop(self) -> None:
        self.portal.call(self._stop)

    async def _handle(self, stream: trio.SocketStream) -> None:
        raise NotImplementedError

    async def _run(self, *, task_status: TaskStatus[None]) -> None:
        self._finished = trio.Event()
        try:
            with trio.CancelScope() as scope:
                self._scope = scope
                listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
                self.port = listeners[0].socket.getsockname()[1]
                async with trio.open_nursery() as nursery:
                    for listener in listeners:
                        nursery.start_soon(self._accept, listener, nursery)
                    task_status.started(None)
        finally:
            self._finished.set()

    async def _accept(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError:  # out of file descriptors, say: the environment's trouble
                    await trio.sleep(0.01)
                    continue
                nursery.start_soon(self._handle, stream)

    async def _stop(self) -> None:
        if self._scope is not None:
            self._scope.cancel()
        if self._finished is not None:
            await self._finished.wait()
