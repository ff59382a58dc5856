"""The AOI Client against real reference AOI Servers (``python -m aoi server`` processes),
on loopback, in real time: reallocation, fail to app, independence, credential refusal."""

from __future__ import annotations

import json
import logging
import signal
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trustme

from aoi.client.config import ClientConfig, ProviderConfig
from aoi.client.daemon import Daemon
from aoi.net.client import connect

from .fakes import FakeApp

pytestmark = pytest.mark.slow

CHAT, MAIL = "com.example.chat", "com.example.mail"
KEY = "chat-key-0123456789"
WAIT = 15.0  # real seconds: generous, for slow machines


@dataclass
class ReferenceServer:
    id: str
    process: trio.Process
    aoi2: str
    http: str
    verify: ssl.SSLContext | bool = True

    def entry(self, priority: int) -> dict[str, Any]:
        return {"id": self.id, "url": self.aoi2, "priority": priority}

    async def counter(self, name: str) -> float:
        """A Prometheus counter's value, summed over its labels."""
        async with httpx.AsyncClient(verify=self.verify) as http:
            text = (await http.get(self.http + "/metrics")).text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith((name + "_total ", name + "_total{"))
        )


@asynccontextmanager
async def reference_server(
    tmp_path: Path, server_id: str, tls: tuple[Path, Path] | None = None, **overload: Any
) -> AsyncIterator[ReferenceServer]:
    overload = {"retry_after_s": 1, "shed": True, "shed_rate_per_s": 100, **overload}
    lines = [
        "[server]", f'id = "{server_id}"', 'listen = "127.0.0.1:0"',
        f'db = "{tmp_path / (server_id + ".db")}"',
        *([f'tls_cert = "{tls[0]}"', f'tls_key = "{tls[1]}"'] if tls else []), "",
        "[overload]", *(f"{k} = {json.dumps(v)}" for k, v in overload.items()), "",
        "[[clients]]", 'client_id = "dev-1"', 'credential = "secret-1"', "",
        "[[server_apps]]", 'name = "chat"', f'key = "{KEY}"', f'app_ids = ["{CHAT}", "{MAIL}"]',
        "rate_per_s = 1000", "burst = 1000",
    ]  # fmt: skip
    config = tmp_path / f"{server_id}.toml"
    config.write_text("\n".join(lines) + "\n")
    ready = tmp_path / f"{server_id}.ready"
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "aoi", "server", "--config", str(config),
         "--ready-file", str(ready), "--log-level", "warning"],
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        with trio.fail_after(WAIT):
            while not ready.exists():
                await trio.sleep(0.05)
        urls = json.loads(ready.read_text())
        yield ReferenceServer(server_id, process, urls["aoi2"], urls["http"])
    finally:
        if process.returncode is None:
            process.kill()
        with trio.move_on_after(5):
            await process.wait()


def client_policy(*servers: tuple[ReferenceServer, int], **extra: Any) -> dict[str, Any]:
    return {
        "provider": "op.example",
        "policy_version": 1,
        "servers": [server.entry(priority) for server, priority in servers],
        "selection": "ordered",
        "reallocation": {
            "on_overload": "next_server", "on_unreachable": "next_server",
            "max_servers_tried": 3, "return_to_preferred_after_s": 0,
            "backoff": {"initial_ms": 50, "max_ms": 1000, "multiplier": 2.0, "jitter": "full"},
        },
        "fallback": {"notify_app": True},
        "multi_server": {"allowed": True, "max_concurrent": 4},
        "keepalive_s": 270,
        **extra,
    }  # fmt: skip


@asynccontextmanager
async def aoi_client(
    tmp_path: Path,
    document: dict[str, Any],
    credential: str = "secret-1",
    ca_file: Path | None = None,
) -> AsyncIterator[Daemon]:
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(document))
    config = ClientConfig(
        client_id="dev-1", credential=credential, app_port=0, state_dir=tmp_path / "client",
        providers=(ProviderConfig("op.example", policy_file=path),), seed=1, ca_file=ca_file,
    )  # fmt: skip
    async with trio.open_nursery() as nursery:
        daemon: Daemon = await nursery.start(Daemon(config).run)
        yield daemon
        await daemon.stop()
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def apps_on(daemon: Daemon, count: int) -> AsyncIterator[list[FakeApp]]:
    """``count`` app connections on the client's AOI-1 port, closed afterwards."""
    assert daemon.app_url is not None
    apps = [FakeApp(await connect(daemon.app_url, "aoi-app.v1")) for _ in range(count)]
    try:
        yield apps
    finally:
        for app in apps:
            await app.ws.close()


