"""The IXIT/ICS file: the documented example loads, profiles fall back to the target,
and every mistake is found at once, one line each, at its place."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest
from conformance.ixit import IxitError, load_ixit, parse_ixit, render_ixit
from conformance.ixit_check import problems

EXAMPLE = Path(__file__).resolve().parents[2] / "conformance" / "ixit.example.toml"


def test_the_example_loads() -> None:
    ixit = load_ixit(EXAMPLE)
    assert ixit.ics.features == {"collapse", "cancel", "batch"}
    assert ixit.endpoint("main").aoi2 == "wss://aoi.example.net/aoi"
    assert ixit.endpoint("overload").aoi2 == "wss://aoi-small.example.net/aoi"
    assert ixit.endpoint("tls") == ixit.endpoint("main")  # not given: the target itself
    assert ixit.endpoint("main").ca_file == EXAMPLE.parent / "ca.pem"
    assert set("ABCDE") <= set(ixit.clients)
    assert ixit.app_id("limited") == "org.aoi.conformance.limited"
    assert ixit.server_app_of("two").name == "main"
    assert ixit.overload.max_sessions == 4
    assert "change-me-a" in ixit.secrets()


def test_target_option_overrides_the_file() -> None:
    ixit = load_ixit(EXAMPLE).with_target("ws://127.0.0.1:9000/aoi", None)
    assert ixit.endpoint("main").aoi2 == "ws://127.0.0.1:9000/aoi"
    assert ixit.endpoint("main").http == "http://127.0.0.1:9000"
    assert ixit.endpoint("main").ca_file == EXAMPLE.parent / "ca.pem"
    both = load_ixit(EXAMPLE).with_target("wss://x.example/aoi", "https://y.example")
    assert both.endpoint("main").http == "https://y.example"


def test_http_defaults_to_the_host_of_aoi2() -> None:
    ixit = parse_ixit({"target": {"aoi2": "wss://h.example:8443/aoi"}}, Path("."))
    assert ixit.endpoint("main").http == "https://h.example:8443"


@pytest.mark.parametrize(
    "document",
    [
        {"ics": {"features": ["teleport"]}},
        {"targets": {"nowhere": {"aoi2": "ws://x/aoi"}}},
        {"overload": {"method": "prayer"}},
    ],
    ids=["unknown feature", "unknown profile", "unknown overload method"],
)
def test_mistakes_are_reported(document: dict[str, object]) -> None:
    with pytest.raises(IxitError):
        parse_ixit(document, Path("."))


def test_every_mistake_is_one_line_at_its_place_with_the_nearest_name() -> None:
    document = _example()
    document["overload"]["max_sesions"] = document["overload"].pop("max_sessions")
    document["client"] = {"B": {"client_id": "b", "credential": "x"}}
    document["clinets"] = {}
    document["targets"]["overlaod"] = document["targets"].pop("overload")
    del document["server_apps"]["main"]["key"]
    document["timing"]["handshake_timeout_s"] = "ten"
    document["ics"]["features"] = ["colapse"]
    document["target"]["aoi2"] = "http://aoi.example.net"
    assert problems(document) == [
        "[clinets]: unknown table; did you mean [clients]?",
        "[client.B]: unknown table; did you mean [clients.B]?",
        "[ics] features[0]: the string 'colapse' is not one of multi_server, shedding, "
        "collapse, cancel, batch; did you mean collapse?",
        "[overload] max_sesions: unknown key; did you mean max_sessions?",
        "[server_apps.main] key: missing",
        "[target] aoi2: the string 'http://aoi.example.net'; expected a ws:// or wss:// URL "
        "with its path, such as wss://aoi.example.net/aoi",
        "[targets.overlaod]: unknown table; did you mean [targets.overload]?",
        "[timing] handshake_timeout_s: expected a number, got the string 'ten'",
    ]
    with pytest.raises(IxitError, match=r"^8 problems:"):
        parse_ixit(document, Path("."))


def test_a_server_run_needs_the_clients_and_server_apps_the_features_name() -> None:
    document = _example()
    del document["clients"]["E"]
    del document["server_apps"]["limited"]
    assert problems(document) == []  # a client-only run needs neither
    assert problems(document, server=True) == [
        "[clients.E]: missing",
        "[server_apps.limited]: missing",
    ]


def test_a_command_overload_needs_both_commands() -> None:
    document = _example()
    document["overload"]["method"] = "command"
    assert problems(document) == ["[overload] on: missing", "[overload] off: missing"]


def test_an_optional_key_of_the_schema_is_read() -> None:
    document = _example()
    document["security"]["failed_hello_source_limit"] = 20
    assert parse_ixit(document, Path(".")).source_limit == 20
    del document["security"]["failed_hello_source_limit"]  # the per-client limit, then
    document["security"]["failed_hello_limit"] = 7
    assert parse_ixit(document, Path(".")).source_limit == 7
    document["security"]["failed_hello_source_limit"] = 20
    document["security"]["failed_hello_source_limit"] = "many"
    assert problems(document) == [
        "[security] failed_hello_source_limit: expected an integer, got the string 'many'"
    ]


def _example() -> dict[str, Any]:
    return copy.deepcopy(tomllib.loads(EXAMPLE.read_text(encoding="utf-8")))


def test_no_target_is_an_error() -> None:
    with pytest.raises(IxitError):
        parse_ixit({}, Path(".")).endpoint("main")


def test_render_and_load_round_trip(tmp_path: Path) -> None:
    original = load_ixit(EXAMPLE)
    path = tmp_path / "ixit.toml"
    path.write_text(render_ixit(original), encoding="utf-8")
    again = load_ixit(path)
    assert again == original
