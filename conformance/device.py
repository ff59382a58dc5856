"""The suite playing one AOI Client on AOI-2 (:class:`Device`, ``client "A"`` in the
features): its connection, hello and welcome, registrations, acks and pings, each answer
judged against the schemas as it is taken; and :func:`describe`, the short account of what
the target answered that explanations quote.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from conformance.driver.aoi2 import Aoi2Connection
from conformance.driver.frames import SUBPROTOCOL, Closed, Frame, Handshake
from conformance.ixit import Client
from conformance.verdicts import TargetUnreachable

if TYPE_CHECKING:
    from conformance.world import World

RESPONSE_S = 5.0  # how long a target may take to answer one message, before scaling


class Device:
    """The suite playing one AOI Client (``client "A"`` in the features)."""

    def __repr__(self) -> str:
        return f"Device({self.name!r}, {self.identity.client_id!r})"

    def __init__(self, world: World, name: str, identity: Client) -> None:
        self.world = world
        self.name = name
        self.identity = identity
        self.conn: Aoi2Connection | None = None
        self.connections = 0
        self.welcome: dict[str, Any] | None = None
        self.sessions: list[str] = []  # every session id welcomed, oldest first
        self.tokens: dict[str, str] = {}  # app alias -> token
        self.endpoints: dict[str, str] = {}
        self._req = 0

    @property
    def session(self) -> str | None:
        return self.sessions[-1] if self.sessions else None

    def next_req(self) -> int:
        self._req += 1
        return self._req

    # --- connection ------------------------------------------------------------------

    def connect(self, subprotocols: tuple[str, ...] = (SUBPROTOCOL,)) -> Handshake:
        """Connect and ask for the upgrade; what the target answered (a TLS handshake or an
        upgrade it refused is an answer). No TCP connection at all stops the scenario."""
        endpoint = self.world.endpoint()
        self.connections += 1
        self.conn = Aoi2Connection(
            self.world.runtime.portal,
            self.world.wirelog,
            f"aoi2 {self.name}#{self.connections}",
            endpoint.aoi2,
            ca_file=endpoint.ca_file,
            subprotocols=subprotocols,
            connect_timeout=self.world.timeout(10),
        )
        self.world.connections.append(self.conn)
        handshake = self.conn.open()
        if not handshake.reached:
            raise TargetUnreachable(
                f"target unreachable: client {self.name} could not connect to {endpoint.aoi2}: "
                f"{handshake.error}"
            )
        return handshake

    def connection(self) -> Aoi2Connection:
        if self.conn is None:
            raise RuntimeError(f"suite: client {self.name} has no connection")
        return self.conn

    def open(self) -> None:
        """Connect and upgrade, as a precondition."""
        handshake = self.connect()
        self.world.precondition(
            handshake.accepted,
            f"client {self.name}: no WebSocket upgrade at {self.world.endpoint().aoi2}: "
            f"{handshake.error or handshake.status}",
        )

    def hello(self, **overrides: Any) -> None:
        message: dict[str, Any] = {
            "type": "hello",
            "version": 1,
            "client_id": self.identity.client_id,
            "credential": self.identity.credential,
        }
        if self.identity.provider:
            message["provider"] = self.identity.provider
        message.update(overrides)
        self.connection().send({k: v for k, v in message.items() if v is not None})

    def answer_to_hello(self) -> Frame | None:
        """The welcome or reject that answers the hello (None: none came in time)."""
        frame = self.take(lambda f: f.type in ("welcome", "reject", "error"))
        if frame is not None and frame.type == "welcome":
            self.welcomed(frame)
        return frame

    def welcomed(self, frame: Frame) -> None:
        self.welcome = frame.message
        session = frame.get("session")
        if isinstance(session, str):
            self.sessions.append(session)
        keepalive = frame.get("keepalive_s")
        if isinstance(keepalive, int | float) and keepalive > 0:
            self.connection().enable_keepalive(float(keepalive))

    def login(self, session: str | None = None) -> Frame:
        """Connect, hello, welcome: the precondition of most scenarios."""
        self.open()
        self.hello(session=session)
        frame = self.answer_to_hello()
        self.world.precondition(
            frame is not None and frame.type == "welcome",
            f"client {self.name} was not welcomed: {describe(frame, self.connection().closed)}",
        )
        assert frame is not None
        return frame

    def take(
        self, predicate: Callable[[Frame], bool], timeout: float | None = None
    ) -> Frame | None:
        """The next frame matching ``predicate``; every frame taken is judged against the
        schemas (AOI-GEN-002) as it is taken."""
        connection = self.connection()
        frame = connection.wait_for(predicate, self.world.timeout(timeout or RESPONSE_S))
        if frame is None:
            self.world.not_lost(connection, "the message the step waits for")
        else:
            self.world.judge_frame(self.name, frame)
        return frame

    def register(self, alias: str) -> Frame | None:
        req = self.next_req()
        self.connection().send({"type": "register", "req": req, "app_id": self.world.app_id(alias)})
        frame = self.take(lambda f: f.type in ("registered", "error") and f.get("req") == req)
        if frame is not None and frame.type == "registered":
            token, endpoint = frame.get("token"), frame.get("endpoint")
            if isinstance(token, str):
                self.tokens[alias] = token
            if isinstance(endpoint, str):
                self.endpoints[alias] = endpoint
        return frame

    def registered(self, alias: str) -> None:
        frame = self.register(alias)
        self.world.precondition(
            frame is not None and frame.type == "registered" and alias in self.tokens,
            f"client {self.name} could not register app {alias!r}: "
            f"{describe(frame, self.connection().closed)}",
        )

    def wait_closed(self, timeout: float) -> Closed | None:
        """The close of this connection, if it comes within ``timeout`` (unscaled); a
        connection lost without a close frame stops the scenario: no close code to judge."""
        connection = self.connection()
        closed = connection.wait_closed(self.world.timeout(timeout))
        self.world.not_lost(connection, "its close code")
        return closed

    def closed_with(self, req: str, code: int, after: str = "") -> Closed:
        """The target closes this connection with ``code`` within the response time; else
        ``req`` fails, saying what the close came ``after``."""
        closed = self.wait_closed(RESPONSE_S)
        return self.world.found(
            req,
            closed,
            f"the server must close with {code}{' ' + after if after else ''}: "
            + (f"closed with {closed.code} {closed.reason}" if closed else "it did not close"),
            lambda c: c.by_target and c.code == code,
        )

    def bye(self) -> Closed | None:
        conn = self.connection()
        conn.send({"type": "bye", "reason": "conformance suite"})
        closed = conn.wait_closed(self.world.timeout(RESPONSE_S))
        if closed is None:
            closed = conn.close()
        return closed

    def notification(self, label: str, timeout: float | None = None) -> Frame | None:
        return self.take(lambda f: f.type == "notify" and f.get("payload") == label, timeout)

    def ack(self, *ids: str) -> None:
        self.connection().send({"type": "ack", "ids": list(ids)})

    def ack_everything(self) -> None:
        """Ack what the session received, as apps would: leave nothing queued behind."""
        conn = self.conn
        if conn is None or conn.closed is not None or self.welcome is None:
            return
        ids = [
            f.get("id")
            for f in conn.frames()
            if f.type == "notify" and isinstance(f.get("id"), str)
        ]
        if ids:
            conn.send({"type": "ack", "ids": ids[:1000]})

    def received(self, label: str) -> list[Frame]:
        """Every notify with this payload on the current connection, taken or not."""
        return [
            f
            for f in self.connection().frames()
            if f.type == "notify" and f.get("payload") == label
        ]

    def ping_answered(self) -> bool:
        conn = self.connection()
        if conn.closed is not None:
            self.world.not_lost(conn, "a pong")
            return False
        ts = round(time.time(), 3) + 0.5
        conn.send({"type": "ping", "ts": ts})
        return self.take(lambda f: f.type == "pong" and f.get("ts") == ts) is not None


def describe(frame: Frame | None, closed: Closed | None) -> str:
    """A short account of what the target answered, for explanations."""
    if frame is not None:
        shown = frame.raw if isinstance(frame.raw, str) else f"<binary {len(frame.raw)} bytes>"
        return f"got {shown[:300]}"
    if closed is not None:
        return f"the connection closed ({closed.code} {closed.reason})".rstrip()
    return "no answer in time"
