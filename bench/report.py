"""The side-by-side report of ``python -m bench``: the table's rows, the targets, the Markdown
page and the PNG chart, all from the run's JSON document (``reports/bench.json``).

The document has one section per system, ``aoi`` and ``mosquitto``, each with one entry per
workload (``memory``, ``throughput``, ``latency``, ``storm``; ``reallocation`` for AOI only):
the figures as :mod:`bench.server`, :mod:`bench.aoi_storm`, :mod:`bench.mqtt` and
:mod:`bench.storm` return them. :data:`FIGURES` says which of their keys the table shows;
:func:`missing` lists those a document lacks (the test suite's guard checks it).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SYSTEMS = ("aoi", "mosquitto")
NAMES = {"aoi": "AOI reference", "mosquitto": "Mosquitto"}
COLOURS = {"aoi": "#1f77b4", "mosquitto": "#ff7f0e"}
WORKLOADS = ("memory", "throughput", "latency", "storm", "reallocation", "fleet")
TITLES = {
    "memory": "Idle sessions",
    "throughput": "Throughput",
    "latency": "Latency",
    "storm": "Connection storm",
    "reallocation": "Reallocation",
    "fleet": "Fleet on Redis",
}

# The targets: memory per idle session, and AOI relative to Mosquitto in the same run.
MEMORY_KB_MAX = 10.0
THROUGHPUT_RATIO_MIN = 0.12  # notifications acked per second of the server's CPU
BATCH_RATIO_MIN = 0.25  # the same, with AOI's pushes in batches of 100 (POST /v1/push)
P99_RATIO_MAX = 2.0
STORM_RATIO_MAX = 2.0

# A path is a tuple of keys; in it, a pair (key, value) picks the item of a list whose key is
# value, and a triple ("at_most", key, value) the one with the largest key not above value.
Path_ = tuple[Any, ...]


@dataclass(frozen=True)
class Figure:
    """One row of the table: where each system's figure is, and its target if it has one."""

    workload: str
    label: str
    aoi: Path_
    mosquitto: Path_ | None  # None: the reference only
    digits: int = 1
    target: str | None = None  # "memory", "throughput", "p99" or "storm" (:data:`TARGETS`)
    size: tuple[Path_, int] | None = None  # where the size measured is, and the one wanted


