"""Races of a device with its flaky network: requests cut off by a lost connection, and a
resume on a new connection while the old one's request is still being stored.

The server is a real process; a crash is its exit. Every attempt drops the connection right
after sending (a reset, no close frame), so that the store write of the request and the end
of its session overlap.
"""

from __future__ import annotations

from pathlib import Path

from bench.hostile.session import Session
from bench.hostile.target import APP, started

ATTEMPTS = 200


def test_register_racing_a_resume_or_a_lost_connection_never_stops_the_server(
    tmp_path: Path,
) -> None:
    with started(tmp_path, clients=1, max_apps=ATTEMPTS) as target:
        first = Session(target.address)
        welcome = first.hello(0)
        session = welcome["session"]
        first.send(type="register", req=1, app_id=APP)
        token = first.receive()["token"]
        first.close()
        for attempt in range(ATTEMPTS):
            # Half the time an app registered already (its token comes from memory), half
            # the time a new one (its registration is being stored when the race hits).
            app = APP if attempt % 4 < 2 else f"{APP}.n{attempt}"
            old = Session(target.address)
            assert old.hello(0, session)["resumed"] is True
            old.send(type="register", req=2, app_id=app)
            if attempt % 2:  # the request, then at once the resume elsewhere
                new = Session(target.address)
                old.abort()
            else:  # the request, then the connection lost, then the resume
                old.abort()
                new = Session(target.address)
            resumed = new.hello(0, session)
            assert resumed["type"] == "welcome" and resumed["resumed"] is True, resumed
            new.send(type="register", req=3, app_id=app)
            registered = new.receive()
            assert registered["type"] == "registered", registered
            if app == APP:
                assert registered["token"] == token  # the same registration, stored once
            new.send(type="register", req=4, app_id=app)
            assert new.receive()["token"] == registered["token"]
            new.close()
            assert target.alive(), "\n".join(target.log_lines()[-30:])
        assert target.health() == 200
        assert not [line for line in target.log_lines() if '"level":"error"' in line]


def test_unregister_cut_off_leaves_the_token_registered_or_retired_never_half(
    tmp_path: Path,
) -> None:
    with started(tmp_path, clients=1) as target:
        first = Session(target.address)
        session = first.hello(0)["session"]
        first.close()
        for attempt in range(50):
            old = Session(target.address)
            old.hello(0, session)
            old.send(type="register", req=1, app_id=APP)
            token = old.receive()["token"]
            old.send(type="unregister", req=2, token=token)
            old.abort()
            new = Session(target.address)
            assert new.hello(0, session)["resumed"] is True
            new.send(type="unregister", req=3, token=token)
            answer = new.receive()  # done now, or done already by the cut-off request
            assert answer["type"] in ("unregistered", "error"), answer
            if answer["type"] == "error":
                assert answer["code"] == "unknown_token", (attempt, answer)
            new.close()
        assert target.alive() and target.health() == 200
