"""MQTT 5 load generator: the Mosquitto side of the AOI-versus-MQTT push benchmark.

The workloads mirror the AOI ones (an AOI Client holding a session with one registered app,
a server app pushing notifications to it):

=====================  =============================================================
AOI                    MQTT here
=====================  =============================================================
``hello`` with a       CONNECT with user name and password (``allow_anonymous false``),
credential             clean start, session expiry 3600 s, keepalive 270 s
``register`` an app    SUBSCRIBE ``aoi/<client_id>/chat`` at QoS 1, readable only by that
                       client (ACL ``pattern read aoi/%c/#``)
POST /v1/push -> 201   PUBLISH QoS 1 with message expiry 600 s (the ``ttl_s``) -> PUBACK
``notify`` / ``ack``   PUBLISH QoS 1 to the subscriber / PUBACK
=====================  =============================================================

This module holds the workloads (:func:`memory`, :func:`idle_sessions`, :func:`throughput`,
:func:`latency`, :func:`storm`). The clients and the publisher are processes of the same
load generator as the AOI workloads' (:mod:`bench.loadgen`, roles ``mqtt-clients`` and
``mqtt-pusher``), measured the same way (:func:`bench.loadgen.drive`,
:func:`bench.connection_storm.measure`): the MQTT codec they speak is in ``bench/loadgen.c``.
The parent only coordinates and reads ``/proc``. Each workload reports the broker's CPU
(``server_cpu_cores``) and the generator's (``generator_cpu_cores``, and per notification).

``broker`` in these functions is anything with ``host``, ``port``, ``pid``, ``rss()`` and
``cpu_seconds()`` (and optionally ``max_clients``): :class:`bench.mosquitto.Broker`, whose
users and ACL are :data:`USERS` and :data:`ACL`.
"""

from __future__ import annotations

import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from . import connection_storm, loadgen
from .loadgen import finish, line, reap

KEEPALIVE_S = 270  # CONNECT's keepalive (bench/loadgen.c); the clients ping at half of it
SESSION_EXPIRY_S = 3600  # sessions and their queues outlive a disconnect, as AOI sessions do
MESSAGE_EXPIRY_S = 600  # the push's ttl_s, as the AOI pusher sends it
PAYLOAD_BYTES = 64  # "<monotonic stamp> <seq> " padded with x, as the AOI pusher pads its pushes
NAMES = ("puback", "publish_sent")  # what acceptance and sending are, in the latencies' names
PER_PROCESS = 2500  # sessions per generator process, as for AOI
SOURCE_ADDRESSES = tuple(f"127.0.0.{last}" for last in range(2, 10))
SUBSCRIBER_USER = "device"
PUBLISHER_USER = "server-app"
USERS: dict[str, str] = {SUBSCRIBER_USER: "device-secret-0042", PUBLISHER_USER: "app-secret-17"}
ACL = f"""\
user {PUBLISHER_USER}
topic write aoi/#

pattern read aoi/%c/#
"""


class BrokerLike(Protocol):
    host: str
    port: int

    @property
    def pid(self) -> int: ...

    def rss(self) -> int: ...

    def cpu_seconds(self) -> float: ...


_run_ids = itertools.count()


def _prefix(name: str) -> str:
    """A client-id prefix no other run on the same broker uses."""
    return f"{name}{os.getpid():x}{next(_run_ids)}-"


def topic_for(client_id: str) -> str:
    """The topic a subscriber subscribes to; the broker's ACL lets only that client read it."""
    return f"aoi/{client_id}/chat"


def _subscribers(
    broker: BrokerLike, prefix: str, first: int, count: int, *extra: str
) -> subprocess.Popen[str]:
    """A generator process holding MQTT sessions ``<prefix><first>`` ..., each subscribed to
    its :func:`topic_for` at QoS 1 and acking what arrives (see bench/loadgen.c)."""
    return loadgen.spawn(
        "mqtt-clients", "--host", broker.host, "--port", str(broker.port), "--prefix", prefix,
        "--first", str(first), "--count", str(count), "--username", SUBSCRIBER_USER,
        "--password", USERS[SUBSCRIBER_USER], "--sources", ",".join(SOURCE_ADDRESSES), *extra,
    )  # fmt: skip


