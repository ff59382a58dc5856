"""What a lab starts: one server instance per profile of the conformance suite, each with
its configuration and policy document, and the IXIT that describes them all. No I/O here.

| profile | what its instance is configured for |
|---|---|
| main | every scenario without a profile of its own |
| overload | a ``max_sessions`` of 3 the suite fills, and alternates to list in the reject |
| shedding | shedding on above a quarter of 8 sessions, at 2 sessions per second |
| tls | AOI-2 over TLS with a certificate of the lab's own CA |
| hello_limit | 3 failed hellos per client and source before ``rate_limited`` |
| restart | the one the suite crashes (SIGKILL) and restarts |
| push_overload | an event-loop lag threshold of 1 microsecond: its push path is always overloaded |

Every instance knows the same test clients (``A`` to ``H``) and server apps (``main``,
``other``, ``limited``), with secrets drawn anew for each lab, and has short timers (a
handshake timeout of 2 s, a keepalive of 5 s) so that the timing scenarios are quick.
"""

from __future__ import annotations

import json
import secrets
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

PROFILES = ("main", "overload", "shedding", "tls", "hello_limit", "restart", "push_overload")
PROVIDER = "conformance.example"
HANDSHAKE_TIMEOUT_S = 2
REQUEST_DEADLINE_S = 1  # request_head_timeout_s and request_body_timeout_s
KEEPALIVE_S = 5  # the smallest keepalive the schema allows
CLIENT_NAMES = ("A", "B", "C", "D", "E", "F", "G", "H")
APPS = {
    "main": {"one": "org.aoi.conformance.one", "two": "org.aoi.conformance.two"},
    "other": {"other": "org.aoi.conformance.other"},
    "limited": {"limited": "org.aoi.conformance.limited"},
}
APP_RATE = {"rate_per_s": 1000, "burst": 2000}
LIMITED_RATE = {"rate_per_s": 1, "burst": 3}  # 429 within the suite's 12 pushes
RATE_LIMIT_PUSHES = 12
OVERLOAD = {"max_sessions": 100, "hello_rate_per_s": 500, "hello_burst": 1000, "retry_after_s": 30}
OVERLOAD_MAX_SESSIONS = 3
OVERLOAD_ALTERNATES = ("wss://b.conformance.example/aoi",)
SHED = {"max_sessions": 8, "shed_high_water": 0.25, "shed_rate_per_s": 2}
SHED_SESSIONS = 6  # what the suite opens to pass the high watermark
FAILED_HELLO_LIMIT = 3  # on the hello_limit instance; the others allow 50
FAILED_HELLO_WINDOW_S = 60
CLIENT_WELCOME_TIMEOUT_S = 2  # the reference client's, for the server that never answers
SERVER_FEATURES = ("batch", "cancel", "collapse", "shedding")


@dataclass(frozen=True, slots=True)
class Secrets:
    """The credentials of the test clients and the keys of the server apps."""

    clients: Mapping[str, str]
    keys: Mapping[str, str]

    @classmethod
    def generate(cls) -> Secrets:
        return cls(
            clients={name: secrets.token_urlsafe(18) for name in CLIENT_NAMES},
            keys={name: "sk_" + secrets.token_urlsafe(24) for name in APPS},
        )


