"""AOI-P: keep each AOI Service Provider's policy, fetched or read from a file.

The last valid document is persisted and stays in use when provisioning fails (503,
unreachable) or answers with an invalid document, which is refused with an error naming
every problem. A document past its ``valid_until`` or older than the cached one is refused.
"""

from __future__ import annotations

import base64
import json
import random
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import trio

from aoi.core.policy import Policy, PolicyError, load_policy
from aoi.logs import EventLog, error_text

from .config import ProviderConfig
from .state import State

_log = EventLog("aoi.client.provisioning")

RETRY_INITIAL_S = 1.0
RETRY_MAX_S = 300.0
MIN_REFRESH_S = 30.0


@dataclass(frozen=True, slots=True)
class Fetched:
    status: int
    headers: Mapping[str, str]
    body: bytes


Fetch = Callable[[str, Mapping[str, str]], Awaitable[Fetched]]


def http_fetch(ssl_context: ssl.SSLContext | None, timeout_s: float = 30.0) -> Fetch:
    """A GET through httpx (trio backend), trusting ``ssl_context`` for https."""

    async def fetch(url: str, headers: Mapping[str, str]) -> Fetched:
        verify: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        async with httpx.AsyncClient(verify=verify, timeout=timeout_s) as client:
            response = await client.get(url, headers=dict(headers))
            return Fetched(response.status_code, dict(response.headers), response.content)

    return fetch


