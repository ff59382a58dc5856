"""What arrives in a group's inbox: apps joining and leaving, the results of its attempts,
and the end of the session it was served by.

The group's task takes them one at a time (:meth:`aoi.client.group.Group.run`); the binding
posts the apps' and the links' events, the group's own attempts post their results.
"""

from __future__ import annotations

from dataclasses import dataclass

from .apps import App, AppPeer
from .server_link import Attempt, ServerLink


@dataclass(frozen=True, slots=True)
class AppJoin:
    app: App


@dataclass(frozen=True, slots=True)
class AppLeave:
    app: App
    reply_to: AppPeer | None


@dataclass(frozen=True, slots=True)
class AttemptDone:
    seq: int
    probe: bool
    attempt: Attempt


@dataclass(frozen=True, slots=True)
class LinkDown:
    link: ServerLink


GroupEvent = AppJoin | AppLeave | AttemptDone | LinkDown
