"""The suite as an attacker: bytes sent as they are to the target's HTTP port, what came back.

No HTTP library would send a malformed request, so this is a plain socket (TLS where the
target's URL says so, verified like every other connection of the suite). The connection
stays open after the answer, as an attacker's would, until the scenario ends: a target that
stops serving others while such a connection is open is caught doing so. Everything sent
and received is logged on the wire log's ``http raw`` channel.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from conformance.wirelog import WireLog

CHANNEL = "http raw"


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names


@dataclass
class Exchange:
    """What one hostile connection got: the responses in order, and how it ended."""

    responses: list[Response] = field(default_factory=list)
    closed: bool = False  # the target closed (or reset) the connection
    received: bytes = b""
    error: str = ""  # why nothing could be sent

    def shown(self) -> str:
        answers = ", ".join(str(r.status) for r in self.responses) or "no HTTP answer"
        if not self.responses and self.received:
            answers = f"{len(self.received)} bytes that are not an HTTP answer"
        return f"{answers}; the connection {'was closed' if self.closed else 'stayed open'}"


def _parse(buffer: bytes) -> list[Response]:
    """Every response head in ``buffer`` (bodies are skipped by Content-Length)."""
    found = []
    while buffer.startswith(b"HTTP/") and b"\r\n\r\n" in buffer:
        head, _, rest = buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        try:
            status = int(lines[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            break
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        found.append(Response(status, headers))
        if status == 101:
            break
        length = headers.get("content-length", "0")
        buffer = rest[int(length) if length.isdigit() else 0 :]
    return found


class HostileConnection:
    def __init__(self, url: str, wirelog: WireLog, *, ca_file: Path | None, timeout: float
                 ) -> None:  # fmt: skip
        parts = urlsplit(url)
        self.secure = parts.scheme in ("https", "wss")
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (443 if self.secure else 80)
        self.netloc = parts.netloc.rsplit("@", 1)[-1]
        self.path = parts.path or "/"
        self.wirelog = wirelog
        self.ca_file = ca_file
        self.timeout = timeout
        self.sock: socket.socket | None = None

    def send(self, data: bytes, *, wait: float, settle: float = 1.0, secret: str = "") -> Exchange:
        """Connect, send ``data``, read until the target closes, for up to ``wait``
        seconds, or ``settle`` seconds after the first answer (time enough for a close, or
        for a second answer that should not come); the connection stays open otherwise
        (:meth:`close` ends it). ``secret`` (a key in ``data``) is logged as ``***``."""
        shown = data.decode("latin-1")
        if secret:
            shown = shown.replace(secret, "***")
        self.wirelog.add(CHANNEL, "->", shown if len(shown) < 1200 else
                         f"{shown[:1200]}... <{len(data)} bytes>")  # fmt: skip
        exchange = Exchange()
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            if self.secure:
                context = ssl.create_default_context(
                    cafile=str(self.ca_file) if self.ca_file else None
                )
                sock = context.wrap_socket(sock, server_hostname=self.host)
        except OSError as exc:
            exchange.error = f"{type(exc).__name__}: {exc}"
            self.wirelog.add(CHANNEL, "--", f"no connection: {exchange.error}")
            return exchange
        self.sock = sock
        with contextlib.suppress(OSError):  # the target may answer and close mid-request
            sock.sendall(data)
        deadline = time.monotonic() + wait
        answered = False
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except OSError:
                exchange.closed = True
                break
            if not chunk:
                exchange.closed = True
                break
            exchange.received += chunk
            if not answered and (
                not exchange.received.startswith(b"HTTP/"[: len(exchange.received)])
                or _parse(exchange.received)
            ):  # an answer (or bytes that will never be one): a moment more, then judge
                answered = True
                deadline = min(deadline, time.monotonic() + settle)
        exchange.responses = _parse(exchange.received)
        for response in exchange.responses:
            headers = "".join(f"\n{k}: {v}" for k, v in response.headers.items())
            self.wirelog.add(CHANNEL, "<-", f"{response.status}{headers}")
        self.wirelog.add(CHANNEL, "--", exchange.shown())
        return exchange

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None
