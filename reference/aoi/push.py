"""``aoi push``: send one notification, or a batch of them, through AOI-3, as a server app
would."""

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
expired or cancelled (or the wait ends). With --batch FILE, sends the notifications of FILE
(JSON Lines) in one batch to POST /v1/push of ENDPOINT's server, and exits 0 only when every
one of them was accepted.
"""


def parser() -> argparse.ArgumentParser:
    p = command_parser("aoi push", DESCRIPTION)
    p.add_argument(
        "endpoint",
        metavar="ENDPOINT",
        help="the push URL: https://HOST/v1/push/TOKEN (with --batch: https://HOST/v1/push)",
    )
    p.add_argument(
        "--key",
        default=os.environ.get("AOI_PUSH_KEY"),
        metavar="KEY",
        help="the server app's key (default: $AOI_PUSH_KEY)",
    )
    p.add_argument(
        "--payload",
        metavar="TEXT",
        help="the payload text; @FILE reads a file (UTF-8), - reads stdin",
    )
    p.add_argument(
        "--batch",
        metavar="FILE",
        help="send a batch instead: one notification a line, as JSON with token (or endpoint), "
        "payload and optional ttl_s, priority, collapse_key; - reads stdin",
    )
    p.add_argument(
        "--ttl",
        type=int,
        default=3600,
        metavar="SECONDS",
        help="seconds the server keeps it for an offline client (default 3600; in a batch, "
        "for the lines without ttl_s)",
    )
    p.add_argument(
        "--priority",
        choices=["high", "normal", "low"],
        default="normal",
        metavar="PRIORITY",
        help="high, normal (default) or low (in a batch, for the lines without priority)",
    )
    p.add_argument(
        "--collapse-key",
        metavar="KEY",
        help="replaces the notification with the same key still queued (not acked) for the token",
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
    if args.batch is not None:
        return push_batch(args)
    if args.payload is None:
        raise CommandError("--payload (or --batch) is required")
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


def push_batch(args: argparse.Namespace) -> int:
    for flag, given in (("--payload", args.payload), ("--collapse-key", args.collapse_key)):
        if given is not None:
            raise CommandError(f"{flag} is for one notification: put it in the --batch lines")
    if args.wait > 0:
        raise CommandError("--wait follows one notification, not a batch")
    parts = urlsplit(checked_url(args.endpoint))
    url = f"{parts.scheme}://{parts.netloc}/v1/push"
    body = {"notifications": _batch_lines(args.batch, args.ttl, args.priority)}
    headers = {"authorization": f"Bearer {args.key}"}
    with httpx.Client(verify=tls_context(args.ca_file), timeout=30) as http:
        try:
            response = http.post(url, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise CommandError(f"cannot reach {url}: {error_text(exc)}", 1) from None
    answer = _json(response)
    print(json.dumps({"status": response.status_code, **answer}))
    results = answer.get("results")
    every = isinstance(results, list) and all(
        isinstance(r, dict) and r.get("status") == 201 for r in results
    )
    return 0 if response.status_code == 200 and every else 1


def _batch_lines(source: str, ttl: int, priority: str) -> list[dict[str, object]]:
    """The notifications of a --batch file: each line a JSON object; ``endpoint`` becomes
    the ``token`` it ends with, missing ``ttl_s`` and ``priority`` come from the flags."""
    items: list[dict[str, object]] = []
    for number, line in enumerate(_read(source, f"--batch {source}").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError:
            item = None
        if not isinstance(item, dict):
            raise CommandError(f"--batch {source} line {number}: not a JSON object")
        endpoint = item.pop("endpoint", None)
        if isinstance(endpoint, str):
            item.setdefault("token", endpoint.rstrip("/").rsplit("/", 1)[-1])
        item.setdefault("ttl_s", ttl)
        item.setdefault("priority", priority)
        items.append(item)
    if not items:
        raise CommandError(f"--batch {source}: no notification in it")
    return items


def _payload(text: str) -> str:
    if text == "-":
        return sys.stdin.read()
    if not text.startswith("@"):
        return text
    return _read(text[1:], f"--payload {text}")


def _read(path: str, named: str) -> str:
    """The UTF-8 text of the file at ``path`` (``-``: stdin); ``named`` says which in errors."""
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8") as source:
            return source.read()
    except FileNotFoundError:
        raise CommandError(f"{named}: no such file") from None
    except UnicodeDecodeError:
        raise CommandError(f"{named}: not UTF-8 text") from None
    except OSError as exc:
        raise CommandError(f"{named}: {exc.strerror}") from None


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