def figures(sizes: dict[str, Any]) -> list[Figure]:
    """The table's rows for a run of these ``sizes`` (the document's ``sizes``)."""
    clients, rate, batch = sizes["clients"], sizes["rate_per_s"], sizes.get("batch", 100)
    storm, steady = sizes["storm_clients"], sizes["storm_steady"]
    a201, puback = "latency_201_to_receipt_ms", "latency_puback_to_receipt_ms"
    rows = [
        Figure(
            "memory", f"KB per authenticated idle session, {n:,} sessions",
            ("steps", ("at_most", "sessions", n), "per_session_kb"),
            ("steps", ("at_most", "sessions", n), "per_session_kb"), 2, "memory",
            (("steps", ("at_most", "sessions", n), "sessions"), n),
        )
        for n in sizes["idle_sessions"]
    ]  # fmt: skip
    rows += [
        Figure(
            "throughput", f"notifications delivered and acked /s, {clients} clients",
            ("acked_per_s",), ("acked_per_s",), 0,
        ),
        Figure("throughput", "pushes accepted /s (201 / PUBACK)", ("accepted_per_s",),
               ("accepted_per_s",), 0),
        Figure("throughput", "server CPU, cores", ("server_cpu_cores",), ("server_cpu_cores",), 2),
        Figure("throughput", "notifications acked per server CPU second",
               ("acked_per_server_cpu_s",), ("acked_per_server_cpu_s",), 0, "throughput"),
        Figure("throughput", "load generator CPU µs per notification",
               ("generator_cpu_us_per_notification",), ("generator_cpu_us_per_notification",), 1),
        Figure("throughput", "server CPU µs per notification",
               ("server_cpu_us_per_notification",), ("server_cpu_us_per_notification",), 1),
        Figure("throughput", f"AOI in batches of {batch}: notifications delivered and acked /s",
               ("batched", "acked_per_s"), ("acked_per_s",), 0),
        Figure("throughput", f"AOI in batches of {batch}: server CPU µs per notification",
               ("batched", "server_cpu_us_per_notification"),
               ("server_cpu_us_per_notification",), 1),
        Figure("throughput",
               f"AOI in batches of {batch}: notifications acked per server CPU second",
               ("batched", "acked_per_server_cpu_s"), ("acked_per_server_cpu_s",), 0, "batch"),
        Figure("latency", f"p50 ms, acceptance to receipt, {rate:,.0f}/s",
               (a201, "p50"), (puback, "p50"), 2),
        Figure("latency", f"p99 ms, acceptance to receipt, {rate:,.0f}/s",
               (a201, "p99"), (puback, "p99"), 2, "p99"),
        Figure("latency", f"p999 ms, acceptance to receipt, {rate:,.0f}/s",
               (a201, "p999"), (puback, "p999"), 2),
        Figure("latency", "p99 ms, push sent to receipt",
               ("latency_push_sent_to_receipt_ms", "p99"),
               ("latency_publish_sent_to_receipt_ms", "p99"), 2),
        Figure("latency", "rate achieved /s", ("accepted_per_s",), ("accepted_per_s",), 0),
        Figure("storm", f"s until all {storm:,} connecting clients are served",
               ("all_connected_s",), ("all_connected_s",), 2, "storm"),
        Figure("storm", f"p99 ms of {steady} connected clients during the storm",
               ("steady_during_storm", a201, "p99"), ("steady_during_storm", puback, "p99"), 2),
        Figure("storm", "p99 ms of those clients before the storm",
               ("steady_before_storm", a201, "p99"), ("steady_before_storm", puback, "p99"), 2),
        Figure("storm", "server CPU ms per connecting client", ("server_cpu_ms_per_client",),
               ("server_cpu_ms_per_client",), 2),
        Figure("storm", "storm clients not served", ("failed",), ("failed",), 0),
        Figure("reallocation",
               f"s until all {sizes['reallocation_clients']:,} clients are on the alternates",
               ("all_served_or_direct_s",), None, 2),
        Figure("reallocation", "clients served on the alternates", ("served",), None, 0),
        Figure("reallocation", "p99 ms per client, last refusal to served",
               ("reallocation_ms", "p99"), None, 1),
        Figure("fleet", f"acked /s, {clients} clients, 1 worker on Redis",
               ("workers", "1", "acked_per_s"), None, 0),
        Figure("fleet", "acked /s, 2 workers", ("workers", "2", "acked_per_s"), None, 0),
        Figure("fleet", "server CPU µs per notification, 1 worker",
               ("workers", "1", "others_cpu_us_per_notification", "server"), None, 1),
        Figure("fleet", "server CPU µs per notification, 2 workers",
               ("workers", "2", "others_cpu_us_per_notification", "server"), None, 1),
        Figure("fleet", "redis-server CPU µs per notification, 1 worker",
               ("workers", "1", "others_cpu_us_per_notification", "redis-server"), None, 1),
        Figure("fleet", "CPU µs per notification, all processes, accepted by the session's node",
               ("forwarding", "total_cpu_us_per_notification", "local"), None, 1),
        Figure("fleet", "CPU µs per notification, all processes, accepted by the other node",
               ("forwarding", "total_cpu_us_per_notification", "forwarded"), None, 1),
    ]  # fmt: skip
    return rows


def dig(document: Any, path: Path_) -> Any:
    """The value at ``path``, or None where something on the way is missing."""
    for step in path:
        if isinstance(step, tuple):
            if not isinstance(document, list):
                return None
            if len(step) == 3:
                _, key, most = step
                below = [item for item in document if item.get(key, math.inf) <= most]
                document = max(below, key=lambda item: item[key], default=None)
            else:
                key, value = step
                document = next((item for item in document if item.get(key) == value), None)
        elif isinstance(document, dict):
            document = document.get(step)
        else:
            return None
        if document is None:
            return None
    return document


def missing(result: dict[str, Any], workloads: Sequence[str] = WORKLOADS) -> list[str]:
    """The keys the table needs that ``result`` lacks, as ``system.workload.key...``."""
    lacking = []
    for figure in figures(result["sizes"]):
        if figure.workload not in workloads:
            continue
        for system in SYSTEMS:
            path = getattr(figure, system)
            if path is None:
                continue
            if dig(result.get(system, {}).get(figure.workload), path) is None:
                shown = ".".join(f"[{s[-2]}={s[-1]}]" if isinstance(s, tuple) else s for s in path)
                lacking.append(f"{system}.{figure.workload}.{shown}")
    return list(dict.fromkeys(lacking))  # a key that several rows read, named once


