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

DEFAULT_APP_PORT = 7700


class ConfigError(ValueError):
    """The configuration cannot be used; the message says why."""


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
    seen_ids_per_app: int = 10_000
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
        raise ConfigError(f"app_listen {text!r} is not HOST:PORT with an IP address") from None
    if not loopback:
        raise ConfigError(f"app_listen {text!r}: AOI-1 listens on loopback addresses only")
    if not 0 <= port <= 65535:
        raise ConfigError(f"app_listen {text!r}: port out of range")
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
    p = argparse.ArgumentParser(prog="aoi client", description="Run the reference AOI Client.")
    p.add_argument("--config", type=Path, help="TOML configuration file")
    p.add_argument(
        "--provisioning-url",
        action=_ProviderAction,
        dest="providers",
        metavar="URL",
        help="an AOI Service Provider's provisioning URL (repeatable)",
    )
    p.add_argument(
        "--policy-file",
        action=_ProviderAction,
        dest="providers",
        metavar="PATH",
        help="a policy document file, instead of provisioning",
    )
    p.add_argument("--client-id")
    p.add_argument("--credential")
    p.add_argument("--app-port", type=int, help="AOI-1 port on 127.0.0.1 (0: a free port)")
    p.add_argument("--state-dir", type=Path)
    p.add_argument("--ca-file", type=Path, help="extra trusted CA (PEM) for wss and https")
    p.add_argument(
        "--ready-file", type=Path, help='write {"app_url": ...} here once the AOI-1 listener is up'
    )
    p.add_argument("--seed", type=int, help="seed of the random choices (tests)")
    p.add_argument("--log-level", default=None, choices=["debug", "info", "warning", "error"])
    return p


def _providers_from_toml(entries: Any) -> list[ProviderConfig]:
    if not isinstance(entries, list):
        raise ConfigError("[[providers]] must be an array of tables")
    providers = []
    for n, entry in enumerate(entries):
        url, file = entry.get("provisioning_url"), entry.get("policy_file")
        if bool(url) == bool(file):
            raise ConfigError(f"providers[{n}]: give exactly one of provisioning_url, policy_file")
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
            document = tomllib.loads(args.config.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read {args.config}: {exc}") from None
    return from_document(document, args)


def from_document(document: dict[str, Any], args: argparse.Namespace | None = None) -> ClientConfig:
    section = document.get("client", {})
    providers = _providers_from_toml(document.get("providers", []))
    flags = args or parser().parse_args([])
    if flags.providers:
        providers = list(flags.providers)
    client_id = flags.client_id or section.get("client_id")
    credential = flags.credential or section.get("credential")
    if not client_id or not credential:
        raise ConfigError("client_id and credential are required ([client] or flags)")
    if not providers:
        raise ConfigError("no provider: give --provisioning-url, --policy-file or [[providers]]")
    host, port = loopback_listen(section.get("app_listen", f"127.0.0.1:{DEFAULT_APP_PORT}"))
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
    timers: dict[str, Any] = {
        key: float(section[key])
        for key in ("welcome_timeout_s", "request_timeout_s", "provisioning_refresh_s")
        if key in section
    }
    return replace(config, **timers) if timers else config
