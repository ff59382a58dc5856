"""The AOI Service Provider's policy document, checked and typed.

The schema (``schemas/policy.json``) checks the shape; :func:`parse_policy` adds what a schema
cannot say (unique server ids, routes naming known servers, coherent backoff bounds) and
reports every problem at once in :class:`PolicyError`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class PolicyError(ValueError):
    """The document is not a valid policy; ``problems`` lists why, one line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid policy: " + "; ".join(problems))
        self.problems = tuple(problems)


class Action(StrEnum):
    NEXT_SERVER = "next_server"
    FAIL_TO_APP = "fail_to_app"


@dataclass(frozen=True, slots=True)
class ServerEntry:
    id: str
    url: str
    priority: int
    weight: int = 1


@dataclass(frozen=True, slots=True)
class Backoff:
    initial_ms: int
    max_ms: int
    multiplier: float
    jitter: str = "full"

    def cap_s(self, attempt: int) -> float:
        """The un-jittered delay before retry number ``attempt`` (0-based), in seconds."""
        exponent = min(attempt, 64)  # beyond this every cap is max_ms anyway
        return min(float(self.max_ms), self.initial_ms * self.multiplier**exponent) / 1000.0

    def delay_s(self, attempt: int, uniform: float) -> float:
        """The delay before retry ``attempt``; ``uniform`` is a random draw in [0, 1)."""
        cap = self.cap_s(attempt)
        return cap * uniform if self.jitter == "full" else cap


@dataclass(frozen=True, slots=True)
class Reallocation:
    on_overload: Action
    on_unreachable: Action
    max_servers_tried: int
    backoff: Backoff
    return_to_preferred_after_s: float


@dataclass(frozen=True, slots=True)
class Policy:
    provider: str
    policy_version: int
    servers: tuple[ServerEntry, ...]
    selection: str
    reallocation: Reallocation
    app_routes: Mapping[str, tuple[str, ...]]
    notify_app: bool = True
    multi_server: bool = True
    max_concurrent: int = 4
    keepalive_s: int = 270
    valid_until: float | None = None  # seconds since the epoch

    def server(self, server_id: str) -> ServerEntry:
        return next(s for s in self.servers if s.id == server_id)

    def candidates(self, app_id: str) -> tuple[ServerEntry, ...]:
        """The servers an app may be served by: its route, else every server."""
        route = self.app_routes.get(app_id)
        if route is None:
            return self.servers
        return tuple(s for s in self.servers if s.id in route)

    def expired(self, now_epoch: float) -> bool:
        return self.valid_until is not None and now_epoch >= self.valid_until


SchemaCheck = Callable[[Any], list[str]]


def parse_policy(document: Any, schema_problems: SchemaCheck) -> Policy:
    """A :class:`Policy` from a decoded document, or :class:`PolicyError` listing every fault.

    ``schema_problems`` checks the document against ``schemas/policy.json`` and returns one
    message per violation.
    """
    problems = schema_problems(document)
    if problems:
        raise PolicyError(problems)
    servers = tuple(
        ServerEntry(s["id"], s["url"], s["priority"], s.get("weight", 1))
        for s in document["servers"]
    )
    ids = [s.id for s in servers]
    problems += [
        f"servers: duplicate id {i!r}" for i in sorted({i for i in ids if ids.count(i) > 1})
    ]
    routes: dict[str, tuple[str, ...]] = {}
    for n, route in enumerate(document.get("app_routes", [])):
        unknown = [i for i in route["servers"] if i not in ids]
        if unknown:
            problems.append(f"app_routes/{n}: unknown servers {unknown}")
        routes[route["app_id"]] = tuple(route["servers"])
    r = document["reallocation"]
    b = r["backoff"]
    if b["max_ms"] < b["initial_ms"]:
        problems.append("reallocation/backoff: max_ms is below initial_ms")
    valid_until = None
    if "valid_until" in document:
        try:
            valid_until = datetime.fromisoformat(document["valid_until"]).timestamp()
        except ValueError:
            problems.append("valid_until: not an RFC 3339 date-time")
    if problems:
        raise PolicyError(problems)
    multi = document.get("multi_server", {})
    return Policy(
        provider=document["provider"],
        policy_version=document["policy_version"],
        servers=servers,
        selection=document.get("selection", "priority_weighted"),
        reallocation=Reallocation(
            on_overload=Action(r["on_overload"]),
            on_unreachable=Action(r["on_unreachable"]),
            max_servers_tried=r["max_servers_tried"],
            backoff=Backoff(
                b["initial_ms"], b["max_ms"], float(b["multiplier"]), b.get("jitter", "full")
            ),
            return_to_preferred_after_s=float(r.get("return_to_preferred_after_s", 0)),
        ),
        app_routes=routes,
        notify_app=document.get("fallback", {}).get("notify_app", True),
        multi_server=multi.get("allowed", True),
        max_concurrent=multi.get("max_concurrent", 4),
        keepalive_s=document.get("keepalive_s", 270),
        valid_until=valid_until,
    )


_contract_check: SchemaCheck | None = None


def contract_check(document: Any) -> list[str]:
    """Problems of ``document`` against ``schemas/policy.json``, one line each."""
    global _contract_check
    if _contract_check is None:
        import aoi_schemas
        import jsonschema_rs

        documents = aoi_schemas.schemas()
        validator = jsonschema_rs.validator_for(
            documents[aoi_schemas.schema_id("policy.json")],
            registry=jsonschema_rs.Registry(list(documents.items())),
            validate_formats=True,
        )

        def check(doc: Any) -> list[str]:
            return [
                f"{'/'.join(map(str, e.instance_path)) or '(root)'}: {e.message}"
                for e in validator.iter_errors(doc)
            ]

        _contract_check = check
    return _contract_check(document)


def load_policy(document: Any) -> Policy:
    """:func:`parse_policy` against the shipped schema."""
    return parse_policy(document, contract_check)
