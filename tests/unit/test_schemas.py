"""The wire contract checks itself: every schema, every example, both validators agree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aoi_schemas
import jsonschema
import jsonschema_rs
import pytest

SCHEMAS = aoi_schemas.schema_files()
WITH_EXAMPLES = [
    p
    for p in SCHEMAS
    if "type"
    in aoi_schemas.schemas()[aoi_schemas.schema_id(p.relative_to(aoi_schemas.ROOT).as_posix())]
]


def _id(path: Path) -> str:
    return path.relative_to(aoi_schemas.ROOT).as_posix()


def _validator(path: Path) -> jsonschema.Draft202012Validator:
    schema = aoi_schemas.schemas()[aoi_schemas.schema_id(_id(path))]
    return jsonschema.Draft202012Validator(
        schema,
        registry=aoi_schemas.registry(),
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )


def test_every_schema_is_found() -> None:
    names = {_id(p) for p in SCHEMAS}
    assert {"defs.json", "policy.json", "aoi2/hello.json", "aoi1/app_register.json"} <= names
    assert len(names) >= 30


def test_only_pure_definition_files_lack_examples() -> None:
    for path in set(SCHEMAS) - set(WITH_EXAMPLES):
        document = aoi_schemas.schemas()[aoi_schemas.schema_id(_id(path))]
        assert set(document) <= {"$schema", "$id", "title", "description", "$defs"}, path


@pytest.mark.parametrize("path", SCHEMAS, ids=_id)
def test_schema_is_valid_2020_12(path: Path) -> None:
    schema = aoi_schemas.schemas()[aoi_schemas.schema_id(_id(path))]
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("path", WITH_EXAMPLES, ids=_id)
def test_examples(path: Path) -> None:
    valid, invalid = aoi_schemas.examples(path)
    assert valid, "at least one valid example"
    assert len(invalid) >= 2, "at least two invalid examples"
    validator = _validator(path)
    for instance in valid:
        errors = [e.message for e in validator.iter_errors(instance)]
        assert errors == [], instance
    for case in invalid:
        assert case["why"]
        assert not validator.is_valid(case["instance"]), case["why"]


@pytest.mark.parametrize("path", WITH_EXAMPLES, ids=_id)
def test_hot_path_validator_agrees(path: Path) -> None:
    """jsonschema-rs (the server's hot path) and jsonschema (the suite) judge alike."""
    schema = aoi_schemas.schemas()[aoi_schemas.schema_id(_id(path))]
    registry = jsonschema_rs.Registry(list(aoi_schemas.schemas().items()))
    fast = jsonschema_rs.validator_for(schema, registry=registry, validate_formats=True)
    slow = _validator(path)
    valid, invalid = aoi_schemas.examples(path)
    for instance in [*valid, *(case["instance"] for case in invalid)]:
        assert fast.is_valid(instance) == slow.is_valid(instance), instance


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        ref = node.get("$ref", "")
        if ref.startswith(("../defs.json#/$defs/", "defs.json#/$defs/")):
            rest = {k: v for k, v in node.items() if k != "$ref"}
            return _inline({**defs[ref.rsplit("/", 1)[1]], **rest}, defs)
        return {k: _inline(v, defs) for k, v in node.items() if k not in ("$schema", "$id")}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


@pytest.mark.parametrize(
    ("component", "relative"),
    [
        (name, f"aoi3/{name}.json")
        for name in (
            "push_request",
            "push_response",
            "push_batch_request",
            "push_batch_response",
            "message_report",
            "health",
            "error_response",
        )
    ]
    + [("policy", "policy.json")],
)
def test_openapi_components_mirror_the_schemas(component: str, relative: str) -> None:
    defs = aoi_schemas.schemas()[aoi_schemas.schema_id("defs.json")]["$defs"]
    schema = aoi_schemas.schemas()[aoi_schemas.schema_id(relative)]
    assert aoi_schemas.openapi()["components"]["schemas"][component] == _inline(schema, defs)


def test_openapi_document_is_3_1() -> None:
    document = aoi_schemas.openapi()
    assert document["openapi"].startswith("3.1")
    assert {"/v1/push/{token}", "/v1/messages/{id}", "/v1/health", "/v1/provisioning"} <= set(
        document["paths"]
    )
