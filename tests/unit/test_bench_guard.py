"""Regression guard of the side-by-side benchmark (``python -m bench``): only what does not
depend on the machine's speed.

- The throughput machinery, at a tiny size against a real ``aoi server`` process, with a
  fixed number of pushes (:func:`bench.server.exact`): every push is accepted, delivered
  and acked exactly once, at the clients and at the server. Counts, never times.
- Every workload's producer, at a tiny size, returns every key the table needs
  (:func:`bench.report.missing`) and loses nothing; Mosquitto's only where it is installed
  (a test does not install it). These run real servers for a few seconds each: ``slow``.
- The table's ratios and target verdicts, from fixed figures.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

try:
    import bench.__main__ as bench_main
    from bench import fleet, mosquitto, report, server
except ModuleNotFoundError:  # bench/ is not an installed package: run as `pytest`, not `-m`
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    import bench.__main__ as bench_main
    from bench import fleet, mosquitto, report, server

TINY: dict[str, Any] = {
    **bench_main.FULL,
    "idle_sessions": [20],
    "clients": 5,
    "in_flight": 4,
    "connections": 4,
    "rate_per_s": 200.0,
    "window_s": 0.3,
    "storm_clients": 40,
    "storm_steady": 5,
    "reallocation_clients": 10,
    "warmup_s": 0.2,
    "storm_baseline_s": 0.5,
}
PRODUCED = ("memory", "throughput", "latency", "storm")


@pytest.mark.parametrize("batch", [1, 100], ids=["single pushes", "batches of 100"])
def test_every_push_is_accepted_delivered_and_acked_exactly_once(
    tmp_path: Path, batch: int
) -> None:
    pushes = 600 if batch == 1 else 650  # batches: the last one is shorter
    counts = server.exact(tmp_path, sessions=20, pushes=pushes, connections=8, batch=batch)
    assert counts == {
        "sessions": 20,
        "registered": 20,
        "failed": 0,
        "pushes": pushes,
        "sent": pushes,
        "statuses": {"201": pushes},  # a batch's: one per result
        "accepted": pushes,  # distinct notification ids in the 201s
        "acked": pushes,  # ids acked by the clients...
        "distinct": pushes,  # ...each of them once
        "duplicates": 0,
        "accepted_not_received": 0,
        "received_not_accepted": 0,
        "sessions_lost": 0,
        "lost_connections": 0,
        "server_accepted": pushes,  # aoi_notifications_accepted_total
        "server_delivered": pushes,  # aoi_notifications_delivered_total: acks taken
    }


@pytest.fixture(scope="module")
def aoi_figures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("aoi-bench")
    return {name: bench_main.aoi(name, folder, TINY) for name in PRODUCED}


@pytest.mark.slow
def test_the_reference_results_have_every_key_the_table_needs(
    aoi_figures: dict[str, Any],
) -> None:
    result = {"sizes": TINY, "aoi": aoi_figures, "mosquitto": {}}
    lacking = [key for key in report.missing(result, PRODUCED) if key.startswith("aoi.")]
    assert lacking == []


@pytest.mark.slow
def test_the_reference_workloads_lose_nothing(aoi_figures: dict[str, Any]) -> None:
    memory, throughput = aoi_figures["memory"], aoi_figures["throughput"]
    latency, storm = aoi_figures["latency"], aoi_figures["storm"]
    assert [step["failed"] for step in memory["steps"]] == [0]
    assert memory["sessions_lost"] == 0
    for figures in (throughput, latency):
        assert set(figures["statuses"]) == {"201"}
        assert figures["sessions_lost"] == 0
        assert figures["duplicates"] == 0
    assert latency["not_received"] == 0
    assert (storm["connected"], storm["failed"], storm["errors"]) == (TINY["storm_clients"], 0, {})
    assert set(storm["statuses"]) == {"201"}
    assert storm["steady_during_storm"]["not_received"] == 0
    assert storm["steady_before_storm"]["not_received"] == 0
    assert (storm["steady_sessions_lost"], storm["steady_duplicates"]) == (0, 0)


@pytest.mark.slow
def test_the_reallocation_result_has_every_key_the_table_needs() -> None:
    pytest.importorskip("bench.storm")
    logging.getLogger("aoi").setLevel(logging.ERROR)
    try:
        figures = bench_main.reallocation(TINY["reallocation_clients"], dwell_s=0.0)
    finally:
        logging.getLogger("aoi").setLevel(logging.NOTSET)
    result = {"sizes": TINY, "aoi": {"reallocation": figures}, "mosquitto": {}}
    assert report.missing(result, ["reallocation"]) == []
    assert figures["served"] + figures["direct"] == TINY["reallocation_clients"]


@pytest.mark.slow
def test_the_fleet_result_has_every_key_the_table_needs(tmp_path: Path) -> None:
    figures = fleet.run(tmp_path, clients=10, connections=8, seconds=0.5)
    result = {"sizes": TINY, "aoi": {"fleet": figures}, "mosquitto": {}}
    assert report.missing(result, ["fleet"]) == []
    workers, forwarding = figures["workers"], figures["forwarding"]
    for run in (workers["1"], workers["2"], forwarding["local"], forwarding["forwarded"]):
        assert run["acked_per_s"] > 0 and run["sessions_lost"] == 0, run
    assert figures["forwarding"]["forwarded"]["others_cpu_cores"]["node-2"] > 0


@pytest.mark.slow
@pytest.mark.skipif(
    mosquitto._which("mosquitto") is None or mosquitto._which("mosquitto_passwd") is None,
    reason="mosquitto is not installed (python -m bench installs it; a test does not)",
)
def test_the_mosquitto_results_have_every_key_the_table_needs() -> None:
    figures = {name: bench_main.broker(name, TINY) for name in PRODUCED}
    result = {"sizes": TINY, "aoi": {}, "mosquitto": figures}
    lacking = [key for key in report.missing(result) if key.startswith("mosquitto.")]
    assert lacking == []
    assert figures["storm"]["failed"] == 0
    assert figures["latency"]["not_received"] == 0


# --- the table, from fixed figures ---------------------------------------------------------


def figures(kb: float, aoi_acked: int, aoi_p99: float, aoi_storm_s: float = 3.0) -> dict[str, Any]:
    """A result with every key the table reads; Mosquitto: 8,000/s (and per CPU second),
    p99 2 ms, storm 3 s. AOI in batches: 25/12 of ``aoi_acked`` per CPU second (so that the
    batch target is at its bound when the single one is)."""
    sizes = {**TINY, "idle_sessions": [5000, 20000]}

    def side(per_session_kb: float, acked: int, p99: float, storm_s: float) -> dict[str, Any]:
        latency = {"p50": p99 / 4, "p99": p99, "p999": p99 * 2}
        steps = [
            {"sessions": 5000, "per_session_kb": per_session_kb},
            {"sessions": 19936, "per_session_kb": per_session_kb},  # capped: RLIMIT_NOFILE
        ]
        storm = {
            "all_connected_s": storm_s, "failed": 0, "server_cpu_ms_per_client": 0.5,
            "steady_during_storm": {"latency_201_to_receipt_ms": latency,
                                    "latency_puback_to_receipt_ms": latency},
            "steady_before_storm": {"latency_201_to_receipt_ms": latency,
                                    "latency_puback_to_receipt_ms": latency},
        }  # fmt: skip
        return {
            "memory": {"steps": steps},
            "throughput": {
                "acked_per_s": acked, "accepted_per_s": acked, "server_cpu_cores": 1.0,
                "acked_per_server_cpu_s": acked, "generator_cpu_us_per_notification": 20.0,
                "server_cpu_us_per_notification": 1e6 / acked,
            },
            "latency": {
                "latency_201_to_receipt_ms": latency, "latency_puback_to_receipt_ms": latency,
                "latency_push_sent_to_receipt_ms": latency,
                "latency_publish_sent_to_receipt_ms": latency,
                "accepted_per_s": 200,
            },
            "storm": storm,
        }  # fmt: skip

    aoi = side(kb, aoi_acked, aoi_p99, aoi_storm_s)
    batched = round(aoi_acked * 25 / 12)
    aoi["throughput"]["batched"] = {
        "acked_per_s": batched, "acked_per_server_cpu_s": batched,
        "server_cpu_us_per_notification": 1e6 / batched,
    }  # fmt: skip
    aoi["reallocation"] = {"all_served_or_direct_s": 1.5, "served": 10, "reallocation_ms": {
        "p99": 80.0}}  # fmt: skip
    run = {
        "acked_per_s": 3000,
        "others_cpu_us_per_notification": {"server": 250.0, "redis-server": 60.0},
    }
    totals = {"local": 300.0, "forwarded": 324.0}
    aoi["fleet"] = {
        "workers": {"1": run, "2": run},
        "forwarding": {"forward_cpu_us": 24.0, "total_cpu_us_per_notification": totals},
    }
    return {"sizes": sizes, "aoi": aoi, "mosquitto": side(1.5, 8000, 2.0, 3.0)}


@pytest.mark.parametrize(
    ("kb", "acked", "p99", "storm_s", "met"),
    [
        (10.0, 960, 4.0, 6.0, (True, True, True, True, True)),  # every target at its bound
        (10.01, 959, 4.01, 6.01, (False, False, False, False, False)),
        (8.0, 9000, 1.0, 2.0, (True, True, True, True, True)),
    ],
)
def test_ratios_and_targets(
    kb: float, acked: int, p99: float, storm_s: float, met: tuple[bool, ...]
) -> None:
    result = figures(kb, acked, p99, storm_s)
    assert report.missing(result) == []
    rows = report.rows(result)
    by = {row["figure"]: row for row in rows}
    throughput = by["notifications acked per server CPU second"]
    assert throughput["ratio"] == round(acked / 8000, 3)
    batched = by["AOI in batches of 100: notifications acked per server CPU second"]
    assert batched["ratio"] == round(round(acked * 25 / 12) / 8000, 3)
    assert by["s until all 40 connecting clients are served"]["ratio"] == round(storm_s / 3.0, 3)
    assert by["p99 ms, acceptance to receipt, 200/s"]["ratio"] == round(p99 / 2.0, 3)
    assert by["KB per authenticated idle session, 20,000 sessions"]["note"] == (
        "measured at 19,936 for AOI reference and 19,936 for Mosquitto: RLIMIT_NOFILE"
    )
    targets = report.targets(rows)
    assert targets["storm_ratio"]["ratio"] == round(storm_s / 3.0, 3)
    assert targets["p99_latency_ratio"]["ratio"] == round(p99 / 2.0, 3)
    assert (
        targets["memory_per_idle_session_kb"]["met"],
        targets["throughput_ratio"]["met"],
        targets["batch_throughput_ratio"]["met"],
        targets["p99_latency_ratio"]["met"],
        targets["storm_ratio"]["met"],
    ) == met
    assert by["s until all 10 clients are on the alternates"]["aoi"] == 1.5
    assert by["s until all 10 clients are on the alternates"]["mosquitto"] is None


def test_a_missing_figure_is_named_and_leaves_its_target_open() -> None:
    result = figures(12.0, 4000, 3.0)
    del result["mosquitto"]["throughput"]["acked_per_server_cpu_s"]
    del result["aoi"]["memory"]["steps"][0]["per_session_kb"]
    assert report.missing(result) == [
        "aoi.memory.steps.[sessions=5000].per_session_kb",
        "mosquitto.throughput.acked_per_server_cpu_s",
    ]
    targets = report.targets(report.rows(result))
    assert targets["throughput_ratio"]["met"] is None
    assert targets["memory_per_idle_session_kb"]["met"] is None
    assert targets["p99_latency_ratio"]["met"] is True


def test_a_latency_not_above_zero_has_no_ratio() -> None:
    assert report.ratio(5.0, -0.003) is None  # Mosquitto delivered before its PUBACK
    assert report.ratio(5.0, 0) is None
    assert report.ratio(None, 2.0) is None
    assert report.ratio(3.0, 2.0) == 1.5


def test_the_markdown_table_and_the_chart(tmp_path: Path) -> None:
    result = figures(12.0, 4000, 3.0)
    result.update(
        command="python -m bench", date="2025-01-01T00:00:00+00:00", quick=False, seconds=60.0,
        machine={"cpu_model": "CPU", "cpus": 2}, conditions={}, errors={},
    )  # fmt: skip
    result["rows"] = report.rows(result)
    result["targets"] = report.targets(result["rows"])
    table = report.markdown_table(result)
    assert len(table.splitlines()) == 2 + len(result["rows"])
    assert "| 4,000 | 8,000 | 0.50x | AOI/Mosquitto >= 0.12 | yes |" in table
    assert "| load generator CPU µs per notification | 20.0 | 20.0 | 1.00x |  | - |" in table
    floor = {
        "h11_us": 60.0, "httptools_us": 2.0, "wsproto_us": 12.0, "websockets_us": 4.0,
        "plain_writer_websockets_us": 3.0, "codec_us": 9.0, "codec_no_revalidation_us": 6.0,
        "floor_us": 81.0, "ceiling_per_core_per_s": 12346, "new_floor_us": 11.0,
        "new_ceiling_per_core_per_s": 90909,
    }  # fmt: skip
    result["profile"] = {
        **bench_main.summarise("f (aoi/net/http.py:1) 3"), "seconds": 5, "command": "py-spy",
        "acked_per_s_while_profiled": 100, "server_cpu_cores_while_profiled": 1.0,
        "stack_floor": floor,
    }  # fmt: skip
    page = report.markdown(result)
    assert "`python -m bench`" in page
    assert "| In all | 81: at most 12,346/s per core | 11: at most 90,909/s per core |" in page
    assert "| net shell (aoi/net) | 100% | 10,000.0 | 100% |" in page
    pytest.importorskip("matplotlib")
    report.chart(result, tmp_path / "bench.png")
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    json.dumps(result)  # the document is JSON as it is


def test_profile_summary_adds_up() -> None:
    stacks = "\n".join([
        "main (aoi/server/cli.py:1);run (trio/_core/_run.py:2);_push (aoi/server/push_api.py:3) 6",
        "main (aoi/server/cli.py:1);run (trio/_core/_run.py:2);_push (aoi/server/push_api.py:3);"
        "dumps (json/__init__.py:4) 3",
        "main (aoi/server/cli.py:1);recv (trio/_socket.py:5) 1",
    ])  # fmt: skip
    summary = bench_main.summarise(stacks)
    assert summary["samples"] == 10
    assert summary["areas"] == {
        "AOI-3 push API (aoi/server/push_api)": 0.6,
        "JSON (json)": 0.3,
        "trio: sockets, scheduling, threads": 0.1,
    }
    assert summary["inclusive"]["AOI-3 push API (aoi/server/push_api)"] == 0.9
    assert summary["self"]["_push (aoi/server/push_api.py)"] == 0.6


def test_the_stack_floor_does_the_work_of_one_notification() -> None:
    from bench import stack_floor
    from wsproto.connection import Connection, ConnectionType
    from wsproto.events import TextMessage

    for http in (
        stack_floor.h11_exchange(),
        stack_floor.h11_exchange(prebuilt=True),
        stack_floor.httptools_exchange(),
    ):
        for _ in range(2):  # a request parsed and answered; the next one still fits
            answer = http()
            assert answer.startswith(b"HTTP/1.1 201 ")
            assert answer.endswith(b"\r\n\r\n" + stack_floor.ANSWER)
    notify = json.dumps(stack_floor.NOTIFY.to_wire())
    for websocket in (
        stack_floor.wsproto_exchange(),
        stack_floor.websockets_exchange(),
        stack_floor.plain_writer_exchange(),
    ):  # each reads the ack (and asserts it); a client reads back the notify it wrote
        client = Connection(ConnectionType.CLIENT)
        client.receive_data(websocket())
        assert list(client.events()) == [TextMessage(data=notify)]
    stack_floor.codec_work()()  # asserts the push body is valid
    stack_floor.codec_work(validate_outgoing=False)()
    figures = stack_floor.measure(0.01)
    old = figures["h11_us"] + figures["wsproto_us"] + figures["codec_us"]
    new = (
        figures["httptools_us"]
        + figures["plain_writer_websockets_us"]
        + figures["codec_no_revalidation_us"]
    )
    assert figures["floor_us"] == pytest.approx(old, abs=0.2)
    assert figures["new_floor_us"] == pytest.approx(new, abs=0.2)
    assert figures["ceiling_per_core_per_s"] == pytest.approx(1e6 / figures["floor_us"], rel=1e-2)


@pytest.mark.parametrize("batch", [1, 64])
def test_both_delivery_paths_deliver_every_notification_once(batch: int) -> None:
    from bench import delivery

    pushed = delivery.records(500)
    for make in (delivery.core, delivery.hub):
        run = make(pushed, batch)
        assert run() == 500  # every one sent, acked and finished
        assert run() == 500  # and all of them again: nothing was left behind
