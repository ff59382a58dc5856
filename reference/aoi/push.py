"""``aoi push``: send one notification through AOI-3, as a server app would."""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

import httpx

DESCRIPTION = """\
Push a notification to an AOI endpoint (the URL an app got from its AOI Client), as the
app's server app. Prints the server's answer as JSON; exits 0 on 201, 1 otherwise.
With --wait, then polls the delivery report until the notification is delivered,
expired or cancelled (or the wait ends).
"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="aoi push",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("endpoint", help="https://server/v1/push/TOKEN")
    p.add_argument(
        "--key", default=os.environ.get("AOI_PUSH_KEY"), help="server-app key (or $AOI_PUSH_KEY)"
    )
    p.add_argument(
        "--payload", required=True, help="the payload text; @FILE reads a file, - reads stdin"
    )
    p.add_argument(
        "--ttl", type=int, default=3600, help="seconds the server keeps it for an offline client"
    )
    p.add_argument("--priority", choices=["high", "normal", "low"], default="normal")
    p.add_argument("--collapse-key", help="replaces an undelivered notification with the same key")
    p.add_argument("--ca-file", help="extra trusted CA (PEM) for https")
    p.add_argument(
        "--wait", type=float, default=0.0, metavar="SECONDS", help="follow the delivery report"
    )
    return p


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)
    if not args.key:
        print("aoi push: --key (or $AOI_PUSH_KEY) is required", file=sys.stderr)
        return 2
    payload = args.payload
    if payload == "-":
        payload = sys.stdin.read()
    elif payload.startswith("@"):
        with open(payload[1:], encoding="utf-8") as source:
            payload = source.read()
    body: dict[str, object] = {"payload": payload, "ttl_s": args.ttl, "priority": args.priority}
    if args.collapse_key:
        body["collapse_key"] = args.collapse_key
    headers = {"authorization": f"Bearer {args.key}"}
    context = ssl.create_default_context()
    if args.ca_file:
        context.load_verify_locations(args.ca_file)
    with httpx.Client(verify=context, timeout=30) as http:
        try:
            response = http.post(args.endpoint, json=body, headers=headers)
        except httpx.HTTPError as exc:
            print(f"aoi push: {exc}", file=sys.stderr)
            return 1
        print(json.dumps({"status": response.status_code, **_json(response)}))
        if response.status_code != 201:
            return 1
        if args.wait > 0:
            parts = urlsplit(args.endpoint)
            report_url = f"{parts.scheme}://{parts.netloc}{response.headers['location']}"
            deadline = time.monotonic() + args.wait
            while True:
                report = _json(http.get(report_url, headers=headers))
                if report.get("status") != "queued" or time.monotonic() >= deadline:
                    print(json.dumps(report))
                    break
                time.sleep(0.2)
    return 0


def _json(response: httpx.Response) -> dict[str, object]:
    try:
        document = response.json()
    except ValueError:
        return {"body": response.text}
    return document if isinstance(document, dict) else {"body": document}
