"""The AOI Server's side of an AOI-2 session: the handshake timeout, the silence limit,
answering pings. Which message may come when is the shared table in :mod:`.session`."""

from __future__ import annotations

from .codec import Codec
from .errors import CloseCode, ErrorCode, RemoteProtocolError
from .messages import Error, Message, Ping, Pong, Reject, RejectReason, Welcome
from .session import Closed, Event, Role, Session, State

# Before welcome the peer is anybody, and all it may send is a hello: every valid one fits
# in this many bytes (1024 credential and 253 provider characters, each escaped as
# \uXXXX\uXXXX), so a larger frame is refused unread (frame_too_large, 4413).
MAX_HELLO_FRAME = 16384

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

    def receive(self, frame: bytes | str, now: float) -> list[Event]:
        if self.state is State.AWAIT_HELLO and _size(frame) > MAX_HELLO_FRAME:
            self.last_rx = now
            return self._reply_error(
                RemoteProtocolError(
                    ErrorCode.FRAME_TOO_LARGE,
                    f"a frame before welcome may not exceed {MAX_HELLO_FRAME} bytes",
                    fatal=True,
                )
            )
        return super().receive(frame, now)

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


def _size(frame: bytes | str) -> int:
    """Bytes of ``frame`` in UTF-8, counted only when its characters alone could exceed
    the hello limit (a character is at most four bytes)."""
    if isinstance(frame, bytes) or len(frame) * 4 <= MAX_HELLO_FRAME:
        return len(frame)
    return len(frame.encode("utf-8", "surrogatepass"))


__all__ = ["MAX_HELLO_FRAME", "Closed", "ServerSession"]
