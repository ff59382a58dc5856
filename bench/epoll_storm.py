"""Open many client sessions at once from one bare epoll loop, for the connection storms.

Everything is prepared before ``start_at``: the sockets (bound to their source address) and
each client's :class:`Handshake`, which knows the bytes it sends. Then every ``connect()`` is
issued; each client sends its first bytes once connected and answers what the server sends
until it says it is served. This costs the generator far less per client than a task and a
transport each, so that a storm measures the server rather than the generator. Used by
:mod:`bench.aoi_storm` (WebSocket upgrade, ``hello``, ``register``) and :mod:`bench.mqtt`
(CONNECT, SUBSCRIBE).
"""

from __future__ import annotations

import array
import contextlib
import errno
import os
import select
import socket
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


class Refused(Exception):
    """The server's answer ends this client's attempt; the message says why, briefly."""


class Handshake(Protocol):
    def connected(self) -> bytes:
        """What to send once the TCP connection is up."""
        ...

    def received(self, data: bytes) -> tuple[bytes, bool]:
        """Bytes from the server: what to send back, and whether the client is now served.
        Raises :class:`Refused` when the attempt failed."""
        ...


def client_socket(source: str | None) -> socket.socket:
    """A non-blocking TCP socket, bound to ``source`` (any port, chosen at connect) if given."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if source is not None:
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((source, 0))
    except BaseException:
        sock.close()
        raise
    return sock


def connect_all(
    address: tuple[str, int],
    prepared: Sequence[tuple[socket.socket, Handshake]],
    start_at: float,
    timeout: float,
) -> tuple[array.array[float], dict[str, int], list[socket.socket]]:
    """Connect every prepared client at ``start_at``: (durations from ``start_at`` until
    each client was served, errors by kind, the served clients' open sockets)."""
    durations = array.array("d")
    errors: dict[str, int] = {}
    done: list[socket.socket] = []
    states: dict[int, tuple[socket.socket, Handshake]] = {}
    connecting: set[int] = set()
    poller = select.epoll()

    def count(why: str) -> None:
        errors[why] = errors.get(why, 0) + 1

    def fail(fd: int, why: str) -> None:
        sock, _ = states.pop(fd)
        with contextlib.suppress(OSError):
            poller.unregister(fd)
        sock.close()
        count(why)

    time.sleep(max(0.0, start_at - time.monotonic()))
    try:
        for sock, handshake in prepared:
            code = sock.connect_ex(address)
            if code not in (0, errno.EINPROGRESS):
                sock.close()
                count(f"connect: {errno.errorcode.get(code, str(code))}")
                continue
            states[sock.fileno()] = (sock, handshake)
            connecting.add(sock.fileno())
            poller.register(sock.fileno(), select.EPOLLOUT)
        deadline = start_at + timeout
        while states:
            now = time.monotonic()
            if now >= deadline:
                for fd in list(states):
                    fail(fd, "timeout")
                break
            for fd, events in poller.poll(min(1.0, deadline - now), 1024):
                if fd not in states:
                    continue
                sock, handshake = states[fd]
                if fd in connecting:
                    connecting.discard(fd)
                    code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if code or events & (select.EPOLLERR | select.EPOLLHUP):
                        fail(fd, f"connect: {os.strerror(code) if code else 'hang-up'}")
                        continue
                    sock.send(handshake.connected())
                    poller.modify(fd, select.EPOLLIN)
                    continue
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError as error:
                    fail(fd, f"recv: {error.strerror}")
                    continue
                if not data:
                    fail(fd, "closed by the server")
                    continue
                try:
                    reply, served = handshake.received(data)
                except Refused as refused:
                    fail(fd, str(refused)[:80])
                    continue
                if reply:
                    sock.send(reply)
                if served:
                    durations.append(time.monotonic() - start_at)
                    poller.unregister(fd)
                    done.append(states.pop(fd)[0])
    finally:
        poller.close()
        for sock, _ in prepared:
            if sock not in done:
                sock.close()
    return durations, errors, done


def tally(replies: Iterable[Mapping[str, Any]]) -> tuple[int, dict[str, int]]:
    """Clients connected, and errors by kind, summed over several generators' replies."""
    connected, errors = 0, Counter[str]()
    for reply in replies:
        connected += reply["connected"]
        errors.update(reply["errors"])
    return connected, dict(errors)
