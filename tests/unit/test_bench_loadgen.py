"""The benchmark's load generator (bench/loadgen.c), each role against a one-connection fake
peer written with other libraries: wsproto for the AOI server's WebSocket side, h11 for its
HTTP side, bench/mqtt_packets.py for the MQTT broker. The fakes check every byte the
generator sends and cut what they send back at awkward places.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import h11
import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Ping, Pong, Request, TextMessage

try:
    from bench import loadgen, mqtt_packets
except ModuleNotFoundError:  # bench/ is not an installed package: run as `pytest`, not `-m`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from bench import loadgen, mqtt_packets


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        sock.settimeout(10)
        yield sock


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[str]]]:
    processes: list[subprocess.Popen[str]] = []
    yield processes
    loadgen.reap(processes)


def spawn(
    started: list[subprocess.Popen[str]], role: str, port: int, *args: str
) -> subprocess.Popen[str]:
    process = loadgen.spawn(role, "--host", "127.0.0.1", "--port", str(port), *args)
    started.append(process)
    return process


def accept(listener: socket.socket) -> socket.socket:
    peer, _ = listener.accept()
    peer.settimeout(10)  # a generator that stops answering fails the test, not hangs it
    return peer


def in_pieces(sock: socket.socket, data: bytes, cuts: tuple[int, ...]) -> None:
    """``data`` in several writes, cut at ``cuts``, with a pause between them."""
    at = 0
    for cut in (*cuts, len(data)):
        sock.sendall(data[at:cut])
        at = cut
        time.sleep(0.02)


# --- AOI ---------------------------------------------------------------------------------


class FakeAoiServer:
    """The server's side of one AOI-2 session, on wsproto."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.ws = WSConnection(ConnectionType.SERVER)
        self.pending: list[object] = []

    def next_event(self) -> object:
        while not self.pending:
            data = self.sock.recv(65536)
            assert data, "the generator closed the connection"
            self.ws.receive_data(data)
            self.pending.extend(self.ws.events())
        return self.pending.pop(0)

    def next_message(self) -> dict[str, object]:
        event = self.next_event()
        assert isinstance(event, TextMessage), event
        message: dict[str, object] = json.loads(event.data)
        return message

    def send(self, message: dict[str, object]) -> None:
        self.sock.sendall(self.ws.send(TextMessage(data=json.dumps(message))))


def notify(notification_id: str, payload: str) -> dict[str, object]:
    return {
        "type": "notify", "id": notification_id, "token": "tok-1",
        "app_id": "com.example.bench", "payload": payload, "priority": "normal",
        "ttl_s": 600, "created_at": "2026-01-01T00:00:00Z",
    }  # fmt: skip


def test_aoi_clients_register_then_ack_every_notify(
    listener: socket.socket, started: list[subprocess.Popen[str]]
) -> None:
    port = listener.getsockname()[1]
    process = spawn(started, "aoi-clients", port, "--first", "7", "--count", "1", "--record")
    peer = accept(listener)
    with peer:
        server = FakeAoiServer(peer)
        request = server.next_event()
        assert isinstance(request, Request)
        assert (request.target, request.subprotocols) == ("/aoi", ["aoi.v1"])
        peer.sendall(server.ws.send(AcceptConnection(subprotocol="aoi.v1")))
        assert server.next_message() == {
            "type": "hello", "version": 1, "client_id": "dev-7", "credential": "secret-7"
        }  # fmt: skip
        server.send({"type": "welcome", "session_id": "s-1", "heartbeat_s": 3600})
        assert server.next_message() == {
            "type": "register", "req": 1, "app_id": "com.example.bench"
        }  # fmt: skip
        server.send({"type": "registered", "req": 1, "app_id": "x", "token": "tok-1"})
        ready = loadgen.line(process)
        assert (ready["event"], ready["tokens"], ready["failed"]) == ("ready", ["tok-1"], 0)

        long = "200.5 " + "x" * 300  # a frame with a 16-bit length
        stream = b"".join([
            server.ws.send(TextMessage(data=json.dumps(notify("n-A", "100.25 xx")))),
            server.ws.send(TextMessage(data=json.dumps(notify("n-B", long)))),
            server.ws.send(TextMessage(data='{"type":"ping","ts":12}')),
            server.ws.send(Ping(payload=b"hb")),
        ])  # fmt: skip
        in_pieces(peer, stream, (1, 150, 151, len(stream) - 3))
        acked: list[object] = []
        pongs: list[object] = []
        while len(acked) < 2 or len(pongs) < 2:
            event = server.next_event()
            if isinstance(event, Pong):
                pongs.append(event.payload)
                continue
            assert isinstance(event, TextMessage), event
            message = json.loads(event.data)
            if message["type"] == "ack":
                acked += message["ids"]
            else:
                pongs.append(message)
        assert acked == ["n-A", "n-B"]
        assert sorted(pongs, key=str) == [b"hb", {"type": "pong", "ts": 12}]
        server.send(notify("n-A", "300.0 again"))  # a duplicate
        assert server.next_message() == {"type": "ack", "ids": ["n-A"]}
        loadgen.command(process, "stats")
        stats = loadgen.line(process)
        assert (stats["acked"], stats["distinct"], stats["duplicates"]) == (3, 2, 1)
        done = loadgen.finish(process)
    assert done["sessions_lost"] == 0
    receipts = done["receipts"]
    assert [receipts["n-A"][1], receipts["n-B"][1]] == [300.0, 200.5]  # the last receipt kept
    assert all(received > 0 for received, _ in receipts.values())


