"""The faults of the broken targets: each one breaks ONE behaviour of the reference server.

A fault is a function that monkeypatches the reference (``aoi``) in the process that is
about to run ``aoi.server.cli.main``; :mod:`tests.suite.broken.serve` applies one by name.
Faults patch seams that are meant to stay (public methods, or clearly named ones such as
``Aoi2Endpoint._refusal`` and ``PushApi._push``) and wrap the original wherever they can,
so that everything else the server does stays the reference's. Each docstring says what
the fault breaks and why it is the fault the issue asks for.
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable
from typing import Any

from tests.suite.broken.http_faults import HTTP_FAULTS
from tests.suite.broken.overload_faults import OVERLOAD_FAULTS
from tests.suite.broken.session_faults import SESSION_FAULTS

FAULTS: dict[str, Callable[[], None]] = {}


def fault(patch: Callable[[], None]) -> Callable[[], None]:
    FAULTS[patch.__name__] = patch
    return patch


for _patch in (*OVERLOAD_FAULTS, *SESSION_FAULTS, *HTTP_FAULTS):
    fault(_patch)


@fault
def short_tokens() -> None:
    """Shortens tokens: registrations get tokens of 64 random bits (11 base64url
    characters) instead of 144.

    AOI-APP-002 requires tokens to be unguessable, at least 128 random bits: a 64-bit token
    can be found by a server app (or anyone who can reach AOI-3) by guessing. Everything
    else about the tokens (one per client and app, random, bound to the client) holds.
    """
    import aoi.server.hub

    def new_token(client_id: str) -> str:
        return secrets.token_urlsafe(8)

    aoi.server.hub.new_token = new_token


@fault
def counted_tokens() -> None:
    """Counts tokens: each is a fixed random prefix drawn at start-up (22 characters) and a
    counter, so tokens are long enough and never repeat, but only the counter differs.

    AOI-APP-002 requires 128 random bits in each token: whoever saw one token guesses the
    others by counting.
    """
    import itertools

    import aoi.server.hub

    prefix, counter = secrets.token_urlsafe(16), itertools.count(1)

    def new_token(client_id: str) -> str:
        return f"{prefix}{next(counter):06d}"

    aoi.server.hub.new_token = new_token


@fault
def reused_tokens() -> None:
    """Reuses tokens: every client that registers an app gets the token the first client
    got for that app (the server keeps one token per app), so tokens are not bound to one
    client and app.

    AOI-APP-002 requires a token bound to one client and app; a shared token lets one
    client's notifications go to another and makes unregistering ambiguous. The shared
    token stays bound to its first client on AOI-3: pushes to it reach that client only.
    """
    from aoi.server.hub import Hub

    original = Hub.register

    async def register(self: Hub, client_id: str, app_id: str, now: float) -> str | None:
        mine = self.clients.get(client_id)
        if mine is None or app_id not in mine.tokens:
            for registration in self.registrations.values():  # the active ones
                if registration.app_id == app_id and registration.client_id != client_id:
                    self._client(client_id).tokens[app_id] = registration.token
                    return registration.token
        return await original(self, client_id, app_id, now)

    Hub.register = register  # type: ignore[method-assign]


@fault
def derived_tokens() -> None:
    """Derives tokens: a registration's token is a hash of its client id and app id, 32
    base64url characters that differ for every pair and look random, so the same pair gets
    the same token again when it registers after unregistering.

    AOI-APP-002 requires at least 128 bits from a cryptographically secure random source:
    anyone who knows how the hash is made and the two ids can compute the token. The token
    that was unregistered accepts pushes again once the app registers anew, which AOI-APP-003
    forbids (410 after ``unregistered``).
    """
    import contextvars
    import hashlib
    from base64 import urlsafe_b64encode

    import aoi.server.hub
    import aoi.server.store.sqlite
    from aoi.server.hub import Hub

    pair: contextvars.ContextVar[str] = contextvars.ContextVar("pair")
    original = Hub.register

    def new_token(client_id: str) -> str:
        digest = hashlib.sha256(pair.get().encode()).digest()
        return urlsafe_b64encode(digest).decode()[:32]

    async def register(self: Hub, client_id: str, app_id: str, now: float) -> str | None:
        pair.set(f"{client_id}\0{app_id}")
        token = await original(self, client_id, app_id, now)
        self.retired.discard(token or "")
        return token

    aoi.server.hub.new_token = new_token
    aoi.server.store.sqlite.INSERT_REGISTRATION = (  # type: ignore[attr-defined]
        "INSERT OR REPLACE" + aoi.server.store.sqlite.INSERT_REGISTRATION[len("INSERT") :]
    )
    Hub.register = register  # type: ignore[method-assign]


@fault
def strict_members() -> None:
    """Refuses unknown members: an AOI-2 frame with a member its schema does not name is
    answered ``error{invalid_message}`` instead of being read without it.

    docs/protocol.md 1.5 requires receivers to ignore unknown members (AOI-GEN-002), so that
    a peer of a later version can add some. The suite's own frames name only known members,
    except in the scenario that sends a ping with one more.
    """
    import aoi_schemas

    from aoi.core.codec import Codec
    from aoi.core.errors import ErrorCode, RemoteProtocolError

    known = {
        uri.rsplit("/", 1)[1].removesuffix(".json"): set(doc["properties"])
        for uri, doc in aoi_schemas.schemas().items()
        if "/aoi2/" in uri
    }
    original = Codec.from_wire

    def from_wire(self: Codec, wire: dict[str, Any]) -> Any:
        unknown = set(wire) - known.get(wire["type"], set(wire))
        if unknown:
            raise RemoteProtocolError(ErrorCode.INVALID_MESSAGE, f"unknown {sorted(unknown)}")
        return original(self, wire)

    Codec.from_wire = from_wire  # type: ignore[method-assign]


@fault
def never_expires() -> None:
    """Never expires: TTLs are ignored, so a notification whose TTL passed stays queued
    (its report never says ``expired``) and is delivered when its client comes back.

    AOI-DEL-004 requires that expired notifications are never delivered and report
    ``expired``. Both places where the reference expires notifications are disabled: the
    sweep of the store (``SqliteStore.expire``, which a node of a fleet runs) and the TTL
    of the delivery core, which ``Hub.add_pending`` here hands every notification without
    an expiry.
    """
    import math

    from aoi.server.hub import Hub
    from aoi.server.store import SqliteStore, StoredNotification

    async def expire(self: SqliteStore, now: float) -> list[str]:
        return []

    original_add_pending = Hub.add_pending

    def add_pending(self: Hub, n: StoredNotification, wall: float) -> bool:
        return original_add_pending(self, dataclasses.replace(n, expires_at=math.inf), wall)

    SqliteStore.expire = expire  # type: ignore[method-assign]
    Hub.add_pending = add_pending  # type: ignore[method-assign]


@fault
def wrong_app() -> None:
    """Delivers to the wrong app: a notification for one app of a client that has several
    goes out for another of its apps (the first other app id in sorted order), with that
    app's token and app id; a client with one app gets it right.

    AOI-DEL-002 requires that a notification reaches only the addressed app of the
    addressed client: on the client, AOI-1 hands a notify to the app its ``app_id`` and
    ``token`` name, so this one reaches an app that was not addressed.
    """
    from aoi.server.hub import Hub
    from aoi.server.store import StoredNotification

    original = Hub.accept

    async def accept(self: Hub, notification: StoredNotification, replaces: list[str]) -> None:
        client = self.clients.get(notification.client_id)
        others = sorted(a for a in (client.tokens if client else {}) if a != notification.app_id)
        if client is not None and others:
            wrong = others[0]
            notification = dataclasses.replace(
                notification, app_id=wrong, token=client.tokens[wrong]
            )
        await original(self, notification, replaces)

    Hub.accept = accept  # type: ignore[method-assign]


@fault
def ignores_acks() -> None:
    """Ignores acks and never redelivers: a notification counts as done once it was sent
    (fire and forget); acks change nothing, so no report ever says ``delivered``.

    AOI-DEL-003 requires delivery at least once on the wire: an unacked notification is
    sent again on the next connection. Here what was sent is forgotten at once (the hub
    acks it to the delivery core itself as it hands the notify to the session, and
    records nothing), and the client's real acks are ignored (``Hub.acked`` does nothing).
    """
    import time

    from aoi.core.delivery import Delivered, Event
    from aoi.core.messages import Notify
    from aoi.server.hub import Hub, Receipt
    from aoi.server.link import Client
    from aoi.server.store import StoredNotification

    original_carry = Hub._carry

    def carry(
        self: Hub,
        client: Client,
        events: list[Event[StoredNotification]],
        receipt: Receipt | None = None,
    ) -> bool:
        sent = original_carry(self, client, events, receipt)
        ids = [event.id for event in events if type(event) is Notify]
        if ids and client.delivery is not None:
            more = client.delivery.ack(ids, time.time())  # forgotten, and never reported
            sent = carry(self, client, [e for e in more if type(e) is not Delivered]) or sent
        return sent

    def acked(self: Hub, client_id: str, ids: tuple[str, ...]) -> bool:
        return False

    Hub._carry = carry  # type: ignore[method-assign]
    Hub.acked = acked  # type: ignore[method-assign]


@fault
def cross_app_push() -> None:
    """Lets a server app push to another app's token: any valid server-app key may push to
    every token on the server (the key is identified, its apps are not checked).

    AOI-SEC-001 requires that server apps push only to tokens of their own apps (403
    otherwise). Authentication (401) stays: only the authorisation is gone.
    """
    from aoi.server.credentials import ServerApp, ServerAppKeys

    original = ServerAppKeys.identify

    def identify(self: ServerAppKeys, key: str) -> ServerApp | None:
        app = original(self, key)
        if app is None:
            return None
        every = frozenset().union(*(a.app_ids for a in self._by_digest.values()))
        return dataclasses.replace(app, app_ids=every)

    ServerAppKeys.identify = identify  # type: ignore[method-assign]


@fault
def hangs_on_malformed_upgrade() -> None:
    """Hangs on a malformed upgrade: an upgrade without Sec-WebSocket-Version (the request
    that once made the reference exit) is answered 400 as it should be, but then the server
    accepts no new connection until that client has closed its own (up to a minute).

    AOI-GEN-005 requires that malformed input neither crashes nor hangs the server: while
    the attacker keeps its connection open, nobody new gets in (established sessions are
    still served). The answer itself is the reference's (AOI-GEN-006 holds); only what
    follows it is broken.
    """
    import socket

    import trio

    from aoi.net import fastio
    from aoi.net.http import HttpServer
    from aoi.net.http_messages import Response

    stuck: list[trio.Event] = []  # while not empty, the listener serves nobody new
    accept, answer_and_close = trio.SocketListener.accept, HttpServer._answer_and_close

    async def accept_then_wait(self: trio.SocketListener) -> trio.SocketStream:
        stream = await accept(self)
        while stuck:  # accepted, and left unserved
            await stuck[0].wait()
        return stream

    async def _answer_and_close(self: HttpServer, c: Any, response: Response) -> None:
        if b"Sec-WebSocket-Version is missing" not in response.body:
            return await answer_and_close(self, c, response)
        await fastio.send_all(c.stream, response.raw())
        c.stream.socket.shutdown(socket.SHUT_WR)
        stuck.append(trio.Event())
        with trio.move_on_after(60):
            while await c.stream.receive_some(65536):  # until the client goes
                pass
        stuck.pop().set()
        return None

    trio.SocketListener.accept = accept_then_wait  # type: ignore[method-assign]
    HttpServer._answer_and_close = _answer_and_close  # type: ignore[method-assign]


@fault
def exits_on_malformed_upgrade() -> None:
    """Exits on a malformed upgrade, as the reference once did: an upgrade without
    Sec-WebSocket-Version is answered 400 as it should be, then the process ends (status 70).

    AOI-GEN-005 requires that malformed input never stops the server: here its sessions
    are cut and nobody is served any more. The answer itself is the reference's (AOI-GEN-006
    holds for it); the hostile requests of the scenarios after it find no server.
    """
    import os

    from aoi.net.http import HttpServer
    from aoi.net.http_messages import Response

    answer_and_close = HttpServer._answer_and_close

    async def _answer_and_close(self: HttpServer, c: Any, response: Response) -> None:
        await answer_and_close(self, c, response)
        if b"Sec-WebSocket-Version is missing" in response.body:
            os._exit(70)

    HttpServer._answer_and_close = _answer_and_close  # type: ignore[method-assign]


@fault
def batch_refused_whole() -> None:
    """Refuses a batch as a whole for one bad notification: the body is validated against
    push_batch_request in one piece, so an unknown token passes but a notification with a
    typo, an oversized payload or no token makes the whole request 400 (and a batch over
    500 notifications a 400 rather than a 413), and its good notifications are lost.

    AOI-DEL-012 requires each notification of a batch to be judged alone, with the error
    its single push would get, and only a request that is not a batch to be refused whole;
    a well-formed batch of good notifications is the reference's.
    """
    import aoi_schemas
    import jsonschema_rs

    from aoi.net.http_messages import Request, Response
    from aoi.server.push_api import json_body
    from aoi.server.push_batch import PushBatch

    documents = aoi_schemas.schemas()
    whole = jsonschema_rs.validator_for(
        documents[aoi_schemas.schema_id("aoi3/push_batch_request.json")],
        registry=jsonschema_rs.Registry(list(documents.items())),
    )
    original = PushBatch._batch

    async def _batch(self: PushBatch, request: Request) -> tuple[Response, list[int]]:
        try:
            body = json_body(request.body)
        except ValueError:
            body = None
        if isinstance(body, dict) and not whole.is_valid(body):
            response = Response.error(400, "invalid_request", "the body is not a valid batch")
            return response, [400]
        return await original(self, request)

    PushBatch._batch = _batch  # type: ignore[method-assign]


@fault
def no_source_limit() -> None:
    """Limits failed hellos per client only: a source address that fails hellos under ever
    new client ids is never refused ``rate_limited``, so guessing credentials of many
    clients from one address goes unchecked.

    AOI-SEC-003 requires a limit per source address as well as per client. The per-client
    limit is the reference's, untouched.
    """
    from aoi.server.credentials import FailedHelloLimiter

    def _keys(client_id: str, source: str) -> tuple[tuple[str, str], ...]:
        return (("client", client_id),)

    FailedHelloLimiter._keys = staticmethod(_keys)  # type: ignore[method-assign,assignment]


SOURCE_FACTOR = 4  # the per-source limit of source_limit_above_client_limit, per client


@fault
def source_limit_above_client_limit() -> None:
    """Not a fault: failed hellos are limited per source address at four times the
    per-client limit (the reference uses one limit for both), as a server in front of
    many clients behind one NAT would; the IXIT declares both limits.

    AOI-SEC-003 requires a limit per client and one per source, not equal ones: the suite
    must judge the limits declared and PASS it.
    """
    from collections import deque

    from aoi.server.credentials import FailedHelloLimiter

    original = FailedHelloLimiter.failed

    def limit_of(self: FailedHelloLimiter, key: tuple[str, str]) -> int:
        return self.limit * SOURCE_FACTOR if key[0] == "source" else self.limit

    def failed(self: FailedHelloLimiter, client_id: str, source: str, now: float) -> None:
        original(self, client_id, source, now)
        key = ("source", source)
        times = self._failures.get(key)
        if times is not None and times.maxlen != limit_of(self, key):
            self._failures[key] = deque(times, maxlen=limit_of(self, key))

    def _wait(self: FailedHelloLimiter, key: tuple[str, str], now: float) -> float:
        times = self._failures.get(key)
        if times is None or len(times) < limit_of(self, key):
            return 0.0
        return times[0] + self.window_s - now

    FailedHelloLimiter.failed = failed  # type: ignore[method-assign]
    FailedHelloLimiter._wait = _wait  # type: ignore[method-assign]


def _json_body(response: Any) -> dict[str, Any]:
    import json

    return dict(json.loads(response.body))


def apply(name: str) -> None:
    """Patch the reference with the fault ``name`` (before the server is built)."""
    try:
        patch = FAULTS[name]
    except KeyError:
        raise SystemExit(f"unknown fault {name!r}; faults: {', '.join(FAULTS)}") from None
    patch()
