"""The WebSocket frame reader and writer: every framing rule a peer can break, checked
against wsproto as an independent implementation where it frames for us."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, Ping, TextMessage

from aoi.net import frames

KEY = b"\x01\x02\x03\x04"


def client_frame(first: int, payload: bytes, *, length: bytes | None = None) -> bytes:
    """A masked frame with the first byte ``first`` (FIN, RSV, opcode) as a client sends it;
    ``length``: the length bytes as given, not as they should be."""
    if length is None:
        length = bytes((len(payload),))
    masked = bytes((length[0] | 0x80,)) + length[1:]
    return bytes((first,)) + masked + KEY + bytes(b ^ KEY[i % 4] for i, b in enumerate(payload))


def read(data: bytes, *, masked: bool = True) -> tuple[list[frames.Piece], frames.Reader]:
    reader = frames.Reader(masked=masked)
    return reader.feed(data), reader


@given(st.text(max_size=300), st.integers(min_value=1, max_value=64))
def test_a_client_text_comes_out_whole_however_its_bytes_are_cut(text: str, cut: int) -> None:
    data = Connection(ConnectionType.CLIENT).send(TextMessage(data=text))
    reader = frames.Reader(masked=True)
    pieces = [p for i in range(0, len(data), cut) for p in reader.feed(data[i : i + cut])]
    assert all(opcode == frames.TEXT for opcode, _, _ in pieces)
    assert [final for _, final, _ in pieces][-1] and not any(f for _, f, _ in pieces[:-1])
    assert b"".join(payload for _, _, payload in pieces).decode() == text
    assert not reader.pending() and reader.error is None


@given(st.binary(max_size=70000))
def test_what_the_server_writes_wsproto_reads(payload: bytes) -> None:
    client = Connection(ConnectionType.CLIENT)
    client.receive_data(frames.frame(frames.BINARY, payload))
    events = list(client.events())
    assert b"".join(e.data for e in events if isinstance(e, BytesMessage)) == payload


def test_a_fragmented_message_with_a_ping_inside_it() -> None:
    data = (
        client_frame(0x01, b"he")  # text, not final
        + client_frame(0x89, b"p")  # ping
        + client_frame(0x80, b"llo")  # continuation, final
    )
    pieces, reader = read(data)
    assert pieces == [
        (frames.TEXT, False, b"he"),
        (frames.PING, True, b"p"),
        (frames.TEXT, True, b"llo"),
    ]
    assert reader.error is None


@pytest.mark.parametrize(
    ("data", "masked", "why"),
    [
        (client_frame(0xC1, b"x"), True, "reserved bits"),
        (client_frame(0x83, b"x"), True, "unknown opcode 3"),
        (client_frame(0x8B, b"x"), True, "unknown opcode 11"),
        (client_frame(0x09, b"x"), True, "a control frame must be whole"),
        (client_frame(0x89, b"x" * 126, length=b"\x7e\x00\x7e"), True, "at most 125"),
        (client_frame(0x80, b"x"), True, "a continuation frame without a message"),
        (client_frame(0x01, b"x") + client_frame(0x81, b"y"), True, "a new message inside"),
        (client_frame(0x81, b"x" * 5, length=b"\x7e\x00\x05"), True, "shortest form"),
        (client_frame(0x82, b"x" * 5, length=b"\x7f" + (5).to_bytes(8, "big")), True, "shortest"),
        (bytes((0x81, 0x01)) + b"x", True, "must mask"),
        (client_frame(0x81, b"x"), False, "must not"),
    ],
)
def test_each_framing_error_is_a_1002_after_the_frames_before_it(
    data: bytes, masked: bool, why: str
) -> None:
    before = client_frame(0x81, b"ok") if masked else bytes((0x81, 2)) + b"ok"
    pieces, reader = read(before + data, masked=masked)
    assert pieces[0] == (frames.TEXT, True, b"ok")
    assert pieces[-1][0] == frames.FAILED
    assert reader.error is not None and reader.error.code == 1002
    assert why in reader.error.reason
    assert reader.feed(client_frame(0x81, b"more")) == []  # nothing after it is read


def test_a_huge_frame_comes_out_in_pieces_and_is_never_buffered_whole() -> None:
    head = bytes((0x82, 0xFF)) + (1 << 40).to_bytes(8, "big") + KEY
    reader = frames.Reader(masked=True)
    pieces = reader.feed(head + bytes(1000))
    assert len(pieces) == 1 and pieces[0][:2] == (frames.BINARY, False)
    assert pieces[0][2] == bytes(KEY[i % 4] for i in range(1000))  # unmasked, in phase
    assert reader.feed(bytes(3))[0][2] == bytes(KEY[(1000 + i) % 4] for i in range(3))


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"", (1005, "")),
        (b"\x03\xe8bye", (1000, "bye")),
        (b"\x0f\xa0", (4000, "")),
    ],
)
def test_close_payloads(payload: bytes, expected: tuple[int, str]) -> None:
    assert frames.parse_close(payload) == expected


@pytest.mark.parametrize(
    ("payload", "code"),
    [(b"\x03", 1002), (b"\x03\xed", 1002), (b"\x03\xe8\xff", 1007), (b"\x0b\xb7", 1002)],
)
def test_bad_close_payloads(payload: bytes, code: int) -> None:
    with pytest.raises(frames.FrameError) as raised:
        frames.parse_close(payload)
    assert raised.value.code == code


def test_a_close_reason_is_cut_to_fit_a_control_frame_on_a_character() -> None:
    payload = frames.close_payload(1000, "é" * 100)
    assert len(payload) <= 125
    assert frames.parse_close(payload) == (1000, "é" * 61)


def test_a_client_frame_is_masked_and_reads_back() -> None:
    data = frames.frame(frames.PING, b"abc", mask=True)
    server = Connection(ConnectionType.SERVER)
    server.receive_data(data)
    (event,) = server.events()
    assert isinstance(event, Ping) and event.payload == b"abc"


def test_the_debugging_check_refuses_a_broken_frame() -> None:
    frames.check(frames.frame(frames.TEXT, b"fine"), masked=False)
    with pytest.raises(AssertionError):
        frames.check(bytes((0x81, 5)) + b"shrt", masked=False)  # a frame cut short
    with pytest.raises(UnicodeDecodeError):
        frames.check(bytes((0x81, 1)) + b"\xff", masked=False)
