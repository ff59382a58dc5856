"""Apps <-> groups <-> servers: who is served by which session.

An app belongs to its provider (``app_register.provider``, else the first provider) and,
within it, to the group of apps with the same candidate servers (all the provider's servers,
or its ``app_routes`` entry). Each group has its own Reallocator. Sessions are shared: one
:class:`ServerLink` per server, used by every group served there, and closed with ``bye``
when no group needs it any more. The multi_server limits of the policy bound how many
sessions a provider's groups may hold at once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import trio

from aoi.core.codec import Codec
from aoi.core.errors import CloseCode, ErrorCode
from aoi.core.messages import (
    PROTOCOL_VERSION,
    AppRegister,
    AppUnregistered,
    ConnectionFailed,
    Error,
    FailReason,
    Hello,
    Notify,
)
from aoi.core.policy import Policy, ServerEntry
from aoi.core.reallocation import Outcome
from aoi.logs import EventLog

from .apps import App, AppPeer, Registration
from .config import ClientConfig, ProviderConfig
from .delivery import Delivery
from .group import Group
from .group_events import AppJoin, AppLeave, LinkDown
from .providers import Provider, same_shape
from .replies import LinkGone
from .server_link import Attempt, Connector, ServerLink
from .state import State

_log = EventLog("aoi.client.binding")


@dataclass(frozen=True, slots=True)
class _Cool:
    until: float
    outcome: Outcome


class Binding:
    def __init__(
        self,
        config: ClientConfig,
        state: State,
        nursery: trio.Nursery,
        *,
        connect: Connector,
        rng: random.Random,
    ) -> None:
        self.config = config
        self.state = state
        self.nursery = nursery
        self.connect = connect
        self.rng = rng
        self.request_timeout_s = config.request_timeout_s
        self.codec = Codec.from_contract("aoi2")
        self.providers = [Provider(p) for p in config.providers]
        self.apps: dict[str, App] = {}
        self.groups: dict[tuple[str, tuple[str, ...]], Group] = {}
        self.links: dict[str, ServerLink] = {}
        self.cool: dict[str, _Cool] = {}
        self.delivery = Delivery(self.apps, state.seen)
        self.closing = False  # shutting down: no new sessions

    # --- policies and apps ----------------------------------------------------------------

    def restore(self) -> None:
        """The registrations kept from the last run: served again as soon as possible."""
        for app_id, record in self.state.registrations.items():
            if app_id not in self.apps and isinstance(record, dict):
                self.apps[app_id] = App.from_json(app_id, record)
        for app in self.apps.values():
            self._place(app)

    def set_policy(self, config: ProviderConfig, policy: Policy) -> None:
        provider = next(p for p in self.providers if p.config is config)
        old, provider.policy = provider.policy, policy
        if old is not None and same_shape(old, policy):
            for group in self.groups.values():
                if group.provider == policy.provider:
                    group.policy = policy
            return
        if old is not None:
            for group in [g for g in self.groups.values() if g.provider == old.provider]:
                self._drop_group(group)
        for app in self.apps.values():
            if app.group is None:
                self._place(app)

    def app_register(self, conn: AppPeer, message: AppRegister) -> None:
        provider = self._provider(message.provider)
        if message.provider is not None and provider is None and self._all_named():
            names = ", ".join(str(p.name) for p in self.providers)
            detail = f"unknown provider {message.provider!r} (known: {names})"
            conn.send(Error(code=ErrorCode.INVALID_MESSAGE.value, detail=detail, fatal=False))
            return
        app = self.apps.get(message.app_id)
        if app is not None and not self._same_provider(app.provider, message.provider):
            self._forget(app, reply_to=None)  # moving to another provider: a new registration
            app = None
        if app is None:
            app = self.apps[message.app_id] = App(message.app_id, message.provider)
        if app.conn is not None and app.conn is not conn:
            app.conn.apps.discard(app.app_id)  # the newest connection gets the app's traffic
        app.conn = conn
        conn.apps.add(app.app_id)
        app.awaiting, app.failed = True, False
        self.saved(app)
        if app.group is not None:
            app.group.post(AppJoin(app))
        elif self._place(app) is None:
            app.awaiting = False
            reason = FailReason.UNREACHABLE.value
            if app.tell(ConnectionFailed(app_id=app.app_id, reason=reason)):
                app.failed = True

    def app_unregister(self, conn: AppPeer, app_id: str) -> None:
        app = self.apps.get(app_id)
        if app is None:
            conn.send(AppUnregistered(app_id=app_id))
            return
        self._forget(app, reply_to=conn)

    def app_ack(self, conn: AppPeer, notification_id: str) -> None:
        self.delivery.acked(conn, notification_id)

    def app_disconnected(self, conn: AppPeer) -> None:
        for app_id in conn.apps:
            app = self.apps.get(app_id)
            if app is not None and app.conn is conn:
                app.conn = None
                app.awaiting = False
                self.delivery.release(app)
        conn.apps.clear()
        self.delivery.disconnected(conn)

    # --- what groups ask (GroupHost) ------------------------------------------------------

    async def attempt(self, group: Group, server: ServerEntry, *, probe: bool) -> Attempt:
        """Be served by ``server``: its session if there is one, else a new one if allowed."""
        if self.closing:
            await trio.sleep_forever()  # until the shutdown cancels us
        key = f"{group.provider}/{server.id}"
        link = self.links.get(key)
        while link is not None and link.closing:
            await link.done.wait()  # a session on its way out: the next one starts afresh
            link = self.links.get(key)
        if link is None:
            now = trio.current_time()
            cool = self.cool.get(key)
            if cool is not None and now < cool.until:
                # Another group was refused there: no hello before the cool-down ends.
                return Attempt(server.id, cool.outcome, cool.until - now, None, "cooling down")
            if not self._may_open(group, probe):
                _log.info("session_limit", provider=group.provider, server=server.id)
                return Attempt(server.id, Outcome.UNREACHABLE, None, None, "multi_server limit")
            link = self._open(group, server)
        link.subscribers.add(group)
        try:
            await link.settled.wait()
        except BaseException:
            self.unsubscribe(group, link)
            raise
        result = link.attempt
        assert result is not None
        if result.link is None:
            link.subscribers.discard(group)
        return result

    def unsubscribe(self, group: Group, link: ServerLink) -> None:
        link.subscribers.discard(group)
        if not link.subscribers:
            link.goodbye()

    def note_cool(self, group: Group, server_id: str, until: float, outcome: Outcome) -> None:
        self._cool(f"{group.provider}/{server_id}", until, outcome)

    def saved(self, app: App) -> None:
        if self.apps.get(app.app_id) is app:
            self.state.save_registration(app.app_id, app.to_json())

    def retire(self, provider: str, app: App, old: Registration) -> None:
        """Withdraw an unregistered app's token ``old``: now if its server's session is up,
        else when it is next connected."""
        key = f"{provider}/{old.server_id}"
        self.state.add_stale(key, old.token, app.app_id)
        link = self.links.get(key)
        if link is not None and link.established:
            self.nursery.start_soon(self._unregister_stale, link, {old.token: app.app_id})

    def group_empty(self, group: Group) -> None:
        if not group.apps:
            self._drop_group(group)

    # --- what links report (LinkOwner) ----------------------------------------------------

    def link_welcomed(self, link: ServerLink) -> None:
        welcome = link.welcome
        assert welcome is not None
        self.state.save_session(link.key, welcome.session)
        self.cool.pop(link.key, None)
        if welcome.resumed:
            for app in self.apps.values():
                reg = app.registration
                group = app.group
                if (
                    reg
                    and group
                    and group.provider == link.provider
                    and reg.server_id == link.server.id
                ):
                    link.tokens[reg.token] = app.app_id
        stale = dict(self.state.stale.get(link.key, {}))
        if stale:
            self.nursery.start_soon(self._unregister_stale, link, stale)
        if not link.subscribers:
            link.goodbye("not needed any more")

    def link_notified(self, link: ServerLink, notify: Notify) -> None:
        self.delivery.notified(link, notify)

    def release(self, app: App) -> None:
        self.delivery.release(app)

    def link_closed(self, link: ServerLink) -> None:
        if self.links.get(link.key) is link:
            del self.links[link.key]
        now = trio.current_time()
        for result in (link.attempt, link.down):
            if (
                result is not None
                and result.retry_after_s is not None
                and result.outcome in (Outcome.OVERLOADED, Outcome.REDIRECTED, Outcome.REFUSED)
            ):
                self._cool(link.key, now + result.retry_after_s, result.outcome)
        if link.close_code == CloseCode.SESSION_TAKEN_OVER:
            self.state.save_session(link.key, None)  # obsolete: never resume from it
        if link.down is not None:
            for group in list(link.subscribers):
                if isinstance(group, Group):
                    group.post(LinkDown(link))

    # --- shutdown -------------------------------------------------------------------------

    def goodbye_all(self) -> None:
        self.closing = True
        for link in list(self.links.values()):
            link.goodbye("client shutting down")

    # --- machinery ------------------------------------------------------------------------

    def _place(self, app: App) -> Group | None:
        provider = self._provider(app.provider)
        if provider is None or provider.policy is None:
            return None
        policy = provider.policy
        servers = policy.candidates(app.app_id)
        key = (policy.provider, tuple(s.id for s in servers))
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = Group(self, policy.provider, policy, servers, self.rng)
            self.nursery.start_soon(self._run_group, group)
        app.group = group
        group.post(AppJoin(app))
        return group

    async def _run_group(self, group: Group) -> None:
        try:
            await group.run()
        except Exception:
            _log.error("group_failed", provider=group.provider, exc_info=True)
            self._drop_group(group)
            await trio.sleep(1.0)
            for app in list(self.apps.values()):
                if app.group is None:
                    self._place(app)

    def _drop_group(self, group: Group) -> None:
        if self.groups.get(group.key) is group:
            del self.groups[group.key]
        group.stop()
        for app in self.apps.values():  # including those whose AppJoin is still queued
            if app.group is group:
                app.group = None
        for link in list(self.links.values()):
            if group in link.subscribers:
                self.unsubscribe(group, link)

    def _forget(self, app: App, reply_to: AppPeer | None) -> None:
        """The app unregistered (or changes provider): drop it, here and at its server."""
        del self.apps[app.app_id]
        self.state.save_registration(app.app_id, None)
        self.state.seen.forget(app.app_id)
        self.delivery.release(app)  # gone: what waited for it is refused
        if app.conn is not None:
            app.conn.apps.discard(app.app_id)
        if app.group is not None:
            app.group.post(AppLeave(app, reply_to))
            return
        provider = self._provider_name(app)
        if provider is not None:
            for server_id, token in app.previous.items():
                self.retire(provider, app, Registration(server_id, token, ""))
            if app.registration is not None:
                self.retire(provider, app, app.registration)
        if reply_to is not None:
            reply_to.send(AppUnregistered(app_id=app.app_id))

    def _open(self, group: Group, server: ServerEntry) -> ServerLink:
        provider = next(p for p in self.providers if p.name == group.provider)
        client_id, credential = self.config.identity(provider.config)
        key = f"{group.provider}/{server.id}"
        hello = Hello(
            version=PROTOCOL_VERSION,
            client_id=client_id,
            credential=credential,
            provider=group.provider,
            session=self.state.sessions.get(key),
        )
        link = ServerLink(
            group.provider,
            server,
            hello,
            connect=self.connect,
            codec=self.codec,
            owner=self,
            keepalive_cap_s=group.policy.keepalive_s,
            welcome_timeout_s=self.config.welcome_timeout_s,
        )
        self.links[key] = link
        self.nursery.start_soon(link.run)
        return link

    def _may_open(self, group: Group, probe: bool) -> bool:
        policy = group.policy
        limit = policy.max_concurrent if policy.multi_server else 1
        held = [
            link
            for link in self.links.values()
            if link.provider == group.provider and not link.done.is_set()
        ]
        if len(held) < limit:
            return True
        # Returning to a preferred server swaps one session for another.
        current = group.link
        swap = probe and current is not None and current.subscribers == {group}
        return swap and len(held) <= limit

    def _cool(self, key: str, until: float, outcome: Outcome) -> None:
        known = self.cool.get(key)
        if known is None or until > known.until:
            self.cool[key] = _Cool(until, outcome)

    async def _unregister_stale(self, link: ServerLink, stale: dict[str, str]) -> None:
        with trio.move_on_after(self.request_timeout_s):
            try:
                replies = await link.unregister_many(list(stale))
            except LinkGone:
                return
            for token, reply in replies.items():
                if reply.type == "unregistered" or getattr(reply, "code", None) == "unknown_token":
                    self.state.drop_stale(link.key, token=token)
                    _log.info("stale_token_unregistered", server=link.key, app_id=stale[token])

    def _provider(self, name: str | None) -> Provider | None:
        if name is None:
            return self.providers[0]
        return next((p for p in self.providers if p.name == name), None)

    def _same_provider(self, a: str | None, b: str | None) -> bool:
        pa, pb = self._provider(a), self._provider(b)
        return pa is pb if pa is not None and pb is not None else a == b

    def _provider_name(self, app: App) -> str | None:
        provider = self._provider(app.provider)
        return provider.name if provider else None

    def _all_named(self) -> bool:
        return all(p.name is not None for p in self.providers)
