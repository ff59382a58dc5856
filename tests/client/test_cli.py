"""``aoi client`` and ``aoi app`` as processes, on real loopback sockets."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest
import trio

from aoi.core.messages import Ack, Bye

from ..cli.command import A_REPR, AOI, guide_section
from .fakes import FakeServer, policy, serve_on_loopback

APP = "com.example.chat"


@pytest.mark.slow
def test_client_and_demo_app(tmp_path: Path) -> None:
    a = FakeServer("a")

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            await serve_on_loopback(a, nursery)
            (tmp_path / "policy.json").write_text(json.dumps(policy(a)))
            ready = tmp_path / "ready.json"
            policy_file = str(tmp_path / "policy.json")
            client = await trio.lowlevel.open_process(
                [str(AOI), "client", "--policy-file", policy_file,
                 "--client-id", "dev-1", "--credential", "secret-1", "--app-port", "0",
                 "--ready-file", str(ready), "--state-dir", str(tmp_path / "state")],
                stderr=subprocess.PIPE,
            )  # fmt: skip
            try:
                with trio.fail_after(20):
                    while not ready.exists():
                        await trio.sleep(0.05)
                app_url = json.loads(ready.read_text())["app_url"]
                assert app_url.startswith("ws://127.0.0.1:")
                app = await trio.lowlevel.open_process(
                    [str(AOI), "app", "--app-id", APP, "--client", app_url,
                     "--count", "1"],
                    stdout=subprocess.PIPE,
                )  # fmt: skip
                assert app.stdout is not None
                with trio.fail_after(20):
                    while a.token(APP) is None:
                        await trio.sleep(0.05)
                    await a.notify(APP, "n1", "hello")
                    out = b""
                    while (chunk := await app.stdout.receive_some()) != b"":
                        out += chunk
                    assert await app.wait() == 0
                lines = [json.loads(line) for line in out.decode().splitlines()]
                assert [m["type"] for m in lines] == ["app_registered", "app_notification"]
                assert lines[0]["token"] == a.token(APP) and lines[1]["payload"] == "hello"
                with trio.fail_after(10):
                    while not a.received_of(Ack):
                        await trio.sleep(0.05)
                client.send_signal(signal.SIGTERM)
                with trio.fail_after(10):
                    assert await client.wait() == 0
                with trio.fail_after(10):  # the fake server may still be reading it
                    while not a.received_of(Bye):
                        await trio.sleep(0.05)
            finally:
                if client.returncode is None:
                    client.kill()
                    await client.wait()
            assert client.stderr is not None
            err = b""
            while (chunk := await client.stderr.receive_some()) != b"":
                err += chunk
            logs = [json.loads(line) for line in err.decode().splitlines()]
            events = [entry["event"] for entry in logs]
            assert {"client_started", "welcome"} <= set(events)
            assert events[-4:] == ["shutting_down", "bye", "session_down", "stopped"]
            assert logs[-2]["outcome"] == "closed"  # closed by the client, not lost
            documented = guide_section("13.6")
            assert [e for e in events if f"`{e}`" not in documented] == []
            assert [
                e for e in logs for v in e.values() if isinstance(v, str) and A_REPR.search(v)
            ] == []
            nursery.cancel_scope.cancel()

    trio.run(main)
