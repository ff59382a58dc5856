"""The requests a server link sent and awaits replies to, and :class:`LinkGone`.

``register`` and ``unregister`` carry a ``req``, and so do their replies (``registered``,
``unregistered``, ``error``): :class:`Replies` keeps each request until the reply with its
``req`` arrives. When the session ends, every request still waiting gets none, and whoever
waits for it gets :class:`LinkGone`.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from aoi.core.messages import Message


class LinkGone(Exception):
    """The session ended before the request was answered."""


@dataclass(slots=True)
class Waiter:
    key: str  # app_id or token
    done: trio.Event
    reply: Message | None = None


class Replies:
    """One session's requests awaiting their reply, by ``req``."""

    __slots__ = ("_waiting",)

    def __init__(self) -> None:
        self._waiting: dict[int, Waiter] = {}

    def expect(self, req: int, key: str) -> Waiter:
        """The request ``req``, about ``key``, was sent: its reply is awaited."""
        waiter = Waiter(key, trio.Event())
        self._waiting[req] = waiter
        return waiter

    def answer(self, req: int, reply: Message) -> None:
        waiter = self._waiting.pop(req, None)
        if waiter is not None:
            waiter.reply = reply
            waiter.done.set()

    def end(self) -> None:
        """The session ended: no request still waiting will be answered."""
        for waiter in self._waiting.values():
            waiter.done.set()
        self._waiting.clear()

    @staticmethod
    async def wait(waiters: list[Waiter], link: str) -> list[tuple[Waiter, Message]]:
        """Each request with its reply, once all are answered; :class:`LinkGone` (naming
        ``link``) if the session ended first."""
        for waiter in waiters:
            await waiter.done.wait()
        replies = []
        for waiter in waiters:
            if waiter.reply is None:
                raise LinkGone(link)
            replies.append((waiter, waiter.reply))
        return replies
