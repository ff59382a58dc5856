"""``aoi server``: run the reference AOI Server; ``aoi server drain``: switch drain mode."""

from __future__ import annotations

import argparse
import logging
import signal
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx
import trio

from aoi import logs
from aoi.core.policy import PolicyError

from .app import Server, write_ready_file
from .config import ConfigError, load_config
from .store import StoreError

log = logging.getLogger("aoi.server")

DESCRIPTION = """\
Run the reference AOI Server: AOI-2 sessions (WebSocket at /aoi), the AOI-3 push API,
provisioning, health and metrics, on one listener.

Configuration comes from the TOML file (see docs/operations.md) and the flags below, which
override it. Signals: SIGTERM/SIGINT shut down gracefully (sessions get bye, the store
commits what it holds); SIGUSR1 switches drain mode (new sessions refused as overloaded,
established ones served).
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="aoi server",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", type=Path, help="TOML configuration file")
    p.add_argument("--listen", help="HOST:PORT to listen on (port 0: any free port)")
    p.add_argument("--id", help="server id, as in welcome and the policy")
    p.add_argument("--db", type=Path, help="SQLite store file")
    p.add_argument("--tls-cert", type=Path, help="PEM certificate chain (enables TLS)")
    p.add_argument("--tls-key", type=Path, help="PEM private key")
    p.add_argument(
        "--max-sessions", type=int, help="sessions above which hellos are refused as overloaded"
    )
    p.add_argument("--policy", type=Path, help="policy document served at /v1/provisioning")
    p.add_argument(
        "--ready-file", type=Path, help="write the listening URLs here (JSON) once ready"
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def drain_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="aoi server drain",
        description="Put a running server into drain mode (or take it out with --off), "
        "from the server's own host.",
    )
    p.add_argument(
        "--admin", required=True, help="the server's base URL, e.g. http://127.0.0.1:8080"
    )
    p.add_argument("--off", action="store_true", help="leave drain mode")
    p.add_argument("--ca-file", help="extra trusted CA (PEM) when the server speaks TLS")
    return p


def main(argv: Sequence[str]) -> int:
    if argv and argv[0] == "drain":
        return drain(drain_parser().parse_args(argv[1:]))
    args = parser().parse_args(argv)
    logs.setup(args.log_level)
    overrides = {
        key: value
        for key in ("listen", "id", "db", "tls_cert", "tls_key", "max_sessions", "policy")
        if (value := getattr(args, key)) is not None
    }
    try:
        config = load_config(args.config, overrides)
        server = Server(config)
    except (ConfigError, PolicyError, OSError, ValueError) as exc:
        print(f"aoi server: {exc}", file=sys.stderr)
        return 2
    failures: list[BaseException] = []
    try:
        trio.run(serve, server, args.ready_file)
    except* (OSError, ssl.SSLError, StoreError) as group:  # port taken, bad key, bad store
        failures.extend(_leaves(group))
    for failure in failures:
        print(f"aoi server: {failure}", file=sys.stderr)
    return 1 if failures else 0


async def serve(server: Server, ready_file: Path | None) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGUSR1) as signals:
        async with trio.open_nursery() as nursery:
            here = await nursery.start(server.run)
            if ready_file is not None:
                write_ready_file(ready_file, here)
            async for signum in signals:
                if signum == signal.SIGUSR1:
                    server.set_draining(not server.load.draining)
                    continue
                log.info("shutting down")
                await server.shutdown()
                nursery.cancel_scope.cancel()
                break


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def drain(args: argparse.Namespace) -> int:
    context = ssl.create_default_context()
    if args.ca_file:
        context.load_verify_locations(args.ca_file)
    try:
        response = httpx.post(
            args.admin.rstrip("/") + "/v1/admin/drain", json={"drain": not args.off}, verify=context
        )
    except httpx.HTTPError as exc:
        print(f"aoi server drain: {exc}", file=sys.stderr)
        return 1
    print(response.text)
    return 0 if response.status_code == 200 else 1
