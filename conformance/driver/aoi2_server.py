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
its own beyond answering as scripted. The WebSocket side is
:class:`~conformance.driver.aoi2_listener.Aoi2Listener`; what a server remembers of each
connection is :mod:`conformance.driver.server_connection`.
"""

from __future__ import annotations

import json
import secrets
import ssl
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from wsproto.connection import ConnectionState

from conformance import contract
from conformance.driver.aoi2_listener import Aoi2Listener
from conformance.driver.frames import Frame
from conformance.driver.portal import Portal
from conformance.driver.server_connection import WELCOME, HelloAnswer, ServerConnection, Session
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


class SuiteServer(Aoi2Listener):
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
        super().__init__(portal, wirelog, name, on_change=on_change, tls=tls)
        self.server_id = server_id or name
        # The script: answers for the next hellos, then the default; what to do at connect
        # (``on_connect``, see Aoi2Listener).
        self.answers: deque[HelloAnswer] = deque()
        self.default = WELCOME
        self.keepalive_s = KEEPALIVE_S
        self.sessions: dict[str, Session] = {}
        self.notifications: dict[str, str] = {}  # label -> id
        self.issued: list[tuple[str, str]] = []  # (app_id, token) of every registered sent

    def __repr__(self) -> str:
        return f"SuiteServer({self.name!r}, {self.url!r})"

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

    async def _take_over(self, conn: ServerConnection) -> bool:
        if conn.ws is None or conn.ws.state is not ConnectionState.OPEN or conn.closed is not None:
            return False
        await self._close(conn, TAKEN_OVER_CLOSE, "session resumed on another connection")
        return conn.closed is not None and conn.closed.code == TAKEN_OVER_CLOSE

    async def _redirect(self, conn: ServerConnection, message: dict[str, Any]) -> None:
        await self._send(conn, message)
        conn.redirected_at = time.monotonic()
        await self._close(conn, REDIRECT_CLOSE, "redirect")
