"""Step definitions of the suite, one module per subject; each is a pytest plugin.

A step that judges the target ends with the requirement it proves, ``[AOI-XXX-NNN]``,
and passes that id to ``world.check``; steps without an id only prepare (a failure
there is a precondition: the scenario is blocked, not judged).
"""

from __future__ import annotations

from typing import Any

from pytest_bdd import parsers


def _quoted(text: str) -> str:
    return text


_quoted.pattern = r'[^"]*'  # type: ignore[attr-defined]


def _requirement(text: str) -> str:
    return text


_requirement.pattern = r"AOI-[A-Z]+-\d{3}"  # type: ignore[attr-defined]


def _integer(text: str) -> int:
    return int(text)


_integer.pattern = r"-?\d+"  # type: ignore[attr-defined]


def _number(text: str) -> float:
    return float(text)


_number.pattern = r"-?\d+(?:\.\d+)?"  # type: ignore[attr-defined]

TYPES: dict[str, Any] = {"q": _quoted, "req": _requirement, "n": _integer, "num": _number}


def text(pattern: str) -> parsers.parse:
    """A step pattern: ``{x:q}`` a quoted string's content, ``{r:req}`` a requirement id,
    ``{n:n}`` an integer, ``{x:num}`` a number."""
    return parsers.parse(pattern, extra_types=TYPES)
