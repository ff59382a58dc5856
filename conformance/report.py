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

from conformance.registry import FEATURES_DIR, ROOT, load_scenarios, scenarios_by_requirement
from conformance.verdicts import SEVERITY, Verdict, combine

if TYPE_CHECKING:
    from conformance.runtime import Runtime

SCHEMAS_DIR = ROOT / "schemas"


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
        version = metadata.version("aoi-kit")
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
    failing = summary["FAIL"] + summary["ERROR"]
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
        "result": "not conformant" if failing else "incomplete" if partial else "conformant",
        "summary": summary,
        "requirements": rows,
    }


def _endpoints(runtime: Runtime) -> dict[str, str]:
    instances = getattr(runtime.targets, "instances", None)
    if instances is not None:
        return {
            p: i.endpoint.aoi2
            for p, i in sorted(instances.items())
            if i.endpoint and i.endpoint.aoi2
        }
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


def render_html(document: dict[str, Any]) -> str:
    e = html.escape
    suite, target, ics, run = (document[k] for k in ("suite", "target", "ics", "run"))
    rows = []
    for row in document["requirements"]:
        scenarios = "".join(
            f"<li>{_badge(s['verdict'])} {e(s['name'])}"
            + (f" <small>{e(s['explanation'])}</small>" if s["verdict"] != "PASS" else "")
            + (f' <a href="{e(s["wirelog"])}">wire log</a>' if s["wirelog"] else "")
            + "</li>"
            for s in row["scenarios"]
        )
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
tr:target {{ background: #fff8e1 }} ul {{ margin: .3em 0; padding-left: 1.2em }}
code {{ font-size: 12px }}
</style></head><body>
<h1>AOI conformance statement</h1>
<p><strong>Result: {e(document["result"])}</strong> &mdash; {summary}</p>
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
