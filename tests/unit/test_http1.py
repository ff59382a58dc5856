"""The HTTP/1.1 request parser, without I/O: the limits and refusals llhttp leaves to it,
however the peer's bytes are cut."""

from __future__ import annotations

import pytest

from aoi.net import http1

MAX_BODY = 65536


def parse(*pieces: bytes) -> list[http1.Head | http1.Refusal]:
    parser = http1.RequestParser(MAX_BODY)
    for piece in pieces:
        parser.feed(piece)
    return parser.ready


def byte_by_byte(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def chunked(body_pieces: bytes, *, trailer: bytes = b"") -> bytes:
    head = b"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    return head + body_pieces + b"0\r\n" + trailer + b"\r\n"


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),  # two Hosts
        (b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET / HTTP/1.1\nHost: a\n\n", 400),  # bare LF line endings
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", 400),  # obs-fold
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 65537\r\n\r\n", 413),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    ],
)
def test_a_request_that_cannot_be_served_is_refused_however_it_is_cut(
    data: bytes, status: int
) -> None:
    for pieces in ([data], byte_by_byte(data)):
        (refusal,) = parse(*pieces)
        assert isinstance(refusal, http1.Refusal), refusal
        assert refusal.status == status


def test_trailer_fields_are_dropped_not_taken_as_headers() -> None:
    data = chunked(b"5\r\nhello\r\n", trailer=b"Authorization: Bearer x\r\nHost: b\r\n")
    for pieces in ([data], byte_by_byte(data)):
        (head,) = parse(*pieces)
        assert isinstance(head, http1.Head)
        assert head.body == b"hello"
        assert head.headers == [(b"host", b"a"), (b"transfer-encoding", b"chunked")]


def test_trailer_fields_over_the_head_limit_are_refused_before_they_end() -> None:
    parser = http1.RequestParser(MAX_BODY)
    parser.feed(chunked(b"5\r\nhello\r\n")[:-2])  # the last chunk: trailer fields follow
    parser.feed(b"X-Pad: ")
    for _ in range(2 * http1.MAX_HEAD // 1024):
        parser.feed(b"a" * 1024)
        if parser.done:
            break
    assert parser.ready == [http1.FRAMING_TOO_LARGE]


def test_a_body_in_one_byte_chunks_up_to_the_limit_is_served() -> None:
    data = chunked(b"1\r\nx\r\n" * MAX_BODY)
    pieces = [data[i : i + 16384] for i in range(0, len(data), 16384)]
    (head,) = parse(*pieces)
    assert isinstance(head, http1.Head)
    assert head.body == b"x" * MAX_BODY


def test_pipelined_requests_with_bodies_come_out_in_order() -> None:
    body = b"b" * (MAX_BODY - 10)
    one = b"POST /1 HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    two = chunked(b"3\r\nabc\r\n").replace(b"/p", b"/2")
    data = one + two + b"GET /3 HTTP/1.1\r\nHost: a\r\n\r\n"
    for cut in (1, 7, 16384, len(data)):
        heads = parse(*[data[i : i + cut] for i in range(0, len(data), cut)])
        assert [(h.target, h.body) for h in heads if isinstance(h, http1.Head)] == [
            (b"/1", body),
            (b"/2", b"abc"),
            (b"/3", b""),
        ]
