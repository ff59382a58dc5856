"""MQTT 5 load generator: the Mosquitto side of the AOI-versus-MQTT push benchmark.

The workloads mirror the AOI ones (an AOI Client holding a session with one registered app,
a server app pushing notifications to it):

=====================  =============================================================
AOI                    MQTT here
=====================  =============================================================
``hello`` with a       CONNECT with user name and password (``allow_anonymous false``),
credential             clean start, session expiry 3600 s, keepalive 270 s
``register`` an app    SUBSCRIBE ``aoi/<client_id>/chat`` at QoS 1, readable only by that
                       client (ACL ``pattern read aoi/%c/#``)
POST /v1/push -> 201   PUBLISH QoS 1 with message expiry 600 s (the ``ttl_s``) -> PUBACK
``notify`` / ``ack``   PUBLISH QoS 1 to the subscriber / PUBACK
=====================  =============================================================

The MQTT codec is written here (CONNECT, CONNACK, SUBSCRIBE, SUBACK, PUBLISH, PUBACK,
PINGREQ, PINGRESP, DISCONNECT of MQTT 5.0), on plain asyncio like ``bench.loadgen``: a raw
protocol parses a whole read at a time and answers every QoS 1 PUBLISH of that read with one
write; a storm opens its connections from a bare epoll loop. Clients run in worker processes
(``python -c``, so the caller's ``__main__`` is never re-imported), driven by the parent over
socket pairs; the parent (the caller of :func:`memory`, :func:`idle_sessions`,
:func:`throughput`, :func:`latency`, :func:`storm`) only coordinates and reads ``/proc``.

Whether the generator limits a figure is measured, not assumed: each workload reports the
broker's CPU (``server_cpu_cores``), the generator processes' CPU and how busy the whole
machine was (``machine_busy_share``); ``throughput`` names what bound it (``bound_by``) and
gives deliveries per broker CPU second, which does not depend on the generator's cost.

``broker`` in these functions is anything with ``host``, ``port``, ``pid``, ``rss()`` and
``cpu_seconds()`` (and optionally ``max_clients``): :class:`bench.mosquitto.Broker`, whose
users and ACL are :data:`USERS` and :data:`ACL`.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import itertools
import json
import math
import multiprocessing.connection
import os
import resource
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from .epoll_storm import Refused, client_socket, connect_all

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

KEEPALIVE_S = 270
SESSION_EXPIRY_S = 3600  # sessions and their queues outlive a disconnect, as AOI sessions do
MESSAGE_EXPIRY_S = 600  # the push's ttl_s, as bench.loadgen sends it
SOURCE_ADDRESSES = tuple(f"127.0.0.{last}" for last in range(2, 10))
SUBSCRIBER_USER = "device"
PUBLISHER_USER = "server-app"
USERS: dict[str, str] = {SUBSCRIBER_USER: "device-secret-0042", PUBLISHER_USER: "app-secret-17"}
ACL = f"""\
user {PUBLISHER_USER}
topic write aoi/#

pattern read aoi/%c/#
"""
WORKER_NOFILE = 65536


def topic_for(client_id: str) -> str:
    return f"aoi/{client_id}/chat"


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


# --- client side -------------------------------------------------------------------------


class Stats:
    """What one worker's connections received."""

    def __init__(self, record: bool) -> None:
        self.record = record
        self.received = 0
        self.seqs = array.array("q")
        self.stamps = array.array("d")
        self.arrivals = array.array("d")


class ConnectionRefused(RuntimeError):
    """CONNACK or SUBACK refused."""


class Connection(asyncio.Protocol):
    """One MQTT 5 client connection; answers QoS 1 PUBLISH with PUBACK."""

    def __init__(self, stats: Stats) -> None:
        loop = asyncio.get_running_loop()
        self.stats = stats
        self.transport: asyncio.Transport | None = None
        self.connack: asyncio.Future[Connack] = loop.create_future()
        self.suback: asyncio.Future[Suback] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()
        self.on_pubacks: Callable[[list[int], float], None] | None = None
        self.disconnect_reason: int | None = None
        self.puback_reasons: dict[int, int] = {}
        self._rest = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        error = exc or ConnectionResetError("connection closed by the broker")
        for future in (self.connack, self.suback):
            if not future.done():
                future.set_exception(error)
                future.exception()  # retrieved: nobody may be waiting any more
        if not self.closed.done():
            self.closed.set_result(None)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:  # the hot path
        if self._rest:
            data = self._rest + data
        size = len(data)
        pos = 0
        acks: list[bytes] = []
        pubacks: list[int] = []
        stats = self.stats
        now = 0.0
        while size - pos >= 2:
            first = data[pos]
            length = data[pos + 1]
            start = pos + 2
            if length & 0x80:
                decoded = decode_varint(data, pos + 1)
                if decoded is None:
                    break
                length, start = decoded
            end = start + length
            if end > size:
                break
            kind = first >> 4
            if kind == PUBLISH:
                cursor = start + 2 + (data[start] << 8 | data[start + 1])
                if first & 0x06:
                    acks.append(b"\x40\x02" + data[cursor : cursor + 2])
                    cursor += 2
                skip = data[cursor]
                if skip & 0x80:
                    decoded = decode_varint(data, cursor)
                    if decoded is None:
                        raise MalformedPacket("PUBLISH properties")
                    skip, cursor = decoded
                    cursor += skip
                else:
                    cursor += 1 + skip
                stats.received += 1
                if stats.record:
                    if not now:
                        now = time.monotonic()
                    stamp, seq = read_stamp(data[cursor:end])
                    stats.seqs.append(seq)
                    stats.stamps.append(stamp)
                    stats.arrivals.append(now)
            elif kind == PUBACK:
                pubacks.append(data[start] << 8 | data[start + 1])
                if length > 2 and data[start + 2]:  # 0x10: no subscriber; >= 0x80: refused
                    reasons = self.puback_reasons
                    reasons[data[start + 2]] = reasons.get(data[start + 2], 0) + 1
            else:
                self._control(kind, first & 0x0F, data[start:end])
            pos = end
        self._rest = data[pos:] if pos < size else b""
        if acks:
            self.write(b"".join(acks))
        if pubacks and self.on_pubacks is not None:
            self.on_pubacks(pubacks, time.monotonic())

    def _control(self, kind: int, flags: int, body: bytes) -> None:
        if kind == CONNACK and not self.connack.done():
            self.connack.set_result(parse_connack(body))
        elif kind == SUBACK and not self.suback.done():
            self.suback.set_result(parse_suback(body))
        elif kind == DISCONNECT:
            self.disconnect_reason = parse_disconnect(body)[0]
        elif kind != PINGRESP:
            raise MalformedPacket(f"unexpected packet type {kind}")


