"""The README's walk-through promises what the example policy gives: when
``connection_restored`` comes after server ``b`` is started again."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_connection_restored_comes_after_the_backoff_of_the_example_policy() -> None:
    backoff = json.loads((ROOT / "examples" / "policy.json").read_text())["reallocation"]["backoff"]
    initial_s, max_s = backoff["initial_ms"] / 1000, backoff["max_ms"] / 1000
    assert (backoff["multiplier"], backoff["jitter"]) == (2.0, "full")
    text = " ".join((ROOT / "README.md").read_text().split())
    restored = text[text.index("it gets `connection_restored`") :][:400]
    assert f"from {initial_s:g} s, doubling up to {max_s:g} s, randomised" in restored
    assert f"about {max_s / 2:g} s on average" in restored  # the mean of a full jitter
