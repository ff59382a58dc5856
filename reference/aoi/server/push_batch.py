"""AOI-3's batch push: ``POST /v1/push`` with 1 to 500 notifications, each answered alone.

Each item is judged as a single push of it would be (:meth:`PushApi.notification`, with
the same rate, the same refusals and the same order of checks) and gets its own result: the
201's ``id`` and ``ttl_s``, or the single push's error. Only what concerns the request as
a whole refuses it whole: overload (503), the key (401), a body that is not a batch (400)
or one of more than :data:`MAX_BATCH` notifications (413). What is accepted is stored in
one write (:meth:`Hub.accept_many`, one commit for the lot) before the answer; a store that
fails stores none of it and the batch gets 503 ``store_unavailable``. Items are taken in
order: an item with the ``collapse_key`` of an earlier one for the same token replaces it,
as a second single push would; identical items are two notifications, as two pushes are.
"""

from __future__ import annotations

import json
from typing import Any

from aoi.core.errors import ApiError, ApiErrorCode
from aoi.net.http_messages import Request, Response

from .push_api import PushApi, json_body, refused
from .store import StoredNotification, StoreError

MAX_BATCH = 500  # notifications in one batch (docs/protocol.md 3.3.1)
SHAPE = f'a batch is {{"notifications": [...]}} with 1 to {MAX_BATCH} notifications'


class PushBatch:
    """The handler of ``POST /v1/push``; :class:`PushApi` routes to it."""

    def __init__(self, api: PushApi) -> None:
        self.api = api

    async def __call__(self, request: Request) -> Response:
        try:
            response, statuses = await self._batch(request)
        except ApiError as refusal:
            response, statuses = refused(refusal), [refusal.status]
        except StoreError:  # nothing of the batch was stored: the server app tries again
            unavailable = ApiError.store_unavailable(self.api.load.retry_after())
            response, statuses = refused(unavailable), [unavailable.status]
        for status in statuses:
            self.api.metrics.pushed(status)
        return response

    async def _batch(self, request: Request) -> tuple[Response, list[int]]:
        """The answer, and the status of each push in it (for the metrics)."""
        api = self.api
        if api.load.refuses_pushes():
            raise ApiError.overloaded(api.load.retry_after())
        app = api._server_app(request)
        try:
            body = json_body(request.body)
        except ValueError as exc:
            raise ApiError.invalid_request(str(exc)) from None
        items = notifications(body)
        results: list[dict[str, Any]] = []
        accepted: list[tuple[StoredNotification, list[str]]] = []
        latest: dict[tuple[str, str], str] = {}  # (token, collapse_key) -> id in this batch
        now = api.hub.clock.now()
        for item in items:
            try:
                wait = api.keys.take(app.name, now)
                if wait is not None:
                    raise ApiError.rate_limited(f"over {app.rate_per_s}/s", wait)
                token, push = split(item)
                await api.hub.know(token)
                notification, replaces = api.notification(app, token, push)
            except ApiError as refusal:
                results.append(result_of(refusal))
                continue
            if notification.collapse_key is not None:
                key = (token, notification.collapse_key)
                if key in latest:
                    replaces.append(latest[key])
                latest[key] = notification.id
            accepted.append((notification, replaces))
            results.append({"status": 201, "id": notification.id, "ttl_s": notification.ttl_s})
        if accepted:
            await api.hub.accept_many(accepted)
            for _ in accepted:
                api.metrics.accepted_notification()
        document = json.dumps({"results": results}, separators=(",", ":")).encode()
        return Response(200, document), [r["status"] for r in results]


def notifications(body: Any) -> list[Any]:
    """The items of a batch body; :class:`ApiError` when the body is not a batch."""
    if not isinstance(body, dict) or not isinstance(body.get("notifications"), list):
        problem = {"path": "/notifications", "message": "an array of notifications is required"}
        raise ApiError.invalid_request(f"the body is not a batch: {SHAPE}", (problem,))
    unknown = sorted(set(body) - {"notifications"})
    if unknown:
        raise ApiError.invalid_request(
            f"the batch has unknown members: {SHAPE}",
            tuple({"path": "/" + pointer(name), "message": "unknown member"} for name in unknown),
        )
    items: list[Any] = body["notifications"]
    if not items:
        problem = {"path": "/notifications", "message": "the batch is empty"}
        raise ApiError.invalid_request(f"the batch is empty: {SHAPE}", (problem,))
    if len(items) > MAX_BATCH:
        raise ApiError(
            ApiErrorCode.PAYLOAD_TOO_LARGE,
            f"a batch holds at most {MAX_BATCH} notifications, this one {len(items)}: "
            "send them in several",
        )
    return items


def split(item: Any) -> tuple[str, dict[str, Any]]:
    """An item's token, and the rest: the body a single push of it would have."""
    if not isinstance(item, dict):
        problem = {"path": "", "message": "a notification is an object"}
        raise ApiError.invalid_request("the notification is not an object", (problem,))
    token = item.get("token")
    if not isinstance(token, str):
        problem = {"path": "/token", "message": "the token is a required string"}
        raise ApiError.invalid_request("the notification names no token", (problem,))
    push = dict(item)
    del push["token"]
    return token, push


def result_of(refusal: ApiError) -> dict[str, Any]:
    """An item's result for a refusal: the single push's status and error body, and its
    ``Retry-After`` as ``retry_after_s`` (an item has no headers)."""
    result: dict[str, Any] = {"status": refusal.status, **refusal.body()}
    for name, value in refusal.headers:
        if name == "retry-after":
            result["retry_after_s"] = int(value)
    return result


def pointer(name: str) -> str:
    """``name`` as one JSON Pointer token (RFC 6901)."""
    return name.replace("~", "~0").replace("/", "~1")
