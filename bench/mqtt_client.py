"""MQTT 5 client side of the Mosquitto benchmark (:mod:`bench.mqtt`).

:class:`Connection` is a raw asyncio protocol: it parses a whole read at a time and answers
every QoS 1 PUBLISH of that read with one write. :func:`open_connection` connects,
authenticates and subscribes; :class:`Publisher` sends QoS 1 PUBLISH within the broker's
receive maximum; :func:`storm_connect` opens many sessions at once from a bare epoll loop
(:func:`bench.epoll_storm.connect_all`, one :class:`MqttHandshake` a client).
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import socket
import time
from collections.abc import Callable, Sequence

from .epoll_storm import Refused, client_socket, connect_all
from .mqtt_packets import (
    CONNACK,
    DISCONNECT,
    KEEPALIVE_S,
    MESSAGE_EXPIRY_INTERVAL,
    PINGRESP,
    PUBACK,
    PUBLISH,
    SUBACK,
    Connack,
    MalformedPacket,
    PacketReader,
    Suback,
    decode_varint,
    encode_connect,
    encode_properties,
    encode_subscribe,
    encode_varint,
    make_payload,
    parse_connack,
    parse_disconnect,
    parse_suback,
    read_stamp,
)

SESSION_EXPIRY_S = 3600  # sessions and their queues outlive a disconnect, as AOI sessions do
MESSAGE_EXPIRY_S = 600  # the push's ttl_s, as bench.loadgen sends it


def topic_for(client_id: str) -> str:
    """The topic a subscriber subscribes to; the broker's ACL lets only that client read it."""
    return f"aoi/{client_id}/chat"


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
