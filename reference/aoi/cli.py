"""The ``aoi`` command: ``aoi server``, ``aoi push``, ``aoi client``, ``aoi app``."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

COMMANDS = {
    "server": ("aoi.server.cli", "run the reference AOI Server"),
    "push": ("aoi.push", "push a notification through AOI-3, as a server app"),
    "client": ("aoi.client.cli", "run the reference AOI Client daemon"),
    "app": ("aoi.app", "a demo app: register with the AOI Client and print what arrives"),
}


def usage() -> str:
    lines = ["usage: aoi COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<8} {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", "aoi COMMAND --help describes each command."]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    entry = COMMANDS.get(args[0])
    if entry is None:
        print(f"aoi: unknown command {args[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(entry[0])
    result: int = module.main(args[1:])
    return result
