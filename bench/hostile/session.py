"""A blocking AOI-2 client on a plain socket, for races: it can drop its connection at any
byte (a reset, as a device losing its network does) and open the next one at once."""

from __future__ import annotations

import json
import socket
import struct
import time
from collections import deque
from typing import Any

from bench.wire import CLOSE, PING, TEXT, WireError, client_frame, server_frames, upgrade_request

from . import raw


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
        self.sock.sendall(upgrade_request(f"{address[0]}:{address[1]}", "/aoi", "aoi.v1"))
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise Closed(1006)
            head += chunk
        head, _, rest = head.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise WireError(head.split(b"\r\n")[0].decode("latin-1"))
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
                    self.sock.sendall(client_frame(payload, 0xA))
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
