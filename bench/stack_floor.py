"""The floor of the server's stack: CPU per notification of the libraries alone, the
server's current ones beside those it is moving to, measured in the same run.

    python -m bench.stack_floor [--seconds 2]

One notification through the reference server costs at least what its HTTP and WebSocket
libraries and its codec do for it, with no server logic, no store, no event loop and no
system call. Each part is measured on its own, per notification:

- HTTP, the push request parsed and its 201 written: h11 with the 201 written by h11 (as
  the server does today), h11 with a prebuilt 201, and httptools (llhttp) with a prebuilt
  201;
- WebSocket, the notify framed out and the client's masked ack frame read in: wsproto;
  websockets' sans-IO protocol (its C speedups unmask); and a plain writer of unmasked
  server frames with that protocol as the reader;
- the codec: the push body parsed and validated, the notify encoded, the ack decoded; with
  the notify validated again on its way out (today) and without.

``floor_us`` sums today's parts (h11 + wsproto + the validating codec), ``new_floor_us``
the new ones (httptools + the plain writer and websockets' reader + the codec without
re-validation), ``server_floor_us`` the server's own layers built on them
(:mod:`aoi.net.http1` with :class:`aoi.net.http_messages.Response`, :mod:`aoi.net.frames`) with
that codec; each says how many notifications one CPython core could carry at most.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import aoi_schemas
import h11
import httptools
import jsonschema_rs
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.server import ServerProtocol
from websockets.uri import parse_uri
from wsproto.connection import Connection, ConnectionType
from wsproto.events import Message, TextMessage

from aoi.core.codec import Codec
from aoi.core.messages import Ack, Notify
from aoi.net import frames, http1
from aoi.net.http_messages import Response

TOKEN = "Zq3x9Kd0aB7cLmN2pQ4rS6"
BODY = (
    b'{"payload":"{\\"title\\":\\"New message\\",\\"unread\\":3}","ttl_s":3600,"priority":"high"}'
)
REQUEST = (
    b"POST /v1/push/" + TOKEN.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1:8443\r\n"
    b"Authorization: Bearer k-0123456789abcdef0123456789abcdef\r\n"
    b"Content-Type: application/json\r\nContent-Length: " + str(len(BODY)).encode() + b"\r\n\r\n"
) + BODY
NOTIFY = Notify(
    id="n-8f1e2a4b6c8d0e2f", token=TOKEN, app_id="com.example.chat",
    payload='{"title":"New message","unread":3}', priority="high", ttl_s=3600,
    created_at="2026-11-25T12:00:00Z",
)  # fmt: skip
ANSWER = b'{"id":"n-8f1e2a4b6c8d0e2f","ttl_s":3600}'
HEADERS = [
    (b"content-type", b"application/json"),
    (b"location", b"/v1/messages/n-8f1e2a4b6c8d0e2f"),
    (b"content-length", str(len(ANSWER)).encode()),
]
PREBUILT_201 = (
    b"HTTP/1.1 201 Created\r\n"
    + b"".join(name + b": " + value + b"\r\n" for name, value in HEADERS)
    + b"\r\n"
    + ANSWER
)
ACK = json.dumps(Ack(ids=(NOTIFY.id,)).to_wire(), separators=(",", ":"))


# --- HTTP ---------------------------------------------------------------------------------


def h11_exchange(prebuilt: bool = False) -> Callable[[], bytes]:
    """h11: one push request in, its 201 out (written by h11, or ``prebuilt``), ready for
    the next one on the same connection."""
    conn = h11.Connection(h11.SERVER)

    def once() -> bytes:
        conn.receive_data(REQUEST)
        while type(event := conn.next_event()) is not h11.EndOfMessage:
            assert event is not h11.NEED_DATA
        if prebuilt:
            out = PREBUILT_201
            conn.send(h11.Response(status_code=201, headers=HEADERS))  # h11's own bookkeeping
            conn.send(h11.Data(data=ANSWER))
        else:
            out = conn.send(h11.Response(status_code=201, headers=HEADERS)) or b""
            out += conn.send(h11.Data(data=ANSWER)) or b""
        conn.send(h11.EndOfMessage())
        conn.start_next_cycle()
        return out

    return once


class _Request:
    """What the server keeps of a request as llhttp parses it."""

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.complete = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.complete = True


def httptools_exchange() -> Callable[[], bytes]:
    """httptools (llhttp): one push request in, a prebuilt 201 out, keep-alive."""
    request = _Request()
    parser = httptools.HttpRequestParser(request)

    def once() -> bytes:
        request.url, request.headers, request.body, request.complete = b"", [], [], False
        parser.feed_data(REQUEST)
        assert request.complete and parser.get_method() == b"POST" and parser.should_keep_alive()
        assert b"".join(request.body) == BODY
        return PREBUILT_201

    return once


def server_http_exchange() -> Callable[[], bytes]:
    """The server's own HTTP layer (:mod:`aoi.net.http1` on llhttp, :class:`Response`'s
    prebuilt heads): one push request in, its 201 out."""
    parser = http1.RequestParser(65536)
    response = Response(201, ANSWER, headers=(("location", "/v1/messages/n-8f1e2a4b6c8d0e2f"),))

    def once() -> bytes:
        parser.feed(REQUEST)
        head = parser.ready.pop()
        assert type(head) is http1.Head and head.body == BODY and head.keep_alive
        return response.encode()

    return once


# --- WebSocket ------------------------------------------------------------------------------


def wsproto_exchange() -> Callable[[], bytes]:
    """wsproto: the notify framed out, the client's masked ack frame read in."""
    server = Connection(ConnectionType.SERVER)
    client = Connection(ConnectionType.CLIENT)
    notify = json.dumps(NOTIFY.to_wire())
    ack = client.send(TextMessage(data=ACK))

    def once() -> bytes:
        out = server.send(TextMessage(data=notify))
        server.receive_data(ack)
        for event in server.events():
            assert isinstance(event, Message)
        return out

    return once


