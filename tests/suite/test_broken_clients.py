"""Broken AOI Clients: the suite FAILs exactly the requirements a fault breaks, PASSes the rest.

Each variant is the reference AOI Client with ONE fault injected by
``tests/suite/broken_clients/run.py`` (the faults: ``tests/suite/broken_clients/faults.py``),
certified in client mode (``--target-client``) by the features where the fault could show,
in a subprocess. The requirements each fault must FAIL (or, for a SHOULD, WARN) are declared
here, with why; every other requirement those features judge must PASS. Blocked ones are
declared too: a requirement whose scenario the fault stops before it can be judged is
ERROR ("not certified"), by design.

Variants run two at a time in the background (a run mostly waits for the client's timers),
started by the first test that needs one.
"""

from __future__ import annotations

import shlex
import sys
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conformance.registry import load_registry

from tests.suite.broken_clients.faults import FAULTS
from tests.suite.harness import BrokenRun, broken_runs_in_background, judged_by, run_suite

RUN = Path(__file__).resolve().parent / "broken_clients" / "run.py"
PARALLEL = 4
REALLOCATION = ("client_reallocation",)


@dataclass(frozen=True)
class Variant:
    fault: str
    features: tuple[str, ...]  # the feature files run against it (client mode)
    fails: Mapping[str, str]  # requirement -> how the fault breaks it
    warns: Mapping[str, str] = field(default_factory=dict)  # SHOULDs it breaks
    # requirement -> why a scenario of it cannot be judged with the fault (ERROR, by design)
    blocked: Mapping[str, str] = field(default_factory=dict)
    # only the scenarios of these requirements (--requirement), when given
    requirements: tuple[str, ...] = ()


VARIANTS = (
    Variant(
        "never_fails_over",
        REALLOCATION,
        fails={
            "AOI-OLC-005": "refused for overload or redirected by a, it never tries b",
            "AOI-HLF-002": "app one is never served by c, the server the policy allows next",
            "AOI-HLF-003": "with next_server the app is told to go direct instead of moved",
        },
        blocked={
            "AOI-OLC-008": "its scenario first needs the move to b (OLC-005), which never comes",
            "AOI-OLC-011": "its scenario needs the app served by b first: it never gets there",
        },
    ),
    Variant(
        "fails_over_on_bad_credentials",
        REALLOCATION,
        fails={"AOI-OLC-009": "after invalid_credentials or forbidden from a it connects to b"},
    ),
    Variant(  # no FAIL for an event that never happened: a never refused, b never left
        "reverses_policy_order",
        REALLOCATION,
        fails={},
        blocked={
            "AOI-OLC-009": "server a, whose credential refusal the scenario is about, is "
            "never contacted: the client is welcomed by b first"
        },
        requirements=("AOI-OLC-009",),
    ),
    Variant(
        "ignores_retry_after",
        REALLOCATION,
        fails={"AOI-OLC-006": "it says hello again 0.1 s after a reject with retry_after_s 1"},
    ),
    Variant(
        "never_tells_app",
        REALLOCATION,
        fails={
            "AOI-HLF-003": "with fail_to_app the app is never told connection_failed",
            "AOI-OLC-007": "apps one and two are never told connection_failed{fallback: direct}",
            "AOI-OLC-009": "a credential refusal never reaches the app as connection_failed",
        },
        blocked={
            "AOI-OLC-012": "retries after the app was told connection_failed: it never is "
            "told (AOI-OLC-007 fails that), so what follows is not judged",
        },
    ),
    Variant(
        "no_registration_changed",
        REALLOCATION,
        fails={"AOI-OLC-008": "moved from a to b, apps one and two are never told their new token"},
        warns={"AOI-OLC-011": "back on its preferred server, the app is not told so"},
    ),
    Variant(
        "delivers_duplicates",
        ("client_delivery", "client_app_interface", "client_registration"),
        fails={
            "AOI-DEL-003": "'only once', delivered again after a reconnection, reaches the "
            "app twice instead of being acked to the server at once"
        },
    ),
    Variant(
        "no_jitter",
        REALLOCATION,
        fails={
            "AOI-OLC-006": "after each redirect it comes back after exactly initial_ms",
            "AOI-CON-002": "after each loss it reconnects after exactly initial_ms",
        },
    ),
    Variant(
        "no_backoff",
        REALLOCATION,
        fails={
            "AOI-OLC-006": "hellos to a refusing server keep coming every 10-20 ms",
            "AOI-CON-002": "attempts to an unreachable server keep coming every 10-20 ms",
        },
    ),
    Variant(
        "root_path_only",
        ("client_registration",),
        fails={"AOI-APP-001": "app one connecting on /apps/one?v=2 is refused: only / is served"},
    ),
    Variant(
        "resumes_after_4409",
        REALLOCATION,
        fails={
            "AOI-CON-005": "after server a closed its connection with 4409, its next hello "
            "there carries the session of that connection"
        },
        requirements=("AOI-CON-005",),
    ),
    Variant(  # no FAIL for an event that never happened: it never says hello again
        "stays_away_after_4409",
        REALLOCATION,
        fails={},
        blocked={"AOI-CON-005": "no hello to server a follows its close 4409: nothing to judge"},
        requirements=("AOI-CON-005",),
    ),
    Variant(
        "dies_on_garbage",
        ("client_malformed",),
        fails={
            "AOI-GEN-005": "garbage from server a (frames, or an answer to the upgrade "
            "that is not HTTP) makes the client exit: app two gets no answer"
        },
    ),
)


