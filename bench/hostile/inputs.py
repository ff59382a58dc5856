"""Hostile HTTP requests, each with the answer docs/protocol.md (sections 2.1 and 3.2)
gives it: malformed WebSocket upgrades (RFC 6455 4.2.1), HTTP framing errors (RFC 9112),
a smuggled request and wrong methods or paths. Every one is answered with its status and
``error`` code, and every one but the last group closes its connection afterwards.
"""

from __future__ import annotations

from base64 import b64encode
from dataclasses import dataclass

KEY = b64encode(b"0123456789abcdef").decode()  # a valid Sec-WebSocket-Key


@dataclass(frozen=True)
class Input:
    name: str
    group: str  # upgrade | framing | smuggling | routing
    data: bytes
    statuses: frozenset[int]  # what the documentation allows as the answer
    code: str  # the answer's error_response code
    closes: bool = True  # the server closes the connection after its answer


def upgrade(*, method: str = "GET", version: str = "1.1", drop: tuple[str, ...] = (),
            **headers: str) -> bytes:  # fmt: skip
    """An upgrade request to /aoi; ``headers`` replace (``drop`` removes) the valid ones
    (``Sec_WebSocket_Key="x"`` for ``Sec-WebSocket-Key: x``)."""
    fields = {
        "Host": "aoi.example", "Upgrade": "websocket", "Connection": "Upgrade",
        "Sec-WebSocket-Key": KEY, "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Protocol": "aoi.v1",
    }  # fmt: skip
    fields.update({name.replace("_", "-"): value for name, value in headers.items()})
    lines = [f"{method} /aoi HTTP/{version}"]
    lines += [f"{name}: {value}" for name, value in fields.items() if name not in drop]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def request(head: str, body: bytes = b"") -> bytes:
    return head.replace("\n", "\r\n").encode() + b"\r\n" + body


S = frozenset


def inputs(key: str) -> tuple[Input, ...]:
    """Every hostile input; ``key`` is a server app's key (pushes need it to be judged on
    their body)."""
    return (*_FIXED, *_pushes(key))


