"""The AOI Server's configuration: a TOML file, overridden by command-line flags.

The file's shape is fixed by conventions.md ("Reference server: command line and
configuration"). Each table's keys and how to read them are in one table per section
below (:data:`SERVER`, :data:`OVERLOAD`, ...); the defaults are those of the dataclasses.
An invalid configuration raises :class:`ConfigError` listing every problem at once, each
at its place (``server.listen``, ``clients[2].credential_sha256``, ``--max-sessions``;
array indices count from 0), so an operator fixes a file in one pass. Values of secrets are
never repeated in a message.

Plain ``credential`` and ``key`` values are hashed while loading; only SHA-256 digests are
kept. Relative paths in the file are relative to the file's directory (so a configuration
works from any working directory); paths given as flags are relative to the working
directory, as a shell user expects.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from aoi.core.overload import MAX_RETRY_AFTER_S, OverloadSettings

from .config_values import (
    Invalid,
    Parser,
    array_of,
    boolean,
    integer,
    kind,
    listen,
    matching,
    number,
    optional,
    path,
    redis_url,
    secret,
    sha256,
)
from .credentials import digest


class ConfigError(ValueError):
    """The configuration is not valid; ``problems`` lists why, one place each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid configuration: " + "; ".join(problems))
        self.problems = tuple(problems)


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """``[server]``."""

    id: str = "a"
    listen: tuple[str, int] = ("127.0.0.1", 0)
    public_http_url: str | None = None  # None: the listener's own URL
    db: Path = Path("aoi-server.db")
    store: str | None = None  # redis://HOST:PORT/DB: a fleet's shared store instead of db
    workers: int = 1  # processes sharing the listener (more than one needs store)
    reuse_port: bool = False  # listen with SO_REUSEPORT, beside other servers on the port
    handshake_timeout_s: float = 10.0
    keepalive_s: int = 270
    max_apps: int = 32
    max_connections: int = 0  # 0: as many as the open-file limit allows, less a reserve
    request_head_timeout_s: float = 10.0
    request_body_timeout_s: float = 30.0
    tls_cert: Path | None = None
    tls_key: Path | None = None
    policy: Path | None = None

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None


@dataclass(frozen=True, slots=True)
class SecuritySettings:
    """``[security]``."""

    failed_hello_limit: int = 5
    failed_hello_window_s: float = 60.0


@dataclass(frozen=True, slots=True)
class ClientEntry:
    """One ``[[clients]]`` entry."""

    client_id: str
    credential_sha256: str
    provider: str | None = None


@dataclass(frozen=True, slots=True)
class ServerAppEntry:
    """One ``[[server_apps]]`` entry."""

    name: str
    key_sha256: str
    app_ids: tuple[str, ...]
    rate_per_s: float = 100.0
    burst: int = 200


