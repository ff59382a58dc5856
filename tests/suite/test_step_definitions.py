"""Every step of every feature has exactly one step definition."""

from __future__ import annotations

import ast
import importlib
import inspect
import textwrap
from typing import Any

import pytest
from conformance.plugin import STEP_MODULES
from conformance.registry import FEATURES_DIR
from gherkin.parser import Parser
from pytest_bdd.steps import step_function_context_registry

KINDS = {"Context": "given", "Action": "when", "Outcome": "then"}


def _contexts() -> list[Any]:
    for module in STEP_MODULES:
        importlib.import_module(module)
    return [
        c
        for c in list(step_function_context_registry.values())
        if c.step_func.__module__.startswith("conformance.steps")
    ]


def _steps() -> list[tuple[str, str, str]]:
    """(feature file, kind, text) of every step, with outline rows rendered."""
    found: list[tuple[str, str, str]] = []
    for path in sorted(FEATURES_DIR.glob("*.feature")):
        feature = Parser().parse(path.read_text(encoding="utf-8"))["feature"]
        for child in feature["children"]:
            block = child.get("background") or child.get("scenario")
            kind = "given"
            rows: list[dict[str, str]] = [{}]
            if child.get("scenario") and child["scenario"].get("examples"):
                rows = []
                for examples in child["scenario"]["examples"]:
                    header = [c["value"] for c in examples["tableHeader"]["cells"]]
                    for row in examples["tableBody"]:
                        rows.append(
                            dict(zip(header, (c["value"] for c in row["cells"]), strict=True))
                        )
            for step in block["steps"]:
                kind = KINDS.get(step["keywordType"], kind)
                for row in rows:
                    text = step["text"]
                    for key, value in row.items():
                        text = text.replace(f"<{key}>", value)
                    found.append((path.name, kind, text))
    return found


CONTEXTS = _contexts()


@pytest.mark.parametrize(("feature", "kind", "text"), _steps())
def test_step_has_one_definition(feature: str, kind: str, text: str) -> None:
    matching = [c for c in CONTEXTS if c.type in (None, kind) and c.parser.is_matching(text)]
    assert matching, f"{feature}: no step definition for {kind} {text!r}"
    assert len(matching) == 1, (
        f"{feature}: {kind} {text!r} matches {[c.step_func.__name__ for c in matching]}"
    )


def _judging_steps() -> list[Any]:
    return [c for c in CONTEXTS if "req" in inspect.signature(c.step_func).parameters]


@pytest.mark.parametrize("context", _judging_steps(), ids=lambda c: c.step_func.__name__)
def test_a_step_that_names_a_requirement_passes_it_on(context: Any) -> None:
    """A judging step (``[{req}]``) must hand its requirement to a check; the run-time
    guard (a tagged requirement nobody checked is an ERROR) catches the rest."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(context.step_func)))
    passed = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and any(isinstance(a, ast.Name) and a.id == "req" for a in node.args)
    ]
    assert passed, f"{context.step_func.__name__} never passes req to a check"
    assert "{req:req}]" in context.parser.name


@pytest.mark.parametrize(
    "context",
    [c for c in CONTEXTS if c not in _judging_steps()],
    ids=lambda c: c.step_func.__name__,
)
def test_a_step_that_names_no_requirement_judges_nothing(context: Any) -> None:
    """Preparing steps may only state preconditions: a verdict must be visible in the
    Gherkin, as the ``[AOI-XXX-NNN]`` of the step that makes it."""
    source = inspect.getsource(context.step_func)
    assert ".check(" not in source, f"{context.step_func.__name__} checks without naming an ID"
