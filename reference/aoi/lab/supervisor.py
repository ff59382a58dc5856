"""The running lab: every instance's files and process, from the first start to the stop.

:class:`Lab` prepares the lab's directory, writes each instance's configuration and policy
document, starts the instances at once (each on a free port, tried again on another when
the port was taken meanwhile), writes the IXIT once all are ready, reports an instance that
exits on its own, serves ``aoi lab restart`` requests, and stops every instance at the end.
:mod:`aoi.lab.plan` decides what each file says; :mod:`aoi.lab.run` is the command around it.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import trio

from aoi import __version__
from aoi.lab import plan

READY_POLL_S = 0.05  # the ready file is a server's only way to say it listens
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
START_ATTEMPTS = 3  # a port picked free may be taken before the server binds it
LOWEST_PORT = 10_000
SECOND_NODE = "main.2"  # the main instance's second node, with --store


class LabError(RuntimeError):
    """The lab could not do what it was asked (an instance would not start, say)."""


@dataclass
class Server:
    """One instance of the lab and its process."""

    instance: plan.Instance
    config: Path
    ready_file: Path
    log: Path
    process: trio.Process | None = None
    replacing: bool = False  # killed on purpose (a restart): its exit is expected
    replaced: trio.Event = field(default_factory=trio.Event)

    @property
    def profile(self) -> str:
        return self.instance.profile


class Lab:
    def __init__(
        self,
        directory: Path,
        host: str,
        server_command: list[str],
        *,
        with_client: bool,
        store: str | None = None,
    ) -> None:
        self.dir = directory
        self.store = store.rstrip("/") if store else None
        self.host = host
        self.server_command = server_command
        self.with_client = with_client
        self.secrets = plan.Secrets.generate()
        self.servers: dict[str, Server] = {}
        self.exited: dict[str, int] = {}
        self.stopping = False
        self._ports: set[int] = set()

    # --- the run ---------------------------------------------------------------------

    async def run(self, profiles: list[str]) -> None:
        self._prepare()
        await self._empty_stores(profiles)
        pid_file = self.dir / "lab.pid"
        pid_file.write_text(f"{os.getpid()}\n", encoding="utf-8")
        try:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGUSR2) as sigs:
                async with trio.open_nursery() as nursery:
                    try:
                        await self._start_all(profiles)
                        for server in self.servers.values():
                            nursery.start_soon(self._watch, server)
                        self._write_ixit()
                        self._announce()
                        async for signum in sigs:
                            if signum != signal.SIGUSR2:
                                break
                            await self._serve_restart_requests()
                    finally:
                        self.stopping = True
                        with trio.CancelScope(shield=True):
                            await self._stop_all()
                        nursery.cancel_scope.cancel()
        finally:
            pid_file.unlink(missing_ok=True)

    def _prepare(self) -> None:
        for sub in ("logs", "state", "tls", "restart"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        pid_file = self.dir / "lab.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text(encoding="utf-8").split()[0] or 0)
            if pid and _alive(pid):
                raise LabError(f"a lab runs in {self.dir} already (pid {pid})")
        for stale in (*(self.dir / "state").iterdir(), *(self.dir / "restart").iterdir()):
            stale.unlink()
        (self.dir / "exited.json").unlink(missing_ok=True)

    def _announce(self) -> None:
        width = max(len(p) for p in self.servers)
        lines = [f"aoi lab: {len(self.servers)} AOI Servers ready in {self.dir}"]
        lines += [f"  {p:<{width}}  {s.instance.aoi2}" for p, s in self.servers.items()]
        lines += [
            f"logs in {self.dir / 'logs'}; certify them with:",
            f"  {_pytest()} conformance --ixit {self.dir / 'ixit.toml'}",
            "Ctrl-C stops them.",
        ]
        print("\n".join(lines), flush=True)

    # --- files -----------------------------------------------------------------------

    def _files(self, instance: plan.Instance) -> plan.Files:
        cert, key = self._tls() if instance.tls else ("", "")
        return plan.Files(
            db=str(self.dir / "state" / f"{instance.profile}.db"),
            policy=str(self.dir / f"{instance.profile}-policy.json"),
            tls_cert=cert,
            tls_key=key,
        )

    def _tls(self) -> tuple[str, str]:
        """The certificate of the TLS instance, from the lab's own CA (tls/ca.pem)."""
        import trustme

        ca_file, cert, key = (self.dir / "tls" / n for n in ("ca.pem", "cert.pem", "key.pem"))
        if not cert.exists():
            ca = trustme.CA()
            issued = ca.issue_cert(self.host, "127.0.0.1", "localhost")
            ca.cert_pem.write_to_path(str(ca_file))
            issued.private_key_and_cert_chain_pem.write_to_path(str(cert))
            issued.private_key_pem.write_to_path(str(key))
        return str(cert), str(key)

    def _configure(self, profile: str, name: str = "", pushes_to: str = "") -> Server:
        """An instance of ``profile`` called ``name`` (a second node's), whose registrations
        name ``pushes_to`` as their push endpoint's server, if given."""
        name = name or profile
        instance = plan.Instance(profile, self.host, self._free_port())
        files = self._files(instance)
        policy = plan.policy(instance, datetime.now(UTC))
        Path(files.policy).write_text(json.dumps(policy, indent=2) + "\n", encoding="utf-8")
        config = self.dir / f"{name}.toml"
        document = plan.server_config(instance, self.secrets, files)
        if self.store is not None:
            document["server"]["store"] = f"{self.store}/{plan.PROFILES.index(profile) + 1}"
        if pushes_to:
            document["server"]["public_http_url"] = pushes_to
        config.write_text(plan.render_toml(document), encoding="utf-8")
        return Server(
            instance,
            config,
            self.dir / f"{name}.ready.json",
            self.dir / "logs" / f"{name}.log",
        )

    async def _empty_stores(self, profiles: list[str]) -> None:
        """Each instance's database of the lab's Redis, emptied: a new lab starts afresh."""
        if self.store is None:
            return
        from aoi.server.store.redis_client import open_redis
        from aoi.server.store.resp import RedisError

        for profile in profiles:
            url = f"{self.store}/{plan.PROFILES.index(profile) + 1}"
            try:
                with trio.fail_after(START_TIMEOUT_S):
                    async with open_redis(url) as redis:
                        await redis.execute("FLUSHDB")
            except (RedisError, OSError, ValueError, trio.TooSlowError) as e:
                raise LabError(f"cannot empty the store at {url}: {e}") from e

    def _write_ixit(self) -> None:
        client = None
        if self.with_client:
            config = self.dir / "client.toml"
            config.write_text(plan.render_toml(plan.client_config()), encoding="utf-8")
            client = plan.ClientCommand(sys.executable, str(config))
        crashed = "restart" if "restart" in self.servers else "main"  # the crash scenario's
        restart = [sys.executable, "-m", "aoi", "lab", "restart", "--dir", str(self.dir), crashed]
        spec = plan.Ixit(
            version=__version__,
            ca_file=str(self.dir / "tls" / "ca.pem"),
            restart_command=shlex.join(restart),
            client=client,
            instances=[s.instance for n, s in self.servers.items() if n != SECOND_NODE],
            fleet=self.servers[SECOND_NODE].instance if SECOND_NODE in self.servers else None,
        )
        target = self.dir / "ixit.toml"
        tmp = target.with_suffix(".tmp")
        tmp.write_text(plan.render_toml(plan.ixit(spec, self.secrets)), encoding="utf-8")
        tmp.replace(target)

    def _free_port(self) -> int:
        """A free port below the kernel's ephemeral range: the kernel never hands it out by
        itself, so it stays free until the instance binds it (and binds it again after a
        crash). The conformance suite picks the ports of its own servers the same way."""
        try:
            high = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            high = 32_768
        for _ in range(200):
            port = random.randint(LOWEST_PORT, high - 1)
            if port in self._ports:
                continue
            with socket.socket() as s:
                try:
                    s.bind((self.host, port))
                except OSError:
                    continue
            self._ports.add(port)
            return port
        raise LabError(f"no free port on {self.host} between {LOWEST_PORT} and {high}")

    # --- processes -------------------------------------------------------------------

    async def _start_all(self, profiles: list[str]) -> None:
        """Start every instance at once; the first that cannot start stops the lab."""
        failures: list[str] = []
        for profile in profiles:  # in profile order, whichever is ready first
            if profile == "main" and self.store is not None:  # a fleet of two nodes
                second = self.servers[SECOND_NODE] = self._configure(profile, SECOND_NODE)
                self.servers[profile] = self._configure(profile, "", second.instance.http)
            else:
                self.servers[profile] = self._configure(profile)
        async with trio.open_nursery() as nursery:
            for name in list(self.servers):
                nursery.start_soon(self._start_new, name, failures, nursery.cancel_scope)
        if failures:
            raise LabError(failures[0])

    async def _start_new(
        self, name: str, failures: list[str], everything: trio.CancelScope
    ) -> None:
        # The main instance's nodes name each other's port: they are not moved to another.
        fleet = name in ("main", SECOND_NODE) and SECOND_NODE in self.servers
        attempts = 1 if fleet else START_ATTEMPTS
        for attempt in range(1, attempts + 1):
            try:
                await self._start(self.servers[name])
                return
            except (_ExitedAtOnce, LabError) as e:
                if isinstance(e, LabError) or attempt == attempts:
                    failures.append(str(e))
                    everything.cancel()
                    return
            self.servers[name] = self._configure(name)  # on another port

    async def _start(self, server: Server) -> None:
        server.ready_file.unlink(missing_ok=True)
        command = [*self.server_command, "--config", str(server.config)]
        command += ["--ready-file", str(server.ready_file)]
        with server.log.open("ab") as log:
            log.write(f"\n$ {shlex.join(command)}\n".encode())
            log.flush()
            # A session of its own: Ctrl-C in the lab's terminal stops the lab, which stops
            # the servers; they do not take the signal as their own.
            server.process = await trio.lowlevel.open_process(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        with trio.move_on_after(START_TIMEOUT_S):
            while not server.ready_file.exists():
                if server.process.poll() is not None:
                    raise _ExitedAtOnce(
                        f"the {server.profile} server exited with {server.process.returncode}:"
                        f"\n{_tail(server.log)}"
                    )
                await trio.sleep(READY_POLL_S)
            return
        await self._stop(server)
        raise LabError(f"the {server.profile} server was not ready in time:\n{_tail(server.log)}")

    async def _watch(self, server: Server) -> None:
        """Report an instance that exits on its own (a restart's kill is expected)."""
        while True:
            assert server.process is not None
            code = await server.process.wait()
            if self.stopping:
                return
            if server.replacing:
                await server.replaced.wait()
                continue
            self.exited[server.profile] = code
            (self.dir / "exited.json").write_text(json.dumps(self.exited), encoding="utf-8")
            print(
                f"aoi lab: the {server.profile} server exited on its own with {code} "
                f"(see {server.log})",
                file=sys.stderr,
                flush=True,
            )
            return

    async def _serve_restart_requests(self) -> None:
        for request in sorted((self.dir / "restart").glob("*.request")):
            server = self.servers.get(request.stem)
            if server is None:
                outcome = f"no {request.stem} instance in this lab"
            else:
                try:
                    await self._crash_and_start(server)
                    outcome = "ok"
                except (LabError, _ExitedAtOnce) as e:
                    outcome = str(e)
            request.unlink(missing_ok=True)
            request.with_suffix(".done").write_text(outcome, encoding="utf-8")

    async def _crash_and_start(self, server: Server) -> None:
        assert server.process is not None
        server.replacing, server.replaced = True, trio.Event()
        server.process.kill()
        await server.process.wait()
        try:
            await self._start(server)
        finally:
            server.replacing = False
            server.replaced.set()

    async def _stop(self, server: Server) -> None:
        process = server.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        with trio.move_on_after(STOP_TIMEOUT_S):
            await process.wait()
            return
        process.kill()
        await process.wait()

    async def _stop_all(self) -> None:
        async with trio.open_nursery() as nursery:
            for server in self.servers.values():
                nursery.start_soon(self._stop, server)


class _ExitedAtOnce(Exception):
    """The server exited before it was ready (its port taken meanwhile, say)."""


def _tail(log: Path, lines: int = 20) -> str:
    try:
        text = log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pytest() -> str:
    """The pytest of this environment when it has one (``.venv/bin/pytest`` in a checkout),
    else the one on the PATH."""
    here = Path(sys.executable).parent / "pytest"
    return str(here) if here.exists() else "pytest"
