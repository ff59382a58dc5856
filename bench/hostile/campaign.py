"""The hostile-input campaign: a real ``aoi server`` attacked as an attacker (or a flaky
network, or a full disk) would, while one established session is pushed at a steady rate.

Each case sends its inputs, counts the answers (and how many were as documented), and
checks afterwards that the server still runs and serves; the established session's
latency (push sent to notification received) is measured in every case's window, and
everything accepted must reach it. The server's memory is read before and after.
:func:`run` returns the report; ``python -m bench.hostile`` prints it as a table.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import loadgen
from bench.loadgen import percentiles
from bench.machine import raise_nofile

from . import raw
from .disk import Disk, disk, read_only
from .inputs import Input, inputs
from .session import SOURCES, TEXT, Closed, Session, client_frame
from .target import APP, KEY, ROOT, Target, started

AUTH = {"authorization": f"Bearer {KEY}"}
REJECT_OVERLOADED = '{"type":"reject","reason":"overloaded"'  # the server's own encoding


@dataclass(frozen=True)
class Sizes:
    """How hard each case pushes: the full campaign, or a quick one for the test suite."""

    repeats: int = 20  # sends of each malformed request
    slow: int = 300  # connections sending a head (or a body) a byte a second
    head_timeout_s: float = 10.0  # the server's defaults
    body_timeout_s: float = 30.0
    frames: int = 200  # connections sending a 64 KB frame before hello
    storm: int = 3000  # hellos refused by a full server
    at_once: int = 2000  # of those, said by connections upgraded beforehand, at one instant
    full: int = 200  # max_sessions, filled before the storm
    races: int = 200  # register/resume races
    cap: int = 200  # max_connections of the server of the cap case
    baseline_s: float = 5.0
    rate: float = 50.0  # pushes per second to the established session


QUICK = Sizes(repeats=1, slow=50, head_timeout_s=1.0, body_timeout_s=1.0, frames=20,
              storm=300, at_once=100, full=20, races=40, cap=20, baseline_s=1.0)  # fmt: skip


@dataclass
class Row:
    case: str
    tried: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    documented: int = 0  # answers as the documentation gives them
    crashes: int = 0
    since: float = 0.0
    until: float = 0.0
    note: str = ""
    latency: dict[str, Any] = field(default_factory=dict)
    rss_kb: int | None = None  # the server's, after the case

    def answered(self, what: str, as_documented: bool) -> None:
        self.tried += 1
        self.answers[what] += 1
        self.documented += as_documented


@dataclass
class Report:
    disk: str = ""
    read_only: str = ""
    rss_kb_before: int = 0
    rss_kb_after: int = 0
    baseline: dict[str, Any] = field(default_factory=dict)
    rows: list[Row] = field(default_factory=list)
    steady: dict[str, Any] = field(default_factory=dict)  # the established session overall
    seconds: float = 0.0

    @property
    def crashes(self) -> int:
        return sum(row.crashes for row in self.rows)

    def as_json(self) -> dict[str, Any]:
        return {
            "disk": self.disk, "read_only": self.read_only, "crashes": self.crashes,
            "rss_kb_before": self.rss_kb_before, "rss_kb_after": self.rss_kb_after,
            "baseline": self.baseline, "steady": self.steady, "seconds": self.seconds,
            "cases": [
                {"case": r.case, "tried": r.tried, "answers": dict(r.answers),
                 "documented": r.documented, "crashes": r.crashes, "note": r.note,
                 "latency": r.latency, "rss_kb": r.rss_kb}
                for r in self.rows
            ],
        }  # fmt: skip


def clients(target: Target, first: int, count: int, *extra: str) -> subprocess.Popen[str]:
    """A load generator holding the sessions of ``dev-<first>`` .. (bench/loadgen.c)."""
    host, port = target.address
    return loadgen.spawn(
        "aoi-clients", "--host", host, "--port", str(port), "--first", str(first),
        "--count", str(count), "--sources", ",".join(SOURCES), "--app-id", APP, *extra,
    )  # fmt: skip


class Steady:
    """One established session (client ``dev-0``) that acks everything, and a server app
    pushing to it at ``rate`` per second, each in its own process (bench/loadgen.c)."""

    def __init__(self, target: Target, folder: Path, rate: float) -> None:
        self.holder = clients(target, 0, 1, "--record")
        ready = loadgen.line(self.holder)
        if ready["failed"]:
            raise RuntimeError(f"the established session could not open: {ready}")
        tokens = folder / "tokens.txt"
        tokens.write_text(f"{ready['tokens'][0]}\n")
        self.token = ready["tokens"][0]
        self.began = time.monotonic() + 0.5
        host, port = target.address
        self.pusher = loadgen.spawn(
            "aoi-pusher", "--host", host, "--port", str(port), "--key", KEY,
            "--targets", str(tokens), "--connections", "4", "--rate", str(rate),
            "--begin", f"{self.began:.6f}", "--start", f"{self.began:.6f}",
            "--end", f"{self.began + 86400:.6f}", "--record",
        )  # fmt: skip
        time.sleep(0.6)

    def finish(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Stop pushing; what was pushed, and what the session received."""
        loadgen.command(self.pusher, f"end {time.monotonic():.6f}")
        pushed = loadgen.line(self.pusher)
        time.sleep(1.0)  # the last deliveries
        return pushed, loadgen.finish(self.holder)

    def close(self) -> None:
        loadgen.reap([self.pusher, self.holder])


