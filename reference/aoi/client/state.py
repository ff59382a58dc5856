"""What the AOI Client keeps across restarts, in its state directory.

```
state_dir/
  policies/<provider>.json   the last valid policy document of each provider
  sessions.json              {"<provider>/<server_id>": session}: resumed with hello.session
  registrations.json         {app_id: {provider, server_id, token, endpoint, told}}
  stale.json                 {"<provider>/<server_id>": {token: app_id}}: to unregister there
  seen/<app_id>.log          ids the app acknowledged, "<id> <expiry>" a line (kept until then)
```

Without a directory everything is kept in memory only. Files are replaced atomically.
"""

from __future__ import annotations

import heapq
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from aoi.logs import EventLog

_log = EventLog("aoi.client.state")


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default
    except (OSError, ValueError) as exc:
        _log.warning("state_file_unreadable", path=str(path), error=str(exc))
        return default


def _write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, indent=1, sort_keys=True))
    os.replace(tmp, path)


EXPIRY_MARGIN_S = 600.0  # an id outlives its expiry by this much: the server's clock may lag
UNDATED_KEEP_S = 2_419_200.0  # an id without an expiry (an older file): the longest TTL
COMPACT_MIN = 1024  # a file is rewritten once it has this many lines and twice the live ids


def notification_expiry(created_at: str, ttl_s: float, now: float) -> float:
    """When a notification expires (``created_at + ttl_s``), in seconds since the epoch;
    ``now + ttl_s`` if ``created_at`` cannot be read (later than the real expiry: the id
    is kept longer, never shorter)."""
    try:
        created = datetime.fromisoformat(created_at.replace("z", "Z")).timestamp()
    except ValueError:
        return now + ttl_s
    return created + ttl_s


class SeenIds:
    """Notification ids each app has acknowledged, each kept until its notification expires
    (``created_at + ttl_s``, plus ``EXPIRY_MARGIN_S``), at most ``limit`` per app.

    At the limit, adding an id forgets the one that expires first (logged once as
    ``seen_ids_full`` until the app is below the limit again): should a server send that
    one again before it expires, the app would see it twice. Time is an input (``now``, in
    seconds since the epoch).

    Each app has an append-only file of ``<id> <expiry>`` lines, rewritten with the live ids
    only when it holds twice as many lines as live ids (and at least ``COMPACT_MIN``), so an
    ack costs one short append.
    """

    def __init__(self, directory: Path | None, limit: int = 100_000) -> None:
        self.directory = directory
        self.limit = limit
        self._expiry: dict[str, dict[str, float]] = {}  # app_id -> id -> expiry
        self._heaps: dict[str, list[tuple[float, str]]] = {}  # (expiry, id), soonest first
        self._lines: dict[str, int] = {}
        self._full: set[str] = set()

    def contains(self, app_id: str, notification_id: str, now: float) -> bool:
        expiry = self._load(app_id, now).get(notification_id)
        return expiry is not None and expiry > now

    def add(self, app_id: str, notification_id: str, expires_at: float, now: float) -> None:
        ids = self._load(app_id, now)
        expiry = expires_at + EXPIRY_MARGIN_S
        if expiry <= now or expiry <= ids.get(notification_id, now):
            return  # expired already, or kept as long already
        self._prune(app_id, now)
        if notification_id not in ids and len(ids) >= self.limit:
            self._drop_soonest(app_id)
        ids[notification_id] = expiry
        heapq.heappush(self._heaps[app_id], (expiry, notification_id))
        self._append(app_id, notification_id, expiry)

    def forget(self, app_id: str) -> None:
        self._expiry.pop(app_id, None)
        self._heaps.pop(app_id, None)
        self._lines.pop(app_id, None)
        self._full.discard(app_id)
        path = self._path(app_id)
        if path is not None:
            path.unlink(missing_ok=True)

    def _prune(self, app_id: str, now: float) -> None:
        ids, heap = self._expiry[app_id], self._heaps[app_id]
        while heap and heap[0][0] <= now:
            expiry, notification_id = heapq.heappop(heap)
            if ids.get(notification_id) == expiry:
                del ids[notification_id]
        if len(ids) < self.limit:
            self._full.discard(app_id)

    def _drop_soonest(self, app_id: str) -> None:
        ids, heap = self._expiry[app_id], self._heaps[app_id]
        while heap:
            expiry, notification_id = heapq.heappop(heap)
            if ids.get(notification_id) == expiry:
                del ids[notification_id]
                break
        if app_id not in self._full:
            self._full.add(app_id)
            _log.warning("seen_ids_full", app_id=app_id, limit=self.limit)

    def _append(self, app_id: str, notification_id: str, expiry: float) -> None:
        path = self._path(app_id)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        if self._lines[app_id] + 1 >= max(2 * len(self._expiry[app_id]), COMPACT_MIN):
            self._rewrite(app_id)
        else:
            with path.open("a") as f:
                f.write(f"{notification_id} {expiry:.3f}\n")
            self._lines[app_id] += 1

    def _rewrite(self, app_id: str) -> None:
        """The app's file with its live ids only."""
        path = self._path(app_id)
        if path is None:
            return
        ids = self._expiry[app_id]
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(f"{i} {e:.3f}\n" for i, e in ids.items()))
        os.replace(tmp, path)
        self._lines[app_id] = len(ids)

    def _path(self, app_id: str) -> Path | None:
        return None if self.directory is None else self.directory / f"{app_id}.log"

    def _load(self, app_id: str, now: float) -> dict[str, float]:
        ids = self._expiry.get(app_id)
        if ids is not None:
            return ids
        lines: list[str] = []
        path = self._path(app_id)
        if path is not None:
            try:
                lines = [line for line in path.read_text().splitlines() if line]
            except FileNotFoundError:
                pass
            except OSError as exc:
                _log.warning("state_file_unreadable", path=str(path), error=str(exc))
        ids, undated = {}, False
        for line in lines:  # the last line of an id wins
            notification_id, _, written = line.partition(" ")
            undated = undated or not written
            try:
                ids[notification_id] = float(written) if written else now + UNDATED_KEEP_S
            except ValueError:
                continue
        live = sorted((e, i) for i, e in ids.items() if e > now)[-self.limit :]
        self._expiry[app_id] = {i: e for e, i in live}
        self._heaps[app_id] = live  # sorted: a heap already
        self._lines[app_id] = len(lines)
        if undated:  # dated once, in the file too, so that a restart does not renew them
            self._rewrite(app_id)
        return self._expiry[app_id]


