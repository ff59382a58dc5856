"""``aoi server --workers N``: N server processes on one port, nodes of one fleet.

The supervisor starts each worker as ``aoi server`` with the same command line, on the same
port with ``SO_REUSEPORT`` (the kernel spreads new connections over them). A port of 0 is
chosen once, by the supervisor, for all of them. The workers share their state through the
Redis store (docs/operations.md 8.6), so a client may land on any of them and a push to
any of them reaches its session.

The supervisor forwards SIGTERM and SIGINT (shut down) and SIGUSR1 (drain mode on or off)
to every worker, writes the ready file once all of them are ready, and starts a worker that
exits on its own again, after a pause.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import trio

from .config import ServerConfig

log = logging.getLogger("aoi.server.workers")

READY_TIMEOUT_S = 60.0
RESTART_PAUSE_S = 1.0
STOP_TIMEOUT_S = 10.0
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
PR_SET_PDEATHSIG = 1


def supervise(config: ServerConfig, argv: list[str], ready_file: Path | None) -> int:
    host, port = config.server.listen
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as reserved:
        # Bound, never listening: it holds a port chosen by the kernel for the workers.
        reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        reserved.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        reserved.bind((host, port))
        port = reserved.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        with tempfile.TemporaryDirectory(prefix="aoi-workers-") as directory:
            workers = [
                Worker(n, argv, f"{shown}:{port}", Path(directory) / f"worker-{n}.json")
                for n in range(1, config.server.workers + 1)
            ]
            return trio.run(_run, workers, ready_file)


class Worker:
    def __init__(self, number: int, argv: list[str], listen: str, ready: Path) -> None:
        self.number = number
        self.ready = ready
        self.command = [
            *(sys.executable, "-m", "aoi", "server", *argv),
            *("--workers", "1", "--reuse-port", "--listen", listen, "--ready-file", str(ready)),
        ]
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        self.ready.unlink(missing_ok=True)
        # Started from this (the main) thread, so that the worker's parent-death signal
        # fires when the supervisor dies, not when some thread of it ends.
        self.process = subprocess.Popen(self.command, preexec_fn=_die_with_supervisor)
        with trio.move_on_after(READY_TIMEOUT_S):
            while not self.ready.exists():
                if self.process.poll() is not None:
                    code = self.process.returncode
                    raise WorkerFailed(f"worker {self.number} exited with {code}")
                await trio.sleep(0.05)
            return
        raise WorkerFailed(f"worker {self.number} was not ready in {READY_TIMEOUT_S:.0f} s")

    def signal(self, signum: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)

    async def wait(self) -> int:
        """Until the worker exits; its exit status."""
        assert self.process is not None
        if self.process.returncode is not None:  # reaped already (it failed to start)
            return self.process.returncode
        pidfd = os.pidfd_open(self.process.pid)
        try:
            await trio.lowlevel.wait_readable(pidfd)
        finally:
            os.close(pidfd)
        return self.process.wait()


def _die_with_supervisor() -> None:
    """In the worker before it runs: SIGTERM to it when the supervisor dies (Linux's
    PR_SET_PDEATHSIG), so that no worker outlives a supervisor killed with SIGKILL."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class WorkerFailed(Exception):
    pass


async def _run(workers: list[Worker], ready_file: Path | None) -> int:
    stopping = False
    with trio.open_signal_receiver(*FORWARDED) as signals:
        failed: list[BaseException] = []
        try:
            async with trio.open_nursery() as nursery:
                for worker in workers:
                    nursery.start_soon(worker.start)
        except* WorkerFailed as group:
            failed += group.exceptions
        if failed:
            for worker in workers:
                worker.signal(signal.SIGKILL)
            print(f"aoi server: {failed[0]}", file=sys.stderr)
            return 1
        if ready_file is not None:
            tmp = ready_file.with_suffix(ready_file.suffix + ".tmp")
            tmp.write_text(workers[0].ready.read_text())
            tmp.replace(ready_file)
        log.info("workers_ready", extra={"workers": len(workers)})

        async def keep(worker: Worker) -> None:
            while True:
                code = await worker.wait()
                if stopping:
                    return
                log.warning("worker_exited", extra={"worker": worker.number, "code": code})
                await trio.sleep(RESTART_PAUSE_S)
                try:
                    await worker.start()
                except WorkerFailed as exc:
                    log.warning("worker_not_restarted", extra={"why": str(exc)})

        async with trio.open_nursery() as nursery:
            for worker in workers:
                nursery.start_soon(keep, worker)
            async for signum in signals:
                for worker in workers:
                    worker.signal(signum)
                if signum != signal.SIGUSR1:
                    stopping = True
                    break
            with trio.move_on_after(STOP_TIMEOUT_S) as late:
                for worker in workers:
                    if worker.process is not None:
                        await worker.wait()
            if late.cancelled_caught:
                for worker in workers:
                    worker.signal(signal.SIGKILL)
            nursery.cancel_scope.cancel()
    return 0
