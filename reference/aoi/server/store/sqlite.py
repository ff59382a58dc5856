"""The embedded store: one SQLite file in WAL mode, written by one task with group commit.

Why one writer: SQLite serialises writers anyway, and with ``synchronous=FULL`` every commit
costs an fsync. So callers hand their operation to the writer task over a memory channel and
wait; the writer takes everything waiting (up to ``batch_limit``), applies it in one
transaction in a worker thread, commits once and wakes every caller. Under load one fsync
covers hundreds of writes; when idle, a lone write commits at once. A call returns only after
the transaction holding its operation committed, which is what "durable on return" means.

If a batch fails, it is rolled back and applied again with a savepoint around each operation:
the operation that failed raises to its own caller and the others still commit, in one more
transaction rather than one each.

Reads have their own connection (WAL lets them run beside the writer), also in a worker
thread, so the event loop never waits for the disk. A sqlite3 connection may be used by one
thread at a time only: the writer's by the writer task alone, the reader's under a lock.

One server process owns a database file.
"""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import trio

from .base import (
    FINISHED,
    Registration,
    Snapshot,
    Status,
    StoreClosed,
    StoreConflict,
    StoredNotification,
    StoreError,
)

Synchronous = Literal["full", "normal"]

SCHEMA_VERSION = 1

