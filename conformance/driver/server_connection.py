"""What the suite's AOI Servers remember of each connection the AOI Client opened, for the
steps to judge: how a ``hello`` is to be answered (:class:`HelloAnswer`), the sessions and
the tokens they issued (:class:`Session`), and every frame with its arrival time
(:class:`ServerConnection`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import trio
from wsproto import WSConnection

from conformance.driver.frames import Closed, Frame


@dataclass(frozen=True, slots=True)
class HelloAnswer:
    """How the server answers one ``hello``: ``welcome``, ``reject`` or ``silent``."""

    kind: str
    reason: str = ""
    retry_after_s: float | None = None
    servers: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.kind != "reject":
            return self.kind
        extra = f", retry_after_s {self.retry_after_s}" if self.retry_after_s is not None else ""
        return f"reject {self.reason}{extra}"


WELCOME = HelloAnswer("welcome")


@dataclass
class Session:
    """The server's memory of one session: its client and the token of each app."""

    id: str
    client_id: str
    tokens: dict[str, str] = field(default_factory=dict)  # app_id -> token


@dataclass
class ServerConnection:
    """One connection the AOI Client opened to a suite server, and all that happened on it."""

    n: int
    label: str
    opened_at: float
    offered: list[str] | None = None  # subprotocols the client offered (None: no upgrade)
    selected: str | None = None
    tls_error: str = ""  # why the TLS handshake failed, when it did
    frames: list[Frame] = field(default_factory=list)  # what the client sent, in order
    hello: Frame | None = None
    answer: HelloAnswer | None = None
    answered_at: float | None = None  # when the welcome or reject was sent
    session: Session | None = None
    resumed: bool = False
    redirected_at: float | None = None
    dropped_at: float | None = None
    closed: Closed | None = None  # by_target: the AOI Client closed it
    stream: trio.abc.Stream | None = field(default=None, repr=False)
    ws: WSConnection | None = field(default=None, repr=False)
    lock: trio.Lock | None = field(default=None, repr=False)
    scope: trio.CancelScope | None = field(default=None, repr=False)
    partial: list[str | bytes] = field(default_factory=list, repr=False)

    @property
    def established(self) -> bool:
        return self.session is not None and self.closed is None

    def received(self, kind: str) -> list[Frame]:
        return [f for f in self.frames if f.type == kind]
