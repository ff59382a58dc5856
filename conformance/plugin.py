"""pytest plugin of the AOI conformance suite (entry point ``aoi_conformance``)."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("aoi", "AOI conformance")
    group.addoption("--target", help="AOI-2 URL of the AOI Server under test (ws:// or wss://)")
    group.addoption("--target-client", help="command that starts the AOI Client under test")
    group.addoption("--ixit", help="IXIT/ICS file (TOML) describing the target")
    group.addoption(
        "--requirement", action="append", default=[], help="run only scenarios proving this ID"
    )
    group.addoption("--timeout-scale", type=float, default=1.0, help="multiply every timeout")
