"""The embedded default: reference AOI Servers started on free loopback ports, and the
reference AOI Client as the client under test.

``pytest conformance`` without target options certifies the reference. Each profile of the
IXIT (see :mod:`conformance.ixit`) gets its own server instance, started on first use as
``python -m aoi server --config <toml> --ready-file <path>`` with a configuration written
here: test clients and server apps, a policy document, short timers for the timing
scenarios, a small ``max_sessions`` for overload, shedding on one instance, TLS (with a
trustme CA) on another. Client mode starts ``python -m aoi client`` for each scenario
(:func:`embedded_client`), with a short welcome timeout. Nothing here imports the
reference: both are subprocesses.
"""

from __future__ import annotations

import json
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from conformance.client_target import ClientMode, ClientTarget
from conformance.ixit import Client, Endpoint, Ics, Ixit, Overload, ServerApp
from conformance.ports import free_port

PROVIDER = "conformance.example"
HANDSHAKE_TIMEOUT_S = 2
KEEPALIVE_S = 5  # the smallest keepalive the schema allows
CLIENT_NAMES = ("A", "B", "C", "D", "E", "F", "G", "H")
APPS = {
    "main": {"one": "org.aoi.conformance.one", "two": "org.aoi.conformance.two"},
    "other": {"other": "org.aoi.conformance.other"},
    "limited": {"limited": "org.aoi.conformance.limited"},
}
OVERLOAD_MAX_SESSIONS = 3
OVERLOAD_ALTERNATES = ("wss://b.conformance.example/aoi",)
SHED = {"max_sessions": 8, "shed_high_water": 0.25, "shed_rate_per_s": 2, "sessions": 6}
FAILED_HELLO_LIMIT = 3
START_ATTEMPTS = 3
LIMITED_RATE = {"rate_per_s": 1, "burst": 3}
CLIENT_WELCOME_TIMEOUT_S = 2  # the reference client's, for the server that never answers
CLIENT_COMMAND = (
    "{python} -m aoi client --provisioning-url {{provisioning_url}} "
    "--provisioning-url {{provisioning_url_2}} --app-port {{app_port}} "
    "--state-dir {{state_dir}} --client-id {{client_id}} --credential {{credential}} "
    "--ca-file {{ca_file}} --config {config}"
)


class EmbeddedError(RuntimeError):
    """The embedded reference could not be started (an environment problem, not a verdict)."""

    def __init__(self, message: str, *, exited: bool = False) -> None:
        super().__init__(message)
        self.exited = exited  # the server exited at once (a port taken meanwhile, say)


def embedded_ixit() -> Ixit:
    """The IXIT of the embedded reference: fresh secrets each run, endpoints found later."""
    clients = {
        n: Client(n, f"conformance-{n.lower()}", secrets.token_urlsafe(18), PROVIDER)
        for n in CLIENT_NAMES
    }
    apps = {n: ServerApp(n, "sk_" + secrets.token_urlsafe(24), a) for n, a in APPS.items()}
    return Ixit(
        ics=Ics(
            implementation="AOI reference server and client (embedded)",
            vendor="aoi-kit",
            roles=frozenset({"S", "C"}),
            features=frozenset({"shedding", "collapse", "cancel", "multi_server"}),
        ),
        endpoints={},
        clients=clients,
        server_apps=apps,
        overload=Overload(
            method="max_sessions",
            max_sessions=OVERLOAD_MAX_SESSIONS,
            alternates=OVERLOAD_ALTERNATES,
        ),
        handshake_timeout_s=HANDSHAKE_TIMEOUT_S,
        shed_sessions=int(SHED["sessions"]),
        shed_rate_per_s=SHED["shed_rate_per_s"],
        failed_hello_limit=FAILED_HELLO_LIMIT,
        rate_limit_pushes=12,
        restart_command="(embedded)",
    )


