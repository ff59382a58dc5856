"""``aoi server drain``: switch drain mode of a running server, from the server's host."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx

from aoi.cli import CommandError, checked_url, command_parser, tls_context
from aoi.logs import error_text


def parser() -> argparse.ArgumentParser:
    p = command_parser(
        "aoi server drain",
        "Put a running server into drain mode (or take it out with --off), from the\n"
        "server's own host: POST /v1/admin/drain is accepted from loopback only.",
    )
    p.add_argument(
        "--admin",
        required=True,
        metavar="URL",
        help="the server's base URL over loopback, e.g. http://127.0.0.1:8080",
    )
    p.add_argument("--off", action="store_true", help="leave drain mode")
    p.add_argument(
        "--ca-file",
        type=Path,
        metavar="PEM",
        help="CA certificates to trust, besides the system's, when the server speaks TLS",
    )
    return p


def main(argv: Sequence[str]) -> int:
    try:
        return drain(parser().parse_args(argv))
    except CommandError as exc:
        print(f"aoi server drain: {exc}", file=sys.stderr)
        return exc.status


def drain(args: argparse.Namespace) -> int:
    url = checked_url(args.admin).rstrip("/") + "/v1/admin/drain"
    context = tls_context(args.ca_file)
    try:
        response = httpx.post(url, json={"drain": not args.off}, verify=context)
    except httpx.HTTPError as exc:
        raise CommandError(f"cannot reach {args.admin}: {error_text(exc)}", 1) from None
    print(response.text)
    return 0 if response.status_code == 200 else 1
