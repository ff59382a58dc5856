"""The AOI Client's side of an AOI-2 session: keepalive pings, the silence limit, matching
answers to requests. Which message may come when is the shared table in :mod:`.session`."""

from __future__ import annotations

from .codec import Codec
from .errors import CloseCode
from .messages import (
    Error,
    Message,
    Ping,
    Pong,
    Register,
    Registered,
    Reject,
    RejectReason,
    Unregister,
    Welcome,
)
from .server_session import REJECT_CLOSE_CODES
from .session import Event, Role, Session, State

_H, _A, _E = State.AWAIT_HELLO, State.AUTHENTICATING, State.ESTABLISHED


class ClientSession(Session):
    """One connection to an AOI Server, as seen by the AOI Client.

    The owner sends ``hello`` and reacts to ``Welcome``, ``Reject``, ``Redirect``, ``Notify``
    events. The session pings after ``keepalive_s`` without sending, answers pings, matches
    ``registered``/``unregistered`` to their requests (``pending``), and declares the
    connection dead when the server has been silent for twice the keepalive interval.
    """

    role, peer = Role.CLIENT, Role.SERVER

    def __init__(self, codec: Codec, now: float, *, handshake_timeout_s: float = 10.0) -> None:
        super().__init__(codec, now)
        self.handshake_timeout_s = handshake_timeout_s
        self.keepalive_s: float | None = None
        self.pending: dict[int, Register | Unregister] = {}
        self._next_req = 1

    def next_req(self) -> int:
        req, self._next_req = self._next_req, self._next_req + 1
        return req

    def deadline(self) -> float | None:
        if self.state in (_H, _A):
            return self.started + self.handshake_timeout_s
        if self.state is _E and self.keepalive_s is not None:
            return min(self.last_tx + self.keepalive_s, self.last_rx + 2 * self.keepalive_s)
        return None

    def tick(self, now: float) -> list[Event]:
        deadline = self.deadline()
        if deadline is None or now < deadline:
            return []
        if self.state is not _E or self.keepalive_s is None:
            return [self.close(CloseCode.TIMEOUT, "no answer to hello in time")]
        if now >= self.last_rx + 2 * self.keepalive_s:
            return [self.close(CloseCode.TIMEOUT, "server silent for twice the keepalive")]
        self.send(Ping(ts=now), now)
        return []

    def _received(self, message: Message, now: float) -> list[Event]:
        if isinstance(message, Welcome):
            self.keepalive_s = message.keepalive_s
        elif isinstance(message, Ping):
            self.send(Pong(ts=message.ts), now)
        elif isinstance(message, Registered) or message.type == "unregistered":
            self.pending.pop(getattr(message, "req", -1), None)
        elif isinstance(message, Error):
            if message.req is not None:
                self.pending.pop(message.req, None)
            if message.fatal and self.state is not State.CLOSED:
                return [self.close(CloseCode.PROTOCOL_ERROR, f"server error {message.code}")]
        return []

    def _sent(self, message: Message, now: float) -> None:
        if isinstance(message, Register | Unregister):
            self.pending[message.req] = message

    def _peer_close_code(self, message: Message) -> CloseCode:
        if isinstance(message, Reject):
            return REJECT_CLOSE_CODES[RejectReason(message.reason)]
        if message.type == "redirect":
            return CloseCode.OVERLOADED
        if message.type == "error":
            return CloseCode.PROTOCOL_ERROR
        return CloseCode.NORMAL
