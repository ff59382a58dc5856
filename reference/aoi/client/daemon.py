"""The AOI Client daemon: provisioning, the AOI-1 listener and the server sessions, together.

Everything runs in one nursery. Time comes from ``trio.current_time()`` (tests run it under
``MockClock``); the wall clock is used only for the policies' ``valid_until``. All random
choices come from one ``random.Random`` (``--seed``).
"""

from __future__ import annotations

import json
import random
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import trio

from aoi.cli import leaves, listen_problem, tls_context
from aoi.logs import EventLog
from aoi.net.client import connect as ws_connect
from aoi.net.websocket import WebSocket

from .app_interface import AppInterface
from .binding import Binding
from .config import ClientConfig
from .provisioning import Fetch, Provisioner, http_fetch
from .server_link import Connector
from .state import State

_log = EventLog("aoi.client")


def network_connector(context: ssl.SSLContext) -> Connector:
    async def connect(url: str, subprotocol: str) -> WebSocket:
        return await ws_connect(url, subprotocol, ssl_context=context)

    return connect


class CannotStart(Exception):
    """The client cannot start; the message says why, in one line."""


class Daemon:
    def __init__(
        self,
        config: ClientConfig,
        *,
        connect: Connector | None = None,
        fetch: Fetch | None = None,
        rng: random.Random | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.rng = rng if rng is not None else random.Random(config.seed)
        if connect is None or fetch is None:
            context = tls_context(config.ca_file, "ca_file")
            connect = connect or network_connector(context)
            fetch = fetch or http_fetch(context)
        self.connect = connect
        self.fetch = fetch
        self.wall = wall
        self.state: State | None = None
        self.binding: Binding | None = None
        self.apps: AppInterface | None = None
        self.app_port: int | None = None
        self.provisioners: list[Provisioner] = []
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED) -> None:
        """Open AOI-1 (before any server is contacted, so that a port in use stops nothing
        half-started), take each provider's policy, then serve; :class:`CannotStart` when
        the port is unusable or a provider has no policy to start with."""
        config = self.config
        self.state = state = State(config.state_dir, config.seen_ids_per_app)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self.binding = binding = Binding(
                config, state, nursery, connect=self.connect, rng=self.rng
            )
            self.apps = AppInterface(binding)
            if config.app_port is not None:
                self.app_port = await self._listen(nursery, config.app_host, config.app_port)
            binding.restore()
            for provider in config.providers:
                provisioner = Provisioner(
                    provider,
                    config.identity(provider),
                    state,
                    binding.set_policy,
                    fetch=self.fetch,
                    wall=self.wall,
                    rng=self.rng,
                    refresh_s=config.provisioning_refresh_s,
                )
                self.provisioners.append(provisioner)
                first = 0.0
                if provisioner.load_cached() is None or provider.policy_file is not None:
                    # Nothing to serve apps with yet (or a local file): fetch once now, so
                    # that the first apps find a policy, and a mistake ends the start.
                    first = await provisioner.first(config.request_timeout_s)
                    if provisioner.policy is None and provisioner.lasting:
                        raise CannotStart(f"{provisioner.failure} (and no cached policy)")
                nursery.start_soon(self._provision, provisioner, first)
            self.apps.serving.set()
            if self.app_port is not None:
                _log.child("apps").info("aoi1_listening", host=config.app_host, port=self.app_port)
            if config.ready_file is not None and self.app_port is not None:
                self._write_ready(config.ready_file)
            _log.info(
                "client_started",
                providers=[p.source for p in config.providers],
                app_port=self.app_port,
            )
            task_status.started(self)

    async def _listen(self, nursery: trio.Nursery, host: str, port: int) -> int:
        assert self.apps is not None
        try:
            bound: int = await nursery.start(self.apps.listen, host, port)
        except* OSError as group:
            raise CannotStart(listen_problem(leaves(group)[0], host, port)) from None
        return bound

    @property
    def app_url(self) -> str | None:
        if self.app_port is None:
            return None
        return f"ws://{self.config.app_host}:{self.app_port}/"

    async def stop(self, grace_s: float = 2.0) -> None:
        """Say ``bye`` on every session, wait a little for them to close, then stop."""
        if self.binding is not None:
            self.binding.goodbye_all()
            with trio.move_on_after(grace_s):
                for link in list(self.binding.links.values()):
                    await link.done.wait()
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def _provision(self, provisioner: Provisioner, first_in: float) -> None:
        await trio.sleep(first_in)
        await provisioner.run()

    def _write_ready(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"app_url": self.app_url}))
        tmp.replace(path)
