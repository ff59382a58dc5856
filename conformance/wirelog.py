"""The wire log: every frame and HTTP exchange of a scenario, both ways, timestamped.

Secrets never reach it: ``credential`` members, ``Authorization`` headers and every
credential or key the IXIT names are replaced by ``***`` before an entry is stored.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

REDACTED = "***"
_SECRET_MEMBERS = frozenset({"credential", "key", "password", "secret"})
_AUTH_HEADER = re.compile(r"(?im)^(authorization:\s*)(\S+)(\s+)\S+")


@dataclass(frozen=True, slots=True)
class Entry:
    at: float  # time.time()
    elapsed: float  # seconds since the log started
    channel: str  # e.g. "aoi2 A#1", "http main"
    direction: str  # "->" sent by the suite, "<-" received from the target, "--" an event
    text: str

    def render(self) -> str:
        stamp = datetime.fromtimestamp(self.at, UTC).strftime("%H:%M:%S.%f")[:-3]
        lines = self.text.splitlines() or [""]
        head = f"{stamp} +{self.elapsed:7.3f}s {self.channel:<14} {self.direction} "
        pad = " " * len(head)
        return "\n".join([head + lines[0], *(pad + line for line in lines[1:])])


def redact_json(value: Any) -> Any:
    """``value`` with every secret-looking member replaced."""
    if isinstance(value, dict):
        return {
            k: (REDACTED if k in _SECRET_MEMBERS and isinstance(v, str) else redact_json(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact_json(v) for v in value]
    return value


class WireLog:
    """Thread-safe: the trio thread of the portal and the test thread both write to it."""

    def __init__(self, secrets: list[str] | None = None) -> None:
        self._secrets = sorted({s for s in secrets or [] if s}, key=len, reverse=True)
        self._entries: list[Entry] = []
        self._lock = threading.Lock()
        self._started = time.monotonic()

    def redact(self, text: str) -> str:
        text = _AUTH_HEADER.sub(lambda m: m.group(1) + m.group(2) + m.group(3) + REDACTED, text)
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text

    def frame(self, channel: str, direction: str, raw: str | bytes) -> None:
        """Log a WebSocket message; JSON objects are redacted member by member."""
        if isinstance(raw, bytes):
            shown = f"<binary {len(raw)} bytes> {raw[:64].hex()}"
        else:
            try:
                shown = json.dumps(redact_json(json.loads(raw)), ensure_ascii=False)
            except ValueError:
                shown = raw
            if len(shown) > 2048:
                shown = f"{shown[:2048]}... <{len(raw)} characters>"
        self.add(channel, direction, shown)

    def add(self, channel: str, direction: str, text: str) -> None:
        now = time.time()
        entry = Entry(now, time.monotonic() - self._started, channel, direction, self.redact(text))
        with self._lock:
            self._entries.append(entry)

    def entries(self) -> list[Entry]:
        with self._lock:
            return list(self._entries)

    def render(self) -> str:
        return "\n".join(e.render() for e in self.entries()) + "\n"

    def tail(self, n: int = 12) -> str:
        return "\n".join(e.render() for e in self.entries()[-n:])
