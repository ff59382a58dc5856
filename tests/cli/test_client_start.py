"""``aoi client`` at start-up, run as a user runs it: a mistake that leaves it nothing to
serve with ends it with one line and a non-zero exit status within seconds; a cached policy
lets it start and it says so; the AOI-1 port is checked before anything is contacted."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from .command import AOI, aoi, closed_port, one_line

PROVIDER = "demo.example"
CREDENTIALS = ("--client-id", "device-1", "--credential", "secret", "--app-port", "0")


def policy(server_url: str) -> dict[str, Any]:
    return {
        "provider": PROVIDER, "policy_version": 1,
        "servers": [{"id": "a", "url": server_url, "priority": 1}],
        "selection": "ordered",
        "reallocation": {
            "on_overload": "next_server", "on_unreachable": "next_server",
            "max_servers_tried": 1, "return_to_preferred_after_s": 600,
            "backoff": {"initial_ms": 500, "max_ms": 30000, "multiplier": 2.0, "jitter": "full"},
        },
        "fallback": {"notify_app": True},
        "multi_server": {"allowed": False, "max_concurrent": 1},
        "keepalive_s": 270,
    }  # fmt: skip


ANSWERS = {
    "/401": (401, {"error": "unauthorized", "detail": "unknown client or wrong credential"}),
    "/503": (503, {"error": "overloaded", "detail": "the server is overloaded"}),
    "/invalid": (200, {"provider": PROVIDER, "policy_version": "one"}),
}


class Provisioning(BaseHTTPRequestHandler):
    """A provisioning endpoint whose answer the path chooses; it counts what it is asked."""

    requests: list[str]

    def do_GET(self) -> None:
        self.requests.append(self.path)
        status, body = ANSWERS[self.path]
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        if status == 503:
            self.send_header("retry-after", "3600")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def provisioning() -> Iterator[tuple[str, list[str]]]:
    """The endpoint's base URL, and the paths it was asked for."""
    requests: list[str] = []
    handler = type("Handler", (Provisioning,), {"requests": requests})
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
        server.shutdown()


def start(*flags: str) -> tuple[int, str, float]:
    """A client that is expected not to start: its exit status, its line, the seconds taken."""
    began = time.monotonic()
    done = aoi("client", *CREDENTIALS, *flags, timeout=60)
    return done.returncode, one_line(done), time.monotonic() - began


def test_unreachable_provisioning_without_a_cached_policy() -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1/provisioning"
    status, line, seconds = start("--provisioning-url", url)
    assert status == 1 and seconds < 10
    assert line.startswith(f"aoi client: cannot reach {url}: ")
    assert line.endswith(" (and no cached policy)")


def test_a_wrong_credential_is_named(provisioning: tuple[str, list[str]]) -> None:
    base, requests = provisioning
    status, line, seconds = start("--provisioning-url", base + "/401")
    assert (status, line) == (
        1,
        f"aoi client: {base}/401 refused the credentials of client_id 'device-1' (401): "
        "an unknown client or a wrong credential (and no cached policy)",
    )
    assert requests == ["/401"] and seconds < 10  # asked once, not again and again


def test_an_invalid_policy_without_a_cached_one(provisioning: tuple[str, list[str]]) -> None:
    base, _ = provisioning
    status, line, _ = start("--provisioning-url", base + "/invalid")
    assert status == 1 and line.startswith(
        f"aoi client: the policy from {base}/invalid is refused: "
    )
    assert "policy_version" in line and line.endswith(" (and no cached policy)")


def test_an_invalid_provisioning_url() -> None:
    status, line, _ = start("--provisioning-url", "http://[bad")
    assert (status, line) == (
        2,
        "aoi client: invalid configuration: --provisioning-url: invalid URL 'http://[bad': "
        "Invalid IPv6 URL",
    )