def test_every_fault_has_a_variant_and_says_what_it_breaks() -> None:
    assert sorted(v.fault for v in VARIANTS) == sorted(FAULTS)
    registry = load_registry()
    for name, patch in FAULTS.items():
        assert patch.__doc__ and len(patch.__doc__.split()) > 20, name
    for variant in VARIANTS:
        judged = judged_by(variant.features)
        for req in (*variant.fails, *variant.warns, *variant.blocked):
            assert req in registry.requirements, (variant.fault, req)
            assert "C" in registry[req].roles, (variant.fault, req)
            assert req in judged, (variant.fault, req, "not judged by its features")
        for req in variant.warns:
            assert registry[req].level.value == "SHOULD", (variant.fault, req)
        assert variant.fails or variant.blocked, variant.fault


def certify_broken(variant: Variant, workdir: Path) -> BrokenRun:
    """Certify the reference client with ``variant``'s fault, in client mode."""
    started = time.monotonic()
    config = workdir / "client.toml"
    config.write_text("[client]\nwelcome_timeout_s = 2\n", encoding="utf-8")
    ixit = workdir / "ixit.toml"
    ixit.write_text(
        f'[ics]\nimplementation = "reference client with {variant.fault}"\nroles = ["C"]\n'
        'features = ["multi_server"]\n\n[client]\nwelcome_timeout_s = 2\n',
        encoding="utf-8",
    )
    command = (
        shlex.join([sys.executable, str(RUN), variant.fault])
        + (
            " --provisioning-url {provisioning_url} --provisioning-url {provisioning_url_2}"
            " --app-port {app_port} --state-dir {state_dir} --client-id {client_id}"
            " --credential {credential} --ca-file {ca_file} --config "
        )
        + shlex.quote(str(config))
    )
    features = [a for f in variant.features for a in ("--feature", f)]
    features += [a for r in variant.requirements for a in ("--requirement", r)]
    run = run_suite(workdir / "reports", "--ixit", str(ixit), "--target-client", command, *features)
    return BrokenRun(run, round(time.monotonic() - started, 1), workdir)


@pytest.fixture(scope="module")
def broken_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Future[BrokenRun]]]:
    """The runs of the variants selected, PARALLEL at a time, in the background."""
    with broken_runs_in_background(request, tmp_path_factory, certify_broken, PARALLEL) as runs:
        yield runs


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.fault)
def test_the_suite_fails_exactly_what_the_fault_breaks(
    variant: Variant, broken_runs: dict[str, Future[BrokenRun]]
) -> None:
    broken_runs[variant.fault].result().assert_judged(
        variant.fault,
        "C",
        variant.fails,
        variant.blocked,
        variant.warns,
        judged=set(variant.requirements) or judged_by(variant.features),
    )