def latency(pushed: dict[str, Any], receipts: dict[str, Any], since: float, until: float
            ) -> dict[str, Any]:  # fmt: skip
    """The established session's notifications accepted in [since, until): how many, the
    percentiles of push sent to receipt, and how many never arrived."""
    accepted = [i for i, t in pushed["accepted"].items() if since <= t < until]
    trips = [receipts[i][0] - receipts[i][1] for i in accepted if i in receipts]
    return {"accepted": len(accepted), "ms": percentiles(trips),
            "not_received": sum(i not in receipts for i in accepted)}  # fmt: skip


@contextlib.contextmanager
def window(report: Report, case: str) -> Iterator[Row]:
    row = Row(case, since=time.monotonic())
    try:
        yield row
    finally:
        row.until = time.monotonic()
        report.rows.append(row)


class Campaign:
    """Client ids: ``dev-0`` the established session, ``dev-1`` .. the fillers of a full
    server, then the storm's, then one that checks the server serves, one that races."""

    def __init__(
        self, folder: Path, sizes: Sizes, log: Callable[[str], None], only: tuple[str, ...] = ()
    ) -> None:
        self.folder = folder
        self.sizes = sizes
        self.log = log
        self.only = only  # words: run just the cases whose name holds one of them
        self.report = Report()
        self.prober = sizes.full + sizes.storm
        self.racer = self.prober + 1
        self.accepted: list[str] = []  # pushed to the established session besides the pusher

    def run(self) -> Report:
        started_at = time.monotonic()
        raise_nofile()
        s = self.sizes
        with (
            disk(self.folder / "state") as store,
            started(
                self.folder, state=store.state, clients=self.racer + 1,
                max_sessions=s.full, request_head_timeout_s=s.head_timeout_s,
                request_body_timeout_s=s.body_timeout_s, max_apps=s.races + 8,
            ) as target,
        ):  # fmt: skip
            store.pid = target.process.pid
            self.report.disk = store.kind
            steady = Steady(target, self.folder, s.rate)
            try:
                self._attack(target, store, steady)
            finally:
                pushed, done = steady.finish() if target.alive() else ({}, {})
                steady.close()
            self._latencies(steady, pushed, done)
        if self._chosen("accept(2) out of descriptors"):
            self._cap_and_descriptors()
        if self._chosen("read-only state directory"):
            self._read_only()
        self.report.seconds = round(time.monotonic() - started_at, 1)
        return self.report

    def _attack(self, target: Target, store: Disk, steady: Steady) -> None:
        time.sleep(self.sizes.baseline_s)
        self.report.rss_kb_before = target.rss_kb()
        self.baseline = (steady.began, time.monotonic())
        cases: list[tuple[str, Callable[[Row, Target], None]]] = [
            ("malformed upgrades", lambda r, t: self._inputs(r, t, "upgrade")),
            ("HTTP framing errors", lambda r, t: self._inputs(r, t, "framing")),
            ("request smuggling", self._smuggling),
            ("wrong paths, methods, push bodies", lambda r, t: self._inputs(r, t, "routing")),
            ("slow heads", self._slow_heads),
            ("slow bodies", self._slow_bodies),
            ("frames before hello", self._frames),
            ("hello storm on a full server", self._storm),
            ("hellos at one instant on a full server", self._hellos_at_once),
            ("register/resume races", self._races),
            ("disk full", lambda r, t: self._disk_full(r, t, store, steady.token)),
        ]
        for case, attack in cases:
            if not self._chosen(case):
                continue
            self.log(f"{case} ...")
            with window(self.report, case) as row:
                try:
                    attack(row, target)
                except Exception as exc:  # the case itself broke: say so, go on with the next
                    row.note = f"the case could not run to its end: {exc!r}"[:300]
                    row.answered("case broken", False)
                if not target.alive():
                    row.crashes += 1
                    row.note = f"the server exited ({target.process.returncode})"
                    return
                if target.health() is None:
                    row.note = "no health answer after it"
                row.rss_kb = target.rss_kb()
        time.sleep(2.0)
        self.report.rss_kb_after = target.rss_kb()

    def _chosen(self, case: str) -> bool:
        return not self.only or any(word in case for word in self.only)

    # --- the cases ------------------------------------------------------------------------

    def _judge(self, row: Row, hostile: Input, answer: raw.Answer) -> None:
        code = ""
        if answer.responses:
            with contextlib.suppress(ValueError, AttributeError):
                code = json.loads(answer.first.body).get("error", "")
        ended = " closed" if answer.closed else ""
        row.answered(
            f"{answer.status or 'none'} {code}{ended}".strip(),
            len(answer.responses) == 1
            and answer.status in hostile.statuses
            and code == hostile.code
            and (answer.closed or not hostile.closes),
        )

    def _inputs(self, row: Row, target: Target, group: str) -> None:
        for hostile in [i for i in inputs(KEY) if i.group == group]:
            for _ in range(self.sizes.repeats):
                answer = raw.exchange(target.address, hostile.data, wait=5,
                                      until_closed=hostile.closes)  # fmt: skip
                self._judge(row, hostile, answer)

    def _smuggling(self, row: Row, target: Target) -> None:
        self._inputs(row, target, "smuggling")
        status = httpx.get(target.http + "/v1/health").json()["status"]
        row.note = f"health after it: {status} (a smuggled drain would say draining)"
        if status != "ok":
            row.documented = 0

    def _slow(self, row: Row, target: Target, first: bytes, then: bytes, limit: float) -> None:
        """``slow`` connections send ``first``, then a byte of ``then`` a second, until the
        server answers; meanwhile a health check and a hello must be served at once."""
        sockets = []
        for n in range(self.sizes.slow):
            sock = raw.connect(target.address, SOURCES[n % len(SOURCES)])
            sock.sendall(first)
            sock.setblocking(False)
            sockets.append(sock)
        began = time.monotonic()
        served: list[str] = []
        answers: dict[socket.socket, bytes] = {}
        while len(answers) < len(sockets) and time.monotonic() - began < limit + 5:
            for sock in sockets:
                if sock in answers:
                    continue
                with contextlib.suppress(BlockingIOError):
                    data = sock.recv(4096)
                    answers[sock] = data
                    continue
                with contextlib.suppress(OSError):
                    sock.send(then[:1])
            if len(served) < 3:
                served.append(self._served_within(target))
            time.sleep(1.0)
        for sock in sockets:
            answer = answers.get(sock)
            status = answer[9:12].decode() if answer and answer.startswith(b"HTTP/") else "none"
            row.answered(f"{status} after {time.monotonic() - began:.0f} s" if answer is None
                         else status, status == "408")  # fmt: skip
            sock.close()
        row.note = "health and a hello meanwhile: " + ", ".join(served)

    def _served_within(self, target: Target) -> str:
        began = time.monotonic()
        health = target.health(wait=5)
        with Session(target.address) as device:
            welcomed = device.hello(self.prober)["type"] == "welcome"
        return f"{health} and {'welcome' if welcomed else 'no welcome'} in " \
               f"{(time.monotonic() - began) * 1000:.0f} ms"  # fmt: skip

    def _slow_heads(self, row: Row, target: Target) -> None:
        self._slow(row, target, b"GET /aoi HTTP/1.1\r\n", b"X" * 1000,
                   self.sizes.head_timeout_s)  # fmt: skip

    def _slow_bodies(self, row: Row, target: Target) -> None:
        head = (f"POST /v1/push/x HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {KEY}\r\n"
                "Content-Length: 4000\r\n\r\n").encode()  # fmt: skip
        self._slow(row, target, head, b"x" * 4000, self.sizes.body_timeout_s)

    def _frames(self, row: Row, target: Target) -> None:
        """Frames before hello: 64 KB ones (larger than any hello), and a few announcing
        16 MB; each must be refused with frame_too_large and 4413 without more reading."""
        for n in range(self.sizes.frames):
            huge = n % 10 == 9
            with Session(target.address, source=SOURCES[n % len(SOURCES)]) as peer:
                try:
                    if huge:
                        peer.sock.sendall(bytes((0x81, 0xFF)) + (16 << 20).to_bytes(8, "big")
                                          + bytes(4) + b"x" * 200_000)  # fmt: skip
                    else:
                        peer.send_raw(b'{"type":"hello","pad":"' + b"x" * 65400 + b'"}', TEXT)
                    error = peer.receive()["code"]
                    peer.receive()
                    what = f"{error}, no close"
                except Closed as closed:
                    what = f"{error}, close {closed.code}"
                except OSError as exc:
                    what = f"connection {type(exc).__name__}"
            row.answered(what, what == "frame_too_large, close 4413")

    @contextlib.contextmanager
    def _full(self, target: Target, row: Row) -> Iterator[None]:
        """The server full: ``full - 1`` idle sessions besides the established one."""
        s = self.sizes
        fillers = clients(target, 1, s.full - 1)
        try:
            ready = loadgen.line(fillers)
            if ready["failed"]:
                row.note = f"{ready['failed']} of {s.full - 1} fillers failed"
            yield
        finally:
            loadgen.finish(fillers)
        time.sleep(0.5)

    def _storm(self, row: Row, target: Target) -> None:
        """``storm`` valid clients connect and say hello at once to a full server: every one
        must be refused (overloaded), every established session served."""
        s = self.sizes
        with self._full(target, row):
            at = time.monotonic() + 1.0 + 0.001 * s.storm  # every socket prepared before
            stormer = clients(target, s.full, s.storm, "--at", f"{at:.6f}", "--timeout", "120")
            try:
                assert loadgen.line(stormer)["event"] == "prepared"
                row.since = at
                ready = loadgen.line(stormer)
                row.until = time.monotonic()
            finally:
                loadgen.finish(stormer)
        # The generator names a failure by the frame that caused it (the first 110 bytes).
        refused = all(why.startswith(REJECT_OVERLOADED) for why in ready["errors"])
        kinds = "reject overloaded" if refused else "; ".join(ready["errors"])[:200]
        for _ in range(ready["failed"]):
            row.answered(kinds, refused)
        for _ in range(ready["connected"]):
            row.answered("welcome", False)

    def _hellos_at_once(self, row: Row, target: Target) -> None:
        """``at_once`` connections upgrade first, then all say hello in the same instant to
        a full server: each is refused, and the established session waits for none of them."""
        s = self.sizes
        with self._full(target, row):
            peers = []
            try:
                for n in range(s.full, s.full + s.at_once):
                    peers.append(Session(target.address, source=SOURCES[n % len(SOURCES)]))
                hellos = [
                    client_frame(json.dumps({"type": "hello", "version": 1, "client_id":
                                             f"dev-{n}", "credential": f"secret-{n}"}).encode())
                    for n in range(s.full, s.full + s.at_once)
                ]  # fmt: skip
                row.since = time.monotonic()
                for peer, hello in zip(peers, hellos, strict=True):
                    peer.sock.sendall(hello)
                for peer in peers:
                    try:
                        answer = peer.receive(timeout=30)
                        what = f"{answer['type']} {answer.get('reason', '')}".strip()
                    except (Closed, TimeoutError, OSError) as exc:
                        what = type(exc).__name__
                    row.answered(what, what == "reject overloaded")
                row.until = time.monotonic()
            finally:
                for peer in peers:
                    peer.close()

    def _races(self, row: Row, target: Target) -> None:
        """A register, then the connection dropped (a reset) or a resume on a new one at
        once, so that the register's store write and its session's end overlap."""
        racer = self.racer
        with Session(target.address) as first:
            session = first.hello(racer)["session"]
        for attempt in range(self.sizes.races):
            app = f"{APP}.r{attempt}" if attempt % 4 >= 2 else APP
            old = Session(target.address)
            old.hello(racer, session)
            old.send(type="register", req=1, app_id=app)
            if attempt % 2:
                new = Session(target.address)
                old.abort()
            else:
                old.abort()
                new = Session(target.address)
            with new:
                resumed = new.hello(racer, session).get("resumed") is True
                new.send(type="register", req=2, app_id=app)
                registered = new.receive()["type"] == "registered"
            ok = resumed and registered and target.alive()
            row.answered("resumed, registered" if ok else "failed", ok)

    def _disk_full(self, row: Row, target: Target, store: Disk, token: str) -> None:
        """Fill the store's disk: pushes get 503 (201 while SQLite still finds room in its
        files), health says store_failing; free it: 201 again. What got 201 must arrive."""
        url = f"{target.http}/v1/push/{token}"

        def push() -> httpx.Response:  # the payload as the established session reads it
            body = {"payload": f"{time.monotonic():.6f} disk", "ttl_s": 600}
            answer = httpx.post(url, json=body, headers=AUTH)
            if answer.status_code == 201:
                self.accepted.append(answer.json()["id"])
            return answer

        store.fill()
        try:
            for _ in range(20):
                answer = push()
                code = answer.json().get("error", "") if answer.status_code >= 400 else ""
                refused = answer.status_code == 503 and "retry-after" in answer.headers
                row.answered(f"{answer.status_code} {code}".strip(),
                             answer.status_code == 201 or refused)  # fmt: skip
                time.sleep(0.1)
            health = httpx.get(target.http + "/v1/health")
            full = f"health {health.status_code} {health.json().get('reasons')}"
        finally:
            store.free()
        freed, deadline = time.monotonic(), time.monotonic() + 15
        while (answer := push()).status_code != 201 and time.monotonic() < deadline:
            time.sleep(0.2)
        row.note = (f"{store.kind}; {full}; after freeing: {answer.status_code} in "
                    f"{time.monotonic() - freed:.1f} s")  # fmt: skip

    def _cap_and_descriptors(self) -> None:
        """A second server: connections beyond max_connections get 503 while loopback
        still gets health; with too few descriptors, accept(2) fails and says so once."""
        s = self.sizes
        with (
            window(self.report, f"connections beyond max_connections ({s.cap})") as row,
            started(self.folder / "cap", max_connections=s.cap,
                    request_head_timeout_s=30) as target,
        ):  # fmt: skip
            held = [raw.connect(target.address, SOURCES[n % len(SOURCES)]) for n in range(s.cap)]
            time.sleep(0.3)
            for n in range(s.cap):
                answer = raw.exchange(target.address, b"", source=SOURCES[n % len(SOURCES)])
                code = json.loads(answer.first.body)["error"] if answer.responses else ""
                row.answered(f"{answer.status} {code}", answer.status == 503)
            row.note = f"health from 127.0.0.1 meanwhile: {target.health()}"
            for sock in held:
                sock.close()
            row.crashes += not target.alive()
        with (
            window(self.report, "accept(2) out of descriptors") as row,
            started(self.folder / "nofile", open_files=64, max_connections=1000) as target,
        ):
            held = [
                raw.connect(target.address, SOURCES[n % len(SOURCES)], timeout=2)
                for n in range(200)
            ]  # the kernel completes them; the server cannot accept them all
            time.sleep(1.0)
            for sock in held:
                sock.close()
            time.sleep(0.5)
            health = target.health()
            row.crashes += not target.alive()
            lines = target.log_lines()
            logged = [line for line in lines if '"accept_failed"' in line]
            not_json = [line for line in lines if not line.startswith("{")]
            ok = health == 200 and not not_json and 1 <= len(logged) <= 2
            for _ in held:
                row.answered("connected, then closed", ok)
            row.note = (
                f"{len(logged)} accept_failed log line(s), {len(not_json)} lines not JSON, "
                f"health afterwards {health}"
            )

    def _read_only(self) -> None:
        with window(self.report, "read-only state directory") as row, \
                read_only(self.folder / "ro") as how:  # fmt: skip
            config = self.folder / "ro.toml"
            config.write_text(f'[server]\ndb = "{self.folder / "ro" / "aoi-server.db"}"\n')
            done = subprocess.run(
                [sys.executable, "-m", "aoi", "server", "--config", str(config)],
                capture_output=True, text=True, timeout=60, cwd=ROOT, check=False,
            )  # fmt: skip
            one_line = len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
            row.answered(f"exit {done.returncode}, {len(done.stderr.splitlines())} line(s)",
                         done.returncode == 1 and one_line)  # fmt: skip
            self.report.read_only = how or "not possible here (root without mount)"
            row.note = f"{how}: {done.stderr.strip()}"

    def _latencies(self, steady: Steady, pushed: dict[str, Any], done: dict[str, Any]) -> None:
        if not pushed:
            return
        receipts = done["receipts"]
        self.report.baseline = latency(pushed, receipts, *self.baseline)
        for row in self.report.rows:
            row.latency = latency(pushed, receipts, row.since, row.until)
        self.report.steady = {
            "accepted": len(pushed["accepted"]) + len(self.accepted),
            "statuses": pushed["statuses"],
            "received": done["distinct"], "duplicates": done["duplicates"],
            "not_received": sum(i not in receipts for i in [*pushed["accepted"], *self.accepted]),
            "late_pushes": pushed["late"], "lost_connections": pushed["lost_connections"],
        }  # fmt: skip


