"""One AOI-2 session with one AOI Server, in its own task.

The link opens the WebSocket, sends ``hello``, and moves frames and time into the core's
:class:`~aoi.core.client_session.ClientSession`. Its first result (``settled``) is an
:class:`Attempt`: welcomed, or why not. Once established it serves register/unregister
requests (awaiting their replies with :mod:`.replies`), passes notifications to its owner
and batches acks; when it ends, ``down`` says how (lost, redirected, or closed by us).
Nothing that happens on one link touches another.
"""

from __future__ import annotations

import contextlib
import math
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import trio

from aoi.core.client_session import ClientSession
from aoi.core.codec import Codec
from aoi.core.errors import CloseCode
from aoi.core.messages import (
    Ack,
    Bye,
    Error,
    Hello,
    Message,
    Nack,
    Notify,
    Redirect,
    Register,
    Registered,
    Reject,
    Unregister,
    Unregistered,
    Welcome,
)
from aoi.core.policy import ServerEntry
from aoi.core.reallocation import Outcome, outcome_of_reject
from aoi.core.session import Closed, State
from aoi.logs import EventLog, error_text
from aoi.net.client import HandshakeError
from aoi.net.websocket import ConnectionClosed, WebSocket

from .replies import LinkGone, Replies, Waiter

SUBPROTOCOL = "aoi.v1"
MAX_ACK_IDS = 1000

Connector = Callable[[str, str], Awaitable[WebSocket]]  # (url, subprotocol) -> WebSocket


@dataclass(frozen=True, slots=True)
class Attempt:
    """How an attempt to be served by a server went."""

    server_id: str
    outcome: Outcome
    retry_after_s: float | None = None
    link: ServerLink | None = None
    detail: str = ""


class LinkOwner(Protocol):
    def link_welcomed(self, link: ServerLink) -> None: ...
    def link_notified(self, link: ServerLink, notify: Notify) -> None: ...
    def link_closed(self, link: ServerLink) -> None: ...


