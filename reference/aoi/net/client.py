"""Opening a WebSocket as a client: TCP or TLS, then the wsproto handshake."""

from __future__ import annotations

import ssl
from urllib.parse import urlsplit

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, RejectConnection, RejectData
from wsproto.events import Request as WsRequest
from wsproto.utilities import RemoteProtocolError

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
        ws = WSConnection(ConnectionType.CLIENT)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        netloc = parts.netloc.rsplit("@", 1)[-1]
        await stream.send_all(
            ws.send(WsRequest(host=netloc, target=target, subprotocols=[subprotocol]))
        )
        status: int | None = None
        while True:
            data = await stream.receive_some(RECEIVE_SIZE)
            if not data:
                raise HandshakeError("connection closed during the handshake", status)
            try:
                ws.receive_data(bytes(data))
                events = list(ws.events())
            except RemoteProtocolError as exc:
                raise HandshakeError(f"not a WebSocket handshake answer: {exc}", status) from exc
            for event in events:
                if isinstance(event, AcceptConnection):
                    return WebSocket(
                        stream,
                        ws,
                        subprotocol=event.subprotocol,
                        remote=host,
                        max_message=max_message,
                    )
                if isinstance(event, RejectConnection):
                    status = event.status_code
                    if not event.has_body:
                        raise HandshakeError(f"upgrade refused with HTTP {status}", status)
                elif isinstance(event, RejectData) and event.body_finished:
                    raise HandshakeError(f"upgrade refused with HTTP {status}", status)
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
