"""A blocking AOI-2 client on a plain socket, for races: it can drop its connection at any
byte (a reset, as a device losing its network does) and open the next one at once. The
WebSocket framing it needs is here too (:func:`client_frame`, :func:`server_frames`): a
client's masked frames, the server's whole unfragmented ones."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import time
from collections import deque
from typing import Any

from . import raw

TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA
SOURCES = [f"127.0.0.{n}" for n in range(2, 10)]  # loopback sources, spread over as a fleet


def upgrade_request(host: str, path: str = "/aoi", subprotocol: str = "aoi.v1") -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: {subprotocol}\r\n\r\n"
    ).encode()


def client_frame(payload: bytes, opcode: int = TEXT) -> bytes:
    """One masked frame, as a client must send it (RFC 6455 5.3)."""
    mask, n = os.urandom(4), len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    keys = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "little") ^ int.from_bytes(keys, "little")).to_bytes(
        n, "little"
    )
    return head + mask + masked


def server_frames(buffer: bytearray) -> list[tuple[int, bytes]]:
    """The complete (opcode, payload) frames at the start of ``buffer``, consumed."""
    frames = []
    at, size = 0, len(buffer)
    while size - at >= 2:
        n, start = buffer[at + 1] & 0x7F, at + 2
        if n == 126:
            if size - at < 4:
                break
            n, start = int.from_bytes(buffer[at + 2 : at + 4], "big"), at + 4
        elif n == 127:
            if size - at < 10:
                break
            n, start = int.from_bytes(buffer[at + 2 : at + 10], "big"), at + 10
        if size < start + n:
            break
        frames.append((buffer[at] & 0x0F, bytes(buffer[start : start + n])))
        at = start + n
    del buffer[:at]
    return frames


class Closed(Exception):
    """The server closed the connection (``code``: its close code, 1006 without one)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"closed {code}")
        self.code = code


class Session:
    def __init__(self, address: tuple[str, int], *, source: str | None = None) -> None:
        self.sock = raw.connect(address, source)
        self.buffer = bytearray()
        self.frames: deque[tuple[int, bytes]] = deque()  # parsed, not yet taken
        self.sock.sendall(upgrade_request(f"{address[0]}:{address[1]}"))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise Closed(1006)
            head += chunk
        head, _, rest = head.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise Closed(1006)  # refused: no WebSocket
        self.buffer += rest

    def send(self, **frame: Any) -> None:
        self.send_raw(json.dumps(frame).encode())

    def send_raw(self, payload: bytes, opcode: int = TEXT) -> None:
        self.sock.sendall(client_frame(payload, opcode))

    def receive(self, timeout: float = 5.0) -> dict[str, Any]:
        """The next AOI-2 message (pings are answered); :class:`Closed` at the close."""
        deadline = time.monotonic() + timeout
        while True:
            self.frames.extend(server_frames(self.buffer))
            while self.frames:
                opcode, payload = self.frames.popleft()
                if opcode == TEXT:
                    message: dict[str, Any] = json.loads(payload)
                    return message
                if opcode == CLOSE:
                    raise Closed(struct.unpack("!H", payload[:2])[0] if payload else 1005)
                if opcode == PING:
                    self.sock.sendall(client_frame(payload, PONG))
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no message from the server")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise Closed(1006)
            self.buffer += chunk

    def hello(self, client: int, session: str | None = None) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": "hello", "version": 1, "client_id": f"dev-{client}",
                                 "credential": f"secret-{client}"}  # fmt: skip
        if session is not None:
            frame["session"] = session
        self.send(**frame)
        return self.receive()

    def abort(self) -> None:
        """Drop the connection with a reset: no close frame, no FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *_: object) -> None:
        self.sock.close()
