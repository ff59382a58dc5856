"""The AOI Client's configuration: a TOML file, then command-line flags (flags win).

```toml
[client]
client_id = "device-1"
credential = "secret"
app_listen = "127.0.0.1:7700"   # AOI-1, loopback only; port 0 = a free port
state_dir = "aoi-client-state"
ca_file = ""                     # extra CA trusted for wss:// and https://

[[providers]]                    # one per AOI Service Provider; the first is the default
name = "op.example"
provisioning_url = "https://op.example/v1/provisioning"   # or policy_file = "policy.json"
client_id = "device-1"           # optional, per provider
credential = "secret"
```
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import re
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aoi.cli import LEVELS, CommandError, add_log_level, checked_url, command_parser

DEFAULT_APP_PORT = 7700


CLIENT_KEYS = (
    "client_id", "credential", "app_listen", "state_dir", "ca_file", "log_level",
    "welcome_timeout_s", "request_timeout_s", "provisioning_refresh_s", "seen_ids_per_app",
)  # fmt: skip
PROVIDER_KEYS = ("name", "provisioning_url", "policy_file", "client_id", "credential")
TIMERS = ("welcome_timeout_s", "request_timeout_s", "provisioning_refresh_s")
TABLES = ("client", "providers")


class ConfigError(ValueError):
    """The configuration cannot be used; ``problems`` says why, each at its place
    (``client.app_listen``, ``providers[1].policy_file``, ``--provisioning-url``)."""

    def __init__(self, problems: str | list[str]) -> None:
        self.problems = (problems,) if isinstance(problems, str) else tuple(problems)
        super().__init__("invalid configuration: " + "; ".join(self.problems))


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """Where one AOI Service Provider's policy comes from, and the identity used with it."""

    name: str | None = None
    provisioning_url: str | None = None
    policy_file: Path | None = None
    client_id: str | None = None
    credential: str | None = None

    @property
    def source(self) -> str:
        return self.provisioning_url or str(self.policy_file)

    @property
    def slug(self) -> str:
        """A file-name-safe key for this provider's cached policy."""
        if self.name and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.name):
            return self.name
        return "source-" + hashlib.sha256(self.source.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class ClientConfig:
    client_id: str
    credential: str
    providers: tuple[ProviderConfig, ...]
    app_host: str = "127.0.0.1"
    app_port: int | None = DEFAULT_APP_PORT  # None: no AOI-1 listener (tests attach apps)
    state_dir: Path | None = None
    ca_file: Path | None = None
    ready_file: Path | None = None
    seed: int | None = None
    log_level: str = "info"
    welcome_timeout_s: float = 10.0  # no welcome/reject in time: the server is unreachable
    request_timeout_s: float = 10.0  # no answer to register/unregister in time
    provisioning_refresh_s: float = 3600.0
    seen_ids_per_app: int = 100_000  # acked ids kept per app until they expire (state.SeenIds)
    extra: dict[str, Any] = field(default_factory=dict)

    def identity(self, provider: ProviderConfig) -> tuple[str, str]:
        """(client_id, credential) to use with ``provider``."""
        return provider.client_id or self.client_id, provider.credential or self.credential


def loopback_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` of the AOI-1 listener; refuses any address that is not loopback."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "127.0.0.1", text
    host = host.strip("[]") or "127.0.0.1"
    if host == "localhost":
        host = "127.0.0.1"
    try:
        port = int(port_text)
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        raise ConfigError(
            f"client.app_listen: {text!r} is not HOST:PORT of an IP address"
        ) from None
    if not loopback:
        raise ConfigError(f"client.app_listen: {text!r}: AOI-1 listens on loopback addresses only")
    if not 0 <= port <= 65535:
        raise ConfigError(f"client.app_listen: {text!r}: port out of range")
    return host, port


class _ProviderAction(argparse.Action):
    """``--provisioning-url`` and ``--policy-file`` append to one ordered list."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        providers = list(getattr(namespace, "providers", None) or [])
        if option_string == "--provisioning-url":
            providers.append(ProviderConfig(provisioning_url=str(values)))
        else:
            providers.append(ProviderConfig(policy_file=Path(values)))
        namespace.providers = providers


def parser() -> argparse.ArgumentParser:
    p = command_parser(
        "aoi client",
        "Run the reference AOI Client: fetch each provider's policy (AOI-P), hold the AOI-2\n"
        "sessions it calls for and serve apps on loopback (AOI-1), until SIGTERM or SIGINT.\n"
        "Flags override the TOML file. Exit status: 0 after a signal, 2 for an invalid\n"
        "configuration, 1 when it cannot start (no policy to start with, AOI-1 port in use).",
    )
    p.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")
    p.add_argument(
        "--provisioning-url",
        action=_ProviderAction,
        dest="providers",
        metavar="URL",
        help="an AOI Service Provider's provisioning URL (repeatable; replaces [[providers]])",
    )
    p.add_argument(
        "--policy-file",
        action=_ProviderAction,
        dest="providers",
        metavar="PATH",
        help="a policy document file, instead of provisioning (repeatable)",
    )
    p.add_argument("--client-id", metavar="ID", help="the client's identity (client.client_id)")
    p.add_argument(
        "--credential",
        metavar="SECRET",
        help="the client's credential (client.credential); others can read command lines",
    )
    p.add_argument(
        "--app-port", type=int, metavar="PORT", help="AOI-1 port on loopback (0: a free port)"
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        metavar="DIR",
        help="where the client keeps its state between runs (client.state_dir)",
    )
    p.add_argument(
        "--ca-file",
        type=Path,
        metavar="PEM",
        help="CA certificates to trust for wss and https, besides the system's",
    )
    p.add_argument(
        "--ready-file",
        type=Path,
        metavar="PATH",
        help='write {"app_url": ...} here once the AOI-1 listener is up',
    )
    p.add_argument("--seed", type=int, metavar="N", help="seed of the random choices (tests)")
    add_log_level(p, default=None)
    return p


def _table(document: dict[str, Any], name: str, problems: list[str]) -> dict[str, Any]:
    table = document.get(name, {})
    if not isinstance(table, dict):
        problems.append(f"{name}: expected a table")
        return {}
    return table


def _check_entry(
    entry: dict[str, Any], place: str, keys: Sequence[str], problems: list[str]
) -> None:
    """Unknown keys, and values of the wrong type, of one table."""
    for key, value in entry.items():
        if key not in keys:
            problems.append(f"{place}.{key}: unknown key")
        elif key == "seen_ids_per_app":
            if isinstance(value, bool) or not isinstance(value, int) or not value > 0:
                problems.append(f"{place}.{key}: expected an integer greater than 0")
        elif key in TIMERS:
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                problems.append(f"{place}.{key}: expected a number greater than 0")
        elif not isinstance(value, str):
            problems.append(f"{place}.{key}: expected a string")
        elif key == "log_level" and value not in LEVELS:
            problems.append(f"{place}.{key}: expected one of {', '.join(LEVELS)}")
        elif key == "provisioning_url":
            _check_url(value, f"{place}.{key}", problems)


def _check_url(url: str, place: str, problems: list[str]) -> None:
    try:
        checked_url(url)
    except CommandError as exc:
        problems.append(f"{place}: {exc}")


def _providers_from_toml(entries: Any, problems: list[str]) -> list[ProviderConfig]:
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        problems.append("providers: expected an array of tables ([[providers]])")
        return []
    providers = []
    for n, entry in enumerate(entries):
        _check_entry(entry, f"providers[{n}]", PROVIDER_KEYS, problems)
        url, file = entry.get("provisioning_url"), entry.get("policy_file")
        if bool(url) == bool(file):
            problems.append(f"providers[{n}]: give exactly one of provisioning_url, policy_file")
            continue
        providers.append(
            ProviderConfig(
                name=entry.get("name") or None,
                provisioning_url=url or None,
                policy_file=Path(file) if file else None,
                client_id=entry.get("client_id") or None,
                credential=entry.get("credential") or None,
            )
        )
    return providers


def load(argv: Sequence[str]) -> ClientConfig:
    """The configuration from ``argv`` (and the TOML file it names)."""
    args = parser().parse_args(list(argv))
    document: dict[str, Any] = {}
    if args.config is not None:
        try:
            document = tomllib.loads(args.config.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{args.config}: no such file") from None
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{args.config}: {getattr(exc, 'strerror', None) or exc}") from None
    return from_document(document, args)


def from_document(document: dict[str, Any], args: argparse.Namespace | None = None) -> ClientConfig:
    """The configuration from a decoded TOML document and the flags; every problem at once."""
    problems = [f"{name}: unknown table" for name in document if name not in TABLES]
    section = _table(document, "client", problems)
    _check_entry(section, "client", CLIENT_KEYS, problems)
    providers = _providers_from_toml(document.get("providers", []), problems)
    flags = args or parser().parse_args([])
    if flags.providers:
        providers = list(flags.providers)
        for provider in providers:
            if provider.provisioning_url is not None:
                _check_url(provider.provisioning_url, "--provisioning-url", problems)
    client_id = flags.client_id or section.get("client_id")
    credential = flags.credential or section.get("credential")
    if not client_id:
        problems.append("client.client_id: required (or --client-id)")
    if not credential:
        problems.append("client.credential: required (or --credential)")
    if not providers and not problems:
        problems.append("no provider: give --provisioning-url, --policy-file or [[providers]]")
    host, port = "127.0.0.1", DEFAULT_APP_PORT
    listen = section.get("app_listen", f"{host}:{port}")
    try:
        if isinstance(listen, str):  # else reported above
            host, port = loopback_listen(listen)
    except ConfigError as exc:
        problems.extend(exc.problems)
    if problems:
        raise ConfigError(problems)
    if flags.app_port is not None:
        port = flags.app_port
    state_dir = flags.state_dir or (
        Path(section["state_dir"]) if section.get("state_dir") else None
    )
    ca_file = flags.ca_file or (Path(section["ca_file"]) if section.get("ca_file") else None)
    config = ClientConfig(
        client_id=str(client_id),
        credential=str(credential),
        providers=tuple(providers),
        app_host=host,
        app_port=port,
        state_dir=state_dir,
        ca_file=ca_file,
        ready_file=flags.ready_file,
        seed=flags.seed,
        log_level=flags.log_level or section.get("log_level", "info"),
    )
    tuned: dict[str, Any] = {key: float(section[key]) for key in TIMERS if key in section}
    if "seen_ids_per_app" in section:
        tuned["seen_ids_per_app"] = section["seen_ids_per_app"]
    return replace(config, **tuned) if tuned else config
