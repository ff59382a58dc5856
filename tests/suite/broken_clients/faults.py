"""One fault each, injected into the reference AOI Client by patching it in its own process.

Each patch takes nothing and changes one behaviour of the reference, nothing else; its
docstring says what the client then does wrong on the wire. ``run.py`` applies one and
starts the client. The suite must FAIL exactly the requirements the fault breaks
(``tests/suite/test_broken_clients.py`` lists them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def never_fails_over() -> None:
    """The client only ever knows the first server of each candidate order: refused for
    overload or redirected, it waits for that same server instead of trying the next one the
    policy allows, so its apps are never reallocated to another server."""
    from aoi.core import reallocation

    order = reallocation.server_order

    def first_only(servers: Any, selection: str, rng: Any) -> list[Any]:
        return order(servers, selection, rng)[:1]

    reallocation.server_order = first_only  # type: ignore[assignment]


def fails_over_on_bad_credentials() -> None:
    """A credential refusal (invalid_credentials, forbidden) is treated like overload: the
    client moves on to the next server of the policy instead of staying, and its apps are
    served elsewhere rather than told connection_failed{reason: rejected}."""
    from aoi.core import reallocation
    from aoi.core.messages import FailReason

    rules: Any = reallocation.RULES
    rules[reallocation.Outcome.REFUSED] = reallocation.Rule(
        True, lambda policy: policy.on_overload, FailReason.REJECTED
    )


def reverses_policy_order() -> None:
    """The client tries the servers of its policy in reverse order: with servers a, b it
    says hello to b first, and stays there once b welcomes it, never contacting a; what a
    would have answered never happens on the wire."""
    from aoi.core import reallocation

    order = reallocation.server_order

    def reversed_order(servers: Any, selection: str, rng: Any) -> list[Any]:
        return order(servers, selection, rng)[::-1]

    reallocation.server_order = reversed_order  # type: ignore[assignment]


def ignores_retry_after() -> None:
    """retry_after_s in reject and redirect is dropped as the frame is decoded: the client
    cools a refusing server down for its own backoff only, and says hello again long before
    the time the server asked it to stay away."""
    from aoi.core import messages

    for cls in (messages.Reject, messages.Redirect):
        original: Callable[..., Any] = cls.from_wire.__func__  # type: ignore[attr-defined]

        def from_wire(kind: Any, wire: dict[str, Any], _original: Any = original) -> Any:
            return _original(kind, {k: v for k, v in wire.items() if k != "retry_after_s"})

        cls.from_wire = classmethod(from_wire)  # type: ignore[method-assign, assignment]


def never_tells_app() -> None:
    """connection_failed and connection_restored never reach the apps, though the client
    believes it told them: an app whose AOI path failed is never told to go direct, and never
    told when the path is back."""
    from aoi.client import apps
    from aoi.core.messages import ConnectionFailed, ConnectionRestored

    tell = apps.App.tell

    def quiet(self: Any, message: Any) -> bool:
        if isinstance(message, ConnectionFailed | ConnectionRestored):
            return self.conn is not None
        return tell(self, message)

    apps.App.tell = quiet  # type: ignore[method-assign]


def no_registration_changed() -> None:
    """registration_changed never reaches the apps, though the client believes it told them:
    after a reallocation (or a return to the preferred server) an app keeps handing its server
    app the old endpoint, while the client serves it under a new token elsewhere."""
    from aoi.client import apps
    from aoi.core.messages import RegistrationChanged

    tell = apps.App.tell

    def quiet(self: Any, message: Any) -> bool:
        if isinstance(message, RegistrationChanged):
            return self.conn is not None
        return tell(self, message)

    apps.App.tell = quiet  # type: ignore[method-assign]


def delivers_duplicates() -> None:
    """The client forgets which notification ids the apps acknowledged: a notification the
    server delivers again (after a reconnection, say) is handed to the app a second time
    instead of being acked to the server at once."""
    from aoi.client import state

    state.SeenIds.contains = lambda self, app_id, notification_id, now: False  # type: ignore[method-assign]


def no_jitter() -> None:
    """Every delay is the bound of its backoff, never a random draw below it, and the next
    candidate is tried at once: clients refused or cut off together all come back at the
    same moment (no jitter), though the delays still grow."""
    from aoi.core import policy, reallocation

    policy.Backoff.delay_s = lambda self, attempt, uniform: self.cap_s(attempt)  # type: ignore[method-assign]
    reallocation.Reallocator._jitter = lambda self: 0.0  # type: ignore[method-assign]


def no_backoff() -> None:
    """The backoff bound never grows: every retry to a refusing or unreachable server comes
    within initial_ms (still drawn at random), however many times it failed before, so a
    struggling server is hammered at a constant rate."""
    from aoi.core import policy

    policy.Backoff.cap_s = lambda self, attempt: self.initial_ms / 1000.0  # type: ignore[method-assign]


def dies_on_garbage() -> None:
    """The client exits (status 70) when a server breaks WebSocket: bytes that are not
    frames, a reserved opcode, text that is not UTF-8, a masked frame (each a close 1002 or
    1007 from its own WebSocket layer), or an answer to the upgrade that is not HTTP. One
    misbehaving server takes every app's AOI path with it."""
    import os

    from wsproto.events import CloseConnection

    from aoi.net import client, websocket

    handle = websocket.WebSocket._handle

    async def _handle(self: Any, event: Any) -> Any:
        if isinstance(event, CloseConnection) and event.code in (1002, 1007):
            os._exit(70)
        return await handle(self, event)

    connect = client.connect

    async def connect_or_die(*args: Any, **kwargs: Any) -> Any:
        try:
            return await connect(*args, **kwargs)
        except client.HandshakeError as exc:
            if "not a WebSocket handshake answer" in str(exc):
                os._exit(70)
            raise

    websocket.WebSocket._handle = _handle  # type: ignore[method-assign]
    client.connect = connect_or_die


