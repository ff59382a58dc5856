"""``python -m bench.hostile``: the hostile-input campaign against a real AOI Server.

    python -m bench.hostile [--quick] [--json PATH] [--only WORD ...]

Prints a table: per case the inputs tried, the crashes (the server process exiting), the
answers (and how many were as docs/protocol.md gives them) and the p99 of an established
session pushed at a steady rate meanwhile; the server's memory before and after. Exits 1 if
the server crashed, an answer was not as documented or an accepted notification was lost.
See docs/operations.md, "Hostile input".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .campaign import QUICK, Sizes, run, table


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hostile", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, short timeouts")
    parser.add_argument("--json", type=Path, help="also write the report as JSON here")
    parser.add_argument(
        "--only", nargs="+", default=(), metavar="WORD",
        help="run just the cases whose name holds one of these words (e.g. storm instant)",
    )  # fmt: skip
    args = parser.parse_args()
    sizes = QUICK if args.quick else Sizes()
    report = run(sizes, log=lambda s: print(s, file=sys.stderr), only=tuple(args.only))
    print(table(report))
    if args.json:
        args.json.write_text(json.dumps(report.as_json(), indent=1))
    documented = all(row.documented == row.tried for row in report.rows)
    lost = report.steady.get("not_received", 1)
    return 0 if report.crashes == 0 and documented and lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
