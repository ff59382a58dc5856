"""Typed, frozen AOI-1 and AOI-2 messages.

Each class mirrors one schema in ``schemas/aoi1`` or ``schemas/aoi2``; optional members
are ``None`` when absent and are left out on the wire. Unknown members received are ignored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar


class Priority(StrEnum):
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


class RejectReason(StrEnum):
    INVALID_CREDENTIALS = "invalid_credentials"
    FORBIDDEN = "forbidden"
    OVERLOADED = "overloaded"
    RATE_LIMITED = "rate_limited"
    UNSUPPORTED_VERSION = "unsupported_version"


class FailReason(StrEnum):
    """``connection_failed.reason`` on AOI-1."""

    OVERLOADED = "overloaded"
    UNREACHABLE = "unreachable"
    REJECTED = "rejected"
    EXHAUSTED = "exhausted"


PROTOCOL_VERSION = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class Message:
    """A message of AOI-1 or AOI-2; ``type`` names it on the wire."""

    type: ClassVar[str]

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"type": self.type}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None:
                continue
            if isinstance(value, Limits):
                value = dataclasses.asdict(value)
            elif isinstance(value, tuple):
                value = list(value)
            wire[field.name] = value
        return wire

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> Message:
        """Build from a schema-valid object, ignoring members this version doesn't know."""
        kwargs: dict[str, Any] = {}
        for name in _field_names(cls):
            if name in wire:
                value = wire[name]
                if name == "limits":
                    value = Limits(**{k: value[k] for k in ("max_payload", "max_apps")})
                elif isinstance(value, list):
                    value = tuple(value)
                kwargs[name] = value
        return cls(**kwargs)


_FIELDS: dict[type[Message], tuple[str, ...]] = {}


def _field_names(cls: type[Message]) -> tuple[str, ...]:
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls))
    return names


@dataclass(frozen=True, slots=True)
class Limits:
    max_payload: int
    max_apps: int


# --- AOI-2, client to server -------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello(Message):
    type: ClassVar[str] = "hello"
    version: int
    client_id: str
    credential: str
    provider: str | None = None
    session: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Register(Message):
    type: ClassVar[str] = "register"
    req: int
    app_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Unregister(Message):
    type: ClassVar[str] = "unregister"
    req: int
    token: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Ack(Message):
    type: ClassVar[str] = "ack"
    ids: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Nack(Message):
    type: ClassVar[str] = "nack"
    id: str
    reason: str


# --- AOI-2, both directions --------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping(Message):
    type: ClassVar[str] = "ping"
    ts: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Pong(Message):
    type: ClassVar[str] = "pong"
    ts: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Bye(Message):
    type: ClassVar[str] = "bye"
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Error(Message):
    """``error`` on AOI-2 and AOI-1 (``req`` only on AOI-2)."""

    type: ClassVar[str] = "error"
    code: str
    detail: str
    fatal: bool
    req: int | None = None


# --- AOI-2, server to client -------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Welcome(Message):
    type: ClassVar[str] = "welcome"
    server_id: str
    session: str
    keepalive_s: int
    limits: Limits
    resumed: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Reject(Message):
    type: ClassVar[str] = "reject"
    reason: str
    retry_after_s: float | None = None
    servers: tuple[str, ...] | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Registered(Message):
    type: ClassVar[str] = "registered"
    req: int
    app_id: str
    token: str
    endpoint: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Unregistered(Message):
    type: ClassVar[str] = "unregistered"
    req: int
    token: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Notify(Message):
    type: ClassVar[str] = "notify"
    id: str
    token: str
    app_id: str
    payload: str
    priority: str
    ttl_s: int
    created_at: str
    collapse_key: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Redirect(Message):
    type: ClassVar[str] = "redirect"
    reason: str
    servers: tuple[str, ...] | None = None
    retry_after_s: float | None = None


# --- AOI-1 -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AppRegister(Message):
    type: ClassVar[str] = "app_register"
    app_id: str
    provider: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AppUnregister(Message):
    type: ClassVar[str] = "app_unregister"
    app_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AppAck(Message):
    type: ClassVar[str] = "app_ack"
    id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AppRegistered(Message):
    type: ClassVar[str] = "app_registered"
    app_id: str
    token: str
    endpoint: str
    server_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AppUnregistered(Message):
    type: ClassVar[str] = "app_unregistered"
    app_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AppNotification(Message):
    type: ClassVar[str] = "app_notification"
    id: str
    payload: str
    priority: str
    created_at: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrationChanged(Message):
    type: ClassVar[str] = "registration_changed"
    app_id: str
    token: str
    endpoint: str
    server_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionFailed(Message):
    type: ClassVar[str] = "connection_failed"
    app_id: str
    reason: str
    fallback: str = "direct"
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionRestored(Message):
    type: ClassVar[str] = "connection_restored"
    app_id: str
    server_id: str


def _by_type(*classes: type[Message]) -> dict[str, type[Message]]:
    return {cls.type: cls for cls in classes}


AOI2_MESSAGES = _by_type(
    Hello, Register, Unregister, Ack, Nack, Ping, Pong, Bye, Error,
    Welcome, Reject, Registered, Unregistered, Notify, Redirect,
)  # fmt: skip
AOI1_MESSAGES = _by_type(
    AppRegister, AppUnregister, AppAck, AppRegistered, AppUnregistered, AppNotification,
    RegistrationChanged, ConnectionFailed, ConnectionRestored, Error,
)  # fmt: skip
