"""The SQLite store on real files: group commit, failures, its file, crashes. What every
store does is in tests/store/test_store_contract.py."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import trio
from tests.store.test_store_contract import notification, running

from aoi.server.store import (
    Snapshot,
    SqliteStore,
    Store,
    StoreClosed,
    StoreConflict,
    StoredNotification,
    StoreError,
)
from aoi.server.store import sqlite_schema as schema
from aoi.server.store.sqlite import Synchronous

T = TypeVar("T")


def with_store(path: Path, body: Callable[[SqliteStore], Awaitable[T]], **options: Any) -> T:
    """Run ``body`` against a running store on ``path``, then stop the store."""
    return running(lambda: SqliteStore(path, **options), body)  # type: ignore[arg-type]


def load(path: Path) -> Snapshot:
    """What a fresh store on ``path`` finds."""
    return with_store(path, SqliteStore.load)


# --- every operation -------------------------------------------------------------------


def test_a_bad_record_is_an_error_but_not_a_conflict(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> None:
        with pytest.raises(StoreError) as caught:
            await store.add_notification(notification("n-1", priority="urgent"))
        assert not isinstance(caught.value, StoreConflict)
        assert "CHECK" in str(caught.value)
        assert await store.get_notification("n-1") is None

    with_store(tmp_path / "aoi.db", body)


# --- lifecycle and durability ----------------------------------------------------------


@pytest.mark.parametrize("synchronous", ["full", "normal"])
def test_stopping_commits_what_is_queued(tmp_path: Path, synchronous: Synchronous) -> None:
    path = tmp_path / "aoi.db"
    returned: list[str] = []

    async def add(store: SqliteStore, id: str) -> None:
        await store.add_notification(notification(id))
        returned.append(id)

    async def main() -> None:
        # A small batch limit leaves writes in the channel when the writer is stopped.
        store = SqliteStore(path, synchronous=synchronous, batch_limit=10)
        async with trio.open_nursery() as callers, trio.open_nursery() as writer:
            await writer.start(store.run)
            for i in range(300):
                callers.start_soon(add, store, f"n-{i}")
            while len(returned) + store.backlog() < 300:  # until every caller waits
                await trio.lowlevel.checkpoint()
            assert store.backlog() > 10
            writer.cancel_scope.cancel()  # the writer only, with writes waiting
        assert store.backlog() == 0
        with pytest.raises(StoreClosed):
            await store.add_notification(notification("late"))
        with pytest.raises(StoreClosed):
            await store.get_notification("n-1")

    trio.run(main)
    assert len(returned) == 300
    assert {n.id for n in load(path).notifications} == set(returned)


def test_a_broken_writer_fails_its_callers_instead_of_stranding_them(tmp_path: Path) -> None:
    outcomes: list[type[BaseException]] = []

    def broken(batch: object) -> bool:
        raise RuntimeError("a bug in the writer")

    async def add(store: SqliteStore, id: str) -> None:
        try:
            await store.add_notification(notification(id))
        except StoreError as exc:
            outcomes.append(type(exc))

    async def main() -> None:
        store = SqliteStore(tmp_path / "aoi.db", batch_limit=10)
        with trio.fail_after(10):
            async with trio.open_nursery() as callers:
                with pytest.RaisesGroup(RuntimeError):
                    async with trio.open_nursery() as writer:
                        await writer.start(store.run)
                        store._execute = broken  # type: ignore[method-assign]
                        for i in range(50):
                            callers.start_soon(add, store, f"n-{i}")
        assert store.backlog() == 0

    trio.run(main)
    assert len(outcomes) == 50
    assert StoreError in outcomes  # the batch that met the bug
    assert StoreClosed in outcomes  # the writes still queued behind it


def test_run_runs_once(tmp_path: Path) -> None:
    async def main() -> None:
        store = SqliteStore(tmp_path / "aoi.db")
        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            with pytest.raises(RuntimeError, match="once"):
                await store.run()
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_sqlite_store_is_a_store(tmp_path: Path) -> None:
    store: Store = SqliteStore(tmp_path / "aoi.db")  # mypy checks the Protocol here
    assert store.backlog() == 0


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match="synchronous"):
        SqliteStore("x.db", synchronous="off")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_limit"):
        SqliteStore("x.db", batch_limit=0)


# --- group commit and failure isolation ------------------------------------------------


def test_concurrent_writes_share_commits(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> tuple[int, int]:
        peak = 0

        async def watch() -> None:
            nonlocal peak
            while True:
                peak = max(peak, store.backlog())
                await trio.sleep(0)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            async with trio.open_nursery() as callers:
                for i in range(2000):
                    callers.start_soon(store.add_notification, notification(f"n-{i}"))
                # Reads run beside the writer, on their own connection.
                callers.start_soon(store.get_notification, "n-0")
            nursery.cancel_scope.cancel()
        assert store.backlog() == 0
        assert len((await store.load()).notifications) == 2000
        return peak, store.commits

    peak, commits = with_store(tmp_path / "aoi.db", body, synchronous="normal")
    assert peak > 100
    assert commits <= 2000 / 20, "group commit: one transaction per many writes"


def test_batch_limit_bounds_a_transaction(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> tuple[int, int]:
        async with trio.open_nursery() as callers:
            for i in range(100):
                callers.start_soon(store.set_session, f"device-{i}", "S" * 22)
        return store.commits, store.ops_committed

    commits, ops = with_store(tmp_path / "aoi.db", body, batch_limit=10)
    assert ops == 100
    assert commits >= 10


def test_a_failing_write_raises_to_its_caller_only(tmp_path: Path) -> None:
    async def body(store: SqliteStore) -> None:
        await store.add_notification(notification("taken"))
        await store.add_notification(notification("keep", collapse_key="k"))
        commits_before = store.commits
        outcomes: dict[str, BaseException | None] = {}

        async def add(n: StoredNotification, replaces: list[str]) -> None:
            try:
                await store.add_notification(n, replaces)
            except StoreError as exc:
                outcomes[n.id] = exc
            else:
                outcomes[n.id] = None

        async with trio.open_nursery() as nursery:
            for i in range(500):
                if i == 250:  # fails, and with it the cancellation it carries
                    nursery.start_soon(add, notification("taken"), ["keep"])
                nursery.start_soon(add, notification(f"n-{i}"), [])

        failed = {id: exc for id, exc in outcomes.items() if exc is not None}
        assert list(failed) == ["taken"]
        assert isinstance(failed["taken"], StoreConflict)
        assert len(outcomes) == 501
        assert store.ops_failed == 1
        assert store.commits - commits_before <= 5, "the other writes still shared commits"
        kept = await store.get_notification("keep")
        assert kept is not None and kept.status == "queued"
        assert len((await store.load()).notifications) == 2 + 500

    with_store(tmp_path / "aoi.db", body, synchronous="normal")


# --- the file ----------------------------------------------------------------------------


def test_schema_version_and_wal(tmp_path: Path) -> None:
    path = tmp_path / "aoi.db"

    async def body(store: SqliteStore) -> None:
        pass

    with_store(path, body)
    with_store(path, body)  # opening again migrates nothing
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (schema.SCHEMA_VERSION,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        conn.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "aoi.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    conn.close()

    with pytest.raises(StoreError, match="newer"):
        trio.run(SqliteStore(path).run)


@pytest.mark.parametrize(
    ("query", "index"),
    [
        (schema.SELECT_QUEUE, "notifications_queue"),
        (schema.EXPIRE, "notifications_expiry"),
        (schema.CANCEL_OF_TOKEN, "notifications_of_token"),
        (schema.PURGE, "notifications_finished"),
        (schema.FINISH, "sqlite_autoindex_notifications_1"),
        (schema.SELECT_NOTIFICATION, "sqlite_autoindex_notifications_1"),
        (schema.DEACTIVATE_REGISTRATION, "sqlite_autoindex_registrations_1"),
        (schema.SELECT_QUEUE_OF, "notifications_queue"),
        (schema.SELECT_REGISTRATION, "sqlite_autoindex_registrations_1"),
        (schema.SELECT_SESSION, "sqlite_autoindex_sessions_1"),
    ],
    ids=[
        "load",
        "expire",
        "deactivate",
        "purge",
        "set_status",
        "get",
        "deactivate-reg",
        "queued_for",
        "get_registration",
        "get_session",
    ],
)
def test_queries_use_their_index(tmp_path: Path, query: str, index: str) -> None:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    schema.migrate(conn)
    params = [None] * query.count("?") if "?1" not in query else [None]
    plan = " ".join(row[-1] for row in conn.execute(f"EXPLAIN QUERY PLAN {query}", params))
    assert f"USING INDEX {index}" in plan or f"USING COVERING INDEX {index}" in plan, plan
    assert "TEMP B-TREE" not in plan, plan


# --- a real crash ------------------------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import sys
    import trio
    from aoi.server.store import SqliteStore, StoredNotification

    async def main(path, synchronous):
        store = SqliteStore(path, synchronous=synchronous)

        async def writer(w):
            for i in range(10**9):
                id = f"n-{w}-{i}"
                await store.add_notification(StoredNotification(
                    id=id, token="Zq3x9Kd0aB7cLmN2pQ4rS6", client_id="device-1",
                    app_id="com.example.chat", payload="x" * 200, priority="normal",
                    ttl_s=60, created_at=1000.0, expires_at=1060.0, collapse_key=None,
                    pushed_by="chat-backend",
                ))
                print(id, flush=True)

        async with trio.open_nursery() as nursery:
            await nursery.start(store.run)
            for w in range(50):
                nursery.start_soon(writer, w)

    trio.run(main, sys.argv[1], sys.argv[2])
    """
)


@pytest.mark.parametrize("synchronous", ["full", "normal"])
def test_every_acknowledged_write_survives_sigkill(
    tmp_path: Path, synchronous: Synchronous
) -> None:
    path = tmp_path / "aoi.db"
    process = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), synchronous],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    acknowledged: list[str] = []
    try:
        for line in process.stdout:
            acknowledged.append(line)
            if len(acknowledged) >= 3000:
                break
    finally:
        os.kill(process.pid, signal.SIGKILL)
        rest, _ = process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL
    acknowledged += rest.splitlines(keepends=True)
    # A line cut by the kill was never fully printed: its write may or may not be there.
    ids = {line.strip() for line in acknowledged if line.endswith("\n")}
    assert len(ids) >= 3000

    stored = {n.id for n in load(path).notifications}
    assert ids <= stored, f"lost {len(ids - stored)} acknowledged writes"
