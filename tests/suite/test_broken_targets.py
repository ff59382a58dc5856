"""Broken targets: the suite FAILs exactly the requirements a fault breaks, PASSes the rest.

Each variant is the reference server with ONE fault injected by
``tests/suite/broken/serve.py`` (the faults: ``tests/suite/broken/faults.py``), started for
every profile of the embedded run (the same configurations and the same IXIT: overload by
``max_sessions``, shedding, TLS, ...) and certified by the whole suite in server mode, in a
subprocess. The requirements each fault must FAIL are declared here, with why; every other
requirement the ICS makes applicable must PASS, the rest (role C) be N/A (an honest variant,
"not a fault", declares no FAIL: what it does is allowed). Blocked ones are
declared too: a requirement whose scenario the fault stops before it can judge it is ERROR
("not certified"), by design.

The variants run two at a time in the background, started by the first test that needs
one; their servers (seven per variant, one per profile) are forked by one fork server that
imported the reference once. The module takes about half the sum of its runs.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from conformance.ixit import load_ixit, render_ixit
from conformance.registry import load_registry

from aoi.lab.plan import FAILED_HELLO_LIMIT
from tests.suite.broken.faults import FAULTS, SOURCE_FACTOR
from tests.suite.harness import (
    BrokenRun,
    broken_runs_in_background,
    judged_by,
    run_suite,
    target,
)

SERVE = Path(__file__).resolve().parent / "broken" / "serve.py"
PROFILES = ("main", "overload", "shedding", "tls", "hello_limit", "restart", "push_overload")
OVERLOAD_PROFILES = ("main", "overload", "push_overload")
PARALLEL = 3  # suite runs at a time: a run mostly waits (keepalive, TTLs, timeouts)


@dataclass(frozen=True)
class Variant:
    fault: str
    fails: Mapping[str, str]  # requirement -> how the fault breaks it
    # requirement -> why a scenario of it cannot be judged with the fault (ERROR, by design)
    blocked: Mapping[str, str] = field(default_factory=dict)
    # the feature files run against it; all of them by default
    features: tuple[str, ...] = ()
    # the profiles started for a run of a few feature files (the main one by default)
    profiles: tuple[str, ...] = ("main",)
    # what the IXIT declares otherwise than the lab's (Ixit field -> value)
    ixit: Mapping[str, Any] = field(default_factory=dict)


VARIANTS = (
    Variant(
        "accepts_overloaded",
        fails={"AOI-OLC-002": "a full server welcomes client C instead of reject{overloaded}"},
        blocked={"AOI-OLC-003": "its only scenario judges the overload reject, which never comes"},
    ),
    Variant(
        "overloaded_as_invalid_credentials",
        fails={"AOI-OLC-002": "a full server refuses valid client C as invalid_credentials, 4001"},
        blocked={"AOI-OLC-003": "its only scenario needs an overload reject, C gets another one"},
    ),
    Variant(
        "welcomes_wrong_credential_when_overloaded",
        fails={"AOI-OLC-002": "a full server welcomes client C, whose credential is wrong"},
        features=("overload",),
        profiles=OVERLOAD_PROFILES,
    ),
    Variant(  # honest: refusing for load before the credential check is allowed
        "refuses_load_before_credentials",
        fails={},
        features=("overload",),
        profiles=OVERLOAD_PROFILES,
    ),
    Variant(
        "drops_under_overload",
        fails={"AOI-OLC-004": "pushes to held client A answered 201 while full never reach it"},
    ),
    Variant(
        "short_tokens",
        fails={
            "AOI-APP-002": "tokens of 64 bits (11 characters) are below the 128 required",
            "AOI-GEN-002": "registered and notify carry tokens that schemas/ refuses (22+ chars)",
            "AOI-GEN-001": "the whole path delivers a notify that is not valid AOI-2 (its token)",
            "AOI-APP-003": "the server's own schema check refuses unregister with its 11-char "
            "token (invalid_message): the app cannot unregister",
        },
    ),
    Variant(
        "reused_tokens",
        fails={"AOI-APP-002": "clients A and B get the same tokens for apps one and two"},
        blocked={
            "AOI-DEL-002": "B's marker, pushed to the token B shares with A, reaches A: the "
            "scenario stops at a precondition before it judges what B received",
        },
    ),
    Variant(
        "derived_tokens",
        fails={"AOI-APP-002": "registered again after unregistering, app one gets its old token"},
        blocked={
            "AOI-APP-003": "the 410 for the unregistered token is judged after the new token, "
            "which is the old one: the scenario stops at that FAIL",
        },
        features=("registration",),
    ),
    Variant(
        "counted_tokens",
        fails={"AOI-APP-002": "tokens differ only in a counter after a fixed prefix"},
        features=("registration",),
    ),
    Variant(
        "strict_members",
        fails={"AOI-GEN-002": "a ping with a member of a later version gets invalid_message"},
        features=("malformed",),
    ),
    Variant(
        "never_expires",
        fails={"AOI-DEL-004": "a notification past its TTL (0 s, 1 s) never reports expired"},
    ),
    Variant(
        "wrong_app",
        fails={
            "AOI-DEL-002": "'for A and one' reaches client A for app two, not one",
            "AOI-GEN-001": "A keeps app two from the DEL-002 scenario (server state carries "
            "over): 'end to end' for app one arrives for app two, not as pushed",
        },
    ),
    Variant(
        "ignores_acks",
        fails={
            "AOI-DEL-003": "an unacked notification is not redelivered on resumption",
            "AOI-DEL-005": "an acked notification never reports delivered: acks are ignored",
            "AOI-GEN-001": "the whole path ends with a report that says delivered: never",
        },
        blocked={
            "AOI-DEL-011": "'a delivered notification cannot be cancelled' needs a report "
            "that says delivered first, which never comes",
        },
    ),
    Variant(
        "cross_app_push",
        fails={"AOI-SEC-001": "server app 'other' pushes to a token of app one: 201, not 403"},
    ),
    Variant(
        "hangs_on_malformed_upgrade",
        fails={
            "AOI-GEN-005": "after answering an upgrade without Sec-WebSocket-Version with 400, "
            "the server waits for that connection to end: newcomer A gets no upgrade meanwhile",
        },
        features=("malformed",),
    ),
    Variant(
        "exits_on_malformed_upgrade",
        fails={
            "AOI-GEN-005": "the server exits after answering an upgrade without "
            "Sec-WebSocket-Version: client B's session is cut, newcomer A finds no server",
        },
        blocked={
            "AOI-GEN-006": "the hostile requests of the scenarios after that one find no "
            "server: their answers cannot be judged",
            "AOI-GEN-007": "the slow requests find no server either: no deadline to judge",
        },
        features=("malformed",),
    ),
    Variant(
        "no_source_limit",
        fails={
            "AOI-SEC-003": "unknown clients failing hellos from one address are never "
            "refused rate_limited, the stranger after them neither"
        },
        features=("rate_limit",),
        profiles=("main", "hello_limit"),
    ),
    Variant(  # honest: a per-source limit of its own, declared in the IXIT
        "source_limit_above_client_limit",
        fails={},
        features=("rate_limit",),
        profiles=("main", "hello_limit"),
        ixit={"failed_hello_source_limit": FAILED_HELLO_LIMIT * SOURCE_FACTOR},
    ),
    Variant(
        "keeps_taken_over_connection",
        fails={"AOI-CON-004": "the connection whose session is resumed elsewhere stays open"},
        features=("hello",),
    ),
    Variant(
        "takes_over_with_1000",
        fails={"AOI-CON-004": "the connection whose session is resumed elsewhere closes 1000"},
        features=("hello",),
    ),
    Variant(
        "no_request_deadlines",
        fails={
            "AOI-GEN-007": "half a request head, or a push head and half its body, get "
            "neither 408 nor a close within the deadline of 1 s and the grace of 3 s",
        },
        features=("malformed",),
    ),
    Variant(
        "batch_refused_whole",
        fails={
            "AOI-DEL-012": "a batch with bad notifications between 'good 1' and 'good 2' is "
            "answered 400 as a whole, and a batch of 501 with 400 rather than 413",
        },
        features=("batch",),
    ),
)


def test_every_fault_has_a_variant_and_says_what_it_breaks() -> None:
    assert sorted(v.fault for v in VARIANTS) == sorted(FAULTS)
    registry = load_registry()
    for name, patch in FAULTS.items():
        assert patch.__doc__ and len(patch.__doc__.split()) > 20, name
    for variant in VARIANTS:
        for req in (*variant.fails, *variant.blocked):
            assert req in registry.requirements, (variant.fault, req)
            assert "S" in registry[req].roles, (variant.fault, req)
        honest = (FAULTS[variant.fault].__doc__ or "").startswith("Not a fault")
        assert bool(variant.fails) != honest, variant.fault
        assert not set(variant.fails) & set(variant.blocked), variant.fault


def certify_broken(variant: Variant, workdir: Path, zygote: Path) -> BrokenRun:
    """Start every profile of the embedded run (or the main one, for a variant run on a few
    feature files) with the variant's fault injected (forked by the fork server at
    ``zygote``), run the suite against them in server mode."""
    started = time.monotonic()
    control = workdir / "control"
    serve = (sys.executable, str(SERVE), variant.fault, "--zygote", str(zygote))
    profiles = variant.profiles if variant.features else PROFILES
    features = [a for f in variant.features for a in ("--feature", f)]
    with target(workdir, profiles, command=(*serve, "--control", str(control), "--")) as path:
        # The crash-and-restart scenario needs a [restart] command (harness.target gives none).
        restart = shlex.join([*serve[:2], "--restart", str(control / "restart.json")])
        ixit = replace(load_ixit(path), restart_command=restart, **variant.ixit)
        path.write_text(render_ixit(ixit), encoding="utf-8")
        run = run_suite(workdir / "reports", "--ixit", str(path), *features)
    return BrokenRun(run, round(time.monotonic() - started, 1), workdir)


@contextmanager
def fork_server(workdir: Path) -> Iterator[Path]:
    """The fork server of ``serve.py --zygote``: the reference imported once for every
    server of every variant. Yields its socket once it listens."""
    socket = workdir / "zygote.sock"
    with (workdir / "zygote.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(SERVE), "--zygote", str(socket)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not socket.exists():
            assert process.poll() is None, (workdir / "zygote.log").read_text()
            assert time.monotonic() < deadline, "the fork server did not listen in 60 s"
            time.sleep(0.05)  # it says it listens only by the socket appearing
        yield socket
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def broken_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Future[BrokenRun]]]:
    """The runs of the variants selected, PARALLEL at a time, in the background, their
    servers forked by one fork server."""
    with (
        fork_server(tmp_path_factory.mktemp("zygote")) as zygote,
        broken_runs_in_background(
            request,
            tmp_path_factory,
            lambda variant, workdir: certify_broken(variant, workdir, zygote),
            PARALLEL,
        ) as runs,
    ):
        yield runs


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS, ids=[v.fault for v in VARIANTS])
def test_the_suite_fails_exactly_what_the_fault_breaks(
    variant: Variant, broken_runs: dict[str, Future[BrokenRun]]
) -> None:
    broken = broken_runs[variant.fault].result()
    if not variant.features:  # a run of a few feature files is not a complete run
        assert broken.run.statement.get("run", {}).get("complete"), broken.run.output[-3000:]
    judged = judged_by(variant.features) if variant.features else None
    broken.assert_judged(variant.fault, "S", variant.fails, variant.blocked, judged=judged)
