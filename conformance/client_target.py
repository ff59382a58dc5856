"""Client mode: the AOI Client under test, started by the suite for each scenario.

``--target-client "CMD"`` (or ``[client] command`` in the IXIT) names a command template.
For each scenario the suite fills in its placeholders and starts it:

| placeholder | what the suite puts there |
|---|---|
| ``{provisioning_url}`` | the URL of the suite's provisioning endpoint (``GET /v1/provisioning``) |
| ``{provisioning_url_2}`` | a second AOI Service Provider's endpoint (multi-provider scenarios) |
| ``{app_port}`` | the loopback port the client must serve AOI-1 on |
| ``{state_dir}`` | an empty directory for what the client keeps (kept across restarts) |
| ``{client_id}``, ``{credential}`` | the identity the suite's servers and provisioning accept |
| ``{ca_file}`` | the CA certificate (PEM) of the suite's TLS servers |

The command is split like a POSIX shell would split it, without a shell (``sh -c '...'``
gives one). The client is ready when its AOI-1 port accepts connections. Timing
tolerances of the client-mode checks come from ``[client.tolerances]`` (documented
defaults below, docs/conformance.md).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance.ixit import IxitError, Secret

PLACEHOLDERS = (
    "provisioning_url",
    "provisioning_url_2",
    "app_port",
    "state_dir",
    "client_id",
    "credential",
    "ca_file",
)
PROVIDER = "conformance.example"  # the provider of the suite's first policy document
SECOND_PROVIDER = "second.conformance.example"
READY_POLL_S = 0.02  # polling the AOI-1 port: a client under test has no other way to say so


@dataclass(frozen=True, slots=True)
class Tolerances:
    """How far the client's timing may stray from the policy before a check fails."""

    retry_after_s: float = 0.1  # a hello this much before retry_after_s ends still passes
    backoff_s: float = 0.25  # slack on the policy's largest backoff
    keepalive_s: float = 1.0  # slack on the keepalive interval
    return_to_preferred_s: float = 0.25  # a return this much before the policy's time passes
    jitter_spread: float = 0.1  # random delays must spread over this share of initial_ms


@dataclass(frozen=True, slots=True)
class ClientTarget:
    """The AOI Client under test: its command and what the suite must know about it."""

    command: str
    client_id: str
    credential: str = field(repr=False)
    label: str = ""
    welcome_timeout_s: float = 10.0  # no welcome or reject within it: unreachable (6.4)
    startup_timeout_s: float = 30.0
    tolerances: Tolerances = field(default_factory=Tolerances)

    def __post_init__(self) -> None:
        object.__setattr__(self, "credential", Secret(self.credential))
        if not self.argv_template():
            raise IxitError("the client command is empty")
        self.argv({p: p for p in PLACEHOLDERS})  # an unknown placeholder fails here, at once

    def argv_template(self) -> list[str]:
        try:
            return shlex.split(self.command)
        except ValueError as e:
            raise IxitError(f"the client command cannot be split: {e}") from None

    def argv(self, values: dict[str, str]) -> list[str]:
        """The command with its placeholders filled in; an unknown placeholder is an error."""
        out = []
        for token in self.argv_template():
            try:
                out.append(token.format_map(values))
            except KeyError as e:
                raise IxitError(
                    f"the client command names an unknown placeholder {{{e.args[0]}}}; "
                    f"known: {', '.join('{' + p + '}' for p in PLACEHOLDERS)}"
                ) from None
            except (ValueError, IndexError) as e:
                raise IxitError(f"the client command: {e} in {token!r}") from None
        return out

    def uses(self, placeholder: str) -> bool:
        return "{" + placeholder + "}" in self.command


def parse_client_target(
    document: dict[str, Any], command: str | None, generated: tuple[str, str]
) -> ClientTarget | None:
    """The ``[client]`` table of an IXIT checked against its schema (``command`` overrides
    its command); None when neither gives a command. ``generated`` is the identity used
    when the table gives none."""
    table = document.get("client", {})
    command = command or table.get("command")
    if not command:
        return None
    t = table.get("tolerances", {})
    return ClientTarget(
        command=str(command),
        client_id=str(table.get("client_id") or generated[0]),
        credential=str(table.get("credential") or generated[1]),
        label=str(table.get("label") or command),
        welcome_timeout_s=float(table.get("welcome_timeout_s", 10.0)),
        startup_timeout_s=float(table.get("startup_timeout_s", 30.0)),
        tolerances=Tolerances(**{k: float(v) for k, v in t.items()}),
    )


