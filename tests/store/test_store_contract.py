"""What every notification store promises the AOI Server, run against every backend.

A backend joins by adding itself to :data:`BACKENDS`: a function that is given the test's
pytest request (to take fixtures, a running server say) and a fresh directory of its own,
and returns a maker of new, not yet running, store objects on that test's data, all on the
same data (a second one is the store after a restart). What one backend alone does
(SQLite's group commit, its file) is tested beside it.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

import pytest
import trio
from bench.redis_server import RedisServer

from aoi.server.store import (
    Registration,
    SqliteStore,
    Store,
    StoreClosed,
    StoreConflict,
    StoredNotification,
    StoreError,
)
from aoi.server.store.redis_store import RedisStore

T = TypeVar("T")
StoreMaker = Callable[[], Store]


def sqlite(request: pytest.FixtureRequest, place: Path) -> StoreMaker:
    return lambda: SqliteStore(place / "aoi.db")


def redis(request: pytest.FixtureRequest, place: Path) -> StoreMaker:
    """The shared redis-server, each test under a key prefix of its own."""
    server: RedisServer = request.getfixturevalue("shared_redis")
    prefix = f"t{next(_PREFIXES)}"
    return lambda: RedisStore(server.url, prefix=prefix)


_PREFIXES = itertools.count()
BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], StoreMaker]] = {
    "sqlite": sqlite,
    "redis": redis,
}

TOKEN = "Zq3x9Kd0aB7cLmN2pQ4rS6"
OTHER_TOKEN = "Yp2w8Jc9zA6bKlM1oP3qR5"
THIRD_TOKEN = "Xo1v7Ib8yZ5aJkL0nO2pQ4"
CHAT = Registration(TOKEN, "device-1", "com.example.chat", created_at=5)
MAIL = Registration(OTHER_TOKEN, "device-1", "com.example.mail", created_at=6.5)
ELSEWHERE = Registration(THIRD_TOKEN, "device-2", "com.example.chat", created_at=7)


def notification(
    id: str,
    *,
    token: str = TOKEN,
    client_id: str = "device-1",
    created_at: float = 1000.0,
    ttl_s: int = 60,
    collapse_key: str | None = None,
    priority: str = "normal",
) -> StoredNotification:
    return StoredNotification(
        id=id, token=token, client_id=client_id, app_id="com.example.chat",
        payload='{"text":"hi"}', priority=priority, ttl_s=ttl_s, created_at=created_at,
        expires_at=created_at + ttl_s, collapse_key=collapse_key, pushed_by="chat-backend",
    )  # fmt: skip


@pytest.fixture(params=sorted(BACKENDS))
def new_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreMaker:
    return BACKENDS[request.param](request, tmp_path)


def running(new_store: StoreMaker, body: Callable[[Store], Awaitable[T]]) -> T:
    """``body`` against a new running store, which is stopped afterwards."""

    async def main() -> T:
        store = new_store()
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                await nursery.start(store.run)
                result = await body(store)
                nursery.cancel_scope.cancel()
        return result

    return trio.run(main)


# --- registrations and sessions ----------------------------------------------------------


def test_registrations_and_sessions_read_back(new_store: StoreMaker) -> None:
    async def body(store: Store) -> None:
        for reg in (CHAT, MAIL, ELSEWHERE):
            await store.add_registration(reg)
        assert await store.get_registration(TOKEN) == CHAT
        assert await store.get_registration("no-such-token-000000000") is None
        assert await store.registrations_of("device-1") == (CHAT, MAIL)
        assert await store.registrations_of("device-3") == ()

        await store.deactivate_registration(OTHER_TOKEN, 1004)
        await store.deactivate_registration("no-such-token-000000000", 1005)  # a no-op
        assert await store.get_registration(OTHER_TOKEN) == replace(MAIL, active=False)
        assert await store.registrations_of("device-1") == (CHAT,)

        assert await store.get_session("device-1") is None
        await store.set_session("device-1", "S" * 22)
        await store.set_session("device-1", "T" * 22)  # the latest wins
        await store.set_session("device-2", "U" * 22)
        assert await store.get_session("device-1") == "T" * 22

        snapshot = await store.load()
        assert snapshot.registrations == (CHAT, replace(MAIL, active=False), ELSEWHERE)
        assert snapshot.sessions == {"device-1": "T" * 22, "device-2": "U" * 22}

    running(new_store, body)


def test_a_token_or_id_used_twice_is_a_conflict(new_store: StoreMaker) -> None:
    async def body(store: Store) -> None:
        await store.add_registration(CHAT)
        with pytest.raises(StoreConflict):
            await store.add_registration(replace(CHAT, client_id="device-2"))
        assert await store.get_registration(TOKEN) == CHAT
        await store.add_notification(notification("n-1"))
        with pytest.raises(StoreConflict):
            await store.add_notification(notification("n-1", created_at=2000))
        assert await store.get_notification("n-1") == notification("n-1")
        assert store.ops_failed == 2

    running(new_store, body)


# --- notifications -----------------------------------------------------------------------


def test_notifications_read_back_and_finish_once(new_store: StoreMaker) -> None:
    first = notification("n-1")
    high = notification("n-2", created_at=1001, priority="high", collapse_key="score")

    async def body(store: Store) -> None:
        await store.add_notification(first)
        await store.add_notification(high)
        assert await store.get_notification("n-1") == first
        assert await store.get_notification("n-404") is None

        await store.set_status(["n-1"], "delivered", 1002.5)
        assert await store.get_notification("n-1") == replace(
            first, status="delivered", status_at=1002.5
        )
        await store.set_status(["n-1", "n-404"], "cancelled", 1003)  # finished, unknown
        assert await store.get_notification("n-1") == replace(
            first, status="delivered", status_at=1002.5
        )
        await store.set_status([], "delivered", 1003)
        with pytest.raises(ValueError, match="queued"):
            await store.set_status(["n-2"], "queued", 1003)
        with pytest.raises(ValueError, match="lost"):
            await store.set_status(["n-2"], "lost", 1003)
        assert (await store.load()).notifications == (high,)
        assert store.backlog() == 0

    running(new_store, body)


def test_unregistering_cancels_the_tokens_queued_notifications(
    new_store: StoreMaker,
) -> None:
    async def body(store: Store) -> None:
        await store.add_registration(CHAT)
        await store.add_registration(MAIL)
        await store.add_notification(notification("chat-1"))
        await store.add_notification(notification("mail-1", token=OTHER_TOKEN))
        await store.add_notification(notification("mail-2", token=OTHER_TOKEN))
        await store.set_status(["mail-2"], "delivered", 1001)
        await store.deactivate_registration(OTHER_TOKEN, 1004)
        cancelled = await store.get_notification("mail-1")
        assert cancelled is not None
        assert (cancelled.status, cancelled.status_at) == ("cancelled", 1004)
        delivered = await store.get_notification("mail-2")
        assert delivered is not None and delivered.status == "delivered"
        assert [n.id for n in await store.queued_for("device-1")] == ["chat-1"]

    running(new_store, body)


def test_a_collapse_replacement_is_atomic(new_store: StoreMaker) -> None:
    older = notification("n-1", collapse_key="score")
    newer = notification("n-2", created_at=1010, collapse_key="score")
    clash = notification("n-2", created_at=1020, collapse_key="score")  # id already taken

    async def body(store: Store) -> None:
        await store.add_notification(older)
        await store.add_notification(newer, replaces=[older.id])
        replaced = await store.get_notification(older.id)
        assert replaced is not None
        assert (replaced.status, replaced.status_at) == ("cancelled", 1010)
        # The insert fails, so its replacement must not happen either.
        with pytest.raises(StoreConflict):
            await store.add_notification(clash, replaces=[newer.id])
        assert await store.get_notification(newer.id) == newer
        assert (await store.load()).notifications == (newer,)

    running(new_store, body)


def test_a_batch_is_stored_whole_in_one_commit_or_not_at_all(new_store: StoreMaker) -> None:
    queued = notification("n-0", collapse_key="score")
    first = notification("n-1", created_at=1010, collapse_key="score")
    second = notification("n-2", created_at=1020, collapse_key="score")
    other = notification("n-3", token=OTHER_TOKEN, created_at=1030)

    async def body(store: Store) -> None:
        await store.add_notification(queued)
        commits = store.commits
        # n-1 replaces the queued n-0, and n-2 replaces n-1 of the same batch.
        await store.add_notifications([(first, [queued.id]), (second, [first.id]), (other, [])])
        assert store.commits == commits + 1
        for replaced, at in ((queued, 1010), (first, 1020)):
            found = await store.get_notification(replaced.id)
            assert found is not None and (found.status, found.status_at) == ("cancelled", at)
        assert (await store.load()).notifications == (second, other)
        # One id already taken: nothing of the batch is stored, nothing is replaced.
        with pytest.raises(StoreConflict):
            await store.add_notifications(
                [(notification("n-4", created_at=1040), []), (notification("n-2"), [other.id])]
            )
        assert await store.get_notification("n-4") is None
        assert (await store.load()).notifications == (second, other)

    running(new_store, body)


def test_queues_come_back_in_order_of_acceptance(new_store: StoreMaker) -> None:
    created = {"c": 3.0, "a": 1.0, "tie-1": 2.0, "tie-2": 2.0, "b": 1.5, "tie-0": 2.0}

    async def body(store: Store) -> tuple[list[str], list[str], list[str]]:
        for id, at in created.items():
            await store.add_notification(notification(id, created_at=at))
            await store.add_notification(
                notification(f"{id}-of-2", client_id="device-2", created_at=at)
            )
        await store.set_status(["b", "b-of-2"], "delivered", 4)
        everything = [n.id for n in (await store.load()).notifications]
        return (
            [n.id for n in await store.queued_for("device-1")],
            [n.id for n in await store.queued_for("device-2")],
            everything,
        )

    one, two, everything = running(new_store, body)
    # Equal timestamps keep the order in which they were stored.
    assert one == ["a", "tie-1", "tie-2", "tie-0", "c"]
    assert two == [f"{id}-of-2" for id in one]
    assert [id for id in everything if not id.endswith("-of-2")] == one


def test_expire_finishes_only_queued_notifications_past_their_ttl(
    new_store: StoreMaker,
) -> None:
    async def body(store: Store) -> None:
        await store.add_notification(notification("past", created_at=1000, ttl_s=10))
        await store.add_notification(notification("now", created_at=1000, ttl_s=0))
        await store.add_notification(notification("future", created_at=1000, ttl_s=100))
        await store.add_notification(notification("delivered", created_at=1000, ttl_s=1))
        await store.set_status(["delivered"], "delivered", 1000.5)

        assert sorted(await store.expire(1050)) == ["now", "past"]
        assert await store.expire(1050) == []
        expired = await store.get_notification("past")
        assert expired is not None
        assert (expired.status, expired.status_at) == ("expired", 1050)
        delivered = await store.get_notification("delivered")
        assert delivered is not None and delivered.status == "delivered"
        assert [n.id for n in await store.queued_for("device-1")] == ["future"]
        assert await store.expire(1100) == []  # expires_at == now has not passed yet
        assert await store.expire(1100.5) == ["future"]

    running(new_store, body)


def test_purge_deletes_only_old_finished_notifications(new_store: StoreMaker) -> None:
    async def body(store: Store) -> None:
        for id in ("old-delivered", "old-cancelled", "old-expired", "recent", "queued"):
            await store.add_notification(notification(id, created_at=1000, ttl_s=3600))
        await store.set_status(["old-delivered"], "delivered", 1100)
        await store.set_status(["old-cancelled"], "cancelled", 1200)
        await store.set_status(["old-expired"], "expired", 1300)
        await store.set_status(["recent"], "delivered", 2000)

        assert await store.purge(before=1500) == 3
        assert await store.purge(before=1500) == 0
        for id in ("old-delivered", "old-cancelled", "old-expired"):
            assert await store.get_notification(id) is None
        assert await store.get_notification("recent") is not None
        assert await store.purge(before=10**10) == 1  # never the queued one
        assert await store.get_notification("queued") is not None

    running(new_store, body)


# --- durability and lifecycle ------------------------------------------------------------


def test_every_returned_write_survives_a_restart(new_store: StoreMaker) -> None:
    stored = [notification(f"n-{i}", created_at=1000 + i) for i in range(200)]

    async def write(store: Store) -> None:
        await store.add_registration(CHAT)
        await store.set_session("device-1", "S" * 22)
        async with trio.open_nursery() as nursery:  # concurrent writers
            for n in stored:
                nursery.start_soon(store.add_notification, n)
        await store.set_status(["n-0"], "delivered", 2000)

    async def read(store: Store) -> None:
        snapshot = await store.load()
        assert snapshot.registrations == (CHAT,)
        assert snapshot.sessions == {"device-1": "S" * 22}
        assert snapshot.notifications == tuple(stored[1:])
        assert await store.queued_for("device-1") == tuple(stored[1:])
        assert await store.get_registration(TOKEN) == CHAT
        assert await store.get_session("device-1") == "S" * 22
        delivered = await store.get_notification("n-0")
        assert delivered is not None and delivered.status == "delivered"

    running(new_store, write)
    running(new_store, read)


def test_a_store_not_running_refuses_calls(new_store: StoreMaker) -> None:
    async def main() -> None:
        store = new_store()
        with pytest.raises(StoreClosed):
            await store.set_session("device-1", "S" * 22)
        with pytest.raises(StoreClosed):
            await store.load()
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            await store.add_notification(notification("n-1"))
            nursery.cancel_scope.cancel()
        with pytest.raises(StoreClosed):
            await store.add_notification(notification("n-2"))
        with pytest.raises(StoreClosed):
            await store.queued_for("device-1")

    trio.run(main)


def test_store_errors_are_one_family() -> None:
    assert issubclass(StoreConflict, StoreError)
    assert issubclass(StoreClosed, StoreError)