def ratio(aoi: Any, mosquitto: Any) -> float | None:
    """AOI / Mosquitto; None when either is missing or Mosquitto's is not above zero (a
    latency of Mosquitto's can be negative: it may deliver before it acknowledges)."""
    if not isinstance(aoi, int | float) or not isinstance(mosquitto, int | float):
        return None
    if mosquitto <= 0 or math.isnan(aoi) or math.isnan(mosquitto):
        return None
    return aoi / mosquitto


TARGETS: dict[str, tuple[str, Callable[[Any, float | None], bool | None]]] = {
    "memory": (
        f"<= {MEMORY_KB_MAX:g} KB",
        lambda aoi, r: None if aoi is None else aoi <= MEMORY_KB_MAX,
    ),
    "throughput": (
        f"AOI/Mosquitto >= {THROUGHPUT_RATIO_MIN:g}",
        lambda aoi, r: None if r is None else r >= THROUGHPUT_RATIO_MIN,
    ),
    "batch": (
        f"AOI/Mosquitto >= {BATCH_RATIO_MIN:g}",
        lambda aoi, r: None if r is None else r >= BATCH_RATIO_MIN,
    ),
    "p99": (
        f"AOI/Mosquitto <= {P99_RATIO_MAX:g}",
        lambda aoi, r: None if r is None else r <= P99_RATIO_MAX,
    ),
    "storm": (
        f"AOI/Mosquitto <= {STORM_RATIO_MAX:g}",
        lambda aoi, r: None if r is None else r <= STORM_RATIO_MAX,
    ),
}


def rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The table: per figure, both systems' values, their ratio and the target's verdict."""
    table = []
    for figure in figures(result["sizes"]):
        aoi = dig(result.get("aoi", {}).get(figure.workload), figure.aoi)
        mosquitto = None
        if figure.mosquitto is not None:
            mosquitto = dig(result.get("mosquitto", {}).get(figure.workload), figure.mosquitto)
        r = ratio(aoi, mosquitto)
        row: dict[str, Any] = {
            "workload": figure.workload, "figure": figure.label, "aoi": aoi,
            "mosquitto": mosquitto, "ratio": None if r is None else round(r, 3),
            "digits": figure.digits, "kind": figure.target, "target": None, "met": None,
        }  # fmt: skip
        if figure.size is not None:  # a size the machine did not allow (descriptors)
            path, wanted = figure.size
            measured = {
                system: dig(result.get(system, {}).get(figure.workload), path) for system in SYSTEMS
            }
            notes = [
                f"{n:,} for {NAMES[system]}"
                for system, n in measured.items()
                if isinstance(n, int) and n != wanted
            ]
            if notes:
                row["note"] = "measured at " + " and ".join(notes) + ": RLIMIT_NOFILE"
        if figure.target is not None:
            text, check = TARGETS[figure.target]
            row["target"], row["met"] = text, check(aoi, r)
        table.append(row)
    return table


def targets(table: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The targets, met or not (None: a figure is missing). The storm's time is only
    defined when every storm client was served, so a storm with one unserved has none."""

    def of(kind: str) -> list[dict[str, Any]]:
        return [row for row in table if row.get("kind") == kind]

    def verdict(found: list[dict[str, Any]]) -> bool | None:
        if not found or any(row["met"] is None for row in found):
            return None
        return all(row["met"] for row in found)

    memory, throughput, p99, storm = of("memory"), of("throughput"), of("p99"), of("storm")
    batch = of("batch")
    values = [row["aoi"] for row in memory if row["aoi"] is not None]
    return {
        "memory_per_idle_session_kb": {
            "target": f"<= {MEMORY_KB_MAX:g}", "aoi_max": max(values) if values else None,
            "met": verdict(memory),
        },
        "throughput_ratio": {
            "target": f">= {THROUGHPUT_RATIO_MIN:g}",
            "ratio": throughput[0]["ratio"] if throughput else None, "met": verdict(throughput),
        },
        "batch_throughput_ratio": {
            "target": f">= {BATCH_RATIO_MIN:g}",
            "ratio": batch[0]["ratio"] if batch else None, "met": verdict(batch),
        },
        "p99_latency_ratio": {
            "target": f"<= {P99_RATIO_MAX:g}", "ratio": p99[0]["ratio"] if p99 else None,
            "met": verdict(p99),
        },
        "storm_ratio": {
            "target": f"<= {STORM_RATIO_MAX:g}", "ratio": storm[0]["ratio"] if storm else None,
            "met": verdict(storm),
        },
    }  # fmt: skip


