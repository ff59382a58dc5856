"""Which requests to a WebSocket path are refused, and how: RFC 6455 section 4.2.1, in order.

Every request to a WebSocket path is an opening handshake or a mistake. The rules are
checked top to bottom and the first that fails answers (status, error code, why, extra
headers); a request that passes them all is a handshake the server may accept. No I/O:
the HTTP layer passes the request's method, version and headers (lower-case names, as
the parser gives them) and writes the answer.
"""

from __future__ import annotations

import binascii
import hashlib
from base64 import b64decode, b64encode
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

WEBSOCKET_VERSION = "13"
ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 1.3
VERSION_HEADER = (("sec-websocket-version", WEBSOCKET_VERSION),)


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    code: str  # the ``error`` of the error_response body
    detail: str
    headers: tuple[tuple[str, str], ...] = ()


def _values(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> list[str]:
    """Every value of the header ``name``, in order (a repeated header: each of them)."""
    return [value.decode("latin-1").strip() for key, value in headers if key == name]


def _tokens(values: Iterable[str], *, fold: bool = True) -> set[str]:
    """The comma-separated tokens of a header's values (lower case when ``fold``)."""
    tokens = {t.strip() for value in values for t in value.split(",") if t.strip()}
    return {t.lower() for t in tokens} if fold else tokens


def _valid_key(values: Sequence[str]) -> bool:
    """One ``Sec-WebSocket-Key``, the base64 of 16 bytes (RFC 6455 4.1, item 7)."""
    if len(values) != 1 or len(values[0]) != 24:
        return False
    try:
        return len(b64decode(values[0], validate=True)) == 16
    except binascii.Error:
        return False


def refusal(
    method: bytes,
    http_version: bytes,
    headers: Sequence[tuple[bytes, bytes]],
    subprotocol: str,
) -> Refusal | None:
    """Why this request is not an acceptable opening handshake offering ``subprotocol``;
    ``None`` when it is one."""
    if method != b"GET":
        return Refusal(
            405, "method_not_allowed", "a WebSocket upgrade is a GET", (("allow", "GET"),)
        )
    if http_version != b"1.1":
        detail = f"a WebSocket upgrade needs HTTP/1.1, not HTTP/{http_version.decode()}"
        return Refusal(400, "invalid_upgrade", detail)
    if "websocket" not in _tokens(_values(headers, b"upgrade")):
        return Refusal(
            426,
            "upgrade_required",
            "this path serves WebSocket only: send Upgrade: websocket",
            (("upgrade", "websocket"), *VERSION_HEADER),
        )
    if "upgrade" not in _tokens(_values(headers, b"connection")):
        return Refusal(400, "invalid_upgrade", "Connection must include Upgrade")
    versions = _values(headers, b"sec-websocket-version")
    if not versions:
        return Refusal(400, "invalid_upgrade", "Sec-WebSocket-Version is missing", VERSION_HEADER)
    if versions != [WEBSOCKET_VERSION]:
        detail = f"WebSocket version {', '.join(versions)} is not supported; use 13"
        return Refusal(426, "upgrade_required", detail, VERSION_HEADER)
    if not _valid_key(_values(headers, b"sec-websocket-key")):
        detail = "Sec-WebSocket-Key must be one base64-encoded 16-byte value"
        return Refusal(400, "invalid_upgrade", detail)
    if _values(headers, b"transfer-encoding") or any(
        v != "0" for v in _values(headers, b"content-length")
    ):
        return Refusal(400, "invalid_upgrade", "a WebSocket upgrade carries no body")
    if subprotocol not in _tokens(_values(headers, b"sec-websocket-protocol"), fold=False):
        detail = f"offer the WebSocket subprotocol {subprotocol}"
        return Refusal(400, "unsupported_subprotocol", detail)
    return None


def accept_key(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` that answers ``Sec-WebSocket-Key: key`` (RFC 6455 4.2.2)."""
    return b64encode(hashlib.sha1(key.encode("latin-1") + ACCEPT_GUID).digest()).decode()


def accepted(key: str, subprotocol: str) -> bytes:
    """The server's 101 answer to an opening handshake that passed :func:`refusal`."""
    return (
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
        f"sec-websocket-accept: {accept_key(key)}\r\n"
        f"sec-websocket-protocol: {subprotocol}\r\n\r\n"
    ).encode("latin-1")
