"""The suite's provisioning endpoint (AOI-P), for client mode: h11 on trio.

``GET /v1/provisioning`` with ``Authorization: Basic base64(client_id:credential)`` gets
the policy document the scenario set (docs/protocol.md 4.1); a wrong or missing credential
gets 401 with an ``error_response``. The document is rendered when it is asked for, so a
scenario may change it between two fetches. Every request is kept with its arrival time.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import h11
import trio

from conformance.driver.portal import LoopbackListener, Portal
from conformance.wirelog import WireLog

PATH = "/v1/provisioning"
MAX_REQUEST = 65536


@dataclass(frozen=True, slots=True)
class Fetch:
    """One request the AOI Client made to the provisioning endpoint."""

    at: float  # time.monotonic()
    method: str
    path: str
    client_id: str | None  # from the Basic credentials, when there were any
    authorized: bool
    status: int


@dataclass(frozen=True, slots=True)
class Refusal:
    """What the endpoint answers instead of a document (e.g. 503 with Retry-After)."""

    status: int
    code: str
    detail: str
    retry_after_s: int | None = None


class ProvisioningEndpoint(LoopbackListener):
    def __init__(
        self,
        portal: Portal,
        wirelog: WireLog,
        name: str,
        document: Callable[[], Any],
        *,
        identity: tuple[str, str] | None,
        on_change: Callable[[], None],
    ) -> None:
        super().__init__(portal)
        self.wirelog = wirelog
        self.name = name
        self.document = (
            document  # called for each fetch: a JSON value, bytes as they are, a Refusal
        )
        self.identity = identity  # (client_id, credential); None: any Basic credentials do
        self.on_change = on_change
        self.fetches: list[Fetch] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{PATH}"

    def served(self) -> list[Fetch]:
        """The fetches answered with the document."""
        return [f for f in self.fetches if f.status == 200]

    # --- trio side --------------------------------------------------------------------------

    async def _handle(self, stream: trio.SocketStream) -> None:
        try:
            with trio.move_on_after(30):
                await self._serve(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError, h11.ProtocolError):
            pass  # the client went away: nothing to answer
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                await stream.aclose()

    async def _serve(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST)
        request: h11.Request | None = None
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(MAX_REQUEST)
                conn.receive_data(bytes(data))
                if not data and request is None:
                    return
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                break
        if request is None:
            return
        at = time.monotonic()
        method = request.method.decode("ascii", "replace")
        path = request.target.decode("ascii", "replace")
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in request.headers}
        client_id, credential = _basic(headers.get("authorization", ""))
        shown = [f"{method} {path}"]
        if "authorization" in headers:
            shown.append("Authorization: Basic ***" if client_id else "Authorization: (not Basic)")
            if client_id:
                shown.append(f"(Basic credentials of client_id {client_id!r})")
        self.wirelog.add(f"aoi-p {self.name}", "<-", "\n".join(shown))
        authorized = client_id is not None and (
            self.identity is None or (client_id, credential) == self.identity
        )
        if path.split("?", 1)[0] != PATH or method not in ("GET", "HEAD"):
            status, body = 404, _error("not_found", f"only GET {PATH} is served here")
            extra: list[tuple[str, str]] = []
        elif not authorized:
            status, body = 401, _error("unauthorized", "Basic credentials of a known client needed")
            extra = [("WWW-Authenticate", 'Basic realm="aoi"')]
        else:
            document = self.document()
            if isinstance(document, Refusal):
                status, body = document.status, _error(document.code, document.detail)
                extra = []
                if document.retry_after_s is not None:
                    extra.append(("Retry-After", str(document.retry_after_s)))
            else:
                body = document if isinstance(document, bytes) else json.dumps(document).encode()
                status, extra = 200, []
        self.fetches.append(Fetch(at, method, path, client_id, authorized, status))
        self.on_change()
        headers_out = [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
            *extra,
        ]
        await stream.send_all(conn.send(h11.Response(status_code=status, headers=headers_out)))
        if method != "HEAD":
            await stream.send_all(conn.send(h11.Data(data=body)))
        await stream.send_all(conn.send(h11.EndOfMessage()))
        text = body.decode("utf-8", "replace")
        self.wirelog.add(
            f"aoi-p {self.name}",
            "->",
            f"{status}\n{text if len(text) <= 1024 else text[:1024] + '...'}",
        )


def _basic(header: str) -> tuple[str | None, str | None]:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None, None
    user, sep, password = decoded.partition(":")
    return (user, password) if sep else (None, None)


def _error(code: str, detail: str) -> bytes:
    return json.dumps({"error": code, "detail": detail}).encode()