# --- Markdown ----------------------------------------------------------------------------


def number(value: Any, digits: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:,.{digits}f}"


def markdown_table(result: dict[str, Any]) -> str:
    mosquitto = result.get("systems", {}).get("mosquitto", {}).get("version", "2")
    lines = [
        f"| Workload | Figure | AOI reference | Mosquitto {mosquitto} | AOI / Mosquitto "
        "| Target | Met |",
        "|---|---|--:|--:|--:|---|---|",
    ]
    shown = ""
    for row in result["rows"]:
        title = TITLES[row["workload"]] if row["workload"] != shown else ""
        shown = row["workload"]
        r = row["ratio"]
        met = {True: "yes", False: "**no**", None: "-" if row["target"] is None else "?"}
        note = f" ({row['note']})" if row.get("note") else ""
        lines.append(
            f"| {title} | {row['figure']}{note} "
            f"| {number(row['aoi'], row['digits'])} "
            f"| {number(row['mosquitto'], row['digits'])} "
            f"| {'-' if r is None else f'{r:,.2f}x'} | {row['target'] or ''} "
            f"| {met[row['met']]} |"
        )
    return "\n".join(lines) + "\n"


def machine_line(machine: dict[str, Any]) -> str:
    return (
        f"{machine.get('cpu_model', '?')}, {machine.get('cpus', '?')} CPUs, "
        f"{machine.get('memory_gib', '?')} GiB, Linux {machine.get('kernel', '?')}, "
        f"Python {machine.get('python', '?')}, Mosquitto {machine.get('mosquitto', '?')}"
    )


def conditions_table(result: dict[str, Any]) -> str:
    lines = [
        "| Before | load average (1, 5, 15 min) | CPUs busy, 1 s before "
        "| CPU pressure (PSI avg10) |",
        "|---|---|--:|--:|",
    ]
    for name, c in result.get("conditions", {}).items():
        load = ", ".join(f"{x:.2f}" for x in c.get("load_average", ()))
        busy = c.get("machine_busy_share")
        cpu = c.get("pressure", {}).get("cpu")
        lines.append(
            f"| {name} | {load} | {'-' if busy is None else f'{busy:.0%}'} "
            f"| {'-' if cpu is None else f'{cpu:.0f} %'} |"
        )
    return "\n".join(lines) + "\n"


def profile_section(profile: dict[str, Any]) -> str:
    if not profile or "error" in profile:
        return f"py-spy: {profile.get('error', 'not run')}\n" if profile else ""
    inclusive = profile.get("inclusive", {})
    acked, cores = profile["acked_per_s_while_profiled"], profile["server_cpu_cores_while_profiled"]
    per = cores / acked * 1e6 if acked else None  # the server's CPU µs per notification
    lines = [
        f"py-spy on the AOI server during an extra run of the throughput workload"
        f"{' in batches of ' + str(profile['batch']) if profile.get('batch', 1) > 1 else ''} "
        f"({profile['samples']:,} samples of the server's threads while they ran, "
        f"{profile['seconds']:g} s, `{profile['command']}`; "
        f"{profile['acked_per_s_while_profiled']:,}/s acked, server CPU "
        f"{profile['server_cpu_cores_while_profiled']:.2f} cores meanwhile). Per part of the "
        "code: the share of the samples spent in it, not in what it calls from another part "
        "(innermost), and the share in which it was anywhere on the stack (inclusive); "
        "µs: the innermost share of the server's CPU per notification acked "
        f"({number(per, 0)} µs meanwhile):",
        "",
        "| Part | Innermost | µs per notification | Inclusive |",
        "|---|--:|--:|--:|",
    ]
    lines += [
        f"| {name} | {share:.0%} | {number(per and share * per, 1)} "
        f"| {inclusive.get(name, share):.0%} |"
        for name, share in profile["areas"].items()
    ]
    lines += ["", "Functions most often at the top of the stack (self time):", ""]
    lines += ["| Function | Share | µs per notification |", "|---|--:|--:|"]
    lines += [
        f"| `{name}` | {share:.1%} | {number(per and share * per, 1)} |"
        for name, share in profile["self"].items()
    ]
    floor = profile.get("stack_floor")
    if floor:
        lines += [
            "",
            "The floor of the stack (`python -m bench.stack_floor`: the libraries alone, no "
            "server logic, event loop or system call), µs of CPU per notification:",
            "",
            "| Part | Today | Next |",
            "|---|--:|--:|",
            f"| HTTP: push parsed, 201 written | h11 {floor['h11_us']:g} | httptools, prebuilt "
            f"201: {floor['httptools_us']:g} |",
            f"| WebSocket: notify out, ack in | wsproto {floor['wsproto_us']:g} | plain writer, "
            f"websockets' reader: {floor['plain_writer_websockets_us']:g} (websockets both "
            f"ways: {floor['websockets_us']:g}) |",
            f"| Codec | notify validated again: {floor['codec_us']:g} | not validated again: "
            f"{floor['codec_no_revalidation_us']:g} |",
            f"| In all | {floor['floor_us']:g}: at most {floor['ceiling_per_core_per_s']:,}/s "
            f"per core | {floor['new_floor_us']:g}: at most "
            f"{floor['new_ceiling_per_core_per_s']:,}/s per core |",
        ]
    return "\n".join(lines) + "\n"