@dataclass(frozen=True, slots=True)
class ServerConfig:
    server: ServerSettings = field(default_factory=ServerSettings)
    overload: OverloadSettings = field(default_factory=OverloadSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    clients: tuple[ClientEntry, ...] = ()
    server_apps: tuple[ServerAppEntry, ...] = ()


def default_config() -> ServerConfig:
    """Every default, no clients, no server apps."""
    return ServerConfig()


_SERVER_ID = matching(r"[A-Za-z0-9._-]{1,64}", "a server id (1..64 of A-Z a-z 0-9 . _ -)")
_CLIENT_ID = matching(r"[A-Za-z0-9._:@-]{1,128}", "a client id (1..128 of A-Z a-z 0-9 . _ : @ -)")
_APP_ID = matching(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", "an app id")
_HTTP_URL = matching(r"https?://\S{1,2040}", "an http:// or https:// URL")
_AOI2_URL = matching(r"wss?://\S{1,2040}", "a ws:// or wss:// URL")
_NAME = matching(r"\S.{0,127}", "a name (1..128 characters)")
_PROVIDER = matching(r"[^\s]{1,253}", "a provider name")

# Each section: TOML key -> how to read its value. A key missing from the file takes the
# dataclass default; a key not listed here is a typo and reported.
SERVER: Mapping[str, Parser] = {
    "id": _SERVER_ID,
    "listen": listen,
    "public_http_url": optional(lambda v: _HTTP_URL(v).rstrip("/")),
    "db": path,
    "store": optional(redis_url),
    "workers": integer(1, 256),
    "reuse_port": boolean,
    "handshake_timeout_s": number(),
    "keepalive_s": integer(5, 3600),
    "max_apps": integer(1),
    "max_connections": integer(0),
    "request_head_timeout_s": number(),
    "request_body_timeout_s": number(),
    "tls_cert": optional(path),
    "tls_key": optional(path),
    "policy": optional(path),
}
OVERLOAD: Mapping[str, Parser] = {
    "max_sessions": integer(0),  # 0 refuses every hello: a way to test overload
    "hello_rate_per_s": number(),
    "hello_burst": integer(1),
    "max_loop_lag_ms": number(),
    "max_store_backlog": integer(0),
    "retry_after_s": number(at_most=MAX_RETRY_AFTER_S),
    "alternates": array_of(_AOI2_URL, max_items=16),  # reject.servers holds at most 16
    "shed": boolean,
    "shed_high_water": number(),
    "shed_rate_per_s": number(),
}
SECURITY: Mapping[str, Parser] = {
    "failed_hello_limit": integer(1),
    "failed_hello_window_s": number(),
}
CLIENT: Mapping[str, Parser] = {
    "client_id": _CLIENT_ID,
    "credential_sha256": sha256,
    "credential": secret(1024),  # hashed below, then dropped
    "provider": _PROVIDER,
}
SERVER_APP: Mapping[str, Parser] = {
    "name": _NAME,
    "key_sha256": sha256,
    "key": secret(4096),  # hashed below, then dropped
    "app_ids": array_of(_APP_ID, non_empty=True),
    "rate_per_s": number(),
    "burst": integer(1),
}
_SERVER_DEFAULTS = ServerSettings()
PATHS = ("db", "tls_cert", "tls_key", "policy")  # in [server]; relative to the file
MUST_EXIST = ("tls_cert", "tls_key", "policy")
TLS_PAIR = ("tls_cert", "tls_key")  # one without the other is a mistake

# Command-line flag (as a key of ``overrides``) -> the value it replaces.
OVERRIDES: Mapping[str, tuple[str, str]] = {
    "listen": ("server", "listen"),
    "id": ("server", "id"),
    "db": ("server", "db"),
    "store": ("server", "store"),
    "workers": ("server", "workers"),
    "reuse_port": ("server", "reuse_port"),
    "tls_cert": ("server", "tls_cert"),
    "tls_key": ("server", "tls_key"),
    "policy": ("server", "policy"),
    "max_sessions": ("overload", "max_sessions"),
}


def load_config(
    path: Path | None, overrides: Mapping[str, object] = MappingProxyType({})
) -> ServerConfig:
    """The configuration in the TOML file at ``path`` (defaults if ``None``), with
    ``overrides`` (flag name -> value; ``None`` values are flags not given) applied."""
    document: dict[str, Any] = {}
    if path is not None:
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError([f"{path}: no such file"]) from None
        except UnicodeDecodeError:
            raise ConfigError([f"{path}: not UTF-8"]) from None
        except OSError as e:
            raise ConfigError([f"{path}: {e.strerror}"]) from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError([f"{path}: {e}"]) from None
    return parse_config(document, overrides, base=None if path is None else path.parent)


def parse_config(
    document: Mapping[str, Any],
    overrides: Mapping[str, object] = MappingProxyType({}),
    base: Path | None = None,
) -> ServerConfig:
    """A :class:`ServerConfig` from a decoded TOML document; relative paths in it are
    joined to ``base`` when given."""
    problems: list[str] = []
    places: dict[tuple[str, str], str] = {}  # values that came from flags name those
    tables: dict[str, Any] = {
        name: dict(value) if isinstance(value, dict) else value for name, value in document.items()
    }
    for flag, value in overrides.items():
        if flag not in OVERRIDES:
            problems.append(f"--{flag.replace('_', '-')}: not a configuration flag")
            continue
        if value is None:
            continue
        section, key = OVERRIDES[flag]
        if isinstance(value, str) and key in ("max_sessions", "workers"):
            value = int(value) if value.strip().isdigit() else value
        if isinstance(value, Path):
            value = str(value)
        table = tables.setdefault(section, {})
        if isinstance(table, dict):
            table[key] = value
            places[section, key] = f"--{flag.replace('_', '-')}"

    for name in tables:
        if name not in ("server", "overload", "security", "clients", "server_apps"):
            problems.append(f"{name}: unknown table")

    def place_in(section: str) -> Callable[[str], str]:
        return lambda key: places.get((section, key), f"{section}.{key}")

    server = _read(tables, "server", SERVER, place_in("server"), problems)
    overload = _read(tables, "overload", OVERLOAD, place_in("overload"), problems)
    security = _read(tables, "security", SECURITY, place_in("security"), problems)
    clients = _accounts(tables, "clients", CLIENT, ("client_id", "credential"), problems)
    apps = _accounts(tables, "server_apps", SERVER_APP, ("name", "key"), problems)

    for key in PATHS:
        value = server.get(key, getattr(_SERVER_DEFAULTS, key))
        if value is not None and base is not None and ("server", key) not in places:
            server[key] = base / value  # the default db too: beside the file
    for key in MUST_EXIST:
        value = server.get(key)
        if value is not None and not value.is_file():
            problems.append(f"{place_in('server')(key)}: no such file: {value}")
    raw_server = tables.get("server", {}) if isinstance(tables.get("server"), dict) else {}
    given = [key for key in TLS_PAIR if server.get(key) is not None]
    invalid = [key for key in TLS_PAIR if key in raw_server and key not in server]
    if len(given) == 1 and not invalid:
        (missing,) = set(TLS_PAIR) - set(given)
        problems.append(f"server.{missing}: required with {place_in('server')(given[0])}")

    if server.get("workers", 1) > 1 and server.get("store") is None:
        problems.append(
            f"{place_in('server')('workers')}: more than one worker needs a Redis store "
            "(server.store or --store): the workers share their state there"
        )
    if problems:
        raise ConfigError(problems)
    return ServerConfig(
        server=ServerSettings(**server),
        overload=OverloadSettings(**overload),
        security=SecuritySettings(**security),
        clients=tuple(ClientEntry(**values) for values in clients),
        server_apps=tuple(ServerAppEntry(**values) for values in apps),
    )


def _read(
    tables: Mapping[str, Any],
    name: str,
    parsers: Mapping[str, Parser],
    place: Callable[[str], str],
    problems: list[str],
) -> dict[str, Any]:
    """The values of the table ``name`` that are present and valid, by key."""
    table = tables.get(name, {})
    if not isinstance(table, dict):
        problems.append(f"{name}: expected a table, got {kind(table)}")
        return {}
    return _read_entry(table, parsers, place, problems)


def _read_entry(
    table: Mapping[str, Any],
    parsers: Mapping[str, Parser],
    place: Callable[[str], str],
    problems: list[str],
) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in table.items():
        parse = parsers.get(key)
        if parse is None:
            problems.append(f"{place(key)}: unknown key")
            continue
        try:
            values[key] = parse(value)
        except Invalid as e:
            problems.append(f"{place(key)}{e.at}: {e.detail}")
    return values


def _place_in(prefix: str) -> Callable[[str], str]:
    return lambda key: f"{prefix}.{key}"


def _accounts(
    tables: Mapping[str, Any],
    name: str,
    parsers: Mapping[str, Parser],
    keys: tuple[str, str],
    problems: list[str],
) -> list[dict[str, Any]]:
    """The entries of the array of tables ``[[name]]``, each with its plain secret replaced
    by its digest. Checks that every entry has what it requires and exactly one form of its
    secret, that ids are unique, and (for server apps, which a key must name) keys too."""
    array = tables.get(name, [])
    if not isinstance(array, list) or not all(isinstance(e, dict) for e in array):
        problems.append(f"{name}: expected an array of tables ([[{name}]])")
        return []
    id_key, secret_key = keys
    digest_key = f"{secret_key}_sha256"
    entry_type = ClientEntry if name == "clients" else ServerAppEntry
    required = [
        f.name
        for f in dataclasses.fields(entry_type)
        if f.default is dataclasses.MISSING and f.name != digest_key
    ]
    first_with_id: dict[str, int] = {}
    first_with_digest: dict[str, int] = {}
    entries = []
    for n, table in enumerate(array):
        here = f"{name}[{n}]"
        values = _read_entry(table, parsers, _place_in(here), problems)
        problems.extend(f"{here}.{key}: required" for key in required if key not in table)
        plain = values.pop(secret_key, None)
        if secret_key in table and digest_key in table:
            problems.append(f"{here}: give {secret_key} or {digest_key}, not both")
        elif secret_key not in table and digest_key not in table:
            problems.append(f"{here}: {secret_key} or {digest_key} is required")
        elif plain is not None:
            values[digest_key] = digest(plain)
        identity = values.get(id_key)
        if identity in first_with_id:
            problems.append(
                f"{here}.{id_key}: {identity!r} is already {name}[{first_with_id[identity]}]"
            )
        elif identity is not None:
            first_with_id[identity] = n
        key_digest = values.get(digest_key)
        if entry_type is ServerAppEntry and key_digest in first_with_digest:
            problems.append(f"{here}: same {secret_key} as {name}[{first_with_digest[key_digest]}]")
        elif key_digest is not None:
            first_with_digest[key_digest] = n
        entries.append(values)
    return entries
