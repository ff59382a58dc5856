"""WebSocket frames (RFC 6455 section 5) without I/O: a reader for the peer's and a writer
for ours.

The reader checks every rule of the framing a peer can break (reserved bits, opcodes,
masking, the shortest length encoding, control frames whole and small, continuation
frames only inside a fragmented message) and unmasks with websockets' C ``apply_mask``.
A data frame's payload comes out in pieces as its bytes arrive, so a frame too large for
its reader is never buffered whole. The writer frames a payload in one go: unmasked from
a server, masked from a client. A frame this side built is not parsed again unless
``CHECK_OUTGOING`` (environment ``AOI_CHECK_OUTGOING=1``, for debugging) asks for it.
"""

from __future__ import annotations

import os
import struct

from websockets.exceptions import ProtocolError
from websockets.frames import Close
from websockets.speedups import apply_mask

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
FAILED = -1  # a piece that stands for the peer's framing error (see Reader.error)
NO_STATUS = 1005  # a close frame without a code
MAX_CONTROL = 125
CHECK_OUTGOING = os.environ.get("AOI_CHECK_OUTGOING") == "1"

Piece = tuple[int, bool, bytes]  # (opcode of the message or control frame, final, payload)


class FrameError(Exception):
    """The peer broke the framing; ``code`` is the close code to answer with."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


def frame(opcode: int, payload: bytes, *, mask: bool = False) -> bytes:
    """One final frame carrying ``payload`` (masked with a random key when ``mask``)."""
    n = len(payload)
    bit = 0x80 if mask else 0
    if n < 126:
        head = bytes((0x80 | opcode, bit | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, bit | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, bit | 127)) + n.to_bytes(8, "big")
    if mask:
        key = os.urandom(4)
        data = head + key + apply_mask(payload, key)
    else:
        data = head + payload
    if CHECK_OUTGOING:
        check(data, masked=mask)
    return data


def close_payload(code: int, reason: str = "") -> bytes:
    """A close frame's payload: the code and as much of the reason as a control frame holds
    (none for ``NO_STATUS``)."""
    if code == NO_STATUS:
        return b""
    encoded = reason.encode("utf-8")[: MAX_CONTROL - 2]
    return code.to_bytes(2, "big") + encoded.decode("utf-8", "ignore").encode("utf-8")


def parse_close(payload: bytes) -> tuple[int, str]:
    """The code and reason of a received close frame (``NO_STATUS`` when it has none)."""
    try:
        close = Close.parse(payload)
    except ProtocolError as exc:
        raise FrameError(1002, str(exc)) from exc
    except UnicodeDecodeError as exc:
        raise FrameError(1007, "the close reason is not UTF-8") from exc
    return int(close.code), close.reason


def check(data: bytes, *, masked: bool) -> None:
    """Raise unless ``data`` is whole frames a peer would accept (the debugging check)."""
    reader = Reader(masked=masked)
    pieces = reader.feed(data)
    if reader.error is not None or reader.pending():
        raise AssertionError(f"a frame this side built is broken: {reader.error}")
    for opcode, _final, payload in pieces:
        if opcode == TEXT:
            payload.decode("utf-8")
        elif opcode == CLOSE:
            parse_close(payload)


class Reader:
    """The peer's frames, parsed from its bytes as they come.

    ``feed`` returns pieces: for data, the message's opcode (a continuation frame carries
    its message's), whether the message ends with it, and payload bytes (a frame's in one or
    more pieces); a control frame is one piece. At the first framing error the pieces before
    it come out, then one ``FAILED`` piece, and ``error`` says what it was; nothing after it
    is read.
    """

    __slots__ = ("_buffer", "_fin", "_key", "_left", "_masked", "_message", "error")

    def __init__(self, *, masked: bool) -> None:
        self._masked = masked  # the peer is a client: its frames must be masked
        self._buffer = b""
        self._message = 0  # the opcode of the data message under way (0: none)
        self._left = 0  # payload bytes of the current data frame still to come
        self._key = b""  # its mask, turned to the next byte's
        self._fin = False  # whether the current data frame ends its message
        self.error: FrameError | None = None

    def pending(self) -> bool:
        """Whether part of a frame is still to come."""
        return bool(self._buffer or self._left)

    def feed(self, data: bytes) -> list[Piece]:
        if self.error is not None:
            return []
        buf = self._buffer + data if self._buffer else data
        out: list[Piece] = []
        try:
            pos = self._parse(buf, out)
        except FrameError as exc:
            self.error = exc
            self._buffer = b""
            out.append((FAILED, True, b""))
            return out
        self._buffer = buf[pos:] if pos < len(buf) else b""
        return out

    def _parse(self, buf: bytes, out: list[Piece]) -> int:
        pos, end = 0, len(buf)
        while True:
            if self._left:  # inside a data frame's payload
                take = min(self._left, end - pos)
                if not take:
                    return pos
                piece = buf[pos : pos + take]
                pos += take
                self._left -= take
                key = self._key
                if key:
                    piece = apply_mask(piece, key)
                    turn = take % 4
                    self._key = key[turn:] + key[:turn]
                self._piece(out, piece)
                continue
            if end - pos < 2:
                return pos
            first, second = buf[pos], buf[pos + 1]
            opcode, length, head = first & 0x0F, second & 0x7F, 2
            if first & 0x70:
                raise FrameError(1002, "reserved bits set without an extension")
            if bool(second & 0x80) != self._masked:
                raise FrameError(1002, "a client must mask its frames and a server must not")
            if length == 126:
                if end - pos < 4:
                    return pos
                (length,) = struct.unpack_from("!H", buf, pos + 2)
                head = 4
                if length < 126:
                    raise FrameError(1002, "a frame length not in its shortest form")
            elif length == 127:
                if end - pos < 10:
                    return pos
                (length,) = struct.unpack_from("!Q", buf, pos + 2)
                head = 10
                if length < 65536 or length >> 63:
                    raise FrameError(1002, "a frame length not in its shortest form")
            if self._masked:
                head += 4
            if end - pos < head:
                return pos
            key = buf[pos + head - 4 : pos + head] if self._masked else b""
            fin = bool(first & 0x80)
            if opcode >= CLOSE:
                if opcode > PONG:
                    raise FrameError(1002, f"unknown opcode {opcode}")
                if not fin or length > MAX_CONTROL:
                    raise FrameError(1002, "a control frame must be whole and at most 125 bytes")
                if end - pos < head + length:
                    return pos
                payload = buf[pos + head : pos + head + length]
                out.append((opcode, True, apply_mask(payload, key) if key else payload))
                pos += head + length
                continue
            if opcode == CONTINUATION:
                if not self._message:
                    raise FrameError(1002, "a continuation frame without a message")
            elif opcode in (TEXT, BINARY):
                if self._message:
                    raise FrameError(1002, "a new message inside a fragmented one")
                self._message = opcode
            else:
                raise FrameError(1002, f"unknown opcode {opcode}")
            pos += head
            self._fin, self._key, self._left = fin, key, length
            if not length:
                self._piece(out, b"")

    def _piece(self, out: list[Piece], payload: bytes) -> None:
        final = self._fin and not self._left
        out.append((self._message, final, payload))
        if final:
            self._message = 0
