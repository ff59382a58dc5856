"""What the AOI Client keeps across restarts, in its state directory.

```
state_dir/
  policies/<provider>.json   the last valid policy document of each provider
  sessions.json              {"<provider>/<server_id>": session}: resumed with hello.session
  registrations.json         {app_id: {provider, server_id, token, endpoint, told}}
  stale.json                 {"<provider>/<server_id>": {token: app_id}}: to unregister there
  seen/<app_id>.log          ids the app acknowledged, one a line (the newest are kept)
```

Without a directory everything is kept in memory only. Files are replaced atomically.
"""

from __future__ import annotations

import json
import os
from collections import deque
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


class SeenIds:
    """Notification ids each app has acknowledged: the newest ``limit`` per app.

    Each app has an append-only file, rewritten with only the kept ids when it grows to
    twice the limit, so an ack costs one short append.
    """

    def __init__(self, directory: Path | None, limit: int = 10_000) -> None:
        self.directory = directory
        self.limit = limit
        self._ids: dict[str, deque[str]] = {}
        self._sets: dict[str, set[str]] = {}
        self._lines: dict[str, int] = {}

    def __contains__(self, key: tuple[str, str]) -> bool:
        app_id, notification_id = key
        return notification_id in self._load(app_id)

    def add(self, app_id: str, notification_id: str) -> None:
        members = self._load(app_id)
        if notification_id in members:
            return
        ids = self._ids[app_id]
        if len(ids) == self.limit:
            members.discard(ids.popleft())
        ids.append(notification_id)
        members.add(notification_id)
        path = self._path(app_id)
        if path is None:
            return
        if self._lines[app_id] + 1 >= 2 * self.limit:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text("".join(i + "\n" for i in ids))
            os.replace(tmp, path)
            self._lines[app_id] = len(ids)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a") as f:
                f.write(notification_id + "\n")
            self._lines[app_id] += 1

    def forget(self, app_id: str) -> None:
        self._ids.pop(app_id, None)
        self._sets.pop(app_id, None)
        self._lines.pop(app_id, None)
        path = self._path(app_id)
        if path is not None:
            path.unlink(missing_ok=True)

    def _path(self, app_id: str) -> Path | None:
        return None if self.directory is None else self.directory / f"{app_id}.log"

    def _load(self, app_id: str) -> set[str]:
        members = self._sets.get(app_id)
        if members is not None:
            return members
        lines: list[str] = []
        path = self._path(app_id)
        if path is not None:
            try:
                lines = [line for line in path.read_text().splitlines() if line]
            except FileNotFoundError:
                pass
            except OSError as exc:
                _log.warning("state_file_unreadable", path=str(path), error=str(exc))
        ids = deque(lines[-self.limit :], maxlen=None)
        self._ids[app_id] = ids
        self._sets[app_id] = members = set(ids)
        self._lines[app_id] = len(lines)
        return members


class State:
    def __init__(self, directory: Path | None, seen_limit: int = 10_000) -> None:
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
