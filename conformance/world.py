"""What one scenario works with: the devices the suite plays, the server apps, the checks.

A :class:`World` lives for one scenario. It owns every connection it opened and closes
them at the end; it is where steps find the IXIT, the target, the timeouts and the
verdicts. A :class:`Device` is the suite playing one AOI Client on AOI-2.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from conformance.driver.aoi2 import Aoi2Connection
from conformance.driver.frames import SUBPROTOCOL, Closed, Frame, Handshake
from conformance.driver.http import Answer, Aoi3Client
from conformance.ixit import Client, Endpoint, Ixit
from conformance.registry import Level
from conformance.verdicts import ScenarioVerdicts, SuiteDefect, TargetUnreachable
from conformance.wirelog import WireLog

if TYPE_CHECKING:
    from conformance.runtime import Runtime

T = TypeVar("T")
RESPONSE_S = 5.0  # how long a target may take to answer one message, before scaling
STRANGER = "stranger"  # a client the target does not know


@dataclass
class Push:
    """One notification a server app sent (or tried to), named by its payload label."""

    label: str
    answer: Answer
    app_alias: str | None
    device: str | None
    body: dict[str, Any] | None = None  # what was sent

    @property
    def id(self) -> str | None:
        value = self.answer.json_object.get("id")
        return value if isinstance(value, str) else None


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


@dataclass(repr=False)
class World:
    runtime: Runtime
    verdicts: ScenarioVerdicts
    wirelog: WireLog
    profile: str = "main"
    devices: dict[str, Device] = field(default_factory=dict)
    connections: list[Aoi2Connection] = field(default_factory=list)
    pushes: dict[str, Push] = field(default_factory=dict)
    last_push: Push | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    mentioned: set[str] = field(default_factory=set)  # client names the scenario's steps use
    fillers: list[Device] = field(default_factory=list)  # sessions opened to load the target
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    finishers: list[Callable[[], None]] = field(default_factory=list)  # judge at the end
    _http: dict[str, Aoi3Client] = field(default_factory=dict)
    _judged: set[tuple[int, int]] = field(default_factory=set)

    def __repr__(self) -> str:
        return f"World(profile={self.profile!r}, devices={sorted(self.devices)})"

    @property
    def ixit(self) -> Ixit:
        return self.runtime.ixit

    def endpoint(self) -> Endpoint:
        return self.runtime.targets.endpoint(self.profile)

    def timeout(self, seconds: float) -> float:
        return seconds * self.runtime.timeout_scale

    # --- verdicts --------------------------------------------------------------------

    def check(self, req: str, ok: bool, explanation: str) -> bool:
        return self.verdicts.check(req, ok, explanation)

    def precondition(self, ok: bool, explanation: str) -> None:
        self.verdicts.precondition(ok, explanation)

    def not_lost(self, connection: Aoi2Connection, before: str) -> None:
        """Stop the scenario, judging nothing, if ``connection`` ended without a close frame
        (a reset, an EOF): whatever the step was to see ``before`` never came."""
        closed = connection.closed
        if closed is not None and closed.lost:
            raise TargetUnreachable(
                f"connection lost: {connection.label} to {connection.url} ended without a "
                f"close frame ({closed.reason}) before {before}"
            )

    def found(
        self,
        req: str,
        value: T | None,
        explanation: str,
        holds: Callable[[T], bool] = lambda _: True,
    ) -> T:
        """Check that the target produced ``value`` (of which ``holds``); go on with it.

        Only for binding requirements, whose violation stops the scenario: a SHOULD step
        must judge without needing what the target failed to give.
        """
        if self.runtime.registry[req].binding is not Level.SHALL:
            raise SuiteDefect(f"found() with {req}, a SHOULD: the step could not go on")
        self.check(req, value is not None and holds(value), explanation)
        assert value is not None  # check() raised otherwise
        return value

    def judge_frame(self, device: str, frame: Frame) -> None:
        """Every frame a client receives must be valid AOI-2 (AOI-GEN-002); judged at the
        end of the scenario (:meth:`finish`), so the scenario goes on with what it got."""
        key = (id(frame), frame.seq)
        if key in self._judged:
            return
        self._judged.add(key)
        if frame.problems:
            self.verdicts.record(
                "AOI-GEN-002",
                False,
                f"client {device} got a message that is not valid AOI-2: "
                f"{'; '.join(frame.problems)} in {str(frame.raw)[:300]}",
            )

    def finish(self) -> None:
        """Judge every frame received (not only those taken) against the schemas."""
        for device in self.devices.values():
            if device.conn is not None:
                for frame in device.conn.frames():
                    self.judge_frame(device.name, frame)
        for finisher in self.finishers:
            finisher()
        self.verdicts.raise_recorded()

    # --- actors ----------------------------------------------------------------------

    def device(self, name: str) -> Device:
        if name not in self.devices:
            identity = (
                Client(STRANGER, f"stranger-{secrets.token_hex(4)}", secrets.token_urlsafe(12))
                if name == STRANGER
                else self.ixit.client(name)
            )
            self.devices[name] = Device(self, name, identity)
        return self.devices[name]

    def app_id(self, alias: str) -> str:
        return self.ixit.app_id(alias)

    def http(self) -> Aoi3Client:
        if self.profile not in self._http:
            endpoint = self.endpoint()
            self._http[self.profile] = Aoi3Client(
                endpoint.http, self.wirelog, ca_file=endpoint.ca_file, timeout=self.timeout(10)
            )
        return self._http[self.profile]

    def forget_http(self) -> None:
        """Drop the AOI-3 client of the profile (its pooled connections died with the target)."""
        client = self._http.pop(self.profile, None)
        if client is not None:
            client.close()

    def judge_answer(self, answer: Answer) -> None:
        """AOI-3 error bodies must be ``error_response`` objects (AOI-GEN-001); judged at
        the end of the scenario, as frames are."""
        from conformance import contract

        if answer.status >= 400:
            problems = contract.errors("aoi3/error_response.json", answer.body)
            self.verdicts.record(
                "AOI-GEN-001",
                not problems,
                f"HTTP {answer.status} body is not an error_response: {'; '.join(problems)}",
            )

    def close(self) -> None:
        """Close everything the scenario opened; a failing cleanup (an IXIT command) is
        still reported, after the connections are closed."""
        try:
            for cleanup in reversed(self.cleanups):
                cleanup()
        finally:
            for device in self.devices.values():
                with contextlib.suppress(Exception):  # the verdict is made already
                    device.ack_everything()
            for conn in self.connections:
                with contextlib.suppress(Exception):
                    if conn.closed is None:
                        conn.close(timeout=self.timeout(1))
            for client in self._http.values():
                client.close()
