"""The codec: every example, every kind of bad frame, and random input."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import aoi_schemas
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aoi.core.codec import MAX_PAYLOAD, Codec
from aoi.core.errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from aoi.core.messages import AOI1_MESSAGES, AOI2_MESSAGES, Notify, Priority

CODECS = {"aoi1": Codec.from_contract("aoi1"), "aoi2": Codec.from_contract("aoi2")}
MESSAGE_SCHEMAS = [p for p in aoi_schemas.schema_files() if p.parent.name in CODECS]


def _name(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def test_every_message_class_has_a_schema_and_back() -> None:
    for interface, classes in (("aoi1", AOI1_MESSAGES), ("aoi2", AOI2_MESSAGES)):
        assert set(classes) == set(aoi_schemas.message_schemas(interface))


@pytest.mark.parametrize("path", MESSAGE_SCHEMAS, ids=_name)
def test_valid_examples_round_trip(path: Path) -> None:
    codec = CODECS[path.parent.name]
    valid, _ = aoi_schemas.examples(path)
    for instance in valid:
        message = codec.decode(json.dumps(instance).encode())
        assert message.type == instance["type"]
        assert codec.decode(codec.encode(message)) == message
        known = {k for k in instance if k == "type" or k in message.__dataclass_fields__}
        assert set(message.to_wire()) == known


@pytest.mark.parametrize("path", MESSAGE_SCHEMAS, ids=_name)
def test_invalid_examples_are_remote_errors(path: Path) -> None:
    codec = CODECS[path.parent.name]
    _, invalid = aoi_schemas.examples(path)
    for case in invalid:
        kind = case["instance"].get("type") if isinstance(case["instance"], dict) else None
        if kind != path.stem and kind in codec.classes:
            continue  # a valid frame of another type, invalid only as this one
        with pytest.raises(RemoteProtocolError) as caught:
            codec.decode(json.dumps(case["instance"]))
        assert caught.value.code in {
            ErrorCode.INVALID_MESSAGE,
            ErrorCode.UNSUPPORTED_MESSAGE,
            ErrorCode.NOT_AN_OBJECT,
        }, case["why"]


BAD_FRAMES = [
    (b"\xff\xfe", ErrorCode.MALFORMED_FRAME, False),
    (b"{not json", ErrorCode.MALFORMED_FRAME, False),
    (b'{"type": "ping", "ts": NaN}', ErrorCode.MALFORMED_FRAME, False),
    (b"[1, 2]", ErrorCode.NOT_AN_OBJECT, False),
    (b'{"type": 7}', ErrorCode.NOT_AN_OBJECT, False),
    (b'{"kind": "hello"}', ErrorCode.NOT_AN_OBJECT, False),
    (b'{"type": "subscribe"}', ErrorCode.UNSUPPORTED_MESSAGE, False),
    (b'{"type": "register", "req": 1}', ErrorCode.INVALID_MESSAGE, False),
    (b'{"type": "register", "req": "1", "app_id": "a"}', ErrorCode.INVALID_MESSAGE, False),
    (b'{"type": "ack", "ids": []}', ErrorCode.INVALID_MESSAGE, False),
    (b'{"type": "ping", "pad": "' + b"x" * 70000 + b'"}', ErrorCode.FRAME_TOO_LARGE, True),
]


@pytest.mark.parametrize(("frame", "code", "fatal"), BAD_FRAMES)
def test_bad_frames(frame: bytes, code: ErrorCode, fatal: bool) -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        CODECS["aoi2"].decode(frame)
    assert (caught.value.code, caught.value.fatal) == (code, fatal)


def test_invalid_message_keeps_the_request_number() -> None:
    with pytest.raises(RemoteProtocolError) as caught:
        CODECS["aoi2"].decode('{"type": "register", "req": 42, "app_id": ""}')
    assert caught.value.req == 42
    assert "app_id" in caught.value.detail


def _notify(payload: str) -> Notify:
    return Notify(
        id="n1", token="t" * 22, app_id="com.example.chat", payload=payload,
        priority=Priority.NORMAL, ttl_s=60, created_at="2026-11-25T12:00:00Z",
    )  # fmt: skip


def test_payload_limit_counts_bytes_not_characters() -> None:
    codec = CODECS["aoi2"]
    assert codec.decode(codec.encode(_notify("x" * MAX_PAYLOAD))).payload == "x" * MAX_PAYLOAD
    too_big = "é" * (MAX_PAYLOAD // 2 + 1)  # fewer characters than the limit, more bytes
    with pytest.raises(LocalProtocolError):
        codec.encode(_notify(too_big))
    wire = json.dumps(_notify(too_big).to_wire())
    with pytest.raises(RemoteProtocolError) as caught:
        codec.decode(wire)
    assert caught.value.code is ErrorCode.INVALID_MESSAGE


def test_encoding_an_invalid_message_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        CODECS["aoi2"].encode(_notify("ok").__class__(**{**_fields(_notify("ok")), "ttl_s": -1}))


def _fields(message: Notify) -> dict[str, object]:
    return {k: v for k, v in message.to_wire().items() if k != "type"}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
message_like = st.fixed_dictionaries(
    {"type": st.sampled_from([*sorted(AOI2_MESSAGES), "x", ""])},
    optional={k: json_values for k in ("req", "app_id", "token", "ids", "id", "payload", "ts")},
)


@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_random_bytes_raise_only_remote_errors(frame: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        CODECS["aoi2"].decode(frame)


@given(message_like)
def test_random_objects_raise_only_remote_errors(wire: dict[str, object]) -> None:
    try:
        message = CODECS["aoi2"].decode(json.dumps(wire))
    except RemoteProtocolError:
        return
    assert message.type == wire["type"]
