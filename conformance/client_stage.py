"""What one client-mode scenario works with: the suite's AOI Servers, provisioning and apps
around the AOI Client under test.

A :class:`Stage` lives for one scenario. The scenario scripts the suite's servers
(:class:`~conformance.driver.aoi2_server.SuiteServer`), writes the provider's policy
(:class:`~conformance.client_policy.PolicySpec`, served by
:class:`~conformance.driver.provisioning.ProvisioningEndpoint`), starts the client command,
and plays the apps on AOI-1. Everything the client does is recorded with its arrival time;
steps wait for events with :meth:`Stage.wait` (one portal call, woken by every frame,
connection and fetch) and judge what was recorded.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from conformance.client_policy import PolicySpec, Provider
from conformance.client_target import (
    PROVIDER,
    SECOND_PROVIDER,
    ClientMode,
    ClientProcess,
    ClientStartError,
)
from conformance.driver.aoi1 import Aoi1Connection
from conformance.driver.aoi2_server import SuiteServer
from conformance.driver.frames import Frame
from conformance.driver.server_connection import HelloAnswer
from conformance.ports import free_port
from conformance.verdicts import TargetUnreachable

if TYPE_CHECKING:
    from conformance.world import World

T = TypeVar("T")
APP_PREFIX = "org.aoi.conformance."
RESPONSE_S = 5.0  # how long the client may take to act on one event, before scaling


@dataclass
class App:
    """An app the suite plays on AOI-1 (``app "one"`` in the features)."""

    alias: str
    app_id: str
    conn: Aoi1Connection | None = None
    provider: str | None = None
    path: str = "/"  # of its AOI-1 upgrade

    def frames(self, kind: str | None = None) -> list[Frame]:
        """What the client sent this app (read in the portal's thread, or after the fact)."""
        if self.conn is None:
            return []
        return [f for f in self.conn.inbox if kind is None or f.type == kind]

    def notifications(self) -> list[Frame]:
        return self.frames("app_notification")

    def got(self, label: str) -> list[Frame]:
        return [f for f in self.notifications() if f.get("payload") == label]

    def registration(self) -> Frame | None:
        """The latest app_registered or registration_changed: where the app is served now."""
        found = [f for f in self.frames() if f.type in ("app_registered", "registration_changed")]
        return found[-1] if found else None


class Stage:
    def __init__(self, world: World, mode: ClientMode, name: str) -> None:
        self.world = world
        self.mode = mode
        self.target = mode.target
        self.portal = world.runtime.portal
        self.name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:150]
        self.workdir = mode.workdir / f"{self.name}-{secrets.token_hex(3)}"
        self.workdir.mkdir(parents=True)
        self.servers: dict[str, SuiteServer] = {}
        self.apps: dict[str, App] = {}
        self.process: ClientProcess | None = None
        self.process_stopped = False  # the suite stopped it (a restart, the end)
        self.notes: dict[str, Any] = {}
        self._changed: trio.Event | None = None
        self._judged: set[tuple[int, int]] = set()
        self.portal.call(self._init)
        self.providers = [
            Provider(self, PROVIDER, "main"),
            Provider(self, SECOND_PROVIDER, "second"),
        ]
        for provider in self.providers:
            provider.endpoint.start()
        world.finishers.append(self.finish)

    def __repr__(self) -> str:
        return f"Stage({self.name!r}, servers={sorted(self.servers)}, apps={sorted(self.apps)})"

    # --- the change signal ----------------------------------------------------------------------

    async def _init(self) -> None:
        self._changed = trio.Event()

    def notify(self) -> None:
        """Something happened (called in the portal's thread): wake every waiter."""
        if self._changed is not None:
            self._changed.set()
            self._changed = trio.Event()

    def wait(self, predicate: Callable[[], T | None], timeout: float) -> T | None:
        """The first truthy value of ``predicate`` (evaluated in the portal's thread each time
        something happens), or None after ``timeout`` seconds (already scaled)."""
        return self.portal.call(self._wait, predicate, timeout)

    async def _wait(self, predicate: Callable[[], T | None], timeout: float) -> T | None:
        with trio.move_on_after(max(timeout, 0.0)):
            while True:
                found = predicate()
                if found:
                    return found
                assert self._changed is not None
                await self._changed.wait()
        return predicate() or None

    def read(self, fn: Callable[[], T]) -> T:
        """``fn()`` evaluated in the portal's thread, where the recordings are written."""
        value: T = self.portal.call(self._read, fn)
        return value

    @staticmethod
    async def _read(fn: Callable[[], T]) -> T:
        return fn()

    def timeout(self, seconds: float = RESPONSE_S) -> float:
        return self.world.timeout(seconds)

    def patience(self, extra_s: float = 0.0) -> float:
        """How long to wait for the client to find a server: time to act, one welcome
        timeout (a server that never answers) and ``extra_s`` of the scenario's backoff."""
        return self.world.timeout(RESPONSE_S + self.target.welcome_timeout_s + extra_s)

    # --- the suite's actors ---------------------------------------------------------------------

    @property
    def policy(self) -> PolicySpec:
        return self.providers[0].spec()

    @property
    def second_policy(self) -> PolicySpec:
        return self.providers[1].spec()

    def server(self, name: str, *, tls: str | None = None) -> SuiteServer:
        """The suite server ``name``, started on first use (``tls``: its certificate kind)."""
        server = self.servers.get(name)
        if server is None:
            context = self.mode.ca.server_context(tls) if tls else None
            server = SuiteServer(
                self.portal, self.world.wirelog, name, on_change=self.notify, tls=context
            )
            self.servers[name] = server
            server.start()
        elif tls is not None:
            raise RuntimeError(f"suite: server {name!r} was started before its TLS was chosen")
        return server

    def app(self, alias: str) -> App:
        if alias not in self.apps:
            self.apps[alias] = App(alias, APP_PREFIX + alias)
        return self.apps[alias]

    def connect_app(self, app: App, req: str | None = None) -> None:
        """Open the app's own AOI-1 connection to the client: a precondition, or what
        ``req`` requires."""
        if app.conn is not None and app.conn.closed is None:
            return
        assert self.process is not None, "suite: the AOI Client is not running"
        app.conn = Aoi1Connection(
            self.portal,
            self.world.wirelog,
            f"aoi1 {app.alias}",
            f"ws://127.0.0.1:{self.process.app_port}{app.path}",
            on_change=self.notify,
            connect_timeout=self.timeout(),
        )
        handshake = app.conn.open()
        explanation = (
            f"app {app.alias}: no AOI-1 upgrade at 127.0.0.1:{self.process.app_port}: "
            f"{handshake.error or handshake.status}"
        )
        if req is not None:  # the client's own failure: a verdict, not an unreachable target
            self.world.check(req, handshake.accepted, explanation)
            return
        if not handshake.reached:
            raise TargetUnreachable(
                f"target unreachable: app {app.alias} could not connect to the AOI Client's "
                f"AOI-1 port 127.0.0.1:{self.process.app_port}: {handshake.error}"
            )
        self.world.precondition(handshake.accepted, explanation)

    def send_app(self, app: App, message: dict[str, Any]) -> None:
        self.connect_app(app)
        assert app.conn is not None
        app.conn.send(message)

    # --- the client under test --------------------------------------------------------------------

    def start_client(self) -> None:
        if self.process is None:
            values = {
                "provisioning_url": self.providers[0].endpoint.url,
                "provisioning_url_2": self.providers[1].endpoint.url,
                "app_port": str(free_port()),
                "state_dir": str(self.workdir / "state"),
                "client_id": self.target.client_id,
                "credential": self.target.credential,
                "ca_file": str(self.mode.ca.ca_file),
            }
            (self.workdir / "state").mkdir(exist_ok=True)
            log = self.mode.logs_dir / f"{self.name}.log"
            log.unlink(missing_ok=True)
            self.process = ClientProcess(self.target, values, log)
        self.process_stopped = False
        try:
            self.process.start(self.timeout(self.target.startup_timeout_s))
        except ClientStartError as e:
            self.world.wirelog.add("client", "--", str(e))
            raise
        self.world.wirelog.add(
            "client",
            "--",
            f"the AOI Client under test started (run {self.process.runs}), AOI-1 on "
            f"127.0.0.1:{self.process.app_port}; its output: {self.process.log}",
        )

    def stop_client(self) -> None:
        if self.process is None:
            return
        for app in self.apps.values():
            if app.conn is not None and app.conn.closed is None:
                with contextlib.suppress(Exception):
                    app.conn.close(timeout=self.timeout(1))
        self.process_stopped = True
        code = self.process.stop(self.timeout(5))
        self.world.wirelog.add("client", "--", f"the AOI Client under test stopped ({code})")

    # --- what steps ask ---------------------------------------------------------------------------

    def hellos(self, name: str) -> list[Frame]:
        return self.servers[name].hellos()

    def script(self, name: str, *answers: HelloAnswer, default: HelloAnswer | None = None) -> None:
        server = self.server(name)
        server.answers.extend(answers)
        if default is not None:
            server.default = default

    # --- the end ----------------------------------------------------------------------------------

    def finish(self) -> None:
        """Note a client that exited on its own; judge every frame the client sent, on AOI-2
        and AOI-1, against the schemas."""
        code = self.process.exited() if self.process is not None else None
        if code is not None and not self.process_stopped:
            self.world.notes["client exited"] = code
            self.world.wirelog.add(
                "client", "--", f"the AOI Client under test exited on its own with {code}"
            )
        for server in self.servers.values():
            for conn in server.connections:
                for frame in conn.frames:
                    self._judge(f"server {server.name}", frame)
        for app in self.apps.values():
            for frame in app.frames():
                self._judge(f"app {app.alias}", frame)

    def _judge(self, where: str, frame: Frame) -> None:
        key = (id(frame), frame.seq)
        if key in self._judged or not frame.problems:
            return
        self._judged.add(key)
        self.world.verdicts.record(  # every one of them: World.finish raises the first
            "AOI-GEN-002",
            False,
            f"the AOI Client sent {where} a message that is not valid: "
            f"{'; '.join(frame.problems)} in {str(frame.raw)[:300]}",
        )

    def close(self) -> None:
        try:
            self.stop_client()
        finally:
            for server in self.servers.values():
                with contextlib.suppress(Exception):
                    server.stop()
            for provider in self.providers:
                with contextlib.suppress(Exception):
                    provider.endpoint.stop()
