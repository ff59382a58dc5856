"""Mosquitto 2 on the AOI push workloads: idle sessions, throughput, latency, connection storm.

    python -m bench.mosquitto [--quick] [--sessions 5000,10000,20000] [--clients 100]
                              [--rate 1000] [--seconds 5] [--storm 5000]
                              [--only memory throughput latency storm] [--no-persistence]

The counterpart of ``bench.server`` (the AOI reference server on the same workloads, with
the same key names where a figure means the same). Prints one JSON object; progress goes to
stderr. Each workload gets a fresh broker (:class:`Broker`: Debian's ``mosquitto`` package,
installed with apt-get when missing, run as a child process with a generated configuration
on a loopback port and stopped at the end); the load generator is :mod:`bench.mqtt`.

The machine is shared: ``machine_busy_before_share`` is how busy its CPUs were in the second
before a workload started, with none of the benchmark's processes running; figures taken
while something else was busy are not the broker's alone.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from . import mqtt
from .machine import cpu_seconds, machine_busy_since, machine_jiffies, raise_nofile
from .mqtt import KEEPALIVE_S, MESSAGE_EXPIRY_S, PAYLOAD_BYTES, SESSION_EXPIRY_S

BROKER_NOFILE = 131072
SBIN = "/usr/sbin:/usr/local/sbin:/usr/bin:/usr/local/bin"
DURABILITY = (
    "persistence true: the in-memory store (sessions, subscriptions, queued QoS 1 messages) is "
    "written to disk as a whole snapshot every autosave_interval seconds and at shutdown, never "
    "per message; a PUBACK means 'in the broker's memory', so a crash loses what came since the "
    "last snapshot. This is the closest Mosquitto has to AOI's 201 (committed to SQLite before "
    "the answer), which Mosquitto cannot match; sessions and queues do survive a clean restart, "
    "as AOI's do."
)


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=SBIN)


def ensure_installed() -> str:
    """Path of ``mosquitto``; installs Debian's package with apt-get when it is missing."""
    found = _which("mosquitto")
    if found is not None and _which("mosquitto_passwd") is not None:
        return found
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update"],
        ["apt-get", "install", "-y", "--no-install-recommends", "mosquitto"],
    ):
        subprocess.run(
            command, check=True, env=environment, stdout=sys.stderr, stdin=subprocess.DEVNULL
        )
    found = _which("mosquitto")
    if found is None or _which("mosquitto_passwd") is None:
        raise RuntimeError("apt-get installed mosquitto, but mosquitto is not on the PATH")
    return found


def version(executable: str | None = None) -> str:
    """Mosquitto's version, from ``mosquitto -h``."""
    completed = subprocess.run(
        [executable or ensure_installed(), "-h"], capture_output=True, text=True, check=False
    )
    match = re.search(r"mosquitto version (\S+)", completed.stdout + completed.stderr)
    return match.group(1) if match else "unknown"


def _free_port(host: str) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