def websockets_pair() -> tuple[ServerProtocol, bytes]:
    """websockets' sans-IO server protocol, open, and a client's masked ack frame."""
    client, server = ClientProtocol(parse_uri("ws://127.0.0.1/aoi")), ServerProtocol()
    client.send_request(client.connect())
    server.receive_data(b"".join(client.data_to_send()))
    (request,) = server.events_received()
    server.send_response(server.accept(request))
    client.receive_data(b"".join(server.data_to_send()))
    client.send_text(ACK.encode())
    return server, b"".join(client.data_to_send())


def _read_ack(server: ServerProtocol, ack: bytes) -> None:
    server.receive_data(ack)
    for frame in server.events_received():
        assert isinstance(frame, Frame) and frame.opcode is Opcode.TEXT


def websockets_exchange() -> Callable[[], bytes]:
    """websockets' sans-IO protocol both ways: notify out, ack in."""
    server, ack = websockets_pair()
    notify = json.dumps(NOTIFY.to_wire()).encode()

    def once() -> bytes:
        server.send_text(notify)
        out = b"".join(server.data_to_send())
        _read_ack(server, ack)
        return out

    return once


def server_frame(payload: bytes) -> bytes:
    """One unmasked text frame, as a server sends it (RFC 6455 5.2)."""
    n = len(payload)
    if n < 126:
        return bytes((0x81, n)) + payload
    if n < 65536:
        return bytes((0x81, 126)) + n.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + n.to_bytes(8, "big") + payload


def plain_writer_exchange() -> Callable[[], bytes]:
    """The notify framed by :func:`server_frame`, the ack read by websockets' protocol."""
    server, ack = websockets_pair()
    notify = json.dumps(NOTIFY.to_wire()).encode()

    def once() -> bytes:
        out = server_frame(notify)
        _read_ack(server, ack)
        return out

    return once


def server_frames_exchange() -> Callable[[], bytes]:
    """The server's own frame layer (:mod:`aoi.net.frames`): the notify framed out, the
    client's masked ack read in and decoded."""
    reader = frames.Reader(masked=True)
    notify = json.dumps(NOTIFY.to_wire())
    ack = frames.frame(frames.TEXT, ACK.encode(), mask=True)

    def once() -> bytes:
        out = frames.frame(frames.TEXT, notify.encode())
        ((opcode, final, payload),) = reader.feed(ack)
        assert opcode == frames.TEXT and final and payload.decode() == ACK
        return out

    return once


# --- the codec ----------------------------------------------------------------------------


def codec_work(validate_outgoing: bool = True) -> Callable[[], None]:
    """The contract: push body parsed and validated, notify encoded (validated again when
    ``validate_outgoing``), ack decoded."""
    aoi2 = Codec.from_contract("aoi2", validate_outgoing=validate_outgoing)
    documents = aoi_schemas.schemas()
    push = jsonschema_rs.validator_for(
        documents[aoi_schemas.schema_id("aoi3/push_request.json")],
        registry=jsonschema_rs.Registry(list(documents.items())),
    )

    def once() -> None:
        assert push.is_valid(json.loads(BODY))
        aoi2.encode(NOTIFY)
        aoi2.decode(ACK)

    return once


def per_call_us(work: Callable[[], object], seconds: float) -> float:
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(500):
            work()
        calls += 500
    return elapsed / calls * 1e6


OLD = ("h11_us", "wsproto_us", "codec_us")
NEW = ("httptools_us", "plain_writer_websockets_us", "codec_no_revalidation_us")
SERVER = ("server_http_us", "server_frames_us", "codec_no_revalidation_us")


def measure(seconds: float) -> dict[str, float]:
    """Every part, each for ``seconds``, one after the other in this process."""
    parts = {
        "h11_us": per_call_us(h11_exchange(), seconds),
        "h11_prebuilt_201_us": per_call_us(h11_exchange(prebuilt=True), seconds),
        "httptools_us": per_call_us(httptools_exchange(), seconds),
        "server_http_us": per_call_us(server_http_exchange(), seconds),
        "wsproto_us": per_call_us(wsproto_exchange(), seconds),
        "websockets_us": per_call_us(websockets_exchange(), seconds),
        "plain_writer_websockets_us": per_call_us(plain_writer_exchange(), seconds),
        "server_frames_us": per_call_us(server_frames_exchange(), seconds),
        "codec_us": per_call_us(codec_work(), seconds),
        "codec_no_revalidation_us": per_call_us(codec_work(validate_outgoing=False), seconds),
    }
    floor, new_floor = sum(parts[k] for k in OLD), sum(parts[k] for k in NEW)
    server_floor = sum(parts[k] for k in SERVER)
    return {
        **{k: round(v, 2) for k, v in parts.items()},
        "floor_us": round(floor, 1),
        "ceiling_per_core_per_s": round(1e6 / floor),
        "new_floor_us": round(new_floor, 1),
        "new_ceiling_per_core_per_s": round(1e6 / new_floor),
        "server_floor_us": round(server_floor, 1),
        "server_ceiling_per_core_per_s": round(1e6 / server_floor),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    print(json.dumps(measure(parser.parse_args().seconds)))


if __name__ == "__main__":
    main()
