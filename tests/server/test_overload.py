"""Overload control at hello: valid clients refused for load, established ones unharmed."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

from aoi.server.clock import Clock

from .harness import config, running

EPOCH = 1_800_000_000.0


def test_full_server_refuses_valid_client_and_keeps_serving_the_others(tmp_path: Path) -> None:
    async def main() -> None:
        cfg = config(tmp_path, overload={"max_sessions": 3, "alternates": ["ws://b.example/aoi"]})
        async with running(cfg) as env:
            served = []
            for n in (1, 2, 3):
                peer, welcome = await env.hello(n)
                assert welcome["type"] == "welcome"
                served.append((peer, (await peer.register())["endpoint"]))
            refused, reject = await env.hello(4)
            assert reject["type"] == "reject" and reject["reason"] == "overloaded"
            assert reject["retry_after_s"] > 0 and reject["servers"] == ["ws://b.example/aoi"]
            assert (await refused.closed()).code == 4503
            _, wrong = await env.hello(5, credential="wrong")
            assert wrong["reason"] == "invalid_credentials"  # not hidden behind overload
            health = await env.http.get(env.here.http + "/v1/health")
            assert health.status_code == 503 and health.json()["status"] == "overloaded"
            for round_ in range(3):
                for peer, endpoint in served:
                    assert (await env.push(endpoint, f"r{round_}")).status_code == 201
                    notify = await peer.receive()
                    assert notify["payload"] == f"r{round_}"
                    await peer.send(type="ack", ids=[notify["id"]])

    trio.run(main)


def test_drain_mode_refuses_newcomers_only(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(config(tmp_path)) as env:
            peer, _ = await env.hello(1)
            endpoint = (await peer.register())["endpoint"]
            drained = await env.http.post(env.here.http + "/v1/admin/drain", json={"drain": True})
            assert drained.json() == {"draining": True}
            _, reject = await env.hello(2)
            assert reject["reason"] == "overloaded"
            assert (await env.http.get(env.here.http + "/v1/health")).json()["status"] == "draining"
            assert (await env.push(endpoint, "still served")).status_code == 201
            assert (await peer.receive())["payload"] == "still served"
            await env.http.post(env.here.http + "/v1/admin/drain", json={"drain": False})
            _, welcome = await env.hello(2)
            assert welcome["type"] == "welcome"

    trio.run(main)


def test_reconnect_of_a_served_client_is_not_counted_twice(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(config(tmp_path, overload={"max_sessions": 1})) as env:
            old, welcome = await env.hello(1)
            again_peer, again = await env.hello(1, session=welcome["session"])
            assert again["type"] == "welcome" and again["resumed"] is True
            assert (await old.closed()).code == 4409  # the old connection is taken over
            await again_peer.send(type="bye")
            await again_peer.closed()
            _, other = await env.hello(2)  # takes the one place
            assert other["type"] == "welcome"
            _, late = await env.hello(1, session=welcome["session"])
            assert late["reason"] == "overloaded"  # a resume whose connection ended counts

    trio.run(main)


def test_shedding_in_drain_mode_redirects_established_sessions_at_a_bounded_rate(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        cfg = config(
            tmp_path, overload={"shed": True, "shed_rate_per_s": 2, "alternates": ["ws://b/aoi"]}
        )
        async with running(cfg, clock=Clock.following_trio(EPOCH)) as env:
            peers = [(await env.hello(n))[0] for n in range(1, 7)]
            env.server.set_draining(True)
            start = trio.current_time()
            for peer in peers:
                redirect = await peer.receive()
                assert redirect["type"] == "redirect" and redirect["reason"] == "maintenance"
                assert redirect["servers"] == ["ws://b/aoi"] and redirect["retry_after_s"] > 0
                assert (await peer.closed()).code == 4503
            # 6 sessions at 2 per second with a burst of 2: at least two seconds.
            assert trio.current_time() - start >= 1.9

    # In virtual time: the clock jumps whenever every task has waited 50 ms of real time.
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0.05))


def test_hellos_arriving_together_never_exceed_max_sessions(tmp_path: Path) -> None:
    async def main() -> None:
        async with running(config(tmp_path, overload={"max_sessions": 3})) as env:
            answers: list[str] = []

            async def one(n: int) -> None:
                answers.append((await env.hello(n))[1]["type"])

            async with trio.open_nursery() as nursery:
                for n in range(1, 9):
                    nursery.start_soon(one, n)
            assert sorted(answers) == ["reject"] * 5 + ["welcome"] * 3

    trio.run(main)