def embedded_client(logs_dir: Path) -> ClientMode:
    """Client mode of the embedded run: the reference AOI Client, a fresh identity."""
    workdir = Path(tempfile.mkdtemp(prefix="aoi-conformance-client-"))
    config = workdir / "client.toml"
    config.write_text(
        render_toml({"client": {"welcome_timeout_s": CLIENT_WELCOME_TIMEOUT_S}}), encoding="utf-8"
    )
    command = CLIENT_COMMAND.format(
        python=shlex.quote(sys.executable), config=shlex.quote(str(config))
    )
    target = ClientTarget(
        command=command,
        client_id=f"conformance-client-{secrets.token_hex(4)}",
        credential="k" + secrets.token_urlsafe(18),  # never "-...": it is a command argument
        label="python -m aoi client",
        welcome_timeout_s=CLIENT_WELCOME_TIMEOUT_S,
    )
    return ClientMode(target, logs_dir, workdir=workdir)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def render_toml(tables: dict[str, Any]) -> str:
    """A TOML document of plain tables (dicts) and arrays of tables (lists of dicts)."""
    out: list[str] = []
    for name, table in tables.items():
        for entry in table if isinstance(table, list) else [table]:
            out.append(f"[[{name}]]" if isinstance(table, list) else f"[{name}]")
            out += [f"{k} = {_toml(v)}" for k, v in entry.items()]
            out.append("")
    return "\n".join(out)


@dataclass
class Instance:
    profile: str
    config: Path
    ready_file: Path
    log: Path
    endpoint: Endpoint | None = None
    process: subprocess.Popen[bytes] | None = None
    failure: EmbeddedError | None = None  # why it could not start (not retried)