async def push(endpoint: str, payload: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(endpoint, json={"payload": payload, "ttl_s": 60},
                               headers={"authorization": f"Bearer {KEY}"})  # fmt: skip


async def delivered(app: FakeApp, payload: str) -> dict[str, Any]:
    """The next notification, acknowledged (status events before it are skipped)."""
    while True:
        message = await app.receive(WAIT)
        if message["type"] == "app_notification":
            assert message["payload"] == payload
            await app.send(type="app_ack", id=message["id"])
            return message


def test_shed_server_reallocates_and_pushes_reach_the_new_endpoint(tmp_path: Path) -> None:
    async def main() -> None:
        async with (
            reference_server(tmp_path, "a") as a,
            reference_server(tmp_path, "b") as b,
            aoi_client(tmp_path, client_policy((a, 1), (b, 2))) as daemon,
            apps_on(daemon, 1) as (app,),
        ):
            first = await app.register(CHAT)
            assert first["type"] == "app_registered" and first["server_id"] == "a"
            assert (await push(first["endpoint"], "on a")).status_code == 201
            await delivered(app, "on a")
            # a goes into drain mode: it sheds our session with redirect (maintenance).
            a.process.send_signal(signal.SIGUSR1)
            changed = await app.expect("registration_changed", WAIT)
            assert changed["server_id"] == "b" and changed["reason"] == "reallocated"
            assert changed["endpoint"].startswith(b.http) and changed["token"] != first["token"]
            assert (await push(changed["endpoint"], "on b")).status_code == 201
            await delivered(app, "on b")
            assert await a.counter("aoi_redirects") >= 1

    trio.run(main)


def test_all_servers_overloaded_then_one_accepts(tmp_path: Path) -> None:
    async def main() -> None:
        async with (
            reference_server(tmp_path, "a", max_sessions=0) as a,
            reference_server(tmp_path, "b") as b,
        ):
            b.process.send_signal(signal.SIGUSR1)  # b drains: refuses new sessions too
            await trio.sleep(0.5)
            document = client_policy((a, 1), (b, 2))
            async with aoi_client(tmp_path, document) as daemon, apps_on(daemon, 2) as apps:
                chat, mail = apps
                started = trio.current_time()
                for app, app_id in ((chat, CHAT), (mail, MAIL)):
                    failed = await app.register(app_id)
                    assert failed["type"] == "connection_failed", failed
                    assert failed["fallback"] == "direct" and failed["reason"] == "exhausted"
                # Two servers tried, at most initial_ms apart: well under a second.
                assert trio.current_time() - started < 2.0
                b.process.send_signal(signal.SIGUSR1)  # b accepts again
                undrained = trio.current_time()
                for app in (chat, mail):
                    changed = await app.expect("registration_changed", WAIT)
                    assert changed["server_id"] == "b"
                    restored = await app.expect("connection_restored", WAIT)
                    assert restored["server_id"] == "b"
                # b's refusal said retry_after_s <= 1.5 s; then a background round.
                assert trio.current_time() - undrained < 1.5 + 1.0 + 2.0
                assert (await push(changed["endpoint"], "back")).status_code == 201
                await delivered(mail, "back")

    trio.run(main)


def test_a_server_killed_mid_session_leaves_the_other_alone(tmp_path: Path) -> None:
    async def main() -> None:
        async with (
            reference_server(tmp_path, "a") as a,
            reference_server(tmp_path, "b") as b,
        ):
            routes = [{"app_id": CHAT, "servers": ["a"]}, {"app_id": MAIL, "servers": ["b"]}]
            document = client_policy((a, 1), (b, 1), app_routes=routes)
            async with aoi_client(tmp_path, document) as daemon, apps_on(daemon, 2) as apps:
                chat, mail = apps
                assert (await chat.register(CHAT))["server_id"] == "a"
                on_b = await mail.register(MAIL)
                assert on_b["server_id"] == "b"
                a.process.kill()
                for n in range(5):
                    assert (await push(on_b["endpoint"], f"m{n}")).status_code == 201
                    message = await mail.expect("app_notification", WAIT)
                    assert message["payload"] == f"m{n}"
                    await mail.send(type="app_ack", id=message["id"])
                failed = await chat.expect("connection_failed", WAIT)
                assert failed["fallback"] == "direct"
                await mail.quiet(1.0)  # the mail app heard nothing of a's death

    trio.run(main)


def test_invalid_credentials_contact_no_other_server(tmp_path: Path) -> None:
    async def main() -> None:
        async with (
            reference_server(tmp_path, "a") as a,
            reference_server(tmp_path, "b") as b,
            aoi_client(tmp_path, client_policy((a, 1), (b, 2)), credential="wrong") as daemon,
            apps_on(daemon, 1) as (app,),
        ):
            failed = await app.register(CHAT)
            assert failed["type"] == "connection_failed" and failed["reason"] == "rejected"
            await app.quiet(2.0)  # background retries of a only, with backoff
            assert await a.counter("aoi_hello_rejected") >= 1
            assert await b.counter("aoi_hello_rejected") == 0
            assert await b.counter("aoi_hello_accepted") == 0

    trio.run(main)


@pytest.mark.parametrize("trusted", [True, False])
def test_wss_verifies_the_server_certificate(
    tmp_path: Path, trusted: bool, caplog: pytest.LogCaptureFixture
) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "a.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "a.key"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    ca_file = tmp_path / "ca.pem" if trusted else None
    caplog.set_level(logging.INFO, logger="aoi")

    async def main() -> None:
        async with (
            reference_server(tmp_path, "a", tls=(tmp_path / "a.pem", tmp_path / "a.key")) as a,
            aoi_client(tmp_path, client_policy((a, 1)), ca_file=ca_file) as daemon,
            apps_on(daemon, 1) as (app,),
        ):
            assert a.aoi2.startswith("wss://")
            a.verify = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
            answer = await app.register(CHAT)
            if trusted:
                assert answer["type"] == "app_registered" and answer["server_id"] == "a"
            else:  # an unknown CA: the server counts as unreachable, and the log says why
                assert answer["type"] == "connection_failed"
                assert await a.counter("aoi_hello_accepted") == 0
                details = [getattr(r, "aoi_fields", {}).get("detail", "") for r in caplog.records]
                assert any(
                    "the certificate of 127.0.0.1 is not trusted: unable to get local issuer"
                    in detail
                    for detail in details
                ), details

    trio.run(main)
