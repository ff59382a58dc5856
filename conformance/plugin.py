"""pytest plugin of the AOI conformance suite (entry point ``aoi_conformance``).

It is loaded by every pytest run of the project, so it only adds its options unless the
run is the suite's: ``pytest conformance`` (or a path inside it), or ``--target`` /
``--ixit`` given. Then it loads the registry and the IXIT, starts nothing yet (the
embedded reference starts on first use), registers the step definitions and the
:class:`~conformance.runtime.Runtime`, and sets the report defaults under ``reports/``.
"""

from __future__ import annotations

import importlib
import shutil
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parent
STEP_MODULES = (
    "conformance.fixtures",
    "conformance.steps.sessions",
    "conformance.steps.handshake",
    "conformance.steps.notifications",
    "conformance.steps.pushes",
    "conformance.steps.overload",
    "conformance.steps.malformed",
    "conformance.steps.security",
    "conformance.steps.restart",
    "conformance.steps.client_setup",
    "conformance.steps.client_apps",
    "conformance.steps.client_servers",
    "conformance.steps.client_timing",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("aoi", "AOI conformance")
    group.addoption("--target", help="AOI-2 URL of the AOI Server under test (ws:// or wss://)")
    group.addoption("--target-http", help="AOI-3 base URL of the target (default: from --target)")
    group.addoption("--target-client", help="command that starts the AOI Client under test")
    group.addoption("--ixit", help="IXIT/ICS file (TOML) describing the target")
    group.addoption(
        "--requirement", action="append", default=[], help="run only scenarios proving this ID"
    )
    # ``--feature NAME`` (run only features/NAME.feature) is pytest-bdd's own option, which
    # pytest-bdd reads only with --generate-missing; the suite filters by it otherwise.
    group.addoption(
        "--timeout-scale", type=float, default=None, help="multiply every timeout (default 1)"
    )
    group.addoption("--reports-dir", default=None, help="where reports go (default: reports/)")


def is_active(config: pytest.Config) -> bool:
    """Whether this run is the conformance suite's."""
    if any(config.getoption(o) for o in ("--target", "--ixit", "--target-client")):
        return True
    base = config.invocation_params.dir
    for arg in config.invocation_params.args:
        if arg.startswith("-"):
            continue
        path = (base / arg.split("::", 1)[0]).resolve()
        if path == PACKAGE_DIR or PACKAGE_DIR in path.parents:
            return True
    return False


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    if not is_active(config):
        return
    reports = Path(config.getoption("--reports-dir") or config.rootpath / "reports").resolve()
    reports.mkdir(parents=True, exist_ok=True)
    if not config.option.collectonly:  # what an earlier run left would mix with this one's
        for stale in ("wire", "embedded", "clients"):
            shutil.rmtree(reports / stale, ignore_errors=True)
    # Defaults read by junitxml and allure-pytest-bdd in their own pytest_configure,
    # which run after this one (tryfirst).
    if not getattr(config.option, "xmlpath", None):
        config.option.xmlpath = str(reports / "junit.xml")
    if hasattr(config.option, "allure_report_dir") and not config.option.allure_report_dir:
        config.option.allure_report_dir = str(reports / "allure-results")
        config.option.clean_alluredir = True

    from conformance.registry import load_registry
    from conformance.runtime import DISRUPTIVE, RUNTIME_NAME

    registry = load_registry()
    for req in registry.requirements.values():
        config.addinivalue_line(
            "markers", f"{req.id}: {req.level} [{'/'.join(req.roles)}] {req.text}"
        )
    config.addinivalue_line("markers", f"{DISRUPTIVE}: leaves the target changed; runs last")

    runtime = _runtime(config, registry, reports)
    config.pluginmanager.register(runtime, RUNTIME_NAME)
    # Registered as imported, not through ``import_plugin``: that one marks each module
    # for assertion rewriting and fails (a PytestAssertRewriteWarning, an error under
    # ``filterwarnings = error``) when an earlier step module imported it already. Steps
    # judge through ``world.check``; their few bare ``assert`` guard the suite's own
    # invariants and need no rewritten message.
    for name in STEP_MODULES:
        config.pluginmanager.register(importlib.import_module(name), name)


def _runtime(config: pytest.Config, registry: object, reports: Path) -> object:
    import secrets
    import tomllib
    from dataclasses import replace

    from conformance.client_target import ClientMode, parse_client_target
    from conformance.embedded import EmbeddedReference, embedded_client, embedded_ixit
    from conformance.ixit import Ics, Ixit, IxitError, load_ixit
    from conformance.runtime import Runtime
    from conformance.targets import ExternalTargets, NoServer

    target = config.getoption("--target")
    ixit_path = config.getoption("--ixit")
    command = config.getoption("--target-client")
    clients_dir = reports / "clients"
    try:
        if ixit_path is None and target is None and command is None:
            ixit = embedded_ixit()
            scale = config.getoption("--timeout-scale") or ixit.timeout_scale
            return Runtime(
                config=config,
                registry=registry,  # type: ignore[arg-type]
                ixit=ixit,
                targets=EmbeddedReference(ixit, reports / "embedded", timeout_scale=scale),
                mode="embedded",
                target_label="embedded reference AOI Server and AOI Client "
                "(python -m aoi server, python -m aoi client)",
                timeout_scale=scale,
                reports_dir=reports,
                client=embedded_client(clients_dir),
            )
        document: dict[str, object] = {}
        if ixit_path is not None:
            ixit = load_ixit(Path(ixit_path))
            document = tomllib.loads(Path(ixit_path).read_text(encoding="utf-8"))
        elif target is not None:
            raise IxitError("--target needs --ixit: the suite needs test credentials")
        else:  # --target-client alone: nothing to know but the command
            ixit = Ixit(
                ics=Ics(implementation="AOI Client under test", roles=frozenset({"C"})),
                endpoints={},
                clients={},
                server_apps={},
            )
        if target:
            ixit = ixit.with_target(target, config.getoption("--target-http"))
        generated = (f"conformance-dut-{secrets.token_hex(4)}", "k" + secrets.token_urlsafe(18))
        client_target = parse_client_target(document, command, generated)
        roles = set(ixit.ics.roles)
        if client_target is not None:
            roles.add("C")
        else:
            roles.discard("C")
        if client_target is None or "main" in ixit.endpoints:
            ixit.endpoint("main")  # raises when the IXIT names no server either
        else:
            roles.discard("S")
        if not roles:
            raise IxitError("[ics] roles names no role that this run has a target for")
        ixit = replace(ixit, ics=replace(ixit.ics, roles=frozenset(roles)))
    except IxitError as e:
        raise pytest.UsageError(f"IXIT: {e}") from e
    scale = config.getoption("--timeout-scale") or ixit.timeout_scale
    has_server = "S" in ixit.ics.roles
    labels = [ixit.endpoint("main").aoi2] if has_server else []
    if client_target is not None:
        labels.append(f"AOI Client: {client_target.label}")
    return Runtime(
        config=config,
        registry=registry,  # type: ignore[arg-type]
        ixit=ixit,
        targets=ExternalTargets(ixit, timeout_scale=scale) if has_server else NoServer(),
        mode="+".join(m for m, on in (("server", has_server), ("client", client_target)) if on),
        target_label="; ".join(labels),
        timeout_scale=scale,
        reports_dir=reports,
        client=ClientMode(client_target, clients_dir) if client_target is not None else None,
    )
