"""The HTTP messages of :mod:`aoi.net.http`: the :class:`Request` a handler gets, with its
:class:`Headers`, and the :class:`Response` it gives back, which encodes itself.

Answers are built often and alike, so the start of each head (status line, content type) is
made once per status and type and kept; with ``frames.CHECK_OUTGOING`` every encoded answer
is checked against the grammar of a status line and header fields before it is sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from . import frames


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    query: str
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    remote: str


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = field(default=())

    @classmethod
    def json(
        cls, status: int, document: Any, headers: tuple[tuple[str, str], ...] = ()
    ) -> Response:
        body = json.dumps(document, separators=(",", ":")).encode()
        return cls(status, body, "application/json", headers)

    @classmethod
    def error(
        cls,
        status: int,
        code: str,
        detail: str,
        headers: tuple[tuple[str, str], ...] = (),
        **extra: Any,
    ) -> Response:
        return cls.json(status, {"error": code, "detail": detail[:1024], **extra}, headers)

    def raw(self) -> bytes:
        """The whole answer as bytes, closing the connection."""
        return self.encode(close=True)

    def encode(self, close: bool = False, head_only: bool = False) -> bytes:
        """The answer as bytes: its status line and first headers prebuilt (see
        ``_prefix``), ``connection: close`` when ``close``, no body when ``head_only``."""
        body = self.body
        key = (self.status, self.content_type)
        prefix = _PREFIXES.get(key) or _prefix(*key)
        parts = [prefix, str(len(body)).encode(), b"\r\n"]
        for name, value in self.headers:
            parts.append(f"{name}: {value}\r\n".encode("latin-1"))
        parts.append(b"connection: close\r\n\r\n" if close else b"\r\n")
        if not head_only:
            parts.append(body)
        data = b"".join(parts)
        if frames.CHECK_OUTGOING:
            _check_answer(data)
        return data


_REASONS = {status.value: status.phrase for status in HTTPStatus}
_PREFIXES: dict[tuple[int, str], bytes] = {}


def _prefix(status: int, content_type: str) -> bytes:
    """A response's head up to its Content-Length value, kept for the next one alike."""
    reason = _REASONS.get(status, "")
    prefix = f"HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: "
    data = prefix.encode("latin-1")
    if len(_PREFIXES) < 256:
        _PREFIXES[(status, content_type)] = data
    return data


_FIELD = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+: [\t\x20-\x7e\x80-\xff]*")


def _check_answer(data: bytes) -> None:
    """The debugging check of an answer this server built: a status line, then fields."""
    head, _, _ = data.partition(b"\r\n\r\n")
    line, *fields = head.split(b"\r\n")
    if not re.fullmatch(rb"HTTP/1\.1 [1-5][0-9][0-9] [\t\x20-\x7e]*", line):
        raise AssertionError(f"a broken status line: {line!r}")
    for field_line in fields:
        if not _FIELD.fullmatch(field_line):
            raise AssertionError(f"a broken header field: {field_line!r}")


class Headers(Mapping[str, str]):
    """A request's headers by lower-case name, decoded only when asked for (most handlers
    look at one header, or none). A repeated header: the last one wins."""

    __slots__ = ("_decoded", "_raw")

    def __init__(self, raw: Sequence[tuple[bytes, bytes]]) -> None:
        self._raw = raw  # the parser's: names already lower case
        self._decoded: dict[str, str] | None = None

    def _all(self) -> dict[str, str]:
        if self._decoded is None:
            self._decoded = {k.decode("latin-1"): v.decode("latin-1") for k, v in self._raw}
        return self._decoded

    def get(self, name: str, default: Any = None) -> Any:
        if self._decoded is not None:
            return self._decoded.get(name, default)
        wanted = name.encode("latin-1", "replace")
        found = None
        for k, v in self._raw:
            if k == wanted:
                found = v
        return default if found is None else found.decode("latin-1")

    def __getitem__(self, name: str) -> str:
        return self._all()[name]

    def __contains__(self, name: object) -> bool:
        return name in self._all()

    def __iter__(self) -> Iterator[str]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())

    def __repr__(self) -> str:
        return f"Headers({self._all()!r})"