def run(sizes: Sizes = Sizes(), log: Callable[[str], None] = lambda _: None,
        folder: Path | None = None, only: tuple[str, ...] = ()) -> Report:  # fmt: skip
    if folder is not None:
        return Campaign(folder, sizes, log, only).run()
    with tempfile.TemporaryDirectory(prefix="aoi-hostile-") as tmp:
        return Campaign(Path(tmp), sizes, log, only).run()


def table(report: Report) -> str:
    """The report as a Markdown table, with the figures around it."""

    def p99(figures: dict[str, Any]) -> str:
        value = figures.get("ms", {}).get("p99")
        return "-" if value is None else f"{value:.1f}"

    lines = [
        f"Store: {report.disk}; read-only directory: {report.read_only}.",
        f"Established session, p99 push sent to receipt before any attack: "
        f"{p99(report.baseline)} ms ({report.baseline.get('accepted', 0)} notifications).",
        f"Server RSS: {report.rss_kb_before / 1024:.1f} MB before, "
        f"{report.rss_kb_after / 1024:.1f} MB after.",
        "",
        "| case | inputs tried | crashes | answers | as documented | p99 ms during | RSS MB after"
        " | note |",
        "|---|--:|--:|---|--:|--:|--:|---|",
    ]
    for row in report.rows:
        answers = ", ".join(f"{what} x{n}" for what, n in row.answers.most_common())
        rss = "-" if row.rss_kb is None else f"{row.rss_kb / 1024:.1f}"
        lines.append(
            f"| {row.case} | {row.tried:,} | {row.crashes} | {answers} | {row.documented:,} | "
            f"{p99(row.latency)} | {rss} | {row.note} |"
        )
    s = report.steady
    lines += [
        "",
        f"Crashes: {report.crashes}. Established session: {s.get('accepted', 0)} accepted, "
        f"{s.get('not_received', '?')} never received, {s.get('duplicates', '?')} received "
        f"twice; push answers {s.get('statuses', {})}. {report.seconds} s.",
    ]
    return "\n".join(lines)