# _MIGRATIONS[v] takes a database from ``user_version`` v to v + 1. Append, never edit.
_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE registrations (
        token TEXT PRIMARY KEY NOT NULL,
        client_id TEXT NOT NULL,
        app_id TEXT NOT NULL,
        created_at REAL NOT NULL,
        active INTEGER NOT NULL DEFAULT 1,
        deactivated_at REAL
    );
    CREATE TABLE notifications (
        id TEXT PRIMARY KEY NOT NULL,
        token TEXT NOT NULL,
        client_id TEXT NOT NULL,
        app_id TEXT NOT NULL,
        payload TEXT NOT NULL,
        priority TEXT NOT NULL
            CHECK (priority = 'high' OR priority = 'normal' OR priority = 'low'),
        ttl_s INTEGER NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        collapse_key TEXT,
        pushed_by TEXT NOT NULL,
        status TEXT NOT NULL CHECK (
            status = 'queued' OR status = 'delivered' OR status = 'expired' OR status = 'cancelled'
        ),
        status_at REAL
    );
    CREATE TABLE sessions (
        client_id TEXT PRIMARY KEY NOT NULL,
        session_id TEXT NOT NULL
    );
    -- The CHECKs are ORs: an IN list costs more than the rest of an insert, on every row.
    -- Partial indexes: a queued row is in the first three, a finished one in the last only,
    -- so each index stays the size of what its query looks at.
    CREATE INDEX notifications_queue ON notifications (created_at) WHERE status = 'queued';
    CREATE INDEX notifications_expiry ON notifications (expires_at) WHERE status = 'queued';
    CREATE INDEX notifications_of_token ON notifications (token) WHERE status = 'queued';
    CREATE INDEX notifications_finished ON notifications (status_at) WHERE status <> 'queued';
    """,
)

_COLUMNS = (
    "id, token, client_id, app_id, payload, priority, ttl_s, created_at, expires_at, "
    "collapse_key, pushed_by, status, status_at"
)  # in the order of StoredNotification's fields

INSERT_NOTIFICATION = f"INSERT INTO notifications ({_COLUMNS}) VALUES ({', '.join('?' * 13)})"
FINISH = "UPDATE notifications SET status = ?, status_at = ? WHERE id = ? AND status = 'queued'"
INSERT_REGISTRATION = (
    "INSERT INTO registrations (token, client_id, app_id, created_at, active) "
    "VALUES (?, ?, ?, ?, ?)"
)
DEACTIVATE_REGISTRATION = (
    "UPDATE registrations SET active = 0, deactivated_at = ? WHERE token = ? AND active = 1"
)
CANCEL_OF_TOKEN = (
    "UPDATE notifications SET status = 'cancelled', status_at = ? "
    "WHERE token = ? AND status = 'queued'"
)
UPSERT_SESSION = (
    "INSERT INTO sessions (client_id, session_id) VALUES (?, ?) "
    "ON CONFLICT (client_id) DO UPDATE SET session_id = excluded.session_id"
)
EXPIRE = (
    "UPDATE notifications SET status = 'expired', status_at = ?1 "
    "WHERE status = 'queued' AND expires_at < ?1 RETURNING id"
)
PURGE = "DELETE FROM notifications WHERE status <> 'queued' AND status_at < ?"
SELECT_QUEUE = (
    f"SELECT {_COLUMNS} FROM notifications WHERE status = 'queued' ORDER BY created_at, rowid"
)
SELECT_NOTIFICATION = f"SELECT {_COLUMNS} FROM notifications WHERE id = ?"
SELECT_REGISTRATIONS = "SELECT token, client_id, app_id, created_at, active FROM registrations"
SELECT_SESSIONS = "SELECT client_id, session_id FROM sessions"
# One client's state, for servers sharing a store. Here a server owns its file and reads
# everything once (load), so these scan instead of costing every write one more index.
SELECT_QUEUE_OF = (
    f"SELECT {_COLUMNS} FROM notifications WHERE status = 'queued' AND client_id = ? "
    "ORDER BY created_at, rowid"
)
SELECT_REGISTRATION = f"{SELECT_REGISTRATIONS} WHERE token = ?"
SELECT_REGISTRATIONS_OF = (
    f"{SELECT_REGISTRATIONS} WHERE client_id = ? AND active = 1 ORDER BY created_at, rowid"
)
SELECT_SESSION = "SELECT session_id FROM sessions WHERE client_id = ?"

T = TypeVar("T")
Connection = sqlite3.Connection


class _Op(Generic[T]):
    """One write on its way through the writer; its caller waits on ``done``.

    ``row`` is set for a plain notification insert, which the writer batches into one
    ``executemany``: the commonest write, and the one that has to be fast.
    """

    __slots__ = ("apply", "done", "error", "result", "row")

    def __init__(
        self, apply: Callable[[Connection], T], row: tuple[Any, ...] | None = None
    ) -> None:
        self.apply = apply
        self.row = row
        self.done = trio.Event()
        self.result: T | None = None
        self.error: BaseException | None = None


class SqliteStore:
    """The :class:`~aoi.server.store.base.Store` on one SQLite file."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Synchronous = "full",
        batch_limit: int = 1000,
    ) -> None:
        if synchronous not in ("full", "normal"):
            raise ValueError(f"synchronous must be 'full' or 'normal', not {synchronous!r}")
        if batch_limit < 1:
            raise ValueError("batch_limit must be at least 1")
        self.path = os.fspath(path)
        self.synchronous: Synchronous = synchronous
        self.batch_limit = batch_limit
        self.commits = 0
        self.ops_committed = 0
        self.ops_failed = 0
        self._send, self._receive = trio.open_memory_channel[_Op[Any]](math.inf)
        self._queued = 0  # in the channel
        self._in_flight = 0  # taken by the writer, not yet committed
        self._accepting = False
        self._started = False
        self._writer: Connection | None = None
        self._reader: Connection | None = None
        self._read_lock = trio.Lock()

    # --- the writer task -----------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self._started:
            raise RuntimeError("a SqliteStore runs once; open a new one on the same file")
        self._started = True
        # One thread call opens both, so a cancellation cannot leave one open and unowned.
        self._writer, self._reader = await trio.to_thread.run_sync(self._open)
        self._accepting = True
        try:
            task_status.started()
            while True:
                first = await self._receive.receive()
                # Let every caller that is ready enqueue before the batch is cut.
                await trio.lowlevel.cancel_shielded_checkpoint()
                batch = self._take(first)
                with trio.CancelScope(shield=True):
                    await self._commit(batch)
        finally:
            self._accepting = False
            with trio.CancelScope(shield=True):
                try:
                    while batch := self._take(None):
                        await self._commit(batch)
                finally:
                    self._fail_queued()  # only if a commit raised: no caller waits forever
                    await self._close()

    def _take(self, first: _Op[Any] | None) -> list[_Op[Any]]:
        batch = [] if first is None else [first]
        while len(batch) < self.batch_limit:
            try:
                batch.append(self._receive.receive_nowait())
            except trio.WouldBlock:
                break
        self._queued -= len(batch)
        self._in_flight = len(batch)
        return batch

    def _fail_queued(self) -> None:
        while batch := self._take(None):
            for op in batch:
                op.error = StoreClosed("the store stopped before this write")
                op.done.set()
        self._in_flight = 0

    async def _commit(self, batch: list[_Op[Any]]) -> None:
        try:
            committed = await trio.to_thread.run_sync(self._execute, batch)
        except BaseException as exc:  # a bug in the writer: fail the batch, never strand it
            for op in batch:
                op.error = op.error or exc
            raise
        finally:
            self._in_flight = 0
            for op in batch:
                op.done.set()
        self.commits += committed
        failed = sum(op.error is not None for op in batch)
        self.ops_failed += failed
        self.ops_committed += len(batch) - failed if committed else 0

    # --- in the writer's worker thread ---------------------------------------------------

    def _open(self) -> tuple[Connection, Connection]:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        writer = _connect(self.path)
        try:
            writer.execute("PRAGMA journal_mode = WAL")
            writer.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
            # A burst must not leave a huge WAL file behind once it is checkpointed.
            writer.execute("PRAGMA journal_size_limit = 67108864")
            _migrate(writer)
            reader = _connect(self.path)
            reader.execute("PRAGMA query_only = 1")
        except BaseException:
            writer.close()
            raise
        return writer, reader

    def _execute(self, batch: list[_Op[Any]]) -> bool:
        """Apply the batch in one transaction; True if it committed."""
        conn = self._writer
        assert conn is not None
        try:
            conn.execute("BEGIN IMMEDIATE")
            rows: list[tuple[Any, ...]] = []
            for op in batch:
                if op.row is not None:
                    rows.append(op.row)
                    continue
                if rows:
                    conn.executemany(INSERT_NOTIFICATION, rows)
                    rows.clear()
                op.result = op.apply(conn)
            if rows:
                conn.executemany(INSERT_NOTIFICATION, rows)
            conn.execute("COMMIT")
            return True
        except Exception:  # find out which op it was, below
            _rollback(conn)
        return self._execute_isolated(conn, batch)

    @staticmethod
    def _execute_isolated(conn: Connection, batch: list[_Op[Any]]) -> bool:
        """The batch again, each op under its own savepoint: a failing op is undone and
        keeps its exception, the rest commit together."""
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in batch:
                op.result = None
                conn.execute("SAVEPOINT op")
                try:
                    op.result = op.apply(conn)
                except Exception as exc:
                    op.error = exc
                    conn.execute("ROLLBACK TO op")
                conn.execute("RELEASE op")
            conn.execute("COMMIT")
            return True
        except Exception as exc:  # the commit itself failed (disk full, I/O error): all fail
            _rollback(conn)
            for op in batch:
                op.result = None
                op.error = op.error or exc
            return False

    async def _close(self) -> None:
        async with self._read_lock:
            reader, self._reader = self._reader, None
            writer, self._writer = self._writer, None
            # The writer last: the last connection to close checkpoints the WAL.
            for conn in (reader, writer):
                if conn is not None:
                    await trio.to_thread.run_sync(conn.close)

    # --- writes --------------------------------------------------------------------------

    async def _write(self, op: _Op[T]) -> T:
        if not self._accepting:
            raise StoreClosed("the store is not running")
        self._send.send_nowait(op)
        self._queued += 1
        await op.done.wait()
        if op.error is not None:
            raise _store_error(op.error)
        return op.result  # type: ignore[return-value]  # set by the writer when no error

    def backlog(self) -> int:
        return self._queued + self._in_flight

    async def add_registration(self, reg: Registration) -> None:
        row = (reg.token, reg.client_id, reg.app_id, reg.created_at, int(reg.active))

        def apply(conn: Connection) -> None:
            conn.execute(INSERT_REGISTRATION, row)

        await self._write(_Op(apply))

    async def deactivate_registration(self, token: str, at: float) -> None:
        def apply(conn: Connection) -> None:
            conn.execute(DEACTIVATE_REGISTRATION, (at, token))
            conn.execute(CANCEL_OF_TOKEN, (at, token))

        await self._write(_Op(apply))

    async def add_notification(self, n: StoredNotification, replaces: Sequence[str] = ()) -> None:
        row = (
            n.id, n.token, n.client_id, n.app_id, n.payload, n.priority, n.ttl_s, n.created_at,
            n.expires_at, n.collapse_key, n.pushed_by, n.status, n.status_at,
        )  # fmt: skip
        cancelled = [(Status.CANCELLED.value, n.created_at, id) for id in replaces]

        def apply(conn: Connection) -> None:
            conn.execute(INSERT_NOTIFICATION, row)
            conn.executemany(FINISH, cancelled)

        await self._write(_Op(apply, None if cancelled else row))

    async def set_status(self, ids: Sequence[str], status: str, at: float) -> None:
        if Status(status) not in FINISHED:
            raise ValueError("a notification never goes back to queued")
        if not ids:
            return
        rows = [(status, at, id) for id in ids]

        def apply(conn: Connection) -> None:
            conn.executemany(FINISH, rows)

        await self._write(_Op(apply))

    async def set_session(self, client_id: str, session_id: str) -> None:
        def apply(conn: Connection) -> None:
            conn.execute(UPSERT_SESSION, (client_id, session_id))

        await self._write(_Op(apply))

    async def expire(self, now: float) -> list[str]:
        def apply(conn: Connection) -> list[str]:
            return [id for (id,) in conn.execute(EXPIRE, (now,))]

        return await self._write(_Op(apply))

    async def purge(self, before: float) -> int:
        def apply(conn: Connection) -> int:
            return conn.execute(PURGE, (before,)).rowcount

        return await self._write(_Op(apply))

    # --- reads ---------------------------------------------------------------------------

    async def _read(self, query: Callable[[Connection], T]) -> T:
        async with self._read_lock:
            if self._reader is None:
                raise StoreClosed("the store is not running")
            try:
                return await trio.to_thread.run_sync(query, self._reader)
            except sqlite3.Error as exc:
                raise _store_error(exc) from exc

    async def load(self) -> Snapshot:
        return await self._read(_load)

    async def get_notification(self, id: str) -> StoredNotification | None:
        def query(conn: Connection) -> StoredNotification | None:
            row = conn.execute(SELECT_NOTIFICATION, (id,)).fetchone()
            return None if row is None else StoredNotification(*row)

        return await self._read(query)

    async def get_registration(self, token: str) -> Registration | None:
        def query(conn: Connection) -> Registration | None:
            row = conn.execute(SELECT_REGISTRATION, (token,)).fetchone()
            return None if row is None else _registration(row)

        return await self._read(query)

    async def registrations_of(self, client_id: str) -> tuple[Registration, ...]:
        def query(conn: Connection) -> tuple[Registration, ...]:
            return tuple(map(_registration, conn.execute(SELECT_REGISTRATIONS_OF, (client_id,))))

        return await self._read(query)

    async def get_session(self, client_id: str) -> str | None:
        def query(conn: Connection) -> str | None:
            row = conn.execute(SELECT_SESSION, (client_id,)).fetchone()
            return None if row is None else str(row[0])

        return await self._read(query)

    async def queued_for(self, client_id: str) -> tuple[StoredNotification, ...]:
        def query(conn: Connection) -> tuple[StoredNotification, ...]:
            rows = conn.execute(SELECT_QUEUE_OF, (client_id,))
            return tuple(StoredNotification(*row) for row in rows)

        return await self._read(query)


