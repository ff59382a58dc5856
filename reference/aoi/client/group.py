"""One group of apps with the same candidate servers, driven by one core Reallocator.

The group's task is the only owner of its Reallocator and of its apps' bindings: events
(attempt results, a lost session, apps joining and leaving: :mod:`.group_events`) arrive in
its inbox and are handled one at a time; the Reallocator's decisions are carried out as they
come: ``Connect`` at its time, ``Fail`` to the apps, ``Served`` by registering the apps there.
"""

from __future__ import annotations

import contextlib
import math
import random

import trio

from aoi.core.messages import (
    AppRegistered,
    AppUnregistered,
    ConnectionFailed,
    ConnectionRestored,
    FailReason,
    Message,
    Registered,
    RegistrationChanged,
)
from aoi.core.policy import Policy, ServerEntry
from aoi.core.reallocation import Connect, Decision, Fail, Outcome, Reallocator, Served
from aoi.logs import EventLog

from .apps import App, AppPeer, Registration
from .group_events import AppJoin, AttemptDone, GroupEvent, LinkDown
from .group_host import GroupHost
from .replies import LinkGone
from .server_link import ServerLink

_log = EventLog("aoi.client.group")
_PROBE = "probe"


class Group:
    def __init__(
        self,
        host: GroupHost,
        provider: str,
        policy: Policy,
        servers: tuple[ServerEntry, ...],
        rng: random.Random,
    ) -> None:
        self.host = host
        self.provider = provider
        self.policy = policy
        self.servers = servers
        self.realloc = Reallocator(policy.reallocation, servers, policy.selection, rng)
        self.apps: dict[str, App] = {}
        self.link: ServerLink | None = None
        self.fail_reason: FailReason | None = None
        self._send, self._inbox = trio.open_memory_channel[GroupEvent](math.inf)
        self._timer_at = math.inf
        self._timer: Connect | str | None = None
        self._seq = 0
        self._main: int | None = None  # the outstanding Connect attempt
        self._probe: int | None = None  # the outstanding return-to-preferred attempt
        self._nursery: trio.Nursery | None = None
        self._stopped = False

    @property
    def key(self) -> tuple[str, tuple[str, ...]]:
        return self.provider, tuple(s.id for s in self.servers)

    def post(self, event: GroupEvent) -> None:
        self._send.send_nowait(event)

    def stop(self) -> None:
        self._stopped = True
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if self._stopped:
                nursery.cancel_scope.cancel()
            _log.info("group_started", provider=self.provider, servers=list(self.key[1]))
            await self._decide(self.realloc.start(trio.current_time()))
            while True:
                event: GroupEvent | None = None
                with trio.move_on_at(self._timer_at):
                    event = await self._inbox.receive()
                if event is None:
                    self._fire()
                else:
                    await self._handle(event)

    # --- decisions ------------------------------------------------------------------------

    async def _decide(self, decision: Decision, link: ServerLink | None = None) -> None:
        if isinstance(decision, Connect):
            self._set_timer(decision.at, decision)
        elif isinstance(decision, Fail):
            self._fail(decision)
            await self._decide(decision.then)
        else:
            assert link is not None
            await self._serve(decision, link)

    def _fire(self) -> None:
        timer, self._timer = self._timer, None
        self._timer_at = math.inf
        now = trio.current_time()
        if isinstance(timer, Connect):
            self._main = self._start_attempt(timer.server, probe=False)
        elif timer == _PROBE:
            target = self.realloc.probe(now)
            if target is None:
                self._set_timer(now + self.policy.reallocation.return_to_preferred_after_s, _PROBE)
            else:
                self._probe = self._start_attempt(target.server, probe=True)

    def _set_timer(self, at: float | None, what: Connect | str) -> None:
        if at is None:
            self._timer, self._timer_at = None, math.inf
        else:
            self._timer, self._timer_at = what, at

    def _start_attempt(self, server: ServerEntry, *, probe: bool) -> int:
        self._seq += 1
        seq = self._seq
        assert self._nursery is not None

        async def attempt() -> None:
            result = await self.host.attempt(self, server, probe=probe)
            self.post(AttemptDone(seq, probe, result))

        self._nursery.start_soon(attempt)
        return seq

    # --- events ---------------------------------------------------------------------------

    async def _handle(self, event: GroupEvent) -> None:
        if isinstance(event, AttemptDone):
            await self._attempt_done(event)
        elif isinstance(event, LinkDown):
            await self._link_down(event.link)
        elif isinstance(event, AppJoin):
            await self._join(event.app)
        else:
            self._leave(event.app, event.reply_to)

    async def _attempt_done(self, event: AttemptDone) -> None:
        result = event.attempt
        if event.probe and event.seq == self._probe:
            self._probe = None
            if self.link is not None and result.link is not None:
                await self._return(result.link)
                return
            if self.link is not None:
                now = trio.current_time()
                again = self.realloc.probe_failed(result.server_id, now, result.retry_after_s)
                self._note_cool(result.server_id, result.outcome)
                self._set_timer(again, _PROBE)
                return
        elif not event.probe and event.seq == self._main:
            self._main = None
            now = trio.current_time()
            decision = self.realloc.report(
                result.server_id, result.outcome, now, result.retry_after_s
            )
            if result.outcome is not Outcome.ACCEPTED:
                self._note_cool(result.server_id, result.outcome)
            await self._decide(decision, result.link)
            return
        if result.link is not None:  # an answer nobody waits for any more
            self.host.unsubscribe(self, result.link)

    async def _link_down(self, link: ServerLink) -> None:
        if link is not self.link or link.down is None:
            return
        self.link = None
        self._probe = None
        now = trio.current_time()
        down = link.down
        # A session we closed ourselves (shutting down) while still serving: as if lost.
        outcome = Outcome.LOST if down.outcome is Outcome.ACCEPTED else down.outcome
        decision = self.realloc.report(link.server.id, outcome, now, down.retry_after_s)
        if outcome is not Outcome.LOST:
            self._note_cool(link.server.id, outcome)
        _log.info(
            "session_down",
            provider=self.provider,
            server=link.server.id,
            outcome="closed" if down.outcome is Outcome.ACCEPTED else outcome.value,
            apps=len(self.apps),
        )
        await self._decide(decision)

    async def _join(self, app: App) -> None:
        self.apps[app.app_id] = app
        app.group = self
        if self.link is not None:
            await self._register([app], reason=None)
        elif self.realloc.failed and self.fail_reason is not None:
            self._tell_failed(app, self.fail_reason, self._next_try_in())
        # else: the first answer comes with the round in progress

    def _leave(self, app: App, reply_to: AppPeer | None) -> None:
        self.apps.pop(app.app_id, None)
        app.group = None
        link = self.link
        registration = app.registration

        async def unregister() -> None:
            for server_id, token in app.previous.items():
                self.host.retire(self.provider, app, Registration(server_id, token, ""))
            if registration is not None:
                done = False
                if link is not None and link.server.id == registration.server_id:
                    with trio.move_on_after(self.host.request_timeout_s):
                        with contextlib.suppress(LinkGone):
                            await link.unregister_many([registration.token])
                            done = True
                if not done:
                    self.host.retire(self.provider, app, registration)
            if reply_to is not None:
                reply_to.send(AppUnregistered(app_id=app.app_id))
            if not self.apps:  # only now: leaving would close the session with bye
                self.host.group_empty(self)

        self.host.nursery.start_soon(unregister)

    # --- carrying out Served and Fail -----------------------------------------------------

    async def _serve(self, served: Served, link: ServerLink) -> None:
        self.link = link
        self.fail_reason = None
        self._set_timer(served.return_at, _PROBE)
        if link.down is not None or link.done.is_set():
            self.post(LinkDown(link))  # it ended before we got here
            return
        _log.info(
            "served",
            provider=self.provider,
            server=served.server.id,
            moved_from=served.moved_from,
            restored=served.restored,
            apps=len(self.apps),
        )
        await self._register(list(self.apps.values()), reason=None)

    async def _register(self, apps: list[App], reason: str | None) -> None:
        link = self.link
        if link is None or not apps:
            return
        replies = await self._register_on(link, apps)
        if replies is None:
            return
        for app in apps:
            reply = replies.get(app.app_id)
            if isinstance(reply, Registered):
                # The token on a server left behind stays registered in that server's
                # session: if the app comes back, it is served under it again.
                self._announce(
                    app, Registration(link.server.id, reply.token, reply.endpoint), reason
                )
            else:
                _log.warning(
                    "register_refused",
                    app_id=app.app_id,
                    server=link.server.id,
                    reply=reply.to_wire() if reply else None,
                )
                self._tell_failed(app, FailReason.EXHAUSTED, None)

    async def _register_on(self, link: ServerLink, apps: list[App]) -> dict[str, Message] | None:
        with trio.move_on_after(self.host.request_timeout_s):
            try:
                return dict(await link.register_many([a.app_id for a in apps]))
            except LinkGone:
                return None  # its LinkDown is on the way
        link.abort("no answer to register")
        return None

    async def _return(self, link: ServerLink) -> None:
        """Return to a preferred server: register there first, then leave the old one."""
        old = self.link
        apps = list(self.apps.values())
        replies = await self._register_on(link, apps) if apps else {}
        now = trio.current_time()
        if replies is None or not all(isinstance(r, Registered) for r in replies.values()):
            self._set_timer(self.realloc.probe_failed(link.server.id, now), _PROBE)
            self.host.unsubscribe(self, link)
            return
        served = self.realloc.report(link.server.id, Outcome.ACCEPTED, now)
        assert isinstance(served, Served)
        self.link = link
        self._set_timer(served.return_at, _PROBE)
        _log.info(
            "returned_to_preferred",
            provider=self.provider,
            server=link.server.id,
            left=old.server.id if old else None,
            apps=len(apps),
        )
        leaving: dict[str, App] = {}
        for app in apps:
            reply = replies[app.app_id]
            assert isinstance(reply, Registered)
            previous = app.registration
            self._announce(
                app,
                Registration(link.server.id, reply.token, reply.endpoint),
                "returned_to_preferred",
            )
            if old is not None and previous is not None and previous.server_id == old.server.id:
                leaving[previous.token] = app
        if old is not None:
            self.host.nursery.start_soon(self._leave_server, old, leaving)

    async def _leave_server(self, link: ServerLink, leaving: dict[str, App]) -> None:
        if leaving:
            with trio.move_on_after(self.host.request_timeout_s):
                with contextlib.suppress(LinkGone):
                    replies = await link.unregister_many(list(leaving))
                    gone = link.server.id
                    for token, reply in replies.items():
                        app = leaving[token]
                        if reply.type == "unregistered" and app.previous.get(gone) == token:
                            del app.previous[gone]
                            self.host.saved(app)
        self.host.unsubscribe(self, link)

    def _announce(self, app: App, new: Registration, reason: str | None) -> None:
        """Tell the app where it is served now, as its history requires."""
        app.moved_to(new)
        if app.awaiting:
            app.awaiting = False
            if app.tell(
                AppRegistered(
                    app_id=app.app_id,
                    token=new.token,
                    endpoint=new.endpoint,
                    server_id=new.server_id,
                )
            ):
                app.told = new
        elif app.told != new and app.conn is not None:
            if reason is None:
                same_server = app.told is not None and app.told.server_id == new.server_id
                reason = "resumed_elsewhere" if same_server else "reallocated"
            if app.tell(
                RegistrationChanged(
                    app_id=app.app_id,
                    token=new.token,
                    endpoint=new.endpoint,
                    server_id=new.server_id,
                    reason=reason,
                )
            ):
                app.told = new
                _log.info(
                    "registration_changed", app_id=app.app_id, server=new.server_id, reason=reason
                )
        if app.failed and app.tell(ConnectionRestored(app_id=app.app_id, server_id=new.server_id)):
            app.failed = False
        self.host.saved(app)
        self.host.release(app)

    def _fail(self, decision: Fail) -> None:
        self.fail_reason = decision.reason
        retry = max(0.0, decision.then.at - trio.current_time())
        notify = decision.notify and self.policy.notify_app
        _log.warning(
            "connection_failed",
            provider=self.provider,
            reason=decision.reason.value,
            retry_in_s=round(retry, 3) if math.isfinite(retry) else None,
            notify=notify,
            apps=len(self.apps),
        )
        for app in self.apps.values():
            if app.awaiting or (notify and not app.failed):
                self._tell_failed(app, decision.reason, retry)

    def _tell_failed(self, app: App, reason: FailReason, retry_after_s: float | None) -> None:
        app.awaiting = False
        retry = None if retry_after_s is None else round(min(retry_after_s, 86400.0), 3)
        message = ConnectionFailed(app_id=app.app_id, reason=reason.value, retry_after_s=retry)
        if app.tell(message):
            app.failed = True
        self.host.release(app)

    def _next_try_in(self) -> float | None:
        if isinstance(self._timer, Connect):
            return max(0.0, self._timer_at - trio.current_time())
        return None

    def _note_cool(self, server_id: str, outcome: Outcome) -> None:
        until = self.realloc.cool_until.get(server_id)
        if until is not None:
            self.host.note_cool(self, server_id, until, outcome)
