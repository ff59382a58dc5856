"""The server configuration: the documented file, defaults, flags, and every way to get it
wrong, each reported at its place."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from aoi.core.overload import OverloadSettings
from aoi.server.config import (
    ClientEntry,
    ConfigError,
    ServerAppEntry,
    default_config,
    load_config,
    parse_config,
)

DIGEST = hashlib.sha256(b"s3cret").hexdigest()

# The example of conventions.md, with real digests.
DOCUMENTED = f"""
[server]
id = "a"
listen = "127.0.0.1:0"
public_http_url = ""
db = "aoi-server.db"
handshake_timeout_s = 10
keepalive_s = 270
max_apps = 32
tls_cert = ""
tls_key = ""
policy = ""

[overload]
max_sessions = 10000
hello_rate_per_s = 500
hello_burst = 1000
max_loop_lag_ms = 500
max_store_backlog = 20000
retry_after_s = 30
alternates = []
shed = false
shed_high_water = 1.1
shed_rate_per_s = 10

[security]
failed_hello_limit = 5
failed_hello_window_s = 60

[[clients]]
client_id = "device-1"
credential_sha256 = "{DIGEST}"
provider = "op.example"

[[server_apps]]
name = "chat-backend"
key_sha256 = "{DIGEST.upper()}"
app_ids = ["com.example.chat"]
rate_per_s = 100
burst = 200
"""


def write(tmp_path: Path, text: str, name: str = "server.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str, **overrides: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), overrides)
    return list(caught.value.problems)


def test_the_documented_file_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, DOCUMENTED), {})
    assert config.server.id == "a"
    assert config.server.listen == ("127.0.0.1", 0)
    assert config.server.public_http_url is None
    assert config.server.db == tmp_path / "aoi-server.db"  # relative to the file
    assert config.server.tls_cert is None and not config.server.tls
    assert config.server.policy is None
    assert config.overload == OverloadSettings()
    assert config.security.failed_hello_limit == 5
    assert config.security.failed_hello_window_s == 60.0
    assert config.clients == (ClientEntry("device-1", DIGEST, "op.example"),)
    assert config.server_apps == (
        ServerAppEntry("chat-backend", DIGEST, ("com.example.chat",), 100.0, 200),
    )


def test_an_empty_file_and_no_file_are_the_defaults(tmp_path: Path) -> None:
    assert load_config(None, {}) == default_config()
    config = load_config(write(tmp_path, ""), {})
    assert config.server.db == tmp_path / "aoi-server.db"
    assert parse_config({}) == default_config()
    defaults = default_config()
    assert defaults.server.keepalive_s == 270 and defaults.server.max_apps == 32
    assert defaults.server.handshake_timeout_s == 10.0
    assert defaults.clients == () and defaults.server_apps == ()


def test_plain_secrets_are_hashed_and_not_kept(tmp_path: Path) -> None:
    text = """
[[clients]]
client_id = "device-1"
credential = "s3cret"

[[server_apps]]
name = "chat"
key = "s3cret"
app_ids = ["com.example.chat"]
"""
    config = load_config(write(tmp_path, text), {})
    assert config.clients[0].credential_sha256 == DIGEST
    assert config.server_apps[0].key_sha256 == DIGEST
    assert "s3cret" not in repr(config)


def test_flags_override_the_file(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("x")
    (tmp_path / "key.pem").write_text("x")
    (tmp_path / "policy.json").write_text("{}")
    overrides: dict[str, object] = {
        "listen": "[::1]:8443",
        "id": "b",
        "db": "other.db",
        "tls_cert": tmp_path / "cert.pem",
        "tls_key": str(tmp_path / "key.pem"),
        "max_sessions": "7",
        "policy": str(tmp_path / "policy.json"),
    }
    config = load_config(write(tmp_path, DOCUMENTED), overrides)
    assert config.server.listen == ("::1", 8443)
    assert config.server.id == "b"
    assert config.server.db == Path("other.db")  # a flag is relative to the working directory
    assert config.server.tls and config.server.tls_key == tmp_path / "key.pem"
    assert config.server.policy == tmp_path / "policy.json"
    assert config.overload.max_sessions == 7
    assert load_config(None, {"max_sessions": 0, "listen": None}).overload.max_sessions == 0


def test_paths_in_the_file_are_relative_to_it(tmp_path: Path) -> None:
    (tmp_path / "tls").mkdir()
    (tmp_path / "tls" / "cert.pem").write_text("x")
    (tmp_path / "tls" / "key.pem").write_text("x")
    text = '[server]\ntls_cert = "tls/cert.pem"\ntls_key = "tls/key.pem"\ndb = "/var/aoi.db"\n'
    config = load_config(write(tmp_path, text), {})
    assert config.server.tls_cert == tmp_path / "tls" / "cert.pem"
    assert config.server.db == Path("/var/aoi.db")


def test_every_problem_is_listed_at_its_place(tmp_path: Path) -> None:
    text = f"""
