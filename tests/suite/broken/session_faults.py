"""The faults of the broken targets that concern a session resumed on another connection
(close 4409, docs/protocol.md 2.9 and 2.12; see :mod:`tests.suite.broken.faults`)."""

from __future__ import annotations

from collections.abc import Callable


def keeps_taken_over_connection() -> None:
    """Keeps the taken-over connection open: when a session is resumed on a new connection,
    the connection that held it is left open instead of being closed with 4409.

    ``Hub.attach`` returns the connection the resumed session replaces, for its owner to
    close; here it returns none. The session moves to the new connection as in the
    reference (notifications go there), but the old one stays open, answering pings, so a
    client that opened it believes it still holds the session. AOI-CON-004 (docs/protocol.md
    2.9) requires the server to close that older connection with 4409.
    """
    from aoi.server.hub import Hub, Link

    original = Hub.attach

    async def attach(
        self: Hub, link: Link, requested_session: str | None
    ) -> tuple[str, bool, Link | None]:
        session_id, resumed, _previous = await original(self, link, requested_session)
        return session_id, resumed, None

    Hub.attach = attach  # type: ignore[method-assign]


def takes_over_with_1000() -> None:
    """Closes a taken-over connection with 1000 instead of 4409: the session moves to the
    new connection, and the old one is closed as if after ``bye``.

    A client cannot tell such a close from an orderly one, so it does not learn that the
    connection is obsolete; AOI-CON-004 (docs/protocol.md 2.9, 2.12) requires 4409. Only
    the close code differs from the reference.
    """
    from aoi.core.errors import CloseCode
    from aoi.server.hub import Hub, Link

    original = Hub.attach

    async def attach(
        self: Hub, link: Link, requested_session: str | None
    ) -> tuple[str, bool, Link | None]:
        session_id, resumed, previous = await original(self, link, requested_session)
        if previous is not None:
            previous.session.close(CloseCode.NORMAL, "session resumed elsewhere")
            previous.flush()
        return session_id, resumed, None

    Hub.attach = attach  # type: ignore[method-assign]


SESSION_FAULTS: tuple[Callable[[], None], ...] = (
    keeps_taken_over_connection,
    takes_over_with_1000,
)
