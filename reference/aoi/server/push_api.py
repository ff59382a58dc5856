"""AOI-3 (the push API for server apps), AOI-P (provisioning), health, metrics, OpenAPI."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import aoi_schemas
import jsonschema_rs

from aoi import __version__
from aoi.core.codec import MAX_PAYLOAD, payload_size
from aoi.core.errors import ApiError, retry_after
from aoi.core.rfc3339 import rfc3339
from aoi.net.http import HttpServer
from aoi.net.http_messages import Request, Response

from .credentials import ClientCredentials, ServerApp, ServerAppKeys
from .hub import Hub
from .load import LoadMonitor
from .metrics import Metrics
from .store import Status, StoredNotification, StoreError, StoreGone
from .store.routes import route_of

TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


# An escaped UTF-16 surrogate; json.loads joins a valid pair into one character and leaves
# a lone one in the string, which no UTF-8 text (nor the store) can hold.
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def json_body(raw: bytes) -> Any:
    """The JSON value of a request body; :class:`ValueError` saying why there is none."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise ValueError("the body is JSON nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise ValueError("the body is not JSON") from None
    if SURROGATE_ESCAPE.search(raw):
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("the body holds a lone UTF-16 surrogate (\\ud800-\\udfff)") from None
    return value


class NotificationIds:
    """Notification ids as ``secrets.token_urlsafe(12)`` makes them (16 characters for 96
    random bits from the OS), cut from one block of randomness instead of one system call
    each: 12 bytes are exactly 16 base64 characters, so every slice is one whole id."""

    BLOCK = 512  # ids per refill

    def __init__(self) -> None:
        self._block = ""
        self._at = 0

    def __call__(self) -> str:
        at = self._at
        if at >= len(self._block):
            self._block = base64.urlsafe_b64encode(secrets.token_bytes(12 * self.BLOCK)).decode()
            at = 0
        self._at = at + 16
        return self._block[at : at + 16]


