"""Structured logs: one JSON object per line on stderr."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any, TextIO

_FIELDS = "aoi_fields"
_STANDARD = {*vars(logging.makeLogRecord({})), "message", "asctime", _FIELDS}


def error_text(exc: BaseException) -> str:
    """What went wrong, in words, for a log field or a message: an OSError's own text,
    else the exception's message, without an ``[Errno N]``, else its type's name."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror if exc.filename is None else f"{exc.filename}: {exc.strerror}"
    return re.sub(r"^\[Errno -?\d+\] ", "", str(exc)) or type(exc).__name__  # wrapped ones too


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        entry.update((k, v) for k, v in vars(record).items() if k not in _STANDARD)
        entry.update(getattr(record, _FIELDS, {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


class EventLog:
    """``log.info("event_name", key=value, ...)`` writes one structured record."""

    def __init__(self, name: str) -> None:
        self.logger = logging.getLogger(name)

    def child(self, suffix: str) -> EventLog:
        return EventLog(f"{self.logger.name}.{suffix}")

    def debug(self, event: str, **fields: Any) -> None:
        self._log(logging.DEBUG, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(logging.WARNING, event, fields)

    def error(self, event: str, *, exc_info: bool = False, **fields: Any) -> None:
        self._log(logging.ERROR, event, fields, exc_info)

    def _log(self, level: int, event: str, fields: dict[str, Any], exc_info: bool = False) -> None:
        if self.logger.isEnabledFor(level):
            self.logger.log(level, event, extra={_FIELDS: fields}, exc_info=exc_info)


def setup(level: str = "info", stream: TextIO | None = None) -> None:
    """Send the ``aoi`` loggers to ``stream`` (stderr) as JSON lines at ``level``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("aoi")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
