"""The suite's AOI-2 client: one WebSocket connection to an AOI Server, on trio + wsproto.

A connection is a task of the portal (:mod:`conformance.driver.portal`) that connects,
upgrades with the subprotocol ``aoi.v1`` and then reads until the connection ends. Every
method of :class:`Aoi2Connection` is one portal call that waits for an event (a frame,
the close) with a timeout; nothing here sleeps. Received messages stay in an inbox until
a step takes them, each validated against the schemas on arrival. Like a compliant AOI
Client, the connection answers ``ping`` with ``pong`` and, once told the session's
keepalive, sends ``ping`` whenever it has sent nothing for that long. What a connection
records (frames, its close, its upgrade) is :mod:`conformance.driver.frames`.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import trio
from anyio.abc import TaskStatus
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Message,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

from conformance import contract
from conformance.driver.frames import ABNORMAL, SUBPROTOCOL, Closed, Frame, Handshake
from conformance.driver.portal import Portal
from conformance.wirelog import WireLog


@dataclass
class _State:
    inbox: list[Frame] = field(default_factory=list)
    closed: Closed | None = None
    changed: trio.Event | None = None
    finished: trio.Event | None = None
    scope: trio.CancelScope | None = None
    keepalive_set: trio.Event | None = None
    keepalive_s: float | None = None
    last_sent: float = 0.0
    auto_pings: set[float] = field(default_factory=set)
    partial: list[str | bytes] = field(default_factory=list)


class Aoi2Connection:
    # How a received message is judged (the AOI-1 driver judges against schemas/aoi1/).
    contract_errors = staticmethod(contract.aoi2_errors)

    def __init__(
        self,
        portal: Portal,
        wirelog: WireLog,
        label: str,
        url: str,
        *,
        ca_file: Path | None = None,
        subprotocols: tuple[str, ...] = (SUBPROTOCOL,),
        connect_timeout: float = 10.0,
    ) -> None:
        self.portal = portal
        self.wirelog = wirelog
        self.label = label
        self.url = url
        self.ca_file = ca_file
        self.subprotocols = subprotocols
        self.connect_timeout = connect_timeout
        self.auto_pong = True
        self.handshake = Handshake(False)
        self._state = _State()
        self._stream: trio.abc.Stream | None = None
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._send_lock: trio.Lock | None = None
        self._seq = 0
        self._reached = False

    # --- synchronous API: each method is one portal call -----------------------------------

    def open(self) -> Handshake:
        """Connect and upgrade; the answer says whether the target accepted the upgrade."""
        self.wirelog.add(self.label, "--", f"connect {self.url} subprotocols={self.subprotocols}")
        _, self.handshake = self.portal.start_task(self._run)
        h = self.handshake
        if h.accepted:
            self.wirelog.add(self.label, "<-", f"101 upgrade, subprotocol={h.subprotocol}")
        elif h.status is not None:
            self.wirelog.add(self.label, "<-", f"upgrade refused: HTTP {h.status}")
        else:
            self.wirelog.add(self.label, "--", f"no upgrade: {h.error}")
        return h

    def send(self, message: dict[str, Any]) -> bool:
        """Send one JSON message; False when the connection is already gone."""
        return bool(self.portal.call(self._send_text, json.dumps(message)))

    def send_text(self, text: str) -> bool:
        return bool(self.portal.call(self._send_text, text))

    def send_bytes(self, data: bytes) -> bool:
        return bool(self.portal.call(self._send_bytes_message, data))

    def wait_for(self, predicate: Callable[[Frame], bool], timeout: float) -> Frame | None:
        """The first unconsumed frame matching ``predicate``, waiting up to ``timeout``;
        None if none came in time or the connection closed first."""
        return self.portal.call(self._wait_for, predicate, timeout)

    def wait_type(self, kind: str, timeout: float) -> Frame | None:
        return self.wait_for(lambda f: f.type == kind, timeout)

    def next_frame(self, timeout: float) -> Frame | None:
        return self.wait_for(lambda f: True, timeout)

    def wait_closed(self, timeout: float) -> Closed | None:
        return self.portal.call(self._wait_closed, timeout)

    def frames(self) -> list[Frame]:
        """Every frame received so far (a copy; consumed ones included)."""
        return self.portal.call(self._frames)

    def enable_keepalive(self, keepalive_s: float) -> None:
        self.portal.call(self._enable_keepalive, keepalive_s)

    def close(self, code: int = 1000, reason: str = "", timeout: float = 5.0) -> Closed | None:
        """The WebSocket closing handshake, then the end of the task."""
        return self.portal.call(self._close, code, reason, timeout)

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (a lost network)."""
        self.portal.call(self._abort)

    @property
    def closed(self) -> Closed | None:
        return self._state.closed

    # --- trio side ------------------------------------------------------------------------

    def _changed(self) -> None:
        assert self._state.changed is not None
        self._state.changed.set()
        self._state.changed = trio.Event()

    async def _connect(self) -> trio.abc.Stream:
        parts = urlsplit(self.url)
        secure = parts.scheme == "wss"
        host = parts.hostname or "localhost"
        port = parts.port or (443 if secure else 80)
        stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
        self._reached = True
        if secure:
            context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
            tls = trio.SSLStream(stream, context, server_hostname=host, https_compatible=True)
            await tls.do_handshake()
            stream = tls
        return stream

    async def _handshake(self, stream: trio.abc.Stream) -> tuple[Handshake, list[Event]]:
        parts = urlsplit(self.url)
        request = Request(
            host=parts.netloc, target=parts.path or "/aoi", subprotocols=list(self.subprotocols)
        )
        await stream.send_all(self._ws.send(request))
        refused: int | None = None
        while True:
            data = await stream.receive_some(65536)
            if not data:
                return Handshake(False, refused, error="connection closed during upgrade"), []
            self._ws.receive_data(bytes(data))
            events = list(self._ws.events())
            for i, event in enumerate(events):
                if isinstance(event, AcceptConnection):
                    return Handshake(True, 101, event.subprotocol, at=time.monotonic()), events[
                        i + 1 :
                    ]
                if isinstance(event, RejectConnection):
                    refused = event.status_code
                    if not event.has_body:
                        return Handshake(False, refused), []
                if isinstance(event, RejectData) and event.body_finished:
                    return Handshake(False, refused), []

    async def _run(self, *, task_status: TaskStatus[Handshake]) -> None:
        state = self._state
        state.changed = trio.Event()
        state.finished = trio.Event()
        state.keepalive_set = trio.Event()
        self._send_lock = trio.Lock()
        try:
            with trio.CancelScope() as scope:
                state.scope = scope
                try:
                    with trio.fail_after(self.connect_timeout):
                        self._stream = await self._connect()
                        handshake, early = await self._handshake(self._stream)
                except Exception as e:  # OSError, TLS, timeout, wsproto's protocol errors
                    error = f"{type(e).__name__}: {e}"
                    task_status.started(Handshake(False, error=error, reached=self._reached))
                    return
                task_status.started(replace(handshake, reached=True))
                if not handshake.accepted:
                    return
                state.last_sent = time.monotonic()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._keepalive_loop)
                    for event in early:
                        await self._on_event(event)
                    if state.closed is None:
                        await self._read_loop()
                    nursery.cancel_scope.cancel()
        finally:
            if state.closed is None:
                self._mark_closed(ABNORMAL, "connection dropped", by_target=False)
            if self._stream is not None:
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    await self._stream.aclose()
            state.finished.set()

    async def _read_loop(self) -> None:
        assert self._stream is not None
        while self._state.closed is None:
            try:
                data = await self._stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
                self._mark_closed(ABNORMAL, f"connection lost: {e}", by_target=True, lost=True)
                return
            if not data:
                self._mark_closed(
                    ABNORMAL, "TCP closed without a close frame", by_target=True, lost=True
                )
                return
            try:
                self._ws.receive_data(bytes(data))
                for event in self._ws.events():
                    await self._on_event(event)
            except Exception as e:  # a WebSocket protocol violation by the target
                self.wirelog.add(self.label, "--", f"WebSocket protocol error: {e}")
                self._mark_closed(ABNORMAL, f"WebSocket protocol error: {e}", by_target=True)
                return

    async def _on_event(self, event: Event) -> None:
        state = self._state
        if isinstance(event, Message):
            state.partial.append(event.data)
            if event.message_finished:
                parts, state.partial = state.partial, []
                if isinstance(event, TextMessage):
                    await self._deliver("".join(str(p) for p in parts))
                elif isinstance(event, BytesMessage):
                    await self._deliver(b"".join(bytes(p) for p in parts))  # type: ignore[arg-type]
        elif isinstance(event, Ping):
            await self._send_raw(self._ws.send(event.response()))
        elif isinstance(event, CloseConnection):
            self.wirelog.add(self.label, "<-", f"close {event.code} {event.reason or ''}".strip())
            if self._ws.state is ConnectionState.REMOTE_CLOSING:
                await self._send_raw(self._ws.send(event.response()))
            self._mark_closed(event.code, event.reason or "", by_target=True)

    async def _deliver(self, raw: str | bytes) -> None:
        self.wirelog.frame(self.label, "<-", raw)
        message, problems = contract.read_frame(raw, self.contract_errors)
        self._seq += 1
        frame = Frame(self._seq, time.monotonic(), raw, message, problems)
        state = self._state
        if frame.type == "pong" and frame.get("ts") in state.auto_pings:
            state.auto_pings.discard(frame.get("ts"))
            frame.consumed = True
        state.inbox.append(frame)
        self._changed()
        if self.auto_pong and frame.type == "ping" and not problems:
            frame.consumed = True
            pong: dict[str, Any] = {"type": "pong"}
            if "ts" in (frame.message or {}):
                pong["ts"] = frame.get("ts")
            await self._send_text(json.dumps(pong))

    def _mark_closed(self, code: int, reason: str, *, by_target: bool, lost: bool = False) -> None:
        if self._state.closed is None:
            self._state.closed = Closed(code, reason, time.monotonic(), by_target, lost)
            if self._state.changed is not None:
                self._changed()

    async def _send_raw(self, data: bytes) -> bool:
        if self._stream is None or self._send_lock is None:
            return False
        try:
            async with self._send_lock:
                await self._stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return False
        self._state.last_sent = time.monotonic()
        return True

    async def _send_text(self, text: str) -> bool:
        if self._ws.state is not ConnectionState.OPEN:
            self.wirelog.add(self.label, "--", "not sent (connection not open): " + text[:200])
            return False
        self.wirelog.frame(self.label, "->", text)
        return await self._send_raw(self._ws.send(TextMessage(data=text)))

    async def _send_bytes_message(self, data: bytes) -> bool:
        if self._ws.state is not ConnectionState.OPEN:
            return False
        self.wirelog.frame(self.label, "->", data)
        return await self._send_raw(self._ws.send(BytesMessage(data=data)))

    async def _wait_for(self, predicate: Callable[[Frame], bool], timeout: float) -> Frame | None:
        state = self._state
        with trio.move_on_after(timeout):
            while True:
                for frame in state.inbox:
                    if not frame.consumed and predicate(frame):
                        frame.consumed = True
                        return frame
                if state.closed is not None or state.changed is None:
                    return None
                await state.changed.wait()
        return None

    async def _wait_closed(self, timeout: float) -> Closed | None:
        state = self._state
        with trio.move_on_after(timeout):
            while state.closed is None and state.changed is not None:
                await state.changed.wait()
        return state.closed

    async def _frames(self) -> list[Frame]:
        return list(self._state.inbox)

    async def _enable_keepalive(self, keepalive_s: float) -> None:
        self._state.keepalive_s = keepalive_s
        if self._state.keepalive_set is not None:
            self._state.keepalive_set.set()

    async def _keepalive_loop(self) -> None:
        state = self._state
        assert state.keepalive_set is not None
        await state.keepalive_set.wait()
        while state.closed is None and state.keepalive_s:
            due = state.last_sent + state.keepalive_s
            now = time.monotonic()
            if now >= due:
                ts = round(time.time(), 3)
                state.auto_pings.add(ts)
                if not await self._send_text(json.dumps({"type": "ping", "ts": ts})):
                    return
                continue
            await trio.sleep(due - now)

    async def _close(self, code: int, reason: str, timeout: float) -> Closed | None:
        state = self._state
        if state.closed is None and self._ws.state is ConnectionState.OPEN:
            self.wirelog.add(self.label, "->", f"close {code} {reason}".strip())
            await self._send_raw(self._ws.send(CloseConnection(code=code, reason=reason)))
            await self._wait_closed(timeout)
        await self._abort()
        return state.closed

    async def _abort(self) -> None:
        state = self._state
        if state.scope is not None:
            state.scope.cancel()
        if state.finished is not None:
            await state.finished.wait()
