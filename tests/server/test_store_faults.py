"""The store's disk fills up, or cannot be written at all: the server says so and loses
nothing it accepted.

The store lives on a small tmpfs that is filled to ENOSPC where the machine allows it
(root), else the server's file size limit is lowered to 0 while it runs
(``bench.hostile.disk``): real writes failing in the kernel either way.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from bench.hostile.disk import Disk, disk, read_only
from bench.hostile.session import Closed, Session
from bench.hostile.target import APP, KEY, ROOT, Target, started

AUTH = {"authorization": f"Bearer {KEY}"}
RECOVERY_S = 10.0


def push(target: Target, token: str, payload: str) -> httpx.Response:
    return httpx.post(
        f"{target.http}/v1/push/{token}", json={"payload": payload, "ttl_s": 600}, headers=AUTH
    )


def report(target: Target, location: str) -> dict[str, Any]:
    document: dict[str, Any] = httpx.get(target.http + location, headers=AUTH).json()
    return document


def notifications(device: Session, count: int) -> list[dict[str, Any]]:
    return [device.receive() for _ in range(count)]


@contextlib.contextmanager
def on_a_disk_that_fills(tmp_path: Path) -> Iterator[tuple[Disk, Target, Session]]:
    """A server whose store can fill up, and a client in session with it."""
    with disk(tmp_path / "state") as store, started(tmp_path, state=store.state) as target:
        store.pid = target.process.pid
        print(f"full disk by {store.kind}")
        with Session(target.address) as device:
            device.hello(0)
            yield store, target, device


def test_a_full_disk_refuses_pushes_with_503_and_loses_nothing_accepted(tmp_path: Path) -> None:
    with on_a_disk_that_fills(tmp_path) as (store, target, device):
        device.send(type="register", req=1, app_id=APP)
        token = device.receive()["token"]
        before = [push(target, token, f"before {n}") for n in range(5)]
        assert [r.status_code for r in before] == [201] * 5
        received = notifications(device, 5)

        store.fill()
        refused = push(target, token, "while full")
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"] == "store_unavailable"
        assert int(refused.headers["retry-after"]) >= 1
        item = {"token": token, "payload": "batch while full", "ttl_s": 600}
        batch = httpx.post(
            f"{target.http}/v1/push", json={"notifications": [item, item]}, headers=AUTH
        )
        assert batch.status_code == 503 and batch.json()["error"] == "store_unavailable"
        assert int(batch.headers["retry-after"]) >= 1  # and none of it comes: see "after"
        health = httpx.get(target.http + "/v1/health")
        assert health.status_code == 503 and "store_failing" in health.json()["reasons"]
        assert "aoi_store_failing 1.0" in httpx.get(target.http + "/metrics").text
        device.send(type="ack", ids=[n["id"] for n in received])  # written later
        device.send(type="ping", ts=1)
        assert device.receive()["type"] == "pong"  # the session is served all along
        with Session(target.address) as newcomer:
            rejected = newcomer.hello(1)
        assert rejected["type"] == "reject" and rejected["reason"] == "overloaded"
        assert target.alive()

        store.free()
        deadline = time.monotonic() + RECOVERY_S
        while (after := push(target, token, "after")).status_code != 201:
            assert after.status_code == 503 and time.monotonic() < deadline, after.text
            time.sleep(0.2)
        (late,) = notifications(device, 1)
        assert late["payload"] == "after"
        assert httpx.get(target.http + "/v1/health").status_code == 200
        for pushed in before:  # the acks sent while the disk was full reached the store
            while report(target, pushed.headers["location"])["status"] != "delivered":
                assert time.monotonic() < deadline
                time.sleep(0.2)
        assert {n["payload"] for n in received} == {f"before {n}" for n in range(5)}
        assert target.alive()


def test_a_read_only_state_directory_is_one_line_at_start(tmp_path: Path) -> None:
    with read_only(tmp_path / "ro") as how:
        if how is None:
            pytest.skip("root without the right to mount: no directory here is read-only")
        (tmp_path / "server.toml").write_text(f'[server]\ndb = "{tmp_path / "ro" / "a.db"}"\n')
        done = subprocess.run(
            [sys.executable, "-m", "aoi", "server", "--config", str(tmp_path / "server.toml")],
            capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
        )  # fmt: skip
    print(f"read-only by {how}: {done.stderr.strip()}")
    assert done.returncode == 1
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("aoi server: the store ")
    assert str(tmp_path / "ro" / "a.db") in done.stderr


def test_a_session_cut_by_a_failed_register_gets_internal_error(tmp_path: Path) -> None:
    with on_a_disk_that_fills(tmp_path) as (store, target, device):
        store.fill()
        device.send(type="register", req=7, app_id=APP)
        error = device.receive()
        assert error == {
            "type": "error", "req": 7, "code": "internal_error", "fatal": True,
            "detail": "the registration could not be stored",
        }  # fmt: skip
        with pytest.raises(Closed) as closed:
            device.receive()
        assert closed.value.code == 4500
        store.free()
        assert target.alive()