async def open_connection(
    host: str,
    port: int,
    client_id: str,
    *,
    username: str,
    password: str,
    stats: Stats,
    source: str | None = None,
    topic: str | None = None,
    session_expiry: int = SESSION_EXPIRY_S,
) -> tuple[Connection, Connack]:
    """Connect (from ``source``), authenticate, and subscribe to ``topic`` at QoS 1."""
    loop = asyncio.get_running_loop()
    sock = client_socket(source)
    try:
        await loop.sock_connect(sock, (host, port))
        _, connection = await loop.create_connection(lambda: Connection(stats), sock=sock)
    except BaseException:
        sock.close()
        raise
    try:
        connection.write(
            encode_connect(
                client_id, username=username, password=password, keepalive=KEEPALIVE_S,
                clean_start=True, session_expiry=session_expiry,
            )
        )  # fmt: skip
        connack = await connection.connack
        if connack.reason_code:
            raise ConnectionRefused(f"CONNACK reason 0x{connack.reason_code:02x}")
        if topic is not None:
            connection.write(encode_subscribe(1, topic, 1))
            suback = await connection.suback
            if suback.reason_codes != [1]:
                raise ConnectionRefused(f"SUBACK reason codes {suback.reason_codes}")
    except BaseException:
        if connection.transport is not None:
            connection.transport.abort()
        raise
    return connection, connack


_EXPIRY_PROPERTIES = encode_properties([(MESSAGE_EXPIRY_INTERVAL, MESSAGE_EXPIRY_S)])


