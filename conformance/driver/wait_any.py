"""The first frame on any of several AOI-2 connections (:func:`wait_any`), in one portal
call: for scenarios that watch many sessions at once, as when a server is filled up.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from conformance.driver.aoi2 import Aoi2Connection
from conformance.driver.frames import Frame


def wait_any(
    connections: list[Aoi2Connection], predicate: Callable[[Frame], bool], timeout: float
) -> tuple[Aoi2Connection, Frame] | None:
    """The first frame matching ``predicate`` on any of ``connections`` (one portal call)."""
    if not connections:
        return None
    return connections[0].portal.call(_wait_any, connections, predicate, timeout)


async def _wait_any(
    connections: list[Aoi2Connection], predicate: Callable[[Frame], bool], timeout: float
) -> tuple[Aoi2Connection, Frame] | None:
    found: list[tuple[Aoi2Connection, Frame]] = []

    async def watch(connection: Aoi2Connection, scope: trio.CancelScope) -> None:
        frame = await connection._wait_for(predicate, timeout)
        if frame is None:
            return
        if found:
            frame.consumed = False  # another connection was first; leave it for later
            return
        found.append((connection, frame))
        scope.cancel()

    async with trio.open_nursery() as nursery:
        for connection in connections:
            nursery.start_soon(watch, connection, nursery.cancel_scope)
    return found[0] if found else None