def _publisher(broker: BrokerLike, topics: Path, *extra: str) -> subprocess.Popen[str]:
    """A generator process publishing at QoS 1 round robin to ``topics`` (one a line)."""
    return loadgen.spawn(
        "mqtt-pusher", "--host", broker.host, "--port", str(broker.port),
        "--prefix", _prefix("app"), "--username", PUBLISHER_USER,
        "--password", USERS[PUBLISHER_USER], "--targets", str(topics),
        "--payload-bytes", str(PAYLOAD_BYTES), *extra,
    )  # fmt: skip


def _audience(
    broker: BrokerLike, folder: Path, prefix: str, clients: int, *extra: str
) -> tuple[subprocess.Popen[str], Path]:
    """``clients`` subscribers, all served, and the file of their topics."""
    holder = _subscribers(broker, prefix, 0, clients, *extra)
    ready = line(holder)
    if ready["failed"]:
        reap([holder])
        raise RuntimeError(f"subscribers: {ready['failed']} of {clients} failed: {ready['errors']}")
    topics = folder / "topics.txt"
    topics.write_text("".join(f"{topic_for(f'{prefix}{n}')}\n" for n in range(clients)))
    return holder, topics


def _settled_rss(broker: BrokerLike, timeout: float = 10.0) -> int:
    """The broker's RSS once two reads half a second apart agree within 0.5 %."""
    deadline = time.monotonic() + timeout
    previous = broker.rss()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        current = broker.rss()
        if abs(current - previous) <= previous * 0.005:
            return current
        previous = current
    return previous


def memory(
    broker: BrokerLike, steps: Sequence[int] = (5000, 10000, 20000), *, warmup: int = 100
) -> dict[str, Any]:
    """Broker RSS with N authenticated, subscribed, idle sessions, for each N of ``steps``.

    As ``bench.server.memory`` does for AOI: ``warmup`` sessions open and close first (the
    broker's first-use costs are not per session), then the baseline RSS, then sessions are
    added step by step on the same broker and kept open; per session = (RSS - baseline) / N.
    Steps beyond the broker's ``max_clients`` (its RLIMIT_NOFILE, which a process without
    CAP_SYS_RESOURCE cannot raise past the hard limit) are measured at that many; a note says so.
    """
    wanted = sorted(steps)
    limit = getattr(broker, "max_clients", None)
    steps = sorted({min(n, limit) for n in wanted} if limit is not None else set(wanted))
    started = time.monotonic()
    results: dict[str, Any] = {
        "fd_hard_limit": resource.getrlimit(resource.RLIMIT_NOFILE)[1],
        "broker_max_clients": limit,
        "keepalive_s": KEEPALIVE_S,
        "steps": [],
    }
    if steps[-1] < wanted[-1]:
        results["note"] = (
            f"{wanted[-1]} sessions need more descriptors than the hard RLIMIT_NOFILE "
            f"({results['fd_hard_limit']}) allows and it cannot be raised here: measured at "
            f"{steps[-1]}"
        )
    held: list[subprocess.Popen[str]] = []
    prefix = _prefix("idle")
    try:
        if warmup:
            warm = _subscribers(broker, _prefix("warm"), 0, warmup)
            held.append(warm)
            if line(warm)["failed"]:
                raise RuntimeError("warm-up sessions failed")
            finish(warm)  # they end their sessions (DISCONNECT, session expiry 0)
        base = _settled_rss(broker)
        results["baseline_rss_kb"] = base // 1024
        opened = 0
        for target in steps:
            cpu_before, began = broker.cpu_seconds(), time.monotonic()
            batch = []
            while opened < target:
                count = min(PER_PROCESS, target - opened)
                batch.append(_subscribers(broker, prefix, opened, count))
                opened += count
            held.extend(batch)
            failed = sum(line(p)["failed"] for p in batch)
            connect_s = time.monotonic() - began
            adding = sum(int(p.args[p.args.index("--count") + 1]) for p in batch)
            cpu = broker.cpu_seconds() - cpu_before
            rss = _settled_rss(broker)
            results["steps"].append({
                "sessions": target, "failed": failed, "rss_kb": rss // 1024,
                "delta_kb": (rss - base) // 1024,
                "per_session_kb": round((rss - base) / 1024 / target, 2),
                "per_session_bytes": round((rss - base) / target),
                "new_sessions_per_s": round(adding / connect_s),
                "broker_cpu_us_per_new_session": round(cpu / adding * 1e6) if adding else None,
            })  # fmt: skip
            print(json.dumps(results["steps"][-1]), file=sys.stderr, flush=True)
        for p in held[1:] if warmup else held:
            finish(p)
        results["rss_after_all_closed_kb"] = _settled_rss(broker) // 1024
    finally:
        reap(held)
    results["seconds"] = round(time.monotonic() - started, 1)
    return results


