"""Opening a WebSocket as a client: TCP or TLS, then the opening handshake (RFC 6455 4.1),
its answer read by h11."""

from __future__ import annotations

import base64
import os
import ssl
from urllib.parse import urlsplit

import h11
import trio

from .upgrade import accept_key
from .websocket import RECEIVE_SIZE, WebSocket


class HandshakeError(Exception):
    """The server refused or botched the upgrade (``status`` is its HTTP status, if any)."""

    def __init__(self, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.status = status


async def connect(
    url: str,
    subprotocol: str,
    *,
    ssl_context: ssl.SSLContext | None = None,
    max_message: int = 65536,
) -> WebSocket:
    """Connect to a ``ws://`` or ``wss://`` URL; the caller bounds the time (cancel scope)."""
    parts = urlsplit(url)
    secure = parts.scheme == "wss"
    host = parts.hostname or "localhost"
    port = parts.port or (443 if secure else 80)
    stream: trio.abc.Stream
    if secure:
        context = ssl_context or ssl.create_default_context()
        stream = await trio.open_ssl_over_tcp_stream(host, port, ssl_context=context)
    else:
        stream = await trio.open_tcp_stream(host, port)
    try:
        if isinstance(stream, trio.SSLStream):
            await _tls_handshake(stream, host)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        netloc = parts.netloc.rsplit("@", 1)[-1]
        key = base64.b64encode(os.urandom(16)).decode()
        conn = h11.Connection(h11.CLIENT)
        await stream.send_all(_request(conn, netloc, target, key, subprotocol))
        subprotocol_given, received = await _answer(stream, conn, key)
        return WebSocket(
            stream,
            client=True,
            subprotocol=subprotocol_given,
            remote=host,
            max_message=max_message,
            received=received,
        )
    except BaseException:
        with trio.move_on_after(1) as scope:
            scope.shield = True
            await stream.aclose()
        raise


async def _tls_handshake(stream: trio.SSLStream[trio.abc.Stream], host: str) -> None:
    """The TLS handshake now, so that a refused certificate is named as such (trio reports
    it as a broken stream at the first write otherwise)."""
    try:
        await stream.do_handshake()
    except trio.BrokenResourceError as exc:
        cause = exc.__cause__
        if isinstance(cause, ssl.SSLCertVerificationError):
            raise HandshakeError(
                f"TLS: the certificate of {host} is not trusted: {cause.verify_message}"
            ) from exc
        if isinstance(cause, ssl.SSLError):
            raise HandshakeError(f"TLS handshake with {host} failed: {cause.reason}") from exc
        raise


def _request(conn: h11.Connection, host: str, target: str, key: str, subprotocol: str) -> bytes:
    headers = [
        ("host", host),
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-key", key),
        ("sec-websocket-version", "13"),
        ("sec-websocket-protocol", subprotocol),
    ]
    data = conn.send(h11.Request(method="GET", target=target, headers=headers)) or b""
    return data + (conn.send(h11.EndOfMessage()) or b"")


async def _answer(
    stream: trio.abc.Stream, conn: h11.Connection, key: str
) -> tuple[str | None, bytes]:
    """The server's answer to the upgrade: the subprotocol it chose and the bytes that came
    after its head; raises :class:`HandshakeError` for anything but a valid 101."""
    status: int | None = None
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise HandshakeError(f"not a WebSocket handshake answer: {exc}", status) from exc
        if event is h11.NEED_DATA:
            data = await stream.receive_some(RECEIVE_SIZE)
            if not data:
                raise HandshakeError("connection closed during the handshake", status)
            conn.receive_data(bytes(data))
        elif isinstance(event, h11.InformationalResponse) and event.status_code == 101:
            headers = {k.lower(): v.decode("latin-1").strip() for k, v in event.headers}
            if headers.get(b"upgrade", "").lower() != "websocket":
                raise HandshakeError("the 101 answer does not upgrade to websocket", 101)
            if headers.get(b"sec-websocket-accept") != accept_key(key):
                raise HandshakeError("the 101 answer has a wrong Sec-WebSocket-Accept", 101)
            return headers.get(b"sec-websocket-protocol"), bytes(conn.trailing_data[0])
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            raise HandshakeError(f"upgrade refused with HTTP {status}", status)
