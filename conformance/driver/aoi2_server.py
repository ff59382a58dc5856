"""The suite's AOI Servers, for client mode: scriptable, on trio + wsproto, every frame logged.

Written from ``schemas/`` and ``docs/protocol.md`` only. Each :class:`SuiteServer` listens on
a free loopback port (``ws://``, or ``wss://`` with a certificate the scenario chose) and
plays an AOI Server whose answers a scenario scripts: welcome, reject (any reason, with or
without ``retry_after_s`` and alternates), never answer, close every connection at once,
accept the upgrade without selecting ``aoi.v1``; and, on an established session, notify,
redirect, take the session over (close 4409), drop the connection, send anything.
Everything the AOI Client under test sends is kept with its arrival time
(``time.monotonic()``) and judged against the schemas, so that steps can measure what the
client did. A server never sleeps and never decides anything on
its own beyond answering as scripted.
"""

from __future__ import annotations

import json
import secrets
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Message,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)

from conformance import contract
from conformance.driver.aoi2 import ABNORMAL, SUBPROTOCOL, Closed, Frame
from conformance.driver.portal import LoopbackListener, Portal
from conformance.wirelog import WireLog

# Close codes of docs/protocol.md 2.12, for the refusals a scenario scripts.
REJECT_CLOSE = {
    "invalid_credentials": 4001,
    "forbidden": 4001,
    "rate_limited": 4029,
    "unsupported_version": 4426,
    "overloaded": 4503,
}
REDIRECT_CLOSE = 4503
TAKEN_OVER_CLOSE = 4409  # the session was resumed on another connection
KEEPALIVE_S = 60  # welcome.keepalive_s unless a scenario sets another
LIMITS = {"max_payload": 4096, "max_apps": 32}
GARBAGE = b"\x00\xffNOT HTTP\r\n\x16\x03\x01\r\n\r\n"  # no status line, no headers
TLS_HANDSHAKE_S = 10.0


def _error_code(frame: Frame) -> str:
    """The error code of docs/protocol.md 2.11 for a frame that is not a valid message."""
    if isinstance(frame.raw, bytes):
        return "malformed_frame"
    if frame.message is None or not isinstance(frame.message.get("type"), str):
        try:
            json.loads(frame.raw)
        except ValueError:
            return "malformed_frame"
        return "not_an_object"
    if frame.type not in contract.aoi2_types():
        return "unsupported_message"
    return "invalid_message"


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True, slots=True)
class HelloAnswer:
    """How the server answers one ``hello``: ``welcome``, ``reject`` or ``silent``."""

    kind: str
    reason: str = ""
    retry_after_s: float | None = None
    servers: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.kind != "reject":
            return self.kind
        extra = f", retry_after_s {self.retry_after_s}" if self.retry_after_s is not None else ""
        return f"reject {self.reason}{extra}"


WELCOME = HelloAnswer("welcome")


@dataclass
class Session:
    """The server's memory of one session: its client and the token of each app."""

    id: str
    client_id: str
    tokens: dict[str, str] = field(default_factory=dict)  # app_id -> token


@dataclass
class ServerConnection:
    """One connection the AOI Client opened to a suite server, and all that happened on it."""

    n: int
    label: str
    opened_at: float
    offered: list[str] | None = None  # subprotocols the client offered (None: no upgrade)
    selected: str | None = None
    tls_error: str = ""  # why the TLS handshake failed, when it did
    frames: list[Frame] = field(default_factory=list)  # what the client sent, in order
    hello: Frame | None = None
    answer: HelloAnswer | None = None
    answered_at: float | None = None  # when the welcome or reject was sent
    session: Session | None = None
    resumed: bool = False
    redirected_at: float | None = None
    dropped_at: float | None = None
    closed: Closed | None = None  # by_target: the AOI Client closed it
    stream: trio.abc.Stream | None = field(default=None, repr=False)
    ws: WSConnection | None = field(default=None, repr=False)
    lock: trio.Lock | None = field(default=None, repr=False)
    scope: trio.CancelScope | None = field(default=None, repr=False)
    partial: list[str | bytes] = field(default_factory=list, repr=False)

    @property
    def established(self) -> bool:
        return self.session is not None and self.closed is None

    def received(self, kind: str) -> list[Frame]:
        return [f for f in self.frames if f.type == kind]


