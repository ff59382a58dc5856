"""pytest plugin of the AOI conformance suite (entry point ``aoi_conformance``).

It is loaded by every pytest run of the environment, so it only adds its options unless
the run is the suite's: ``pytest conformance`` (or a path inside it), ``pytest --pyargs
conformance`` (the suite installed from its wheel), or ``--target`` / ``--ixit`` /
``--target-client`` given. Then it checks the IXIT (every problem in one usage error),
decides the targets, registers the step definitions and the
:class:`~conformance.runtime.Runtime`, and sets the report defaults under ``reports/``.
Nothing is started before the first scenario: the runtime's preflight does it.
"""

from __future__ import annotations

import importlib
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conformance.runtime import Runtime

PACKAGE_DIR = Path(__file__).resolve().parent
STEP_MODULES = (
    "conformance.fixtures",
    "conformance.steps.sessions",
    "conformance.steps.tokens",
    "conformance.steps.handshake",
    "conformance.steps.notifications",
    "conformance.steps.pushes",
    "conformance.steps.delivery_reports",
    "conformance.steps.batches",
    "conformance.steps.overload",
    "conformance.steps.malformed",
    "conformance.steps.security",
    "conformance.steps.restart",
    "conformance.steps.takeover",
    "conformance.steps.client_setup",
    "conformance.steps.client_apps",
    "conformance.steps.client_app_notices",
    "conformance.steps.client_aoi1",
    "conformance.steps.client_servers",
    "conformance.steps.client_messages",
    "conformance.steps.client_connections",
    "conformance.steps.client_timing",
)
NO_TARGET = (
    "no target, and the reference implementation (aoi-kit) is not installed to certify "
    "instead: give --target ws://HOST:PORT/aoi --ixit FILE (an AOI Server) or "
    '--target-client "COMMAND" (an AOI Client)'
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("aoi", "AOI conformance")
    group.addoption("--target", help="AOI-2 URL of the AOI Server under test (ws:// or wss://)")
    group.addoption("--target-http", help="AOI-3 base URL of the target (default: from --target)")
    group.addoption("--target-client", help="command that starts the AOI Client under test")
    group.addoption("--ixit", help="IXIT/ICS file (TOML) describing the target")
    group.addoption(
        "--requirement",
        action="append",
        default=[],
        help="run only the scenarios that prove this requirement ID (repeatable)",
    )
    # ``--feature NAME`` (run only features/NAME.feature, repeatable) is pytest-bdd's own
    # option, which pytest-bdd reads only with --generate-missing: the suite filters by it
    # and refuses a name that is no feature (conformance.runtime).
    group.addoption(
        "--timeout-scale", type=float, default=None, help="multiply every timeout (default 1)"
    )
    group.addoption("--reports-dir", default=None, help="where reports go (default: reports/)")


def is_active(config: pytest.Config) -> bool:
    """Whether this run is the conformance suite's: a target option, or a test path (or,
    with ``--pyargs``, a module name) inside the suite's package."""
    if any(config.getoption(o) for o in ("--target", "--ixit", "--target-client")):
        return True
    base = config.invocation_params.dir
    for arg in config.args:
        where = arg.split("::", 1)[0]
        if config.option.pyargs and where.split(".", 1)[0] == PACKAGE_DIR.name:
            return True
        path = (base / where).resolve()
        if path == PACKAGE_DIR or PACKAGE_DIR in path.parents:
            return True
    return False


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    if not is_active(config):
        return
    from conformance import allure_results, bundle
    from conformance.options import check_options, check_reports_dir
    from conformance.registry import OTHER_TAGS, load_registry
    from conformance.runtime import RUNTIME_NAME

    registry = load_registry()
    for req in registry.requirements.values():
        config.addinivalue_line(
            "markers", f"{req.id}: {req.level} [{'/'.join(req.roles)}] {req.text}"
        )
    for tag, meaning in OTHER_TAGS.items():
        config.addinivalue_line("markers", f"{tag}: {meaning}")

    check_options(config, registry)
    reports = Path(config.getoption("--reports-dir") or config.rootpath / "reports").resolve()
    runtime = _runtime(config, registry, reports)  # a usage error stops here: nothing moved
    if not config.option.collectonly:  # a collection writes nothing
        check_reports_dir(reports)
        runtime.note = bundle.prepare(reports, partial=bundle.is_partial(config))
        # Defaults read by junitxml and allure-pytest-bdd in their own pytest_configure,
        # which run after this one (tryfirst).
        if not getattr(config.option, "xmlpath", None):
            config.option.xmlpath = str(reports / "junit.xml")
        if hasattr(config.option, "allure_report_dir") and not config.option.allure_report_dir:
            config.option.allure_report_dir = str(reports / "allure-results")
            config.option.clean_alluredir = True
    # Tracebacks are the suite's, not the target's: the verdicts and the wire logs explain
    # a run (--tb=short shows them again).
    if config.option.tbstyle == "auto":
        config.option.tbstyle = "no"
    if not any(a.startswith("-r") for a in config.invocation_params.args):
        config.option.reportchars = ""  # the run's own summary lists what failed, and why
    allure_results.register(config)
    config.pluginmanager.register(runtime, RUNTIME_NAME)
    # Registered as imported, not through ``import_plugin``: that one marks each module
    # for assertion rewriting and fails (a PytestAssertRewriteWarning, an error under
    # ``filterwarnings = error``) when an earlier step module imported it already. Steps
    # judge through ``world.check``; their few bare ``assert`` guard the suite's own
    # invariants and need no rewritten message.
    for name in STEP_MODULES:
        config.pluginmanager.register(importlib.import_module(name), name)


def _runtime(config: pytest.Config, registry: object, reports: Path) -> Runtime:
    """The run's :class:`~conformance.runtime.Runtime`: its targets from the options and
    the IXIT; a mistake in either is a usage error that says what to fix."""
    from conformance.client_target import ClientMode, generated_identity, parse_client_target
    from conformance.embedded import LABEL, EmbeddedReference, reference_installed
    from conformance.ixit import Ics, Ixit, IxitError, load_document, parse_ixit
    from conformance.ixit_check import problems
    from conformance.runtime import Runtime
    from conformance.targets import ExternalTargets, NoServer

    target = config.getoption("--target")
    ixit_path = config.getoption("--ixit")
    command = config.getoption("--target-client")
    scale = config.getoption("--timeout-scale")
    if ixit_path is None and target is None and command is None:
        if not config.option.collectonly and not reference_installed():
            raise pytest.UsageError(NO_TARGET)
        embedded = EmbeddedReference(reports / "embedded", timeout_scale=scale or 1.0)
        return Runtime(
            config=config,
            registry=registry,  # type: ignore[arg-type]
            ixit=embedded.ixit,
            targets=embedded,
            mode="embedded",
            target_label=LABEL,
            timeout_scale=scale or 1.0,
            reports_dir=reports,
        )
    where = f"IXIT {ixit_path}" if ixit_path else "the command line"
    try:
        document: dict[str, object] = {}
        if ixit_path is not None:
            document = load_document(Path(ixit_path))
            found = problems(document, server=_judges_server(document, target, command))
            if found:  # every mistake at once, those of the file and what the run needs
                raise IxitError(found)
            ixit = parse_ixit(document, Path(ixit_path).resolve().parent)
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
        client_target = parse_client_target(document, command, generated_identity())
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
        raise pytest.UsageError(f"{where}: {e}") from None
    scale = scale or ixit.timeout_scale
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
        client=ClientMode(client_target, reports / "clients") if client_target else None,
    )


def _judges_server(document: dict[str, object], target: str | None, command: str | None) -> bool:
    """Whether a run with this (unchecked) IXIT judges an AOI Server: role S in its ICS
    (the default), and a server to judge unless the run is a client's."""
    ics, main, client = (document.get(t) for t in ("ics", "target", "client"))
    roles = ics.get("roles", ["S"]) if isinstance(ics, dict) else ["S"]
    has_main = bool(target) or (isinstance(main, dict) and bool(main.get("aoi2")))
    has_client = bool(command) or (isinstance(client, dict) and bool(client.get("command")))
    return isinstance(roles, list) and "S" in roles and (has_main or not has_client)