def markdown(result: dict[str, Any]) -> str:
    t = result["targets"]
    met = {True: "met", False: "**missed**", None: "not measured"}
    quick = "Quick smoke run (small sizes): not comparable with a full run. "
    parts = [
        "# AOI reference server and Mosquitto, side by side\n",
        f"{quick if result['quick'] else ''}"
        f"Run on {result['date']} with `{result['command']}`, {result['seconds']:,.0f} s.\n",
        f"Machine: {machine_line(result['machine'])}.\n",
        markdown_table(result),
        "Targets: memory per idle session "
        f"{met[t['memory_per_idle_session_kb']['met']]} (largest "
        f"{number(t['memory_per_idle_session_kb']['aoi_max'], 2)} KB, target "
        f"{t['memory_per_idle_session_kb']['target']}); throughput "
        f"{met[t['throughput_ratio']['met']]} (ratio {number(t['throughput_ratio']['ratio'], 3)},"
        f" target {t['throughput_ratio']['target']}); throughput in batches "
        f"{met[t['batch_throughput_ratio']['met']]} (ratio "
        f"{number(t['batch_throughput_ratio']['ratio'], 3)}, target "
        f"{t['batch_throughput_ratio']['target']}); p99 latency "
        f"{met[t['p99_latency_ratio']['met']]} (ratio "
        f"{number(t['p99_latency_ratio']['ratio'], 2)}, target "
        f"{t['p99_latency_ratio']['target']}); storm "
        f"{met[t['storm_ratio']['met']]} (ratio {number(t['storm_ratio']['ratio'], 2)}, target "
        f"{t['storm_ratio']['target']}).\n",
        "The machine is shared: how busy it was just before each workload started:\n",
        conditions_table(result),
    ]
    if result.get("errors"):
        parts.append(
            "Errors: " + "; ".join(f"{k}: {v}" for k, v in result["errors"].items()) + "\n"
        )
    if result.get("profile"):
        parts += ["## Where the time goes\n", profile_section(result["profile"])]
    if result.get("profile_batched"):
        parts += [
            "## Where the time goes, in batches\n",
            profile_section(result["profile_batched"]),
        ]
    return "\n".join(parts)


# --- chart -------------------------------------------------------------------------------


