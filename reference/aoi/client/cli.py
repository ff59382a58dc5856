"""``aoi client``: run the reference AOI Client until interrupted."""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence

import trio

from aoi import logs as log

from .config import ConfigError, load
from .daemon import Daemon


async def _serve(daemon: Daemon) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(daemon.run)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                break
        await daemon.stop()
        nursery.cancel_scope.cancel()


def main(argv: Sequence[str]) -> int:
    try:
        config = load(argv)
    except ConfigError as exc:
        print(f"aoi client: {exc}", file=sys.stderr)
        return 2
    log.setup(config.log_level)
    try:
        trio.run(_serve, Daemon(config))
    except (OSError, BaseExceptionGroup) as exc:
        failures = exc.split(OSError)[0] if isinstance(exc, BaseExceptionGroup) else exc
        if failures is None:
            raise
        print(f"aoi client: {_first(failures)}", file=sys.stderr)
        return 1
    return 0


def _first(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc
