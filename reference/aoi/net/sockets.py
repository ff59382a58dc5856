"""The sockets under :class:`aoi.net.http.HttpServer`: listeners that share a port, the
peer's address, how many connections the open-file limit allows, and the lingering close
after an error answer.
"""

from __future__ import annotations

import resource
import socket
from typing import Any

import trio

from .websocket import RECEIVE_SIZE

FD_RESERVE = 64  # descriptors kept from connections: the store, logs, admin
LINGER_S = 2.0  # after an error answer, how long the rest of the request is read away
LINGER_BYTES = 1 << 20


async def reuse_port_listener(host: str, port: int) -> trio.SocketListener:
    """A listener on the first address of ``host`` with ``SO_REUSEPORT``: processes that
    listen on the same port share its connections (the kernel spreads them)."""
    family, kind, proto, _, address = (
        await trio.socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    )[0]
    sock = trio.socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        await sock.bind(address)
        sock.listen(4096)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)


def peer_address(stream: trio.abc.Stream) -> str:
    """The peer's IP address, below any TLS; ``"unknown"`` when the socket cannot say."""
    inner: Any = stream
    while isinstance(inner, trio.SSLStream):
        inner = inner.transport_stream
    try:
        host, *_ = inner.socket.getpeername()
    except (AttributeError, OSError):
        return "unknown"
    return str(host)


def default_max_connections() -> int:
    """Connections the open-file limit allows, less the descriptors kept for the rest."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(1, soft - FD_RESERVE)


async def linger(stream: trio.abc.Stream) -> None:
    """Half-close, then read what the peer still sends, for a while (a lingering close):
    closing a socket with unread bytes resets the connection, and the reset can reach the
    peer before the answer it was sent after."""
    if not isinstance(stream, trio.abc.HalfCloseableStream):
        return
    with trio.move_on_after(LINGER_S):
        await stream.send_eof()
        received = 0
        while received < LINGER_BYTES:
            data = await stream.receive_some(RECEIVE_SIZE)
            if not data:
                return
            received += len(data)
