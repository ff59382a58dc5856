"""The IXIT/ICS file: the documented example loads, profiles fall back to the target."""

from __future__ import annotations

from pathlib import Path

import pytest
from conformance.embedded import embedded_ixit
from conformance.ixit import IxitError, load_ixit, parse_ixit, render_ixit

EXAMPLE = Path(__file__).resolve().parents[2] / "conformance" / "ixit.example.toml"


def test_the_example_loads() -> None:
    ixit = load_ixit(EXAMPLE)
    assert ixit.ics.features == {"collapse", "cancel"}
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


def test_no_target_is_an_error() -> None:
    with pytest.raises(IxitError):
        parse_ixit({}, Path(".")).endpoint("main")


def test_render_and_load_round_trip(tmp_path: Path) -> None:
    original = load_ixit(EXAMPLE)
    path = tmp_path / "ixit.toml"
    path.write_text(render_ixit(original), encoding="utf-8")
    again = load_ixit(path)
    assert again == original


def test_the_embedded_ixit_has_what_the_features_need() -> None:
    ixit = embedded_ixit()
    assert set("ABCDE") <= set(ixit.clients)
    for alias in ("one", "two", "other", "limited"):
        ixit.app_id(alias)
    assert ixit.ics.features == {"shedding", "collapse", "cancel", "multi_server"}
    assert ixit.ics.roles == {"S", "C"}  # the reference server and the reference client
