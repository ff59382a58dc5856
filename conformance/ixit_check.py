"""What is wrong with an IXIT file: every problem at once, one line each, where it is.

The document is checked against ``ixit.schema.json`` (shipped with the suite: the one list
of the tables and keys it knows). A line names its place as the TOML file shows it
(``[overload] max_sesions``), says what is wrong, and for an unknown name gives the nearest
known one. A run that judges an AOI Server also needs the clients and server apps the
features name (``$defs/server_mode``).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

SCHEMA_FILE = Path(__file__).resolve().parent / "ixit.schema.json"
_TYPES = {
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "true or false",
    "array": "an array",
    "object": "a table",
}


@cache
def schema() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return document


def problems(document: dict[str, Any], *, server: bool = False) -> list[str]:
    """Why ``document`` is not a valid IXIT (empty when it is); ``server``: the run judges
    an AOI Server, which needs clients A to E and the server apps main, other, limited."""
    found = _lines(jsonschema.Draft202012Validator(schema()), document)
    if server:
        needs = _lines(jsonschema.Draft202012Validator(schema()["$defs"]["server_mode"]), document)
        found += [line for line in needs if line not in found]
    return found


def _lines(validator: jsonschema.Draft202012Validator, document: dict[str, Any]) -> list[str]:
    errors = sorted(validator.iter_errors(document), key=lambda e: [str(p) for p in e.path])
    lines: list[str] = []
    for error in errors:
        for line in _explain(error, document):
            if line not in lines:
                lines.append(line)
    return lines


def _explain(error: jsonschema.ValidationError, document: dict[str, Any]) -> Iterator[str]:
    path = list(error.path)
    kind = error.validator
    if kind == "additionalProperties":
        known = sorted(error.schema.get("properties", {}))
        for key in sorted(set(error.instance) - set(known)):
            yield _unknown(path, str(key), error.instance[key], known)
    elif kind == "required":
        for key in error.validator_value:
            if key not in error.instance:
                table = _schema_at([*path, key]).get("type") == "object"
                yield f"{_table([*path, key]) if table else _place(path, key)}: missing"
    elif kind == "type":
        expected = error.validator_value
        names = " or ".join(
            _TYPES.get(t, t) for t in ([expected] if isinstance(expected, str) else expected)
        )
        yield f"{_place(path)}: expected {names}, got {_shown(error.instance)}"
    elif kind in ("if", "then", "allOf", "anyOf", "oneOf"):
        for inner in error.context or []:
            yield from _explain(inner, document)
    else:
        expected = error.schema.get("description")
        if kind == "enum" and not expected:
            options = ", ".join(str(v) for v in error.validator_value)
            near = difflib.get_close_matches(
                str(error.instance), [str(v) for v in error.validator_value], 1
            )
            hint = f"; did you mean {near[0]}?" if near else ""
            yield f"{_place(path)}: {_shown(error.instance)} is not one of {options}{hint}"
        elif expected:
            yield f"{_place(path)}: {_shown(error.instance)}; expected {expected}"
        else:
            yield f"{_place(path)}: {error.message}"


def _unknown(path: list[Any], key: str, value: Any, known: list[str]) -> str:
    """An unknown key or table, with the nearest known name; a table that belongs in a
    table of names (``[client.B]`` for ``[clients.B]``) is sent there."""
    is_table = isinstance(value, dict)
    what = "table" if is_table else "key"
    where = _table([*path, key]) if is_table else _place(path, key)
    near = difflib.get_close_matches(key, known, 1)
    if near:
        suggestion = _table([*path, near[0]]) if is_table else near[0]
        return f"{where}: unknown {what}; did you mean {suggestion}?"
    if is_table and path:
        named = [
            name
            for name, sub in schema()["properties"].items()
            if isinstance(sub.get("additionalProperties"), dict)
        ]
        table = difflib.get_close_matches(str(path[0]), named, 1)
        if table:
            return f"{where}: unknown {what}; did you mean {_table([table[0], *path[1:], key])}?"
    if not known:
        return f"{where}: unknown {what}"
    return f"{where}: unknown {what}; known: {', '.join(known)}"


def _schema_at(path: list[Any]) -> dict[str, Any]:
    """The part of the schema that describes the value at ``path`` ({} if none does)."""
    node: dict[str, Any] = schema()
    for part in path:
        while "$ref" in node:
            node = schema()["$defs"][node["$ref"].rsplit("/", 1)[-1]]
        properties = node.get("properties", {})
        if part in properties:
            node = properties[part]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return {}
    while "$ref" in node:
        node = schema()["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    return node


def _table(path: list[Any]) -> str:
    return f"[{'.'.join(str(p) for p in path)}]"


def _place(path: list[Any], key: str | None = None) -> str:
    """Where a value is, as the TOML file shows it: ``[server_apps.main] key``,
    ``[ics] roles[1]``; a table alone is ``[overload]``."""
    names = [str(p) for p in path if not isinstance(p, int)]
    if key is not None:
        names.append(key)
    if len(names) < 2 and not any(isinstance(p, int) for p in path):
        return _table(names)
    table, last = names[:-1], names[-1]
    index = "".join(f"[{p}]" for p in path if isinstance(p, int))
    return f"{_table(table)} {last}{index}" if table else f"{last}{index}"


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"the string {value[:60]!r}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return repr(value)