def basic_auth(client_id: str, credential: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{credential}".encode()).decode("ascii")


class Provisioner:
    """One provider's policy: the cached document, then every valid one obtained."""

    def __init__(
        self,
        provider: ProviderConfig,
        identity: tuple[str, str],
        state: State,
        on_policy: Callable[[ProviderConfig, Policy], None],
        *,
        fetch: Fetch,
        wall: Callable[[], float],
        rng: random.Random,
        refresh_s: float = 3600.0,
    ) -> None:
        self.provider = provider
        self.identity = identity
        self.state = state
        self.on_policy = on_policy
        self.fetch = fetch
        self.wall = wall
        self.rng = rng
        self.refresh_s = refresh_s
        self.policy: Policy | None = None
        self.failures = 0
        self.failure: str | None = None  # why the last fetch failed, in one line
        self.lasting = False  # whether that failure looks like a mistake, not a passing one

    def load_cached(self) -> Policy | None:
        """The persisted document, if valid (even past ``valid_until``: better than none)."""
        document = self.state.policy(self.provider.slug)
        if document is None:
            return None
        try:
            policy = load_policy(document)
        except PolicyError as err:
            _log.warning(
                "cached_policy_invalid", provider=self.provider.slug, problems=list(err.problems)
            )
            return None
        self.policy = policy
        self.on_policy(self.provider, policy)
        _log.info("policy_from_cache", provider=policy.provider, version=policy.policy_version)
        return policy

    async def run(self) -> None:
        while True:
            await trio.sleep(await self.refresh())

    async def first(self, timeout_s: float) -> float:
        """The fetch at start-up; returns how long to wait before the next one. Without a
        policy yet, a failure that retrying will not mend (unreachable, refused with 4xx, an
        invalid document) is not logged but left in :attr:`failure`, for the caller to stop
        on; a passing one (5xx, e.g. 503 with Retry-After) is logged and retried."""
        with trio.move_on_after(timeout_s):
            return await self.refresh(starting=self.policy is None)
        return self._failed(
            f"no answer from {self.provider.source} within {timeout_s:g} s", lasting=True,
            starting=self.policy is None, event="provisioning_unreachable", error="timed out",
        )  # fmt: skip

    async def refresh(self, *, starting: bool = False) -> float:
        """Fetch once; returns how long to wait before the next fetch."""
        source = self.provider.source
        self.failure = None
        try:
            fetched = await self._get()
        except (OSError, httpx.HTTPError, trio.TooSlowError) as exc:
            error = error_text(exc)
            verb = "cannot read" if self.provider.policy_file is not None else "cannot reach"
            return self._failed(
                f"{verb} {source}: {error}", lasting=True, starting=starting,
                event="provisioning_unreachable", error=error,
            )  # fmt: skip
        if fetched.status != 200:
            return self._failed(
                _refusal(source, fetched, self.identity[0]), lasting=fetched.status < 500,
                starting=starting, retry_after_s=_retry_after(fetched.headers),
                event="provisioning_refused", status=fetched.status,
                body=fetched.body[:300].decode("utf-8", "replace"),
            )  # fmt: skip
        try:
            policy = self.accept(json.loads(fetched.body))
        except ValueError as exc:
            problems = list(exc.problems) if isinstance(exc, PolicyError) else [f"not JSON: {exc}"]
            return self._failed(
                f"the policy from {source} is refused: {'; '.join(problems)}", lasting=True,
                starting=starting, event="policy_refused", problems=problems,
            )  # fmt: skip
        self.failures = 0
        return self._next_refresh(policy)

    def _failed(
        self,
        failure: str,
        *,
        lasting: bool,
        starting: bool,
        event: str,
        retry_after_s: float | None = None,
        **fields: Any,
    ) -> float:
        """Note why the fetch failed and log it, unless it is the start's failure to stop on;
        returns the delay before the next attempt."""
        self.failure, self.lasting = failure, lasting
        if not (starting and lasting):
            kept = self.policy.policy_version if self.policy else None
            log = _log.error if event == "policy_refused" else _log.warning
            log(event, source=self.provider.source, kept_version=kept, **fields)
        return self._retry_in(retry_after_s)

    def accept(self, document: object) -> Policy:
        """Check ``document`` and make it the provider's policy, or raise :class:`PolicyError`."""
        policy = load_policy(document)
        problems = []
        name = self.provider.name
        if name and policy.provider != name:
            problems.append(f"provider: the document is for {policy.provider!r}, not {name!r}")
        if policy.expired(self.wall()):
            problems.append("valid_until: the document has expired")
        current = self.policy
        if (
            current is not None
            and current.provider == policy.provider
            and policy.policy_version < current.policy_version
        ):
            problems.append(
                f"policy_version: {policy.policy_version} is older than the cached "
                f"{current.policy_version}"
            )
        if problems:
            raise PolicyError(problems)
        if current is None or current.policy_version != policy.policy_version or current != policy:
            _log.info(
                "policy_accepted",
                provider=policy.provider,
                version=policy.policy_version,
                servers=[s.id for s in policy.servers],
            )
        self.state.save_policy(self.provider.slug, document)
        self.policy = policy
        self.on_policy(self.provider, policy)
        return policy

    async def _get(self) -> Fetched:
        if self.provider.policy_file is not None:
            # A small local file: read in place (a thread would let a test's MockClock jump).
            return Fetched(200, {}, self.provider.policy_file.read_bytes())
        assert self.provider.provisioning_url is not None
        headers = {"Authorization": basic_auth(*self.identity), "Accept": "application/json"}
        return await self.fetch(self.provider.provisioning_url, headers)

    def _retry_in(self, retry_after_s: float | None) -> float:
        cap = min(RETRY_MAX_S, RETRY_INITIAL_S * 2.0**self.failures)
        self.failures = min(self.failures + 1, 32)
        delay = cap * (0.5 + 0.5 * self.rng.random())
        return max(delay, retry_after_s or 0.0)

    def _next_refresh(self, policy: Policy) -> float:
        delay = self.refresh_s
        if policy.valid_until is not None:
            # Fetch again well before the document expires.
            delay = min(delay, (policy.valid_until - self.wall()) / 2)
        return max(delay, min(MIN_REFRESH_S, self.refresh_s))


def _refusal(source: str, fetched: Fetched, client_id: str) -> str:
    """Why the provisioning endpoint refused, in one line that names what to fix."""
    if fetched.status == 401:
        return (
            f"{source} refused the credentials of client_id {client_id!r} (401): an unknown "
            "client or a wrong credential"
        )
    try:
        body = json.loads(fetched.body)
        said = f"{body['error']}: {body['detail']}"
    except (ValueError, KeyError, TypeError):
        said = fetched.body[:200].decode("utf-8", "replace").strip()
    return f"{source} answered {fetched.status}" + (f" {said}" if said else "")


def _retry_after(headers: Mapping[str, str]) -> float | None:
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return min(float(value), RETRY_MAX_S)
            except ValueError:
                return None
    return None
