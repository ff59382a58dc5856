"""The embedded default: ``pytest conformance`` without a target certifies the reference.

The suite starts a lab of reference servers, ``python -m aoi lab --with-client`` (the
reference's own command, :mod:`aoi.lab`), with the profiles the selected scenarios need,
and reads the IXIT the lab writes: from there the run is a ``--ixit`` run like a vendor's,
and the reference AOI Client is the client under test through the IXIT's ``[client]``.
The reference's test configuration has one home, the lab; nothing here imports the
reference. The lab's output and its servers' logs go to ``reports/embedded/``.
"""

from __future__ import annotations

import importlib.util
import json
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from conformance.ixit import Ics, Ixit, load_document, parse_ixit
from conformance.targets import ExternalTargets

LAB = (sys.executable, "-m", "aoi", "lab")
LAB_START_S = 60.0  # the lab starts its servers at once and says when all are ready
READY_POLL_S = 0.05  # the lab says it is ready only by writing its IXIT
STOP_S = 10.0
# Before the lab is up: what the embedded run certifies (the lab's own IXIT says it again).
ICS = Ics(
    implementation="AOI reference AOI Server and AOI Client (aoi lab)",
    vendor="aoi-kit",
    roles=frozenset({"S", "C"}),
    features=frozenset({"shedding", "collapse", "cancel", "batch", "multi_server"}),
)
LABEL = "embedded reference AOI Server and AOI Client (python -m aoi lab --with-client)"


class EmbeddedError(RuntimeError):
    """The reference could not be started (an environment problem, not a verdict)."""


def reference_installed() -> bool:
    return importlib.util.find_spec("aoi") is not None


class Lab:
    """One ``aoi lab`` process: started, waited for until it wrote its IXIT, stopped."""

    def __init__(
        self,
        directory: Path,
        output: Path,
        *,
        profiles: Iterable[str],
        with_client: bool = False,
        server_command: Sequence[str] = (),
        command: Sequence[str] = LAB,
    ) -> None:
        self.dir = directory
        self.output = output
        self.argv = [*command, "--dir", str(directory), "--profiles", ",".join(profiles)]
        if with_client:
            self.argv.append("--with-client")
        if server_command:
            self.argv += ["--server-command", shlex.join(server_command)]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def ixit_file(self) -> Path:
        return self.dir / "ixit.toml"

    def start(self, timeout: float = LAB_START_S) -> Path:
        """Start the lab; its IXIT once every server is ready."""
        self.ixit_file.unlink(missing_ok=True)
        self.output.parent.mkdir(parents=True, exist_ok=True)
        with self.output.open("ab") as out:
            out.write(f"$ {shlex.join(self.argv)}\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + timeout
        while not self.ixit_file.exists():
            if self.process.poll() is not None:
                raise EmbeddedError(
                    f"the lab of reference servers exited with {self.process.returncode}: "
                    f"{self.tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise EmbeddedError(f"the lab was not ready in {timeout:.0f} s: {self.tail()}")
            time.sleep(READY_POLL_S)
        return self.ixit_file

    def tail(self, lines: int = 12) -> str:
        try:
            text = self.output.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return " | ".join(text.splitlines()[-lines:])

    def exited(self) -> dict[str, int]:
        """Servers of the lab that exited on their own: profile -> exit code."""
        try:
            found: dict[str, int] = json.loads((self.dir / "exited.json").read_text())
        except (OSError, ValueError):
            return {}
        return found

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class EmbeddedReference(ExternalTargets):
    """The targets of the embedded run: a lab started for the profiles the run needs
    (:meth:`start`), then used as any target an IXIT describes."""

    def __init__(self, logs_dir: Path, *, timeout_scale: float = 1.0) -> None:
        empty = Ixit(ics=ICS, endpoints={}, clients={}, server_apps={})
        super().__init__(empty, timeout_scale=timeout_scale)
        self.logs_dir = logs_dir
        self.workdir = Path(tempfile.mkdtemp(prefix="aoi-conformance-lab-"))
        self.lab: Lab | None = None

    def start(self, profiles: Iterable[str]) -> tuple[Ixit, dict[str, object]]:
        """Start the lab with ``profiles`` (and ``main``); its IXIT and TOML document."""
        wanted = {"main", *profiles}
        self.lab = Lab(
            self.workdir,
            self.logs_dir / "lab.log",
            profiles=sorted(wanted),
            with_client=True,
        )
        path = self.lab.start(LAB_START_S * self.timeout_scale)
        document = load_document(path)
        self.ixit = parse_ixit(document, path.parent)
        return self.ixit, document

    def exited(self) -> dict[str, int]:
        return self.lab.exited() if self.lab is not None else {}

    def close(self) -> None:
        if self.lab is not None:
            self.lab.stop()
            for log in (self.workdir / "logs").glob("*.log"):  # kept with the reports
                shutil.copy(log, self.logs_dir / log.name)
        shutil.rmtree(self.workdir, ignore_errors=True)
