"""The writer's batch: writes applied to SQLite in one transaction, with one commit.

:class:`WriteOp` is one write on its way through the writer task of
:class:`~aoi.server.store.sqlite.SqliteStore`. :func:`apply_batch` applies a batch of them in
one transaction, plain notification inserts in one ``executemany``; if anything in it
fails, the batch is rolled back and :func:`apply_isolated` applies it again with a
savepoint around each write, so that only the write that failed raises (to its own caller)
and the others commit together. Both run in the writer's worker thread.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import trio

from .sqlite_schema import INSERT_NOTIFICATION

T = TypeVar("T")
Connection = sqlite3.Connection


class WriteOp(Generic[T]):
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


def apply_batch(conn: Connection, batch: list[WriteOp[Any]]) -> bool:
    """The batch in one transaction; False (rolled back) if anything in it failed."""
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
    except Exception:  # find out which op it was: apply_isolated
        rollback(conn)
        return False


def apply_isolated(conn: Connection, batch: list[WriteOp[Any]]) -> bool:
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
        rollback(conn)
        for op in batch:
            op.result = None
            op.error = op.error or exc
        return False


def rollback(conn: Connection) -> None:
    # It may fail when SQLite already rolled back by itself (e.g. after SQLITE_FULL).
    with contextlib.suppress(sqlite3.Error):
        if conn.in_transaction:
            conn.execute("ROLLBACK")
