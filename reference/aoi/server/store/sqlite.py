"""The embedded store: one SQLite file in WAL mode, written by one task with group commit.

Why one writer: SQLite serialises writers anyway, and with ``synchronous=FULL`` every commit
costs an fsync. So callers hand their operation to the writer task over a memory channel and
wait; the writer takes everything waiting (up to ``batch_limit``), applies it in one
transaction in a worker thread, commits once and wakes every caller. Under load one fsync
covers hundreds of writes; when idle, a lone write commits at once. A call returns only after
the transaction holding its operation committed, which is what "durable on return" means.

If a batch fails, it is rolled back and applied again with a savepoint around each operation:
the operation that failed raises to its own caller and the others still commit, in one more
transaction rather than one each (:mod:`aoi.server.store.sqlite_batch` applies batches).

Reads have their own connection (WAL lets them run beside the writer), also in a worker
thread, so the event loop never waits for the disk. A sqlite3 connection may be used by one
thread at a time only: the writer's by the writer task alone, the reader's under a lock.

One server process owns a database file.
"""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import trio

from . import sqlite_schema as schema
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
from .sqlite_batch import Connection, WriteOp, apply_batch, apply_isolated
from .sqlite_schema import (
    CANCEL_OF_TOKEN,
    DEACTIVATE_REGISTRATION,
    EXPIRE,
    FINISH,
    INSERT_NOTIFICATION,
    INSERT_REGISTRATION,
    PURGE,
    SCHEMA_VERSION,
    UPSERT_SESSION,
    migrate,
)

Synchronous = Literal["full", "normal"]

