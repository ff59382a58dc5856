"""The conformance statement: ``conformance.json`` and ``conformance.html``.

One row per requirement of the registry, in catalogue order, with its verdict and the
scenarios behind it; a requirement with no applicable scenario says why. The statement
names the target, its ICS, the suite's version and the sha256 of features/ and schemas/,
so that a verdict can be traced to the exact suite that gave it.
"""

from __future__ import annotations

import hashlib
import html
import json
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import conformance.schemas as schemas
from conformance.registry import FEATURES_DIR, load_scenarios, scenarios_by_requirement
from conformance.verdicts import SEVERITY, Verdict, combine

if TYPE_CHECKING:
    from conformance.runtime import Runtime

SCHEMAS_DIR = schemas.ROOT


def tree_sha256(root: Path, patterns: tuple[str, ...]) -> str:
    """sha256 over the relative paths and contents of the files under ``root``."""
    digest = hashlib.sha256()
    files = sorted({p for pattern in patterns for p in root.rglob(pattern) if p.is_file()})
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def suite_identity() -> dict[str, Any]:
    try:
        version = metadata.version("aoi-conformance")
    except metadata.PackageNotFoundError:  # pragma: no cover - run from a bare checkout
        version = "unknown"
    features = tree_sha256(FEATURES_DIR, ("*.feature", "*.yaml"))
    schemas = tree_sha256(SCHEMAS_DIR, ("*.json",))
    return {
        "name": "aoi-conformance",
        "version": version,
        "sha256": {
            "features": features,
            "schemas": schemas,
            "features+schemas": hashlib.sha256((features + schemas).encode()).hexdigest(),
        },
    }


def requirement_rows(runtime: Runtime) -> list[dict[str, Any]]:
    registry = runtime.registry
    ics = runtime.ixit.ics
    written = scenarios_by_requirement(load_scenarios())
    rows: list[dict[str, Any]] = []
    for req, requirement in registry.requirements.items():
        evidence = [r for r in runtime.results.values() if req in r.outcomes]
        scenarios = [
            {
                "name": r.name,
                "nodeid": r.nodeid,
                "feature": r.feature_file,
                "verdict": r.outcomes[req].verdict.value,
                "explanation": r.outcomes[req].explanation,
                "status": r.status,
                "message": r.message,
                "wirelog": r.wirelog,
            }
            for r in evidence
        ]
        note = ""
        if not set(requirement.roles) & ics.roles:
            verdict, note = (
                Verdict.NA,
                f"no applicable scenario: role {'/'.join(requirement.roles)} is not under test",
            )
        elif requirement.feature and requirement.feature not in ics.features:
            verdict, note = (
                Verdict.NA,
                f"optional feature {requirement.feature!r} not declared in the ICS",
            )
        elif req not in written:
            verdict, note = (
                Verdict.NA,
                "no applicable scenario: the suite has none for this requirement",
            )
        elif not evidence:
            verdict, note = Verdict.NA, "not run in this session (deselected)"
        else:
            verdict = combine([r.outcomes[req].verdict for r in evidence])
        worst = sorted(scenarios, key=lambda s: SEVERITY.index(Verdict(s["verdict"])))
        explanation = note or (worst[0]["explanation"] if worst else "")
        rows.append(
            {
                "id": req,
                "level": requirement.level.value,
                "roles": list(requirement.roles),
                "feature": requirement.feature,
                "group": requirement.group,
                "text": requirement.text,
                "source": requirement.source,
                "verdict": verdict.value,
                "explanation": explanation,
                "applicable": not note or note.startswith("not run"),
                "scenarios": scenarios,
                "written_scenarios": written.get(req, []),
            }
        )
    return rows


