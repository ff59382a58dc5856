"""What one scenario works with: the devices the suite plays, the server apps, the checks.

A :class:`World` lives for one scenario. It owns every connection it opened and closes
them at the end; it is where steps find the IXIT, the target, the timeouts and the
verdicts. A :class:`~conformance.device.Device` is the suite playing one AOI Client on AOI-2.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from conformance.device import Device
from conformance.driver.aoi2 import Aoi2Connection
from conformance.driver.frames import Frame
from conformance.driver.http import Answer, Aoi3Client
from conformance.ixit import Client, Endpoint, Ixit
from conformance.registry import Level
from conformance.verdicts import ScenarioVerdicts, SuiteDefect, TargetUnreachable
from conformance.wirelog import WireLog

if TYPE_CHECKING:
    from conformance.runtime import Runtime

T = TypeVar("T")
STRANGER = "stranger"  # a client the target does not know


@dataclass
class Push:
    """One notification a server app sent (or tried to), named by its payload label."""

    label: str
    answer: Answer
    app_alias: str | None
    device: str | None
    body: dict[str, Any] | None = None  # what was sent

    @property
    def id(self) -> str | None:
        value = self.answer.json_object.get("id")
        return value if isinstance(value, str) else None


@dataclass(repr=False)
class World:
    runtime: Runtime
    verdicts: ScenarioVerdicts
    wirelog: WireLog
    profile: str = "main"
    devices: dict[str, Device] = field(default_factory=dict)
    connections: list[Aoi2Connection] = field(default_factory=list)
    pushes: dict[str, Push] = field(default_factory=dict)
    last_push: Push | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    mentioned: set[str] = field(default_factory=set)  # client names the scenario's steps use
    fillers: list[Device] = field(default_factory=list)  # sessions opened to load the target
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    finishers: list[Callable[[], None]] = field(default_factory=list)  # judge at the end
    _http: dict[str, Aoi3Client] = field(default_factory=dict)
    _judged: set[tuple[int, int]] = field(default_factory=set)

    def __repr__(self) -> str:
        return f"World(profile={self.profile!r}, devices={sorted(self.devices)})"

    @property
    def ixit(self) -> Ixit:
        return self.runtime.ixit

    def endpoint(self) -> Endpoint:
        return self.runtime.targets.endpoint(self.profile)

    def timeout(self, seconds: float) -> float:
        return seconds * self.runtime.timeout_scale

    # --- verdicts --------------------------------------------------------------------

    def check(self, req: str, ok: bool, explanation: str) -> bool:
        return self.verdicts.check(req, ok, explanation)

    def precondition(self, ok: bool, explanation: str) -> None:
        self.verdicts.precondition(ok, explanation)

    def not_lost(self, connection: Aoi2Connection, before: str) -> None:
        """Stop the scenario, judging nothing, if ``connection`` ended without a close frame
        (a reset, an EOF): whatever the step was to see ``before`` never came."""
        closed = connection.closed
        if closed is not None and closed.lost:
            raise TargetUnreachable(
                f"connection lost: {connection.label} to {connection.url} ended without a "
                f"close frame ({closed.reason}) before {before}"
            )

    def found(
        self,
        req: str,
        value: T | None,
        explanation: str,
        holds: Callable[[T], bool] = lambda _: True,
    ) -> T:
        """Check that the target produced ``value`` (of which ``holds``); go on with it.

        Only for binding requirements, whose violation stops the scenario: a SHOULD step
        must judge without needing what the target failed to give.
        """
        if self.runtime.registry[req].binding is not Level.SHALL:
            raise SuiteDefect(f"found() with {req}, a SHOULD: the step could not go on")
        self.check(req, value is not None and holds(value), explanation)
        assert value is not None  # check() raised otherwise
        return value

    def judge_frame(self, device: str, frame: Frame) -> None:
        """Every frame a client receives must be valid AOI-2 (AOI-GEN-002); judged at the
        end of the scenario (:meth:`finish`), so the scenario goes on with what it got."""
        key = (id(frame), frame.seq)
        if key in self._judged:
            return
        self._judged.add(key)
        if frame.problems:
            self.verdicts.record(
                "AOI-GEN-002",
                False,
                f"client {device} got a message that is not valid AOI-2: "
                f"{'; '.join(frame.problems)} in {str(frame.raw)[:300]}",
            )

    def finish(self) -> None:
        """Judge every frame received (not only those taken) against the schemas."""
        for device in self.devices.values():
            if device.conn is not None:
                for frame in device.conn.frames():
                    self.judge_frame(device.name, frame)
        for finisher in self.finishers:
            finisher()
        self.verdicts.raise_recorded()

    # --- actors ----------------------------------------------------------------------

    def device(self, name: str) -> Device:
        if name not in self.devices:
            identity = (
                Client(STRANGER, f"stranger-{secrets.token_hex(4)}", secrets.token_urlsafe(12))
                if name == STRANGER
                else self.ixit.client(name)
            )
            self.devices[name] = Device(self, name, identity)
        return self.devices[name]

    def app_id(self, alias: str) -> str:
        return self.ixit.app_id(alias)

    def http(self) -> Aoi3Client:
        if self.profile not in self._http:
            endpoint = self.endpoint()
            self._http[self.profile] = Aoi3Client(
                endpoint.http, self.wirelog, ca_file=endpoint.ca_file, timeout=self.timeout(10)
            )
        return self._http[self.profile]

    def forget_http(self) -> None:
        """Drop the AOI-3 client of the profile (its pooled connections died with the target)."""
        client = self._http.pop(self.profile, None)
        if client is not None:
            client.close()

    def judge_answer(self, answer: Answer) -> None:
        """AOI-3 error bodies must be ``error_response`` objects (AOI-GEN-001); judged at
        the end of the scenario, as frames are."""
        from conformance import contract

        if answer.status >= 400:
            problems = contract.errors("aoi3/error_response.json", answer.body)
            self.verdicts.record(
                "AOI-GEN-001",
                not problems,
                f"HTTP {answer.status} body is not an error_response: {'; '.join(problems)}",
            )

    def close(self) -> None:
        """Close everything the scenario opened; a failing cleanup (an IXIT command) is
        still reported, after the connections are closed."""
        try:
            for cleanup in reversed(self.cleanups):
                cleanup()
        finally:
            for device in self.devices.values():
                with contextlib.suppress(Exception):  # the verdict is made already
                    device.ack_everything()
            for conn in self.connections:
                with contextlib.suppress(Exception):
                    if conn.closed is None:
                        conn.close(timeout=self.timeout(1))
            for client in self._http.values():
                client.close()