class Broker:
    """A Mosquitto broker in a child process, on a loopback port, with authenticated users.

    ``with Broker() as broker:`` installs it if needed, starts it and stops it at the end.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        persistence: bool = True,
        autosave_interval: int = 1800,
        max_inflight_messages: int = 1000,
        max_queued_messages: int = 10000,
        users: dict[str, str] | None = None,
        acl: str = mqtt.ACL,
    ) -> None:
        self.host = host
        self.port = port or 0
        self.persistence = persistence
        self.autosave_interval = autosave_interval
        self.max_inflight_messages = max_inflight_messages
        self.max_queued_messages = max_queued_messages
        self.users = dict(users or mqtt.USERS)
        self.acl = acl
        self.executable: str | None = None
        self.directory: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.nofile = 0
        self.fds_at_start = 0
        self._log: Any = None

    # -- life cycle --

    def __enter__(self) -> Broker:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def config(self) -> str:
        assert self.directory is not None
        lines = [
            "# generated by bench.mosquitto",
            "per_listener_settings false",
            f"listener {self.port} {self.host}",
            "max_connections -1",
            "allow_anonymous false",
            f"password_file {self.directory / 'passwd'}",
            f"acl_file {self.directory / 'acl'}",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.directory}/",
            f"autosave_interval {self.autosave_interval}",
            f"max_inflight_messages {self.max_inflight_messages}",
            f"max_queued_messages {self.max_queued_messages}",
            "set_tcp_nodelay true",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "connection_messages false",
        ]
        user = self._run_as()
        if user is not None:
            lines.append(f"user {user.pw_name}")
        return "\n".join(lines) + "\n"

    @staticmethod
    def _run_as() -> pwd.struct_passwd | None:
        """The user mosquitto drops to when started as root (its own, else nobody)."""
        if os.geteuid() != 0:
            return None
        for name in ("mosquitto", "nobody"):
            with contextlib.suppress(KeyError):
                return pwd.getpwnam(name)
        return None

    def start(self) -> None:
        if self.process is not None:
            raise RuntimeError("broker already started")
        self.executable = ensure_installed()
        passwd_tool = _which("mosquitto_passwd")
        assert passwd_tool is not None
        self.nofile = raise_nofile(BROKER_NOFILE)  # the child inherits it
        self.directory = Path(tempfile.mkdtemp(prefix="bench-mosquitto-"))
        try:
            if not self.port:
                self.port = _free_port(self.host)
            passwd = self.directory / "passwd"
            for index, (name, password) in enumerate(self.users.items()):
                create = ["-c"] if index == 0 else []
                subprocess.run(
                    [passwd_tool, *create, "-b", str(passwd), name, password],
                    check=True, capture_output=True,
                )  # fmt: skip
            (self.directory / "acl").write_text(self.acl)
            (self.directory / "mosquitto.conf").write_text(self.config())
            user = self._run_as()
            for path in (self.directory, *self.directory.iterdir()):
                if user is not None:
                    os.chown(path, user.pw_uid, user.pw_gid)
                path.chmod(0o700 if path.is_dir() else 0o600)
            self._log = open(self.directory / "mosquitto.log", "wb")  # noqa: SIM115
            self.process = subprocess.Popen(
                [self.executable, "-c", str(self.directory / "mosquitto.conf")],
                stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            )  # fmt: skip
            atexit.register(self.stop)
            self._wait_ready(10.0)
            self.fds_at_start = len(os.listdir(f"/proc/{self.process.pid}/fd"))
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mosquitto exited with {self.process.returncode}: {self.log()}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), 0.2),
            ):
                return
            time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port} in {timeout} s: {self.log()}")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (mosquitto then saves its store), SIGKILL after ``timeout``; idempotent."""
        atexit.unregister(self.stop)
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None

    # -- measurements --

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("broker not running")
        return self.process.pid

    def rss(self) -> int:
        """Resident set size in bytes (VmRSS of /proc/PID/status)."""
        with open(f"/proc/{self.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("no VmRSS in /proc status")

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    @property
    def max_clients(self) -> int:
        """Connections its RLIMIT_NOFILE leaves room for (a few spare for files it opens)."""
        return self.nofile - self.fds_at_start - 8

    def log(self) -> str:
        if self.directory is None:
            return ""
        with contextlib.suppress(OSError):
            return (self.directory / "mosquitto.log").read_text(errors="replace")[-4000:]
        return ""

    def describe(self) -> dict[str, Any]:
        return {
            "name": "mosquitto",
            "version": version(self.executable),
            "persistence": self.persistence,
            "autosave_interval_s": self.autosave_interval,
            "durability": DURABILITY if self.persistence else "persistence false: memory only",
            "max_inflight_messages": self.max_inflight_messages,
            "max_queued_messages": self.max_queued_messages,
            "max_connections": -1,
            "listen_backlog": 100,
            "set_tcp_nodelay": True,
            "auth": "password_file (mosquitto_passwd), allow_anonymous false",
            "acl": "pattern read aoi/%c/#; the publisher may write aoi/#",
            "rlimit_nofile": self.nofile,
            "threads": 1,
        }


# --- the command line --------------------------------------------------------------------

WORKLOADS = ("memory", "throughput", "latency", "storm")


def _background_busy(wait: float) -> float:
    """How busy the machine's CPUs were over one second; retried for up to ``wait`` seconds
    until under 25 % (other work on a shared machine skews every CPU-bound figure)."""
    deadline = time.monotonic() + wait
    while True:
        before = machine_jiffies()
        time.sleep(1.0)
        busy = machine_busy_since(before)
        if busy < 0.25 or time.monotonic() >= deadline:
            return busy


def run(
    *,
    sessions: list[int],
    clients: int = 100,
    rate: float = 1000.0,
    seconds: float = 5.0,
    storm_clients: int = 5000,
    only: tuple[str, ...] = WORKLOADS,
    persistence: bool = True,
    wait_quiet: float = 0.0,
) -> dict[str, Any]:
    """Every workload of ``only``, each on a fresh broker; one JSON-ready document."""
    started = time.monotonic()
    report: dict[str, Any] = {"cpus": os.cpu_count(), "load_average": os.getloadavg()}
    with Broker(persistence=persistence) as broker:
        report["broker"] = broker.describe()
    report["workload"] = {
        "protocol": "MQTT 5.0 (bench.loadgen: the C load generator, as for AOI)",
        "session": "CONNECT with user name and password, clean start, session expiry "
        f"{SESSION_EXPIRY_S} s, keepalive {KEEPALIVE_S} s; SUBSCRIBE "
        "aoi/<client_id>/chat at QoS 1",
        "push": f"PUBLISH QoS 1, message expiry {MESSAGE_EXPIRY_S} s, "
        f"{PAYLOAD_BYTES}-byte payload '<monotonic stamp> <seq> xxx...'",
        "source_addresses": f"{mqtt.SOURCE_ADDRESSES[0]}..{mqtt.SOURCE_ADDRESSES[-1]}",
    }
    for name in only:
        with Broker(persistence=persistence) as broker:
            background = _background_busy(wait_quiet)
            if name == "memory":
                figures = mqtt.memory(broker, sessions)
            elif name == "throughput":
                figures = mqtt.throughput(broker, clients, seconds)
            elif name == "latency":
                figures = mqtt.latency(broker, rate, seconds, clients=clients)
            else:
                figures = mqtt.storm(broker, storm_clients, steady=clients, rate=rate)
        report[name] = {**figures, "machine_busy_before_share": background}
        print(json.dumps({name: figures}), file=sys.stderr, flush=True)
    report["seconds"] = round(time.monotonic() - started, 1)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--sessions", help="idle sessions, comma-separated (5000,10000,20000)")
    parser.add_argument("--clients", type=int, default=100, help="subscribers (throughput...)")
    parser.add_argument("--rate", type=float, default=1000.0, help="publishes/s (latency, storm)")
    parser.add_argument("--seconds", type=float, help="counting window (5; --quick 2)")
    parser.add_argument("--storm", type=int, help="clients connecting at once (5000)")
    parser.add_argument("--only", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument(
        "--no-persistence", action="store_true", help="persistence false (memory only)"
    )
    parser.add_argument(
        "--wait-quiet", type=float, default=0.0, metavar="SECONDS",
        help="before each workload, wait up to this long for the machine to be idle",
    )  # fmt: skip
    args = parser.parse_args()
    # SIGTERM unwinds like Ctrl-C, so that every broker and load generator is stopped
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))
    quick = args.quick
    sessions = args.sessions or ("500,1000" if quick else "5000,10000,20000")
    report = run(
        sessions=[int(n) for n in sessions.split(",")],
        clients=args.clients,
        rate=args.rate,
        seconds=args.seconds or (2.0 if quick else 5.0),
        storm_clients=args.storm or (500 if quick else 5000),
        only=tuple(args.only),
        persistence=not args.no_persistence,
        wait_quiet=args.wait_quiet,
    )
    report["quick"] = quick
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
