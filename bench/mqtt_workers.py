"""Load-generator processes of the Mosquitto benchmark (:mod:`bench.mqtt`).

A worker (:class:`_Worker`, run by :func:`_worker_main`) holds one asyncio loop of MQTT
clients (:mod:`bench.mqtt_client`) and carries out the parent's commands; :class:`Workers` is
the parent's handle on them, over one socket pair a worker.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import multiprocessing.connection
import os
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .machine import cpu_seconds, raise_nofile
from .mqtt_client import Connection, Publisher, Stats, open_connection, storm_connect, topic_for
from .mqtt_packets import (
    KEEPALIVE_S,
    PINGREQ_PACKET,
    RECEIVE_MAXIMUM,
    encode_disconnect,
    encode_string,
)

if TYPE_CHECKING:
    from .mqtt import BrokerLike

WORKER_NOFILE = 65536


# --- worker process ----------------------------------------------------------------------


class _Worker:
    def __init__(self, pipe: Any, host: str, port: int) -> None:
        self.pipe = pipe
        self.host = host
        self.port = port
        self.connections: list[Connection] = []
        self.raw_sockets: list[socket.socket] = []
        self.stats = Stats(record=False)
        self.publisher: Publisher | None = None
        self.stop = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        commands: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        def readable() -> None:
            try:
                commands.put_nowait(self.pipe.recv())
            except (EOFError, OSError):
                loop.remove_reader(self.pipe.fileno())
                commands.put_nowait(None)

        loop.add_reader(self.pipe.fileno(), readable)
        self.pipe.send({"op": "ready", "cpu_s": time.process_time()})
        pinger = asyncio.create_task(self._keepalive())
        while True:
            command = await commands.get()
            if command is None or command["op"] == "exit":
                break
            if command["op"] == "stop":
                self.stop.set()
                continue
            task = asyncio.create_task(self._run(command))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        pinger.cancel()
        for task in list(self.tasks):
            task.cancel()
        for connection in self.connections:
            if connection.transport is not None:
                connection.transport.abort()
        with contextlib.suppress(OSError):
            self.pipe.send({"op": "exit"})

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_S / 2)
            for connection in self.connections:
                connection.write(PINGREQ_PACKET)

    async def _run(self, command: dict[str, Any]) -> None:
        op = command.pop("op")
        try:
            reply = await getattr(self, f"op_{op}")(**command)
        except Exception as error:  # reported to the parent, which raises
            reply = {"error": f"{error!r}\n{traceback.format_exc()}"}
        reply["op"] = op
        reply["cpu_s"] = time.process_time()
        self.pipe.send(reply)

    async def op_connect(
        self,
        clients: list[tuple[str, str | None]],
        username: str,
        password: str,
        subscribe: bool = True,
        concurrency: int | None = None,
        start_at: float | None = None,
        record: bool = False,
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        """Open sessions; ``concurrency`` None opens them all at once (a storm)."""
        self.stats.record = self.stats.record or record
        limit = asyncio.Semaphore(concurrency or len(clients) or 1)
        durations = array.array("d")
        errors: dict[str, int] = {}
        receive_maximum = 65535
        if start_at is not None:
            await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        began = start_at if start_at is not None else time.monotonic()

        async def one(client_id: str, source: str | None) -> None:
            nonlocal receive_maximum
            async with limit:
                try:
                    async with asyncio.timeout(timeout):
                        connection, connack = await open_connection(
                            self.host, self.port, client_id, username=username,
                            password=password, stats=self.stats, source=source,
                            topic=topic_for(client_id) if subscribe else None,
                        )  # fmt: skip
                except Exception as error:
                    key = type(error).__name__ + (f": {error}" if str(error) else "")
                    errors[key] = errors.get(key, 0) + 1
                    return
                durations.append(time.monotonic() - began)
                self.connections.append(connection)
                receive_maximum = connack.properties.get(RECEIVE_MAXIMUM, 65535)

        await asyncio.gather(*(one(client_id, source) for client_id, source in clients))
        return {
            "connected": len(durations),
            "failed": sum(errors.values()),
            "errors": errors,
            "durations": durations.tobytes(),
            "began": began,
            "done": time.monotonic(),
            "receive_maximum": receive_maximum,
        }

    async def op_storm(
        self,
        clients: list[tuple[str, str | None]],
        username: str,
        password: str,
        start_at: float,
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        """:func:`storm_connect`; this worker's loop is blocked meanwhile (it does nothing else)."""
        durations, errors, sockets = storm_connect(
            self.host, self.port, clients, username=username, password=password,
            start_at=start_at, timeout=timeout,
        )  # fmt: skip
        self.raw_sockets.extend(sockets)
        return {
            "connected": len(durations),
            "failed": sum(errors.values()),
            "errors": errors,
            "durations": durations.tobytes(),
            "began": start_at,
            "done": time.monotonic(),
        }

    async def op_count(self, start: float, end: float) -> dict[str, Any]:
        """Messages received between the monotonic instants ``start`` and ``end``."""
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        first = self.stats.received
        cpu_first = time.process_time()
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        return {
            "received": self.stats.received - first,
            "window_cpu_s": time.process_time() - cpu_first,
        }

    async def op_publish(
        self,
        mode: str,
        topics: list[str],
        deadline: float,
        rate: float = 0.0,
        window: int | None = None,
        start_at: float | None = None,
        capacity: int = 0,
        count_window: tuple[float, float] | None = None,
    ) -> dict[str, Any]:
        """Publish from this worker's first connection until ``deadline`` or ``stop``."""
        (connection,) = self.connections
        encoded = [encode_string(topic) for topic in topics]
        publisher = Publisher(connection, window or 65535, capacity)
        self.publisher = publisher
        if start_at is not None:
            await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        counted: dict[str, Any] = {}
        counter = None
        if count_window is not None:
            counter = asyncio.create_task(self._count_acks(publisher, *count_window, counted))
        stopper = asyncio.create_task(self.stop.wait())
        body = asyncio.create_task(
            publisher.flood(encoded, deadline)
            if mode == "flood"
            else publisher.paced(encoded, rate, deadline)
        )
        await asyncio.wait({body, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        body.cancel()
        stalls = 0
        with contextlib.suppress(asyncio.CancelledError):
            stalls = await body or 0
        await publisher.drain(10.0)
        if counter is not None:
            await counter
        return {
            "sent": publisher.sent,
            "acked": publisher.acked,
            "stalls": stalls,
            "window": publisher.window,
            "puback_reasons": {f"0x{code:02x}": n for code, n in connection.puback_reasons.items()},
            "sent_at": publisher.sent_at[: min(publisher.sent, capacity)].tobytes(),
            "acked_at": publisher.acked_at[: min(publisher.sent, capacity)].tobytes(),
            **counted,
        }

    async def _count_acks(
        self, publisher: Publisher, start: float, end: float, into: dict[str, Any]
    ) -> None:
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        first, cpu_first = publisher.acked, time.process_time()
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        into["acked_in_window"] = publisher.acked - first
        into["window_cpu_s"] = time.process_time() - cpu_first

    async def op_stamps(self) -> dict[str, Any]:
        return {
            "seqs": self.stats.seqs.tobytes(),
            "stamps": self.stats.stamps.tobytes(),
            "arrivals": self.stats.arrivals.tobytes(),
            "received": self.stats.received,
        }

    async def op_disconnect(self, expire: bool = True, timeout: float = 30.0) -> dict[str, Any]:
        """DISCONNECT every connection; ``expire`` ends the session (session expiry 0) too."""
        goodbye = encode_disconnect(0, 0) if expire else encode_disconnect()
        raw, self.raw_sockets = self.raw_sockets, []
        for sock in raw:
            with contextlib.suppress(OSError):
                sock.send(goodbye)
            sock.close()
        connections, self.connections = self.connections, []
        for connection in connections:
            connection.write(goodbye)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                for connection in connections:
                    if connection.transport is not None:
                        connection.transport.close()
                    await connection.closed
        closed = sum(connection.closed.done() for connection in connections)
        return {"closed": closed + len(raw)}


def _worker_main() -> None:
    """Entry point of a worker process: ``python -c ... FD HOST PORT``."""
    fd, host, port = sys.argv[1:4]
    raise_nofile(WORKER_NOFILE)
    pipe = multiprocessing.connection.Connection(int(fd))
    asyncio.run(_Worker(pipe, host, int(port)).serve())


# --- parent side -------------------------------------------------------------------------


class WorkerError(RuntimeError):
    """A worker process failed or did not answer in time."""


class Workers:
    """Load-generator processes, each running one asyncio loop of MQTT clients.

    They are plain ``python -c`` children (not ``multiprocessing``), so that the caller's
    ``__main__`` is never imported again; each talks to the parent over a socket pair.
    """

    def __init__(self, broker: BrokerLike, count: int) -> None:
        self.pipes: list[multiprocessing.connection.Connection] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        root = str(Path(__file__).resolve().parents[1])
        path = os.environ.get("PYTHONPATH")
        environment = {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}
        try:
            for _ in range(count):
                parent, child = socket.socketpair()
                with parent, child:
                    process = subprocess.Popen(
                        [
                            sys.executable, "-c", "from bench.mqtt_workers import _worker_main; "
                            "_worker_main()", str(child.fileno()), broker.host, str(broker.port),
                        ],
                        pass_fds=[child.fileno()], env=environment, stdin=subprocess.DEVNULL,
                    )  # fmt: skip
                    self.processes.append(process)
                    self.pipes.append(multiprocessing.connection.Connection(parent.detach()))
            for index in range(count):
                self.receive(index, "ready", 60)
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    def send(self, index: int, op: str, **arguments: Any) -> None:
        self.pipes[index].send({"op": op, **arguments})

    def receive(self, index: int, op: str, timeout: float) -> dict[str, Any]:
        pipe = self.pipes[index]
        if not pipe.poll(timeout):
            raise WorkerError(f"worker {index}: no answer to {op!r} within {timeout:.0f} s")
        try:
            reply: dict[str, Any] = pipe.recv()
        except (EOFError, OSError) as error:
            code = self.processes[index].poll()
            raise WorkerError(f"worker {index} exited ({code}) before answering {op!r}") from error
        if "error" in reply:
            raise WorkerError(f"worker {index}, {op!r}: {reply['error']}")
        if reply["op"] != op:
            raise WorkerError(f"worker {index}: answer to {reply['op']!r}, expected {op!r}")
        return reply

    def call(self, index: int, op: str, timeout: float, **arguments: Any) -> dict[str, Any]:
        self.send(index, op, **arguments)
        return self.receive(index, op, timeout)

    def cpu_seconds(self) -> list[float]:
        return [cpu_seconds(pid) for pid in self.pids]

    def close(self) -> None:
        for pipe in self.pipes:
            with contextlib.suppress(OSError):
                pipe.send({"op": "exit"})
        deadline = time.monotonic() + 10
        for process in self.processes:
            try:
                process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.terminate()
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        for pipe in self.pipes:
            pipe.close()
        self.pipes, self.processes = [], []
