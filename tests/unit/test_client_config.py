"""The AOI Client's configuration: TOML, flags, and the loopback-only AOI-1 listener."""

from __future__ import annotations

from pathlib import Path

import pytest

from aoi.client.config import (
    DEFAULT_APP_PORT,
    ConfigError,
    ProviderConfig,
    load,
    loopback_listen,
)

TOML = """
[client]
client_id = "device-1"
credential = "secret"
app_listen = "127.0.0.1:0"
state_dir = "/var/lib/aoi"
ca_file = "/etc/aoi/ca.pem"

[[providers]]
name = "op.example"
provisioning_url = "https://op.example/v1/provisioning"

[[providers]]
name = "lab.example"
policy_file = "lab.json"
client_id = "lab-device"
credential = "lab-secret"
"""


def test_toml(tmp_path: Path) -> None:
    path = tmp_path / "client.toml"
    path.write_text(TOML)
    config = load(["--config", str(path)])
    assert (config.client_id, config.credential) == ("device-1", "secret")
    assert (config.app_host, config.app_port) == ("127.0.0.1", 0)
    assert config.state_dir == Path("/var/lib/aoi") and config.ca_file == Path("/etc/aoi/ca.pem")
    op, lab = config.providers
    assert op == ProviderConfig("op.example", "https://op.example/v1/provisioning")
    assert lab.policy_file == Path("lab.json") and lab.slug == "lab.example"
    assert config.identity(op) == ("device-1", "secret")
    assert config.identity(lab) == ("lab-device", "lab-secret")


def test_flags_override_the_file_and_keep_provider_order(tmp_path: Path) -> None:
    path = tmp_path / "client.toml"
    path.write_text(TOML)
    config = load([
        "--config", str(path), "--client-id", "other", "--app-port", "7123",
        "--policy-file", "p.json", "--provisioning-url", "https://x.example/v1/provisioning",
        "--seed", "7", "--ready-file", "ready.json", "--log-level", "debug",
    ])  # fmt: skip
    assert config.client_id == "other" and config.credential == "secret"
    assert config.app_port == 7123 and config.seed == 7 and config.log_level == "debug"
    first, second = config.providers
    assert first.policy_file == Path("p.json") and first.name is None
    assert second.provisioning_url == "https://x.example/v1/provisioning"
    assert first.slug.startswith("source-") and first.slug != second.slug


def test_defaults() -> None:
    config = load(["--client-id", "d", "--credential", "c", "--policy-file", "p.json"])
    assert (config.app_host, config.app_port) == ("127.0.0.1", DEFAULT_APP_PORT)
    assert config.state_dir is None and config.seed is None


@pytest.mark.parametrize(
    "argv",
    [
        ["--credential", "c", "--policy-file", "p.json"],
        ["--client-id", "d", "--credential", "c"],
    ],
)
def test_incomplete(argv: list[str]) -> None:
    with pytest.raises(ConfigError):
        load(argv)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:7700", ("127.0.0.1", 7700)), ("[::1]:0", ("::1", 0)),
     ("localhost:9", ("127.0.0.1", 9)), ("7701", ("127.0.0.1", 7701))],
)  # fmt: skip
def test_loopback_listen(text: str, expected: tuple[str, int]) -> None:
    assert loopback_listen(text) == expected


@pytest.mark.parametrize("text", ["0.0.0.0:7700", "192.168.1.2:7700", "[::]:7700", "host:1"])
def test_only_loopback(text: str) -> None:
    with pytest.raises(ConfigError):
        loopback_listen(text)


def test_provider_needs_exactly_one_source(tmp_path: Path) -> None:
    path = tmp_path / "client.toml"
    path.write_text('[client]\nclient_id = "d"\ncredential = "c"\n[[providers]]\nname = "x"\n')
    with pytest.raises(ConfigError, match="exactly one"):
        load(["--config", str(path)])


@pytest.mark.parametrize(("value", "ok"), [("5000", True), ("0", False), ("1.5", False)])
def test_seen_ids_per_app(tmp_path: Path, value: str, ok: bool) -> None:
    path = tmp_path / "client.toml"
    path.write_text(TOML.replace('ca_file = "', f'seen_ids_per_app = {value}\nca_file = "'))
    if ok:
        assert load(["--config", str(path)]).seen_ids_per_app == int(value)
    else:
        with pytest.raises(ConfigError, match="seen_ids_per_app: expected an integer"):
            load(["--config", str(path)])