def test_aoi_clients_count_a_refused_upgrade(
    listener: socket.socket, started: list[subprocess.Popen[str]]
) -> None:
    process = spawn(started, "aoi-clients", listener.getsockname()[1], "--count", "1")
    peer = accept(listener)
    with peer:
        assert peer.recv(4096).startswith(b"GET /aoi HTTP/1.1\r\n")
        peer.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        ready = loadgen.line(process)
    assert (ready["connected"], ready["failed"], ready["tokens"]) == (0, 1, [])
    assert ready["errors"] == {"HTTP/1.1 403 Forbidden": 1}


def test_aoi_pusher_pushes_round_robin_and_reads_each_201(
    listener: socket.socket, started: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("t1\nt2\n")
    process = spawn(
        started, "aoi-pusher", listener.getsockname()[1], "--key", "K", "--targets", str(tokens),
        "--connections", "1", "--count", "4", "--start", "0",
        "--end", f"{time.monotonic() + 20:.6f}", "--record", "--payload-bytes", "64",
    )  # fmt: skip
    peer = accept(listener)
    targets, payloads, answered = [], [], 0
    with peer:
        http = h11.Connection(h11.SERVER)
        while answered < 4:
            event = http.next_event()
            if event is h11.NEED_DATA:
                http.receive_data(peer.recv(65536))
            elif isinstance(event, h11.Request):
                headers = dict(event.headers)
                assert (event.method, headers[b"authorization"]) == (b"POST", b"Bearer K")
                assert headers[b"content-type"] == b"application/json"
                targets.append(event.target)
            elif isinstance(event, h11.Data):
                body = json.loads(event.data)
                assert body["ttl_s"] == 600
                payloads.append(body["payload"])
            elif isinstance(event, h11.EndOfMessage):
                answer = json.dumps({"id": f"n{len(payloads)}", "ttl_s": 600}).encode()
                out = http.send(h11.Response(status_code=201, headers=[
                    ("content-type", "application/json"), ("content-length", str(len(answer)))
                ]))  # fmt: skip
                out = (out or b"") + (http.send(h11.Data(data=answer)) or b"")
                out += http.send(h11.EndOfMessage()) or b""
                in_pieces(peer, out, (10,))
                answered += 1
                http.start_next_cycle()
        done = loadgen.line(process)
    assert targets == [b"/v1/push/t1", b"/v1/push/t2", b"/v1/push/t1", b"/v1/push/t2"]
    assert all(len(p) == 64 - 18 + len(p.split(" ")[0]) + 1 for p in payloads)
    assert all(0 < float(p.split(" ")[0]) <= time.monotonic() for p in payloads)
    assert (done["sent"], done["statuses"], done["lost_connections"]) == (4, {"201": 4}, 0)
    assert sorted(done["accepted"]) == ["n1", "n2", "n3", "n4"]
    assert done["round_trip_ms"]["n"] == 4


# --- MQTT --------------------------------------------------------------------------------


class FakeBroker:
    """The broker's side of one MQTT connection, on bench/mqtt_packets.py."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = mqtt_packets.PacketReader()
        self.pending: list[mqtt_packets.Packet] = []
        self.raw = b""

    def next_packet(self) -> mqtt_packets.Packet:
        while not self.pending:
            data = self.sock.recv(65536)
            assert data, "the generator closed the connection"
            self.raw += data
            self.pending.extend(self.reader.feed(data))
        return self.pending.pop(0)


def test_mqtt_clients_subscribe_then_puback_every_publish(
    listener: socket.socket, started: list[subprocess.Popen[str]]
) -> None:
    process = spawn(
        started, "mqtt-clients", listener.getsockname()[1], "--prefix", "sub-", "--first", "3",
        "--count", "1", "--username", "u", "--password", "p", "--record",
    )  # fmt: skip
    peer = accept(listener)
    with peer:
        broker = FakeBroker(peer)
        broker.next_packet()
        assert broker.raw == mqtt_packets.encode_connect(
            "sub-3", username="u", password="p", keepalive=270, session_expiry=3600
        )
        peer.sendall(b"\x20\x03\x00\x00\x00")
        broker.raw = b""
        broker.next_packet()
        assert broker.raw == mqtt_packets.encode_subscribe(1, "aoi/sub-3/chat", 1)
        peer.sendall(b"\x90\x04\x00\x01\x00\x01")
        assert loadgen.line(process)["connected"] == 1
        stream = mqtt_packets.encode_publish(
            "aoi/sub-3/chat", mqtt_packets.make_payload(5, 100.25), packet_id=300,
            message_expiry=600,
        ) + mqtt_packets.encode_publish(
            "aoi/sub-3/chat", mqtt_packets.make_payload(6, 101.5, size=300), packet_id=1
        )  # fmt: skip
        in_pieces(peer, stream, (1, 3, 80))
        pubacks = [broker.next_packet() for _ in range(2)]
        assert [mqtt_packets.parse_puback(p.body).packet_id for p in pubacks] == [300, 1]
        assert {p.type for p in pubacks} == {mqtt_packets.PUBACK}
        done = loadgen.finish(process)
        assert broker.next_packet().type == mqtt_packets.DISCONNECT  # session expiry 0:
        assert broker.raw.endswith(mqtt_packets.encode_disconnect(0, 0))  # the session ends
    assert (done["acked"], done["distinct"], done["duplicates"]) == (2, 2, 0)
    assert {seq: stamp for seq, (_, stamp) in done["receipts"].items()} == {"5": 100.25, "6": 101.5}


def test_mqtt_clients_count_a_refused_connect(
    listener: socket.socket, started: list[subprocess.Popen[str]]
) -> None:
    process = spawn(started, "mqtt-clients", listener.getsockname()[1], "--count", "1")
    peer = accept(listener)
    with peer:
        FakeBroker(peer).next_packet()
        peer.sendall(b"\x20\x03\x00\x86\x00")
        ready = loadgen.line(process)
    assert (ready["connected"], ready["failed"], ready["errors"]) == (0, 1, {"CONNACK 0x86": 1})


def test_mqtt_pusher_keeps_within_the_receive_maximum(
    listener: socket.socket, started: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    topics = tmp_path / "topics.txt"
    topics.write_text("aoi/a/chat\naoi/b/chat\n")
    process = spawn(
        started, "mqtt-pusher", listener.getsockname()[1], "--prefix", "app-", "--username",
        "app", "--password", "pw", "--targets", str(topics), "--window", "10", "--count", "5",
        "--start", "0", "--end", f"{time.monotonic() + 20:.6f}", "--record",
    )  # fmt: skip
    peer = accept(listener)
    publishes: list[mqtt_packets.Publish] = []
    with peer:
        broker = FakeBroker(peer)
        assert broker.next_packet().type == mqtt_packets.CONNECT
        receive_maximum = mqtt_packets.encode_properties([(mqtt_packets.RECEIVE_MAXIMUM, 2)])
        peer.sendall(mqtt_packets.packet(0x20, b"\x00\x00" + receive_maximum))
        while len(publishes) < 5:
            unacked = [broker.next_packet()]
            time.sleep(0.05)  # whatever else the generator would send now
            unacked += broker.pending
            broker.pending = []
            assert len(unacked) <= 2
            arrived = [mqtt_packets.parse_publish(p.flags, p.body) for p in unacked]
            publishes += arrived
            peer.sendall(b"".join(mqtt_packets.encode_puback(p.packet_id or 0) for p in arrived))
        done = loadgen.line(process)
    assert [p.topic for p in publishes] == ["aoi/a/chat", "aoi/b/chat"] * 2 + ["aoi/a/chat"]
    assert [p.packet_id for p in publishes] == [1, 2, 3, 4, 5]
    assert {p.qos for p in publishes} == {1}
    assert all(p.properties == {mqtt_packets.MESSAGE_EXPIRY_INTERVAL: 600} for p in publishes)
    assert [mqtt_packets.read_stamp(p.payload)[1] for p in publishes] == [0, 1, 2, 3, 4]
    assert {len(p.payload) for p in publishes} == {mqtt_packets.PAYLOAD_BYTES}
    assert (done["sent"], done["statuses"], done["window"]) == (5, {"0": 5}, 2)
    assert sorted(done["accepted"]) == ["0", "1", "2", "3", "4"]


# --- what the parent computes ------------------------------------------------------------


def test_latencies_pair_each_acceptance_with_its_receipt() -> None:
    pushed = [{"accepted": {"a": 10.0, "b": 11.0}}, {"accepted": {"c": 12.0}}]
    receipts = {"a": [10.002, 9.9], "b": [10.999, 10.9], "x": [1.0, 1.0]}
    figures = loadgen.latencies(pushed, receipts, ("201", "push_sent"))
    assert figures["accepted_in_window"] == 3
    assert figures["not_received"] == 1  # c
    assert figures["receipt_before_201_seen"] == 1  # b arrived before its 201
    assert figures["latency_201_to_receipt_ms"]["n"] == 2
    assert figures["latency_push_sent_to_receipt_ms"]["p50"] == pytest.approx(102.0)
    during = loadgen.latencies(pushed, receipts, ("puback", "publish_sent"), (10.5, 12.5))
    assert (during["accepted_in_window"], during["accepted_per_s"]) == (2, 1)
    assert during["latency_puback_to_receipt_ms"]["p50"] == pytest.approx(-1.0)