@pytest.mark.parametrize(
    ("toml", "problems"),
    [
        ('[client]\nclient_id = "d"\ncredential = "c"\nstat_dir = "state"\n[[providers]]\n'
         'provisioning_url = "https://op.example/v1/provisioning"\nnmae = "x"\n[server]\n',
         "server: unknown table; client.stat_dir: unknown key; providers[0].nmae: unknown key"),
        ('[client]\nclient_id = "d"\ncredential = "c"\napp_listen = "0.0.0.0:7700"\n'
         '[[providers]]\npolicy_file = "p.json"\n',
         "client.app_listen: '0.0.0.0:7700': AOI-1 listens on loopback addresses only"),
    ],
)  # fmt: skip
def test_configuration_mistakes(tmp_path: Path, toml: str, problems: str) -> None:
    (tmp_path / "client.toml").write_text(toml)
    done = aoi("client", "--config", str(tmp_path / "client.toml"))
    assert (done.returncode, one_line(done)) == (
        2,
        f"aoi client: invalid configuration: {problems}",
    )


@contextmanager
def listening() -> Iterator[socket.socket]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        sock.setblocking(False)
        yield sock


def test_the_app_port_is_checked_before_anything_is_contacted(
    tmp_path: Path, provisioning: tuple[str, list[str]]
) -> None:
    base, requests = provisioning
    with listening() as taken, listening() as aoi_server:
        server_url = f"ws://127.0.0.1:{aoi_server.getsockname()[1]}/aoi"
        state = tmp_path / "state"
        (state / "policies").mkdir(parents=True)
        (state / "policies" / f"{PROVIDER}.json").write_text(json.dumps(policy(server_url)))
        app = {"provider": None, "registration": None, "told": None, "previous": {}}
        (state / "registrations.json").write_text(json.dumps({"com.example.chat": app}))
        (tmp_path / "client.toml").write_text(
            f'[client]\nclient_id = "device-1"\ncredential = "secret"\n'
            f'app_listen = "127.0.0.1:{taken.getsockname()[1]}"\nstate_dir = "{state}"\n'
            f'[[providers]]\nname = "{PROVIDER}"\nprovisioning_url = "{base}/503"\n'
        )
        done = aoi("client", "--config", str(tmp_path / "client.toml"))
        assert (done.returncode, one_line(done)) == (
            1,
            f"aoi client: 127.0.0.1:{taken.getsockname()[1]} is in use",
        )
        assert requests == []
        with pytest.raises(BlockingIOError):  # the app's server was not connected to either
            aoi_server.accept()


def test_starts_on_a_cached_policy_and_says_so(
    tmp_path: Path, provisioning: tuple[str, list[str]]
) -> None:
    """One provider unreachable but cached, another answering 503 (passing) and not cached:
    the client starts on the first's cached policy and keeps asking both."""
    base, requests = provisioning
    unreachable = f"http://127.0.0.1:{closed_port()}/v1/provisioning"
    state = tmp_path / "state"
    (state / "policies").mkdir(parents=True)
    (state / "policies" / f"{PROVIDER}.json").write_text(json.dumps(policy("ws://127.0.0.1:9/aoi")))
    (tmp_path / "client.toml").write_text(
        f'[client]\nclient_id = "device-1"\ncredential = "secret"\napp_listen = "127.0.0.1:0"\n'
        f'state_dir = "{state}"\n'
        f'[[providers]]\nname = "{PROVIDER}"\nprovisioning_url = "{unreachable}"\n'
        f'[[providers]]\nname = "other.example"\nprovisioning_url = "{base}/503"\n'
    )
    ready = tmp_path / "ready.json"
    log = tmp_path / "client.log"
    with log.open("w") as stderr:
        client = subprocess.Popen(
            [str(AOI), "client", "--config", str(tmp_path / "client.toml"),
             "--ready-file", str(ready)],
            stderr=stderr, text=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not (ready.exists() and "provisioning_unreachable" in log.read_text()):
            assert client.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        client.send_signal(signal.SIGTERM)
        assert client.wait(timeout=20) == 0
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    events = {entry["event"]: entry for entry in entries}
    assert (events["policy_from_cache"]["provider"], events["policy_from_cache"]["version"]) == (
        PROVIDER,
        1,
    )
    unreachable_entry = events["provisioning_unreachable"]
    assert (unreachable_entry["source"], unreachable_entry["kept_version"]) == (unreachable, 1)
    refused = events["provisioning_refused"]
    assert (refused["status"], refused["kept_version"]) == (503, None)
    assert requests[:1] == ["/503"]
    assert [entry["event"] for entry in entries][-2:] == ["shutting_down", "stopped"]
