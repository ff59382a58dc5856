"""An MQTT 5 codec in Python, and the payload the Mosquitto benchmark pushes: what the
tests check the load generator's MQTT (bench/loadgen.c) with, written apart from it.

Encoders and parsers of CONNECT, CONNACK, SUBSCRIBE, SUBACK, PUBLISH, PUBACK, PINGREQ, PINGRESP
and DISCONNECT of MQTT 5.0, with their variable byte integer, string and property helpers; a
:class:`PacketReader` that splits a byte stream into packets; and the payload of a push, a send
stamp padded as the generator pads its pushes (:func:`make_payload`, :func:`read_stamp`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple

# --- constants ---------------------------------------------------------------------------

CONNECT, CONNACK, PUBLISH, PUBACK = 1, 2, 3, 4
SUBSCRIBE, SUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 12, 13, 14

MESSAGE_EXPIRY_INTERVAL = 0x02
SESSION_EXPIRY_INTERVAL = 0x11
RECEIVE_MAXIMUM = 0x21
REASON_STRING = 0x1F
USER_PROPERTY = 0x26

PROPERTY_TYPES: dict[int, str] = {
    0x01: "byte", 0x02: "u32", 0x03: "str", 0x08: "str", 0x09: "bin", 0x0B: "varint",
    0x11: "u32", 0x12: "str", 0x13: "u16", 0x15: "str", 0x16: "bin", 0x17: "byte",
    0x18: "u32", 0x19: "byte", 0x1A: "str", 0x1C: "str", 0x1F: "str", 0x21: "u16",
    0x22: "u16", 0x23: "u16", 0x24: "byte", 0x25: "byte", 0x26: "pair", 0x27: "u32",
    0x28: "byte", 0x29: "byte", 0x2A: "byte",
}  # fmt: skip

KEEPALIVE_S = 270  # CONNECT's keepalive; the clients ping at half of it


# --- codec -------------------------------------------------------------------------------


class MalformedPacket(ValueError):
    """Bytes that are not a valid MQTT 5 packet."""


def encode_varint(value: int) -> bytes:
    """Variable Byte Integer (MQTT 5, 1.5.5)."""
    if not 0 <= value <= 268_435_455:
        raise ValueError(f"variable byte integer out of range: {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(data: bytes, pos: int) -> tuple[int, int] | None:
    """(value, position after it), or None when ``data`` ends before the integer does."""
    value = 0
    for index in range(4):
        if pos + index >= len(data):
            return None
        byte = data[pos + index]
        value |= (byte & 0x7F) << (7 * index)
        if byte < 0x80:
            return value, pos + index + 1
    raise MalformedPacket("variable byte integer longer than 4 bytes")


def encode_string(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    if len(raw) > 0xFFFF:
        raise ValueError("string longer than 65535 bytes")
    return len(raw).to_bytes(2, "big") + raw


def _read_string(data: bytes, pos: int, end: int) -> tuple[bytes, int]:
    if pos + 2 > end:
        raise MalformedPacket("string length beyond the packet")
    stop = pos + 2 + int.from_bytes(data[pos : pos + 2], "big")
    if stop > end:
        raise MalformedPacket("string beyond the packet")
    return bytes(data[pos + 2 : stop]), stop


def encode_properties(properties: Iterable[tuple[int, Any]] = ()) -> bytes:
    """Property list with its length prefix (MQTT 5, 2.2.2)."""
    out = bytearray()
    for identifier, value in properties:
        kind = PROPERTY_TYPES[identifier]
        out.append(identifier)
        if kind == "byte":
            out.append(value)
        elif kind == "u16":
            out += value.to_bytes(2, "big")
        elif kind == "u32":
            out += value.to_bytes(4, "big")
        elif kind == "varint":
            out += encode_varint(value)
        elif kind in ("str", "bin"):
            out += encode_string(value)
        else:  # pair
            out += encode_string(value[0]) + encode_string(value[1])
    return encode_varint(len(out)) + bytes(out)


def decode_properties(data: bytes, pos: int, end: int) -> tuple[dict[int, Any], int]:
    """(properties, position after them); user properties are a list of (name, value)."""
    decoded = decode_varint(data, pos)
    if decoded is None:
        raise MalformedPacket("property length beyond the packet")
    length, pos = decoded
    stop = pos + length
    if stop > end:
        raise MalformedPacket("properties beyond the packet")
    properties: dict[int, Any] = {}
    while pos < stop:
        identifier = data[pos]
        pos += 1
        kind = PROPERTY_TYPES.get(identifier)
        value: Any
        if kind is None:
            raise MalformedPacket(f"unknown property 0x{identifier:02x}")
        if kind == "byte":
            value, pos = data[pos], pos + 1
        elif kind == "u16":
            value, pos = int.from_bytes(data[pos : pos + 2], "big"), pos + 2
        elif kind == "u32":
            value, pos = int.from_bytes(data[pos : pos + 4], "big"), pos + 4
        elif kind == "varint":
            decoded = decode_varint(data, pos)
            if decoded is None:
                raise MalformedPacket("property beyond the packet")
            value, pos = decoded
        elif kind == "bin":
            value, pos = _read_string(data, pos, stop)
        elif kind == "str":
            raw, pos = _read_string(data, pos, stop)
            value = raw.decode()
        else:
            name, pos = _read_string(data, pos, stop)
            text, pos = _read_string(data, pos, stop)
            properties.setdefault(identifier, []).append((name.decode(), text.decode()))
            continue
        if pos > stop:
            raise MalformedPacket("property beyond the property list")
        properties[identifier] = value
    return properties, stop


def packet(first_byte: int, body: bytes) -> bytes:
    """Fixed header + body."""
    return bytes((first_byte,)) + encode_varint(len(body)) + body


def encode_connect(
    client_id: str,
    *,
    username: str | None = None,
    password: str | None = None,
    keepalive: int = KEEPALIVE_S,
    clean_start: bool = True,
    session_expiry: int = 0,
    receive_maximum: int | None = None,
) -> bytes:
    flags = (0x02 if clean_start else 0) | (0x80 if username is not None else 0)
    flags |= 0x40 if password is not None else 0
    properties: list[tuple[int, Any]] = []
    if session_expiry:
        properties.append((SESSION_EXPIRY_INTERVAL, session_expiry))
    if receive_maximum is not None:
        properties.append((RECEIVE_MAXIMUM, receive_maximum))
    body = b"\x00\x04MQTT\x05" + bytes((flags,)) + keepalive.to_bytes(2, "big")
    body += encode_properties(properties) + encode_string(client_id)
    if username is not None:
        body += encode_string(username)
    if password is not None:
        body += encode_string(password)
    return packet(CONNECT << 4, body)


def encode_subscribe(packet_id: int, topic: str, qos: int = 1) -> bytes:
    body = packet_id.to_bytes(2, "big") + b"\x00" + encode_string(topic) + bytes((qos,))
    return packet(SUBSCRIBE << 4 | 0x02, body)


def encode_publish(
    topic: str | bytes,
    payload: bytes,
    *,
    qos: int = 1,
    packet_id: int = 0,
    message_expiry: int | None = None,
    retain: bool = False,
    dup: bool = False,
) -> bytes:
    first = PUBLISH << 4 | qos << 1 | (0x08 if dup else 0) | (0x01 if retain else 0)
    body = encode_string(topic)
    if qos:
        body += packet_id.to_bytes(2, "big")
    expiry = [(MESSAGE_EXPIRY_INTERVAL, message_expiry)] if message_expiry is not None else []
    return packet(first, body + encode_properties(expiry) + payload)


def encode_puback(packet_id: int) -> bytes:
    """PUBACK with reason Success, which MQTT 5 lets the sender leave out (3.4.2.1)."""
    return b"\x40\x02" + packet_id.to_bytes(2, "big")


PINGREQ_PACKET = b"\xc0\x00"


def encode_disconnect(reason: int = 0, session_expiry: int | None = None) -> bytes:
    if reason == 0 and session_expiry is None:
        return b"\xe0\x00"
    properties = [(SESSION_EXPIRY_INTERVAL, session_expiry)] if session_expiry is not None else []
    return packet(DISCONNECT << 4, bytes((reason,)) + encode_properties(properties))


class Packet(NamedTuple):
    type: int
    flags: int
    body: bytes


class PacketReader:
    """Splits a byte stream into packets."""

    def __init__(self, max_size: int = 1 << 20) -> None:
        self._rest = b""
        self._max_size = max_size

    def feed(self, data: bytes) -> list[Packet]:
        data = self._rest + data if self._rest else data
        packets: list[Packet] = []
        pos, size = 0, len(data)
        while size - pos >= 2:
            decoded = decode_varint(data, pos + 1)
            if decoded is None:
                break
            length, start = decoded
            if length > self._max_size:
                raise MalformedPacket(f"packet of {length} bytes")
            end = start + length
            if end > size:
                break
            packets.append(Packet(data[pos] >> 4, data[pos] & 0x0F, data[start:end]))
            pos = end
        self._rest = data[pos:]
        return packets


class Connack(NamedTuple):
    session_present: bool
    reason_code: int
    properties: dict[int, Any]


class Suback(NamedTuple):
    packet_id: int
    properties: dict[int, Any]
    reason_codes: list[int]


class Publish(NamedTuple):
    topic: str
    qos: int
    retain: bool
    dup: bool
    packet_id: int | None
    properties: dict[int, Any]
    payload: bytes


class Puback(NamedTuple):
    packet_id: int
    reason_code: int
    properties: dict[int, Any]


def parse_connack(body: bytes) -> Connack:
    if len(body) < 2:
        raise MalformedPacket("CONNACK shorter than 2 bytes")
    if body[0] & 0xFE:
        raise MalformedPacket("CONNACK reserved flags set")
    properties: dict[int, Any] = {}
    if len(body) > 2:
        properties, _ = decode_properties(body, 2, len(body))
    return Connack(bool(body[0] & 1), body[1], properties)


def parse_suback(body: bytes) -> Suback:
    if len(body) < 3:
        raise MalformedPacket("SUBACK shorter than 3 bytes")
    properties, pos = decode_properties(body, 2, len(body))
    return Suback(int.from_bytes(body[:2], "big"), properties, list(body[pos:]))


def parse_publish(flags: int, body: bytes) -> Publish:
    qos = (flags >> 1) & 3
    if qos == 3:
        raise MalformedPacket("PUBLISH with QoS 3")
    topic, pos = _read_string(body, 0, len(body))
    packet_id = None
    if qos:
        if pos + 2 > len(body):
            raise MalformedPacket("PUBLISH without packet identifier")
        packet_id = int.from_bytes(body[pos : pos + 2], "big")
        pos += 2
    properties, pos = decode_properties(body, pos, len(body))
    return Publish(
        topic.decode(), qos, bool(flags & 1), bool(flags & 8), packet_id, properties, body[pos:]
    )


def parse_puback(body: bytes) -> Puback:
    if len(body) < 2:
        raise MalformedPacket("PUBACK shorter than 2 bytes")
    reason = body[2] if len(body) > 2 else 0
    properties: dict[int, Any] = {}
    if len(body) > 3:
        properties, _ = decode_properties(body, 3, len(body))
    return Puback(int.from_bytes(body[:2], "big"), reason, properties)


def parse_disconnect(body: bytes) -> tuple[int, dict[int, Any]]:
    reason = body[0] if body else 0
    properties: dict[int, Any] = {}
    if len(body) > 1:
        properties, _ = decode_properties(body, 1, len(body))
    return reason, properties


# --- payload: an AOI notify's content with a send stamp -------------------------------------

PAYLOAD_BYTES = 64  # bench.loadgen's pushes: "<stamp> " and padding, 64 bytes


def make_payload(seq: int, stamp: float, size: int = PAYLOAD_BYTES) -> bytes:
    """``"<stamp> <seq> "`` padded with ``x`` to ``size`` bytes, as ``bench.loadgen`` pushes.

    The stamp is ``time.monotonic()``: on Linux CLOCK_MONOTONIC is one clock for the whole
    system, so a stamp taken in the publisher's process is comparable in a subscriber's.
    """
    return f"{stamp:.6f} {seq} ".ljust(size, "x").encode()


def read_stamp(payload: bytes) -> tuple[float, int]:
    """(stamp, seq) of a :func:`make_payload` payload."""
    stamp, seq, _ = payload.split(b" ", 2)
    return float(stamp), int(seq)