def idle_sessions(broker: BrokerLike, n: int, **options: Any) -> dict[str, Any]:
    """RSS before and after ``n`` idle sessions (one step of :func:`memory`)."""
    measured = memory(broker, [n], **options)
    (step,) = measured["steps"]
    return {
        **step,
        "requested": n,
        "rss_before_kb": measured["baseline_rss_kb"],
        **({"note": measured["note"]} if "note" in measured else {}),
    }


def _load(
    broker: BrokerLike, clients: int, seconds: float, warmup: float, *pushing: str
) -> dict[str, Any]:
    """:func:`bench.loadgen.drive` on the broker: one publisher with ``pushing`` options."""
    started = time.monotonic()
    record = ["--record"] if "--record" in pushing else []
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as tmp:
        holder, topics = _audience(broker, Path(tmp), _prefix("sub"), clients, *record)
        try:

            def publisher(begin: float, window: tuple[float, float]) -> list[subprocess.Popen[str]]:
                return [_publisher(
                    broker, topics, "--begin", f"{begin:.6f}", "--start", f"{window[0]:.6f}",
                    "--end", f"{window[1]:.6f}", *pushing,
                )]  # fmt: skip

            figures = loadgen.drive(broker.pid, holder, publisher, seconds, warmup, NAMES)
        finally:
            reap([holder])
    figures.update(
        sessions=clients, server_rss_kb=broker.rss() // 1024,
        seconds=round(time.monotonic() - started, 1),
    )  # fmt: skip
    return figures


def throughput(
    broker: BrokerLike,
    clients: int = 100,
    seconds: float = 5.0,
    *,
    warmup: float = 1.5,
    window: int = 128,
) -> dict[str, Any]:
    """Notifications per second delivered to ``clients`` subscribers by one publisher that
    keeps ``window`` QoS 1 PUBLISH unacknowledged (capped by the broker's receive maximum):
    128, as many pushes as ``bench.server`` keeps in flight. Counted over ``seconds`` after
    ``warmup``."""
    return _load(broker, clients, seconds, warmup, "--rate", "0", "--window", str(window))


def latency(
    broker: BrokerLike,
    rate: float = 1000.0,
    seconds: float = 5.0,
    *,
    clients: int = 100,
    warmup: float = 1.5,
) -> dict[str, Any]:
    """Delivery latency at a fixed publish rate, round robin over ``clients`` subscribers.

    Per message: the subscriber's receipt minus the publisher's PUBACK (acceptance, AOI's
    201), and minus the send stamp in the payload. Negative PUBACK-to-receipt values mean the
    broker delivered before it acknowledged (``receipt_before_puback_seen``).
    """
    figures = _load(broker, clients, seconds, warmup, "--rate", str(rate), "--record")
    figures["rate_per_s"] = rate
    return figures


def storm(
    broker: BrokerLike,
    clients: int = 5000,
    *,
    steady: int = 100,
    rate: float = 1000.0,
    processes: int = 2,
    baseline: float = 2.0,
    after: float = 1.0,
    timeout: float = 120.0,
) -> dict[str, Any]:
    """``clients`` sessions opened at once while ``steady`` ones receive ``rate`` messages/s
    (:func:`bench.connection_storm.measure`): the time from the storm's start until every
    storm client has its CONNACK and SUBACK, and the steady subscribers' latency meanwhile."""
    started = time.monotonic()
    prefix = _prefix("storm")
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as tmp:
        holder, topics = _audience(broker, Path(tmp), _prefix("calm"), steady, "--record")

        def publisher(begin: float, end: float) -> subprocess.Popen[str]:
            return _publisher(
                broker, topics, "--rate", str(rate), "--begin", f"{begin:.6f}",
                "--start", f"{begin:.6f}", "--end", f"{end:.6f}", "--record",
            )  # fmt: skip

        def stormer(first: int, count: int, at: float) -> subprocess.Popen[str]:
            return _subscribers(
                broker, prefix, first, count, "--at", f"{at:.6f}", "--timeout", str(timeout)
            )

        figures = connection_storm.measure(
            broker.pid, holder, publisher, stormer, clients, processes=processes,
            baseline=baseline, after=after, timeout=timeout, names=NAMES,
        )  # fmt: skip
    figures.update(
        server_rss_kb=broker.rss() // 1024, steady_sessions=steady, rate_per_s=rate,
        seconds=round(time.monotonic() - started, 1),
    )  # fmt: skip
    return figures
