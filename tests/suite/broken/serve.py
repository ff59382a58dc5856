"""Run the reference AOI Server with one fault injected: a broken target for the suite.

    python tests/suite/broken/serve.py FAULT -- <aoi server args>
    python tests/suite/broken/serve.py FAULT --zygote SOCKET [--control DIR] -- <args>
    python tests/suite/broken/serve.py --zygote SOCKET
    python tests/suite/broken/serve.py --restart DIR/PROFILE.json

The first form imports the reference, applies the fault named FAULT
(:mod:`tests.suite.broken.faults`) and runs ``aoi.server.cli.main(args)``.

The others share the start-up (importing the reference takes most of a second of CPU, and
a broken target has a server per profile): the third form is a fork server that imports
the reference once, unpatched, and listens on SOCKET; the second asks it for a server.
The fork applies FAULT in itself and runs ``main(args)`` with this process's stdout and
stderr and working directory, and this process stands for it: SIGTERM and SIGINT are
passed on, and when the server exits so does this process, with its exit code. SIGUSR2
crashes the server (SIGKILL) and forks a new one: the crash and restart of AOI-DEL-010.
With ``--control DIR`` it writes ``DIR/<stem of --config>.json`` naming itself and the
server's ready file, for the fourth form, the ``[restart] command`` of a broken target's
IXIT: it crashes and restarts that server and waits until the new one has written its
ready file, as the suite expects of that command.

Only the standard library is imported here, so that the second and fourth forms start in
a few milliseconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
POLL_S = 0.05
RESTART_TIMEOUT_S = 60.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
RESTART_SIGNAL = signal.SIGUSR2


def _option(args: list[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def serve(fault: str, args: list[str]) -> int:
    """Apply ``fault`` to the reference in this process and run the server."""
    sys.path.insert(0, str(ROOT))
    from aoi.server.cli import main
    from tests.suite.broken.faults import apply

    apply(fault)
    return main(args)


# --- the fork server -----------------------------------------------------------------


def _send(conn: socket.socket, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):  # the client is gone: its server goes too
        conn.sendall(json.dumps(message).encode() + b"\n")


def _lines(buffer: bytearray) -> list[dict[str, Any]]:
    messages = []
    while b"\n" in buffer:
        line, _, rest = bytes(buffer).partition(b"\n")
        buffer[:] = rest
        messages.append(json.loads(line))
    return messages


@dataclass
class _Server:
    """A server forked for one client connection."""

    request: dict[str, Any]
    fds: list[int]
    pid: int = 0
    buffer: bytearray = field(default_factory=bytearray)


class Zygote:
    def __init__(self, path: Path) -> None:
        self.selector = selectors.DefaultSelector()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(64)
        self.selector.register(self.listener, selectors.EVENT_READ)
        self.servers: dict[socket.socket, _Server] = {}
        self.stop = False

    def run(self) -> int:
        for signum in STOP_SIGNALS:
            signal.signal(signum, lambda *_: setattr(self, "stop", True))
        while not self.stop:
            for key, _ in self.selector.select(timeout=POLL_S):
                if key.fileobj is self.listener:
                    conn, _ = self.listener.accept()
                    self.selector.register(conn, selectors.EVENT_READ)
                else:
                    assert isinstance(key.fileobj, socket.socket)
                    self._readable(key.fileobj)
            for conn, server in list(self.servers.items()):
                done, status = os.waitpid(server.pid, os.WNOHANG)
                if done:
                    _send(conn, {"exit": os.waitstatus_to_exitcode(status)})
                    self._forget(conn, reap=False)
        for conn in list(self.servers):
            self._forget(conn)
        return 0

    def _readable(self, conn: socket.socket) -> None:
        server = self.servers.get(conn)
        if server is None:  # the request, with the client's stdout and stderr
            try:
                data, fds, _, _ = socket.recv_fds(conn, 65536, 2)
                buffer = bytearray(data)
                while data and b"\n" not in buffer:  # the rest of a long request
                    data = conn.recv(65536)
                    buffer += data
            except OSError:
                data, fds = b"", []
            if not data or len(fds) != 2:  # the client died before it asked
                for fd in fds:
                    os.close(fd)
                self.selector.unregister(conn)
                conn.close()
                return
            server = _Server(_lines(buffer)[0], fds, buffer=buffer)
            self.servers[conn] = server
            self._fork(conn, server)
            return
        try:
            data = conn.recv(4096)
        except OSError:
            data = b""
        if not data:  # the client died: so does its server
            self._forget(conn)
            return
        server.buffer += data
        for message in _lines(server.buffer):
            if "signal" in message:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(server.pid, int(message["signal"]))
            elif message.get("restart"):
                os.kill(server.pid, signal.SIGKILL)
                os.waitpid(server.pid, 0)
                self._fork(conn, server)

    def _fork(self, conn: socket.socket, server: _Server) -> None:
        parent = os.getpid()
        pid = os.fork()
        if pid:
            server.pid = pid
            _send(conn, {"pid": pid})
            return
        code = 1
        try:
            for key in list(self.selector.get_map().values()):  # the listener, the clients
                assert isinstance(key.fileobj, socket.socket)
                key.fileobj.close()
            self.selector.close()
            os.dup2(server.fds[0], 1)
            os.dup2(server.fds[1], 2)
            os.chdir(server.request["cwd"])
            for signum in (*STOP_SIGNALS, RESTART_SIGNAL):
                signal.signal(signum, signal.SIG_DFL)
            _die_with(parent)
            code = serve(server.request["fault"], server.request["args"])
        except BaseException:
            traceback.print_exc()
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)

    def _forget(self, conn: socket.socket, *, reap: bool = True) -> None:
        server = self.servers.pop(conn)
        if reap:
            with contextlib.suppress(ProcessLookupError):
                os.kill(server.pid, signal.SIGKILL)
            os.waitpid(server.pid, 0)
        for fd in server.fds:
            os.close(fd)
        self.selector.unregister(conn)
        conn.close()


def _die_with(parent: int) -> None:
    """A forked server must not outlive the fork server, even one killed with SIGKILL."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the fork server's SIGTERM still stops it
        pass
    if os.getppid() != parent:
        os._exit(1)


