"""The MQTT 5 codec and client of the Mosquitto benchmark's load generator
(bench/mqtt_packets.py, bench/mqtt_client.py).

No broker: packets are checked against the standard's bytes, and the connect paths run
against a small in-process fake that answers CONNECT and SUBSCRIBE.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

try:
    from bench import loadgen, mqtt_client, mqtt_packets
except ModuleNotFoundError:  # bench/ is not an installed package: run as `pytest`, not `-m`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from bench import loadgen, mqtt_client, mqtt_packets


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16_383, b"\xff\x7f"),
        (16_384, b"\x80\x80\x01"),
        (2_097_151, b"\xff\xff\x7f"),
        (2_097_152, b"\x80\x80\x80\x01"),
        (268_435_455, b"\xff\xff\xff\x7f"),
    ],
)
def test_varint_matches_the_examples_of_the_standard(value: int, encoded: bytes) -> None:
    assert mqtt_packets.encode_varint(value) == encoded
    assert mqtt_packets.decode_varint(b"\xaa" + encoded + b"\xbb", 1) == (value, 1 + len(encoded))


def test_varint_bounds() -> None:
    with pytest.raises(ValueError, match="out of range"):
        mqtt_packets.encode_varint(268_435_456)
    with pytest.raises(ValueError, match="out of range"):
        mqtt_packets.encode_varint(-1)
    assert mqtt_packets.decode_varint(b"\x80\x80", 0) is None  # incomplete
    with pytest.raises(mqtt_packets.MalformedPacket):
        mqtt_packets.decode_varint(b"\x80\x80\x80\x80\x01", 0)


def test_connect_with_credentials_and_session_expiry() -> None:
    encoded = mqtt_packets.encode_connect(
        "dev-1", username="device", password="pw", keepalive=270, session_expiry=3600
    )
    body = (
        b"\x00\x04MQTT\x05"  # protocol name and level 5
        + b"\xc2"  # user name, password, clean start
        + b"\x01\x0e"  # keepalive 270
        + b"\x05\x11\x00\x00\x0e\x10"  # properties: session expiry interval 3600
        + b"\x00\x05dev-1"
        + b"\x00\x06device"
        + b"\x00\x02pw"
    )
    assert encoded == b"\x10" + bytes((len(body),)) + body


def test_connect_without_credentials_nor_properties() -> None:
    encoded = mqtt_packets.encode_connect(
        "c", keepalive=60, clean_start=False, receive_maximum=None
    )
    assert encoded == b"\x10\x0e\x00\x04MQTT\x05\x00\x00\x3c\x00\x00\x01c"


def test_connect_with_receive_maximum() -> None:
    encoded = mqtt_packets.encode_connect("c", keepalive=60, receive_maximum=20)
    assert encoded[12:16] == b"\x03\x21\x00\x14"  # properties: receive maximum 20
    properties, _ = mqtt_packets.decode_properties(encoded, 12, len(encoded))
    assert properties == {mqtt_packets.RECEIVE_MAXIMUM: 20}


def test_subscribe_qos1() -> None:
    assert mqtt_packets.encode_subscribe(1, "aoi/c/chat", 1) == (
        b"\x82\x10\x00\x01\x00\x00\x0aaoi/c/chat\x01"
    )


def test_publish_round_trip_with_message_expiry() -> None:
    encoded = mqtt_packets.encode_publish(
        "aoi/dev-1/chat", b'{"x":1}', qos=1, packet_id=513, message_expiry=3600
    )
    assert encoded[0] == 0x32
    (decoded,) = mqtt_packets.PacketReader().feed(encoded)
    assert decoded.type == mqtt_packets.PUBLISH
    publish = mqtt_packets.parse_publish(decoded.flags, decoded.body)
    assert publish == mqtt_packets.Publish(
        "aoi/dev-1/chat",
        1,
        False,
        False,
        513,
        {mqtt_packets.MESSAGE_EXPIRY_INTERVAL: 3600},
        b'{"x":1}',
    )


def test_publish_qos0_has_no_packet_identifier() -> None:
    encoded = mqtt_packets.encode_publish("t", b"p", qos=0, retain=True)
    assert encoded == b"\x31\x05\x00\x01t\x00p"
    (decoded,) = mqtt_packets.PacketReader().feed(encoded)
    assert mqtt_packets.parse_publish(decoded.flags, decoded.body).packet_id is None


def test_puback_and_disconnect() -> None:
    assert mqtt_packets.encode_puback(0x1234) == b"\x40\x02\x12\x34"
    assert mqtt_packets.parse_puback(b"\x12\x34") == mqtt_packets.Puback(0x1234, 0, {})
    assert mqtt_packets.parse_puback(b"\x00\x07\x10") == mqtt_packets.Puback(7, 0x10, {})
    assert mqtt_packets.parse_puback(b"\x00\x07\x87\x05\x1f\x00\x02no") == mqtt_packets.Puback(
        7, 0x87, {mqtt_packets.REASON_STRING: "no"}
    )
    assert mqtt_packets.encode_disconnect() == b"\xe0\x00"
    assert mqtt_packets.encode_disconnect(0, 0) == b"\xe0\x07\x00\x05\x11\x00\x00\x00\x00"
    assert mqtt_packets.parse_disconnect(b"\x8e\x00") == (0x8E, {})
    assert mqtt_packets.parse_disconnect(b"") == (0, {})


def test_connack_with_properties() -> None:
    body = b"\x01\x00" + mqtt_packets.encode_properties(
        [(mqtt_packets.RECEIVE_MAXIMUM, 1000), (0x27, 268435460), (0x22, 10), (0x25, 1)]
    )
    assert mqtt_packets.parse_connack(body) == mqtt_packets.Connack(
        True, 0, {mqtt_packets.RECEIVE_MAXIMUM: 1000, 0x27: 268435460, 0x22: 10, 0x25: 1}
    )
    assert mqtt_packets.parse_connack(b"\x00\x86") == mqtt_packets.Connack(False, 0x86, {})
    with pytest.raises(mqtt_packets.MalformedPacket):
        mqtt_packets.parse_connack(b"\x02\x00\x00")


def test_suback() -> None:
    assert mqtt_packets.parse_suback(b"\x00\x01\x00\x01") == mqtt_packets.Suback(1, {}, [1])
    assert mqtt_packets.parse_suback(b"\x00\x02\x00\x87\x00") == mqtt_packets.Suback(
        2, {}, [0x87, 0]
    )


def test_properties_of_every_kind_round_trip() -> None:
    properties = [
        (0x01, 1), (0x02, 3600), (0x03, "text/json"), (0x09, b"\x00\x01"), (0x0B, 300),
        (0x13, 270), (0x1F, "why"), (0x26, ("k", "v")), (0x26, ("k2", "v2")),
    ]  # fmt: skip
    encoded = b"\xff" + mqtt_packets.encode_properties(properties) + b"rest"
    decoded, end = mqtt_packets.decode_properties(encoded, 1, len(encoded))
    assert encoded[end:] == b"rest"
    assert decoded == {
        0x01: 1, 0x02: 3600, 0x03: "text/json", 0x09: b"\x00\x01", 0x0B: 300, 0x13: 270,
        0x1F: "why", 0x26: [("k", "v"), ("k2", "v2")],
    }  # fmt: skip


def test_malformed_properties() -> None:
    with pytest.raises(mqtt_packets.MalformedPacket, match="unknown property"):
        mqtt_packets.decode_properties(b"\x02\x7f\x00", 0, 3)
    with pytest.raises(mqtt_packets.MalformedPacket, match="beyond"):
        mqtt_packets.decode_properties(b"\x05\x02\x00", 0, 3)
    with pytest.raises(mqtt_packets.MalformedPacket, match="beyond"):
        mqtt_packets.decode_properties(b"\x02\x02\x00", 0, 3)  # u32 cut short by the list length


def test_reader_splits_a_stream_fed_byte_by_byte() -> None:
    stream = (
        mqtt_packets.encode_publish("a", b"x" * 200, packet_id=1)  # two-byte remaining length
        + mqtt_packets.encode_puback(9)
        + b"\xd0\x00"  # PINGRESP
    )
    reader = mqtt_packets.PacketReader()
    packets = [p for byte in stream for p in reader.feed(bytes((byte,)))]
    assert [p.type for p in packets] == [
        mqtt_packets.PUBLISH,
        mqtt_packets.PUBACK,
        mqtt_packets.PINGRESP,
    ]
    assert mqtt_packets.PacketReader().feed(stream) == packets


def test_reader_refuses_oversized_packets() -> None:
    with pytest.raises(mqtt_packets.MalformedPacket):
        mqtt_packets.PacketReader(max_size=10).feed(mqtt_packets.encode_publish("a", b"x" * 20))


def test_payload_carries_a_readable_stamp_and_sequence() -> None:
    stamp = 12345.678901
    payload = mqtt_packets.make_payload(42, stamp)
    assert payload.startswith(b"12345.678901 42 x")
    assert len(payload) == mqtt_packets.PAYLOAD_BYTES == 64
    assert mqtt_packets.read_stamp(payload) == (stamp, 42)
    assert mqtt_packets.read_stamp(mqtt_packets.make_payload(7, time.monotonic(), size=10))[1] == 7


def test_percentiles_rank_as_the_aoi_load_generator_does() -> None:
    values = [i / 1000 for i in range(1, 1001)]  # 1..1000 ms, shuffled order is fine
    assert loadgen.percentiles(values[::-1]) == {
        "p50": 501.0, "p99": 991.0, "p999": 1000.0, "max": 1000.0, "n": 1000
    }  # fmt: skip
    assert loadgen.percentiles([]) == {"n": 0}


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return False


def test_connection_acks_publishes_and_records_stamps_across_split_reads() -> None:
    async def scenario() -> tuple[mqtt_client.Connection, FakeTransport]:
        stats = mqtt_client.Stats(record=True)
        connection = mqtt_client.Connection(stats)
        transport = FakeTransport()
        connection.connection_made(transport)
        stream = mqtt_packets.encode_publish(
            "aoi/c/chat", mqtt_packets.make_payload(7, 1.5), packet_id=300, message_expiry=3599
        ) + mqtt_packets.encode_publish(
            "aoi/c/chat", mqtt_packets.make_payload(8, 2.5) + b" " * 200, packet_id=1
        )
        stream += b"\x20\x03\x00\x00\x00"  # CONNACK after the publishes, to exercise _control
        connection.data_received(stream[:5])
        connection.data_received(stream[5:150])
        connection.data_received(stream[150:])
        return connection, transport

    connection, transport = asyncio.run(scenario())
    assert b"".join(transport.written) == mqtt_packets.encode_puback(
        300
    ) + mqtt_packets.encode_puback(1)
    assert connection.stats.received == 2
    assert list(connection.stats.seqs) == [7, 8]
    assert list(connection.stats.stamps) == [1.5, 2.5]
    assert connection.connack.result() == mqtt_packets.Connack(False, 0, {})


def test_connection_hands_pubacks_to_the_publisher_and_counts_reasons() -> None:
    async def scenario() -> tuple[list[int], dict[int, int]]:
        connection = mqtt_client.Connection(mqtt_client.Stats(record=False))
        connection.connection_made(FakeTransport())
        seen: list[int] = []
        connection.on_pubacks = lambda ids, now: seen.extend(ids)
        connection.data_received(mqtt_packets.encode_puback(1) + b"\x40\x03\x00\x02\x10")
        return seen, connection.puback_reasons

    assert asyncio.run(scenario()) == ([1, 2], {0x10: 1})


def test_publisher_frames_parse_back() -> None:
    async def scenario() -> list[bytes]:
        connection = mqtt_client.Connection(mqtt_client.Stats(record=False))
        transport = FakeTransport()
        connection.connection_made(transport)
        publisher = mqtt_client.Publisher(connection, receive_maximum=10, capacity=4)
        publisher.send(
            [mqtt_packets.encode_string("aoi/a/chat"), mqtt_packets.encode_string("aoi/b/chat")], 3
        )
        connection.data_received(mqtt_packets.encode_puback(1) + mqtt_packets.encode_puback(2))
        assert publisher.inflight == 1
        assert publisher.acked_at[0] > 0
        assert publisher.acked_at[2] == 0
        return transport.written

    (written,) = asyncio.run(scenario())
    packets = mqtt_packets.PacketReader().feed(written)
    publishes = [mqtt_packets.parse_publish(p.flags, p.body) for p in packets]
    assert [p.topic for p in publishes] == ["aoi/a/chat", "aoi/b/chat", "aoi/a/chat"]
    assert [p.packet_id for p in publishes] == [1, 2, 3]
    assert {p.qos for p in publishes} == {1}
    assert publishes[0].properties == {
        mqtt_packets.MESSAGE_EXPIRY_INTERVAL: mqtt_client.MESSAGE_EXPIRY_S
    }
    assert [mqtt_packets.read_stamp(p.payload)[1] for p in publishes] == [0, 1, 2]


class FakeBroker:
    """Answers CONNECT with CONNACK (0x86 for client ids starting with "bad") and SUBSCRIBE
    with SUBACK granting QoS 1, one thread per connection; enough for the connect paths."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.threads: list[threading.Thread] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                peer, _ = self.listener.accept()
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(peer,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _serve(self, peer: socket.socket) -> None:
        reader = mqtt_packets.PacketReader()
        with peer:
            while data := peer.recv(4096):
                for kind, _flags, body in reader.feed(data):
                    if kind == mqtt_packets.CONNECT:
                        client_id, _ = mqtt_packets._read_string(body, 10 + body[10] + 1, len(body))
                        reason = 0x86 if client_id.startswith(b"bad") else 0
                        peer.sendall(bytes((0x20, 3, 0, reason, 0)))
                    elif kind == mqtt_packets.SUBSCRIBE:
                        peer.sendall(b"\x90\x04" + body[:2] + b"\x00\x01")
                    elif kind == mqtt_packets.DISCONNECT:
                        return

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def fake_broker() -> Iterator[FakeBroker]:
    broker = FakeBroker()
    yield broker
    broker.close()


def test_storm_connect_reports_each_client(fake_broker: FakeBroker) -> None:
    clients = [(f"dev-{n}", None) for n in range(5)] + [("bad-1", None)]
    durations, errors, sockets = mqtt_client.storm_connect(
        "127.0.0.1", fake_broker.port, clients, username="u", password="p",
        start_at=time.monotonic(), timeout=10,
    )  # fmt: skip
    assert len(durations) == len(sockets) == 5
    assert all(0 <= duration < 10 for duration in durations)
    assert errors == {"CONNACK 0x86": 1}
    for sock in sockets:
        sock.close()


def test_storm_connect_counts_refused_connections() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]  # closed below: nothing listens there
    durations, errors, _ = mqtt_client.storm_connect(
        "127.0.0.1", port, [("dev-1", None)], username="u", password="p",
        start_at=time.monotonic(), timeout=5,
    )  # fmt: skip
    assert len(durations) == 0
    assert sum(errors.values()) == 1


def test_open_connection_subscribes(fake_broker: FakeBroker) -> None:
    async def scenario() -> tuple[mqtt_packets.Connack, bool]:
        connection, connack = await mqtt_client.open_connection(
            "127.0.0.1", fake_broker.port, "dev-1", username="u", password="p",
            stats=mqtt_client.Stats(record=False), topic="aoi/dev-1/chat",
        )  # fmt: skip
        assert connection.transport is not None
        connection.write(mqtt_packets.encode_disconnect(0, 0))
        await asyncio.wait_for(connection.closed, 5)
        return connack, connection.suback.done()

    assert asyncio.run(scenario()) == (mqtt_packets.Connack(False, 0, {}), True)


def test_open_connection_raises_on_refusal(fake_broker: FakeBroker) -> None:
    async def scenario() -> None:
        await mqtt_client.open_connection(
            "127.0.0.1", fake_broker.port, "bad-2", username="u", password="p",
            stats=mqtt_client.Stats(record=False),
        )  # fmt: skip

    with pytest.raises(mqtt_client.ConnectionRefused, match="0x86"):
        asyncio.run(scenario())
