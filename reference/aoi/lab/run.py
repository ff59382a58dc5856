"""``aoi lab``: start the lab's servers, write its IXIT, keep them up until Ctrl-C.

    aoi lab [--dir DIR] [--profiles main,overload,...] [--with-client] [--store URL]
    aoi lab restart --dir DIR PROFILE

The lab writes into DIR (default ``aoi-lab``): ``<profile>.toml`` and
``<profile>-policy.json`` for each instance, ``tls/`` (its CA and the certificate of the
``tls`` instance), ``state/`` (the stores, new for each lab), ``logs/<profile>.log``,
``lab.pid`` while it runs and, once every instance is ready, ``ixit.toml``. An instance
that exits on its own is reported (and listed in ``exited.json``), not restarted.

``aoi lab restart`` is the IXIT's ``[restart] command``: it asks the running lab (SIGUSR2,
with a request file in ``DIR/restart/``) to kill the instance with SIGKILL and start it
again on the same port and store, and returns once the new process is ready.

With ``--store redis://HOST:PORT`` every instance keeps its state on that Redis, each in a
database of its own (1 to 7, emptied as the lab starts), and the ``main`` instance is a fleet
of two nodes: its registrations name the second node (``main.2``) as their push endpoint,
so every push the suite makes is accepted by one node and delivered by the other.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

import trio

from aoi.cli import command_parser
from aoi.lab import plan, restart
from aoi.lab.supervisor import Lab, LabError


def parser() -> argparse.ArgumentParser:
    p = command_parser(
        "aoi lab",
        "Start the reference AOI Servers that a conformance run needs, each "
        "configured for its profile, and write the IXIT that describes them "
        "(DIR/ixit.toml). Ctrl-C stops them. 'aoi lab restart --dir DIR PROFILE' crashes "
        "and restarts one instance (the IXIT's [restart] command).",
    )
    p.add_argument(
        "--dir", type=Path, default=Path("aoi-lab"), metavar="DIR", help="where the lab's files go"
    )
    p.add_argument(
        "--profiles",
        default=",".join(plan.PROFILES),
        metavar="LIST",
        help=f"comma-separated profiles to start (default: all {len(plan.PROFILES)})",
    )
    p.add_argument(
        "--host", default="127.0.0.1", metavar="HOST", help="address the instances listen on"
    )
    p.add_argument(
        "--with-client",
        action="store_true",
        help="describe the reference AOI Client in the IXIT too ([client]): both roles",
    )
    p.add_argument(
        "--store",
        metavar="URL",
        help="a Redis (redis://HOST:PORT) for every instance's store; the main instance "
        "then runs as a fleet of two nodes (databases 1-7 of that Redis are emptied)",
    )
    p.add_argument(
        "--server-command",
        default=f"{shlex.quote(sys.executable)} -m aoi server",
        metavar="COMMAND",
        help="how to start one server; --config FILE --ready-file FILE are appended",
    )
    return p


def main(argv: Sequence[str]) -> int:
    if argv and argv[0] == "restart":
        return restart.main(argv[1:])
    args = parser().parse_args(argv)
    profiles = [p for p in args.profiles.split(",") if p]
    unknown = sorted(set(profiles) - set(plan.PROFILES))
    if unknown or not profiles:
        print(
            f"aoi lab: unknown profiles {unknown}; known: {', '.join(plan.PROFILES)}"
            if unknown
            else "aoi lab: --profiles names no instance",
            file=sys.stderr,
        )
        return 2
    lab = Lab(
        args.dir.resolve(),
        args.host,
        shlex.split(args.server_command),
        with_client=args.with_client,
        store=args.store,
    )
    try:
        trio.run(lab.run, [p for p in plan.PROFILES if p in profiles])
    except LabError as e:
        print(f"aoi lab: {e}", file=sys.stderr)
        return 1
    return 0
