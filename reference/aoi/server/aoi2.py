"""The AOI-2 endpoint: one reader and one writer task per connection around a ServerSession.

The reader hands what the client says to the session core, and acks, nacks and registers on
to the hub, whose deliveries put the ``notify`` messages due into the session; the writer,
woken by :meth:`Link.flush`, writes whatever the session has queued in one go."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import trio

from aoi.core.codec import MAX_FRAME, MAX_PAYLOAD, Codec
from aoi.core.errors import CloseCode, ErrorCode
from aoi.core.messages import (
    PROTOCOL_VERSION,
    Ack,
    Error,
    Hello,
    Limits,
    Nack,
    Register,
    Registered,
    Reject,
    RejectReason,
    Unregister,
    Unregistered,
    Welcome,
)
from aoi.core.overload import DRAINING, Refusal
from aoi.core.server_session import MAX_HELLO_FRAME, ServerSession
from aoi.core.session import Closed, Event, State
from aoi.net.frames import CHECK_OUTGOING
from aoi.net.http_messages import Request
from aoi.net.websocket import ConnectionClosed, WebSocket

from .credentials import ClientCredentials, FailedHelloLimiter
from .hub import Hub
from .link import Link
from .load import LoadMonitor
from .metrics import Metrics
from .store import StoreError

log = logging.getLogger("aoi.server")

CLOSE_GRACE_S = 5.0
# The name trio would give each session's writer task, made once: not a string per session.
_WRITER_TASK = f"{__name__}.Aoi2Endpoint._writer"
DEADLINE_SLACK_S = 1.0  # how stale the reader's timeout may get (see _reader)


@dataclass(frozen=True, slots=True)
class SessionSettings:
    server_id: str
    keepalive_s: int
    handshake_timeout_s: float
    max_apps: int


class Aoi2Endpoint:
    def __init__(
        self,
        hub: Hub,
        settings: SessionSettings,
        credentials: ClientCredentials,
        limiter: FailedHelloLimiter,
        load: LoadMonitor,
        metrics: Metrics,
    ) -> None:
        self.hub = hub
        self.settings = settings
        self.credentials = credentials
        self.limiter = limiter
        self.load = load
        self.metrics = metrics
        self.codec = Codec.from_contract("aoi2", validate_outgoing=CHECK_OUTGOING)

    async def __call__(self, ws: WebSocket, request: Request) -> None:
        del request  # unused (the remote is the WebSocket's): not held for the session's life
        now = self.hub.clock.now()
        session = ServerSession(
            self.codec, now, handshake_timeout_s=self.settings.handshake_timeout_s
        )
        link = Link(session, client_id="", ws=ws)
        # Until welcome, the peer is anybody: no message larger than a hello may cost work.
        ws.max_message = min(ws.max_message, MAX_HELLO_FRAME)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, ws, link, name=_WRITER_TASK)
                await self._reader(ws, link)
                if ws.closed is not None:
                    nursery.cancel_scope.cancel()  # the peer is gone: nothing left to write
                else:  # the last frames and the close, unless the peer stopped reading
                    nursery.cancel_scope.deadline = self.hub.clock.now() + CLOSE_GRACE_S
        finally:
            self.hub.detach(link)
            if session.state is not State.CLOSED:
                session.connection_lost()
            closed = session.closed
            if link.client_id and closed is not None:  # welcomed: its end is worth a line
                log.info(
                    "session_closed",
                    extra={
                        "client": link.client_id,
                        "code": int(closed.code),
                        "reason": closed.reason,
                    },
                )

    async def _reader(self, ws: WebSocket, link: Link) -> None:
        session = link.session
        while session.closed is None:
            deadline = session.deadline()
            events: list[Event] = []
            # One cancel scope for many frames (a scope per frame costs as much as the ack it
            # reads). Its deadline, the session's, is refreshed at most every DEADLINE_SLACK_S:
            # frames only move the session's deadline later, so the scope fires at most that
            # much early, and only on a connection silent for nearly the whole timeout; then
            # tick() finds nothing due and the next scope takes the exact deadline. Anything
            # but an ack leaves the scope, so a deadline never cuts a handler short.
            with trio.move_on_at(math.inf if deadline is None else deadline) as scope:
                refreshed = self.hub.clock.now()
                while session.closed is None:
                    try:
                        frame = await ws.receive()
                    except ConnectionClosed as closed:
                        session.connection_lost(f"peer closed {closed.code}")
                        return
                    now = self.hub.clock.now()
                    events = session.receive(frame, now)
                    del frame  # an idle session holds no last message (nor, below, event)
                    if not all(type(event) is Ack for event in events):
                        break
                    for event in events:
                        self._acked(link, event)  # type: ignore[arg-type]
                    events = []
                    self._flush_if_needed(link)
                    if now - refreshed > DEADLINE_SLACK_S:
                        deadline = session.deadline()
                        scope.deadline = math.inf if deadline is None else deadline
                        refreshed = now
            if scope.cancelled_caught:
                events = session.tick(self.hub.clock.now())
            while events:
                await self._on_event(link, ws, events.pop(0))
            self._flush_if_needed(link)

    def deliver_now(self, link: Link) -> None:
        """A notification was just stored, and its notify put in ``link``'s session: write it
        now, from the pushing task, instead of waking the connection's writer. The notify
        then leaves before the push's 201 instead of after every 201 answered in the same
        turn of the event loop, and one task switch is saved. Only when nothing else is under
        way on the connection (writer parked, nobody writing), else the writer does it."""
        ws = link.ws
        session = link.session
        if (
            ws is None
            or session.state is not State.ESTABLISHED
            or not link.writer_parked
            or not ws.can_send_now()
        ):
            link.flush()
            return
        frames = session.outgoing()
        if (frames and ws.send_now(frames)) or session.closed is not None:
            link.flush()

    def _flush_if_needed(self, link: Link) -> None:
        """Wake the writer only when it has something to do: after an ack it mostly hasn't
        (unless the ack made room in a full window: then the next notifies are queued)."""
        session = link.session
        if session.has_outgoing or session.closed is not None:
            link.flush()

    def _acked(self, link: Link, ack: Ack) -> None:
        self.hub.acked(link.client_id, ack.ids)

    async def _writer(self, ws: WebSocket, link: Link) -> None:
        session = link.session
        while True:
            await link.wait_flush()
            # Everything queued since the last wake goes out in one write.
            await ws.send_many(session.outgoing())
            if session.closed is not None:
                await ws.close(session.closed.code, session.closed.reason)
                return

    async def _on_event(self, link: Link, ws: WebSocket, event: Event) -> None:
        session = link.session
        if isinstance(event, Ack):
            self._acked(link, event)
            return
        now = self.hub.clock.now()
        if isinstance(event, Hello):
            await self._authenticate(link, ws.remote, event, now)
        elif isinstance(event, Register):
            try:
                token = await self.hub.register(link.client_id, event.app_id, self.hub.clock.wall())
            except StoreError:
                self._failed(link, event.req, "the registration could not be stored")
                return
            if session.closed is not None:  # taken over or shed meanwhile: nothing to answer
                return  # (stored all the same: the client gets the same token next time)
            now = self.hub.clock.now()
            if token is None:
                session.send(
                    Error(
                        code=ErrorCode.TOO_MANY_APPS, req=event.req, fatal=False,
                        detail=f"at most {self.settings.max_apps} apps per client",
                    ),
                    now,
                )  # fmt: skip
            else:
                session.send(
                    Registered(
                        req=event.req, app_id=event.app_id, token=token,
                        endpoint=self.hub.endpoint(token),
                    ),
                    now,
                )  # fmt: skip
                self.hub.app_registered(link.client_id, event.app_id)  # what it nacked
        elif isinstance(event, Unregister):
            try:
                done = await self.hub.unregister(link.client_id, event.token, self.hub.clock.wall())
            except StoreError:
                self._failed(link, event.req, "the unregistration could not be stored")
                return
            if session.closed is not None:
                return
            now = self.hub.clock.now()
            if done:
                session.send(Unregistered(req=event.req, token=event.token), now)
            else:
                session.send(
                    Error(
                        code=ErrorCode.UNKNOWN_TOKEN, req=event.req, fatal=False,
                        detail="this session has no such token",
                    ),
                    now,
                )  # fmt: skip
        elif isinstance(event, Nack):
            self.hub.nacked(link.client_id, event.id)
        elif isinstance(event, Closed) and not link.client_id:
            log.debug("connection_closed", extra={"remote": ws.remote, "code": int(event.code)})

    async def _authenticate(self, link: Link, remote: str, hello: Hello, now: float) -> None:
        refusal = self._refusal(hello, remote, now)
        attached = None
        if refusal is None:
            if link.ws is not None:
                link.ws.ticket.finish()  # admitted: its work no longer waits for turns
            link.client_id = hello.client_id
            # attach() counts the session only once the store has it: hold its place
            # meanwhile, or every hello arriving during that write would be admitted past
            # max_sessions.
            self.load.admitting += 1
            try:
                attached = await self.hub.attach(link, hello.session)
            except StoreError:  # no session can be recorded now: as overloaded as it gets
                alternates = self.load.control.settings.alternates
                refusal = self._overloaded(
                    Refusal(("store_failing",), self.load.retry_after(), alternates)
                )
            finally:
                self.load.admitting -= 1
        session = link.session
        if attached is not None:
            session_id, resumed, previous = attached
            if previous is not None:
                previous.session.close(CloseCode.SESSION_TAKEN_OVER, "session resumed elsewhere")
                previous.flush()
        if session.closed is not None:  # the connection went during the store's write
            return
        if refusal is not None:
            draining = refusal.reason == RejectReason.OVERLOADED and self.load.draining
            self.metrics.rejected(DRAINING if draining else refusal.reason)
            session.send(refusal, self.hub.clock.now())
            log.info(
                "session_rejected",
                extra={
                    "client": hello.client_id,
                    "remote": remote,
                    "reason": refusal.reason,
                    "detail": refusal.detail,
                },
            )
            return
        if link.ws is not None:
            link.ws.max_message = MAX_FRAME
        session.send(
            Welcome(
                server_id=self.settings.server_id,
                session=session_id,
                keepalive_s=self.settings.keepalive_s,
                limits=Limits(max_payload=MAX_PAYLOAD, max_apps=self.settings.max_apps),
                resumed=resumed,
            ),
            self.hub.clock.now(),
        )
        self.hub.welcomed(link)  # what is pending for the client follows the welcome
        self.metrics.accepted()
        log.info(
            "session_opened",
            extra={"client": hello.client_id, "remote": remote, "resumed": resumed},
        )

    def _failed(self, link: Link, req: int, detail: str) -> None:
        """The server could not do what ``req`` asked (its store failed): a fatal
        ``internal_error``, then close 4500."""
        session = link.session
        if session.closed is None:
            error = Error(code=ErrorCode.INTERNAL_ERROR, req=req, fatal=True, detail=detail)
            session.send(error, self.hub.clock.now())
            session.close(CloseCode.INTERNAL_ERROR, detail)

    @staticmethod
    def _overloaded(refusal: Refusal) -> Reject:
        return Reject(
            reason=RejectReason.OVERLOADED,
            retry_after_s=round(refusal.retry_after_s, 3),
            servers=refusal.servers or None,
            detail="overloaded: " + ", ".join(refusal.reasons),
        )

    def _refusal(self, hello: Hello, remote: str, now: float) -> Reject | None:
        """Who may not in, and why: version, failed-attempt limit, credentials, then load."""
        if hello.version != PROTOCOL_VERSION:
            return Reject(
                reason=RejectReason.UNSUPPORTED_VERSION,
                detail=f"this server speaks version {PROTOCOL_VERSION}",
            )
        wait = self.limiter.blocked(hello.client_id, remote, now)
        if wait is not None:
            return Reject(
                reason=RejectReason.RATE_LIMITED,
                retry_after_s=round(wait, 3),
                detail="too many failed hello attempts",
            )
        if not self.credentials.check(hello.client_id, hello.credential):
            self.limiter.failed(hello.client_id, remote, now)
            return Reject(
                reason=RejectReason.INVALID_CREDENTIALS, detail="unknown client or wrong credential"
            )
        provider = self.credentials.provider_of(hello.client_id)
        if hello.provider is not None and provider is not None and hello.provider != provider:
            return Reject(
                reason=RejectReason.FORBIDDEN, detail=f"client not provisioned by {hello.provider}"
            )
        self.limiter.succeeded(hello.client_id, remote)
        if self.hub.owns_link(hello.client_id):
            return None  # a reconnect replaces its own session: no new load
        refusal = self.load.admit_hello(now)
        return None if refusal is None else self._overloaded(refusal)
