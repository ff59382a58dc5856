"""AOI-3's batch push (``POST /v1/push``): one result per item, one commit per batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from aoi_schemas import schema_id, schemas
from jsonschema import Draft202012Validator

from aoi.server.push_batch import MAX_BATCH

from .harness import KEY, OTHER_APP, OTHER_KEY, Env, config, running

RESPONSE = Draft202012Validator(
    schemas()[schema_id("aoi3/push_batch_response.json")],
    registry=__import__("aoi_schemas").registry(),
)


async def batch(env: Env, body: Any, key: str = KEY) -> httpx.Response:
    return await env.http.post(
        env.here.http + "/v1/push", json=body, headers={"authorization": f"Bearer {key}"}
    )


def results(answer: httpx.Response) -> list[dict[str, Any]]:
    assert answer.status_code == 200, answer.text
    document = answer.json()
    assert not list(RESPONSE.iter_errors(document)), document
    found: list[dict[str, Any]] = document["results"]
    return found


def test_each_item_gets_the_answer_its_single_push_would(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(config(tmp_path)) as env:
            peer, _ = await env.hello()
            chat = (await peer.register())["token"]
            mail = (await peer.register(OTHER_APP, req=2))["token"]
            commits = env.server.store.commits
            answer = await batch(env, {"notifications": [
                {"token": chat, "payload": "first", "ttl_s": 60},
                {"token": "A" * 32, "payload": "nobody", "ttl_s": 60},
                {"token": mail, "payload": "not yours", "ttl_s": 60},
                {"token": chat, "payload": "é" * 2049, "ttl_s": 60},
                {"token": chat, "payload": "typo", "tll_s": 60},
                {"payload": "no token", "ttl_s": 60},
                "not an object",
                {"token": chat, "payload": "second", "ttl_s": 30, "priority": "high"},
            ]})  # fmt: skip
            found = results(answer)
            assert [(r["status"], r.get("error")) for r in found] == [
                (201, None), (404, "unknown_token"), (403, "forbidden"),
                (413, "payload_too_large"), (400, "invalid_request"), (400, "invalid_request"),
                (400, "invalid_request"), (201, None),
            ]  # fmt: skip
            assert env.server.store.commits == commits + 1  # the two accepted, in one commit
            assert found[7]["ttl_s"] == 30 and found[0]["id"] != found[7]["id"]
            assert '"ttl_s" is a required property' in {e["message"] for e in found[4]["errors"]}
            assert found[5]["errors"] == [
                {"path": "/token", "message": "the token is a required string"}
            ]
            # Both reach the client, the high one first, with the ids of the results.
            ids = [(await peer.receive())["id"] for _ in range(2)]
            assert ids == [found[7]["id"], found[0]["id"]]

    trio.run(main)


@pytest.mark.parametrize(
    ("body", "status", "error"),
    [
        ({"notifications": []}, 400, "invalid_request"),
        ({"payload": "x", "ttl_s": 60}, 400, "invalid_request"),  # a single push's body
        ([{"token": "t", "payload": "x", "ttl_s": 60}], 400, "invalid_request"),
        ({"notifications": [], "extra": 1}, 400, "invalid_request"),
        ({"notifications": {"token": "t"}}, 400, "invalid_request"),
        ({"notifications": [{}] * (MAX_BATCH + 1)}, 413, "payload_too_large"),
    ],
    ids=["empty", "single push body", "bare array", "unknown member", "not an array", "501"],
)
def test_a_request_that_is_not_a_batch_is_refused_whole(
    tmp_path: Path, body: Any, status: int, error: str
) -> None:
    async def main() -> None:
        async with running(config(tmp_path)) as env:
            answer = await batch(env, body)
            assert (answer.status_code, answer.json()["error"]) == (status, error)
            assert answer.json()["detail"]
            no_key = await env.http.post(env.here.http + "/v1/push", json=body)
            assert no_key.status_code == 401
            not_json = await env.http.post(
                env.here.http + "/v1/push", content=b"{", headers={"authorization": f"Bearer {KEY}"}
            )
            assert not_json.status_code == 400 and not_json.json()["error"] == "invalid_request"
            wrong = await env.http.get(env.here.http + "/v1/push")
            assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"

    trio.run(main)


def test_hostile_items_are_refused_one_by_one_and_the_server_serves_on(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(config(tmp_path)) as env:
            peer, _ = await env.hello()
            token = (await peer.register())["token"]
            odd: list[Any] = [
                1, None, [], "x", {"token": 5, "payload": "x", "ttl_s": 5},
                {"token": token, "payload": "x", "ttl_s": True},
                {"token": token, "payload": "x", "ttl_s": 10**30},
                {"token": token, "payload": ["x"], "ttl_s": 5},
                [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
            ]  # fmt: skip
            items = [odd[n % len(odd)] for n in range(MAX_BATCH - 1)]
            items.append({"token": token, "payload": "after them all", "ttl_s": 60})
            found = results(await batch(env, {"notifications": items}))
            assert [r["status"] for r in found] == [400] * (MAX_BATCH - 1) + [201]
            assert (await peer.receive())["payload"] == "after them all"
            deep = b'{"notifications":[' + b"[" * 5000 + b"]" * 5000 + b"]}"
            whole = await env.http.post(
                env.here.http + "/v1/push", content=deep, headers={"authorization": f"Bearer {KEY}"}
            )
            assert whole.status_code == 400 and whole.json()["error"] == "invalid_request"
            assert (await env.push(env.here.http + f"/v1/push/{token}", "still")).status_code == 201

    trio.run(main)


def test_duplicates_and_collapse_inside_one_batch(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(config(tmp_path)) as env:
            endpoint, session = await env.offline()
            token = endpoint.rsplit("/", 1)[1]
            queued = await env.push(endpoint, "score 0-0", collapse_key="score")
            same = {"token": token, "payload": "twice", "ttl_s": 60}
            found = results(await batch(env, {"notifications": [
                same, same,
                {"token": token, "payload": "score 1-0", "ttl_s": 60, "collapse_key": "score"},
                {"token": token, "payload": "score 2-0", "ttl_s": 60, "collapse_key": "score"},
            ]}))  # fmt: skip
            assert [r["status"] for r in found] == [201] * 4
            assert len({r["id"] for r in found}) == 4  # two identical items: two notifications
            for location in (queued.headers["location"], f"/v1/messages/{found[2]['id']}"):
                assert (await env.report(location))["status"] == "cancelled"
            peer, _ = await env.hello(session=session)
            got = [await peer.receive() for _ in range(3)]
            assert [n["payload"] for n in got] == ["twice", "twice", "score 2-0"]
            await peer.send(type="ack", ids=[n["id"] for n in got])
            with trio.move_on_after(0.3):
                extra = await peer.ws.receive()
                raise AssertionError(f"nothing else was due, got {extra!r}")

    trio.run(main)


def test_rate_limit_counts_items_and_limits_each(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(config(tmp_path)) as env:
            peer, _ = await env.hello()
            mail = (await peer.register(OTHER_APP))["token"]
            item = {"token": mail, "payload": "x", "ttl_s": 60}
            found = results(await batch(env, {"notifications": [item] * 25}, key=OTHER_KEY))
            assert [r["status"] for r in found] == [201] * 20 + [429] * 5  # the burst is 20
            assert found[20]["error"] == "rate_limited" and found[20]["retry_after_s"] >= 1

    trio.run(main)