_FIXED = (
    # --- malformed upgrades: 400, or 426 with Sec-WebSocket-Version: 13 ---
    Input("no Sec-WebSocket-Version", "upgrade", upgrade(drop=("Sec-WebSocket-Version",)),
          S({400}), "invalid_upgrade"),
    Input("Sec-WebSocket-Version: 8", "upgrade", upgrade(Sec_WebSocket_Version="8"),
          S({426}), "upgrade_required"),
    Input("no Sec-WebSocket-Key", "upgrade", upgrade(drop=("Sec-WebSocket-Key",)),
          S({400}), "invalid_upgrade"),
    Input("Sec-WebSocket-Key: x", "upgrade", upgrade(Sec_WebSocket_Key="x"),
          S({400}), "invalid_upgrade"),
    Input("no Connection: Upgrade", "upgrade", upgrade(drop=("Connection",)),
          S({400}), "invalid_upgrade"),
    Input("Upgrade and Connection only", "upgrade",
          upgrade(drop=("Sec-WebSocket-Key", "Sec-WebSocket-Version", "Sec-WebSocket-Protocol")),
          S({400}), "invalid_upgrade"),
    Input("upgrade by POST", "upgrade", upgrade(method="POST"), S({405}), "method_not_allowed"),
    Input("upgrade over HTTP/1.0", "upgrade", upgrade(version="1.0"), S({400}),
          "invalid_upgrade"),
    Input("upgrade without aoi.v1", "upgrade", upgrade(Sec_WebSocket_Protocol="mqtt"),
          S({400}), "unsupported_subprotocol"),
    Input("upgrade with a body", "upgrade", upgrade(Content_Length="5") + b"hello",
          S({400}), "invalid_upgrade"),
    Input("GET /aoi without Upgrade", "upgrade",
          upgrade(drop=("Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version")),
          S({426}), "upgrade_required"),
    # --- HTTP framing: 400 (431 for an oversized head, 501 for a transfer coding) ---
    Input("Content-Length: abc", "framing",
          request("POST /v1/push/x HTTP/1.1\nHost: a\nContent-Length: abc\n"),
          S({400}), "malformed_request"),
    Input("Content-Length: -1", "framing",
          request("POST /v1/push/x HTTP/1.1\nHost: a\nContent-Length: -1\n"),
          S({400}), "malformed_request"),
    Input("two Content-Lengths", "framing",
          request("POST /v1/push/x HTTP/1.1\nHost: a\nContent-Length: 1\nContent-Length: 2\n",
                  b"xx"), S({400}), "malformed_request"),
    Input("Transfer-Encoding: gzip", "framing",
          request("POST /v1/push/x HTTP/1.1\nHost: a\nTransfer-Encoding: gzip\n"),
          S({400}), "malformed_request"),
    Input("Transfer-Encoding: gzip, chunked", "framing",
          request("POST /v1/push/x HTTP/1.1\nHost: a\nTransfer-Encoding: gzip, chunked\n"),
          S({501}), "not_implemented"),
    Input("bad chunk size", "framing",
          request("POST /v1/push/x HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n",
                  b"zz\r\nhello\r\n0\r\n\r\n"), S({400}), "malformed_request"),
    Input("NUL in a header", "framing",
          request("GET /v1/health HTTP/1.1\nHost: a\nX-Note: a\0b\n"), S({400}),
          "malformed_request"),
    Input("no Host", "framing", request("GET /v1/health HTTP/1.1\n"), S({400}),
          "malformed_request"),
    Input("two Hosts", "framing", request("GET /v1/health HTTP/1.1\nHost: a\nHost: b\n"),
          S({400}), "malformed_request"),
    Input("bare LF line endings", "framing", b"GET /v1/health HTTP/1.1\nHost: a\n\n",
          S({400}), "malformed_request"),
    Input("obs-fold header", "framing",
          request("GET /v1/health HTTP/1.1\nHost: a\nX-Note: a\n b\n"), S({400}),
          "malformed_request"),
    Input("unknown method FOO", "framing", request("FOO /v1/health HTTP/1.1\nHost: a\n"),
          S({400}), "malformed_request"),
    Input("HTTP/0.9", "framing", b"GET /v1/health\r\n", S({400}), "malformed_request"),
    Input("HTTP/2.0 request line", "framing", request("GET /v1/health HTTP/2.0\nHost: a\n"),
          S({505}), "http_version_not_supported"),
    Input("not HTTP", "framing", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64),
          S({400}), "malformed_request"),
    Input("32 KB header block", "framing",
          request(f"GET /v1/health HTTP/1.1\nHost: a\nX-Pad: {'a' * 32768}\n"), S({431}),
          "headers_too_large"),
    Input("1 MB header block", "framing",
          request("GET /v1/health HTTP/1.1\nHost: a\n" + "X-Pad: aaaaaaaa\n" * 65536),
          S({431}), "headers_too_large"),
    Input("64 KB of trailer fields", "framing",
          request("POST /v1/push/x HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\n",
                  b"1\r\nx\r\n0\r\nX-Pad: " + b"a" * 65536 + b"\r\n\r\n"), S({431}),
          "headers_too_large"),
    Input("64 KB request line", "framing", request(f"GET /{'a' * 65536} HTTP/1.1\nHost: a\n"),
          S({431}), "headers_too_large"),
    # --- request smuggling (RFC 9112 6.1): refused, and nothing after it is served ---
    Input("Content-Length with Transfer-Encoding", "smuggling",
          request("POST /v1/health HTTP/1.1\nHost: a\nContent-Length: 5\n"
                  "Transfer-Encoding: chunked\n", b"0\r\n\r\n"
                  b"POST /v1/admin/drain HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n"),
          S({400}), "malformed_request"),
    # --- routing: answered, and the connection stays usable ---
    Input("unknown path", "routing", request("GET /nowhere HTTP/1.1\nHost: a\n"), S({404}),
          "not_found", closes=False),
    Input("GET /v1/admin/drain", "routing", request("GET /v1/admin/drain HTTP/1.1\nHost: a\n"),
          S({405}), "method_not_allowed", closes=False),
    Input("DELETE /v1/health", "routing", request("DELETE /v1/health HTTP/1.1\nHost: a\n"),
          S({405}), "method_not_allowed", closes=False),
)  # fmt: skip


def _pushes(key: str) -> tuple[Input, ...]:
    def push(body: bytes) -> bytes:
        return request(
            f"POST /v1/push/x HTTP/1.1\nHost: a\nAuthorization: Bearer {key}\n"
            f"Content-Length: {len(body)}\n", body,
        )  # fmt: skip

    return (
        Input("push body with a lone surrogate", "routing",
              push(b'{"payload":"\\ud800","ttl_s":5}'), S({400}), "invalid_request", False),
        Input("push body nested 20,000 deep", "routing", push(b"[" * 20000 + b"]" * 20000),
              S({400}), "invalid_request", False),
        Input("push body that is not UTF-8", "routing", push(b'{"payload":"\xff","ttl_s":5}'),
              S({400}), "invalid_request", False),
    )  # fmt: skip
