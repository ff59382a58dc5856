"""The AOI wire contract: JSON Schemas (draft 2020-12) and the one loader for them.

Every schema carries an ``$id`` under :data:`BASE`; ``$ref`` between them resolve inside
the registry built here, offline. Example instances live beside each schema as
``<name>.valid.json`` and ``<name>.invalid.json``.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import referencing
from referencing.jsonschema import DRAFT202012

BASE = "https://schemas.aoi.example/v1/"
ROOT = Path(__file__).parent
_NOT_SCHEMAS = ("openapi.json",)


def schema_files() -> list[Path]:
    """Every schema file (examples and the OpenAPI document excluded), in a stable order."""
    return sorted(
        p
        for p in ROOT.rglob("*.json")
        if not p.name.endswith((".valid.json", ".invalid.json")) and p.name not in _NOT_SCHEMAS
    )


def schema_id(relative: str) -> str:
    """The ``$id`` of the schema at ``relative`` (e.g. ``"aoi2/hello.json"``)."""
    return BASE + relative


@cache
def schemas() -> dict[str, dict[str, Any]]:
    """All schemas by ``$id``."""
    found: dict[str, dict[str, Any]] = {}
    for path in schema_files():
        document = json.loads(path.read_text(encoding="utf-8"))
        expected = schema_id(path.relative_to(ROOT).as_posix())
        if document.get("$id") != expected:
            raise ValueError(f"{path}: $id must be {expected!r}, not {document.get('$id')!r}")
        found[expected] = document
    return found


@cache
def registry() -> referencing.Registry[Any]:
    """A registry of every schema, for ``jsonschema`` validators; built once, offline."""
    resources = [(uri, DRAFT202012.create_resource(doc)) for uri, doc in schemas().items()]
    return referencing.Registry().with_resources(resources).crawl()


def message_schemas(interface: str) -> dict[str, dict[str, Any]]:
    """The message schemas of one WebSocket interface (``aoi1`` or ``aoi2``) by message type."""
    prefix = schema_id(f"{interface}/")
    return {
        uri[len(prefix) : -len(".json")]: doc
        for uri, doc in schemas().items()
        if uri.startswith(prefix)
    }


def examples(schema_path: Path) -> tuple[list[Any], list[dict[str, Any]]]:
    """The valid instances and the ``{why, instance}`` invalid cases beside a schema file."""
    stem = schema_path.with_suffix("")
    valid = json.loads(stem.with_name(stem.name + ".valid.json").read_text(encoding="utf-8"))
    invalid = json.loads(stem.with_name(stem.name + ".invalid.json").read_text(encoding="utf-8"))
    return valid, invalid


@cache
def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document of AOI-3 and AOI-P, as served at ``/v1/openapi.json``."""
    document: dict[str, Any] = json.loads((ROOT / "openapi.json").read_text(encoding="utf-8"))
    return document
