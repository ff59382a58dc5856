"""The AOI Server's side of an AOI-2 session: the handshake timeout, the silence limit,
answering pings. Which message may come when is the shared table in :mod:`.session`."""

from __future__ import annotations

from .codec import Codec
from .errors import CloseCode
from .messages import Error, Message, Ping, Pong, Reject, RejectReason, Welcome
from .session import Closed, Event, Role, Session, State

REJECT_CLOSE_CODES = {
    RejectReason.INVALID_CREDENTIALS: CloseCode.AUTH_FAILED,
    RejectReason.FORBIDDEN: CloseCode.AUTH_FAILED,
    RejectReason.RATE_LIMITED: CloseCode.RATE_LIMITED,
    RejectReason.OVERLOADED: CloseCode.OVERLOADED,
    RejectReason.UNSUPPORTED_VERSION: CloseCode.UNSUPPORTED_VERSION,
}


class ServerSession(Session):
    """One client connection, from its first frame to its close.

    Authentication, registration and delivery decisions belong to the owner: the session
    hands it ``Hello``, ``Register``... as events and checks that what the owner sends back
    is allowed. It answers ``ping`` itself and closes a connection without ``hello`` in time
    or silent for two keepalive intervals. What is in flight is the delivery's business
    (:mod:`aoi.core.delivery`), which outlives connections.
    """

    role, peer = Role.SERVER, Role.CLIENT

    def __init__(self, codec: Codec, now: float, *, handshake_timeout_s: float = 10.0) -> None:
        super().__init__(codec, now)
        self.handshake_timeout_s = handshake_timeout_s
        self.keepalive_s: float | None = None

    def deadline(self) -> float | None:
        if self.state in (State.AWAIT_HELLO, State.AUTHENTICATING):
            return self.started + self.handshake_timeout_s
        if self.state is State.ESTABLISHED and self.keepalive_s is not None:
            return self.last_rx + 2 * self.keepalive_s
        return None

    def tick(self, now: float) -> list[Event]:
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return []
        if self.state is State.ESTABLISHED:
            return [self.close(CloseCode.TIMEOUT, "no frame for twice the keepalive interval")]
        return [self.close(CloseCode.TIMEOUT, "no hello within the handshake timeout")]

    def _received(self, message: Message, now: float) -> list[Event]:
        if isinstance(message, Ping):
            self.send(Pong(ts=message.ts), now)
        elif isinstance(message, Error) and message.fatal:
            return [self.close(CloseCode.PROTOCOL_ERROR, f"peer error {message.code}")]
        return []

    def _sent(self, message: Message, now: float) -> None:
        if isinstance(message, Welcome):
            self.keepalive_s = message.keepalive_s

    def _own_close_code(self, message: Message) -> CloseCode:
        if isinstance(message, Reject):
            return REJECT_CLOSE_CODES[RejectReason(message.reason)]
        if message.type == "redirect":
            return CloseCode.OVERLOADED
        return CloseCode.GOING_AWAY


__all__ = ["Closed", "ServerSession"]