T = TypeVar("T")


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
        self.failure: str | None = None  # see Store.failure
        self._send, self._receive = trio.open_memory_channel[WriteOp[Any]](math.inf)
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

    def _take(self, first: WriteOp[Any] | None) -> list[WriteOp[Any]]:
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

    async def _commit(self, batch: list[WriteOp[Any]]) -> None:
        try:
            committed, wrote = await trio.to_thread.run_sync(self._execute, batch)
        except BaseException as exc:  # a bug in the writer: fail the batch, never strand it
            for op in batch:
                op.error = op.error or exc
            raise
        finally:
            self._in_flight = 0
            for op in batch:
                op.done.set()
        self.commits += committed
        failed = [op.error for op in batch if op.error is not None]
        self.ops_failed += len(failed)
        self.ops_committed += len(batch) - len(failed) if committed else 0
        disk = next((e for e in failed if _disk_error(e)), None)
        if disk is not None:
            self.failure = f"{self.path}: {disk}"
        elif wrote or any(op.apply is _probe for op in batch):
            self.failure = None  # a commit that wrote: the disk takes writes again

    # --- in the writer's worker thread ---------------------------------------------------

    def _open(self) -> tuple[Connection, Connection]:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        writer = _connect(self.path)
        try:
            writer.execute("PRAGMA journal_mode = WAL")
            writer.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
            # A burst must not leave a huge WAL file behind once it is checkpointed.
            writer.execute("PRAGMA journal_size_limit = 67108864")
            migrate(writer)
            reader = _connect(self.path)
            reader.execute("PRAGMA query_only = 1")
        except BaseException:
            writer.close()
            raise
        return writer, reader

    def _execute(self, batch: list[WriteOp[Any]]) -> tuple[bool, bool]:
        """Apply the batch in one transaction: whether it committed, and wrote something."""
        conn = self._writer
        assert conn is not None
        changes = conn.total_changes
        committed = apply_batch(conn, batch) or apply_isolated(conn, batch)
        return committed, committed and conn.total_changes > changes

    async def _close(self) -> None:
        async with self._read_lock:
            reader, self._reader = self._reader, None
            writer, self._writer = self._writer, None
            # The writer last: the last connection to close checkpoints the WAL.
            for conn in (reader, writer):
                if conn is not None:
                    await trio.to_thread.run_sync(conn.close)

    # --- writes --------------------------------------------------------------------------

    async def _write(self, op: WriteOp[T]) -> T:
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

        await self._write(WriteOp(apply))

    async def deactivate_registration(self, token: str, at: float) -> None:
        def apply(conn: Connection) -> None:
            conn.execute(DEACTIVATE_REGISTRATION, (at, token))
            conn.execute(CANCEL_OF_TOKEN, (at, token))

        await self._write(WriteOp(apply))

    async def add_notification(self, n: StoredNotification, replaces: Sequence[str] = ()) -> None:
        row = _row(n)
        cancelled = [(Status.CANCELLED.value, n.created_at, id) for id in replaces]

        def apply(conn: Connection) -> None:
            conn.execute(INSERT_NOTIFICATION, row)
            conn.executemany(FINISH, cancelled)

        await self._write(WriteOp(apply, None if cancelled else row))

    async def add_notifications(
        self, batch: Sequence[tuple[StoredNotification, Sequence[str]]]
    ) -> None:
        rows = [_row(n) for n, _ in batch]
        cancelled = [
            (Status.CANCELLED.value, n.created_at, id) for n, replaces in batch for id in replaces
        ]

        def apply(conn: Connection) -> None:
            conn.executemany(INSERT_NOTIFICATION, rows)
            conn.executemany(FINISH, cancelled)  # after the inserts: it may name one of them

        await self._write(WriteOp(apply))

    async def set_status(self, ids: Sequence[str], status: str, at: float) -> None:
        if Status(status) not in FINISHED:
            raise ValueError("a notification never goes back to queued")
        if not ids:
            return
        rows = [(status, at, id) for id in ids]

        def apply(conn: Connection) -> None:
            conn.executemany(FINISH, rows)

        await self._write(WriteOp(apply))

    async def set_session(self, client_id: str, session_id: str) -> None:
        def apply(conn: Connection) -> None:
            conn.execute(UPSERT_SESSION, (client_id, session_id))

        await self._write(WriteOp(apply))

    async def probe(self) -> None:
        await self._write(WriteOp(_probe))

    async def expire(self, now: float) -> list[str]:
        def apply(conn: Connection) -> list[str]:
            return [id for (id,) in conn.execute(EXPIRE, (now,))]

        return await self._write(WriteOp(apply))

    async def purge(self, before: float) -> int:
        def apply(conn: Connection) -> int:
            return conn.execute(PURGE, (before,)).rowcount

        return await self._write(WriteOp(apply))

    # --- reads ---------------------------------------------------------------------------

    async def _read(self, query: Callable[..., T], *args: Any) -> T:
        """``query(reader, *args)`` in a worker thread."""
        async with self._read_lock:
            if self._reader is None:
                raise StoreClosed("the store is not running")
            try:
                return await trio.to_thread.run_sync(query, self._reader, *args)
            except sqlite3.Error as exc:
                raise _store_error(exc) from exc

    async def load(self) -> Snapshot:
        return await self._read(schema.load)

    async def get_notification(self, id: str) -> StoredNotification | None:
        return await self._read(schema.notification, id)

    async def get_registration(self, token: str) -> Registration | None:
        return await self._read(schema.registration, token)

    async def registrations_of(self, client_id: str) -> tuple[Registration, ...]:
        return await self._read(schema.registrations_of, client_id)

    async def get_session(self, client_id: str) -> str | None:
        return await self._read(schema.session, client_id)

    async def queued_for(self, client_id: str) -> tuple[StoredNotification, ...]:
        return await self._read(schema.queued_for, client_id)


def _row(n: StoredNotification) -> tuple[Any, ...]:
    return (
        n.id, n.token, n.client_id, n.app_id, n.payload, n.priority, n.ttl_s, n.created_at,
        n.expires_at, n.collapse_key, n.pushed_by, n.status, n.status_at,
    )  # fmt: skip


def _connect(path: str) -> Connection:
    # isolation_level=None: the writer says BEGIN and COMMIT itself.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def _probe(conn: Connection) -> None:
    """A write that changes nothing: the database header's version, set to itself."""
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


# The disk, not the record: full, read-only, failing. Writes fail until this changes.
_DISK = ("SQLITE_FULL", "SQLITE_IOERR", "SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_CORRUPT")


def _disk_error(exc: BaseException) -> bool:
    return str(getattr(exc, "sqlite_errorname", "")).startswith(_DISK)


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
