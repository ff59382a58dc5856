"""The two distributions of the repository ship every package of their trees, not only what
an editable install sees: aoi-kit (the reference) and aoi-conformance (the suite alone)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROJECTS = {"aoi-kit": ROOT, "aoi-conformance": ROOT / "packaging" / "aoi-conformance"}


def _project(name: str) -> dict[str, object]:
    return tomllib.loads((PROJECTS[name] / "pyproject.toml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", sorted(PROJECTS))
def test_every_package_and_data_folder_is_listed(name: str) -> None:
    setuptools = _project(name)["tool"]["setuptools"]  # type: ignore[index]
    base = PROJECTS[name]
    roots = {
        package: (base / path).resolve() for package, path in setuptools["package-dir"].items()
    }
    found = set()
    for package, path in roots.items():
        for folder in (path, *(p for p in path.rglob("*") if p.is_dir())):
            relative = folder.relative_to(path).parts
            if "__pycache__" in relative or not any(f.is_file() for f in folder.iterdir()):
                continue
            found.add(".".join((package, *relative)))
    assert found == set(setuptools["packages"])


def test_the_suite_needs_nothing_of_the_reference_and_has_its_version() -> None:
    suite, kit = _project("aoi-conformance")["project"], _project("aoi-kit")["project"]
    assert suite["version"] == kit["version"]  # type: ignore[index]
    assert not [d for d in suite["dependencies"] if d.startswith("aoi")]  # type: ignore[index]
    assert suite["entry-points"]["pytest11"] == {"aoi_conformance": "conformance.plugin"}  # type: ignore[index]
    for path in (ROOT / "conformance").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "import aoi" not in text and "from aoi" not in text, path