class SuiteCa:
    """The TLS material of client mode: the CA the client is told to trust ({ca_file}), and
    server certificates from it, from a CA nobody trusts, or for another host name."""

    def __init__(self, workdir: Path) -> None:
        import trustme

        self.ca = trustme.CA()
        self.stranger = trustme.CA()
        self.ca_file = workdir / "suite-ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self._contexts: dict[str, Any] = {}

    def server_context(self, kind: str) -> Any:
        """An ``ssl.SSLContext`` for a server: ``trusted``, ``unknown_ca`` or ``wrong_name``."""
        import ssl

        if kind not in self._contexts:
            ca, names = {
                "trusted": (self.ca, ("127.0.0.1", "localhost")),
                "unknown_ca": (self.stranger, ("127.0.0.1", "localhost")),
                "wrong_name": (self.ca, ("wrong-name.conformance.example",)),
            }[kind]
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ca.issue_cert(*names).configure_cert(context)
            self._contexts[kind] = context
        return self._contexts[kind]


class ClientMode:
    """What client mode keeps for a whole run: the target, a work directory, the CA."""

    def __init__(self, target: ClientTarget, logs_dir: Path, workdir: Path | None = None) -> None:
        self.target = target
        self.logs_dir = logs_dir
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="aoi-conformance-client-"))
        self._ca: SuiteCa | None = None

    @property
    def ca(self) -> SuiteCa:
        if self._ca is None:
            self._ca = SuiteCa(self.workdir)
        return self._ca

    def close(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


class ClientStartError(RuntimeError):
    """The client under test could not be started (an ERROR of the run, not a verdict)."""


class ClientProcess:
    """One run of the client command; ``start`` again after ``stop`` restarts it with the
    same placeholders (same state directory, same AOI-1 port)."""

    def __init__(self, target: ClientTarget, values: dict[str, str], log: Path) -> None:
        self.target = target
        self.values = values
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.runs = 0

    @property
    def app_port(self) -> int:
        return int(self.values["app_port"])

    def start(self, timeout: float) -> None:
        argv = self.target.argv(self.values)
        self.runs += 1
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            shown = shlex.join(argv).replace(self.target.credential, "***")
            out.write(f"\n$ {shown}  (run {self.runs})\n".encode())
            out.flush()
            try:
                self.process = subprocess.Popen(
                    argv,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # its own process group: stopped as a whole
                )
            except OSError as e:
                raise ClientStartError(f"cannot start the client command: {e}") from e
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._port_open():
                return
            if self.process.poll() is not None:
                raise ClientStartError(
                    f"the client exited with {self.process.returncode} before serving AOI-1 on "
                    f"port {self.app_port}:\n{self.tail()}"
                )
            time.sleep(READY_POLL_S)
        self.stop(5)
        raise ClientStartError(
            f"the client did not serve AOI-1 on 127.0.0.1:{self.app_port} within {timeout:.0f} s:"
            f"\n{self.tail()}"
        )

    def _port_open(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.app_port), timeout=0.5):
                return True
        except OSError:
            return False

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stop(self, timeout: float) -> int | None:
        """SIGTERM to the client's process group, then SIGKILL if it lingers."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            self._signal(process, signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._signal(process, signal.SIGKILL)
                process.wait()
        return process.returncode

    @staticmethod
    def _signal(process: subprocess.Popen[bytes], sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)  # the group this Popen created (start_new_session)

    def tail(self, lines: int = 20) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def generated_identity() -> tuple[str, str]:
    """The client id and credential of an AOI Client under test whose IXIT fixes none."""
    # The credential never starts with "-": it is a word of the client's command line.
    return f"conformance-dut-{secrets.token_hex(4)}", "k" + secrets.token_urlsafe(18)
