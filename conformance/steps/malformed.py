"""Steps of malformed input: bad frames, their error codes, and the sessions around them."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from pytest_bdd import then, when

from conformance.device import RESPONSE_S, describe
from conformance.driver.frames import SUBPROTOCOL, Handshake
from conformance.driver.raw_http import Exchange, HostileConnection
from conformance.steps import text
from conformance.steps.handshake import GRACE_S
from conformance.steps.sessions import still_answers
from conformance.verdicts import TargetUnreachable
from conformance.world import World


@when(text('client "{name:q}" sends the text {frame}'))
def sends_text(world: World, name: str, frame: str) -> None:
    world.device(name).connection().send_text(frame)


@when(text('client "{name:q}" sends a binary frame'))
def sends_binary(world: World, name: str) -> None:
    world.device(name).connection().send_bytes(b"\x00\xffAOI\x00")


@when(text('client "{name:q}" sends a text of {size:n} bytes'))
def sends_oversized(world: World, name: str, size: int) -> None:
    head = '{"type": "ping", "pad": "'
    frame = head + "x" * (size - len(head) - 2) + '"}'
    assert len(frame.encode()) == size and json.loads(frame)
    world.device(name).connection().send_text(frame)


@when(text('client "{name:q}" connects and sends the text {frame} before hello'))
def sends_before_hello(world: World, name: str, frame: str) -> None:
    device = world.device(name)
    device.open()
    device.connection().send_text(frame)


@then(text('client "{name:q}" receives an error "{code:q}" that is {fatality} [{req:req}]'))
def receives_error(world: World, name: str, code: str, fatality: str, req: str) -> None:
    device = world.device(name)
    frame = device.take(lambda f: f.type == "error")
    frame = world.found(
        req,
        frame,
        f"expected error{{code: {code}}}: {describe(frame, device.connection().closed)}",
        lambda f: f.get("code") == code,
    )
    fatal = fatality == "fatal"
    world.check(
        req,
        frame.get("fatal") is fatal,
        f"error {code} must have fatal={str(fatal).lower()}: {frame.raw!s:.300}",
    )


@then(text('client "{name:q}" is closed with code {code:n} [{req:req}]'))
def is_closed(world: World, name: str, code: int, req: str) -> None:
    world.device(name).closed_with(req, code)


# --- hostile HTTP: malformed upgrades and requests (docs/protocol.md 2.1, 3.9) ----------------

KEY = "MDEyMzQ1Njc4OWFiY2RlZg=="  # a valid Sec-WebSocket-Key: base64 of 16 bytes
AFTER_S = 0.5  # after the hostile client left: time for a dying server to close a session


def _upgrade(world: World, flaw: str) -> bytes:
    """An opening handshake to the target's AOI-2 URL with one ``flaw``."""
    url = urlsplit(world.endpoint().aoi2)
    method, version = "GET", "1.1"
    fields = {
        "Host": url.netloc, "Upgrade": "websocket", "Connection": "Upgrade",
        "Sec-WebSocket-Key": KEY, "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Protocol": SUBPROTOCOL,
    }  # fmt: skip
    if flaw == "by POST":
        method = "POST"
        fields["Content-Length"] = "0"
    elif flaw == "over HTTP/1.0":
        version = "1.0"
    elif flaw.startswith("without "):
        del fields[flaw.removeprefix("without ").split(":")[0]]
    elif flaw.startswith("with "):
        name, value = flaw.removeprefix("with ").split(" ", 1)
        fields[name] = value.strip('"')
    else:
        raise ValueError(f"suite: unknown flaw of an upgrade {flaw!r}")
    lines = [f"{method} {url.path or '/'} HTTP/{version}"]
    lines += [f"{name}: {value}" for name, value in fields.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _request(world: World, what: str) -> bytes:
    """A request to the target's HTTP port that breaks HTTP/1.1 (RFC 9112) as ``what`` says."""
    host = urlsplit(world.endpoint().http).netloc
    health = f"/v1/health HTTP/1.1\r\nHost: {host}\r\n"
    requests = {
        "a Content-Length that is not a number": f"POST {health}Content-Length: 12x\r\n\r\n",
        "a Transfer-Encoding that does not end with chunked":
            f"POST {health}Transfer-Encoding: gzip\r\n\r\n",
        "both Content-Length and Transfer-Encoding, smuggling a second request":
            f"POST {health}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
            f"GET {health}\r\n",
        "a NUL in a header": f"GET {health}X-Note: a\0b\r\n\r\n",
        "no Host header": "GET /v1/health HTTP/1.1\r\n\r\n",
        "an HTTP/0.9 request line": "GET /v1/health\r\n\r\n",
        "a header block of 32 KB": f"GET {health}X-Pad: {'a' * 32768}\r\n\r\n",
        "a header block of 1 MB": f"GET {health}" + "X-Pad: aaaaaaaaaaaaaaaa\r\n" * 43691 + "\r\n",
    }  # fmt: skip
    if what not in requests:
        raise ValueError(f"suite: unknown hostile request {what!r}")
    return requests[what].encode("latin-1")


def _hostile(world: World, data: bytes) -> None:
    """Send ``data`` on a connection of its own, kept open until the scenario ends (or a
    step closes it)."""
    endpoint = world.endpoint()
    connection = HostileConnection(
        endpoint.http, world.wirelog, ca_file=endpoint.ca_file, timeout=world.timeout(10)
    )
    world.cleanups.append(connection.close)
    world.notes["hostile connection"] = connection
    world.notes["hostile"] = connection.send(data, wait=world.timeout(RESPONSE_S))


@when(text("a hostile client asks for a WebSocket upgrade {flaw}"))
def hostile_upgrade(world: World, flaw: str) -> None:
    _hostile(world, _upgrade(world, flaw))


@when(text("a hostile client sends a request with {what}"))
def hostile_request(world: World, what: str) -> None:
    _hostile(world, _request(world, what))


def _refusal(status: int) -> bool:
    """An error status that refuses a malformed request: a 4xx, or 501 or 505 (a transfer
    coding or an HTTP version the server does not implement)."""
    return 400 <= status < 500 or status in (501, 505)


@then(text("the upgrade is refused with an HTTP error status [{req:req}]"))
def upgrade_refused_with_error(world: World, req: str) -> None:
    exchange: Exchange = world.notes["hostile"]
    first = exchange.responses[0].status if exchange.responses else None
    world.check(
        req,
        first is not None and _refusal(first),
        f"a malformed upgrade must be refused with an HTTP error status (RFC 6455 4.2.2): "
        f"{exchange.shown()}",
    )


@then(text("the upgrade is refused naming WebSocket version 13 [{req:req}]"))
def upgrade_refused_naming_version(world: World, req: str) -> None:
    exchange: Exchange = world.notes["hostile"]
    first = exchange.responses[0] if exchange.responses else None
    versions = first.headers.get("sec-websocket-version", "") if first else ""
    world.check(
        req,
        first is not None
        and _refusal(first.status)
        and "13" in [v.strip() for v in versions.split(",")],
        "an unsupported WebSocket version must be refused with an HTTP error status and "
        f"Sec-WebSocket-Version naming 13 (RFC 6455 4.2.2): {exchange.shown()}"
        + (f", Sec-WebSocket-Version: {versions!r}" if first else ""),
    )


ANSWERS: dict[str, Callable[[Exchange], bool]] = {
    "with 400 and a close": lambda e: e.closed and [r.status for r in e.responses][:1] == [400],
    "with 400 or 501 and a close": lambda e: (
        e.closed and [r.status for r in e.responses][:1] in ([400], [501])
    ),
    "once, and its connection is closed": lambda e: e.closed and len(e.responses) == 1,
    "with 400": lambda e: [r.status for r in e.responses][:1] == [400],
    "with an HTTP status": lambda e: bool(e.responses),
    "or its connection closed": lambda e: bool(e.responses) or e.closed,
}


@then(text("it is answered {answer} [{req:req}]"))
def hostile_answered(world: World, answer: str, req: str) -> None:
    if answer not in ANSWERS:
        raise ValueError(f"suite: unknown answer {answer!r}")
    exchange: Exchange = world.notes["hostile"]
    world.check(req, ANSWERS[answer](exchange), f"expected an answer {answer}: {exchange.shown()}")


def _welcomed(world: World, name: str, req: str, when: str) -> None:
    """A newcomer is served as usual. The target was reached for the hostile request: if
    it cannot be reached now, it died of it."""
    device = world.device(name)
    try:
        handshake = device.connect()
    except TargetUnreachable as unreachable:
        handshake = Handshake(False, error=f"the server is gone: {unreachable}")
    frame = None
    if handshake.accepted:
        device.hello()
        frame = device.answer_to_hello()
    world.check(
        req,
        frame is not None and frame.type == "welcome",
        f"{when}, client {name} was not served: "
        + (describe(frame, device.connection().closed) if handshake.accepted else
           f"no WebSocket upgrade ({handshake.error or handshake.status})"),
    )  # fmt: skip


@then(text('a new client "{name:q}" is welcomed meanwhile [{req:req}]'))
def welcomed_meanwhile(world: World, name: str, req: str) -> None:
    """While the hostile connection is still open (a server must not wait for it)."""
    _welcomed(world, name, req, "while the hostile connection was open")


@then(
    text(
        'after the hostile client left, a new client "{name:q}" is welcomed and client '
        '"{other:q}" answers ping [{req:req}]'
    )
)
def served_after_it_left(world: World, name: str, other: str, req: str) -> None:
    """A server may fail only when the attacker goes: close the hostile connection, wait
    a moment for what a dying server would do (close the established session), and see it
    still serves, newcomers and established sessions."""
    world.notes["hostile connection"].close()
    world.device(other).connection().wait_closed(world.timeout(AFTER_S))
    _welcomed(world, name, req, "after the hostile client left")
    still_answers(world, other, req)


# --- slow requests: the deadlines of a request head and body (docs/protocol.md 3.9) ----------


def _slow(world: World, data: bytes, deadline_s: float, secret: str = "") -> None:
    """Send ``data``, a request that stops halfway, then nothing; wait for the target to
    answer or close until ``deadline_s`` and a grace have passed."""
    endpoint = world.endpoint()
    connection = HostileConnection(
        endpoint.http, world.wirelog, ca_file=endpoint.ca_file, timeout=world.timeout(10)
    )
    world.cleanups.append(connection.close)
    started = time.monotonic()
    exchange = connection.send(data, wait=world.timeout(deadline_s + GRACE_S), secret=secret)
    if exchange.error:  # nothing was sent: no deadline to judge
        raise TargetUnreachable(
            f"target unreachable: a slow request could not reach {endpoint.http}: {exchange.error}"
        )
    world.notes["slow"] = (exchange, time.monotonic() - started, deadline_s)


@when(text("a slow client sends half a request head, then nothing"))
def sends_half_a_head(world: World) -> None:
    host = urlsplit(world.endpoint().http).netloc
    _slow(world, f"GET /v1/health HTTP/1.1\r\nHost: {host}\r\nX-Slow:".encode(),
          world.ixit.request_head_timeout_s)  # fmt: skip


@when(
    text(
        'the server app of app "{app:q}" of client "{name:q}" sends the head of a push and '
        "half its body, then nothing"
    )
)
def sends_half_a_body(world: World, app: str, name: str) -> None:
    device = world.device(name)
    world.precondition(app in device.endpoints, f"client {name} has no endpoint for app {app!r}")
    url = urlsplit(device.endpoints[app])
    key = world.ixit.server_app_of(app).key
    body = json.dumps({"payload": "slow body", "ttl_s": 600}).encode()
    head = (
        f"POST {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    half = head.encode("latin-1") + body[: len(body) // 2]
    _slow(world, half, world.ixit.request_body_timeout_s, secret=key)


@then(
    text("the server answers 408 or closes the connection within the {what} deadline [{req:req}]")
)
def slow_request_ended(world: World, what: str, req: str) -> None:
    exchange, waited, deadline_s = world.notes["slow"]
    statuses = [r.status for r in exchange.responses]
    world.check(
        req,
        exchange.closed or 408 in statuses,
        f"a request whose {what} never completed: {exchange.shown()} {waited:.1f} s later "
        f"(the {what} deadline is {deadline_s} s in the IXIT, plus a grace of {GRACE_S} s); "
        "expected 408 or a close",
    )
