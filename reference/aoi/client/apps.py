"""An app as the AOI Client knows it: its registration, and the AOI-1 connection serving it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from aoi.core.messages import Message

if TYPE_CHECKING:
    from .group import Group
    from .server_link import ServerLink


@dataclass(frozen=True, slots=True)
class Registration:
    """A token and endpoint on one server."""

    server_id: str
    token: str
    endpoint: str

    def to_json(self) -> dict[str, str]:
        return {"server_id": self.server_id, "token": self.token, "endpoint": self.endpoint}

    @classmethod
    def from_json(cls, data: Any) -> Registration | None:
        if not isinstance(data, dict):
            return None
        try:
            return cls(str(data["server_id"]), str(data["token"]), str(data["endpoint"]))
        except KeyError:
            return None


@dataclass(slots=True)
class InFlight:
    """A notification handed to an app and not yet acknowledged by it."""

    app_id: str
    link: ServerLink
    expires_at: float  # created_at + ttl_s, seconds since the epoch: how long its id is kept


class AppPeer(Protocol):
    """An AOI-1 connection, as the rest of the client uses it."""

    apps: set[str]
    inflight: dict[str, InFlight]

    def send(self, message: Message) -> bool: ...


@dataclass(eq=False, slots=True)
class App:
    app_id: str
    provider: str | None  # as the app asked; None: the default provider
    registration: Registration | None = None  # on the server now serving it (or last did)
    told: Registration | None = None  # the registration the app was last told of
    # Tokens on servers the app was moved away from (server_id -> token): they stay in those
    # servers' sessions, to be served again if the app comes back, until it unregisters.
    previous: dict[str, str] = field(default_factory=dict)
    conn: AppPeer | None = None
    awaiting: bool = False  # its app_register is not answered yet
    failed: bool = False  # told connection_failed, not yet connection_restored
    group: Group | None = field(default=None, repr=False)

    def tell(self, message: Message) -> bool:
        """Send ``message`` to the app's connection; False if it is not connected."""
        return self.conn is not None and self.conn.send(message)

    def to_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "registration": self.registration.to_json() if self.registration else None,
            "told": self.told.to_json() if self.told else None,
            "previous": dict(self.previous),
        }

    @classmethod
    def from_json(cls, app_id: str, data: dict[str, Any]) -> App:
        return cls(
            app_id,
            data.get("provider"),
            registration=Registration.from_json(data.get("registration")),
            told=Registration.from_json(data.get("told")),
            previous=dict(data.get("previous") or {}),
        )

    def moved_to(self, new: Registration) -> None:
        """Now registered as ``new``: remember the token left behind elsewhere."""
        old = self.registration
        if old is not None and old.server_id != new.server_id:
            self.previous[old.server_id] = old.token
        self.previous.pop(new.server_id, None)
        self.registration = new
