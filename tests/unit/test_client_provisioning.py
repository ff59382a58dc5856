"""AOI-P: the last valid policy is kept; invalid, expired, older documents are refused."""

from __future__ import annotations

import base64
import json
import logging
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from aoi.client.config import ProviderConfig
from aoi.client.provisioning import Fetched, Provisioner, http_fetch
from aoi.client.state import State
from aoi.core.policy import Policy
from aoi.net.http import HttpServer
from aoi.net.http_messages import Request, Response

WALL = 1_800_000_000.0
URL = "https://op.example/v1/provisioning"


def document(version: int = 1, **overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "provider": "op.example",
        "policy_version": version,
        "valid_until": "2027-12-01T00:00:00Z",
        "servers": [{"id": "a", "url": "wss://a.op.example/aoi", "priority": 1}],
        "selection": "priority_weighted",
        "reallocation": {
            "on_overload": "next_server", "on_unreachable": "next_server",
            "max_servers_tried": 3, "return_to_preferred_after_s": 600,
            "backoff": {"initial_ms": 500, "max_ms": 60000, "multiplier": 2.0, "jitter": "full"},
        },
        "fallback": {"notify_app": True},
        "multi_server": {"allowed": True, "max_concurrent": 4},
        "keepalive_s": 270,
    }  # fmt: skip
    doc.update(overrides)
    return doc


