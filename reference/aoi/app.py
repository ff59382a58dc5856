"""``aoi app``: a demo app. It registers with the AOI Client over AOI-1 and prints, one JSON
object a line, its registration and every notification (which it then acknowledges) and
status event, so the system can be tried by hand."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

import trio

from aoi.cli import CommandError, checked_url, command_parser
from aoi.logs import error_text
from aoi.net.client import HandshakeError, connect
from aoi.net.websocket import ConnectionClosed, WebSocket

DEFAULT_CLIENT = "ws://127.0.0.1:7700/"
SUBPROTOCOL = "aoi-app.v1"


DESCRIPTION = """\
A demo app: registers with the AOI Client over AOI-1, then prints, one JSON object a line,
its registration and every notification (which it acknowledges) and status event, so the
system can be tried by hand. Exits 1 if the AOI Client cannot be reached or closes the
connection, 2 if --client is not a ws:// URL.
"""


def parser() -> argparse.ArgumentParser:
    p = command_parser("aoi app", DESCRIPTION)
    p.add_argument(
        "--app-id", required=True, metavar="APP_ID", help="the app's id, e.g. com.example.chat"
    )
    p.add_argument(
        "--client",
        default=DEFAULT_CLIENT,
        metavar="URL",
        help=f"the AOI Client's AOI-1 URL (default {DEFAULT_CLIENT})",
    )
    p.add_argument(
        "--provider",
        metavar="NAME",
        help="the AOI Service Provider to use (default: the client's first)",
    )
    p.add_argument(
        "--count",
        type=int,
        default=0,
        metavar="N",
        help="exit after this many notifications (0, the default: run until interrupted)",
    )
    p.add_argument("--unregister", action="store_true", help="unregister the app, then exit")
    p.add_argument("--no-ack", action="store_true", help="do not acknowledge notifications")
    return p


def emit(message: dict[str, Any]) -> None:
    print(json.dumps(message, separators=(",", ":")), flush=True)


async def run(args: argparse.Namespace) -> int:
    try:
        ws = await connect(args.client, SUBPROTOCOL)
    except (OSError, HandshakeError) as exc:
        reason = error_text(exc)
        print(f"aoi app: cannot reach the AOI Client at {args.client}: {reason}", file=sys.stderr)
        return 1
    try:
        return await converse(ws, args)
    finally:
        await ws.close(1000, "bye")


async def converse(ws: WebSocket, args: argparse.Namespace) -> int:
    if args.unregister:
        await ws.send(json.dumps({"type": "app_unregister", "app_id": args.app_id}))
    else:
        register: dict[str, Any] = {"type": "app_register", "app_id": args.app_id}
        if args.provider:
            register["provider"] = args.provider
        await ws.send(json.dumps(register))
    received = 0
    while True:
        try:
            frame = await ws.receive()
        except ConnectionClosed as closed:
            print(f"aoi app: the AOI Client closed the connection ({closed.code})", file=sys.stderr)
            return 1
        message = json.loads(frame)
        emit(message)
        kind = message.get("type")
        if kind == "app_unregistered" and args.unregister:
            return 0
        if kind == "app_notification":
            if not args.no_ack:
                await ws.send(json.dumps({"type": "app_ack", "id": message["id"]}))
            received += 1
            if args.count and received >= args.count:
                return 0


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(list(argv))
    try:
        checked_url(args.client, ("ws",))
    except CommandError as exc:
        print(f"aoi app: --client: {exc}", file=sys.stderr)
        return exc.status
    try:
        return trio.run(run, args)
    except KeyboardInterrupt:
        return 0
