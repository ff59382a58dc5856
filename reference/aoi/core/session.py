"""The AOI-2 session as both ends see it: one transition table, frames in, events out.

A session is driven by its owner: ``receive(frame, now)`` and ``tick(now)`` return events
(received messages, and :class:`Closed` once the session ended), ``send(message, now)``
queues a frame, ``outgoing()`` hands the queued frames over. Which message may come when is
:data:`TRANSITIONS`, one table for both roles (as h11's ``_state.py`` has): it maps the
session's state, the role that sends and the message type to the next state. A server
session looks up what it receives under :attr:`Role.CLIENT` and what it sends under
:attr:`Role.SERVER`, a client session the other way round. A message that has no entry is a
protocol error, on whichever side it happens. What only one role does (timeouts, pings,
pending requests) is in :mod:`.server_session` and :mod:`.client_session`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar

from .codec import Codec
from .errors import CloseCode, ErrorCode, LocalProtocolError, RemoteProtocolError
from .messages import Error, Message


class State(Enum):
    """The state of the conversation, the same at both ends."""

    AWAIT_HELLO = "await_hello"  # connection open, no hello yet
    AUTHENTICATING = "authenticating"  # hello sent, neither welcome nor reject yet
    ESTABLISHED = "established"
    CLOSED = "closed"


class Role(Enum):
    CLIENT = "client"
    SERVER = "server"


_H, _A, _E = State.AWAIT_HELLO, State.AUTHENTICATING, State.ESTABLISHED
CLIENT, SERVER = Role.CLIENT, Role.SERVER

# (state, sender, message type) -> the next state, for both ends.
TRANSITIONS: Mapping[tuple[State, Role, str], State] = {
    (_H, CLIENT, "hello"): _A,
    (_A, SERVER, "welcome"): _E,
    (_A, SERVER, "reject"): State.CLOSED,
    (_A, SERVER, "error"): State.CLOSED,  # a hello the server could not accept as one
    **{
        (_E, CLIENT, kind): _E
        for kind in ("register", "unregister", "ack", "nack", "ping", "pong", "error")
    },
    **{
        (_E, SERVER, kind): _E
        for kind in ("registered", "unregistered", "notify", "ping", "pong", "error")
    },
    (_E, CLIENT, "bye"): State.CLOSED,
    (_E, SERVER, "bye"): State.CLOSED,
    (_E, SERVER, "redirect"): State.CLOSED,
}


@dataclass(frozen=True, slots=True)
class Closed:
    """The session ended; the owner closes the connection with ``code``."""

    code: CloseCode
    reason: str


Event = Message | Closed


class Session:
    role: ClassVar[Role]
    peer: ClassVar[Role]

    def __init__(self, codec: Codec, now: float) -> None:
        self.codec = codec
        self.state = State.AWAIT_HELLO
        self.started = now
        self.last_rx = now
        self.last_tx = now
        self.closed: Closed | None = None
        self._outbox: list[str] = []

    # --- the owner's API -----------------------------------------------------------------

    def receive(self, frame: bytes | str, now: float) -> list[Event]:
        """One frame from the peer."""
        if self.state is State.CLOSED:
            return []
        self.last_rx = now
        try:
            message = self.codec.decode(frame)
        except RemoteProtocolError as err:
            return self._reply_error(err)
        return self.receive_message(message, now)

    def receive_message(self, message: Message, now: float) -> list[Event]:
        """A decoded message from the peer (for owners that decode themselves)."""
        if self.state is State.CLOSED:
            return []
        self.last_rx = now
        after = TRANSITIONS.get((self.state, self.peer, message.type))
        if after is None:
            req = getattr(message, "req", None)
            return self._reply_error(
                RemoteProtocolError(
                    ErrorCode.UNEXPECTED_MESSAGE,
                    f"{message.type!r} is not allowed in state {self.state.value}",
                    req=req if isinstance(req, int) else None,
                )
            )
        self.state = after
        events: list[Event] = [message, *self._received(message, now)]
        if self.state is State.CLOSED and self.closed is None:
            events.append(self.close(self._peer_close_code(message), message.type))
        return events

    def send(self, message: Message, now: float) -> None:
        """Queue ``message``; :class:`LocalProtocolError` if the protocol forbids it now."""
        after = TRANSITIONS.get((self.state, self.role, message.type))
        if after is None:
            raise LocalProtocolError(
                ErrorCode.UNEXPECTED_MESSAGE,
                f"cannot send {message.type!r} in state {self.state.value}",
            )
        self._outbox.append(self.codec.encode(message))
        self.last_tx = now
        self.state = after
        self._sent(message, now)
        if after is State.CLOSED and self.closed is None:
            self.closed = Closed(self._own_close_code(message), message.type)

    def outgoing(self) -> list[str]:
        """The frames queued since the last call, in order."""
        frames, self._outbox = self._outbox, []
        return frames

    @property
    def has_outgoing(self) -> bool:
        """Whether :meth:`outgoing` has frames to hand over."""
        return bool(self._outbox)

    def deadline(self) -> float | None:
        """When :meth:`tick` has something to do, or ``None``."""
        raise NotImplementedError

    def tick(self, now: float) -> list[Event]:
        """Let time pass: timeouts and keepalives."""
        raise NotImplementedError

    def connection_lost(self, reason: str = "connection lost") -> Closed:
        """The transport is gone: the session is over."""
        if self.closed is None:
            self.state = State.CLOSED
            self.closed = Closed(CloseCode.GOING_AWAY, reason)
        return self.closed

    # --- what a role adds ----------------------------------------------------------------

    def _received(self, message: Message, now: float) -> list[Event]:
        return []

    def _sent(self, message: Message, now: float) -> None:
        return None

    def _peer_close_code(self, message: Message) -> CloseCode:
        return CloseCode.NORMAL

    def _own_close_code(self, message: Message) -> CloseCode:
        return CloseCode.NORMAL

    # --- shared machinery ----------------------------------------------------------------

    def _reply_error(self, err: RemoteProtocolError) -> list[Event]:
        fatal = err.fatal or self.state is not State.ESTABLISHED
        error = Error(code=err.code.value, detail=err.detail[:1024], fatal=fatal, req=err.req)
        self._outbox.append(self.codec.encode(error))
        if not fatal:
            return []
        return [self.close(err.close_code, err.detail)]

    def close(self, code: CloseCode, reason: str) -> Closed:
        """End the session without a message (e.g. it was taken over by a new connection)."""
        self.state = State.CLOSED
        self.closed = Closed(code, reason[:120])
        return self.closed
