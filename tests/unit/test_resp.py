"""RESP without a Redis: URLs, packed commands, parsed replies and typed errors."""

from __future__ import annotations

import pytest

from aoi.server.store.resp import (
    AskError,
    ExecAbortError,
    LoadingError,
    MovedError,
    NoScriptError,
    ProtocolError,
    RedisAddress,
    ReplyError,
    Script,
    new_parser,
    pack,
    pack_all,
)


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("redis://10.0.0.7", RedisAddress("10.0.0.7", 6379)),
        ("redis://redis.internal:7000/2", RedisAddress("redis.internal", 7000, db=2)),
        ("redis://:s%40cret@h:1/", RedisAddress("h", 1, password="s@cret")),
        ("redis://aoi:pw@h?db=3", RedisAddress("h", 6379, db=3, username="aoi", password="pw")),
        ("unix:///run/redis.sock", RedisAddress(path="/run/redis.sock")),
        (
            "unix:///run/redis.sock?db=1&password=pw",
            RedisAddress(path="/run/redis.sock", db=1, password="pw"),
        ),
    ],
)
def test_urls(url: str, address: RedisAddress) -> None:
    assert RedisAddress.from_url(url) == address


@pytest.mark.parametrize(
    "url",
    [
        "http://h",
        "redis://",
        "redis://h:port",
        "redis://h/db",
        "unix://",
        "unix://h/x",
        "redis://h?tls=1",
    ],
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match=r"redis://|number|option"):
        RedisAddress.from_url(url)


def test_the_password_is_never_shown() -> None:
    address = RedisAddress.from_url("redis://:hunter2@h:1/4")
    assert "hunter2" not in repr(address) + str(address)
    assert str(address) == "redis://h:1/4"
    assert address.handshake("node-a") == [
        ("AUTH", "hunter2"),
        ("SELECT", 4),
        ("CLIENT", "SETNAME", "node-a"),
    ]
    assert RedisAddress().handshake(None) == []


def test_commands_are_packed_as_resp_arrays() -> None:
    assert (
        pack(("SET", b"k\r\n", 1, 2.5))
        == b"*4\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$1\r\n1\r\n$3\r\n2.5\r\n"
    )
    assert (
        pack_all([("PING",), ("ECHO", "é")])
        == b"*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nECHO\r\n$2\r\n\xc3\xa9\r\n"
    )


def test_replies_in_pieces_and_errors_typed() -> None:
    parser = new_parser()
    wire = (
        b"+OK\r\n:-3\r\n$-1\r\n*2\r\n$3\r\nabc\r\n-WRONGTYPE nope\r\n"
        b"-NOSCRIPT No matching script\r\n-EXECABORT Transaction discarded\r\n"
        b"-LOADING Redis is loading\r\n-MOVED 3999 127.0.0.1:6381\r\n-ASK 12 ::1:7002\r\n"
    )
    replies = []
    for i in range(len(wire)):  # one byte at a time: a reply is whole only at its end
        parser.feed(wire[i : i + 1])
        while (reply := parser.gets()) is not False:
            replies.append(reply)
    assert replies[:3] == [b"OK", -3, None]
    nested = replies[3]
    assert isinstance(nested, list) and nested[0] == b"abc"
    assert isinstance(nested[1], ReplyError) and nested[1].code == "WRONGTYPE"
    kinds = [type(reply) for reply in replies[4:]]
    assert kinds == [NoScriptError, ExecAbortError, LoadingError, MovedError, AskError]
    moved, ask = replies[7], replies[8]
    assert isinstance(moved, MovedError) and (moved.slot, moved.host, moved.port) == (
        3999,
        "127.0.0.1",
        6381,
    )
    assert isinstance(ask, AskError) and (ask.slot, ask.host, ask.port) == (12, "::1", 7002)


def test_garbage_is_a_protocol_error() -> None:
    parser = new_parser()
    parser.feed(b"HTTP/1.1 400 Bad Request\r\n")
    with pytest.raises(ProtocolError):
        parser.gets()


def test_a_script_is_named_by_its_sha1() -> None:
    script = Script("return 1")
    assert script.sha == "e0e1f9fabfc9d4800c877a703b823ac0578ff8db"
    assert script.evalsha(["k"], [1]) == ("EVALSHA", script.sha, 1, "k", 1)
    assert script.eval([], []) == ("EVAL", "return 1", 0)
