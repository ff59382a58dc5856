"""AOI-2 session rules over real sockets: TLS, handshake timeout, bad frames, versions."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trio
import trio.testing
import trustme
from bench.hostile.session import Closed, Session

from aoi.net.client import HandshakeError, connect
from aoi.server.clock import Clock

from .harness import Peer, config, running

EPOCH = 1_800_000_000.0


def test_tls_end_to_end_and_certificate_verification(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    cfg = config(
        tmp_path,
        server={"tls_cert": str(tmp_path / "server.pem"), "tls_key": str(tmp_path / "server.pem")},
    )
    trusting = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))

    async def main() -> None:
        async with running(cfg, ssl_context=trusting) as env:
            assert env.here.aoi2.startswith("wss://") and env.here.http.startswith("https://")
            peer, welcome = await env.hello()
            assert welcome["type"] == "welcome"
            registered = await peer.register()
            assert registered["endpoint"].startswith("https://")
            assert (await env.push(registered["endpoint"], "over tls")).status_code == 201
            assert (await peer.receive())["payload"] == "over tls"
            with pytest.raises(HandshakeError, match=r"certificate of 127\.0\.0\.1 is not trusted"):
                await connect(env.here.aoi2, "aoi.v1", ssl_context=ssl.create_default_context())

    trio.run(main)


def test_connection_without_hello_is_closed_after_the_handshake_timeout(tmp_path: Path) -> None:
    """The default timeout (10 s), in virtual time: no real wait."""
    mock = trio.testing.MockClock(rate=1.0)

    async def main() -> None:
        async with running(config(tmp_path), clock=Clock.following_trio(EPOCH)) as env:
            silent = Peer(await connect(env.here.aoi2, "aoi.v1"))
            env.peers.append(silent)
            mock.jump(9.5)
            with trio.move_on_after(0.2):
                await silent.closed()
                raise AssertionError("closed before the handshake timeout")
            mock.jump(1.0)
            assert (await silent.closed()).code == 4408

    trio.run(main, clock=mock)


BAD_FRAMES = [
    ("not json", "malformed_frame"),
    ('["hello"]', "not_an_object"),
    ('{"type": "subscribe"}', "unsupported_message"),
    ('{"type": "register", "req": "one", "app_id": "a"}', "invalid_message"),
    ('{"type": "register", "req": 1}', "invalid_message"),
    ('{"type": "welcome", "server_id": "x"}', "invalid_message"),
    (
        '{"type": "welcome", "server_id": "x", "session": "AAAAAAAAAAAAAAAAAAAA", '
        '"keepalive_s": 30, "limits": {"max_payload": 1, "max_apps": 1}}',
        "unexpected_message",
    ),
]


@pytest.mark.parametrize(("frame", "code"), BAD_FRAMES)
def test_bad_frames_get_their_error_and_harm_nobody_else(
    tmp_path: Path, frame: str, code: str
) -> None:
    async def main() -> None:
        async with running(config(tmp_path)) as env:
            bystander, _ = await env.hello(2)
            endpoint = (await bystander.register())["endpoint"]
            sender, _ = await env.hello(1)
            await sender.ws.send(frame)
            error = await sender.receive()
            assert (error["type"], error["code"], error["fatal"]) == ("error", code, False)
            await sender.send(type="ping", ts=1)
            assert (await sender.receive())["type"] == "pong"  # the session is still there
            assert (await env.push(endpoint, "unaffected")).status_code == 201
            assert (await bystander.receive())["payload"] == "unaffected"

    trio.run(main)


def test_a_binary_message_is_read_as_text_and_invalid_utf8_closes_with_1007(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        async with running(config(tmp_path)) as env:
            peer, _ = await env.hello(1)
            await peer.ws.send(b'{"type": "ping", "ts": 1}')  # bytes: a binary message
            assert await peer.receive() == {"type": "pong", "ts": 1}
            # A masked text frame (a zero mask key) of three bytes that are not UTF-8.
            await peer.ws._stream.send_all(bytes((0x81, 0x83, 0, 0, 0, 0)) + b"\xff\xfe\xfd")
            assert (await peer.closed()).code == 1007

    trio.run(main)


def test_oversized_frame_is_fatal_with_4413(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(config(tmp_path)) as env:
            sender, _ = await env.hello(1)
            await sender.send(type="ping", pad="x" * 70_000)
            error = await sender.receive()
            assert (error["code"], error["fatal"]) == ("frame_too_large", True)
            assert (await sender.closed()).code == 4413

    trio.run(main)


def test_unsupported_version_and_failed_hello_limit(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(config(tmp_path, security={"failed_hello_limit": 3})) as env:
            peer = Peer(await connect(env.here.aoi2, "aoi.v1"))
            env.peers.append(peer)
            await peer.send(type="hello", version=2, client_id="dev-1", credential="secret-1")
            assert (await peer.receive())["reason"] == "unsupported_version"
            assert (await peer.closed()).code == 4426
            reasons = [(await env.hello(3, credential="guess"))[1]["reason"] for _ in range(4)]
            assert reasons == ["invalid_credentials"] * 3 + ["rate_limited"]
            _, blocked = await env.hello(3)  # even the right credential waits now
            assert blocked["reason"] == "rate_limited" and blocked["retry_after_s"] > 0

    trio.run(main)


def test_a_hello_naming_another_provider_than_the_clients_is_forbidden(tmp_path: Path) -> None:
    clients = [{"client_id": "dev-1", "credential": "secret-1", "provider": "op.example"}]

    async def main() -> None:
        async with running(config(tmp_path, clients=clients)) as env:
            answers = []
            for provider in ("other.example", "op.example", None):
                peer = Peer(await connect(env.here.aoi2, "aoi.v1"))
                env.peers.append(peer)
                hello = {"version": 1, "client_id": "dev-1", "credential": "secret-1"}
                await peer.send(
                    type="hello", **hello, **({"provider": provider} if provider else {})
                )
                answer = await peer.receive()
                answers.append(answer.get("reason", answer["type"]))
                if answer["type"] == "reject":
                    assert (await peer.closed()).code == 4001
                else:
                    await peer.send(type="bye")
                    await peer.closed()
            assert answers == ["forbidden", "welcome", "welcome"]

    trio.run(main)


def test_subprotocol_is_required(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(config(tmp_path)) as env:
            with pytest.raises(HandshakeError) as refused:
                await connect(env.here.aoi2, "mqtt")
            assert refused.value.status == 400
            upgrade = {
                "upgrade": "websocket", "connection": "Upgrade", "sec-websocket-version": "13",
                "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
            }  # fmt: skip
            offered_none = await env.http.get(env.here.http + "/aoi", headers=upgrade)
            assert offered_none.status_code == 400
            assert offered_none.json()["error"] == "unsupported_subprotocol"

    trio.run(main)


def test_before_welcome_a_frame_larger_than_any_hello_is_refused_unread(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(config(tmp_path)) as env:
            peer = Peer(await connect(env.here.aoi2, "aoi.v1"))
            env.peers.append(peer)
            await peer.send(type="hello", version=1, client_id="dev-1", credential="x" * 20_000)
            error = await peer.receive()
            assert (error["code"], error["fatal"]) == ("frame_too_large", True)
            assert (await peer.closed()).code == 4413
            welcomed, welcome = await env.hello(1)  # after welcome, the usual limit
            assert welcome["type"] == "welcome"
            await welcomed.send(type="ping", ts=1, pad="x" * 60_000)
            assert (await welcomed.receive())["type"] == "pong"

    trio.run(main)


def test_a_huge_frame_before_welcome_is_cut_off_without_reading_it(tmp_path: Path) -> None:
    def attack(address: tuple[str, int]) -> tuple[str, int, float]:
        with Session(address) as peer:
            # One text frame of 16 MB announced, then sent at full speed: the server closes
            # as soon as the first 16 KB of it show that it is too large.
            size = 16 << 20
            peer.sock.sendall(bytes((0x81, 0x80 | 127)) + size.to_bytes(8, "big") + bytes(4))
            sent = 0
            try:
                while sent < size:
                    sent += peer.sock.send(b"x" * 65536)
            except OSError:  # closed by the server
                pass
            error = peer.receive()
            try:
                peer.receive()
            except Closed as closed:
                return error["code"], closed.code, sent / size
            raise AssertionError("not closed")

    async def main() -> None:
        async with running(config(tmp_path)) as env:
            address = ("127.0.0.1", int(env.here.http.rsplit(":", 1)[1]))
            error, code, share = await trio.to_thread.run_sync(attack, address)
            assert (error, code) == ("frame_too_large", 4413) and share < 0.5, share
            _, welcome = await env.hello(1)
            assert welcome["type"] == "welcome"

    trio.run(main)
