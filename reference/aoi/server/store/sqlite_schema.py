"""The SQLite store's file: its schema, the migrations that build it, every statement the
store runs on it, and the reads (each run on the reader's connection in a worker thread)."""

from __future__ import annotations

import sqlite3
from typing import Any

from .base import Registration, Snapshot, StoredNotification, StoreError

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


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the file's schema up to :data:`SCHEMA_VERSION`; refuse a newer one."""
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


# --- reads -------------------------------------------------------------------------------


def _registration(row: tuple[Any, ...]) -> Registration:
    token, client_id, app_id, created_at, active = row
    return Registration(token, client_id, app_id, created_at, bool(active))


def load(conn: sqlite3.Connection) -> Snapshot:
    conn.execute("BEGIN")  # one read snapshot for the three queries
    try:
        registrations = tuple(map(_registration, conn.execute(SELECT_REGISTRATIONS)))
        notifications = tuple(StoredNotification(*row) for row in conn.execute(SELECT_QUEUE))
        sessions = dict(conn.execute(SELECT_SESSIONS).fetchall())
    finally:
        conn.execute("COMMIT")
    return Snapshot(registrations, notifications, sessions)


def notification(conn: sqlite3.Connection, id: str) -> StoredNotification | None:
    row = conn.execute(SELECT_NOTIFICATION, (id,)).fetchone()
    return None if row is None else StoredNotification(*row)


def registration(conn: sqlite3.Connection, token: str) -> Registration | None:
    row = conn.execute(SELECT_REGISTRATION, (token,)).fetchone()
    return None if row is None else _registration(row)


def registrations_of(conn: sqlite3.Connection, client_id: str) -> tuple[Registration, ...]:
    return tuple(map(_registration, conn.execute(SELECT_REGISTRATIONS_OF, (client_id,))))


def session(conn: sqlite3.Connection, client_id: str) -> str | None:
    row = conn.execute(SELECT_SESSION, (client_id,)).fetchone()
    return None if row is None else str(row[0])


def queued_for(conn: sqlite3.Connection, client_id: str) -> tuple[StoredNotification, ...]:
    return tuple(StoredNotification(*row) for row in conn.execute(SELECT_QUEUE_OF, (client_id,)))
