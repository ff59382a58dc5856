"""The distribution ships every package of the tree, not only what an editable install sees."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_package_is_listed_in_pyproject() -> None:
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    roots = {name: ROOT / path for name, path in setuptools["package-dir"].items()}
    found = set()
    for name, path in roots.items():
        for init in path.rglob("__init__.py"):
            relative = init.parent.relative_to(path).parts
            found.add(".".join((name, *relative)))
    assert found == set(setuptools["packages"])