class SuiteServer(LoopbackListener):
    """One scriptable AOI Server of the suite, named as the features name it (``"a"``)."""

    def __init__(
        self,
        portal: Portal,
        wirelog: WireLog,
        name: str,
        *,
        on_change: Callable[[], None],
        tls: ssl.SSLContext | None = None,
        server_id: str | None = None,
    ) -> None:
        super().__init__(portal)
        self.wirelog = wirelog
        self.name = name
        self.server_id = server_id or name
        self.on_change = on_change
        self.tls = tls
        # The script: answers for the next hellos, then the default; what to do at connect.
        self.answers: deque[HelloAnswer] = deque()
        self.default = WELCOME
        # "serve", "close" (at once), "no_subprotocol", "garbage" (bytes that are not HTTP)
        self.on_connect = "serve"
        self.keepalive_s = KEEPALIVE_S
        self.connections: list[ServerConnection] = []
        self.sessions: dict[str, Session] = {}
        self.notifications: dict[str, str] = {}  # label -> id
        self.issued: list[tuple[str, str]] = []  # (app_id, token) of every registered sent

    def __repr__(self) -> str:
        return f"SuiteServer({self.name!r}, {self.url!r})"

    @property
    def url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}/aoi"

    @property
    def http_base(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    # --- synchronous API (each a portal call) ---------------------------------------------

    def send(self, conn: ServerConnection, message: dict[str, Any]) -> bool:
        return bool(self.portal.call(self._send, conn, message))

    def send_bytes(self, conn: ServerConnection, data: bytes, what: str) -> bool:
        """Write ``data`` as it is on the connection (not a frame the suite made)."""
        return bool(self.portal.call(self._send_bytes, conn, data, what))

    def drop(self, conn: ServerConnection) -> None:
        """End the TCP connection without a close frame (a lost network)."""
        self.portal.call(self._drop, conn)

    def redirect(self, conn: ServerConnection, message: dict[str, Any]) -> None:
        self.portal.call(self._redirect, conn, message)

    def take_over(self, conn: ServerConnection) -> bool:
        """Close the connection with 4409, as when another connection resumed its session;
        whether the close frame was sent (the connection was still open)."""
        return bool(self.portal.call(self._take_over, conn))

    # --- what steps read (call in the trio thread, or after the fact) ----------------------

    def current(self) -> ServerConnection | None:
        """The latest established session, if it is still open."""
        for conn in reversed(self.connections):
            if conn.established:
                return conn
        return None

    def hellos(self) -> list[Frame]:
        return [c.hello for c in self.connections if c.hello is not None]

    def frames(self, kind: str) -> list[Frame]:
        return [f for c in self.connections for f in c.received(kind)]

    def acked(self, notification_id: str) -> list[Frame]:
        return [f for f in self.frames("ack") if notification_id in (f.get("ids") or [])]

    def token_of(self, app_id: str) -> str | None:
        """The token the latest session issued to ``app_id``."""
        for conn in reversed(self.connections):
            if conn.session is not None and app_id in conn.session.tokens:
                return conn.session.tokens[app_id]
        return None

    def tokens_issued(self, app_id: str) -> list[str]:
        """Every token this server gave ``app_id``, oldest first (unregistered ones too)."""
        return list(dict.fromkeys(t for a, t in self.issued if a == app_id))

    def endpoint_of(self, token: str) -> str:
        return f"{self.http_base}/v1/push/{token}"

    # --- trio side --------------------------------------------------------------------------

    async def _stop(self) -> None:
        for conn in self.connections:
            if conn.scope is not None:
                conn.scope.cancel()
        await super()._stop()

    def _log(self, conn: ServerConnection, direction: str, text: str) -> None:
        self.wirelog.add(conn.label, direction, text)

    def _mark_closed(
        self, conn: ServerConnection, code: int, reason: str, *, by_target: bool
    ) -> None:
        if conn.closed is None:
            conn.closed = Closed(code, reason, time.monotonic(), by_target)
            self._log(conn, "--", f"closed {code} {reason}".strip())
            self.on_change()

    async def _handle(self, stream: trio.SocketStream) -> None:
        conn = ServerConnection(
            len(self.connections) + 1,
            f"aoi2 {self.name}#{len(self.connections) + 1}",
            time.monotonic(),
        )
        conn.lock = trio.Lock()
        self.connections.append(conn)
        self._log(conn, "--", f"connection from the AOI Client to {self.url}")
        self.on_change()
        try:
            with trio.CancelScope() as scope:
                conn.scope = scope
                if self.on_connect == "close":
                    self._mark_closed(
                        conn, ABNORMAL, "closed by the suite at once", by_target=False
                    )
                    return
                conn.stream = stream
                if self.tls is not None:
                    tls = trio.SSLStream(stream, self.tls, server_side=True)
                    try:
                        with trio.fail_after(TLS_HANDSHAKE_S):
                            await tls.do_handshake()
                    except (trio.BrokenResourceError, trio.TooSlowError, OSError) as e:
                        cause = e.__cause__ or e
                        conn.tls_error = f"{type(cause).__name__}: {cause}"
                        self._mark_closed(
                            conn,
                            ABNORMAL,
                            f"TLS handshake failed: {conn.tls_error}",
                            by_target=True,
                        )
                        return
                    self._log(conn, "--", "TLS handshake completed")
                    conn.stream = tls
                await self._serve(conn)
        finally:
            if conn.closed is None:
                self._mark_closed(conn, ABNORMAL, "connection ended", by_target=False)
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await (conn.stream or stream).aclose()

    async def _serve(self, conn: ServerConnection) -> None:
        assert conn.stream is not None
        ws = conn.ws = WSConnection(ConnectionType.SERVER)
        while True:  # the upgrade
            try:
                data = await conn.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
                self._mark_closed(conn, ABNORMAL, f"lost before the upgrade: {e}", by_target=True)
                return
            if not data:
                self._mark_closed(conn, ABNORMAL, "closed before the upgrade", by_target=True)
                return
            ws.receive_data(bytes(data))
            request = next((e for e in ws.events() if isinstance(e, Request)), None)
            if request is not None:
                break
        conn.offered = list(request.subprotocols)
        self._log(conn, "<-", f"upgrade {request.target} subprotocols={conn.offered}")
        if self.on_connect == "garbage":
            await self._send_bytes(conn, GARBAGE, "an answer to the upgrade that is not HTTP")
            self._mark_closed(conn, ABNORMAL, "answered with garbage", by_target=False)
            return
        if self.on_connect == "no_subprotocol":
            await self._raw(conn, ws.send(AcceptConnection()))
            self._log(conn, "->", "101 upgrade, no subprotocol selected")
        elif SUBPROTOCOL in conn.offered:
            conn.selected = SUBPROTOCOL
            await self._raw(conn, ws.send(AcceptConnection(subprotocol=SUBPROTOCOL)))
            self._log(conn, "->", f"101 upgrade, subprotocol={SUBPROTOCOL}")
        else:
            await self._raw(conn, ws.send(RejectConnection(status_code=400)))
            self._log(conn, "->", f"400: the upgrade does not offer {SUBPROTOCOL}")
            self._mark_closed(conn, ABNORMAL, "upgrade refused", by_target=False)
            return
        self.on_change()
        while conn.closed is None:
            try:
                data = await conn.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
                self._mark_closed(conn, ABNORMAL, f"connection lost: {e}", by_target=True)
                return
            if not data:
                self._mark_closed(
                    conn, ABNORMAL, "TCP closed without a close frame", by_target=True
                )
                return
            try:
                ws.receive_data(bytes(data))
                for event in ws.events():
                    await self._on_event(conn, event)
            except Exception as e:  # a WebSocket protocol violation by the client
                self._log(conn, "--", f"WebSocket protocol error: {e}")
                self._mark_closed(conn, ABNORMAL, f"WebSocket protocol error: {e}", by_target=True)
                return

    async def _on_event(self, conn: ServerConnection, event: object) -> None:
        assert conn.ws is not None
        if isinstance(event, Message):
            conn.partial.append(event.data)
            if event.message_finished:
                parts, conn.partial = conn.partial, []
                if isinstance(event, TextMessage):
                    await self._received(conn, "".join(str(p) for p in parts))
                elif isinstance(event, BytesMessage):
                    await self._received(conn, b"".join(bytes(p) for p in parts))  # type: ignore[arg-type]
        elif isinstance(event, Ping):
            await self._raw(conn, conn.ws.send(event.response()))
        elif isinstance(event, CloseConnection):
            self._log(conn, "<-", f"close {event.code} {event.reason or ''}".strip())
            if conn.ws.state is ConnectionState.REMOTE_CLOSING:
                await self._raw(conn, conn.ws.send(event.response()))
            self._mark_closed(conn, event.code, event.reason or "", by_target=True)

    async def _received(self, conn: ServerConnection, raw: str | bytes) -> None:
        self.wirelog.frame(conn.label, "<-", raw)
        message, problems = contract.read_frame(raw, contract.aoi2_errors)
        frame = Frame(len(conn.frames) + 1, time.monotonic(), raw, message, problems)
        conn.frames.append(frame)
        self.on_change()
        await self._answer(conn, frame)

    # --- the server's side of the protocol ---------------------------------------------------

    async def _answer(self, conn: ServerConnection, frame: Frame) -> None:
        kind = frame.type
        if conn.session is None:  # before welcome every error is fatal
            if conn.answer is not None and conn.answer.kind == "silent":
                return  # a server that does not answer does not answer anything
            if kind == "hello" and not frame.problems and conn.hello is None:
                await self._hello(conn, frame)
            elif frame.problems:
                await self._error(conn, _error_code(frame), "; ".join(frame.problems)[:1000], True)
            else:
                await self._error(conn, "unexpected_message", f"{kind!r} before welcome", True)
            return
        if frame.problems:
            detail = "; ".join(frame.problems)[:1000]
            await self._error(conn, _error_code(frame), detail, False, frame.get("req"))
        elif kind == "register":
            await self._register(conn, frame)
        elif kind == "unregister":
            await self._unregister(conn, frame)
        elif kind == "ping":
            pong: dict[str, Any] = {"type": "pong"}
            if "ts" in (frame.message or {}):
                pong["ts"] = frame.get("ts")
            await self._send(conn, pong)
        elif kind == "bye":
            await self._close(conn, 1000, "bye")
        elif kind in ("ack", "nack", "pong", "error"):
            pass  # kept in conn.frames for the steps
        else:
            detail = f"{kind!r} is not allowed in an established session"
            await self._error(conn, "unexpected_message", detail, False)

    async def _hello(self, conn: ServerConnection, frame: Frame) -> None:
        conn.hello = frame
        answer = self.answers.popleft() if self.answers else self.default
        conn.answer = answer
        self.on_change()
        if answer.kind == "silent":
            self._log(conn, "--", "the suite's server does not answer this hello")
            return
        if answer.kind == "reject":
            reject: dict[str, Any] = {"type": "reject", "reason": answer.reason}
            if answer.retry_after_s is not None:
                reject["retry_after_s"] = answer.retry_after_s
            if answer.servers:
                reject["servers"] = list(answer.servers)
            await self._send(conn, reject)
            conn.answered_at = time.monotonic()
            await self._close(conn, REJECT_CLOSE.get(answer.reason, 4400), answer.reason)
            return
        client_id = str(frame.get("client_id"))
        asked = frame.get("session")
        known = self.sessions.get(asked) if isinstance(asked, str) else None
        if known is not None and known.client_id == client_id:
            conn.session, conn.resumed = known, True
            for older in self.connections:  # the session moves to this connection (4409)
                if older is not conn and older.session is known and older.closed is None:
                    await self._close(
                        older, TAKEN_OVER_CLOSE, "session resumed on another connection"
                    )
        else:
            conn.session = Session(secrets.token_urlsafe(18), client_id)
            self.sessions[conn.session.id] = conn.session
        welcome: dict[str, Any] = {
            "type": "welcome",
            "server_id": self.server_id,
            "session": conn.session.id,
            "keepalive_s": self.keepalive_s,
            "limits": dict(LIMITS),
        }
        if conn.resumed:
            welcome["resumed"] = True
        await self._send(conn, welcome)
        conn.answered_at = time.monotonic()
        self.on_change()

    async def _register(self, conn: ServerConnection, frame: Frame) -> None:
        assert conn.session is not None
        app_id = str(frame.get("app_id"))
        token = conn.session.tokens.get(app_id)
        if token is None:
            token = conn.session.tokens[app_id] = secrets.token_urlsafe(18)
        self.issued.append((app_id, token))
        await self._send(
            conn,
            {
                "type": "registered",
                "req": frame.get("req"),
                "app_id": app_id,
                "token": token,
                "endpoint": self.endpoint_of(token),
            },
        )

    async def _unregister(self, conn: ServerConnection, frame: Frame) -> None:
        assert conn.session is not None
        token = frame.get("token")
        owned = next((a for a, t in conn.session.tokens.items() if t == token), None)
        if owned is None:
            await self._error(
                conn, "unknown_token", "not a token of this session", False, frame.get("req")
            )
            return
        del conn.session.tokens[owned]
        await self._send(conn, {"type": "unregistered", "req": frame.get("req"), "token": token})

    async def _error(
        self, conn: ServerConnection, code: str, detail: str, fatal: bool, req: Any = None
    ) -> None:
        error: dict[str, Any] = {"type": "error", "code": code, "detail": detail, "fatal": fatal}
        if isinstance(req, int) and not isinstance(req, bool) and req >= 0:
            error["req"] = req
        await self._send(conn, error)
        if fatal:
            await self._close(conn, 4400, code)

    # --- sending ----------------------------------------------------------------------------

    async def _raw(self, conn: ServerConnection, data: bytes) -> bool:
        if conn.stream is None or conn.lock is None:
            return False
        try:
            async with conn.lock:
                await conn.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return False
        return True

    async def _send(self, conn: ServerConnection, message: dict[str, Any]) -> bool:
        if conn.ws is None or conn.ws.state is not ConnectionState.OPEN or conn.closed is not None:
            self._log(conn, "--", "not sent (connection not open): " + json.dumps(message)[:200])
            return False
        text = json.dumps(message)
        self.wirelog.frame(conn.label, "->", text)
        return await self._raw(conn, conn.ws.send(TextMessage(data=text)))

    async def _close(self, conn: ServerConnection, code: int, reason: str) -> None:
        if conn.ws is not None and conn.ws.state is ConnectionState.OPEN:
            self._log(conn, "->", f"close {code} {reason}".strip())
            await self._raw(conn, conn.ws.send(CloseConnection(code=code, reason=reason)))
        self._mark_closed(conn, code, reason, by_target=False)
        if conn.scope is not None:
            conn.scope.cancel()

    async def _send_bytes(self, conn: ServerConnection, data: bytes, what: str) -> bool:
        self._log(conn, "->", f"{what}: {data[:64]!r}")
        return await self._raw(conn, data)

    async def _take_over(self, conn: ServerConnection) -> bool:
        if conn.ws is None or conn.ws.state is not ConnectionState.OPEN or conn.closed is not None:
            return False
        await self._close(conn, TAKEN_OVER_CLOSE, "session resumed on another connection")
        return conn.closed is not None and conn.closed.code == TAKEN_OVER_CLOSE

    async def _drop(self, conn: ServerConnection) -> None:
        conn.dropped_at = time.monotonic()
        self._log(conn, "--", "the suite drops the connection (no close frame)")
        self._mark_closed(conn, ABNORMAL, "dropped by the suite", by_target=False)
        if conn.scope is not None:
            conn.scope.cancel()

    async def _redirect(self, conn: ServerConnection, message: dict[str, Any]) -> None:
        await self._send(conn, message)
        conn.redirected_at = time.monotonic()
        await self._close(conn, REDIRECT_CLOSE, "redirect")
