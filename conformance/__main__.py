"""``python -m conformance ixit-example``: the commented example IXIT, to copy and fill in.

The suite itself runs with pytest: ``pytest conformance`` in a checkout of the repository,
``pytest --pyargs conformance`` where it was installed from its wheel.
"""

from __future__ import annotations

import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().with_name("ixit.example.toml")
USAGE = (
    "usage: python -m conformance ixit-example > mine.toml\n"
    "The suite runs with: pytest --pyargs conformance --target URL --ixit mine.toml"
)


def main(argv: list[str]) -> int:
    if argv == ["ixit-example"]:
        sys.stdout.write(EXAMPLE.read_text(encoding="utf-8"))
        return 0
    print(USAGE, file=sys.stderr)
    return 0 if argv in (["-h"], ["--help"]) else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
