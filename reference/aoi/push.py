"""``aoi push``: send one notification through AOI-3, as a server app would."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from aoi.cli import CommandError, checked_url, command_parser, tls_context
from aoi.logs import error_text

DESCRIPTION = """\
Push a notification to an AOI endpoint (the URL an app got from its AOI Client), as the
app's server app. Prints the server's answer as JSON; exits 0 on 201, 1 on any other answer
or a connection failure, 2 for a mistake in the arguments (no key, a bad URL, a missing file).
With --wait, then polls the delivery report until the notification is delivered,
expired or cancelled (or the wait ends).
"""


def parser() -> argparse.ArgumentParser:
    p = command_parser("aoi push", DESCRIPTION)
    p.add_argument("endpoint", metavar="ENDPOINT", help="the push URL: https://HOST/v1/push/TOKEN")
    p.add_argument(
        "--key",
        default=os.environ.get("AOI_PUSH_KEY"),
        metavar="KEY",
        help="the server app's key (default: $AOI_PUSH_KEY)",
    )
    p.add_argument(
        "--payload",
        required=True,
        metavar="TEXT",
        help="the payload text; @FILE reads a file (UTF-8), - reads stdin",
    )
    p.add_argument(
        "--ttl",
        type=int,
        default=3600,
        metavar="SECONDS",
        help="seconds the server keeps it for an offline client (default 3600)",
    )
    p.add_argument(
        "--priority",
        choices=["high", "normal", "low"],
        default="normal",
        metavar="PRIORITY",
        help="high, normal (default) or low",
    )
    p.add_argument(
        "--collapse-key",
        metavar="KEY",
        help="replaces a queued, not yet sent notification with the same key",
    )
    p.add_argument(
        "--ca-file",
        type=Path,
        metavar="PEM",
        help="CA certificates to trust for https, besides the system's",
    )
    p.add_argument(
        "--wait",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="after a 201, follow the delivery report this long",
    )
    return p


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)
    try:
        return push(args)
    except CommandError as exc:
        print(f"aoi push: {exc}", file=sys.stderr)
        return exc.status


def push(args: argparse.Namespace) -> int:
    if not args.key:
        raise CommandError("--key (or $AOI_PUSH_KEY) is required")
    endpoint = checked_url(args.endpoint)
    body: dict[str, object] = {
        "payload": _payload(args.payload),
        "ttl_s": args.ttl,
        "priority": args.priority,
    }
    if args.collapse_key:
        body["collapse_key"] = args.collapse_key
    headers = {"authorization": f"Bearer {args.key}"}
    with httpx.Client(verify=tls_context(args.ca_file), timeout=30) as http:
        try:
            response = http.post(endpoint, json=body, headers=headers)
            print(json.dumps({"status": response.status_code, **_json(response)}))
            if response.status_code != 201:
                return 1
            location = response.headers.get("location")
            if args.wait > 0 and location is None:
                raise CommandError("the 201 has no Location header: no report to follow", 1)
            if args.wait > 0:
                parts = urlsplit(endpoint)
                report_url = f"{parts.scheme}://{parts.netloc}{location}"
                print(json.dumps(_follow(http, report_url, headers, args.wait)))
        except httpx.HTTPError as exc:
            raise CommandError(f"cannot reach {endpoint}: {error_text(exc)}", 1) from None
    return 0


def _payload(text: str) -> str:
    if text == "-":
        return sys.stdin.read()
    if not text.startswith("@"):
        return text
    path = text[1:]
    try:
        with open(path, encoding="utf-8") as source:
            return source.read()
    except FileNotFoundError:
        raise CommandError(f"--payload {text}: no such file") from None
    except UnicodeDecodeError:
        raise CommandError(f"--payload {text}: not UTF-8 text") from None
    except OSError as exc:
        raise CommandError(f"--payload {text}: {exc.strerror}") from None


def _follow(
    http: httpx.Client, url: str, headers: dict[str, str], wait_s: float
) -> dict[str, object]:
    """The delivery report once it is no longer ``queued``, or when ``wait_s`` is up."""
    deadline = time.monotonic() + wait_s
    while True:
        report = _json(http.get(url, headers=headers))
        if report.get("status") != "queued" or time.monotonic() >= deadline:
            return report
        time.sleep(0.2)


def _json(response: httpx.Response) -> dict[str, object]:
    try:
        document = response.json()
    except ValueError:
        return {"body": response.text}
    return document if isinstance(document, dict) else {"body": document}
