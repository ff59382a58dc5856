"""HTTP/1.1 requests parsed by llhttp (httptools), without I/O, with this server's limits.

``RequestParser.feed`` takes the peer's bytes; each complete request comes out as a
:class:`Head` (its body included), and the first request that cannot be served as a
:class:`Refusal` (status, ``error`` code, why), after which nothing more is parsed. The
rules llhttp leaves to its user are applied here: a head of at most ``MAX_HEAD`` bytes and
``MAX_HEADERS`` fields (431), HTTP/1.0 or 1.1 only (505), a Host in HTTP/1.1 (400), a body
framed once (RFC 9112 6.1: 400), ``chunked`` as the only transfer coding (501; 400 when it
is not the last), a body of at most ``max_body`` bytes (413), refused from its
Content-Length before a byte of it is read, and a chunked body's framing (chunk sizes,
extensions, trailer fields) of at most ``MAX_HEAD`` bytes beside ``CHUNK_FRAMING`` per chunk
(431). Trailer fields are read and dropped: they never join the request's headers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NoReturn

import httptools

MAX_HEAD = 16384  # bytes of a request head (request line and headers)
MAX_HEADERS = 100
CHUNK_FRAMING = 32  # bytes a chunk may take beside its data: its size line and CRLFs
HTTP_VERSIONS = frozenset({"1.0", "1.1"})
# A request line, checked while its head is still incomplete: "GET /\r\n" (HTTP/0.9) or
# other bytes that will never become an HTTP/1.x head are answered at once, not at the
# head's deadline.
REQUEST_LINE = re.compile(rb"[!-~]+ [!-~]+ HTTP/[0-9]\.[0-9]\r?")


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int
    code: str
    detail: str


@dataclass(slots=True)
class Head:
    """One request as parsed; ``upgrade``: llhttp stopped after it (an Upgrade or CONNECT),
    and ``leftover`` is what came after its head."""

    method: bytes
    target: bytes
    version: str
    headers: list[tuple[bytes, bytes]]  # lower-case names, in order
    body: bytes
    keep_alive: bool
    upgrade: bool = False
    leftover: bytes = b""


HEAD_TOO_LARGE = Refusal(431, "headers_too_large", f"request head over {MAX_HEAD} bytes")
FRAMING_TOO_LARGE = Refusal(
    431, "headers_too_large", f"chunk extensions and trailer fields over {MAX_HEAD} bytes"
)


class _Stop(Exception):
    """Raised in a callback to stop llhttp; the refusal is kept by the parser (httptools
    reports an exception from some callbacks as its own "callback error")."""


class RequestParser:
    """The requests on one connection, in order (see the module)."""

    __slots__ = (
        "_body", "_chunks", "_framing", "_head_size", "_headers", "_line", "_parser", "_pending",
        "_refusal", "_size", "_url",
        "continue_expected", "done", "head_done", "max_body", "ready", "started",
    )  # fmt: skip

    def __init__(self, max_body: int) -> None:
        self.max_body = max_body
        self._parser = httptools.HttpRequestParser(self)
        self.ready: list[Head | Refusal] = []
        self.done = False  # a refusal or an upgrade ended parsing
        self._refusal: Refusal | None = None  # the one a callback stopped llhttp for
        self._pending = 0  # bytes of the head under way
        # The head's start, until its request line was checked; None: not checked here (a
        # request that began inside the bytes that ended the one before is left to llhttp).
        self._line: bytes | None = b""
        self._reset()

    def _reset(self) -> None:
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_size = 0
        self._body: list[bytes] = []
        self._size = 0
        self._chunks = 0  # chunks begun, in a chunked body
        self._framing = 0  # bytes of the body phase that were not body: chunk framing, trailers
        self.started = False  # part of a request received
        self.head_done = False  # its head complete, its body under way
        self.continue_expected = False  # it asked for 100 Continue and has sent no body yet

    def feed(self, data: bytes) -> None:
        """Parse ``data``; what completes lands in ``ready``. ``b""``: the peer closed."""
        if self.done:
            return
        if not data:
            if self.started:
                self._end(Refusal(400, "malformed_request", "the request ended early"))
            return
        body_phase, body, size = self.head_done, self._body, self._size
        if not self.started:  # these bytes begin a request: its line is checked as it comes
            self._line = b""
        try:
            if not body_phase:
                self._check_head(data)
            self._parser.feed_data(data)
            if body_phase and self._body is body:  # all of data went to this request's body
                self._check_framing(len(data) - (self._size - size))
        except httptools.HttpParserUpgrade as upgrade:
            self._upgrade(data[upgrade.args[0] :])
        except (_Stop, httptools.HttpParserError) as exc:
            self._end(self._refusal or self._error(str(exc)))
        else:
            if self.started and not self.head_done and self._pending > MAX_HEAD:
                self._end(HEAD_TOO_LARGE)

    def _check_head(self, data: bytes) -> None:
        """Bytes of a head still incomplete: within the limit, its request line HTTP/1.x."""
        self._pending += len(data)
        line = self._line
        if line is None:
            return
        line += data
        first, newline, _ = line.lstrip(b"\r\n").partition(b"\n")
        if not newline:
            self._line = line if len(line) < MAX_HEAD else None
        elif REQUEST_LINE.fullmatch(first):
            self._line = None
        else:
            self._stop(Refusal(400, "malformed_request", "not an HTTP/1.1 request line"))

    def _check_framing(self, framing: int) -> None:
        """What a request's body phase took beside its body stays within its limit."""
        self._framing += framing
        if self._framing > MAX_HEAD + CHUNK_FRAMING * self._chunks:
            self._stop(FRAMING_TOO_LARGE)

    def _stop(self, refusal: Refusal) -> NoReturn:
        self._refusal = refusal
        raise _Stop

    def _end(self, refusal: Refusal) -> None:
        self.ready.append(refusal)
        self.done = True

    def _upgrade(self, leftover: bytes) -> None:
        self.done = True
        if self.ready and isinstance(self.ready[-1], Head):
            head = self.ready[-1]
            head.upgrade, head.leftover, head.keep_alive = True, leftover, False

    def _error(self, reason: str) -> Refusal:
        if reason == "Invalid HTTP version":
            return Refusal(505, "http_version_not_supported", "only HTTP/1.1 is served")
        if "Content-Length can't be present with Transfer-Encoding" in reason or (
            "Transfer-Encoding can't be present with Content-Length" in reason
        ):
            detail = "Content-Length and Transfer-Encoding together frame the body twice"
            return Refusal(400, "malformed_request", detail)
        return Refusal(400, "malformed_request", f"not a valid HTTP/1.1 request: {reason}")

    # --- llhttp's callbacks ---

    def on_message_begin(self) -> None:
        self.started = True

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)
        if self._head_size > MAX_HEAD:
            self._stop(HEAD_TOO_LARGE)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self.head_done:  # a trailer field: its bytes count in _check_framing
            return
        headers = self._headers
        headers.append((name.lower(), value))
        self._head_size += len(name) + len(value) + 4
        if self._head_size > MAX_HEAD or len(headers) > MAX_HEADERS:
            self._stop(HEAD_TOO_LARGE)

    def on_headers_complete(self) -> None:
        self.head_done = True
        self._pending = 0
        self._line = None
        parser = self._parser
        version = parser.get_http_version()
        if version not in HTTP_VERSIONS:
            self._stop(
                Refusal(
                    505, "http_version_not_supported", f"HTTP/{version} is not served; use HTTP/1.1"
                )
            )
        names = [name for name, _ in self._headers]
        hosts = names.count(b"host")
        if hosts > 1 or (version == "1.1" and not hosts):
            self._stop(Refusal(400, "malformed_request", "a request needs one Host (HTTP/1.1)"))
        if b"transfer-encoding" in names:
            self._check_codings(b"content-length" in names)
        for name, value in self._headers:
            if name == b"content-length" and value.strip().isdigit():
                if int(value) > self.max_body:
                    detail = f"body over {self.max_body} bytes"
                    self._stop(Refusal(413, "payload_too_large", detail))
            elif name == b"expect" and value.strip().lower() == b"100-continue":
                self.continue_expected = True

    def _check_codings(self, with_length: bool) -> None:
        if with_length:
            detail = "Content-Length and Transfer-Encoding together frame the body twice"
            self._stop(Refusal(400, "malformed_request", detail))
        values = [value for name, value in self._headers if name == b"transfer-encoding"]
        codings = [c.strip().lower() for c in b",".join(values).split(b",")]
        if codings[-1] != b"chunked":  # RFC 9112 6.3: the body's length cannot be known
            detail = "a Transfer-Encoding must end with chunked"
            self._stop(Refusal(400, "malformed_request", detail))
        if len(codings) > 1:
            detail = "only Transfer-Encoding: chunked is supported"
            self._stop(Refusal(501, "not_implemented", detail))

    def on_chunk_header(self) -> None:
        self._chunks += 1

    def on_body(self, body: bytes) -> None:
        self.continue_expected = False
        self._size += len(body)
        if self._size > self.max_body:
            self._stop(Refusal(413, "payload_too_large", f"body over {self.max_body} bytes"))
        self._body.append(body)

    def on_message_complete(self) -> None:
        parser = self._parser
        body = self._body
        self.ready.append(
            Head(
                parser.get_method(),
                self._url,
                parser.get_http_version(),
                self._headers,
                body[0] if len(body) == 1 else b"".join(body),
                parser.should_keep_alive(),
            )
        )
        self._reset()
