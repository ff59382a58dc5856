"""``aoi push --batch FILE`` against a running ``aoi server``, as a server app runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench.hostile.session import Session
from bench.hostile.target import APP, KEY, started

from .command import aoi, one_line


def test_a_batch_file_is_pushed_in_one_request(tmp_path: Path) -> None:
    with started(tmp_path, clients=2) as target, Session(target.address) as device:
        device.hello(0)
        device.send(type="register", req=1, app_id=APP)
        registered = device.receive()
        lines = [
            {"endpoint": registered["endpoint"], "payload": "first"},
            {"token": registered["token"], "payload": "second", "priority": "high", "ttl_s": 5},
        ]
        batch = tmp_path / "batch.jsonl"
        batch.write_text("".join(json.dumps(line) + "\n" for line in lines) + "\n")
        done = aoi("push", f"{target.http}/v1/push", "--batch", str(batch), "--ttl", "60",
                   env={"AOI_PUSH_KEY": KEY})  # fmt: skip
        assert (done.returncode, done.stderr) == (0, "")
        answer = json.loads(done.stdout)
        assert answer["status"] == 200
        assert [(r["status"], r["ttl_s"]) for r in answer["results"]] == [(201, 60), (201, 5)]
        got = [device.receive() for _ in range(2)]
        assert {(n["payload"], n["id"]) for n in got} == {
            ("first", answer["results"][0]["id"]), ("second", answer["results"][1]["id"])
        }  # fmt: skip

        # One refused line: the other is still pushed, and the exit status says 1.
        batch.write_text(json.dumps({"token": "A" * 32, "payload": "x"}) + "\n" + batch.read_text())
        done = aoi("push", registered["endpoint"], "--batch", "-", input=batch.read_text(),
                   env={"AOI_PUSH_KEY": KEY})  # fmt: skip
        assert done.returncode == 1 and done.stderr == ""
        results = json.loads(done.stdout)["results"]
        assert [r["status"] for r in results] == [404, 201, 201]


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["--batch", "missing.jsonl"], "aoi push: --batch missing.jsonl: no such file"),
        (["--batch", "bad.jsonl"], "aoi push: --batch bad.jsonl line 2: not a JSON object"),
        (["--batch", "empty.jsonl"], "aoi push: --batch empty.jsonl: no notification in it"),
        (["--batch", "bad.jsonl", "--payload", "x"],
         "aoi push: --payload is for one notification: put it in the --batch lines"),
        (["--batch", "bad.jsonl", "--wait", "5"],
         "aoi push: --wait follows one notification, not a batch"),
        ([], "aoi push: --payload (or --batch) is required"),
    ],
)  # fmt: skip
def test_batch_mistakes(argv: list[str], line: str, tmp_path: Path) -> None:
    (tmp_path / "bad.jsonl").write_text('{"token": "t", "payload": "x"}\n[1, 2]\n')
    (tmp_path / "empty.jsonl").write_text("\n")
    done = aoi("push", "--key", "k", "http://127.0.0.1:1/v1/push", *argv, cwd=tmp_path)
    assert (done.returncode, one_line(done), done.stdout) == (2, line, "")
