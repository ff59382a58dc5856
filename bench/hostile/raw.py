"""Bytes to a server and what came back, on a plain socket: nothing in the way that would
refuse to send a malformed request or hide how the server answered it.

:func:`exchange` sends a request (at once, or a piece at a time) and reads until the server
closes or a wait runs out; :class:`Answer` holds every HTTP response found in what came back
(a second one after a request that framed its body twice is a smuggled request served) and
whether the connection was closed, reset or left open.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names; a repeated header: the last one
    body: bytes


@dataclass
class Answer:
    responses: list[Response] = field(default_factory=list)
    closed: bool = False  # the server closed the connection (EOF or reset)
    reset: bool = False
    seconds: float = 0.0  # from the first byte sent to the close (or the end of the wait)
    error: str = ""  # why nothing could be sent (the connection was refused, say)
    rest: bytes = b""  # bytes after the last complete response (a WebSocket's, after 101)

    @property
    def status(self) -> int | None:
        return self.responses[0].status if self.responses else None

    @property
    def first(self) -> Response:
        return self.responses[0]

    def shown(self) -> str:
        """One line for a report."""
        statuses = ",".join(str(r.status) for r in self.responses) or "no answer"
        end = "reset" if self.reset else "closed" if self.closed else "open"
        return f"{statuses} ({end} after {self.seconds:.2f} s)"


def responses(buffer: bytes, *, head: bool = False) -> tuple[list[Response], bytes]:
    """The complete responses at the start of ``buffer``, and what follows them; parsing
    stops after a 101 (the bytes after it are the new protocol's). ``head``: they answer
    HEAD requests (no body, whatever Content-Length says)."""
    found: list[Response] = []
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end < 0 or not buffer.startswith(b"HTTP/"):
            return found, buffer
        lines = buffer[:end].decode("latin-1").split("\r\n")
        try:
            status = int(lines[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            return found, buffer
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = 0 if head else int(headers.get("content-length", "0") or 0)
        if status == 101:
            found.append(Response(status, headers, b""))
            return found, buffer[end + 4 :]
        if len(buffer) < end + 4 + length:
            return found, buffer
        found.append(Response(status, headers, buffer[end + 4 : end + 4 + length]))
        buffer = buffer[end + 4 + length :]


def connect(
    address: tuple[str, int], source: str | None = None, timeout: float = 5.0
) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    if source is not None:
        sock.bind((source, 0))
    sock.connect(address)
    return sock


def exchange(
    address: tuple[str, int],
    data: bytes | Sequence[bytes],
    *,
    wait: float = 5.0,
    pause: float = 0.0,
    source: str | None = None,
    until_closed: bool = True,
) -> Answer:
    """Send ``data`` (pieces ``pause`` seconds apart), then read for up to ``wait`` seconds:
    until the server closes, or (``until_closed=False``) until one response is complete."""
    pieces = [data] if isinstance(data, bytes) else list(data)
    head = b"".join(pieces).startswith(b"HEAD ")
    answer = Answer()
    try:
        sock = connect(address, source)
    except OSError as exc:
        answer.error = f"connect: {exc}"
        return answer
    started = time.monotonic()
    buffer = b""
    with sock:
        try:
            for n, piece in enumerate(pieces):
                if n and pause:
                    time.sleep(pause)
                sock.sendall(piece)
        except OSError:  # the server answered and closed before we were done
            pass
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                answer.closed = answer.reset = True
                break
            if not chunk:
                answer.closed = True
                break
            buffer += chunk
            if not until_closed and responses(buffer, head=head)[0]:
                break
    answer.seconds = time.monotonic() - started
    answer.responses, answer.rest = responses(buffer, head=head)
    return answer