class Answers:
    """A provisioning endpoint that answers from a list, and records the requests."""

    def __init__(self, *answers: Fetched | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[Mapping[str, str]] = []

    async def __call__(self, url: str, headers: Mapping[str, str]) -> Fetched:
        assert url == URL
        self.requests.append(headers)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def ok(doc: Any) -> Fetched:
    return Fetched(200, {"content-type": "application/json"}, json.dumps(doc).encode())


def provisioner(state: State, fetch: Any, got: list[Policy]) -> Provisioner:
    return Provisioner(
        ProviderConfig("op.example", URL), ("dev-1", "secret-1"), state,
        lambda _provider, policy: got.append(policy),
        fetch=fetch, wall=lambda: WALL, rng=random.Random(1), refresh_s=3600,
    )  # fmt: skip


def test_keeps_the_last_valid_document(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    got: list[Policy] = []
    invalid = document(2, servers=[], keepalive_s=1)
    answers = Answers(ok(document(1)), ok(invalid), Fetched(503, {"Retry-After": "120"}, b""),
                      OSError("unreachable"), ok(document(0)), ok(document(3)))  # fmt: skip
    p = provisioner(State(tmp_path), answers, got)

    async def main() -> None:
        assert await p.refresh() == pytest.approx(3600)
        auth = answers.requests[0]["Authorization"]
        assert base64.b64decode(auth.removeprefix("Basic ")) == b"dev-1:secret-1"
        with caplog.at_level(logging.ERROR, "aoi.client.provisioning"):
            await p.refresh()  # invalid: refused, naming every problem
        (record,) = [r for r in caplog.records if r.getMessage() == "policy_refused"]
        problems = record.aoi_fields["problems"]  # type: ignore[attr-defined]
        assert any(m.startswith("servers") for m in problems)
        assert any(m.startswith("keepalive_s") for m in problems)
        assert await p.refresh() >= 120  # 503: Retry-After honoured
        await p.refresh()  # unreachable
        await p.refresh()  # older than the one kept
        assert [g.policy_version for g in got] == [1]
        assert p.policy is not None and p.policy.policy_version == 1
        await p.refresh()
        assert [g.policy_version for g in got] == [1, 3]

    trio.run(main)
    # The last valid document was persisted: a restart starts from it.
    again: list[Policy] = []
    assert provisioner(State(tmp_path), Answers(), again).load_cached() is not None
    assert [g.policy_version for g in again] == [3]


def test_refuses_an_expired_document_and_one_for_another_provider(tmp_path: Path) -> None:
    got: list[Policy] = []
    answers = Answers(ok(document(valid_until="2020-01-01T00:00:00Z")),
                      ok(document(provider="evil.example")))  # fmt: skip
    p = provisioner(State(tmp_path), answers, got)
    trio.run(p.refresh)
    trio.run(p.refresh)
    assert got == [] and p.policy is None


def test_expired_cache_is_used_until_a_new_document_comes(tmp_path: Path) -> None:
    state = State(tmp_path)
    state.save_policy("op.example", document(valid_until="2020-01-01T00:00:00Z"))
    got: list[Policy] = []
    assert provisioner(state, Answers(), got).load_cached() is not None
    assert len(got) == 1


def test_refetches_before_valid_until(tmp_path: Path) -> None:
    got: list[Policy] = []
    soon = document(valid_until="2027-01-15T09:00:00Z")  # WALL + 1 hour
    p = provisioner(State(tmp_path), Answers(ok(soon)), got)
    p.refresh_s = 7200
    delay = trio.run(p.refresh)
    assert delay <= 0.5 * (1_800_003_600 - WALL) + 1


def test_over_http(tmp_path: Path) -> None:
    """The real HTTP path: Basic authentication, 401 for others."""
    served = document(5)

    async def handler(request: Request) -> Response:
        expected = "Basic " + base64.b64encode(b"dev-1:secret-1").decode()
        if request.path != "/v1/provisioning" or request.headers.get("authorization") != expected:
            return Response.error(401, "unauthorized", "who are you?")
        return Response.json(200, served)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(HttpServer(handler, {}).serve, "127.0.0.1", 0)
            port = listeners[0].socket.getsockname()[1]
            url = f"http://127.0.0.1:{port}/v1/provisioning"
            got: list[Policy] = []
            for credential, expected in (("wrong", []), ("secret-1", [5])):
                p = Provisioner(
                    ProviderConfig(None, url), ("dev-1", credential), State(tmp_path),
                    lambda _provider, policy: got.append(policy),
                    fetch=http_fetch(None, timeout_s=5), wall=lambda: WALL,
                    rng=random.Random(1),
                )  # fmt: skip
                await p.refresh()
                assert [g.policy_version for g in got] == expected
            nursery.cancel_scope.cancel()

    trio.run(main)


async def _never(url: str, headers: Mapping[str, str]) -> Fetched:
    await trio.sleep_forever()
    raise AssertionError


@pytest.mark.parametrize(
    ("answer", "lasting", "failure"),
    [
        (OSError("unreachable"), True, f"cannot reach {URL}: unreachable"),
        (Fetched(401, {}, b'{"error": "unauthorized", "detail": "who?"}'), True,
         f"{URL} refused the credentials of client_id 'dev-1' (401): an unknown client or a "
         "wrong credential"),
        (Fetched(404, {}, b'{"error": "not_found", "detail": "no policy here"}'), True,
         f"{URL} answered 404 not_found: no policy here"),
        (ok({"provider": "op.example"}), True, f"the policy from {URL} is refused: "),
        (Fetched(503, {"Retry-After": "30"}, b""), False, f"{URL} answered 503"),
        (_never, True, f"no answer from {URL} within 5 s"),
    ],
)  # fmt: skip
def test_the_first_fetch_says_whether_to_stop(
    tmp_path: Path, answer: Any, lasting: bool, failure: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Without a policy, a failure waiting will not mend is left for the start to stop on (and
    not logged); a passing one (5xx) is logged and retried."""
    fetch = answer if callable(answer) else Answers(answer)
    p = provisioner(State(tmp_path), fetch, [])
    with caplog.at_level(logging.INFO, "aoi.client.provisioning"):
        delay = trio.run(p.first, 5.0, clock=trio.testing.MockClock(autojump_threshold=0))
    assert p.policy is None and p.lasting is lasting and p.failure is not None
    assert p.failure.startswith(failure)
    assert bool(caplog.records) is not lasting
    assert delay >= (30 if not lasting else 0.5)
