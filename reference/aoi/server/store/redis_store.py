"""The store on Redis, for a fleet of servers sharing one provider's state.

Every write is one Lua script (:mod:`.redis_scripts`), atomic, and durable on return as far
as Redis's persistence makes it (``scripts/redis`` starts it with ``appendfsync always``).
Keys carry the client's route as a hash tag (:mod:`.routes`). The set of routes in use
(``PREFIX:routes``) is what :meth:`load`, :meth:`expire` and :meth:`purge` walk.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import trio

from . import redis_scripts as lua
from .base import (
    FINISHED,
    Registration,
    Snapshot,
    Status,
    StoreClosed,
    StoreConflict,
    StoredNotification,
    StoreError,
    StoreGone,
)
from .redis_client import RedisClient
from .resp import Arg, RedisError, ReplyError, Script
from .routes import route_of, route_of_client


class RedisStore:
    """The :class:`~aoi.server.store.base.Store` on a Redis at ``url``."""

    def __init__(self, url: str, *, prefix: str = "aoi", timeout_s: float = 5.0) -> None:
        self.url = url
        self.prefix = prefix
        self.timeout_s = timeout_s  # a call that waits longer for Redis fails
        self.commits = 0
        self.ops_committed = 0
        self.ops_failed = 0
        self.failure: str | None = None
        self._client: RedisClient | None = None
        self._pending = 0
        self._started = False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self._started:
            raise RuntimeError("a RedisStore runs once; open a new one on the same Redis")
        self._started = True
        client = RedisClient(self.url)
        async with trio.open_nursery() as nursery:
            try:
                await nursery.start(client.run)
            except RedisError as exc:  # no Redis at start-up: the store cannot open
                raise StoreError(str(exc)) from exc
            self._client = client
            try:
                task_status.started()
                await trio.sleep_forever()
            finally:
                self._client = None
                nursery.cancel_scope.cancel()

    def backlog(self) -> int:
        return self._pending

    # --- plumbing ------------------------------------------------------------------------

    def _redis(self) -> RedisClient:
        if self._client is None:
            raise StoreClosed("the store is not running")
        return self._client

    def _key(self, route: str, kind: str, name: str = "") -> str:
        return f"{self.prefix}{{{route}}}:{kind}:{name}"

    async def _call(self, command: Any, *args: Any) -> Any:
        redis = self._redis()
        try:
            with trio.fail_after(self.timeout_s):
                return await command(redis, *args)
        except trio.TooSlowError as exc:
            raise StoreError(f"Redis did not answer in {self.timeout_s} s") from exc
        except ReplyError as exc:
            raise StoreError(f"Redis refused: {exc}") from exc
        except OSError as exc:
            raise StoreError(f"Redis unreachable: {exc}") from exc
        except Exception as exc:
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"{type(exc).__name__}: {exc}") from exc

    async def _write(self, script: Script, args: Sequence[Arg], route: str) -> Any:
        redis = self._redis()
        self._pending += 1
        try:
            with trio.fail_after(self.timeout_s):
                await redis.execute("SADD", f"{self.prefix}:routes", route)
                result = await redis.run_script(script, (), (self.prefix, *args))
        except ReplyError as exc:
            self.ops_failed += 1
            if "CONFLICT" in str(exc):
                raise StoreConflict(str(exc)) from exc
            if str(exc).startswith("GONE "):
                raise StoreGone(str(exc)[5:]) from exc
            raise StoreError(f"Redis refused: {exc}") from exc
        except (Exception, trio.TooSlowError) as exc:
            self.ops_failed += 1
            self.failure = f"Redis: {type(exc).__name__} {exc}"
            raise StoreError(f"Redis: {exc}") from exc
        finally:
            self._pending -= 1
        self.failure = None
        self.commits += 1
        self.ops_committed += 1
        return result

    # --- writes --------------------------------------------------------------------------

    async def add_registration(self, reg: Registration) -> None:
        cr = route_of_client(reg.client_id)
        args = (reg.token, reg.client_id, reg.app_id, repr(reg.created_at), int(reg.active), cr)
        await self._write(lua.ADD_REGISTRATION, args, cr)

    async def deactivate_registration(self, token: str, at: float) -> None:
        await self._write(lua.DEACTIVATE_REGISTRATION, (token, repr(at)), route_of(token))

    async def add_notification(self, n: StoredNotification, replaces: Sequence[str] = ()) -> None:
        await self.add_notifications([(n, replaces)])

    async def add_notifications(
        self, batch: Sequence[tuple[StoredNotification, Sequence[str]]]
    ) -> None:
        await self.add_collapsing(batch)

    async def add_collapsing(
        self,
        batch: Sequence[tuple[StoredNotification, Sequence[str]]],
        collapse_queued: frozenset[str] = frozenset(),
    ) -> list[str]:
        """:meth:`add_notifications`, for a fleet's node; a notification of a client in
        ``collapse_queued`` also replaces the queued notifications of its token with its
        collapse key that Redis holds (the client's queue is not in this server's memory).
        Returns the ids cancelled as replaced; :class:`StoreGone` for an inactive token."""
        if not batch:
            return []
        args: list[Arg] = [len(batch)]
        for n, replaces in batch:
            args += [
                n.id, n.token, n.client_id, n.app_id, n.payload, n.priority, n.ttl_s,
                repr(n.created_at), repr(n.expires_at),
                "" if n.collapse_key is None else "=" + n.collapse_key, n.pushed_by,
                n.status, "" if n.status_at is None else repr(n.status_at),
                route_of_client(n.client_id), int(n.client_id in collapse_queued),
                len(replaces), *replaces,
            ]  # fmt: skip
        route = route_of_client(batch[0][0].client_id)
        cancelled = await self._write(lua.ADD_NOTIFICATIONS, args, route)
        return [id.decode() for id in cancelled]

    async def set_status(self, ids: Sequence[str], status: str, at: float) -> None:
        if Status(status) not in FINISHED:
            raise ValueError("a notification never goes back to queued")
        if ids:
            await self._write(lua.SET_STATUS, (status, repr(at), *ids), route_of(ids[0]))

    async def set_session(self, client_id: str, session_id: str) -> None:
        cr = route_of_client(client_id)
        await self._write(lua.SET_SESSION, (cr, client_id, session_id), cr)

    async def probe(self) -> None:
        await self._call(lambda r: r.execute("PING"))
        self.failure = None

    async def _routes(self) -> list[str]:
        routes = await self._call(lambda r: r.execute("SMEMBERS", f"{self.prefix}:routes"))
        return sorted(route.decode() for route in routes)

    async def expire(self, now: float) -> list[str]:
        expired: list[str] = []
        for route in await self._routes():
            ids = await self._write(lua.EXPIRE, (route, repr(now)), route)
            expired += [id.decode() for id in ids]
        return expired

    async def purge(self, before: float) -> int:
        total = 0
        for route in await self._routes():
            total += await self._write(lua.PURGE, (route, repr(before)), route)
        return total

    # --- reads ---------------------------------------------------------------------------

    async def _hashes(self, keys: Sequence[str]) -> list[dict[str, str]]:
        if not keys:
            return []
        replies = await self._call(lambda r: r.pipeline([("HGETALL", k) for k in keys]))
        return [_decode(reply) for reply in replies]

    async def _registrations(self, tokens: Sequence[str]) -> list[Registration]:
        hashes = await self._hashes([self._key(route_of(t), "reg", t) for t in tokens])
        found = [(h, t) for h, t in zip(hashes, tokens, strict=True) if h]
        found.sort(key=lambda ht: (float(ht[0]["created_at"]), int(ht[0]["seq"])))
        return [_registration(t, h) for h, t in found]

    async def _notifications(self, ids: Sequence[str]) -> list[StoredNotification]:
        hashes = await self._hashes([self._key(route_of(id), "n", id) for id in ids])
        found = [(h, id) for h, id in zip(hashes, ids, strict=True) if h]
        found.sort(key=lambda hi: (float(hi[0]["created_at"]), int(hi[0]["seq"])))
        return [_notification(id, h) for h, id in found]

    async def _list(self, key: str, read: str = "LRANGE") -> list[str]:
        """A list's items (or a sorted set's members, ``read="ZRANGE"``)."""
        found = await self._call(lambda r: r.execute(read, key, 0, -1))
        return [v.decode() for v in found]

    async def load(self) -> Snapshot:
        tokens: list[str] = []
        ids: list[str] = []
        sessions: dict[str, str] = {}
        for route in await self._routes():
            tokens += await self._list(self._key(route, "tokens"))
            ids += await self._list(self._key(route, "exp"), "ZRANGE")
            sessions.update((await self._hashes([self._key(route, "sessions")]))[0])
        return Snapshot(
            tuple(await self._registrations(tokens)),
            tuple(n for n in await self._notifications(ids) if n.status == Status.QUEUED),
            sessions,
        )

    async def get_notification(self, id: str) -> StoredNotification | None:
        found = await self._notifications([id])
        return found[0] if found else None

    async def get_registration(self, token: str) -> Registration | None:
        found = await self._registrations([token])
        return found[0] if found else None

    async def registrations_of(self, client_id: str) -> tuple[Registration, ...]:
        tokens = await self._list(self._key(route_of_client(client_id), "regs", client_id))
        return tuple(r for r in await self._registrations(tokens) if r.active)

    async def get_session(self, client_id: str) -> str | None:
        key = self._key(route_of_client(client_id), "sessions")
        value = await self._call(lambda r: r.execute("HGET", key, client_id))
        return None if value is None else value.decode()

    async def queued_for(self, client_id: str) -> tuple[StoredNotification, ...]:
        ids = await self._list(self._key(route_of_client(client_id), "q", client_id))
        return tuple(n for n in await self._notifications(ids) if n.status == Status.QUEUED)


def _decode(reply: Any) -> dict[str, str]:
    if isinstance(reply, ReplyError):
        raise StoreError(f"Redis refused: {reply}")
    items = [v.decode() for v in reply]
    return dict(zip(items[::2], items[1::2], strict=True))


def _registration(token: str, h: dict[str, str]) -> Registration:
    return Registration(
        token, h["client_id"], h["app_id"], float(h["created_at"]), h["active"] == "1"
    )


def _notification(id: str, h: dict[str, str]) -> StoredNotification:
    return StoredNotification(
        id=id, token=h["token"], client_id=h["client_id"], app_id=h["app_id"],
        payload=h["payload"], priority=h["priority"], ttl_s=int(h["ttl_s"]),
        created_at=float(h["created_at"]), expires_at=float(h["expires_at"]),
        collapse_key=h.get("collapse_key"), pushed_by=h["pushed_by"], status=h["status"],
        status_at=float(h["status_at"]) if "status_at" in h else None,
    )  # fmt: skip
