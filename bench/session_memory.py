"""What an idle AOI-2 session holds in the reference server: tracemalloc over N sessions.

    python -m bench.session_memory [--sessions 20000] [--frames 25] [--top 25]

Starts ``aoi server`` (``python -m bench.session_memory serve ...``: the server as shipped,
with a SIGUSR2 handler that starts tracemalloc and writes a snapshot), opens 100 sessions
and closes them (first-use costs), starts tracing, opens ``--sessions`` authenticated idle
sessions (hello, welcome, register one app: :func:`bench.server.clients`), takes a snapshot
and compares it with the one taken as tracing started. Prints one JSON document: the
sessions that failed and why (per session figures are over those held), the
server's RSS and the traced bytes per session, and what grew, per session: by package and
file of the allocating frame, by the innermost frame of the reference server's code
(``aoi/``) on its traceback, and by the allocating line. Python objects only: what C
libraries allocate outside Python's allocators (SQLite's page cache, OpenSSL) shows in the
RSS, not here.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

from . import server
from .loadgen import finish, line, reap
from .machine import raise_nofile

FRAMES = 25  # deep enough to reach the server's own code from inside the libraries


def serve() -> None:
    """``python -m bench.session_memory serve SNAPSHOTS FRAMES server ...``: ``aoi`` with
    those arguments; the first SIGUSR2 starts tracing (FRAMES deep), each writes
    ``SNAPSHOTS/<n>.snapshot``.
    (Tracing from the start would slow the server's start, 20,000 clients' credentials
    and all, several times over.)"""
    folder, frames, arguments = Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
    taken = [0]

    def snapshot(number: int, frame: FrameType | None) -> None:
        if not tracemalloc.is_tracing():
            tracemalloc.start(frames)
        path = folder / f"{taken[0]}.snapshot"
        tracemalloc.take_snapshot().dump(str(path) + ".part")
        os.replace(str(path) + ".part", path)
        taken[0] += 1

    from aoi.cli import main

    signal.signal(signal.SIGUSR2, snapshot)
    sys.exit(main(arguments))


def take(pid: int, folder: Path, number: int, timeout: float = 300.0) -> tracemalloc.Snapshot:
    os.kill(pid, signal.SIGUSR2)
    path = folder / f"{number}.snapshot"
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError("the server wrote no snapshot")
        time.sleep(0.2)
    return tracemalloc.Snapshot.load(str(path))


def site(frame: tracemalloc.Frame) -> str:
    name = frame.filename
    for marker in ("/reference/", "/site-packages/", "/lib/python3"):
        if marker in name:
            name = name.split(marker, 1)[1]
            break
    return f"{name}:{frame.lineno}"


def package(filename: str) -> str:
    """Who allocated: ``aoi``, a library (``trio``, ``wsproto``...) or Python's own code.
    Classes that attrs generates are named ``<attrs generated methods trio...>``."""
    if filename.startswith("<attrs generated"):
        return filename.split()[-1].split(".")[0]
    for marker in ("/reference/", "/site-packages/"):
        if marker in filename:
            return filename.split(marker, 1)[1].split("/")[0]
    return "python"


def grown(
    before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, sessions: int, top: int
) -> dict[str, Any]:
    """What grew between the snapshots, per session: by package and by file of the innermost
    frame, by the innermost frame in ``aoi/`` (else the innermost of all: what in the server
    made the allocation) and by the innermost frame of all (what allocated)."""
    packages: Counter[str] = Counter()
    own: Counter[str] = Counter()
    innermost: Counter[str] = Counter()
    files: Counter[str] = Counter()
    blocks: Counter[str] = Counter()
    total = 0
    for diff in after.compare_to(before, "traceback"):
        if diff.size_diff <= 0:
            continue
        frames = list(reversed(diff.traceback))  # innermost first
        ours = next((f for f in frames if "/aoi/" in f.filename), frames[0])
        own[site(ours)] += diff.size_diff
        blocks[site(ours)] += diff.count_diff
        innermost[site(frames[0])] += diff.size_diff
        files[site(frames[0]).rsplit(":", 1)[0]] += diff.size_diff
        packages[package(frames[0].filename)] += diff.size_diff
        total += diff.size_diff

    def per_session(counter: Counter[str]) -> dict[str, float]:
        return {where: round(size / sessions, 1) for where, size in counter.most_common(top)}

    return {
        "traced_bytes_per_session": round(total / sessions, 1),
        "by_package": per_session(packages),
        "by_server_line": per_session(own),
        "blocks_per_session_by_server_line": {
            where: round(blocks[where] / sessions, 2) for where, _ in own.most_common(top)
        },
        "by_innermost_line": per_session(innermost),
        "by_file": per_session(files),
    }


def measure(folder: Path, sessions: int, frames: int, top: int) -> dict[str, Any]:
    snapshots = folder / "snapshots"
    snapshots.mkdir()
    launcher = ("-m", "bench.session_memory", "serve", str(snapshots), str(frames))
    held: list[Any] = []
    with server.server(folder, sessions + 100, launcher) as (process, here):
        try:
            warm = server.clients(here["aoi2"], sessions, 100)
            held.append(warm)
            assert line(warm)["failed"] == 0
            finish(warm)
            time.sleep(1.0)
            before = take(process.pid, snapshots, 0)
            rss_before = server.rss_kb(process.pid)
            opened = 0
            while opened < sessions:
                count = min(server.PER_PROCESS, sessions - opened)
                held.append(server.clients(here["aoi2"], opened, count))
                opened += count
            opened_lines = [line(p) for p in held[1:]]
            failed = sum(d["failed"] for d in opened_lines)
            errors: Counter[str] = Counter()
            for d in opened_lines:
                errors.update(d["errors"])
            time.sleep(2.0)
            rss_after = server.rss_kb(process.pid)
            after = take(process.pid, snapshots, 1)
        finally:
            reap(held)
    held_sessions = sessions - failed  # a session that failed holds nothing at the end
    return {
        "sessions": sessions,
        "failed": failed,
        "errors": dict(errors),
        "rss_kb_per_session": round((rss_after - rss_before) / held_sessions, 2),
        "traced_frames": frames,
        **grown(before, after, held_sessions, top),
    }


def main() -> None:
    if sys.argv[1:2] == ["serve"]:
        serve()
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20000)
    parser.add_argument(
        "--frames", type=int, default=FRAMES,
        help="frames kept per allocation: 1 is fast and enough for the allocating lines",
    )  # fmt: skip
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    hard = raise_nofile(131072)
    sessions = min(args.sessions, hard - server.FD_MARGIN)
    with tempfile.TemporaryDirectory(prefix="aoi-session-memory-") as tmp:
        print(json.dumps(measure(Path(tmp), sessions, args.frames, args.top), indent=1))


if __name__ == "__main__":
    main()
