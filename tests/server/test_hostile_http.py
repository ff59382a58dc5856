"""Malformed HTTP, malformed upgrades, slow and too many connections, on the wire.

A real ``aoi server`` process gets the bytes an attacker would send (``bench.hostile``'s
inputs, on a plain socket); each must get the answer docs/protocol.md gives it (status,
``error_response`` body, the connection closed or kept), and the server must serve a normal
request right after. Nothing here knows how the server parses HTTP.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import aoi_schemas
import jsonschema_rs
import pytest
import trio
from bench.hostile import raw
from bench.hostile.inputs import Input, inputs, request, upgrade
from bench.hostile.target import KEY, Target, started

from aoi.net.http import HttpServer, WebSocketRoute
from aoi.net.http_messages import Request, Response
from aoi.net.websocket import WebSocket

HEAD_TIMEOUT_S = 1.0
BODY_TIMEOUT_S = 1.0
_SCHEMAS = aoi_schemas.schemas()
ERROR_RESPONSE = jsonschema_rs.validator_for(
    _SCHEMAS[aoi_schemas.schema_id("aoi3/error_response.json")],
    registry=jsonschema_rs.Registry(list(_SCHEMAS.items())),
)


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    with started(
        tmp_path_factory.mktemp("hostile-http"),
        request_head_timeout_s=HEAD_TIMEOUT_S,
        request_body_timeout_s=BODY_TIMEOUT_S,
    ) as target:
        yield target


def assert_serves(target: Target) -> None:
    assert target.alive(), "\n".join(target.log_lines()[-20:])
    assert target.health() == 200


def assert_error(response: raw.Response, status: int, code: str) -> None:
    assert response.status == status
    document = json.loads(response.body)
    ERROR_RESPONSE.validate(document)
    assert document["error"] == code, document


@pytest.mark.parametrize("hostile", inputs(KEY), ids=lambda i: i.name)
def test_each_hostile_request_gets_its_documented_answer(target: Target, hostile: Input) -> None:
    answer = raw.exchange(target.address, hostile.data, wait=3.0, until_closed=hostile.closes)
    assert len(answer.responses) == 1, answer.shown()  # one answer: nothing smuggled
    assert answer.status in hostile.statuses, answer.shown()
    assert_error(answer.first, answer.first.status, hostile.code)
    if hostile.closes:
        assert answer.closed and not answer.reset, answer.shown()
    assert_serves(target)


def test_a_smuggled_request_is_not_served(target: Target) -> None:
    (smuggling,) = [i for i in inputs(KEY) if i.group == "smuggling"]
    raw.exchange(target.address, smuggling.data, wait=2.0)
    health = raw.exchange(target.address, b"GET /v1/health HTTP/1.1\r\nHost: a\r\n\r\n", wait=1)
    assert json.loads(health.first.body)["status"] == "ok"  # the drain did not happen


def test_an_unsupported_websocket_version_is_told_the_supported_one(target: Target) -> None:
    for version in ("8", "14"):
        answer = raw.exchange(target.address, upgrade(Sec_WebSocket_Version=version))
        assert answer.status == 426
        assert answer.first.headers["sec-websocket-version"] == "13"
    answer = raw.exchange(target.address, upgrade(drop=("Upgrade", "Connection")))
    assert answer.first.headers["upgrade"] == "websocket"


def test_head_and_drain_paths_answer_as_documented(target: Target) -> None:
    head = raw.exchange(
        target.address, b"HEAD /v1/health HTTP/1.1\r\nHost: a\r\n\r\n", until_closed=False
    )
    assert head.status == 200 and head.first.body == b"" and not head.rest
    assert int(head.first.headers["content-length"]) > 0  # the length GET would have
    drain = raw.exchange(
        target.address, b"GET /v1/admin/drain HTTP/1.1\r\nHost: a\r\n\r\n", until_closed=False
    )
    assert_error(drain.first, 405, "method_not_allowed")
    assert drain.first.headers["allow"] == "POST"


def test_pipelined_requests_cut_anywhere_are_each_answered(target: Target) -> None:
    one = b"GET /v1/health HTTP/1.1\r\nHost: a\r\n\r\n"
    data = one * 2 + one.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    pieces = [data[i : i + 7] for i in range(0, len(data), 7)]  # requests begin mid-piece
    answer = raw.exchange(target.address, pieces, pause=0.01, wait=3)
    assert [r.status for r in answer.responses] == [200, 200, 200], answer.shown()


def test_a_slow_head_gets_408_at_its_deadline(target: Target) -> None:
    request = b"GET /v1/health HTTP/1.1\r\nHost: a\r\n\r\n"
    started_at = time.monotonic()
    # One byte every 0.1 s: every byte comes well within any idle timeout, the head never
    # within HEAD_TIMEOUT_S.
    answer = raw.exchange(target.address, [bytes([b]) for b in request], pause=0.1, wait=1)
    assert answer.status == 408, answer.shown()
    assert_error(answer.first, 408, "request_timeout")
    assert HEAD_TIMEOUT_S <= time.monotonic() - started_at < HEAD_TIMEOUT_S + 2.5
    assert_serves(target)


def test_a_connection_opened_ahead_may_wait_before_its_first_request(target: Target) -> None:
    """Pools open connections before they need them: the head deadline runs from the first
    byte of a request, not from the connection's opening (idle ones go after 60 s)."""
    sock = raw.connect(target.address)
    try:
        time.sleep(HEAD_TIMEOUT_S + 1)
        sock.sendall(b"GET /v1/health HTTP/1.1\r\nHost: a\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
    finally:
        sock.close()


def test_a_slow_body_gets_408_at_its_deadline(target: Target) -> None:
    head = (
        f"POST /v1/push/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {KEY}\r\n"
        "Content-Length: 100\r\n\r\n"
    ).encode()
    answer = raw.exchange(target.address, [head, *[b"x"] * 30], pause=0.1, wait=1)
    assert answer.status == 408, answer.shown()
    assert BODY_TIMEOUT_S <= answer.seconds < BODY_TIMEOUT_S + 2.5


def test_slow_heads_do_not_keep_others_from_being_served(target: Target) -> None:
    slow = []
    for _ in range(200):
        sock = raw.connect(target.address)
        sock.sendall(b"GET /aoi HTTP/1.1\r\n")
        slow.append(sock)
    try:
        began = time.monotonic()
        assert target.health(wait=2) == 200
        assert time.monotonic() - began < 1.0
        time.sleep(HEAD_TIMEOUT_S + 1.5)
        answers = [s.recv(4096) for s in slow]
        assert all(a.startswith(b"HTTP/1.1 408 ") for a in answers)
    finally:
        for sock in slow:
            sock.close()


def test_connections_beyond_the_cap_get_503_and_loopback_still_gets_in(tmp_path: Path) -> None:
    cap = 20
    with started(tmp_path, max_connections=cap, request_head_timeout_s=30) as target:
        held = [raw.connect(target.address, source="127.0.0.2") for _ in range(cap)]
        try:
            time.sleep(0.2)  # every one accepted
            answer = raw.exchange(target.address, b"", source="127.0.0.3", wait=2)
            assert_error(answer.first, 503, "overloaded")
            assert answer.first.headers["retry-after"] == "1" and answer.closed
            assert target.health() == 200  # from 127.0.0.1: the operators' reserve
        finally:
            for sock in held:
                sock.close()
        time.sleep(0.2)
        answer = raw.exchange(target.address, b"GET /v1/health HTTP/1.1\r\nHost: a\r\n\r\n",
                              source="127.0.0.3", until_closed=False)  # fmt: skip
        assert answer.status == 200


def test_running_out_of_descriptors_is_logged_once_as_json(tmp_path: Path) -> None:
    with started(tmp_path, open_files=64, max_connections=1000) as target:
        held: list[socket.socket] = []
        try:
            for _ in range(120):  # more than the process may open: accept(2) fails
                held.append(raw.connect(target.address, source="127.0.0.2"))
            time.sleep(1.0)
        finally:
            for sock in held:
                sock.close()
        time.sleep(0.5)
        assert_serves(target)
        lines = target.log_lines()
        records = [json.loads(line) for line in lines]  # every line is JSON
        failures = [r for r in records if r["event"] == "accept_failed"]
        assert 1 <= len(failures) <= 2, failures  # once per interval, however many failed
        assert failures[0]["error"] == "EMFILE" and failures[0]["level"] == "error"


def test_a_failing_handler_costs_its_request_a_500_and_nothing_else(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def handler(request: Request) -> Response:
        if request.path == "/bug":
            raise RuntimeError("a bug in a handler")
        return Response.json(200, {"ok": True})

    async def session(ws: WebSocket, request: Request) -> None:
        raise RuntimeError("a bug in a WebSocket handler")

    def ask(port: int, data: bytes) -> raw.Answer:
        return raw.exchange(("127.0.0.1", port), data, wait=2, until_closed=b"/ws" in data)

    async def main() -> None:
        server = HttpServer(handler, {"/ws": WebSocketRoute("x", session)})
        async with trio.open_nursery() as nursery:
            port = (await nursery.start(server.serve, "127.0.0.1", 0))[0].socket.getsockname()[1]
            bug = await trio.to_thread.run_sync(ask, port, request("GET /bug HTTP/1.1\nHost: a\n"))
            assert_error(bug.first, 500, "internal_error")
            broken = await trio.to_thread.run_sync(
                ask, port, upgrade(Sec_WebSocket_Protocol="x").replace(b"/aoi", b"/ws")
            )
            assert broken.status == 101 and broken.closed
            fine = await trio.to_thread.run_sync(ask, port, request("GET / HTTP/1.1\nHost: a\n"))
            assert fine.status == 200
            nursery.cancel_scope.cancel()

    trio.run(main)
    events = [r.getMessage() for r in caplog.records]
    assert events == ["request_failed", "connection_failed"]
