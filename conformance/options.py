"""The suite's command line, checked before anything runs or moves: each mistake is one
line of one usage error, with the nearest known name where there is one."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from conformance.registry import FEATURES_DIR, OTHER_TAGS, Registry

MARK_WORDS = {"and", "or", "not"}


def selection(config: pytest.Config) -> tuple[set[str], set[str]]:
    """The requirements and features (file stems) the command line selects."""
    features = {Path(f).name.removesuffix(".feature") for f in config.option.features or []}
    return set(config.getoption("requirement") or []), features


def check_options(config: pytest.Config, registry: Registry) -> None:
    requirements, features = selection(config)
    known = set(registry.requirements)
    lines = [
        _unknown("--requirement", requirements, known),
        _unknown("--feature", features, {p.stem for p in FEATURES_DIR.glob("*.feature")}),
        _unknown("-m", _mark_names(config.option.markexpr), known | set(OTHER_TAGS)),
        _url("--target", config.getoption("--target"), ("ws", "wss"), "wss://aoi.example.net/aoi"),
        _url("--target-http", config.getoption("--target-http"), ("http", "https"),
             "https://aoi.example.net"),
    ]  # fmt: skip
    scale = config.getoption("--timeout-scale")
    if scale is not None and not scale > 0:
        lines.append(f"--timeout-scale: {scale} is not a positive number")
    if any(lines):
        raise pytest.UsageError("\n".join(line for line in lines if line))


def check_reports_dir(reports: Path) -> None:
    try:
        reports.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise pytest.UsageError(f"--reports-dir {reports}: {e.strerror}") from None


def _mark_names(expression: str | None) -> set[str]:
    return set(re.findall(r"[\w.-]+", expression or "")) - MARK_WORDS


def _url(option: str, value: str | None, schemes: tuple[str, ...], example: str) -> str:
    if value is None:
        return ""
    try:
        parts = urlsplit(value)
        ok = parts.scheme in schemes and bool(parts.hostname) and parts.port != 0
    except ValueError:
        ok = False
    return "" if ok else (
        f"{option}: {value!r} is not a {' or '.join(s + '://' for s in schemes)} URL "
        f"(such as {example})"
    )  # fmt: skip


def _unknown(option: str, wanted: set[str], known: set[str]) -> str:
    """What of ``wanted`` names nothing, with the nearest known names ('' when all do)."""
    unknown = sorted(wanted - known)
    if not unknown:
        return ""
    hints, folded = [], {k.lower(): k for k in known}
    for name in unknown:
        near = [folded[n] for n in difflib.get_close_matches(name.lower(), sorted(folded), 3)]
        hints.append(
            f"{name!r}" + (f" (did you mean {' or '.join(map(repr, near))}?)" if near else "")
        )
    told = "" if all("did you mean" in h for h in hints) else f"; known: {', '.join(sorted(known))}"
    return f"{option}: unknown {', '.join(hints)}{told}"