def statement(runtime: Runtime) -> dict[str, Any]:
    rows = requirement_rows(runtime)
    summary: dict[str, int] = {v.value: 0 for v in Verdict if v is not Verdict.BLOCKED}
    for row in rows:
        summary[row["verdict"]] += 1
    config = runtime.config
    selection = {
        "requirements": list(config.getoption("requirement") or []),
        "features": list(config.option.features or []),
        "markers": config.option.markexpr or "",
        "keywords": config.option.keyword or "",
    }
    partial = any(selection.values()) or any(r["explanation"].startswith("not run") for r in rows)
    ics = runtime.ixit.ics
    return {
        "statement": "AOI conformance statement",
        "suite": suite_identity(),
        "target": {
            "mode": runtime.mode,
            "label": runtime.target_label,
            "endpoints": _endpoints(runtime),
            "client": runtime.client.target.label if runtime.client is not None else None,
        },
        "ics": {
            "implementation": ics.implementation,
            "vendor": ics.vendor,
            "version": ics.version,
            "roles": sorted(ics.roles),
            "features": sorted(ics.features),
        },
        "run": {
            "started": _iso(runtime.started),
            "finished": _iso(datetime.now(UTC).timestamp()),
            "timeout_scale": runtime.timeout_scale,
            "selection": selection,
            "complete": not partial,
        },
        "result": result(summary, partial),
        "summary": summary,
        "requirements": rows,
    }


def result(summary: dict[str, int], partial: bool) -> str:
    """``not conformant`` when a requirement FAILs; ``incomplete`` when one could not be
    judged (ERROR) or the run was partial; else ``conformant``."""
    if summary["FAIL"]:
        return "not conformant"
    if summary["ERROR"] or partial:
        return "incomplete"
    return "conformant"


def summary(runtime: Runtime) -> list[str]:
    """What the statement says that needs reading, for the end of the terminal output: the
    target, each FAIL and WARN with why, the ERRORs by their reason, and the run's note."""
    lines = [f"target: {runtime.target_label}"]
    errors: dict[str, list[str]] = {}
    for row in requirement_rows(runtime):
        if row["verdict"] in ("FAIL", "WARN"):
            lines.append(f"{row['verdict']:5} {row['id']}: {row['explanation']}")
        elif row["verdict"] == "ERROR":
            errors.setdefault(row["explanation"], []).append(row["id"])
    lines += [f"ERROR {', '.join(ids)}: {explanation}" for explanation, ids in errors.items()]
    if runtime.note:
        lines.append(runtime.note)
    return lines


