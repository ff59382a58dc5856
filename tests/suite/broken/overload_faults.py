"""The faults of the broken targets that concern overload (see :mod:`tests.suite.broken.faults`),
and one honest variant: a server that refuses for load before it checks credentials.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def accepts_overloaded() -> None:
    """Accepts an overloaded client: the overload control admits every valid hello.

    ``OverloadControl.admit_hello`` is where a server with ``max_sessions`` sessions turns a
    valid client away with ``reject{overloaded}`` (AOI-OLC-002); here it never refuses, so
    a full server welcomes one session more. Health still reports the load (AOI-OLC-013
    holds): only the refusal at ``hello`` is gone.
    """
    from aoi.core.overload import OverloadControl

    def admit_hello(self: OverloadControl, now: float, load: Any) -> None:
        return None

    OverloadControl.admit_hello = admit_hello  # type: ignore[method-assign,assignment]


def overloaded_as_invalid_credentials() -> None:
    """Answers overload as ``invalid_credentials``: a valid client refused for load is told
    its credentials are wrong (close code 4001, no ``retry_after_s``, no alternates).

    AOI-OLC-002 requires the overload refusal to be distinct from ``invalid_credentials``
    and ``forbidden``, so that a client fails over instead of giving up (AOI-OLC-009). The
    decision to refuse is the reference's; only the reason on the wire is wrong.
    """
    from aoi.core.messages import Reject, RejectReason
    from aoi.server.aoi2 import Aoi2Endpoint

    original = Aoi2Endpoint._refusal

    def _refusal(self: Aoi2Endpoint, hello: Any, remote: str, now: float) -> Reject | None:
        refusal = original(self, hello, remote, now)
        if refusal is not None and refusal.reason == RejectReason.OVERLOADED:
            return Reject(reason=RejectReason.INVALID_CREDENTIALS, detail="not now")
        return refusal

    Aoi2Endpoint._refusal = _refusal  # type: ignore[method-assign]


def drops_under_overload() -> None:
    """Drops notifications under overload: while the server reports itself overloaded, a
    push is answered 201 with an id and then silently thrown away (never delivered).

    AOI-OLC-004 requires that established sessions keep receiving notifications while the
    server refuses new ones, and that no accepted notification is lost. A server that
    sheds work by losing what it already promised is exactly what it rules out.
    """
    import contextvars

    from aoi.net.http_messages import Request, Response
    from aoi.server.hub import Hub
    from aoi.server.push_api import PushApi
    from aoi.server.store import StoredNotification

    overloaded = contextvars.ContextVar("overloaded", default=False)
    original_push, original_accept = PushApi._push, Hub.accept

    async def _push(self: PushApi, request: Request, token: str) -> Response:
        mark = overloaded.set(self.load.status() != "ok")
        try:
            return await original_push(self, request, token)
        finally:
            overloaded.reset(mark)

    async def accept(self: Hub, notification: StoredNotification, replaces: list[str]) -> None:
        if not overloaded.get():
            return await original_accept(self, notification, replaces)
        await self.store.add_notification(notification, replaces)  # a 201, never queued
        return None

    PushApi._push = _push  # type: ignore[method-assign]
    Hub.accept = accept  # type: ignore[method-assign]


def welcomes_wrong_credential_when_overloaded() -> None:
    """Welcomes a wrong credential while overloaded: under load the server skips the
    refusal of a failed credential check (to save the work of answering it), and the hello
    goes on to a session as if it were valid.

    AOI-OLC-002 allows an overloaded server to refuse before it checks the credential, but
    never to welcome an invalid client. A valid client is still refused ``overloaded``, so
    only the scenario with a wrong credential sees the fault.
    """
    from aoi.core.messages import Reject, RejectReason
    from aoi.server.aoi2 import Aoi2Endpoint

    original = Aoi2Endpoint._refusal

    def _refusal(self: Aoi2Endpoint, hello: Any, remote: str, now: float) -> Reject | None:
        refusal = original(self, hello, remote, now)
        if (
            refusal is not None
            and refusal.reason == RejectReason.INVALID_CREDENTIALS
            and self.load.overloaded()
        ):
            return None
        return refusal

    Aoi2Endpoint._refusal = _refusal  # type: ignore[method-assign]


def refuses_load_before_credentials() -> None:
    """Not a fault: the server refuses for overload before it checks the credential, so an
    invalid client is told ``overloaded`` while the server is full, ``invalid_credentials``
    otherwise.

    docs/protocol.md 2.6 allows it (the credential check costs work an overloaded server
    may save); the suite must PASS it on every requirement, AOI-OLC-002 included.
    """
    from aoi.core.messages import PROTOCOL_VERSION, Reject
    from aoi.core.overload import Refusal
    from aoi.server.aoi2 import Aoi2Endpoint

    original = Aoi2Endpoint._refusal

    def _refusal(self: Aoi2Endpoint, hello: Any, remote: str, now: float) -> Reject | None:
        fresh = hello.version == PROTOCOL_VERSION and not self.hub.owns_link(hello.client_id)
        if fresh and self.load.overloaded():
            control = self.load.control
            reasons = control.reasons(self.load.load())
            refusal = Refusal(reasons, self.load.retry_after(), control.settings.alternates)
            return self._overloaded(refusal)
        return original(self, hello, remote, now)

    Aoi2Endpoint._refusal = _refusal  # type: ignore[method-assign]


OVERLOAD_FAULTS: tuple[Callable[[], None], ...] = (
    accepts_overloaded,
    overloaded_as_invalid_credentials,
    drops_under_overload,
    welcomes_wrong_credential_when_overloaded,
    refuses_load_before_credentials,
)
