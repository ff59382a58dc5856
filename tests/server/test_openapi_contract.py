"""The running server against the OpenAPI document it serves, with schemathesis.

A real ``aoi server`` process serves ``/v1/openapi.json``; schemathesis generates requests
from that document (valid and invalid ones, with and without the right credentials) and
checks every answer against it: no 5xx, documented status codes, content types, headers
and bodies. The server has a registered token and a few queued notifications, and the
generated tokens and ids are mixed with those, so that the success paths (201, 200 reports,
cancel, 409) are exercised as well as the refusals.

schemathesis' pytest integration for a schema that needs a running server
(``schemathesis.pytest.from_fixture``) fails on pytest 9 (schemathesis 4.32 reads and sets
``Function._nodeid``, which pytest 9 no longer has), so hypothesis is driven directly with
``operation.as_strategy``, one test per operation of the document.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import aoi_schemas
import httpx
import pytest
import schemathesis
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.schemas import BaseSchema
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from aoi.net.client import connect

from .harness import APP, KEY, Peer

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
MAX_EXAMPLES = 50  # per operation

POLICY = {
    "provider": "op.example",
    "policy_version": 1,
    "servers": [{"id": "a", "url": "ws://127.0.0.1:1/aoi", "priority": 1}],
    "selection": "priority_weighted",
    "reallocation": {
        "on_overload": "next_server",
        "on_unreachable": "next_server",
        "max_servers_tried": 3,
        "backoff": {"initial_ms": 500, "max_ms": 60000, "multiplier": 2.0, "jitter": "full"},
        "return_to_preferred_after_s": 600,
    },
    "fallback": {"notify_app": True},
    "multi_server": {"allowed": False, "max_concurrent": 1},
    "keepalive_s": 270,
}

CONFIG = f"""
[server]
id = "a"
listen = "127.0.0.1:0"
db = "contract.db"

[[clients]]
client_id = "dev-1"
credential = "secret-1"

[[server_apps]]
name = "chat"
key = "{KEY}"
app_ids = ["{APP}"]
rate_per_s = 100000
burst = 100000

[[server_apps]]
name = "mail"
key = "mail-key-0123456789"
app_ids = ["com.example.mail"]
"""

# Test ids only: the tests read the document that the server serves.
OPERATIONS = [
    (method.upper(), path)
    for path, item in aoi_schemas.openapi()["paths"].items()
    for method in item
    if method in ("get", "put", "post", "delete", "patch", "head", "options")
]


@dataclass(frozen=True)
class Served:
    http: str
    token: str  # registered for APP, whose server app has KEY
    ids: tuple[str, ...]  # notifications pushed to it, queued (the client is offline)


@contextmanager
def aoi_server(folder: Path, *, policy: bool) -> Iterator[dict[str, str]]:
    config = CONFIG
    if policy:
        (folder / "policy.json").write_text(json.dumps(POLICY))
        config = config.replace('db = "contract.db"', 'db = "contract.db"\npolicy = "policy.json"')
    (folder / "server.toml").write_text(config)
    ready = folder / "ready.json"
    with (folder / "server.log").open("wb") as log:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "aoi", "server", "--config", str(folder / "server.toml")),
                *("--ready-file", str(ready), "--log-level", "warning"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 10
        while not ready.exists():
            assert process.poll() is None, "the server exited before it was ready"
            assert time.monotonic() < deadline, "the server was not ready within 10 s"
            time.sleep(0.02)
        yield json.loads(ready.read_text())
    finally:
        process.terminate()
        process.wait(timeout=10)


async def seed(here: dict[str, str]) -> tuple[str, tuple[str, ...]]:
    """Register an app, go offline, push a few notifications: a token and ids that exist."""
    with trio.fail_after(10):
        peer = Peer(await connect(here["aoi2"], "aoi.v1"))
        await peer.send(type="hello", version=1, client_id="dev-1", credential="secret-1")
        assert (await peer.receive())["type"] == "welcome"
        token = (await peer.register())["token"]
        await peer.send(type="bye")
        await peer.closed()
        ids = []
        async with httpx.AsyncClient(headers={"authorization": f"Bearer {KEY}"}) as http:
            for n in range(4):
                body = {"payload": f"seed-{n}", "ttl_s": 3600}
                response = await http.post(f"{here['http']}/v1/push/{token}", json=body)
                assert response.status_code == 201, response.text
                ids.append(response.json()["id"])
    return token, tuple(ids)


def load(http: str) -> BaseSchema:
    config = schemathesis.Config.from_dict(
        {
            "generation": {"deterministic": True},
            "auth": {
                "openapi": {
                    "bearer": {"bearer": KEY},
                    "basic": {"username": "dev-1", "password": "secret-1"},
                }
            },
        }
    )
    return schemathesis.openapi.from_url(http + "/v1/openapi.json", config=config)


def check_operation(schema: BaseSchema, method: str, path: str, served: Served | None) -> None:
    operation = schema[path][method]
    definition = operation.definition.raw
    strategies = [operation.as_strategy(GenerationMode.POSITIVE)]
    negative = "{" in path or definition.get("requestBody") or definition.get("security")
    if negative:  # something to get wrong: parameters, body or credentials
        strategies.append(operation.as_strategy(GenerationMode.NEGATIVE))
    if served is not None and "{token}" in path:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            strategies.append(operation.as_strategy(mode, path_parameters={"token": served.token}))
    if served is not None and "{id}" in path:
        strategies.extend(
            operation.as_strategy(GenerationMode.POSITIVE, path_parameters={"id": i})
            for i in served.ids
        )

    @given(st.one_of(strategies))
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    def call(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=CHECKS)

    call()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BaseSchema, Served]]:
    with aoi_server(tmp_path_factory.mktemp("contract"), policy=True) as here:
        token, ids = trio.run(seed, here)
        yield load(here["http"]), Served(here["http"], token, ids)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_server_answers_as_its_openapi_document_says(
    served: tuple[BaseSchema, Served], method: str, path: str
) -> None:
    schema, seeded = served
    check_operation(schema, method, path, seeded)


def test_server_without_policy_answers_provisioning_as_documented(tmp_path: Path) -> None:
    with aoi_server(tmp_path, policy=False) as here:
        check_operation(load(here["http"]), "GET", "/v1/provisioning", None)