class Publisher:
    """A server app's connection, sending QoS 1 PUBLISH round-robin over ``topics``."""

    def __init__(self, connection: Connection, receive_maximum: int, capacity: int) -> None:
        self.connection = connection
        self.window = receive_maximum
        self.inflight = 0
        self.sent = 0
        self.acked = 0
        self.sent_at = array.array("d", bytes(8 * capacity))
        self.acked_at = array.array("d", bytes(8 * capacity))
        self.capacity = capacity
        self._seq_of_id = [0] * 65536
        self._freed = asyncio.Event()
        connection.on_pubacks = self._on_pubacks

    def _on_pubacks(self, packet_ids: list[int], now: float) -> None:
        seq_of_id = self._seq_of_id
        acked_at = self.acked_at
        capacity = self.capacity
        for packet_id in packet_ids:
            seq = seq_of_id[packet_id]
            if seq < capacity:
                acked_at[seq] = now
        self.inflight -= len(packet_ids)
        self.acked += len(packet_ids)
        self._freed.set()

    def send(self, topics: Sequence[bytes], count: int) -> None:
        """Send ``count`` messages in one write."""
        out = []
        now = time.monotonic()
        seq = self.sent
        for _ in range(count):
            packet_id = seq % 65535 + 1
            self._seq_of_id[packet_id] = seq
            payload = make_payload(seq, now)
            topic = topics[seq % len(topics)]
            body = topic + packet_id.to_bytes(2, "big") + _EXPIRY_PROPERTIES + payload
            out.append(b"\x32" + encode_varint(len(body)) + body)
            if seq < self.capacity:
                self.sent_at[seq] = now
            seq += 1
        self.sent = seq
        self.inflight += count
        self.connection.write(b"".join(out))

    async def wait_window(self) -> None:
        while self.inflight >= self.window:
            self._freed.clear()
            await self._freed.wait()

    async def flood(self, topics: Sequence[bytes], deadline: float) -> None:
        """As fast as the window allows, until ``deadline``."""
        while time.monotonic() < deadline and not self.connection.closed.done():
            await self.wait_window()
            self.send(topics, self.window - self.inflight)

    async def paced(self, topics: Sequence[bytes], rate: float, deadline: float) -> int:
        """``rate`` messages a second on a fixed schedule; returns how often the window was full."""
        start = time.monotonic()
        stalls = 0
        while not self.connection.closed.done():
            now = time.monotonic()
            if now >= deadline:
                break
            due = int((now - start) * rate) + 1 - self.sent
            if due > 0:
                free = self.window - self.inflight
                if free <= 0:
                    stalls += 1
                    await self.wait_window()
                    continue
                self.send(topics, min(due, free))
            await asyncio.sleep(max(0.0, start + (self.sent / rate) - time.monotonic()))
        return stalls

    async def drain(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while self.inflight > 0:
                    self._freed.clear()
                    await self._freed.wait()


class MqttHandshake:
    """One MQTT client of a storm: CONNECT once connected, SUBSCRIBE after the CONNACK;
    served when the SUBACK grants QoS 1."""

    def __init__(self, connect: bytes, subscribe: bytes) -> None:
        self.connect, self.subscribe = connect, subscribe
        self.reader = PacketReader()

    def connected(self) -> bytes:
        return self.connect

    def received(self, data: bytes) -> tuple[bytes, bool]:
        reply = b""
        for kind, _flags, body in self.reader.feed(data):
            if kind == CONNACK and not reply:
                reason = parse_connack(body).reason_code
                if reason:
                    raise Refused(f"CONNACK 0x{reason:02x}")
                reply = self.subscribe
            elif kind == SUBACK:
                codes = parse_suback(body).reason_codes
                if codes != [1]:
                    raise Refused(f"SUBACK {codes}")
                return reply, True
        return reply, False


def storm_connect(
    host: str,
    port: int,
    clients: Sequence[tuple[str, str | None]],
    *,
    username: str,
    password: str,
    start_at: float,
    timeout: float,
) -> tuple[array.array[float], dict[str, int], list[socket.socket]]:
    """Open every session of ``clients`` (client_id, source) at once with
    :func:`bench.epoll_storm.connect_all`: (durations until each SUBACK, errors, sockets)."""
    prepared = []
    for client_id, source in clients:
        connect = encode_connect(
            client_id, username=username, password=password, session_expiry=SESSION_EXPIRY_S
        )
        subscribe = encode_subscribe(1, topic_for(client_id), 1)
        prepared.append((client_socket(source), MqttHandshake(connect, subscribe)))
    return connect_all((host, port), prepared, start_at, timeout)


# --- worker process ----------------------------------------------------------------------


def raise_nofile(target: int) -> int:
    """Raise RLIMIT_NOFILE to ``target`` (root may raise the hard limit); returns the soft one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= target:
        return soft
    if hard != resource.RLIM_INFINITY and hard < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, target))
            return target
        except (ValueError, OSError):
            target = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


class _Worker:
    def __init__(self, pipe: Any, host: str, port: int) -> None:
        self.pipe = pipe
        self.host = host
        self.port = port
        self.connections: list[Connection] = []
        self.raw_sockets: list[socket.socket] = []
        self.stats = Stats(record=False)
        self.publisher: Publisher | None = None
        self.stop = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        commands: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        def readable() -> None:
            try:
                commands.put_nowait(self.pipe.recv())
            except (EOFError, OSError):
                loop.remove_reader(self.pipe.fileno())
                commands.put_nowait(None)

        loop.add_reader(self.pipe.fileno(), readable)
        self.pipe.send({"op": "ready", "cpu_s": time.process_time()})
        pinger = asyncio.create_task(self._keepalive())
        while True:
            command = await commands.get()
            if command is None or command["op"] == "exit":
                break
            if command["op"] == "stop":
                self.stop.set()
                continue
            task = asyncio.create_task(self._run(command))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        pinger.cancel()
        for task in list(self.tasks):
            task.cancel()
        for connection in self.connections:
            if connection.transport is not None:
                connection.transport.abort()
        with contextlib.suppress(OSError):
            self.pipe.send({"op": "exit"})

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_S / 2)
            for connection in self.connections:
                connection.write(PINGREQ_PACKET)

    async def _run(self, command: dict[str, Any]) -> None:
        op = command.pop("op")
        try:
            reply = await getattr(self, f"op_{op}")(**command)
        except Exception as error:  # reported to the parent, which raises
            reply = {"error": f"{error!r}\n{traceback.format_exc()}"}
        reply["op"] = op
        reply["cpu_s"] = time.process_time()
        self.pipe.send(reply)

    async def op_connect(
        self,
        clients: list[tuple[str, str | None]],
        username: str,
        password: str,
        subscribe: bool = True,
        concurrency: int | None = None,
        start_at: float | None = None,
        record: bool = False,
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        """Open sessions; ``concurrency`` None opens them all at once (a storm)."""
        self.stats.record = self.stats.record or record
        limit = asyncio.Semaphore(concurrency or len(clients) or 1)
        durations = array.array("d")
        errors: dict[str, int] = {}
        receive_maximum = 65535
        if start_at is not None:
            await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        began = start_at if start_at is not None else time.monotonic()

        async def one(client_id: str, source: str | None) -> None:
            nonlocal receive_maximum
            async with limit:
                try:
                    async with asyncio.timeout(timeout):
                        connection, connack = await open_connection(
                            self.host, self.port, client_id, username=username,
                            password=password, stats=self.stats, source=source,
                            topic=topic_for(client_id) if subscribe else None,
                        )  # fmt: skip
                except Exception as error:
                    key = type(error).__name__ + (f": {error}" if str(error) else "")
                    errors[key] = errors.get(key, 0) + 1
                    return
                durations.append(time.monotonic() - began)
                self.connections.append(connection)
                receive_maximum = connack.properties.get(RECEIVE_MAXIMUM, 65535)

        await asyncio.gather(*(one(client_id, source) for client_id, source in clients))
        return {
            "connected": len(durations),
            "failed": sum(errors.values()),
            "errors": errors,
            "durations": durations.tobytes(),
            "began": began,
            "done": time.monotonic(),
            "receive_maximum": receive_maximum,
        }

    async def op_storm(
        self,
        clients: list[tuple[str, str | None]],
        username: str,
        password: str,
        start_at: float,
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        """:func:`storm_connect`; this worker's loop is blocked meanwhile (it does nothing else)."""
        durations, errors, sockets = storm_connect(
            self.host, self.port, clients, username=username, password=password,
            start_at=start_at, timeout=timeout,
        )  # fmt: skip
        self.raw_sockets.extend(sockets)
        return {
            "connected": len(durations),
            "failed": sum(errors.values()),
            "errors": errors,
            "durations": durations.tobytes(),
            "began": start_at,
            "done": time.monotonic(),
        }

    async def op_count(self, start: float, end: float) -> dict[str, Any]:
        """Messages received between the monotonic instants ``start`` and ``end``."""
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        first = self.stats.received
        cpu_first = time.process_time()
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        return {
            "received": self.stats.received - first,
            "window_cpu_s": time.process_time() - cpu_first,
        }

    async def op_publish(
        self,
        mode: str,
        topics: list[str],
        deadline: float,
        rate: float = 0.0,
        window: int | None = None,
        start_at: float | None = None,
        capacity: int = 0,
        count_window: tuple[float, float] | None = None,
    ) -> dict[str, Any]:
        """Publish from this worker's first connection until ``deadline`` or ``stop``."""
        (connection,) = self.connections
        encoded = [encode_string(topic) for topic in topics]
        publisher = Publisher(connection, window or 65535, capacity)
        self.publisher = publisher
        if start_at is not None:
            await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        counted: dict[str, Any] = {}
        counter = None
        if count_window is not None:
            counter = asyncio.create_task(self._count_acks(publisher, *count_window, counted))
        stopper = asyncio.create_task(self.stop.wait())
        body = asyncio.create_task(
            publisher.flood(encoded, deadline)
            if mode == "flood"
            else publisher.paced(encoded, rate, deadline)
        )
        await asyncio.wait({body, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        body.cancel()
        stalls = 0
        with contextlib.suppress(asyncio.CancelledError):
            stalls = await body or 0
        await publisher.drain(10.0)
        if counter is not None:
            await counter
        return {
            "sent": publisher.sent,
            "acked": publisher.acked,
            "stalls": stalls,
            "window": publisher.window,
            "puback_reasons": {f"0x{code:02x}": n for code, n in connection.puback_reasons.items()},
            "sent_at": publisher.sent_at[: min(publisher.sent, capacity)].tobytes(),
            "acked_at": publisher.acked_at[: min(publisher.sent, capacity)].tobytes(),
            **counted,
        }

    async def _count_acks(
        self, publisher: Publisher, start: float, end: float, into: dict[str, Any]
    ) -> None:
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        first, cpu_first = publisher.acked, time.process_time()
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        into["acked_in_window"] = publisher.acked - first
        into["window_cpu_s"] = time.process_time() - cpu_first

    async def op_stamps(self) -> dict[str, Any]:
        return {
            "seqs": self.stats.seqs.tobytes(),
            "stamps": self.stats.stamps.tobytes(),
            "arrivals": self.stats.arrivals.tobytes(),
            "received": self.stats.received,
        }

    async def op_disconnect(self, expire: bool = True, timeout: float = 30.0) -> dict[str, Any]:
        """DISCONNECT every connection; ``expire`` ends the session (session expiry 0) too."""
        goodbye = encode_disconnect(0, 0) if expire else encode_disconnect()
        raw, self.raw_sockets = self.raw_sockets, []
        for sock in raw:
            with contextlib.suppress(OSError):
                sock.send(goodbye)
            sock.close()
        connections, self.connections = self.connections, []
        for connection in connections:
            connection.write(goodbye)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                for connection in connections:
                    if connection.transport is not None:
                        connection.transport.close()
                    await connection.closed
        closed = sum(connection.closed.done() for connection in connections)
        return {"closed": closed + len(raw)}


def _worker_main() -> None:
    """Entry point of a worker process: ``python -c ... FD HOST PORT``."""
    fd, host, port = sys.argv[1:4]
    raise_nofile(WORKER_NOFILE)
    pipe = multiprocessing.connection.Connection(int(fd))
    asyncio.run(_Worker(pipe, host, int(port)).serve())


# --- parent side -------------------------------------------------------------------------


class BrokerLike(Protocol):
    host: str
    port: int

    @property
    def pid(self) -> int: ...

    def rss(self) -> int: ...

    def cpu_seconds(self) -> float: ...


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_jiffies() -> tuple[int, int]:
    """(all, idle + iowait) CPU jiffies of the machine, from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(field) for field in stat.readline().split()[1:]]
    return sum(fields), fields[3] + fields[4]


def machine_busy_since(before: tuple[int, int]) -> float:
    """Share of the machine's CPU time (all cores) that was busy since ``before``."""
    total, idle = machine_jiffies()
    elapsed = total - before[0]
    return round(1 - (idle - before[1]) / elapsed, 3) if elapsed > 0 else 0.0


TCP_COUNTERS = (
    "Tcp.RetransSegs", "TcpExt.TCPTimeouts", "TcpExt.ListenOverflows", "TcpExt.ListenDrops",
    "TcpExt.SyncookiesSent", "TcpExt.TCPBacklogDrop",
)  # fmt: skip


def tcp_counters() -> dict[str, int]:
    """The machine's TCP counters of :data:`TCP_COUNTERS` (/proc/net/snmp and netstat)."""
    values: dict[str, int] = {}
    for path in ("/proc/net/snmp", "/proc/net/netstat"):
        with contextlib.suppress(OSError), open(path) as table:
            lines = table.read().splitlines()
        for names, numbers in itertools.pairwise(lines):
            head, _, rest = names.partition(":")
            if not numbers.startswith(head + ":") or names == numbers:
                continue
            for name, number in zip(rest.split(), numbers.partition(":")[2].split(), strict=False):
                key = f"{head}.{name}"
                if key in TCP_COUNTERS and number.lstrip("-").isdigit():
                    values[key] = int(number)
    return values


def tcp_counters_since(before: dict[str, int]) -> dict[str, int]:
    after = tcp_counters()
    return {key: after[key] - before.get(key, 0) for key in after}


class WorkerError(RuntimeError):
    """A worker process failed or did not answer in time."""


class Workers:
    """Load-generator processes, each running one asyncio loop of MQTT clients.

    They are plain ``python -c`` children (not ``multiprocessing``), so that the caller's
    ``__main__`` is never imported again; each talks to the parent over a socket pair.
    """

    def __init__(self, broker: BrokerLike, count: int) -> None:
        self.pipes: list[multiprocessing.connection.Connection] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        root = str(Path(__file__).resolve().parents[1])
        path = os.environ.get("PYTHONPATH")
        environment = {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}
        try:
            for _ in range(count):
                parent, child = socket.socketpair()
                with parent, child:
                    process = subprocess.Popen(
                        [
                            sys.executable, "-c", "from bench.mqtt import _worker_main; "
                            "_worker_main()", str(child.fileno()), broker.host, str(broker.port),
                        ],
                        pass_fds=[child.fileno()], env=environment, stdin=subprocess.DEVNULL,
                    )  # fmt: skip
                    self.processes.append(process)
                    self.pipes.append(multiprocessing.connection.Connection(parent.detach()))
            for index in range(count):
                self.receive(index, "ready", 60)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    def send(self, index: int, op: str, **arguments: Any) -> None:
        self.pipes[index].send({"op": op, **arguments})

    def receive(self, index: int, op: str, timeout: float) -> dict[str, Any]:
        pipe = self.pipes[index]
        if not pipe.poll(timeout):
            raise WorkerError(f"worker {index}: no answer to {op!r} within {timeout:.0f} s")
        try:
            reply: dict[str, Any] = pipe.recv()
        except (EOFError, OSError) as error:
            code = self.processes[index].poll()
            raise WorkerError(f"worker {index} exited ({code}) before answering {op!r}") from error
        if "error" in reply:
            raise WorkerError(f"worker {index}, {op!r}: {reply['error']}")
        if reply["op"] != op:
            raise WorkerError(f"worker {index}: answer to {reply['op']!r}, expected {op!r}")
        return reply

    def call(self, index: int, op: str, timeout: float, **arguments: Any) -> dict[str, Any]:
        self.send(index, op, **arguments)
        return self.receive(index, op, timeout)

    def cpu_seconds(self) -> list[float]:
        return [cpu_seconds(pid) for pid in self.pids]

    def close(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send({"op": "exit"})
        deadline = time.monotonic() + 10
        for process in self.processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.terminate()
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        for pipe in self.pipes:
            pipe.close()
        self.pipes, self.processes = [], []


_run_ids = itertools.count()


def _client_ids(prefix: str, count: int) -> list[str]:
    run = f"{os.getpid():x}{next(_run_ids)}"
    return [f"{prefix}{run}-{index}" for index in range(count)]


def _spread(ids: Sequence[str], parts: int, first_source: int = 0) -> list[list[tuple[str, str]]]:
    """Deal clients over ``parts`` workers, their sockets over the source addresses."""
    chunks: list[list[tuple[str, str]]] = [[] for _ in range(parts)]
    for index, client_id in enumerate(ids):
        source = SOURCE_ADDRESSES[(first_source + index) % len(SOURCE_ADDRESSES)]
        chunks[index % parts].append((client_id, source))
    return chunks


def percentiles(values: Sequence[float], scale: float = 1000.0) -> dict[str, Any]:
    """p50, p99, p999, max and n, times ``scale`` (s to ms): ``bench.loadgen``'s definition
    (the value at index int(q * n) of the sorted values), so that both sides rank alike."""
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def at(quantile: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(quantile * len(ordered)))] * scale, 3)

    return {"p50": at(0.5), "p99": at(0.99), "p999": at(0.999), "max": at(1.0), "n": len(ordered)}


def _settled_rss(broker: BrokerLike, timeout: float = 10.0) -> int:
    """The broker's RSS once two reads half a second apart agree within 0.5 %."""
    deadline = time.monotonic() + timeout
    previous = broker.rss()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        current = broker.rss()
        if abs(current - previous) <= previous * 0.005:
            return current
        previous = current
    return previous


def _connect_all(
    workers: Workers,
    chunks: Sequence[Sequence[tuple[str, str | None]]],
    indexes: Sequence[int],
    *,
    username: str,
    subscribe: bool = True,
    concurrency: int | None = None,
    start_at: float | None = None,
    record: bool = False,
    timeout: float = 60.0,
) -> list[dict[str, Any]]:
    for index, chunk in zip(indexes, chunks, strict=True):
        workers.send(
            index, "connect", clients=list(chunk), username=username, password=USERS[username],
            subscribe=subscribe, concurrency=concurrency, start_at=start_at, record=record,
            timeout=timeout,
        )  # fmt: skip
    wait = timeout + (start_at - time.monotonic() if start_at else 0) + 30
    waiting = max(len(chunk) for chunk in chunks) / (concurrency or 1e9) * timeout
    return [workers.receive(index, "connect", wait + waiting) for index in indexes]


def _check_connected(replies: Sequence[dict[str, Any]], expected: int, what: str) -> None:
    connected = sum(reply["connected"] for reply in replies)
    if connected != expected:
        errors: dict[str, int] = {}
        for reply in replies:
            for key, count in reply["errors"].items():
                errors[key] = errors.get(key, 0) + count
        raise WorkerError(f"{what}: {connected} of {expected} connected; errors {errors}")


def _disconnect_all(workers: Workers, indexes: Iterable[int], timeout: float = 60.0) -> None:
    indexes = list(indexes)
    for index in indexes:
        workers.send(index, "disconnect", expire=True)
    for index in indexes:
        workers.receive(index, "disconnect", timeout)


def memory(
    broker: BrokerLike,
    steps: Sequence[int] = (5000, 10000, 20000),
    *,
    warmup: int = 100,
    per_worker: int = 5000,
    concurrency: int = 250,
) -> dict[str, Any]:
    """Broker RSS with N authenticated, subscribed, idle sessions, for each N of ``steps``.

    As ``bench.server.memory`` does for AOI: ``warmup`` sessions open and close first (the
    broker's first-use costs are not per session), then the baseline RSS, then sessions are
    added step by step on the same broker and kept open; per session = (RSS - baseline) / N.
    Steps beyond the broker's ``max_clients`` (its RLIMIT_NOFILE, which a process without
    CAP_SYS_RESOURCE cannot raise past the hard limit) are measured at that many; a note says so.
    """
    wanted = sorted(steps)
    limit = getattr(broker, "max_clients", None)
    steps = sorted({min(n, limit) for n in wanted} if limit is not None else set(wanted))
    started = time.monotonic()
    results: dict[str, Any] = {
        "fd_hard_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
        "broker_max_clients": limit,
        "keepalive_s": KEEPALIVE_S,
        "steps": [],
    }
    if steps[-1] < wanted[-1]:
        results["note"] = (
            f"{wanted[-1]} sessions need more descriptors than the hard RLIMIT_NOFILE "
            f"({results['fd_hard_limit']}) allows and it cannot be raised here: measured at "
            f"{steps[-1]}"
        )
    with contextlib.ExitStack() as held:
        if warmup:
            with Workers(broker, 1) as workers:
                replies = _connect_all(
                    workers, [_spread(_client_ids("warm", warmup), 1)[0]], [0],
                    username=SUBSCRIBER_USER, concurrency=concurrency,
                )  # fmt: skip
                _check_connected(replies, warmup, "warm-up sessions")
                _disconnect_all(workers, [0])
        base = _settled_rss(broker)
        results["baseline_rss_kb"] = base // 1024
        opened = 0
        for target in steps:
            adding = target - opened
            count = max(1, min(os.cpu_count() or 2, 8, math.ceil(adding / per_worker)))
            workers = held.enter_context(Workers(broker, count))
            held.callback(_disconnect_all, workers, range(count))
            chunks = _spread(_client_ids("idle", adding), count, first_source=opened)
            cpu_before = broker.cpu_seconds()
            began = time.monotonic()
            replies = _connect_all(
                workers, chunks, range(count), username=SUBSCRIBER_USER,
                concurrency=concurrency, timeout=60.0,
            )  # fmt: skip
            connect_s = time.monotonic() - began
            connected = sum(reply["connected"] for reply in replies)
            opened = target
            rss = _settled_rss(broker)
            results["steps"].append({
                "sessions": target, "failed": adding - connected, "rss_kb": rss // 1024,
                "delta_kb": (rss - base) // 1024,
                "per_session_kb": round((rss - base) / 1024 / target, 2),
                "per_session_bytes": round((rss - base) / target),
                "new_sessions_per_s": round(adding / connect_s),
                "broker_cpu_us_per_new_session": round(
                    (broker.cpu_seconds() - cpu_before) / adding * 1e6
                ),
                "generator_processes": count,
            })  # fmt: skip
            print(json.dumps(results["steps"][-1]), file=sys.stderr, flush=True)
    results["rss_after_all_closed_kb"] = _settled_rss(broker) // 1024
    results["seconds"] = round(time.monotonic() - started, 1)
    return results


def idle_sessions(broker: BrokerLike, n: int, **options: Any) -> dict[str, Any]:
    """RSS before and after ``n`` idle sessions (one step of :func:`memory`)."""
    measured = memory(broker, [n], **options)
    (step,) = measured["steps"]
    return {
        **step,
        "requested": n,
        "rss_before_kb": measured["baseline_rss_kb"],
        **({"note": measured["note"]} if "note" in measured else {}),
    }


def throughput(
    broker: BrokerLike,
    clients: int = 100,
    seconds: float = 5.0,
    *,
    warmup: float = 1.5,
    subscriber_workers: int = 2,
    window: int = 128,
) -> dict[str, Any]:
    """Notifications per second delivered to ``clients`` subscribers by one publisher.

    The publisher keeps ``window`` QoS 1 PUBLISH unacknowledged (capped by the broker's
    receive maximum): 128, as many pushes as ``bench.server`` keeps in flight (2 pushers with
    64 keep-alive connections, one push each). Counted over ``seconds`` after ``warmup``.
    """
    began = time.monotonic()
    subscriber_workers = max(1, min(subscriber_workers, clients))
    publisher_index = subscriber_workers
    with Workers(broker, subscriber_workers + 1) as workers:
        ids = _client_ids("tput", clients)
        replies = _connect_all(
            workers, _spread(ids, subscriber_workers), range(subscriber_workers),
            username=SUBSCRIBER_USER, concurrency=100,
        )  # fmt: skip
        _check_connected(replies, clients, "throughput subscribers")
        (publisher,) = _connect_all(
            workers, [[(_client_ids("app", 1)[0], None)]], [publisher_index],
            username=PUBLISHER_USER, subscribe=False,
        )  # fmt: skip
        _check_connected([publisher], 1, "publisher")
        window = min(window, publisher["receive_maximum"])
        start = time.monotonic() + 0.5 + warmup
        end = start + seconds
        workers.send(
            publisher_index, "publish", mode="flood", topics=[topic_for(i) for i in ids],
            deadline=end + 0.5, window=window, start_at=start - warmup, count_window=(start, end),
        )  # fmt: skip
        for index in range(subscriber_workers):
            workers.send(index, "count", start=start, end=end)
        time.sleep(max(0.0, start - time.monotonic()))
        broker_cpu, generator_cpu = broker.cpu_seconds(), workers.cpu_seconds()
        machine = machine_jiffies()
        time.sleep(max(0.0, end - time.monotonic()))
        machine_busy = machine_busy_since(machine)
        broker_cpu = broker.cpu_seconds() - broker_cpu
        generator_cpu = [b - a for a, b in zip(generator_cpu, workers.cpu_seconds(), strict=True)]
        counts = [workers.receive(index, "count", 30) for index in range(subscriber_workers)]
        published = workers.receive(publisher_index, "publish", seconds + warmup + 60)
        rss = broker.rss()
        _disconnect_all(workers, range(subscriber_workers + 1))
    delivered = sum(reply["received"] for reply in counts)
    broker_share = broker_cpu / seconds
    busiest = max(generator_cpu) / seconds
    if broker_share >= 0.9:
        bound_by = "broker (its one thread is busy)"
    elif busiest >= 0.9:
        bound_by = "generator (one of its processes is busy)"
    elif machine_busy >= 0.95:
        bound_by = "machine (all cores busy: broker, generator and the kernel's loopback TCP)"
    else:
        bound_by = "round trips (nothing is busy: the publisher window or latency limits)"
    return {
        "sessions": clients,
        "publishers": 1,
        "publisher_window": window,
        "window_s": seconds,
        "accepted_per_s": round(published["acked_in_window"] / seconds),
        "acked_per_s": round(delivered / seconds),
        "server_cpu_cores": round(broker_share, 2),
        "acked_per_server_cpu_s": round(delivered / broker_cpu) if broker_cpu else None,
        "server_rss_kb": rss // 1024,
        "generator_cpu_cores": [round(cpu / seconds, 2) for cpu in generator_cpu],
        "machine_busy_share": machine_busy,
        "bound_by": bound_by,
        "puback_reasons": published["puback_reasons"],
        "seconds": round(time.monotonic() - began, 1),
    }


def _latency_report(
    published: dict[str, Any], stamps: Sequence[dict[str, Any]], since: float, until: float
) -> dict[str, Any]:
    sent_at = array.array("d")
    sent_at.frombytes(published["sent_at"])
    acked_at = array.array("d")
    acked_at.frombytes(published["acked_at"])
    from_sent: list[float] = []
    from_puback: list[float] = []
    received: set[int] = set()
    for reply in stamps:
        seqs, sent, arrivals = array.array("q"), array.array("d"), array.array("d")
        seqs.frombytes(reply["seqs"])
        sent.frombytes(reply["stamps"])
        arrivals.frombytes(reply["arrivals"])
        for seq, stamp, arrival in zip(seqs, sent, arrivals, strict=True):
            received.add(seq)
            if not since <= stamp < until:
                continue
            from_sent.append(arrival - stamp)
            if seq < len(acked_at) and acked_at[seq]:
                from_puback.append(arrival - acked_at[seq])
    window = [seq for seq, stamp in enumerate(sent_at) if since <= stamp < until]
    puback_rtt = [acked_at[seq] - sent_at[seq] for seq in window if acked_at[seq]]
    return {
        "published_in_window": len(window),
        "latency_puback_to_receipt_ms": percentiles(from_puback),
        "latency_publish_sent_to_receipt_ms": percentiles(from_sent),
        "receipt_before_puback_seen": sum(1 for value in from_puback if value < 0),
        "not_received": sum(1 for seq in window if seq not in received),
        "publish_round_trip_ms": percentiles(puback_rtt),
    }


def latency(
    broker: BrokerLike,
    rate: float = 1000.0,
    seconds: float = 5.0,
    *,
    clients: int = 100,
    warmup: float = 1.5,
) -> dict[str, Any]:
    """Delivery latency at a fixed publish rate, round robin over ``clients`` subscribers.

    Per message: the subscriber's receipt minus the publisher's PUBACK (acceptance, AOI's
    201), and minus the send stamp in the payload. Negative PUBACK-to-receipt values mean the
    broker delivered before it acknowledged (``receipt_before_puback_seen``).
    """
    began = time.monotonic()
    with Workers(broker, 2) as workers:
        ids = _client_ids("lat", clients)
        replies = _connect_all(
            workers, _spread(ids, 1), [0], username=SUBSCRIBER_USER, concurrency=100, record=True
        )
        _check_connected(replies, clients, "latency subscribers")
        (publisher,) = _connect_all(
            workers, [[(_client_ids("app", 1)[0], None)]], [1],
            username=PUBLISHER_USER, subscribe=False,
        )  # fmt: skip
        _check_connected([publisher], 1, "publisher")
        begin = time.monotonic() + 0.5
        start, end = begin + warmup, begin + warmup + seconds
        capacity = int(rate * (warmup + seconds + 1)) + 1000
        cpu_before, machine = broker.cpu_seconds(), machine_jiffies()
        published = workers.call(
            1, "publish", seconds + warmup + 60, mode="paced", rate=rate,
            topics=[topic_for(i) for i in ids], deadline=end, start_at=begin,
            window=publisher["receive_maximum"], capacity=capacity,
        )  # fmt: skip
        broker_cpu, machine_busy = broker.cpu_seconds() - cpu_before, machine_busy_since(machine)
        time.sleep(0.5)
        stamps = workers.call(0, "stamps", 30)
        rss = broker.rss()
        _disconnect_all(workers, range(2))
    return {
        "sessions": clients,
        "rate_per_s": rate,
        "window_s": seconds,
        "achieved_rate_per_s": round(published["sent"] / (end - begin)),
        "publisher_window_full": published["stalls"],
        "server_cpu_cores": round(broker_cpu / (end - begin), 2),
        "server_rss_kb": rss // 1024,
        "machine_busy_share": machine_busy,
        "puback_reasons": published["puback_reasons"],
        **_latency_report(published, [stamps], start, end),
        "seconds": round(time.monotonic() - began, 1),
    }


def storm(
    broker: BrokerLike,
    clients: int = 5000,
    *,
    steady: int = 100,
    rate: float = 1000.0,
    storm_workers: int = 2,
    baseline: float = 2.0,
    after: float = 1.0,
    timeout: float = 120.0,
) -> dict[str, Any]:
    """``clients`` sessions opened at once while ``steady`` ones receive ``rate`` messages/s.

    Reports the time from the storm's start until every storm client has its CONNACK and
    SUBACK, and the steady subscribers' latency for messages published during the storm.
    """
    started = time.monotonic()
    storm_indexes = list(range(2, 2 + storm_workers))
    with Workers(broker, 2 + storm_workers) as workers:
        ids = _client_ids("calm", steady)
        replies = _connect_all(
            workers, _spread(ids, 1), [0], username=SUBSCRIBER_USER, concurrency=100, record=True
        )
        _check_connected(replies, steady, "steady subscribers")
        (publisher,) = _connect_all(
            workers, [[(_client_ids("app", 1)[0], None)]], [1],
            username=PUBLISHER_USER, subscribe=False,
        )  # fmt: skip
        _check_connected([publisher], 1, "publisher")
        begin = time.monotonic() + 0.5
        storm_at = begin + baseline
        capacity = int(rate * (baseline + timeout + after + 5)) + 1000
        workers.send(
            1, "publish", mode="paced", rate=rate, topics=[topic_for(i) for i in ids],
            deadline=storm_at + timeout + after, start_at=begin,
            window=publisher["receive_maximum"], capacity=capacity,
        )  # fmt: skip
        cpu_before, generator_before = broker.cpu_seconds(), workers.cpu_seconds()
        tcp_before, machine = tcp_counters(), machine_jiffies()
        chunks = _spread(_client_ids("storm", clients), storm_workers, first_source=1)
        for index, chunk in zip(storm_indexes, chunks, strict=True):
            workers.send(
                index, "storm", clients=chunk, username=SUBSCRIBER_USER,
                password=USERS[SUBSCRIBER_USER], start_at=storm_at, timeout=timeout,
            )  # fmt: skip
        wait = storm_at - time.monotonic() + timeout + 30
        stormed = [workers.receive(index, "storm", wait) for index in storm_indexes]
        durations: list[float] = []
        for reply in stormed:
            times = array.array("d")
            times.frombytes(reply["durations"])
            durations.extend(times)
        storm_end = storm_at + max(durations) if durations else max(r["done"] for r in stormed)
        broker_cpu = broker.cpu_seconds() - cpu_before
        tcp, machine_busy = tcp_counters_since(tcp_before), machine_busy_since(machine)
        generator_cpu = [
            b - a for a, b in zip(generator_before, workers.cpu_seconds(), strict=True)
        ]
        time.sleep(max(0.0, storm_end + after - time.monotonic()))
        workers.send(1, "stop")
        published = workers.receive(1, "publish", 60)
        time.sleep(0.5)
        stamps = workers.call(0, "stamps", 30)
        rss_stormed = broker.rss()
        _disconnect_all(workers, [0, 1, *storm_indexes])
    errors: dict[str, int] = {}
    for reply in stormed:
        for key, count in reply["errors"].items():
            errors[key] = errors.get(key, 0) + count
    connected = sum(reply["connected"] for reply in stormed)
    during = _latency_report(published, [stamps], storm_at, storm_end)
    before = _latency_report(published, [stamps], begin, storm_at)
    return {
        "clients": clients,
        "connected": connected,
        "failed": clients - connected,
        "errors": errors,
        "all_connected_s": round(storm_end - storm_at, 3) if connected == clients else None,
        "connack_suback_ms": percentiles(durations),
        "server_cpu_s_during_storm": round(broker_cpu, 2),
        "server_cpu_ms_per_client": round(broker_cpu / clients * 1000, 3) if clients else None,
        "generator_cpu_s_during_storm": {
            "steady_subscribers": round(generator_cpu[0], 3),
            "publisher": round(generator_cpu[1], 3),
            "storm_processes": [round(cpu, 3) for cpu in generator_cpu[2:]],
        },
        "machine_busy_share_during_storm": machine_busy,
        "tcp_counters_during_storm": tcp,
        "server_rss_kb": rss_stormed // 1024,
        "steady_sessions": steady,
        "rate_per_s": rate,
        "publisher_window_full": published["stalls"],
        "steady_during_storm": during,
        "steady_before_storm": before,
        "seconds": round(time.monotonic() - started, 1),
    }
