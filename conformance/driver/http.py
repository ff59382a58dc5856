"""The suite's AOI-3 client (server apps and operators), on httpx, every exchange logged.

A request that gets no response at all (no connection, a connection lost before the
response, no response in time) raises :class:`~conformance.verdicts.TargetUnreachable`:
no step ever judges a status it did not see.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from conformance.verdicts import TargetUnreachable
from conformance.wirelog import WireLog

_SHOWN_HEADERS = ("location", "retry-after", "www-authenticate", "content-type")


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP response, decoded."""

    status: int
    headers: httpx.Headers
    body: Any  # the JSON value, or the text when it is not JSON
    text: str
    error: str = ""  # why there was no response at all (only with answer_required=False)

    @property
    def json_object(self) -> dict[str, Any]:
        return self.body if isinstance(self.body, dict) else {}


class Aoi3Client:
    def __init__(
        self, base_url: str, wirelog: WireLog, *, ca_file: Path | None, timeout: float
    ) -> None:
        verify: ssl.SSLContext | bool = True
        if base_url.startswith("https"):
            verify = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        self.base_url = base_url.rstrip("/")
        self.wirelog = wirelog
        self.timeout = timeout
        # One connection per request: a server may close an idle kept-alive connection at
        # any time, and a request racing that close would be judged as unanswered.
        self._client = httpx.Client(
            base_url=self.base_url,
            verify=verify,
            timeout=timeout,
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    def close(self) -> None:
        self._client.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        key: str | None = None,
        basic: tuple[str, str] | None = None,
        body: Any = None,
        content: bytes | None = None,
        channel: str = "http",
        answer_required: bool = True,
    ) -> Answer:
        """One exchange; without a response it raises :class:`TargetUnreachable`, or with
        ``answer_required=False`` returns an :class:`Answer` of status 0 that says why."""
        headers: dict[str, str] = {}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        if body is not None:
            content = json.dumps(body).encode()
        if content is not None:
            headers["Content-Type"] = "application/json"
        auth = httpx.BasicAuth(*basic) if basic else None
        url = path if path.startswith(("http://", "https://")) else self.base_url + path
        shown = [f"{method} {url}"]
        shown += [f"{k}: {v}" for k, v in headers.items()]
        if basic:
            shown.append("Authorization: Basic (client credentials)")
        if content is not None:
            shown.append(_clip(content.decode("utf-8", "replace")))
        self.wirelog.add(channel, "->", "\n".join(shown))
        try:
            response = self._client.request(
                method, url, headers=headers, content=content, auth=auth
            )
        except httpx.HTTPError as e:
            self.wirelog.add(channel, "--", f"no response: {type(e).__name__}: {e}")
            if answer_required:
                raise TargetUnreachable(f"{method} {url}: {self._no_response(e)}") from None
            return Answer(0, httpx.Headers(), None, "", error=f"{type(e).__name__}: {e}")
        text = response.text
        try:
            decoded: Any = response.json()
        except ValueError:
            decoded = text
        lines = [f"{response.status_code} {response.reason_phrase}"]
        lines += [f"{k}: {response.headers[k]}" for k in _SHOWN_HEADERS if k in response.headers]
        if text:
            lines.append(_clip(text))
        self.wirelog.add(channel, "<-", "\n".join(lines))
        return Answer(response.status_code, response.headers, decoded, text)

    def _no_response(self, error: httpx.HTTPError) -> str:
        if isinstance(error, httpx.ConnectError | httpx.ConnectTimeout):
            return f"target unreachable: {type(error).__name__}: {error}"
        if isinstance(error, httpx.TimeoutException):
            return f"connection lost: no response within {self.timeout:.0f} s"
        return f"connection lost before the response: {type(error).__name__}: {error}"


def _clip(text: str, limit: int = 1024) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... <{len(text)} characters>"
