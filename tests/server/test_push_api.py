"""AOI-3 answers: authorisation, limits, cancel, collapse, and the error bodies."""

from __future__ import annotations

from pathlib import Path

import trio

from .harness import OTHER_APP, OTHER_KEY, config, running


def test_push_errors(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(config(tmp_path)) as env:
            peer, _ = await env.hello()
            chat = (await peer.register())["endpoint"]
            mail = (await peer.register(OTHER_APP, req=2))["endpoint"]
            no_key = await env.http.post(chat, json={"payload": "x", "ttl_s": 1})
            assert no_key.status_code == 401 and no_key.json()["error"] == "unauthorized"
            assert (await env.push(chat, key="wrong")).status_code == 401
            other = await env.push(mail)  # chat's key, mail's token
            assert other.status_code == 403 and other.json()["error"] == "forbidden"
            for token in ("A" * 32, "not.a+token", "short"):  # of the token pattern or not
                unknown = await env.push(env.here.http + "/v1/push/" + token)
                assert unknown.status_code == 404 and unknown.json()["error"] == "unknown_token"
            big = await env.push(chat, "é" * 2049)  # 4098 bytes in 2049 characters
            assert big.status_code == 413 and big.json()["error"] == "payload_too_large"
            typo = await env.http.post(
                chat,
                json={"payload": "x", "tll_s": 5},
                headers={"authorization": "Bearer chat-key-0123456789"},
            )
            assert typo.status_code == 400
            assert {e["message"] for e in typo.json()["errors"]} >= {
                '"ttl_s" is a required property'
            }
            await peer.send(type="unregister", req=3, token=mail.rsplit("/", 1)[1])
            assert (await peer.receive())["type"] == "unregistered"
            gone = await env.push(mail, key=OTHER_KEY)
            assert gone.status_code == 410 and gone.json()["error"] == "token_unregistered"

    trio.run(main)


def test_rate_limit_answers_429_with_retry_after(tmp_path: Path) -> None:
    async def main() -> None:
        cfg = config(tmp_path)
        async with running(cfg) as env:
            peer, _ = await env.hello()
            mail = (await peer.register(OTHER_APP))["endpoint"]
            for _ in range(25):  # asking for reports spends nothing of the rate
                assert (await env.report("/v1/messages/none", OTHER_KEY))["error"] == "not_found"
            statuses = [(await env.push(mail, key=OTHER_KEY)).status_code for _ in range(10)]
            unknown = env.here.http + "/v1/push/" + "A" * 32
            statuses += [(await env.push(unknown, key=OTHER_KEY)).status_code for _ in range(10)]
            assert statuses == [201] * 10 + [404] * 10  # the burst: refused pushes count too
            limited = await env.push(mail, key=OTHER_KEY)
            assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1

    trio.run(main)


def test_cancel_and_collapse_act_on_undelivered_only(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(config(tmp_path)) as env:
            endpoint, session = await env.offline()
            cancelled = await env.push(endpoint, "cancel me")
            gone = await env.http.delete(
                env.here.http + cancelled.headers["location"],
                headers={"authorization": "Bearer chat-key-0123456789"},
            )
            assert gone.status_code == 200 and gone.json()["status"] == "cancelled"
            old = await env.push(endpoint, "score 1-0", collapse_key="score")
            assert (await env.push(endpoint, "score 2-0", collapse_key="score")).status_code == 201
            peer, _ = await env.hello(session=session)
            notify = await peer.receive()
            assert notify["payload"] == "score 2-0"
            assert (await env.report(old.headers["location"]))["status"] == "cancelled"
            await peer.send(type="ack", ids=[notify["id"]])
            with trio.move_on_after(0.3):
                extra = await peer.ws.receive()
                raise AssertionError(f"nothing else was due, got {extra!r}")

    trio.run(main)


def test_unregistered_token_still_answers_410_after_a_restart(tmp_path: Path) -> None:
    async def main() -> None:
        cfg = config(tmp_path)
        async with running(cfg) as env:
            peer, _ = await env.hello()
            token = (await peer.register())["token"]
            await peer.send(type="unregister", req=2, token=token)
            assert (await peer.receive())["type"] == "unregistered"
        async with running(cfg) as env:
            gone = await env.push(f"{env.here.http}/v1/push/{token}")
            assert gone.status_code == 410

    trio.run(main)


def test_unknown_paths_and_methods_are_answered_before_any_key(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(config(tmp_path)) as env:
            lost = await env.http.get(env.here.http + "/v1/nothing")
            assert (lost.status_code, lost.json()["error"]) == (404, "not_found")
            for method, path, allow in (
                ("GET", "/v1/push/" + "A" * 24, "POST"), ("DELETE", "/v1/health", "GET, HEAD"),
            ):  # fmt: skip
                wrong = await env.http.request(method, env.here.http + path)
                assert (wrong.status_code, wrong.json()["error"]) == (405, "method_not_allowed")
                assert wrong.headers["allow"] == allow

    trio.run(main)