class State:
    def __init__(self, directory: Path | None, seen_limit: int = 100_000) -> None:
        self.directory = directory
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)
        self.sessions: dict[str, str] = self._read("sessions.json", {})
        self.registrations: dict[str, dict[str, Any]] = self._read("registrations.json", {})
        self.stale: dict[str, dict[str, str]] = self._read("stale.json", {})
        self.seen = SeenIds(None if directory is None else directory / "seen", seen_limit)
        self._policies: dict[str, Any] = {}

    # --- policies ------------------------------------------------------------------------

    def policy(self, slug: str) -> Any:
        if slug not in self._policies:
            self._policies[slug] = self._read(f"policies/{slug}.json", None)
        return self._policies[slug]

    def save_policy(self, slug: str, document: Any) -> None:
        self._policies[slug] = document
        self._write(f"policies/{slug}.json", document)

    # --- sessions, registrations, stale tokens -------------------------------------------

    def save_session(self, server_key: str, session: str | None) -> None:
        if session is None:
            if self.sessions.pop(server_key, None) is not None:
                self._write("sessions.json", self.sessions)
        elif self.sessions.get(server_key) != session:
            self.sessions[server_key] = session
            self._write("sessions.json", self.sessions)

    def save_registration(self, app_id: str, record: dict[str, Any] | None) -> None:
        if record is None:
            if self.registrations.pop(app_id, None) is None:
                return
        elif self.registrations.get(app_id) == record:
            return
        else:
            self.registrations[app_id] = record
        self._write("registrations.json", self.registrations)

    def add_stale(self, server_key: str, token: str, app_id: str) -> None:
        self.stale.setdefault(server_key, {})[token] = app_id
        self._write("stale.json", self.stale)

    def drop_stale(
        self, server_key: str, *, token: str | None = None, app_id: str | None = None
    ) -> None:
        tokens = self.stale.get(server_key)
        if not tokens:
            return
        doomed = [t for t, a in tokens.items() if t == token or a == app_id]
        if not doomed:
            return
        for t in doomed:
            del tokens[t]
        if not tokens:
            del self.stale[server_key]
        self._write("stale.json", self.stale)

    # --- files ---------------------------------------------------------------------------

    def _read(self, name: str, default: Any) -> Any:
        if self.directory is None:
            return default
        return _read_json(self.directory / name, default)

    def _write(self, name: str, value: Any) -> None:
        if self.directory is not None:
            _write_json(self.directory / name, value)
