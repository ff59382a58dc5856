"""The ``aoi`` command: ``aoi server`` (and ``aoi server drain``), ``aoi push``, ``aoi client``,
``aoi app``, ``aoi lab``; and what their command lines share."""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from aoi import __version__

VERSION = f"aoi {__version__}"
LEVELS = ("debug", "info", "warning", "error")

COMMANDS = {
    "server": ("aoi.server.cli", "run the reference AOI Server"),
    "push": ("aoi.push", "push a notification through AOI-3, as a server app"),
    "client": ("aoi.client.cli", "run the reference AOI Client daemon"),
    "app": ("aoi.app", "a demo app: register with the AOI Client and print what arrives"),
    "lab": ("aoi.lab.run", "start the reference servers a conformance run needs, and its IXIT"),
}
SUBCOMMANDS = {
    "server drain": ("aoi.server.drain", "switch drain mode of a running server, from its host")
}


def usage() -> str:
    listed = [(name, summary) for name, (_, summary) in COMMANDS.items()]
    listed[1:1] = [(name, summary) for name, (_, summary) in SUBCOMMANDS.items()]
    lines = ["usage: aoi COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<14}{summary}" for name, summary in listed]
    lines += [
        "",
        "options:",
        f"  {'-h, --help':<14}show this help and exit",
        f"  {'--version':<14}print the version and exit",
        "",
        "aoi COMMAND --help describes each command; docs/operations.md is the operators' guide.",
        VERSION,
    ]
    return "\n".join(lines)


def command_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The parser of one command, with ``--version`` and the version under its help."""
    p = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=f"{VERSION}. The operators' guide is docs/operations.md.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--version", action="version", version=VERSION, help="print the version and exit"
    )
    return p


def add_log_level(p: argparse.ArgumentParser, default: str | None) -> None:
    """``--log-level LEVEL``, as the daemons take it."""
    p.add_argument(
        "--log-level",
        default=default,
        choices=LEVELS,
        metavar="LEVEL",
        help="lowest level logged: debug, info (default), warning or error",
    )


class CommandError(Exception):
    """A mistake in a command's arguments or files: said in one line, then exit ``status``."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


def checked_url(text: str, schemes: tuple[str, ...] = ("http", "https")) -> str:
    """``text`` if it is a URL of one of ``schemes`` with a host, else :class:`CommandError`."""
    try:
        parts = urlsplit(text)
        _ = parts.port  # a port that is not a number raises here
    except ValueError as exc:
        raise CommandError(f"invalid URL {text!r}: {exc}") from None
    if parts.scheme not in schemes or not parts.hostname:
        expected = " or ".join(f"{scheme}://" for scheme in schemes)
        if schemes == ("http", "https"):
            expected = "http(s)://"
        raise CommandError(f"invalid URL {text!r}: expected {expected}HOST[:PORT]/...")
    return text


def tls_context(ca_file: Path | None, flag: str = "--ca-file") -> ssl.SSLContext:
    """The system's trusted CAs, plus those in ``ca_file``; host names are verified."""
    context = ssl.create_default_context()
    if ca_file is not None:
        try:
            context.load_verify_locations(cafile=ca_file)
        except FileNotFoundError:
            raise CommandError(f"{flag} {ca_file}: no such file") from None
        except ssl.SSLError:  # before OSError, which it is
            raise CommandError(f"{flag} {ca_file}: no PEM certificate in it") from None
        except OSError as exc:
            raise CommandError(f"{flag} {ca_file}: {exc.strerror}") from None
    return context


def listen_problem(failure: BaseException, host: str, port: int) -> str:
    """Why a listener could not be opened on ``host:port``, naming the address."""
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    code = getattr(failure, "errno", None)
    if code == errno.EADDRINUSE:
        return f"{address} is in use"
    if code == errno.EACCES:
        return f"no permission to listen on {address}"
    if code == errno.EADDRNOTAVAIL:
        return f"cannot listen on {address}: no such local address"
    return f"cannot listen on {address}: {getattr(failure, 'strerror', None) or failure}"


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions in ``exc``, out of any (nested) exception groups, in order."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _command(list(sys.argv[1:] if argv is None else argv))
    except BrokenPipeError:  # the reader left early (`aoi --help | head`): nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _command(args: list[str]) -> int:
    if not args:
        print(usage(), file=sys.stderr)
        return 2
    if args[0] in ("-h", "--help"):
        print(usage())
        return 0
    if args[0] == "--version":
        print(VERSION)
        return 0
    taken, entry = 2, SUBCOMMANDS.get(" ".join(args[:2]))
    if entry is None:
        taken, entry = 1, COMMANDS.get(args[0])
    if entry is None:
        print(f"aoi: unknown command {args[0]!r} (see aoi --help)", file=sys.stderr)
        return 2
    module = importlib.import_module(entry[0])
    result: int = module.main(args[taken:])
    return result