class PushApi:
    def __init__(
        self,
        hub: Hub,
        keys: ServerAppKeys,
        credentials: ClientCredentials,
        load: LoadMonitor,
        metrics: Metrics,
        policy: bytes | None,
        *,
        drain: Callable[[bool], None],
    ) -> None:
        self.hub = hub
        self.keys = keys
        self.credentials = credentials
        self.load = load
        self.metrics = metrics
        self.policy = policy
        self.drain = drain
        self.listener: HttpServer | None = None  # for its counts, in the metrics
        documents = aoi_schemas.schemas()
        self.push_schema = jsonschema_rs.validator_for(
            documents[aoi_schemas.schema_id("aoi3/push_request.json")],
            registry=jsonschema_rs.Registry(list(documents.items())),
        )
        self.openapi = json.dumps(aoi_schemas.openapi()).encode()
        self.new_id = NotificationIds()
        from .push_batch import PushBatch  # which imports this module

        self.batch = PushBatch(self)
        self._fixed: dict[str, Callable[[Request], Awaitable[Response]]] = {
            "/v1/health": self.health,
            "/metrics": self.metrics_page,
            "/v1/provisioning": self.provisioning,
            "/v1/openapi.json": self.openapi_page,
        }

    async def __call__(self, request: Request) -> Response:
        path, method = request.path, request.method
        if method == "POST" and path.startswith("/v1/push/"):  # the hot route first
            return await self.push(request, path[9:])
        try:
            return await self._route(request, path, method)
        except ApiError as refusal:
            return refused(refusal)
        except StoreError:
            return refused(ApiError.store_unavailable(self.load.retry_after()))

    async def _route(self, request: Request, path: str, method: str) -> Response:
        if path == "/v1/admin/drain":
            if method == "POST":
                return self.admin_drain(request)
            raise ApiError.method_not_allowed("POST")
        if path == "/v1/push":
            if method == "POST":
                return await self.batch(request)
            raise ApiError.method_not_allowed("POST")
        if path.startswith("/v1/push/"):
            route: Callable[[Request, str], Awaitable[Response]] | None = self.push
            argument = path.removeprefix("/v1/push/")
            allowed = "POST"
        elif path.startswith("/v1/messages/"):
            route = self.report if method == "GET" else self.cancel
            argument = path.removeprefix("/v1/messages/")
            allowed = "GET, DELETE"
        else:
            fixed = self._fixed.get(path)
            if fixed is None:
                raise ApiError.not_found(f"no resource at {path}")
            if method not in ("GET", "HEAD"):
                raise ApiError.method_not_allowed("GET, HEAD")
            return await fixed(request)
        if method not in allowed.split(", "):
            raise ApiError.method_not_allowed(allowed)
        assert route is not None
        return await route(request, argument)

    # --- AOI-3 ---------------------------------------------------------------------------

    def _server_app(self, request: Request) -> ServerApp:
        """The server app whose key authorizes ``request``; 401 otherwise."""
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        app = self.keys.identify(key.strip()) if scheme.lower() == "bearer" else None
        if app is None:
            raise ApiError.unauthorized("Bearer", "a valid server-app key is required")
        return app

    async def push(self, request: Request, token: str) -> Response:
        try:
            response = await self._push(request, token)
        except ApiError as refusal:
            response = refused(refusal)
        except StoreGone:  # another node of the fleet unregistered it meanwhile
            response = refused(ApiError.token_unregistered())
        except StoreError:  # nothing was stored: the server app tries again later
            response = refused(ApiError.store_unavailable(self.load.retry_after()))
        self.metrics.pushed(response.status)
        return response

    async def _push(self, request: Request, token: str) -> Response:
        if self.load.refuses_pushes():
            raise ApiError.overloaded(self.load.retry_after())
        app = self._server_app(request)
        wait = self.keys.take(app.name, self.hub.clock.now())
        if wait is not None:
            raise ApiError.rate_limited(f"over {app.rate_per_s}/s", wait)
        try:
            body = json_body(request.body)
        except ValueError as exc:
            raise ApiError.invalid_request(str(exc)) from None
        await self.hub.know(token)
        notification, replaces = self.notification(app, token, body)
        await self.hub.accept(notification, replaces)
        self.metrics.accepted_notification()
        # Response.json's bytes, made directly: an id is base64url, nothing to escape.
        return Response(
            201,
            b'{"id":"%s","ttl_s":%d}' % (notification.id.encode(), notification.ttl_s),
            "application/json",
            (("location", "/v1/messages/" + notification.id),),
        )

    def notification(
        self, app: ServerApp, token: str, body: Any
    ) -> tuple[StoredNotification, list[str]]:
        """What a push of ``body`` (JSON) to ``token`` by ``app`` stores, and the queued
        notifications it replaces; :class:`ApiError` with the push's refusal: 413, 400, 404,
        410, 403, judged in this order (docs/protocol.md 3.3)."""
        if isinstance(body, dict) and isinstance(body.get("payload"), str):
            size = payload_size(body["payload"])
            if size > MAX_PAYLOAD:
                raise ApiError.payload_too_large(size, MAX_PAYLOAD)
        if not self.push_schema.is_valid(body):  # the errors only for a body that has some
            errors = tuple(
                {"path": "/" + "/".join(map(str, e.instance_path)), "message": e.message}
                for e in self.push_schema.iter_errors(body)
            )
            raise ApiError.invalid_request("the body does not match push_request", errors)
        registration = self.hub.registrations.get(token)
        if registration is None:
            if token in self.hub.retired:
                raise ApiError.token_unregistered()
            raise ApiError.unknown_token()
        if registration.app_id not in app.app_ids:
            raise ApiError.forbidden("this token belongs to another app")
        now = self.hub.clock.wall()
        ttl = int(body["ttl_s"])
        collapse_key = body.get("collapse_key")
        notification = StoredNotification(
            id=self.new_id() + route_of(token), token=token, client_id=registration.client_id,
            app_id=registration.app_id, payload=body["payload"],
            priority=body.get("priority", "normal"), ttl_s=ttl, created_at=now,
            expires_at=now + ttl, collapse_key=collapse_key, pushed_by=app.name,
        )  # fmt: skip
        replaces = self.hub.collapsible(token, collapse_key) if collapse_key else []
        return notification, replaces

    async def _own(self, request: Request, notification_id: str) -> StoredNotification:
        """The notification ``notification_id`` if the requesting server app pushed it."""
        app = self._server_app(request)
        n = await self.hub.store.get_notification(notification_id)
        if n is None or n.pushed_by != app.name:
            raise ApiError.not_found("no notification of yours has this id")
        return n

    async def report(self, request: Request, notification_id: str) -> Response:
        n = await self._own(request, notification_id)
        return Response.json(200, delivery_report(n))

    async def cancel(self, request: Request, notification_id: str) -> Response:
        n = await self._own(request, notification_id)
        if n.status == Status.CANCELLED:  # cancelling twice changes nothing
            return Response.json(200, delivery_report(n))
        # Queued, sent or not: cancelled (docs/protocol.md 3.5), and answered once durable.
        if n.status == Status.QUEUED and await self.hub.cancel(n, self.hub.clock.wall()):
            n = await self.hub.store.get_notification(notification_id) or n
            return Response.json(200, delivery_report(n))
        # Still queued in the store: acked or expired here, its status on its way there.
        raise ApiError.not_cancellable(
            "delivered or expired" if n.status == Status.QUEUED else n.status
        )

    # --- the rest ------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        load = self.load.load()
        status = self.load.status()
        document: dict[str, Any] = {
            "status": status,
            "load": round(self.load.control.load_factor(load), 4),
            "sessions": load.sessions,
            "version": __version__,
        }
        reasons = self.load.control.reasons(load)
        if reasons:
            document["reasons"] = list(reasons)
        if status == "ok":
            return Response.json(200, document)
        return Response.json(503, document, retry_after(self.load.retry_after()))

    async def metrics_page(self, request: Request) -> Response:
        m, store, listener = self.metrics, self.hub.store, self.listener
        m.sessions.set(self.hub.established)
        m.store_backlog.set(store.backlog())
        m.loop_lag.set(self.load.loop_lag_ms / 1000.0)
        m.overloaded.set(self.load.overloaded())
        m.draining.set(self.load.draining)
        m.store_failing.set(0 if store.failure is None else 1)
        m.total(m.store_write_errors, store.ops_failed)
        fleet = self.hub.fleet
        if fleet is not None:
            m.total(m.forwarded, fleet.forwarded)
            m.total(m.forwards_received, fleet.received)
        if listener is not None:
            m.connections.set(listener.connections)
            m.total(m.connections_refused, listener.refused)
            m.total(m.accept_errors, listener.accept_errors)
            m.total(m.connection_errors, listener.failures)
        return Response(200, self.metrics.exposition(), "text/plain; version=0.0.4; charset=utf-8")

    async def provisioning(self, request: Request) -> Response:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        client_id, credential = "", ""
        if scheme.lower() == "basic":
            with contextlib.suppress(binascii.Error, UnicodeDecodeError):
                client_id, _, credential = (
                    base64.b64decode(encoded, validate=True).decode().partition(":")
                )
        if not self.credentials.check(client_id, credential):
            why = "unknown client or wrong credential" if client_id else "credentials are required"
            raise ApiError.unauthorized("Basic", why)
        if self.policy is None:
            raise ApiError.not_found("this server provisions no policy")
        return Response(200, self.policy)

    def admin_drain(self, request: Request) -> Response:
        """Operators switch drain mode from the server's own host: ``{"drain": true}``."""
        if request.remote not in ("127.0.0.1", "::1"):
            raise ApiError.forbidden("drain is switched from loopback only")
        try:
            drain = json_body(request.body or b"{}").get("drain", True)
        except (ValueError, AttributeError):
            drain = None
        if not isinstance(drain, bool):
            raise ApiError.invalid_request('send {"drain": true} or {"drain": false}')
        self.drain(drain)
        return Response.json(200, {"draining": drain})

    async def openapi_page(self, request: Request) -> Response:
        return Response(200, self.openapi)


def refused(refusal: ApiError) -> Response:
    return Response.json(refusal.status, refusal.body(), refusal.headers)


def delivery_report(n: StoredNotification) -> dict[str, Any]:
    report: dict[str, Any] = {
        "id": n.id,
        "status": n.status,
        "app_id": n.app_id,
        "priority": n.priority,
        "created_at": rfc3339(n.created_at),
        "expires_at": rfc3339(n.expires_at),
    }
    if n.status == Status.DELIVERED and n.status_at is not None:
        report["delivered_at"] = rfc3339(n.status_at)
    return report