def result_line(path: Path) -> str:
    """The last line of a run: its result, the counts of its verdicts, its statement."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return f"AOI conformance: no statement ({e})"
    counts = ", ".join(f"{n} {v}" for v, n in document["summary"].items() if n)
    partial = "" if document["run"]["complete"] else " (partial run)"
    where = path.with_suffix(".html")
    return f"AOI conformance: {document['result']}{partial}: {counts} - {where}"


def _endpoints(runtime: Runtime) -> dict[str, str]:
    return {p: e.aoi2 for p, e in sorted(runtime.ixit.endpoints.items())}


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_reports(runtime: Runtime) -> dict[str, Any]:
    document = statement(runtime)
    out = runtime.reports_dir
    out.mkdir(parents=True, exist_ok=True)
    (out / "conformance.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    (out / "conformance.html").write_text(render_html(document), encoding="utf-8")
    return document


_COLOURS = {
    "PASS": "#2e7d32",
    "FAIL": "#c62828",
    "WARN": "#ef6c00",
    "N/A": "#757575",
    "ERROR": "#6a1b9a",
    "BLOCKED": "#6a1b9a",
}


def _badge(verdict: str) -> str:
    colour = _COLOURS.get(verdict, "#000")
    return f'<span class="v" style="background:{colour}">{html.escape(verdict)}</span>'


def _scenarios_html(scenarios: list[dict[str, Any]], only_bad: bool = False) -> str:
    e = html.escape
    return "".join(
        f"<li>{_badge(s['verdict'])} {e(s['name'])}"
        + (f" <small>{e(s['explanation'])}</small>" if s["verdict"] != "PASS" else "")
        + (f' <a href="{e(s["wirelog"])}">wire log</a>' if s["wirelog"] else "")
        + "</li>"
        for s in scenarios
        if not only_bad or s["verdict"] not in ("PASS", "N/A")
    )


def _findings_html(document: dict[str, Any]) -> str:
    """What needs reading first: each FAIL, ERROR and WARN, why, and its scenarios."""
    e = html.escape
    order = ("FAIL", "ERROR", "WARN")
    found = sorted(
        (r for r in document["requirements"] if r["verdict"] in order),
        key=lambda r: order.index(r["verdict"]),
    )
    if not found:
        return "<p>No requirement FAILs, is in ERROR or WARNs.</p>"
    items = "".join(
        f'<li>{_badge(r["verdict"])} <a href="#{e(r["id"])}">{e(r["id"])}</a> '
        f"({e(r['level'])}) {e(r['text'])}<br><strong>{e(r['explanation'])}</strong>"
        f"<ul>{_scenarios_html(r['scenarios'], only_bad=True)}</ul></li>"
        for r in found
    )
    return f"<h2>Failures, errors and warnings</h2><ol>{items}</ol>"


def render_html(document: dict[str, Any]) -> str:
    e = html.escape
    suite, target, ics, run = (document[k] for k in ("suite", "target", "ics", "run"))
    rows = []
    for row in document["requirements"]:
        scenarios = _scenarios_html(row["scenarios"])
        detail = f"<ul>{scenarios}</ul>" if scenarios else f"<em>{e(row['explanation'])}</em>"
        rows.append(
            f'<tr id="{e(row["id"])}"><td><a href="#{e(row["id"])}">{e(row["id"])}</a></td>'
            f"<td>{e(row['level'])}{' (' + e(row['feature']) + ')' if row['feature'] else ''}</td>"
            f"<td>{e('/'.join(row['roles']))}</td><td>{_badge(row['verdict'])}</td>"
            f"<td>{e(row['text'])}<br>{detail}</td></tr>"
        )
    summary = " ".join(f"{_badge(k)} {v}" for k, v in document["summary"].items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>AOI conformance statement: {e(target["label"])}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222 }}
table {{ border-collapse: collapse; width: 100% }}
td, th {{ border-bottom: 1px solid #ddd; padding: .4em; vertical-align: top; text-align: left }}
.v {{ color: #fff; border-radius: 3px; padding: 0 .4em; font-weight: 600; font-size: 12px }}
tr:target {{ background: #fff8e1 }} ul, ol {{ margin: .3em 0; padding-left: 1.2em }}
ol > li {{ margin-bottom: .6em }}
code {{ font-size: 12px }}
</style></head><body>
<h1>AOI conformance statement</h1>
<p><strong>Result: {e(document["result"])}</strong> &mdash; {summary}</p>
{_findings_html(document)}
<h2>Target and run</h2>
<table>
<tr><th>Target</th><td>{e(target["label"])} ({e(target["mode"])})</td></tr>
<tr><th>ICS</th><td>{e(ics["implementation"] or "-")} {e(ics["version"])}
 by {e(ics["vendor"] or "-")}; roles {e(", ".join(ics["roles"]))};
 optional features {e(", ".join(ics["features"]) or "none")}</td></tr>
<tr><th>Suite</th><td>{e(suite["name"])} {e(suite["version"])}; sha256 of features + schemas
 <code>{e(suite["sha256"]["features+schemas"])}</code></td></tr>
<tr><th>Run</th><td>{e(run["started"])} to {e(run["finished"])};
 timeout scale {run["timeout_scale"]};
 {"complete" if run["complete"] else "partial"}</td></tr>
</table>
<h2>Requirements</h2>
<table><tr><th>ID</th><th>Level</th><th>Role</th><th>Verdict</th>
<th>Requirement and scenarios</th></tr>
{"".join(rows)}
</table></body></html>
"""