[server]
id = "a b"
listen = "localhost"
lsiten = "x"
keepalive_s = 1
max_apps = 1.5
tls_cert = "missing.pem"

[overload]
max_sessions = -1
hello_rate_per_s = 0
retry_after_s = 7200
alternates = ["wss://ok.example/aoi", "https://b.example/aoi"]
shed = "yes"
shed_rate_per_s = inf

[security]
failed_hello_limit = true

[[clients]]
client_id = "device-1"
credential = "one"

[[clients]]
client_id = "device-1"
credential_sha256 = "abc"

[[clients]]
client_id = "device 3"
credential = "x"
credential_sha256 = "{DIGEST}"

[[clients]]
provider = "op"

[[server_apps]]
name = "chat"
key = "k"
app_ids = []

[[server_apps]]
name = "mail"
key = "k"
app_ids = ["com.example.mail", "-bad"]

[extra]
x = 1
"""
    assert problems(tmp_path, text) == [
        "extra: unknown table",
        "server.id: not a server id (1..64 of A-Z a-z 0-9 . _ -): 'a b'",
        "server.listen: expected HOST:PORT, got 'localhost'",
        "server.lsiten: unknown key",
        "server.keepalive_s: must be 5..3600",
        "server.max_apps: expected an integer, got a float",
        "overload.max_sessions: must be at least 0",
        "overload.hello_rate_per_s: must be greater than 0",
        "overload.retry_after_s: must be greater than 0, at most 3600",
        "overload.alternates[1]: not a ws:// or wss:// URL: 'https://b.example/aoi'",
        "overload.shed: expected true or false, got a string",
        "overload.shed_rate_per_s: must be a finite number",
        "security.failed_hello_limit: expected an integer, got a boolean",
        "clients[1].credential_sha256: not 64 hex digits",
        "clients[1].client_id: 'device-1' is already clients[0]",
        "clients[2].client_id: not a client id (1..128 of A-Z a-z 0-9 . _ : @ -): 'device 3'",
        "clients[2]: give credential or credential_sha256, not both",
        "clients[3].client_id: required",
        "clients[3]: credential or credential_sha256 is required",
        "server_apps[0].app_ids: must not be empty",
        "server_apps[1].app_ids[1]: not an app id: '-bad'",
        "server_apps[1]: same key as server_apps[0]",
        f"server.tls_cert: no such file: {tmp_path / 'missing.pem'}",
        "server.tls_key: required with server.tls_cert",
    ]


def test_secrets_are_never_repeated_in_messages(tmp_path: Path) -> None:
    text = '[[clients]]\nclient_id = "d"\ncredential = ""\n\n[[server_apps]]\nname = "n"\n'
    text += 'key = 12345\napp_ids = ["a"]\n'
    assert problems(tmp_path, text) == [
        "clients[0].credential: must be 1..1024 characters",
        "server_apps[0].key: expected a string, got an integer",
    ]


def test_flag_problems_name_the_flag(tmp_path: Path) -> None:
    assert problems(
        tmp_path, DOCUMENTED, listen="nowhere:99999", max_sessions="many", tls_key="k.pem"
    ) == [
        "--listen: port must be 0..65535, got 99999",
        "--max-sessions: expected an integer, got a string",
        "--tls-key: no such file: k.pem",
        "server.tls_cert: required with --tls-key",
    ]
    assert problems(tmp_path, "", colour="blue") == ["--colour: not a configuration flag"]


def test_wrong_shapes_of_tables(tmp_path: Path) -> None:
    text = 'server = 1\nclients = ["device-1"]\n[security]\nfailed_hello_window_s = "1m"\n'
    assert problems(tmp_path, text) == [
        "server: expected a table, got an integer",
        "security.failed_hello_window_s: expected a number, got a string",
        "clients: expected an array of tables ([[clients]])",
    ]


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "absent.toml", {})
    assert caught.value.problems == (f"{tmp_path / 'absent.toml'}: no such file",)
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, "[server\n"), {})
    (only,) = caught.value.problems
    assert only.startswith(f"{tmp_path / 'server.toml'}: ")
    assert "line 1" in only
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b"# \xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(bad, {})


def test_the_error_lists_everything_in_its_message() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({"server": {"max_apps": 0, "keepalive_s": 4}})
    assert str(caught.value) == (
        "invalid configuration: server.max_apps: must be at least 1; "
        "server.keepalive_s: must be 5..3600"
    )


def test_public_http_url(tmp_path: Path) -> None:
    config = parse_config({"server": {"public_http_url": "https://push.example/"}})
    assert config.server.public_http_url == "https://push.example"
    with pytest.raises(ConfigError) as caught:
        parse_config({"server": {"public_http_url": "push.example"}})
    assert caught.value.problems == (
        "server.public_http_url: not an http:// or https:// URL: 'push.example'",
    )