def zygote(path: Path) -> int:
    """The fork server: import the reference once, then fork servers on request."""
    sys.path.insert(0, str(ROOT))
    import aoi.server.cli  # noqa: F401  (what every fork would import otherwise)
    import tests.suite.broken.faults  # noqa: F401

    return Zygote(path).run()


def via_zygote(path: Path, fault: str, control: Path | None, args: list[str]) -> int:
    """Stand for a server forked by the fork server at ``path``."""
    wanted: dict[str, int] = {}
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda s, _: wanted.__setitem__("stop", s))
    signal.signal(RESTART_SIGNAL, lambda s, _: wanted.__setitem__("restart", s))
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(str(path))
    request = {"fault": fault, "args": args, "cwd": os.getcwd()}
    socket.send_fds(conn, [json.dumps(request).encode() + b"\n"], [1, 2])
    if control is not None:
        config, ready = _option(args, "--config"), _option(args, "--ready-file")
        control.mkdir(parents=True, exist_ok=True)
        entry = control / f"{Path(config or 'server').stem}.json"
        entry.write_text(json.dumps({"pid": os.getpid(), "ready_file": ready}), encoding="utf-8")
    buffer = bytearray()
    stopping = False
    conn.settimeout(POLL_S)
    while True:
        if "stop" in wanted and not stopping:
            _send(conn, {"signal": wanted["stop"]})
            stopping = True
        elif wanted.pop("restart", None) and not stopping:
            _send(conn, {"restart": True})
        try:
            data = conn.recv(4096)
        except TimeoutError:
            continue
        if not data:
            print("(broken target: the fork server went away)", file=sys.stderr)
            return 1
        buffer += data
        for message in _lines(buffer):
            if "exit" in message:
                return int(message["exit"])


# --- the restart command -------------------------------------------------------------


def restart(control: Path) -> int:
    entry = json.loads(control.read_text(encoding="utf-8"))
    ready = Path(entry["ready_file"])
    ready.unlink(missing_ok=True)
    os.kill(entry["pid"], RESTART_SIGNAL)
    deadline = time.monotonic() + RESTART_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            if json.loads(ready.read_text(encoding="utf-8")):
                return 0
        except (OSError, ValueError):
            pass  # not written yet, or being written
        time.sleep(POLL_S)  # the new server says it is ready only by writing the file
    print(f"the server of {control} wrote no ready file in {RESTART_TIMEOUT_S} s", file=sys.stderr)
    return 1


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] in ("--restart", "--zygote"):
        path = Path(argv[1])
        return restart(path) if argv[0] == "--restart" else zygote(path)
    if "--" not in argv or argv[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    ours, args = argv[: argv.index("--")], argv[argv.index("--") + 1 :]
    fault, via, control = ours[0], _option(ours, "--zygote"), _option(ours, "--control")
    if via is None:
        return serve(fault, args)
    return via_zygote(Path(via), fault, Path(control) if control else None, args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