class ServerLink:
    def __init__(
        self,
        provider: str,
        server: ServerEntry,
        hello: Hello,
        *,
        connect: Connector,
        codec: Codec,
        owner: LinkOwner,
        keepalive_cap_s: float,
        welcome_timeout_s: float = 10.0,
    ) -> None:
        self.provider = provider
        self.server = server
        self.hello = hello
        self.connect = connect
        self.codec = codec
        self.owner = owner
        self.keepalive_cap_s = keepalive_cap_s
        self.welcome_timeout_s = welcome_timeout_s
        self.log = EventLog("aoi.client.link")
        self.session: ClientSession | None = None
        self.welcome: Welcome | None = None
        self.settled = trio.Event()
        self.attempt: Attempt | None = None
        self.down: Attempt | None = None  # how an established session ended
        self.done = trio.Event()
        self.tokens: dict[str, str] = {}  # token -> app_id registered through this session
        self.subscribers: set[object] = set()  # groups served by, or waiting for, this link
        self.close_code: int | None = None
        self._replies = Replies()
        self._acks: list[str] = []
        self._wake = trio.Event()
        self._bye = False
        self._abort: str | None = None
        self._reject: Reject | None = None
        self._redirect: Redirect | None = None

    @property
    def key(self) -> str:
        return f"{self.provider}/{self.server.id}"

    @property
    def closing(self) -> bool:
        """Ending (bye sent, aborted) or ended: no use to anyone any more."""
        return self._bye or self._abort is not None or self.done.is_set()

    @property
    def established(self) -> bool:
        return self.session is not None and self.session.state is State.ESTABLISHED

    # --- requests from the client ---------------------------------------------------------

    async def register_many(self, app_ids: Sequence[str]) -> dict[str, Message]:
        """``register`` each app; its ``registered`` or ``error`` reply, by app id."""
        waiters = self._request([Register(req=0, app_id=a) for a in app_ids])
        return {w.key: reply for w, reply in await Replies.wait(waiters, self.key)}

    async def unregister_many(self, tokens: Sequence[str]) -> dict[str, Message]:
        """``unregister`` each token; its ``unregistered`` or ``error`` reply, by token."""
        waiters = self._request([Unregister(req=0, token=t) for t in tokens])
        return {w.key: reply for w, reply in await Replies.wait(waiters, self.key)}

    def ack(self, notification_id: str) -> None:
        if self.established:
            self._acks.append(notification_id)
            self._wake.set()

    def nack(self, notification_id: str, reason: str) -> None:
        self._send(Nack(id=notification_id, reason=reason))

    def goodbye(self, reason: str = "no app left") -> None:
        """End the session with ``bye`` and close 1000 (once queued frames are out)."""
        if self.established and not self._bye:
            self.log.info("bye", server=self.key, reason=reason)
            self._flush_acks()
            self._send(Bye(reason=reason))
            self._bye = True
            self._wake.set()

    def abort(self, why: str) -> None:
        """Drop the connection now: the server misbehaves (e.g. does not answer)."""
        self._abort = why
        self._wake.set()

    # --- the task -------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, say hello, serve the session until it ends. Never raises (but Cancelled)."""
        ws: WebSocket | None = None
        try:
            ws = await self._open()
            if ws is not None:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._writer, ws, nursery.cancel_scope)
                    await self._reader(ws)
                    nursery.cancel_scope.cancel()
                await self._close(ws)
        except Exception:
            self.log.error("link_failed", server=self.key, exc_info=True)
        finally:
            self._finish()
            if ws is not None and ws.closed is None:
                with trio.CancelScope(shield=True):
                    await ws.close(CloseCode.INTERNAL_ERROR, "client stopping")

    async def _open(self) -> WebSocket | None:
        now = trio.current_time()
        self.session = ClientSession(self.codec, now, handshake_timeout_s=self.welcome_timeout_s)
        self.log.debug(
            "connecting",
            server=self.key,
            url=self.server.url,
            resume=self.hello.session is not None,
        )
        ws: WebSocket | None = None
        detail = ""
        with trio.move_on_at(now + self.welcome_timeout_s):
            try:
                ws = await self.connect(self.server.url, SUBPROTOCOL)
            except (
                OSError,
                HandshakeError,
                ConnectionClosed,
                ssl.SSLError,
                trio.BrokenResourceError,
            ) as exc:
                detail = f"connect failed: {error_text(exc)}"
        if ws is None:
            self._settle(Outcome.UNREACHABLE, None, detail or "connect timed out")
            return None
        if ws.subprotocol != SUBPROTOCOL:
            await ws.close(CloseCode.PROTOCOL_ERROR, "subprotocol aoi.v1 not selected")
            self._settle(Outcome.UNREACHABLE, None, "subprotocol aoi.v1 not selected")
            return None
        self.session.send(self.hello, trio.current_time())
        return ws

    async def _reader(self, ws: WebSocket) -> None:
        session = self.session
        assert session is not None
        self._wake.set()  # the hello
        while session.closed is None and self._abort is None:
            deadline = session.deadline()
            frame: str | bytes | None = None
            with trio.move_on_at(math.inf if deadline is None else deadline):
                try:
                    frame = await ws.receive()
                except ConnectionClosed as closed:
                    self.close_code = closed.code
                    session.connection_lost(f"closed {closed.code} {closed.reason}".strip())
                    break
            now = trio.current_time()
            events = session.tick(now) if frame is None else session.receive(frame, now)
            for event in events:
                self._event(event)
            self._wake.set()

    async def _writer(self, ws: WebSocket, scope: trio.CancelScope) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                if self._abort is not None:
                    scope.cancel()
                    return
                await self._write_out(ws)
                if self._bye:
                    await ws.close(CloseCode.NORMAL, "bye")
                    scope.cancel()
                    return
        except ConnectionClosed:
            scope.cancel()

    async def _write_out(self, ws: WebSocket) -> None:
        self._flush_acks()
        if self.session is not None:
            for frame in self.session.outgoing():
                await ws.send(frame)

    async def _close(self, ws: WebSocket) -> None:
        """Send what is left (an error, a bye) and close with the session's code."""
        session = self.session
        assert session is not None
        if self._abort is not None:
            session.connection_lost(self._abort)
        code = session.closed.code if session.closed is not None else CloseCode.NORMAL
        with trio.move_on_after(1):
            with contextlib.suppress(ConnectionClosed):
                await self._write_out(ws)
            await ws.close(code, (session.closed.reason if session.closed else "")[:120])

    # --- events ---------------------------------------------------------------------------

    def _event(self, event: Message | Closed) -> None:
        if isinstance(event, Closed):
            return
        if isinstance(event, Welcome):
            assert self.session is not None
            self.welcome = event
            self.session.keepalive_s = min(event.keepalive_s, self.keepalive_cap_s)
            self.log.info(
                "welcome",
                server=self.key,
                session_resumed=bool(event.resumed),
                keepalive_s=self.session.keepalive_s,
            )
            self._settle(Outcome.ACCEPTED, None, "welcome")
            self.owner.link_welcomed(self)
        elif isinstance(event, Notify):
            self.owner.link_notified(self, event)
        elif isinstance(event, Registered):
            self.tokens[event.token] = event.app_id
            self._replies.answer(event.req, event)
        elif isinstance(event, Unregistered):
            self.tokens.pop(event.token, None)
            self._replies.answer(event.req, event)
        elif isinstance(event, Error):
            self.log.warning(
                "server_error",
                server=self.key,
                code=event.code,
                detail=event.detail,
                fatal=event.fatal,
            )
            if event.req is not None:
                self._replies.answer(event.req, event)
        elif isinstance(event, Reject):
            self._reject = event
            self.log.info(
                "rejected",
                server=self.key,
                reason=event.reason,
                retry_after_s=event.retry_after_s,
                detail=event.detail,
            )
        elif isinstance(event, Redirect):
            self._redirect = event
            self.log.info(
                "redirected",
                server=self.key,
                reason=event.reason,
                retry_after_s=event.retry_after_s,
            )

    def _finish(self) -> None:
        """Settle the attempt or the session's end, fail waiting requests, tell the owner."""
        session = self.session
        if not self.settled.is_set():
            if self._reject is not None:
                outcome = outcome_of_reject(self._reject.reason)
                self._settle(outcome, self._reject.retry_after_s, f"reject {self._reject.reason}")
            else:
                why = session.closed.reason if session and session.closed else "no welcome"
                self._settle(Outcome.UNREACHABLE, None, why)
        elif self.welcome is not None:
            if self._redirect is not None:
                self.down = Attempt(
                    self.server.id,
                    Outcome.REDIRECTED,
                    self._redirect.retry_after_s,
                    self,
                    "redirect",
                )
            elif self._bye:
                self.down = Attempt(self.server.id, Outcome.ACCEPTED, None, self, "closed by us")
            else:
                why = session.closed.reason if session and session.closed else "lost"
                self.down = Attempt(self.server.id, Outcome.LOST, None, self, why)
                self.log.info("session_lost", server=self.key, why=why, code=self.close_code)
        if session is not None and session.state is not State.CLOSED:
            session.connection_lost()
        self._replies.end()
        self.done.set()
        self.owner.link_closed(self)

    # --- machinery ------------------------------------------------------------------------

    def _settle(self, outcome: Outcome, retry_after_s: float | None, detail: str) -> None:
        if not self.settled.is_set():
            if outcome is not Outcome.ACCEPTED:
                self.log.info(
                    "attempt_failed",
                    server=self.key,
                    outcome=outcome.value,
                    retry_after_s=retry_after_s,
                    detail=detail,
                )
            link = self if outcome is Outcome.ACCEPTED else None
            self.attempt = Attempt(self.server.id, outcome, retry_after_s, link, detail)
            self.settled.set()

    def _send(self, message: Message) -> bool:
        if not self.established:
            return False
        assert self.session is not None
        self.session.send(message, trio.current_time())
        self._wake.set()
        return True

    def _flush_acks(self) -> None:
        while self._acks and self.established:
            batch, self._acks = self._acks[:MAX_ACK_IDS], self._acks[MAX_ACK_IDS:]
            self._send(Ack(ids=tuple(batch)))
        self._acks.clear()

    def _request(self, messages: Sequence[Register | Unregister]) -> list[Waiter]:
        if not self.established or self._bye or self._abort is not None:
            raise LinkGone(self.key)
        assert self.session is not None
        waiters = []
        for message in messages:
            req = self.session.next_req()
            if isinstance(message, Register):
                message, key = Register(req=req, app_id=message.app_id), message.app_id
            else:
                message, key = Unregister(req=req, token=message.token), message.token
            waiters.append(self._replies.expect(req, key))
            self._send(message)
        return waiters
