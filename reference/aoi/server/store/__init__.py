"""The notification store: what survives a crash of the AOI Server and answers delivery reports.

:class:`Store` is the interface the server uses; :class:`SqliteStore` the embedded default.
"""

from .base import (
    FINISHED,
    Registration,
    Snapshot,
    Status,
    Store,
    StoreClosed,
    StoreConflict,
    StoredNotification,
    StoreError,
    StoreGone,
)
from .sqlite import SqliteStore

__all__ = [
    "FINISHED",
    "Registration",
    "Snapshot",
    "SqliteStore",
    "Status",
    "Store",
    "StoreClosed",
    "StoreConflict",
    "StoreError",
    "StoreGone",
    "StoredNotification",
]
