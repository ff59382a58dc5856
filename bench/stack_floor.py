"""The floor of the server's stack: CPU per notification of the libraries alone.

    python -m bench.stack_floor [--seconds 2]

One notification through the reference server costs at least what its HTTP and WebSocket
libraries and its codec do for it, with no server logic, no store, no event loop and no
system call: h11 parses the push request and writes the 201; the codec validates the push
body, encodes the notify and decodes the ack; wsproto frames the notify and reads the
masked ack frame. The sum bounds the notifications per second one CPython core can carry,
to compare with what ``bench.server`` measures end to end.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import aoi_schemas
import h11
import jsonschema_rs
from wsproto.connection import Connection, ConnectionType
from wsproto.events import Message, TextMessage

from aoi.core.codec import Codec
from aoi.core.messages import Ack, Notify

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


def http_exchange() -> Callable[[], None]:
    """h11: one push request in, one 201 out, ready for the next (keep-alive)."""
    conn = h11.Connection(h11.SERVER)
    headers = [
        (b"content-type", b"application/json"),
        (b"location", b"/v1/messages/n-8f1e2a4b6c8d0e2f"),
        (b"content-length", b"42"),
    ]

    def once() -> None:
        conn.receive_data(REQUEST)
        while not isinstance(conn.next_event(), h11.EndOfMessage):
            pass
        conn.send(h11.Response(status_code=201, headers=headers))
        conn.send(h11.Data(data=b'{"id":"n-8f1e2a4b6c8d0e2f","ttl_s":3600}\r\n'))
        conn.send(h11.EndOfMessage())
        conn.start_next_cycle()

    return once


def websocket_exchange() -> Callable[[], None]:
    """wsproto: the notify framed out, the client's masked ack frame read in."""
    server = Connection(ConnectionType.SERVER)
    client = Connection(ConnectionType.CLIENT)
    notify = json.dumps(NOTIFY.to_wire())
    ack = client.send(TextMessage(data='{"type":"ack","ids":["n-8f1e2a4b6c8d0e2f"]}'))

    def once() -> None:
        server.send(TextMessage(data=notify))
        server.receive_data(ack)
        for event in server.events():
            assert isinstance(event, Message)

    return once


def codec_work() -> Callable[[], None]:
    """The contract: push body parsed and validated, notify encoded, ack decoded."""
    aoi2 = Codec.from_contract("aoi2")
    documents = aoi_schemas.schemas()
    push = jsonschema_rs.validator_for(
        documents[aoi_schemas.schema_id("aoi3/push_request.json")],
        registry=jsonschema_rs.Registry(list(documents.items())),
    )
    ack = json.dumps(Ack(ids=("n-8f1e2a4b6c8d0e2f",)).to_wire())

    def once() -> None:
        assert push.is_valid(json.loads(BODY))
        aoi2.encode(NOTIFY)
        aoi2.decode(ack)

    return once


def per_call_us(work: Callable[[], None], seconds: float) -> float:
    calls, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(500):
            work()
        calls += 500
    return elapsed / calls * 1e6


def measure(seconds: float) -> dict[str, float]:
    parts = {
        "h11_us": per_call_us(http_exchange(), seconds),
        "wsproto_us": per_call_us(websocket_exchange(), seconds),
        "codec_us": per_call_us(codec_work(), seconds),
    }
    floor = sum(parts.values())
    return {
        **{k: round(v, 1) for k, v in parts.items()},
        "floor_us": round(floor, 1),
        "ceiling_per_core_per_s": round(1e6 / floor),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0)
    print(json.dumps(measure(parser.parse_args().seconds)))


if __name__ == "__main__":
    main()
