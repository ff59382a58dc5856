"""The contract the suite judges against: the schemas of ``schemas/``, validated offline.

The suite reads them as :mod:`conformance.schemas` (the package ``schemas/`` of the
repository, shipped inside the suite's wheel), so that it needs nothing of the reference.

``date-time`` and ``uri`` are checked here (jsonschema checks them only with optional
packages), so that a target's timestamps and endpoints are judged the same everywhere.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import jsonschema

import conformance.schemas as aoi_schemas

_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")

FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _RFC3339.match(value):
        return False
    datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    return True


@FORMATS.checks("uri", raises=ValueError)
def _uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return bool(parts.scheme and (parts.netloc or parts.path))


@cache
def _validator(schema_id: str) -> jsonschema.Draft202012Validator:
    schema = aoi_schemas.schemas()[schema_id]
    return jsonschema.Draft202012Validator(
        schema, registry=aoi_schemas.registry(), format_checker=FORMATS
    )


def errors(schema_path: str, instance: Any) -> list[str]:
    """Why ``instance`` fails the schema at ``schema_path`` (e.g. ``aoi3/health.json``)."""
    validator = _validator(aoi_schemas.schema_id(schema_path))
    found = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    return [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in found]


@cache
def message_types(interface: str) -> frozenset[str]:
    """The message types of ``aoi1`` or ``aoi2``."""
    return frozenset(aoi_schemas.message_schemas(interface))


def aoi2_types() -> frozenset[str]:
    return message_types("aoi2")


def message_errors(interface: str, message: Any) -> list[str]:
    """Why ``message`` is not a valid message of ``interface`` (empty when it is)."""
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return ["(root): not an object with a string type"]
    if message["type"] not in message_types(interface):
        return [f"type: unknown {interface.upper()} message {message['type']!r}"]
    return errors(f"{interface}/{message['type']}.json", message)


def aoi2_errors(message: Any) -> list[str]:
    """Why ``message`` is not a valid AOI-2 message (empty when it is)."""
    return message_errors("aoi2", message)


def aoi1_errors(message: Any) -> list[str]:
    """Why ``message`` is not a valid AOI-1 message (empty when it is)."""
    return message_errors("aoi1", message)


def read_frame(
    raw: str | bytes, problems_of: Callable[[Any], list[str]]
) -> tuple[dict[str, Any] | None, list[str]]:
    """A received WebSocket message: the JSON object it holds (if any) and what is wrong."""
    if isinstance(raw, bytes):
        return None, ["a binary message (AOI-2 messages are text)"]
    try:
        decoded = json.loads(raw)
    except ValueError as e:
        return None, [f"not JSON: {e}"]
    return (decoded if isinstance(decoded, dict) else None), problems_of(decoded)