def root_path_only() -> None:
    """AOI-1 serves the upgrade on the path / only: an app that connects on another path is
    refused (404), though the path is not significant and the client must accept any."""
    from aoi.client import app_interface

    route = app_interface._AnyPath.__getitem__

    def only_root(self: Any, path: str) -> Any:
        if path != "/":
            raise KeyError(path)
        return route(self, path)

    app_interface._AnyPath.__getitem__ = only_root  # type: ignore[method-assign]


def resumes_after_4409() -> None:
    """A connection closed with 4409 is taken for a lost one: the client keeps its session
    and, reconnecting, says hello with it, resuming the session that another connection
    took over (the two connections would take it from each other in turn)."""
    from aoi.client.binding import Binding
    from aoi.client.server_link import ServerLink
    from aoi.core.errors import CloseCode

    closed = Binding.link_closed

    def link_closed(self: Binding, link: ServerLink) -> None:
        if link.close_code == CloseCode.SESSION_TAKEN_OVER:
            link.close_code = CloseCode.GOING_AWAY
        closed(self, link)

    Binding.link_closed = link_closed  # type: ignore[method-assign]


def stays_away_after_4409() -> None:
    """Not a fault of AOI-CON-005: a connection closed with 4409 is dropped and nothing
    follows, as if another connection of the client held the session. The client never
    says hello to that server again, so it never resumes from the obsolete connection, and
    never shows whether it would: the suite cannot judge it (blocked, not PASS, not FAIL)."""
    from aoi.client.binding import Binding
    from aoi.client.server_link import ServerLink
    from aoi.core.errors import CloseCode

    closed = Binding.link_closed

    def link_closed(self: Binding, link: ServerLink) -> None:
        if link.close_code == CloseCode.SESSION_TAKEN_OVER:
            link.down = None  # its apps are not told to move: they stay where they were
        closed(self, link)

    Binding.link_closed = link_closed  # type: ignore[method-assign]


FAULTS: dict[str, Callable[[], None]] = {
    f.__name__: f
    for f in (
        never_fails_over,
        fails_over_on_bad_credentials,
        reverses_policy_order,
        ignores_retry_after,
        never_tells_app,
        no_registration_changed,
        delivers_duplicates,
        no_jitter,
        no_backoff,
        dies_on_garbage,
        root_path_only,
        resumes_after_4409,
        stays_away_after_4409,
    )
}
