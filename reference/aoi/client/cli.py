"""``aoi client``: run the reference AOI Client until interrupted."""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import trio

from aoi import logs
from aoi.cli import CommandError, leaves

from .config import ConfigError, load

if TYPE_CHECKING:
    from .daemon import Daemon

log = logs.EventLog("aoi.client")


async def _serve(daemon: Daemon) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                log.info("shutting_down", signal=signal.Signals(signum).name)
                break
        await daemon.stop()
        nursery.cancel_scope.cancel()


def main(argv: Sequence[str]) -> int:
    try:
        config = load(argv)
    except ConfigError as exc:
        print(f"aoi client: {exc}", file=sys.stderr)
        return 2
    from .daemon import CannotStart, Daemon  # not before: --help and mistakes answer at once

    try:
        daemon = Daemon(config)
    except CommandError as exc:  # an unusable ca_file
        print(f"aoi client: {exc}", file=sys.stderr)
        return 2
    logs.setup(config.log_level)
    failures: list[BaseException] = []
    try:
        trio.run(_serve, daemon)
    except* (CannotStart, OSError) as group:  # no policy to start with, AOI-1 port in use
        failures.append(leaves(group)[0])
    if failures:
        print(f"aoi client: {failures[0]}", file=sys.stderr)
        return 1
    log.info("stopped")
    return 0
