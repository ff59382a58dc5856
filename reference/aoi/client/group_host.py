"""What a group needs from the client around it: :class:`GroupHost`, which the binding is.

A group owns its Reallocator and its apps' bindings, nothing else: sessions are shared
between groups, state on disk and the apps' deliveries belong to the whole client, so for
those the group asks its host.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import trio

from aoi.core.policy import ServerEntry
from aoi.core.reallocation import Outcome

from .apps import App, Registration
from .server_link import Attempt, ServerLink

if TYPE_CHECKING:
    from .group import Group


class GroupHost(Protocol):
    """What a group needs from the client around it (the binding)."""

    request_timeout_s: float
    nursery: trio.Nursery  # for work that outlives the group (unregistering, leaving)

    async def attempt(self, group: Group, server: ServerEntry, *, probe: bool) -> Attempt: ...
    def unsubscribe(self, group: Group, link: ServerLink) -> None: ...
    def note_cool(self, group: Group, server_id: str, until: float, outcome: Outcome) -> None: ...
    def saved(self, app: App) -> None: ...
    def release(self, app: App) -> None: ...
    def retire(self, provider: str, app: App, old: Registration) -> None: ...
    def group_empty(self, group: Group) -> None: ...