class EmbeddedReference:
    """Starts, restarts and stops the reference AOI Servers of the embedded run."""

    def __init__(
        self,
        ixit: Ixit,
        logs_dir: Path,
        *,
        timeout_scale: float = 1.0,
        command: tuple[str, ...] = (sys.executable, "-m", "aoi", "server"),
    ) -> None:
        self.ixit = ixit
        self.command = command
        self.logs_dir = logs_dir
        self.timeout_scale = timeout_scale
        self.workdir = Path(tempfile.mkdtemp(prefix="aoi-conformance-"))
        self.instances: dict[str, Instance] = {}
        self._ca: Any = None

    # --- configuration ---------------------------------------------------------------

    def _tls_files(self) -> tuple[Path, Path, Path]:
        import trustme

        if self._ca is None:
            self._ca = trustme.CA()
        cert = self._ca.issue_cert("127.0.0.1", "localhost")
        ca_file, cert_file, key_file = (self.workdir / n for n in ("ca.pem", "cert.pem", "key.pem"))
        self._ca.cert_pem.write_to_path(str(ca_file))
        cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
        cert.private_key_pem.write_to_path(str(key_file))
        return ca_file, cert_file, key_file

    def _config(self, profile: str, port: int) -> tuple[dict[str, Any], Path | None]:
        tls = profile == "tls"
        url = f"{'wss' if tls else 'ws'}://127.0.0.1:{port}/aoi"
        policy = self.workdir / f"{profile}-policy.json"
        policy.write_text(json.dumps(self.policy(profile, url), indent=2), encoding="utf-8")
        server: dict[str, Any] = {
            "id": profile.replace("_", "-"),
            "listen": f"127.0.0.1:{port}",
            "db": str(self.workdir / f"{profile}.db"),
            "handshake_timeout_s": HANDSHAKE_TIMEOUT_S,
            "keepalive_s": KEEPALIVE_S,
            "max_apps": 8,
            "policy": str(policy),
        }
        ca_file = None
        if tls:
            ca_file, cert_file, key_file = self._tls_files()
            server |= {"tls_cert": str(cert_file), "tls_key": str(key_file)}
        overload: dict[str, Any] = {
            "max_sessions": 100,
            "hello_rate_per_s": 500,
            "hello_burst": 1000,
            "retry_after_s": 30,
        }
        if profile == "overload":
            overload |= {
                "max_sessions": OVERLOAD_MAX_SESSIONS,
                "alternates": list(OVERLOAD_ALTERNATES),
            }
        if profile == "push_overload":  # the loop lag always passes this: 1 microsecond
            overload |= {"max_loop_lag_ms": 0.001}
        if profile == "shedding":
            overload |= {
                "max_sessions": SHED["max_sessions"],
                "shed": True,
                "shed_high_water": SHED["shed_high_water"],
                "shed_rate_per_s": SHED["shed_rate_per_s"],
            }
        limit = FAILED_HELLO_LIMIT if profile == "hello_limit" else 50
        clients = [
            {"client_id": c.client_id, "credential": c.credential, "provider": PROVIDER}
            for c in self.ixit.clients.values()
        ]
        apps = []
        for app in self.ixit.server_apps.values():
            entry: dict[str, Any] = {
                "name": app.name,
                "key": app.key,
                "app_ids": list(app.apps.values()),
            }
            entry |= LIMITED_RATE if app.name == "limited" else {"rate_per_s": 1000, "burst": 2000}
            apps.append(entry)
        document = {
            "server": server,
            "overload": overload,
            "security": {"failed_hello_limit": limit, "failed_hello_window_s": 60},
            "clients": clients,
            "server_apps": apps,
        }
        return document, ca_file

    def policy(self, profile: str, url: str) -> dict[str, Any]:
        """The policy document served at /v1/provisioning by the instance."""
        return {
            "provider": PROVIDER,
            "policy_version": 1,
            "valid_until": (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "servers": [{"id": profile.replace("_", "-"), "url": url, "priority": 0}],
            "selection": "ordered",
            "reallocation": {
                "on_overload": "next_server",
                "on_unreachable": "next_server",
                "max_servers_tried": 1,
                "backoff": {"initial_ms": 100, "max_ms": 1000, "multiplier": 2.0, "jitter": "full"},
                "return_to_preferred_after_s": 0,
            },
            "fallback": {"notify_app": True},
            "multi_server": {"allowed": False, "max_concurrent": 1},
            "keepalive_s": KEEPALIVE_S,
        }

    # --- processes -------------------------------------------------------------------

    def endpoint(self, profile: str) -> Endpoint:
        instance = self.instances.get(profile)
        if instance is None:
            # The free port is found before the server binds it: another process may take
            # it meanwhile. Then the server exits at once, and a new port is tried.
            for attempt in range(1, START_ATTEMPTS + 1):
                instance = self._create(profile)
                try:
                    self._start(instance)
                    break
                except EmbeddedError as e:
                    instance.failure = e
                    if not e.exited:
                        break  # it hung: trying again would not help
                    with instance.log.open("a", encoding="utf-8") as log:
                        log.write(f"\n(conformance: start attempt {attempt} failed)\n")
        assert instance is not None
        if instance.failure is not None:
            raise instance.failure
        assert instance.endpoint is not None
        return instance.endpoint

    def _create(self, profile: str) -> Instance:
        port = free_port()
        document, ca_file = self._config(profile, port)
        config = self.workdir / f"{profile}.toml"
        config.write_text(render_toml(document), encoding="utf-8")
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        instance = Instance(
            profile,
            config,
            self.workdir / f"{profile}.ready.json",
            self.logs_dir / f"{profile}.log",
        )
        instance.endpoint = Endpoint("", "", ca_file)
        self.instances[profile] = instance
        return instance

    def _start(self, instance: Instance) -> None:
        instance.ready_file.unlink(missing_ok=True)
        command = [*self.command, "--config", str(instance.config)]
        command += ["--ready-file", str(instance.ready_file)]
        with instance.log.open("ab") as log:
            log.write(f"\n$ {' '.join(command)}\n".encode())
            log.flush()
            instance.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.workdir,
            )
        deadline = time.monotonic() + 30 * self.timeout_scale
        while time.monotonic() < deadline:
            if instance.ready_file.exists():
                try:
                    ready = json.loads(instance.ready_file.read_text(encoding="utf-8"))
                except ValueError:
                    ready = None  # being written
                if ready:
                    ca = instance.endpoint.ca_file if instance.endpoint else None
                    instance.endpoint = Endpoint(ready["aoi2"], ready["http"], ca)
                    return
            if instance.process.poll() is not None:
                raise EmbeddedError(
                    f"the reference server ({instance.profile}) exited with "
                    f"{instance.process.returncode}:\n{self.log_tail(instance)}",
                    exited=True,
                )
            time.sleep(0.05)  # polling the ready file: the server's only way to say so
        self._stop(instance)
        raise EmbeddedError(
            f"the reference server ({instance.profile}) wrote no ready file in time:\n"
            f"{self.log_tail(instance)}"
        )

    def log_tail(self, instance: Instance, lines: int = 20) -> str:
        try:
            text = instance.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def exited(self) -> dict[str, int]:
        """Instances whose process ended without being told to: profile -> exit code."""
        return {
            p: code
            for p, i in self.instances.items()
            if i.process is not None and (code := i.process.poll()) is not None
        }

    def restart(self, profile: str) -> None:
        """Crash the instance (SIGKILL: no chance to flush anything) and start it again."""
        instance = self.instances[profile]
        if instance.process is not None:
            instance.process.kill()
            instance.process.wait()
        self._start(instance)

    def _stop(self, instance: Instance) -> None:
        process = instance.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def close(self) -> None:
        for instance in self.instances.values():
            self._stop(instance)
        shutil.rmtree(self.workdir, ignore_errors=True)
