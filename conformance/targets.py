"""Where the suite finds the target's instances, and how it acts on them (restart, overload).

:class:`ExternalTargets` serves ``--target``/``--ixit`` runs: endpoints from the IXIT,
crash-and-restart and overload on/off by the commands the IXIT gives. The embedded
reference (:mod:`conformance.embedded`) offers the same three methods.
"""

from __future__ import annotations

import subprocess
from typing import Protocol

from conformance.ixit import Endpoint, Ixit


class TargetControlMissing(RuntimeError):
    """The IXIT does not say how to do what a scenario needs (an ERROR, not a verdict)."""


class Targets(Protocol):
    def endpoint(self, profile: str) -> Endpoint: ...

    def restart(self, profile: str) -> None: ...

    def close(self) -> None: ...


class ExternalTargets:
    def __init__(self, ixit: Ixit, *, timeout_scale: float = 1.0) -> None:
        self.ixit = ixit
        self.timeout_scale = timeout_scale

    def endpoint(self, profile: str) -> Endpoint:
        return self.ixit.endpoint(profile)

    def restart(self, profile: str) -> None:
        if not self.ixit.restart_command:
            raise TargetControlMissing(
                "the IXIT gives no [restart] command: cannot crash and restart the target"
            )
        run_command(self.ixit.restart_command, 120 * self.timeout_scale)

    def close(self) -> None:
        pass


def run_command(command: str, timeout: float) -> None:
    """Run an IXIT command with the shell; a failure is the environment's, not the target's."""
    done = subprocess.run(
        command, shell=True, capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise TargetControlMissing(
            f"IXIT command failed ({done.returncode}): {command}\n{done.stderr[-2000:]}"
        )


class NoServer:
    """Client-only runs: there is no AOI Server under test (server scenarios are N/A)."""

    def endpoint(self, profile: str) -> Endpoint:
        raise TargetControlMissing("no AOI Server under test in this run (client mode only)")

    def restart(self, profile: str) -> None:
        raise TargetControlMissing("no AOI Server under test in this run (client mode only)")

    def close(self) -> None:
        pass
