"""``aoi server``: run the reference AOI Server until a signal stops it."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import resource
import signal
import sqlite3
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import trio

from aoi import logs
from aoi.cli import add_log_level, command_parser, leaves, listen_problem
from aoi.core.policy import PolicyError

from .config import ConfigError, ServerSettings, load_config
from .store import StoreError

if TYPE_CHECKING:
    from .app import Server

log = logging.getLogger("aoi.server")

DESCRIPTION = """\
Run the reference AOI Server: AOI-2 sessions (WebSocket at /aoi), the AOI-3 push API,
provisioning, health and metrics, on one listener.

Configuration comes from the TOML file (see docs/operations.md) and the flags below, which
override it. Signals: SIGTERM/SIGINT shut down gracefully (sessions get bye, the store
commits what it holds); SIGUSR1 switches drain mode (new sessions refused as overloaded,
established ones served).

aoi server drain --admin URL [--off] switches drain mode of a running server from its own
host (aoi server drain --help).
"""


def parser() -> argparse.ArgumentParser:
    p = command_parser("aoi server", DESCRIPTION)
    p.add_argument("--config", type=Path, metavar="FILE", help="TOML configuration file")
    p.add_argument(
        "--listen", metavar="HOST:PORT", help="address to listen on (port 0: any free port)"
    )
    p.add_argument("--id", metavar="ID", help="server id, as in welcome and the policy")
    p.add_argument("--db", type=Path, metavar="PATH", help="SQLite store file")
    p.add_argument(
        "--store",
        metavar="redis://HOST:PORT/DB",
        help="keep the store on Redis instead of --db (several servers may share it)",
    )
    p.add_argument(
        "--workers",
        metavar="N",
        help="N server processes sharing the port (SO_REUSEPORT); needs --store",
    )
    p.add_argument(
        "--reuse-port",
        action="store_const",
        const=True,
        help="listen with SO_REUSEPORT, so that other servers may listen on the same port",
    )
    p.add_argument(
        "--tls-cert", type=Path, metavar="PEM", help="PEM certificate chain (enables TLS)"
    )
    p.add_argument("--tls-key", type=Path, metavar="PEM", help="PEM private key of --tls-cert")
    p.add_argument(
        "--max-sessions",
        type=int,
        metavar="N",
        help="sessions at which new hellos are refused as overloaded",
    )
    p.add_argument(
        "--policy", type=Path, metavar="PATH", help="policy document served at /v1/provisioning"
    )
    p.add_argument(
        "--ready-file",
        type=Path,
        metavar="PATH",
        help="write the listening URLs here (JSON) once ready",
    )
    add_log_level(p, default="info")
    return p


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)
    logs.setup(args.log_level)
    overrides = {
        key: value
        for key in (
            *("listen", "id", "db", "store", "workers", "reuse_port", "tls_cert", "tls_key"),
            *("max_sessions", "policy"),
        )
        if (value := getattr(args, key)) is not None
    }
    _raise_open_file_limit()
    try:
        config = load_config(args.config, overrides)
    except ConfigError as exc:
        print(f"aoi server: {exc}", file=sys.stderr)
        return 2
    if config.server.workers > 1:
        from .workers import supervise

        return supervise(config, list(argv), args.ready_file)
    from .app import Server  # not before: --help and a mistake in the file answer at once

    try:
        server = Server(config)
    except (PolicyError, OSError, ValueError) as exc:  # the policy document is read here
        problem = f"not JSON ({exc})" if isinstance(exc, json.JSONDecodeError) else str(exc)
        print(f"aoi server: {config.server.policy}: {problem}", file=sys.stderr)
        return 2
    failures: list[BaseException] = []
    try:
        trio.run(serve, server, args.ready_file)
    except* (OSError, StoreError, sqlite3.Error) as group:  # port taken, bad key, bad store
        failures.extend(leaves(group))
    for failure in failures:
        print(f"aoi server: {_explain(failure, config.server)}", file=sys.stderr)
    if failures:
        return 1
    log.info("stopped")
    return 0


async def serve(server: Server, ready_file: Path | None) -> None:
    from .app import write_ready_file
    from .collector import pace_collections

    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGUSR1) as signals:
        async with trio.open_nursery() as nursery:
            here = await nursery.start(server.run)
            nursery.start_soon(pace_collections)
            if ready_file is not None:
                write_ready_file(ready_file, here)
            async for signum in signals:
                if signum == signal.SIGUSR1:
                    server.set_draining(not server.load.draining)
                    continue
                log.info(
                    "shutting_down",
                    extra={
                        "signal": signal.Signals(signum).name,
                        "sessions": server.hub.established,
                    },
                )
                await server.shutdown()
                nursery.cancel_scope.cancel()
                break


def _raise_open_file_limit() -> None:
    """Every session is a descriptor: take all the hard limit allows (the connection cap
    is derived from it, see docs/operations.md)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _explain(failure: BaseException, settings: ServerSettings) -> str:
    """One line that names what to fix: the address, the file, the store."""
    if isinstance(failure, ssl.SSLError) and settings.tls_cert is not None:
        return _tls_problem(settings.tls_cert, settings.tls_key or settings.tls_cert)
    if isinstance(failure, OSError) and failure.filename is None:  # from the listener
        return listen_problem(failure, *settings.listen)
    if isinstance(failure, OSError):
        return f"{failure.filename}: {failure.strerror}"
    if isinstance(failure, StoreError | sqlite3.Error):
        return f"the store {settings.store or settings.db}: {failure}"
    return str(failure)


def _tls_problem(cert: Path, key: Path) -> str:
    """Which of the certificate and the key could not be loaded, and why."""
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        probe.load_verify_locations(cafile=cert)
    except ssl.SSLError:
        return f"{cert}: no PEM certificate in it (tls_cert)"
    return f"{key}: not a PEM private key of the certificate in {cert} (tls_key)"
