"""The bytes a load generator needs, without a library in the way: a WebSocket client's
handshake and frames, and HTTP/1.1 requests and responses on keep-alive connections.

Only what the reference server sends is parsed (whole unfragmented frames, responses with
Content-Length); anything else raises :class:`WireError`. Kept I/O-free so that any event
loop (asyncio here; a Mosquitto comparison could reuse the HTTP side) can drive it.
"""

from __future__ import annotations

import base64
import os

TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA


class WireError(Exception):
    pass


def upgrade_request(host: str, path: str, subprotocol: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Protocol: {subprotocol}\r\n\r\n"
    ).encode()


def upgrade_response(buffer: bytearray) -> bool:
    """Consume the server's answer to the upgrade once complete: True when it is there."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return False
    if not buffer.startswith(b"HTTP/1.1 101"):
        raise WireError(bytes(buffer[: buffer.find(b"\r\n")]).decode("latin-1"))
    del buffer[: end + 4]
    return True


def client_frame(payload: bytes, opcode: int = TEXT, mask: bytes | None = None) -> bytes:
    """One masked frame, as a client must send it (RFC 6455 5.3)."""
    mask = mask or os.urandom(4)
    n = len(payload)
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
        b0, b1 = buffer[at], buffer[at + 1]
        if not b0 & 0x80 or b1 & 0x80:
            raise WireError("fragmented or masked frame from the server")
        n, start = b1 & 0x7F, at + 2
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
        frames.append((b0 & 0x0F, bytes(buffer[start : start + n])))
        at = start + n
    del buffer[:at]
    return frames


def http_request(method: str, host: str, target: str, headers: str, body: bytes) -> bytes:
    """``headers``: extra header lines, each ending in CRLF."""
    return (
        f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n{headers}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def http_responses(buffer: bytearray) -> list[tuple[int, bytes]]:
    """The complete (status, body) responses at the start of ``buffer``, consumed."""
    responses = []
    while True:
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            break
        head = bytes(buffer[:end]).lower()
        marker = head.find(b"content-length:")
        if marker < 0:
            raise WireError("response without content-length")
        line_end = head.find(b"\r\n", marker)
        length = int(head[marker + 15 : line_end if line_end >= 0 else len(head)])
        if len(buffer) < end + 4 + length:
            break
        status = int(head[9:12])
        responses.append((status, bytes(buffer[end + 4 : end + 4 + length])))
        del buffer[: end + 4 + length]
    return responses
