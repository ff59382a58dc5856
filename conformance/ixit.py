"""The IXIT (what the suite cannot guess about a target) and the ICS (what it claims).

Both live in one TOML file; ``conformance/ixit.example.toml`` is the documented example,
``docs/conformance.md`` explains every table and ``conformance/ixit.schema.json`` lists
every table and key the suite knows (a file is checked against it before it is read:
:mod:`conformance.ixit_check`). Profiles name the instances the suite
talks to: ``main`` is the target itself; ``overload``, ``shedding``, ``tls``,
``hello_limit`` and ``restart`` default to it but may name dedicated instances configured
for those scenarios.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from conformance import ixit_check

_SCHEMA = ixit_check.schema()["properties"]
PROFILES = ("main", *_SCHEMA["targets"]["properties"])
# Profiles that need an instance of their own: they never fall back to the target.
DEDICATED = frozenset({"push_overload", "fleet"})
OPTIONAL_FEATURES = tuple(_SCHEMA["ics"]["properties"]["features"]["items"]["enum"])


class Secret(str):
    """A credential or key: its repr (tracebacks, Allure step parameters) never shows it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'***'"


class IxitError(ValueError):
    """The IXIT file is missing something the suite needs, or is malformed: each problem
    one line (``problems``)."""

    def __init__(self, problems: str | list[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        if len(self.problems) == 1:
            super().__init__(self.problems[0])
        else:
            lines = "\n  ".join(self.problems)
            super().__init__(f"{len(self.problems)} problems:\n  {lines}")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where one instance listens: its AOI-2 URL, its HTTP base URL, the CA to trust."""

    aoi2: str
    http: str
    ca_file: Path | None = None


@dataclass(frozen=True, slots=True)
class Client:
    name: str
    client_id: str
    credential: str = field(repr=False)
    provider: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "credential", Secret(self.credential))


@dataclass(frozen=True, slots=True)
class ServerApp:
    name: str
    key: str = field(repr=False)
    apps: dict[str, str] = field(default_factory=dict)  # alias in the features -> app_id

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", Secret(self.key))


@dataclass(frozen=True, slots=True)
class Overload:
    method: str = "max_sessions"  # or "command"
    max_sessions: int = 0
    on: str = ""
    off: str = ""
    alternates: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Ics:
    implementation: str = ""
    vendor: str = ""
    version: str = ""
    roles: frozenset[str] = frozenset({"S"})
    features: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Ixit:
    ics: Ics
    endpoints: dict[str, Endpoint]
    clients: dict[str, Client]
    server_apps: dict[str, ServerApp]
    overload: Overload = field(default_factory=Overload)
    handshake_timeout_s: float = 10.0
    request_head_timeout_s: float = 10.0  # docs/protocol.md 3.9, defaults as there
    request_body_timeout_s: float = 30.0
    timeout_scale: float = 1.0
    shed_sessions: int = 0
    shed_rate_per_s: float = 0.0
    failed_hello_limit: int = 5
    failed_hello_source_limit: int | None = None  # failed hellos per source address
    rate_limit_pushes: int = 50
    restart_command: str = ""
    server_id: str | None = None

    @property
    def source_limit(self) -> int:
        """Failed hellos per source address before ``rate_limited``: the per-client limit
        unless the IXIT declares another."""
        if self.failed_hello_source_limit is None:
            return self.failed_hello_limit
        return self.failed_hello_source_limit

    def endpoint(self, profile: str) -> Endpoint:
        if profile not in PROFILES:
            raise IxitError(f"unknown profile {profile!r}; profiles are {', '.join(PROFILES)}")
        found = self.endpoints.get(profile)
        if found is None and profile in DEDICATED:
            raise IxitError(f"the IXIT gives no [targets.{profile}] instance")
        found = found or self.endpoints.get("main")
        if found is None:
            raise IxitError("no target: give --target or [target] aoi2 in the IXIT")
        return found

    def client(self, name: str) -> Client:
        try:
            return self.clients[name]
        except KeyError:
            raise IxitError(f"the IXIT names no client {name!r} ([clients.{name}])") from None

    def server_app(self, name: str) -> ServerApp:
        try:
            return self.server_apps[name]
        except KeyError:
            raise IxitError(
                f"the IXIT names no server app {name!r} ([server_apps.{name}])"
            ) from None

    def app_id(self, alias: str) -> str:
        for app in self.server_apps.values():
            if alias in app.apps:
                return app.apps[alias]
        raise IxitError(f"no server app of the IXIT serves the app {alias!r}")

    def server_app_of(self, alias: str) -> ServerApp:
        for app in self.server_apps.values():
            if alias in app.apps:
                return app
        raise IxitError(f"no server app of the IXIT serves the app {alias!r}")

    def secrets(self) -> list[str]:
        """Every credential and key, for the wire log to redact."""
        found = [c.credential for c in self.clients.values()]
        found += [a.key for a in self.server_apps.values()]
        return sorted({s for s in found if s}, key=len, reverse=True)

    def with_target(self, aoi2: str, http: str | None) -> Ixit:
        """This IXIT with ``--target`` as its main AOI-2 URL (and ``--target-http`` as its
        AOI-3 base URL; by default the same listener's)."""
        main = self.endpoints.get("main")
        ca = main.ca_file if main else None
        endpoint = Endpoint(aoi2, http or _http_of(aoi2), ca)
        return replace(self, endpoints={**self.endpoints, "main": endpoint})


def _http_of(aoi2: str) -> str:
    """The HTTP base URL of a server whose AOI-2 URL is ``aoi2`` (same listener)."""
    scheme, rest = aoi2.split("://", 1)
    host = rest.split("/", 1)[0]
    return ("https" if scheme == "wss" else "http") + "://" + host


def _endpoint(table: dict[str, Any], base: Path) -> Endpoint:
    aoi2 = table["aoi2"]
    ca = table.get("ca_file")
    return Endpoint(
        aoi2=aoi2,
        http=table.get("http") or _http_of(aoi2),
        ca_file=(base / ca).resolve() if ca else None,
    )


def parse_ixit(document: dict[str, Any], base: Path) -> Ixit:
    """An :class:`Ixit` from a parsed TOML document; relative paths resolve against ``base``.
    A document that breaks ``ixit.schema.json`` raises :class:`IxitError` with every problem."""
    found = ixit_check.problems(document)
    if found:
        raise IxitError(found)
    ics_t = document.get("ics", {})
    features = frozenset(ics_t.get("features", []))
    ics = Ics(
        implementation=str(ics_t.get("implementation", "")),
        vendor=str(ics_t.get("vendor", "")),
        version=str(ics_t.get("version", "")),
        roles=frozenset(ics_t.get("roles", ["S"])),
        features=features,
    )
    endpoints: dict[str, Endpoint] = {}
    if "target" in document and document["target"].get("aoi2"):
        endpoints["main"] = _endpoint(document["target"], base)
    for profile, table in document.get("targets", {}).items():
        endpoints[profile] = _endpoint(table, base)
    clients = {
        name: Client(name, t["client_id"], t["credential"], t.get("provider"))
        for name, t in document.get("clients", {}).items()
    }
    apps = {
        name: ServerApp(name, t["key"], dict(t.get("apps", {})))
        for name, t in document.get("server_apps", {}).items()
    }
    o = document.get("overload", {})
    overload = Overload(
        method=o.get("method", "max_sessions"),
        max_sessions=int(o.get("max_sessions", 0)),
        on=o.get("on", ""),
        off=o.get("off", ""),
        alternates=tuple(o.get("alternates", [])),
    )
    timing = document.get("timing", {})
    shedding = document.get("shedding", {})
    security = document.get("security", {})
    rate = document.get("rate_limit", {})
    return Ixit(
        ics=ics,
        endpoints=endpoints,
        clients=clients,
        server_apps=apps,
        overload=overload,
        handshake_timeout_s=float(timing.get("handshake_timeout_s", 10.0)),
        request_head_timeout_s=float(timing.get("request_head_timeout_s", 10.0)),
        request_body_timeout_s=float(timing.get("request_body_timeout_s", 30.0)),
        timeout_scale=float(timing.get("timeout_scale", 1.0)),
        shed_sessions=int(shedding.get("sessions", 0)),
        shed_rate_per_s=float(shedding.get("rate_per_s", 0.0)),
        failed_hello_limit=int(security.get("failed_hello_limit", 5)),
        failed_hello_source_limit=security.get("failed_hello_source_limit"),
        rate_limit_pushes=int(rate.get("pushes", 50)),
        restart_command=str(document.get("restart", {}).get("command", "")),
        server_id=document.get("target", {}).get("server_id"),
    )


def load_document(path: Path) -> dict[str, Any]:
    """The TOML document of an IXIT file (not yet checked)."""
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise IxitError(f"cannot read it: {e.strerror or e}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise IxitError(f"not valid TOML: {e}") from None


def load_ixit(path: Path) -> Ixit:
    return parse_ixit(load_document(path), path.resolve().parent)


def render_ixit(ixit: Ixit) -> str:
    """The TOML text of ``ixit`` (what :func:`load_ixit` reads back)."""
    q = json.dumps
    out = ["[ics]"]
    out += [f"implementation = {q(ixit.ics.implementation)}", f"vendor = {q(ixit.ics.vendor)}"]
    out += [f"version = {q(ixit.ics.version)}", f"roles = {q(sorted(ixit.ics.roles))}"]
    out += [f"features = {q(sorted(ixit.ics.features))}", ""]
    for profile, endpoint in sorted(ixit.endpoints.items()):
        out.append("[target]" if profile == "main" else f"[targets.{profile}]")
        out += [f"aoi2 = {q(endpoint.aoi2)}", f"http = {q(endpoint.http)}"]
        if endpoint.ca_file:
            out.append(f"ca_file = {q(str(endpoint.ca_file))}")
        out.append("")
    if ixit.server_id and "main" in ixit.endpoints:
        out.insert(out.index("[target]") + 1, f"server_id = {q(ixit.server_id)}")
    out += ["[timing]", f"handshake_timeout_s = {ixit.handshake_timeout_s}"]
    out.append(f"request_head_timeout_s = {ixit.request_head_timeout_s}")
    out.append(f"request_body_timeout_s = {ixit.request_body_timeout_s}")
    out += [f"timeout_scale = {ixit.timeout_scale}", ""]
    for client in ixit.clients.values():
        out += [f"[clients.{client.name}]", f"client_id = {q(client.client_id)}"]
        out.append(f"credential = {q(client.credential)}")
        if client.provider:
            out.append(f"provider = {q(client.provider)}")
        out.append("")
    for app in ixit.server_apps.values():
        apps = ", ".join(f"{alias} = {q(app_id)}" for alias, app_id in app.apps.items())
        out += [f"[server_apps.{app.name}]", f"key = {q(app.key)}", f"apps = {{ {apps} }}", ""]
    o = ixit.overload
    out += ["[overload]", f"method = {q(o.method)}", f"max_sessions = {o.max_sessions}"]
    out += [f"on = {q(o.on)}", f"off = {q(o.off)}", f"alternates = {q(list(o.alternates))}", ""]
    out += [
        "[shedding]",
        f"sessions = {ixit.shed_sessions}",
        f"rate_per_s = {ixit.shed_rate_per_s}",
    ]
    out += ["", "[security]", f"failed_hello_limit = {ixit.failed_hello_limit}"]
    if ixit.failed_hello_source_limit is not None:
        out.append(f"failed_hello_source_limit = {ixit.failed_hello_source_limit}")
    out.append("")
    out += ["[rate_limit]", f"pushes = {ixit.rate_limit_pushes}", ""]
    out += ["[restart]", f"command = {q(ixit.restart_command)}", ""]
    return "\n".join(out)
