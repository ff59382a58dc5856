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
:func:`latency`, :func:`storm`); the generator's pieces are in their own modules:

- :mod:`bench.mqtt_packets`: the MQTT codec, written for this benchmark (CONNECT, CONNACK,
  SUBSCRIBE, SUBACK, PUBLISH, PUBACK, PINGREQ, PINGRESP, DISCONNECT of MQTT 5.0), and the
  payload with its send stamp;
- :mod:`bench.mqtt_client`: the client, on plain asyncio like ``bench.loadgen``: a raw
  protocol parses a whole read at a time and answers every QoS 1 PUBLISH of that read with one
  write; a storm opens its connections from a bare epoll loop;
- :mod:`bench.mqtt_workers`: the worker processes the clients run in (``python -c``, so the
  caller's ``__main__`` is never re-imported), driven by the parent over socket pairs;
- :mod:`bench.machine`: the CPU, ``/proc`` and TCP counter readings.

The parent (the caller of the workloads) only coordinates and reads ``/proc``.

Whether the generator limits a figure is measured, not assumed: each workload reports the
broker's CPU (``server_cpu_cores``), the generator processes' CPU and how busy the whole
machine was (``machine_busy_share``); ``throughput`` names what bound it (``bound_by``) and
gives deliveries per broker CPU second, which does not depend on the generator's cost.

``broker`` in these functions is anything with ``host``, ``port``, ``pid``, ``rss()`` and
``cpu_seconds()`` (and optionally ``max_clients``): :class:`bench.mosquitto.Broker`, whose
users and ACL are :data:`USERS` and :data:`ACL`.
"""

from __future__ import annotations

import array
import contextlib
import itertools
import json
import math
import os
import resource
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from .epoll_storm import tally
from .loadgen import percentiles
from .machine import machine_busy_since, machine_jiffies, tcp_counters, tcp_counters_since
from .mqtt_client import topic_for
from .mqtt_packets import KEEPALIVE_S
from .mqtt_workers import WorkerError, Workers

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


def _client_ids(prefix: str, count: int) -> list[str]:
    run = f"{os.getpid():x}{next(_run_ids)}"
    return [f"{prefix}{run}-{index}" for index in range(count)]


def _spread(ids: Sequence[str], parts: int, first_source: int = 0) -> list[list[tuple[str, str]]]:
    """Deal clients over ``parts`` workers, their sockets over the source addresses."""
    chunks: list[list[tuple[str, str]]] = [[] for _ in range(parts)]
    for index, client_id in enumerate(ids):
        source = SOURCE_ADDRESSES[(first_source + index) % len(SOURCE_ADDRESSES)]
        chunks[index % parts].append((client_id, source))
    return chunks


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


def _connect_all(
    workers: Workers,
    chunks: Sequence[Sequence[tuple[str, str | None]]],
    indexes: Sequence[int],
    *,
    username: str,
    subscribe: bool = True,
    concurrency: int | None = None,
    start_at: float | None = None,
    record: bool = False,
    timeout: float = 60.0,
) -> list[dict[str, Any]]:
    for index, chunk in zip(indexes, chunks, strict=True):
        workers.send(
            index, "connect", clients=list(chunk), username=username, password=USERS[username],
            subscribe=subscribe, concurrency=concurrency, start_at=start_at, record=record,
            timeout=timeout,
        )  # fmt: skip
    wait = timeout + (start_at - time.monotonic() if start_at else 0) + 30
    waiting = max(len(chunk) for chunk in chunks) / (concurrency or 1e9) * timeout
    return [workers.receive(index, "connect", wait + waiting) for index in indexes]


def _check_connected(replies: Sequence[dict[str, Any]], expected: int, what: str) -> None:
    connected, errors = tally(replies)
    if connected != expected:
        raise WorkerError(f"{what}: {connected} of {expected} connected; errors {errors}")


def _audience(
    workers: Workers,
    prefix: str,
    clients: int,
    indexes: Sequence[int],
    publisher_index: int,
    what: str,
    *,
    record: bool = False,
) -> tuple[list[str], dict[str, Any]]:
    """``clients`` subscribers spread over the workers ``indexes`` and one publisher on
    ``publisher_index``, all connected: the subscribers' ids and the publisher's reply."""
    ids = _client_ids(prefix, clients)
    replies = _connect_all(
        workers, _spread(ids, len(indexes)), indexes, username=SUBSCRIBER_USER,
        concurrency=100, record=record,
    )  # fmt: skip
    _check_connected(replies, clients, f"{what} subscribers")
    (publisher,) = _connect_all(
        workers, [[(_client_ids("app", 1)[0], None)]], [publisher_index],
        username=PUBLISHER_USER, subscribe=False,
    )  # fmt: skip
    _check_connected([publisher], 1, "publisher")
    return ids, publisher


def _disconnect_all(workers: Workers, indexes: Iterable[int], timeout: float = 60.0) -> None:
    indexes = list(indexes)
    for index in indexes:
        workers.send(index, "disconnect", expire=True)
    for index in indexes:
        workers.receive(index, "disconnect", timeout)


def memory(
    broker: BrokerLike,
    steps: Sequence[int] = (5000, 10000, 20000),
    *,
    warmup: int = 100,
    per_worker: int = 5000,
    concurrency: int = 250,
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
    with contextlib.ExitStack() as held:
        if warmup:
            with Workers(broker, 1) as workers:
                replies = _connect_all(
                    workers, [_spread(_client_ids("warm", warmup), 1)[0]], [0],
                    username=SUBSCRIBER_USER, concurrency=concurrency,
                )  # fmt: skip
                _check_connected(replies, warmup, "warm-up sessions")
                _disconnect_all(workers, [0])
        base = _settled_rss(broker)
        results["baseline_rss_kb"] = base // 1024
        opened = 0
        for target in steps:
            adding = target - opened
            count = max(1, min(os.cpu_count() or 2, 8, math.ceil(adding / per_worker)))
            workers = held.enter_context(Workers(broker, count))
            held.callback(_disconnect_all, workers, range(count))
            chunks = _spread(_client_ids("idle", adding), count, first_source=opened)
            cpu_before = broker.cpu_seconds()
            began = time.monotonic()
            replies = _connect_all(
                workers, chunks, range(count), username=SUBSCRIBER_USER,
                concurrency=concurrency, timeout=60.0,
            )  # fmt: skip
            connect_s = time.monotonic() - began
            connected = sum(reply["connected"] for reply in replies)
            opened = target
            rss = _settled_rss(broker)
            results["steps"].append({
                "sessions": target, "failed": adding - connected, "rss_kb": rss // 1024,
                "delta_kb": (rss - base) // 1024,
                "per_session_kb": round((rss - base) / 1024 / target, 2),
                "per_session_bytes": round((rss - base) / target),
                "new_sessions_per_s": round(adding / connect_s),
                "broker_cpu_us_per_new_session": round(
                    (broker.cpu_seconds() - cpu_before) / adding * 1e6
                ),
                "generator_processes": count,
            })  # fmt: skip
            print(json.dumps(results["steps"][-1]), file=sys.stderr, flush=True)
    results["rss_after_all_closed_kb"] = _settled_rss(broker) // 1024
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


def throughput(
    broker: BrokerLike,
    clients: int = 100,
    seconds: float = 5.0,
    *,
    warmup: float = 1.5,
    subscriber_workers: int = 2,
    window: int = 128,
) -> dict[str, Any]:
    """Notifications per second delivered to ``clients`` subscribers by one publisher.

    The publisher keeps ``window`` QoS 1 PUBLISH unacknowledged (capped by the broker's
    receive maximum): 128, as many pushes as ``bench.server`` keeps in flight (2 pushers with
    64 keep-alive connections, one push each). Counted over ``seconds`` after ``warmup``.
    """
    began = time.monotonic()
    subscriber_workers = max(1, min(subscriber_workers, clients))
    publisher_index = subscriber_workers
    with Workers(broker, subscriber_workers + 1) as workers:
        ids, publisher = _audience(
            workers, "tput", clients, range(subscriber_workers), publisher_index, "throughput"
        )
        window = min(window, publisher["receive_maximum"])
        start = time.monotonic() + 0.5 + warmup
        end = start + seconds
        workers.send(
            publisher_index, "publish", mode="flood", topics=[topic_for(i) for i in ids],
            deadline=end + 0.5, window=window, start_at=start - warmup, count_window=(start, end),
        )  # fmt: skip
        for index in range(subscriber_workers):
            workers.send(index, "count", start=start, end=end)
        time.sleep(max(0.0, start - time.monotonic()))
        broker_cpu, generator_cpu = broker.cpu_seconds(), workers.cpu_seconds()
        machine = machine_jiffies()
        time.sleep(max(0.0, end - time.monotonic()))
        machine_busy = machine_busy_since(machine)
        broker_cpu = broker.cpu_seconds() - broker_cpu
        generator_cpu = [b - a for a, b in zip(generator_cpu, workers.cpu_seconds(), strict=True)]
        counts = [workers.receive(index, "count", 30) for index in range(subscriber_workers)]
        published = workers.receive(publisher_index, "publish", seconds + warmup + 60)
        rss = broker.rss()
        _disconnect_all(workers, range(subscriber_workers + 1))
    delivered = sum(reply["received"] for reply in counts)
    broker_share = broker_cpu / seconds
    busiest = max(generator_cpu) / seconds
    if broker_share >= 0.9:
        bound_by = "broker (its one thread is busy)"
    elif busiest >= 0.9:
        bound_by = "generator (one of its processes is busy)"
    elif machine_busy >= 0.95:
        bound_by = "machine (all cores busy: broker, generator and the kernel's loopback TCP)"
    else:
        bound_by = "round trips (nothing is busy: the publisher window or latency limits)"
    return {
        "sessions": clients,
        "publishers": 1,
        "publisher_window": window,
        "window_s": seconds,
        "accepted_per_s": round(published["acked_in_window"] / seconds),
        "acked_per_s": round(delivered / seconds),
        "server_cpu_cores": round(broker_share, 2),
        "acked_per_server_cpu_s": round(delivered / broker_cpu) if broker_cpu else None,
        "server_rss_kb": rss // 1024,
        "generator_cpu_cores": [round(cpu / seconds, 2) for cpu in generator_cpu],
        "machine_busy_share": machine_busy,
        "bound_by": bound_by,
        "puback_reasons": published["puback_reasons"],
        "seconds": round(time.monotonic() - began, 1),
    }


def _latency_report(
    published: dict[str, Any], stamps: Sequence[dict[str, Any]], since: float, until: float
) -> dict[str, Any]:
    sent_at = array.array("d")
    sent_at.frombytes(published["sent_at"])
    acked_at = array.array("d")
    acked_at.frombytes(published["acked_at"])
    from_sent: list[float] = []
    from_puback: list[float] = []
    received: set[int] = set()
    for reply in stamps:
        seqs, sent, arrivals = array.array("q"), array.array("d"), array.array("d")
        seqs.frombytes(reply["seqs"])
        sent.frombytes(reply["stamps"])
        arrivals.frombytes(reply["arrivals"])
        for seq, stamp, arrival in zip(seqs, sent, arrivals, strict=True):
            received.add(seq)
            if not since <= stamp < until:
                continue
            from_sent.append(arrival - stamp)
            if seq < len(acked_at) and acked_at[seq]:
                from_puback.append(arrival - acked_at[seq])
    window = [seq for seq, stamp in enumerate(sent_at) if since <= stamp < until]
    puback_rtt = [acked_at[seq] - sent_at[seq] for seq in window if acked_at[seq]]
    return {
        "published_in_window": len(window),
        "latency_puback_to_receipt_ms": percentiles(from_puback),
        "latency_publish_sent_to_receipt_ms": percentiles(from_sent),
        "receipt_before_puback_seen": sum(1 for value in from_puback if value < 0),
        "not_received": sum(1 for seq in window if seq not in received),
        "publish_round_trip_ms": percentiles(puback_rtt),
    }


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
    began = time.monotonic()
    with Workers(broker, 2) as workers:
        ids, publisher = _audience(workers, "lat", clients, [0], 1, "latency", record=True)
        begin = time.monotonic() + 0.5
        start, end = begin + warmup, begin + warmup + seconds
        capacity = int(rate * (warmup + seconds + 1)) + 1000
        cpu_before, machine = broker.cpu_seconds(), machine_jiffies()
        published = workers.call(
            1, "publish", seconds + warmup + 60, mode="paced", rate=rate,
            topics=[topic_for(i) for i in ids], deadline=end, start_at=begin,
            window=publisher["receive_maximum"], capacity=capacity,
        )  # fmt: skip
        broker_cpu, machine_busy = broker.cpu_seconds() - cpu_before, machine_busy_since(machine)
        time.sleep(0.5)
        stamps = workers.call(0, "stamps", 30)
        rss = broker.rss()
        _disconnect_all(workers, range(2))
    return {
        "sessions": clients,
        "rate_per_s": rate,
        "window_s": seconds,
        "achieved_rate_per_s": round(published["sent"] / (end - begin)),
        "publisher_window_full": published["stalls"],
        "server_cpu_cores": round(broker_cpu / (end - begin), 2),
        "server_rss_kb": rss // 1024,
        "machine_busy_share": machine_busy,
        "puback_reasons": published["puback_reasons"],
        **_latency_report(published, [stamps], start, end),
        "seconds": round(time.monotonic() - began, 1),
    }


def storm(
    broker: BrokerLike,
    clients: int = 5000,
    *,
    steady: int = 100,
    rate: float = 1000.0,
    storm_workers: int = 2,
    baseline: float = 2.0,
    after: float = 1.0,
    timeout: float = 120.0,
) -> dict[str, Any]:
    """``clients`` sessions opened at once while ``steady`` ones receive ``rate`` messages/s.

    Reports the time from the storm's start until every storm client has its CONNACK and
    SUBACK, and the steady subscribers' latency for messages published during the storm.
    """
    started = time.monotonic()
    storm_indexes = list(range(2, 2 + storm_workers))
    with Workers(broker, 2 + storm_workers) as workers:
        ids, publisher = _audience(workers, "calm", steady, [0], 1, "steady", record=True)
        begin = time.monotonic() + 0.5
        storm_at = begin + baseline
        capacity = int(rate * (baseline + timeout + after + 5)) + 1000
        workers.send(
            1, "publish", mode="paced", rate=rate, topics=[topic_for(i) for i in ids],
            deadline=storm_at + timeout + after, start_at=begin,
            window=publisher["receive_maximum"], capacity=capacity,
        )  # fmt: skip
        cpu_before, generator_before = broker.cpu_seconds(), workers.cpu_seconds()
        tcp_before, machine = tcp_counters(), machine_jiffies()
        chunks = _spread(_client_ids("storm", clients), storm_workers, first_source=1)
        for index, chunk in zip(storm_indexes, chunks, strict=True):
            workers.send(
                index, "storm", clients=chunk, username=SUBSCRIBER_USER,
                password=USERS[SUBSCRIBER_USER], start_at=storm_at, timeout=timeout,
            )  # fmt: skip
        wait = storm_at - time.monotonic() + timeout + 30
        stormed = [workers.receive(index, "storm", wait) for index in storm_indexes]
        durations: list[float] = []
        for reply in stormed:
            times = array.array("d")
            times.frombytes(reply["durations"])
            durations.extend(times)
        storm_end = storm_at + max(durations) if durations else max(r["done"] for r in stormed)
        broker_cpu = broker.cpu_seconds() - cpu_before
        tcp, machine_busy = tcp_counters_since(tcp_before), machine_busy_since(machine)
        generator_cpu = [
            b - a for a, b in zip(generator_before, workers.cpu_seconds(), strict=True)
        ]
        time.sleep(max(0.0, storm_end + after - time.monotonic()))
        workers.send(1, "stop")
        published = workers.receive(1, "publish", 60)
        time.sleep(0.5)
        stamps = workers.call(0, "stamps", 30)
        rss_stormed = broker.rss()
        _disconnect_all(workers, [0, 1, *storm_indexes])
    connected, errors = tally(stormed)
    during = _latency_report(published, [stamps], storm_at, storm_end)
    before = _latency_report(published, [stamps], begin, storm_at)
    return {
        "clients": clients,
        "connected": connected,
        "failed": clients - connected,
        "errors": errors,
        "all_connected_s": round(storm_end - storm_at, 3) if connected == clients else None,
        "connack_suback_ms": percentiles(durations),
        "server_cpu_s_during_storm": round(broker_cpu, 2),
        "server_cpu_ms_per_client": round(broker_cpu / clients * 1000, 3) if clients else None,
        "generator_cpu_s_during_storm": {
            "steady_subscribers": round(generator_cpu[0], 3),
            "publisher": round(generator_cpu[1], 3),
            "storm_processes": [round(cpu, 3) for cpu in generator_cpu[2:]],
        },
        "machine_busy_share_during_storm": machine_busy,
        "tcp_counters_during_storm": tcp,
        "server_rss_kb": rss_stormed // 1024,
        "steady_sessions": steady,
        "rate_per_s": rate,
        "publisher_window_full": published["stalls"],
        "steady_during_storm": during,
        "steady_before_storm": before,
        "seconds": round(time.monotonic() - started, 1),
    }