def chart(result: dict[str, Any], path: Path) -> None:
    """Six panels: idle memory, throughput, latency, storm (time, p99), reallocation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = result["rows"]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    version = result.get("systems", {}).get("mosquitto", {}).get("version", "")
    fig.suptitle(
        f"AOI reference vs Mosquitto {version}"
        f" — {result['date'][:10]}{' (quick)' if result['quick'] else ''}\n"
        f"{machine_line(result['machine'])}",
        fontsize=10,
    )

    def bars(ax: Any, picked: list[dict[str, Any]], labels: list[str], title: str,
             unit: str, log: bool = False) -> None:  # fmt: skip
        width = 0.38
        for k, system in enumerate(SYSTEMS):
            values = [row[system] for row in picked]
            if all(v is None for v in values):
                continue
            xs = [i + (k - 0.5) * width for i in range(len(picked))]
            heights = [v if isinstance(v, int | float) and v > 0 else 0 for v in values]
            drawn = ax.bar(xs, heights, width, label=NAMES[system], color=COLOURS[system])
            ax.bar_label(
                drawn, labels=[number(v, row["digits"]) for v, row in zip(values, picked,
                strict=True)], fontsize=7, padding=1,
            )  # fmt: skip
        ax.set_xticks(range(len(picked)), labels, fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(unit, fontsize=8)
        if log:
            ax.set_yscale("log")
        ax.legend(fontsize=7)

    memory = [row for row in table if row["workload"] == "memory"]
    bars(axes[0][0], memory, [f"{n:,}" for n in result["sizes"]["idle_sessions"]],
         f"Memory per idle session (target ≤ {MEMORY_KB_MAX:g} KB)", "KB")  # fmt: skip
    axes[0][0].axhline(MEMORY_KB_MAX, color="grey", linestyle="--", linewidth=1)
    axes[0][0].set_xlabel("idle sessions", fontsize=8)

    throughput = [row for row in table if row.get("kind") == "throughput"]
    bars(axes[0][1], throughput, [f"{result['sizes']['clients']} clients"],
         f"Throughput per server CPU second (target ≥ {THROUGHPUT_RATIO_MIN:g} x Mosquitto)",
         "notifications acked per CPU second")  # fmt: skip
    if throughput and isinstance(throughput[0]["mosquitto"], int | float):
        axes[0][1].axhline(
            throughput[0]["mosquitto"] * THROUGHPUT_RATIO_MIN, color="grey", linestyle="--",
            linewidth=1,
        )  # fmt: skip

    latency = [row for row in table if row["workload"] == "latency"][:3]
    bars(axes[0][2], latency, ["p50", "p99", "p999"],
         f"Latency at {result['sizes']['rate_per_s']:,.0f}/s, acceptance to receipt "
         f"(target p99 ≤ {P99_RATIO_MAX:g}x)", "ms (log)", log=True)  # fmt: skip

    storm = [row for row in table if row["workload"] == "storm"]
    bars(axes[1][0], storm[:1], [f"{result['sizes']['storm_clients']:,} clients"],
         f"Connection storm: time until all served (target ≤ {STORM_RATIO_MAX:g}x)",
         "s")  # fmt: skip
    bars(axes[1][1], storm[1:3], ["during the storm", "before it"],
         f"p99 of {result['sizes']['storm_steady']} connected clients", "ms")  # fmt: skip

    realloc = [row for row in table if row["workload"] == "reallocation"]
    ax = axes[1][2]
    if realloc and realloc[0]["aoi"] is not None:
        drawn = ax.bar([0], [realloc[0]["aoi"]], 0.5, color=COLOURS["aoi"], label=NAMES["aoi"])
        ax.bar_label(drawn, labels=[number(realloc[0]["aoi"], 2)], fontsize=7)
        ax.set_xticks([0], [f"{result['sizes']['reallocation_clients']:,} clients"], fontsize=8)
        ax.set_xlim(-1, 1)
        ax.legend(fontsize=7)
    else:
        ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
    ax.set_title("Reallocation (reference only): time until all moved", fontsize=10)
    ax.set_ylabel("s", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render(result: dict[str, Any], folder: Path) -> None:
    """(Re)write ``bench.md`` and ``bench.png`` in ``folder`` from a run's document."""
    result["rows"] = rows(result)
    result["targets"] = targets(result["rows"])
    (folder / "bench.md").write_text(markdown(result))
    try:
        chart(result, folder / "bench.png")
    except ImportError as error:
        print(f"bench: no chart ({error}); pip install '.[bench]'", file=sys.stderr)


def main() -> None:
    """``python -m bench.report [reports/bench.json]``: the table and chart again, from the
    figures of a run (after a change to this module; nothing is measured)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("document", nargs="?", default="reports/bench.json")
    args = parser.parse_args()
    path = Path(args.document)
    result = json.loads(path.read_text())
    render(result, path.parent)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(markdown_table(result))


if __name__ == "__main__":
    main()
