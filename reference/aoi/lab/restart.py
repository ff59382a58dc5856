"""``aoi lab restart --dir DIR PROFILE``: the IXIT's ``[restart] command``. It asks the lab
running in DIR (SIGUSR2, with a request file in ``DIR/restart/``) to kill one instance with
SIGKILL and start it again on the same port and store, and returns once the lab says the new
process is ready (or why it is not)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from aoi.cli import command_parser
from aoi.lab import plan

RESTART_TIMEOUT_S = 60.0
POLL_S = 0.05


def main(argv: Sequence[str]) -> int:
    return restart(parser().parse_args(argv))


def parser() -> argparse.ArgumentParser:
    p = command_parser(
        "aoi lab restart",
        "Kill an instance of a running lab with SIGKILL and start it again; "
        "return once it is ready.",
    )
    p.add_argument("--dir", type=Path, required=True, metavar="DIR", help="the lab's directory")
    p.add_argument("profile", choices=plan.PROFILES, help="the instance to restart")
    return p


def restart(args: argparse.Namespace) -> int:
    """Ask the lab in ``args.dir`` to crash and restart ``args.profile``; wait for it."""
    directory: Path = args.dir.resolve()
    try:
        pid = int((directory / "lab.pid").read_text(encoding="utf-8").split()[0])
    except (OSError, ValueError, IndexError):
        print(f"aoi lab restart: no lab runs in {directory}", file=sys.stderr)
        return 1
    request = directory / "restart" / f"{args.profile}.request"
    done = request.with_suffix(".done")
    done.unlink(missing_ok=True)
    request.write_text("", encoding="utf-8")
    try:
        os.kill(pid, signal.SIGUSR2)
    except ProcessLookupError:
        print(f"aoi lab restart: the lab in {directory} (pid {pid}) is gone", file=sys.stderr)
        return 1
    deadline = time.monotonic() + RESTART_TIMEOUT_S
    while not done.exists():
        if time.monotonic() > deadline:
            print(f"aoi lab restart: {args.profile} not back within {RESTART_TIMEOUT_S:.0f} s")
            return 1
        time.sleep(POLL_S)  # the lab answers by writing the file
    outcome = done.read_text(encoding="utf-8")
    done.unlink(missing_ok=True)
    if outcome != "ok":
        print(f"aoi lab restart: {outcome}", file=sys.stderr)
        return 1
    return 0
