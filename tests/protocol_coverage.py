"""Every MUST of docs/protocol.md and what judges it: the table of docs/conformance.md.

A statement of the protocol is a paragraph, a list item or a table row. Each one holding
MUST, MUST NOT, SHALL, SHALL NOT or REQUIRED names the requirement whose scenarios judge
it (``[AOI-XXX-NNN]``), or says in parentheses what is "not judged by the suite" and why.
The table in docs/conformance.md is made from them; ``tests/unit/test_protocol_coverage.py``
keeps both true. To write the table again after editing protocol.md:

    .venv/bin/python -m tests.protocol_coverage --write
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from conformance.registry import load_scenarios

ROOT = Path(__file__).resolve().parent.parent
PROTOCOL = ROOT / "docs" / "protocol.md"
GUIDE = ROOT / "docs" / "conformance.md"
BEGIN = "<!-- every MUST of protocol.md: made by `python -m tests.protocol_coverage --write` -->"
END = "<!-- end of the table made from protocol.md -->"

KEYWORD = re.compile(r"\b(MUST|SHALL|REQUIRED)\b")
TAG = re.compile(r"\[(AOI-[A-Z]+-\d{3})\]")
NOT_JUDGED = re.compile(r"\(([^()]*not judged by the suite[^()]*)\)")
SECTION = re.compile(r"#{2,4} (\d+(?:\.\d+)*)")
CONVENTION = "The key words MUST"


@dataclass(frozen=True)
class Statement:
    section: str
    text: str

    @property
    def requirements(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(TAG.findall(self.text)))

    @property
    def not_judged(self) -> str | None:
        """What the suite does not judge, and why; None when it judges all of it."""
        match = NOT_JUDGED.search(self.text)
        return None if match is None else re.sub(r"\s+", " ", match.group(1))

    @property
    def rule(self) -> str:
        """The first sentence with the key word, shortened for the table."""
        text = NOT_JUDGED.sub("", TAG.sub("", self.text)).strip(" -|")
        text = re.sub(r"\s+([.;,])(?!\S)", r"\1", re.sub(r"\s+", " ", text))
        sentences = re.split(r"(?<!e\.g\.)(?<!i\.e\.)(?<=[.;])\s+", text)
        sentence = next(s for s in sentences if KEYWORD.search(s))
        sentence = sentence.replace("|", "/").strip()
        return sentence if len(sentence) <= 140 else sentence[:137].rstrip() + "..."


def statements(text: str) -> Iterator[Statement]:
    """The statements of ``text`` (protocol.md) with a MUST, SHALL or REQUIRED."""
    section, block, fenced = "", list[str](), False

    def flush() -> Iterator[Statement]:
        joined = " ".join(line.strip() for line in block)
        if KEYWORD.search(joined) and CONVENTION not in joined:
            yield Statement(section, joined)
        block.clear()

    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            continue
        starts = (
            not line.strip() or line.startswith(("#", "- ", "|")) or bool(re.match(r"\d+\. ", line))
        )
        if starts:
            yield from flush()
        if heading := SECTION.match(line):
            section = heading.group(1)
        elif line.strip() and not line.startswith("#"):
            block.append(line)
            if line.startswith("|"):
                yield from flush()
    yield from flush()


def scenarios_by_requirement() -> dict[str, Counter[str]]:
    """requirement -> {feature file stem: number of scenarios judging it}."""
    found: dict[str, Counter[str]] = {}
    for spec in load_scenarios():
        for req in spec.requirements:
            found.setdefault(req, Counter())[Path(spec.feature_file).stem] += 1
    return found


def table() -> str:
    judged = scenarios_by_requirement()
    rows = ["| § | statement | judged by |", "|---|---|---|"]
    for statement in statements(PROTOCOL.read_text(encoding="utf-8")):
        cells = [
            f"{req}: " + ", ".join(f"`{f}` ({n})" for f, n in sorted(judged.get(req, {}).items()))
            for req in statement.requirements
        ]
        if statement.not_judged is not None:
            cells.append(statement.not_judged)
        rows.append(f"| {statement.section} | {statement.rule} | {'; '.join(cells)} |")
    return "\n".join(rows)


def _bounds(guide: str) -> tuple[int, int]:
    return guide.index(BEGIN) + len(BEGIN), guide.index(END)


def written_table(guide: str) -> str:
    start, end = _bounds(guide)
    return guide[start:end].strip()


def write() -> None:
    guide = GUIDE.read_text(encoding="utf-8")
    start, end = _bounds(guide)
    GUIDE.write_text(guide[:start] + "\n" + table() + "\n" + guide[end:], encoding="utf-8")


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        write()
    else:
        print(table())
