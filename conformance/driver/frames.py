"""What the suite's AOI-2 connections record, whether the suite is the client
(:mod:`conformance.driver.aoi2`) or the server (:mod:`conformance.driver.aoi2_listener`):
each message received (:class:`Frame`), how a connection ended (:class:`Closed`) and how
its upgrade went (:class:`Handshake`); with the subprotocol they speak and the close code
of a connection that ended without a close frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SUBPROTOCOL = "aoi.v1"
ABNORMAL = 1006  # the TCP connection ended without a close frame


@dataclass
class Frame:
    """One message received from the target."""

    seq: int
    at: float  # time.monotonic()
    raw: str | bytes
    message: dict[str, Any] | None  # the JSON object, when it is one
    problems: list[str]  # why it is not a valid AOI-2 message (empty when it is)
    consumed: bool = False

    @property
    def type(self) -> str | None:
        return self.message.get("type") if self.message else None

    def get(self, key: str, default: Any = None) -> Any:
        return self.message.get(key, default) if self.message else default


@dataclass(frozen=True, slots=True)
class Closed:
    code: int  # 1006 when the connection ended without a close frame
    reason: str
    at: float  # time.monotonic()
    by_target: bool
    lost: bool = False  # the TCP connection ended (reset, EOF) without a close frame


@dataclass(frozen=True, slots=True)
class Handshake:
    accepted: bool
    status: int | None = None  # HTTP status of a refused upgrade
    subprotocol: str | None = None
    error: str = ""  # why no upgrade answer came (connection, TLS, timeout)
    at: float = 0.0  # when the connection was established
    reached: bool = False  # a TCP connection was made (TLS and the upgrade may still fail)
