"""The MQTT 5 codec the tests check the load generator's MQTT with (bench/mqtt_packets.py),
against the standard's bytes; and the percentiles both benchmarks rank with.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

try:
    from bench import loadgen, mqtt_packets
except ModuleNotFoundError:  # bench/ is not an installed package: run as `pytest`, not `-m`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from bench import loadgen, mqtt_packets


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
