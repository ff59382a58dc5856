"""Fixtures shared by the test packages."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from bench.redis_server import RedisServer, redis_server


@pytest.fixture(scope="session")
def shared_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the whole run (``appendfsync always``). Tests that share it use
    keys of their own; a test that kills or restarts Redis takes :func:`own_redis`."""
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of this test's alone, to kill, stop and start again."""
    with redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server
