"""Who may talk to the AOI Server: AOI Clients at ``hello`` and server apps on AOI-3.

Secrets are never kept: the configuration holds SHA-256 digests, and a presented secret is
hashed before anything looks at it. Client credentials are compared in constant time, with
the same work for an unknown client id, so neither the comparison nor the lookup tells an
attacker which ids exist or how much of a credential was right (AOI-SEC-003). Failed hellos
are counted per client id and per source address, and past a limit the server answers
``rate_limited`` without checking any more guesses.

Everything here is I/O-free; time is an argument.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aoi.core.token_bucket import TokenBucket

if TYPE_CHECKING:
    from .config import ClientEntry, ServerAppEntry


def digest(secret: str) -> str:
    """The SHA-256 hex digest (lower case) of a secret's UTF-8 bytes, as configured."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


class ClientCredentials:
    """The AOI Clients this server knows, by client id."""

    def __init__(self, digests: Mapping[str, str], providers: Mapping[str, str] | None = None):
        """``digests`` maps a client id to the SHA-256 hex digest of its credential;
        ``providers`` a client id to the provider it belongs to, where configured."""
        self._digests = {client_id: bytes.fromhex(d) for client_id, d in digests.items()}
        self._providers = dict(providers or {})
        # Matches nothing (nobody knows its preimage), so an unknown id costs the same
        # hash-and-compare as a known one.
        self._dummy = secrets.token_bytes(32)

    @classmethod
    def from_config(cls, clients: Iterable[ClientEntry]) -> ClientCredentials:
        entries = list(clients)
        return cls(
            {c.client_id: c.credential_sha256 for c in entries},
            {c.client_id: c.provider for c in entries if c.provider is not None},
        )

    def check(self, client_id: str, credential: str) -> bool:
        """Whether ``credential`` is ``client_id``'s, in time that depends on neither."""
        expected = self._digests.get(client_id)
        presented = hashlib.sha256(credential.encode("utf-8")).digest()
        same = hmac.compare_digest(presented, self._dummy if expected is None else expected)
        return same and expected is not None

    def provider_of(self, client_id: str) -> str | None:
        """The provider a client is provisioned for, if the configuration names one."""
        return self._providers.get(client_id)

    def __contains__(self, client_id: object) -> bool:
        return client_id in self._digests

    def __len__(self) -> int:
        return len(self._digests)


@dataclass(frozen=True, slots=True)
class ServerApp:
    """A server app allowed on AOI-3: it may push to tokens of ``app_ids`` only (403
    otherwise), at ``rate_per_s`` on average and ``burst`` at once (429 otherwise)."""

    name: str
    app_ids: frozenset[str]
    rate_per_s: float
    burst: int


class ServerAppKeys:
    """Server apps by key, and each one's push rate."""

    def __init__(self, apps: Iterable[tuple[str, ServerApp]]) -> None:
        """``apps`` pairs the SHA-256 hex digest of a key with the app it identifies."""
        # A plain dict lookup by digest is safe: the timing of a hash-table probe can at best
        # reveal something about the digest of a guess, which tells nothing about a key.
        self._by_digest: dict[str, ServerApp] = {}
        self._buckets: dict[str, TokenBucket] = {}
        for key_digest, app in apps:
            self._by_digest[key_digest.lower()] = app
            self._buckets[app.name] = TokenBucket(app.rate_per_s, app.burst)

    @classmethod
    def from_config(cls, server_apps: Iterable[ServerAppEntry]) -> ServerAppKeys:
        return cls(
            (e.key_sha256, ServerApp(e.name, frozenset(e.app_ids), e.rate_per_s, e.burst))
            for e in server_apps
        )

    def identify(self, key: str) -> ServerApp | None:
        """The server app whose key this is (the bearer token of AOI-3), or ``None`` (401)."""
        return self._by_digest.get(digest(key))

    def take(self, app_name: str, now: float) -> float | None:
        """Spend one push of ``app_name``'s rate: ``None`` if allowed, else the seconds
        after which one will be (the 429's ``Retry-After``)."""
        bucket = self._buckets[app_name]
        if bucket.take(now):
            return None
        return bucket.retry_after(now)


class FailedHelloLimiter:
    """Failed hellos per client id and per source address in a sliding window.

    After ``limit`` failures within ``window_s`` under either key, :meth:`blocked` says how
    long to refuse (``reject{rate_limited}``) before checking credentials again. Memory is
    bounded: a key keeps at most ``limit`` failure times, keys whose failures all left the
    window are dropped, and beyond ``max_keys`` the least recently failed key goes first.
    """

    def __init__(self, limit: int, window_s: float, max_keys: int = 100_000) -> None:
        if limit < 1 or not window_s > 0 or max_keys < 1:
            raise ValueError("limit and max_keys must be at least 1, window_s above 0")
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        # Least recently failed first; each deque holds the newest ``limit`` failure times,
        # all that is needed to know whether ``limit`` of them fall within the window.
        self._failures: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()

    def blocked(self, client_id: str, source: str, now: float) -> float | None:
        """``None`` if a hello from ``source`` for ``client_id`` may be checked now, else
        the seconds until it may. Hellos refused here should not be reported as failed:
        they tested no credential, and counting them would only lengthen the block."""
        waits = [self._wait(key, now) for key in self._keys(client_id, source)]
        longest = max(waits)
        return longest if longest > 0 else None

    def failed(self, client_id: str, source: str, now: float) -> None:
        """A hello from ``source`` for ``client_id`` had wrong credentials."""
        self._forget_old(now)
        for key in self._keys(client_id, source):
            times = self._failures.get(key)
            if times is None:
                times = self._failures[key] = deque(maxlen=self.limit)
            else:
                self._failures.move_to_end(key)
            times.append(now)
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)

    def succeeded(self, client_id: str, source: str) -> None:
        """``client_id`` authenticated: its own count starts afresh. The source's does not,
        or one valid credential would let its holder reset the count between guesses at
        other clients' credentials."""
        del source  # deliberately kept, see above
        self._failures.pop(("client", client_id), None)

    def __len__(self) -> int:
        return len(self._failures)

    def _wait(self, key: tuple[str, str], now: float) -> float:
        times = self._failures.get(key)
        if times is None or len(times) < self.limit:
            return 0.0
        # ``times`` is full: the block lasts until its oldest failure leaves the window
        # (never longer than the window: the sum may round one ulp past it).
        return min(self.window_s, times[0] + self.window_s - now)

    def _forget_old(self, now: float) -> None:
        while self._failures:
            key, times = next(iter(self._failures.items()))
            if times[-1] > now - self.window_s:
                return
            del self._failures[key]

    @staticmethod
    def _keys(client_id: str, source: str) -> tuple[tuple[str, str], tuple[str, str]]:
        return ("client", client_id), ("source", source)
