"""Ports for started servers and clients: outside the kernel's own range, never twice."""

from __future__ import annotations

import itertools
import socket

import conformance.ports as ports
import pytest
from conformance.ports import _below_ephemeral, free_port


def test_ports_are_free_below_the_ephemeral_range_and_never_handed_out_twice() -> None:
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
    assert all(10_000 <= p < _below_ephemeral() for p in ports)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[-1]))  # still free: nothing was left bound


def test_a_port_someone_listens_on_is_not_picked(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        picks = itertools.chain([busy], itertools.count(busy + 1))
        monkeypatch.setattr(ports.random, "randint", lambda *_: next(picks))
        assert free_port() > busy