@dataclass(frozen=True, slots=True)
class Instance:
    """One reference server of the lab: the profile it serves and where it listens."""

    profile: str
    host: str
    port: int

    @property
    def server_id(self) -> str:
        return self.profile.replace("_", "-")

    @property
    def tls(self) -> bool:
        return self.profile == "tls"

    @property
    def aoi2(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://{self.host}:{self.port}/aoi"

    @property
    def http(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Files:
    """Where an instance's files are (paths as the configuration names them)."""

    db: str
    policy: str
    tls_cert: str = ""
    tls_key: str = ""


def server_config(instance: Instance, lab: Secrets, files: Files) -> dict[str, Any]:
    """The TOML tables of ``aoi server --config`` for ``instance``."""
    server: dict[str, Any] = {
        "id": instance.server_id,
        "listen": f"{instance.host}:{instance.port}",
        "db": files.db,
        "handshake_timeout_s": HANDSHAKE_TIMEOUT_S,
        "request_head_timeout_s": REQUEST_DEADLINE_S,
        "request_body_timeout_s": REQUEST_DEADLINE_S,
        "keepalive_s": KEEPALIVE_S,
        "max_apps": 8,
        "policy": files.policy,
    }
    if instance.tls:
        server |= {"tls_cert": files.tls_cert, "tls_key": files.tls_key}
    overload: dict[str, Any] = dict(OVERLOAD)
    if instance.profile == "overload":
        overload |= {"max_sessions": OVERLOAD_MAX_SESSIONS, "alternates": OVERLOAD_ALTERNATES}
    if instance.profile == "push_overload":  # the loop lag always passes this
        overload |= {"max_loop_lag_ms": 0.001}
    if instance.profile == "shedding":
        overload |= {"shed": True, **SHED}
    limit = FAILED_HELLO_LIMIT if instance.profile == "hello_limit" else 50
    return {
        "server": server,
        "overload": overload,
        "security": {"failed_hello_limit": limit, "failed_hello_window_s": FAILED_HELLO_WINDOW_S},
        "clients": [
            {"client_id": client_id(name), "credential": credential, "provider": PROVIDER}
            for name, credential in lab.clients.items()
        ],
        "server_apps": [
            {
                "name": name,
                "key": lab.keys[name],
                "app_ids": list(apps.values()),
                **(LIMITED_RATE if name == "limited" else APP_RATE),
            }
            for name, apps in APPS.items()
        ],
    }


def client_id(name: str) -> str:
    return f"conformance-{name.lower()}"


def policy(instance: Instance, now: datetime) -> dict[str, Any]:
    """The policy document the instance serves at /v1/provisioning."""
    return {
        "provider": PROVIDER,
        "policy_version": 1,
        "valid_until": (now + timedelta(days=30)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "servers": [{"id": instance.server_id, "url": instance.aoi2, "priority": 0}],
        "selection": "ordered",
        "reallocation": {
            "on_overload": "next_server",
            "on_unreachable": "next_server",
            "max_servers_tried": 1,
            "backoff": {"initial_ms": 100, "max_ms": 1000, "multiplier": 2.0, "jitter": "full"},
            "return_to_preferred_after_s": 0,
        },
        "fallback": {"notify_app": True},
        "multi_server": {"allowed": False, "max_concurrent": 1},
        "keepalive_s": KEEPALIVE_S,
    }


@dataclass(frozen=True, slots=True)
class ClientCommand:
    """The reference AOI Client as the client under test (``[client]`` of the IXIT)."""

    python: str
    config: str  # its configuration file: the short welcome timeout

    def template(self) -> str:
        return (
            f"{shlex.quote(self.python)} -m aoi client --provisioning-url {{provisioning_url}} "
            "--provisioning-url {provisioning_url_2} --app-port {app_port} "
            "--state-dir {state_dir} --client-id {client_id} --credential {credential} "
            f"--ca-file {{ca_file}} --config {shlex.quote(self.config)}"
        )


def client_config() -> dict[str, Any]:
    return {"client": {"welcome_timeout_s": CLIENT_WELCOME_TIMEOUT_S}}


@dataclass(frozen=True, slots=True)
class Ixit:
    """What the IXIT of a lab says besides its instances."""

    version: str
    ca_file: str
    restart_command: str
    client: ClientCommand | None = None
    instances: Sequence[Instance] = field(default_factory=tuple)
    fleet: Instance | None = None  # the main instance's second node


def ixit(spec: Ixit, lab: Secrets) -> dict[str, Any]:
    """The TOML tables of the IXIT that describes the lab (docs/conformance.md, section 3)."""
    by_profile = {i.profile: i for i in spec.instances}
    roles = ["S", "C"] if spec.client else ["S"]
    features = sorted({*SERVER_FEATURES, *(("multi_server",) if spec.client else ())})
    what = "AOI Server and AOI Client" if spec.client else "AOI Server"
    tables: dict[str, Any] = {
        "ics": {
            "implementation": f"AOI reference {what} (aoi lab)",
            "vendor": "aoi-kit",
            "version": spec.version,
            "roles": roles,
            "features": features,
        },
    }
    if "main" in by_profile:
        main = by_profile["main"]
        tables["target"] = {"aoi2": main.aoi2, "http": main.http, "server_id": main.server_id}
    for instance in spec.instances:
        if instance.profile != "main":
            endpoint = {"aoi2": instance.aoi2, "http": instance.http}
            if instance.tls:
                endpoint["ca_file"] = spec.ca_file
            tables[f"targets.{instance.profile}"] = endpoint
    if spec.fleet is not None:
        tables["targets.fleet"] = {"aoi2": spec.fleet.aoi2, "http": spec.fleet.http}
    tables["timing"] = {
        "handshake_timeout_s": HANDSHAKE_TIMEOUT_S,
        "request_head_timeout_s": REQUEST_DEADLINE_S,
        "request_body_timeout_s": REQUEST_DEADLINE_S,
        "timeout_scale": 1.0,
    }
    for name, credential in lab.clients.items():
        tables[f"clients.{name}"] = {
            "client_id": client_id(name),
            "credential": credential,
            "provider": PROVIDER,
        }
    for name, apps in APPS.items():
        tables[f"server_apps.{name}"] = {"key": lab.keys[name], "apps": apps}
    tables["rate_limit"] = {"pushes": RATE_LIMIT_PUSHES}
    tables["overload"] = {
        "method": "max_sessions",
        "max_sessions": OVERLOAD_MAX_SESSIONS,
        "alternates": OVERLOAD_ALTERNATES,
    }
    tables["shedding"] = {"sessions": SHED_SESSIONS, "rate_per_s": SHED["shed_rate_per_s"]}
    tables["security"] = {"failed_hello_limit": FAILED_HELLO_LIMIT}
    tables["restart"] = {"command": spec.restart_command}
    if spec.client:
        tables["client"] = {
            "command": spec.client.template(),
            "label": "python -m aoi client",
            "welcome_timeout_s": CLIENT_WELCOME_TIMEOUT_S,
        }
    return tables


def render_toml(tables: Mapping[str, Any]) -> str:
    """A TOML document: each entry a table (a dict, its name may be dotted) or an array of
    tables (a list of dicts); a dict inside a table is written inline."""
    out: list[str] = []
    for name, table in tables.items():
        for entry in table if isinstance(table, list) else [table]:
            out.append(f"[[{name}]]" if isinstance(table, list) else f"[{name}]")
            out += [f"{key} = {_value(value)}" for key, value in entry.items()]
            out.append("")
    return "\n".join(out)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")
