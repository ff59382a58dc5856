"""A provider as the client knows it: its configuration, and its policy once fetched.

Apps belong to a provider, and the provider's policy shapes their groups: when a new policy
arrives, :func:`same_shape` says whether the groups built from the old one go on serving
under it, or are built again.
"""

from __future__ import annotations

from dataclasses import dataclass

from aoi.core.policy import Policy

from .config import ProviderConfig


@dataclass(slots=True)
class Provider:
    config: ProviderConfig
    policy: Policy | None = None

    @property
    def name(self) -> str | None:
        return self.policy.provider if self.policy is not None else self.config.name


def same_shape(a: Policy, b: Policy) -> bool:
    """Whether the groups built from ``a`` can go on serving under ``b``."""
    return (
        a.provider == b.provider
        and a.servers == b.servers
        and a.selection == b.selection
        and a.reallocation == b.reallocation
        and a.app_routes == b.app_routes
        and (a.multi_server, a.max_concurrent) == (b.multi_server, b.max_concurrent)
    )