def _registration(row: tuple[Any, ...]) -> Registration:
    token, client_id, app_id, created_at, active = row
    return Registration(token, client_id, app_id, created_at, bool(active))


def _connect(path: str) -> Connection:
    # isolation_level=None: the writer says BEGIN and COMMIT itself.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def _migrate(conn: Connection) -> None:
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"the database's schema version {version} is newer than this AOI Server's "
            f"({SCHEMA_VERSION}): upgrade the server"
        )
    for v in range(version, SCHEMA_VERSION):
        # One transaction per step: a crash mid-migration leaves the step undone, not half done.
        step = _MIGRATIONS[v]
        conn.executescript(f"BEGIN IMMEDIATE; {step} PRAGMA user_version = {v + 1}; COMMIT;")


def _rollback(conn: Connection) -> None:
    # It may fail when SQLite already rolled back by itself (e.g. after SQLITE_FULL).
    with contextlib.suppress(sqlite3.Error):
        if conn.in_transaction:
            conn.execute("ROLLBACK")


def _load(conn: Connection) -> Snapshot:
    conn.execute("BEGIN")  # one read snapshot for the three queries
    try:
        registrations = tuple(map(_registration, conn.execute(SELECT_REGISTRATIONS)))
        notifications = tuple(StoredNotification(*row) for row in conn.execute(SELECT_QUEUE))
        sessions = dict(conn.execute(SELECT_SESSIONS).fetchall())
    finally:
        conn.execute("COMMIT")
    return Snapshot(registrations, notifications, sessions)


# Other constraint failures (a CHECK, a NOT NULL) are a bad record, not a conflict.
_DUPLICATE = frozenset({"SQLITE_CONSTRAINT_PRIMARYKEY", "SQLITE_CONSTRAINT_UNIQUE"})


def _store_error(exc: BaseException) -> StoreError:
    """A fresh exception per caller: one failed commit may have to raise in many tasks."""
    if isinstance(exc, StoreError):
        error = type(exc)(*exc.args)
    elif getattr(exc, "sqlite_errorname", "") in _DUPLICATE:
        error = StoreConflict(str(exc))
    else:
        error = StoreError(f"{type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error
