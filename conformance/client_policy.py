"""The AOI Service Providers the suite plays in client mode: the policy document a scenario
writes (:class:`PolicySpec`, docs/protocol.md 4.2) and the provider that serves it on its
provisioning endpoint (:class:`Provider`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from conformance.driver.provisioning import ProvisioningEndpoint, Refusal

if TYPE_CHECKING:
    from conformance.client_stage import Stage


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class PolicySpec:
    """A provider's policy document as the scenario writes it (docs/protocol.md 4.2)."""

    provider: str
    servers: list[tuple[str, int]] = field(default_factory=list)  # (server name, priority)
    selection: str = "ordered"
    on_overload: str = "next_server"
    on_unreachable: str = "next_server"
    max_servers_tried: int | None = None  # default: every server
    backoff: dict[str, Any] = field(
        default_factory=lambda: {
            "initial_ms": 100,
            "max_ms": 1000,
            "multiplier": 2.0,
            "jitter": "full",
        }
    )
    return_to_preferred_after_s: int = 0
    notify_app: bool = True
    multi_server: dict[str, Any] = field(
        default_factory=lambda: {"allowed": False, "max_concurrent": 1}
    )
    keepalive_s: int = 60
    app_routes: list[dict[str, Any]] = field(default_factory=list)
    policy_version: int = 1
    # What is served instead of the document (an invalid one, say), when set.
    replacement: Callable[[dict[str, Any]], Any] | None = None

    def document(self, urls: dict[str, str]) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "policy_version": self.policy_version,
            "valid_until": rfc3339(datetime.now(UTC) + timedelta(days=30)),
            "servers": [
                {"id": name, "url": urls[name], "priority": priority}
                for name, priority in self.servers
            ],
            "selection": self.selection,
            "app_routes": self.app_routes,
            "reallocation": {
                "on_overload": self.on_overload,
                "on_unreachable": self.on_unreachable,
                "max_servers_tried": self.max_servers_tried or max(1, len(self.servers)),
                "backoff": dict(self.backoff),
                "return_to_preferred_after_s": self.return_to_preferred_after_s,
            },
            "fallback": {"notify_app": self.notify_app},
            "multi_server": dict(self.multi_server),
            "keepalive_s": self.keepalive_s,
        }

    @property
    def initial_s(self) -> float:
        return float(self.backoff["initial_ms"]) / 1000

    @property
    def max_s(self) -> float:
        return float(self.backoff["max_ms"]) / 1000

    def cap_s(self, n: int) -> float:
        """The bound of the n-th backoff delay (docs/protocol.md 6.2)."""
        b = self.backoff
        return (
            min(float(b["max_ms"]), float(b["initial_ms"]) * float(b["multiplier"]) ** min(n, 64))
            / 1000
        )


class Provider:
    """One AOI Service Provider the suite plays: its policy and its provisioning endpoint."""

    def __init__(self, stage: Stage, name: str, label: str) -> None:
        self.stage = stage
        self.label = label
        self.policy: PolicySpec | None = None
        self.endpoint = ProvisioningEndpoint(
            stage.portal,
            stage.world.wirelog,
            label,
            self.serve,
            identity=(stage.target.client_id, stage.target.credential),
            on_change=stage.notify,
        )
        self.name = name

    def spec(self) -> PolicySpec:
        if self.policy is None:
            self.policy = PolicySpec(self.name)
        return self.policy

    def serve(self) -> Any:
        """The document of a fetch (called in the portal's thread)."""
        if self.policy is None:  # this scenario has no such provider: come back much later
            return Refusal(503, "overloaded", f"no policy of {self.name} here", 3600)
        urls = {name: self.stage.servers[name].url for name, _ in self.policy.servers}
        document = self.policy.document(urls)
        if self.policy.replacement is not None:
            return self.policy.replacement(document)
        return document
