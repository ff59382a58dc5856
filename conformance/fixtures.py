"""Fixtures of the suite: the run, and one :class:`~conformance.world.World` per scenario."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from conformance.runtime import RUNTIME_NAME, WORLD, Runtime
from conformance.verdicts import ScenarioVerdicts
from conformance.wirelog import WireLog
from conformance.world import World

CLIENT = re.compile(r'client "([^"]+)"')


def _mentioned(item: pytest.Item) -> set[str]:
    """The client names the scenario's steps use (so that fillers never take them)."""
    from pytest_bdd.scenario import scenario_wrapper_template_registry

    function = getattr(item, "function", None)
    template = None if function is None else scenario_wrapper_template_registry.get(function)
    if template is None:
        return set()
    return {m for step in template.steps for m in CLIENT.findall(step.name)}


@pytest.fixture(scope="session")
def aoi_runtime(pytestconfig: pytest.Config) -> Runtime:
    runtime = pytestconfig.pluginmanager.get_plugin(RUNTIME_NAME)
    assert isinstance(runtime, Runtime)
    return runtime


@pytest.fixture(autouse=True)
def world(request: pytest.FixtureRequest, aoi_runtime: Runtime) -> Iterator[World]:
    item = request.node
    verdicts = ScenarioVerdicts(aoi_runtime.registry, frozenset(aoi_runtime.requirements_of(item)))
    current = World(aoi_runtime, verdicts, WireLog(aoi_runtime.secrets()))
    current.mentioned = _mentioned(item)
    item.stash[WORLD] = current
    yield current
    current.close()
