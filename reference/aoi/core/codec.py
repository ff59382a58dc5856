"""The one codec: WebSocket frames <-> typed messages, validated against the schemas."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any, NoReturn

import jsonschema_rs

from .errors import ErrorCode, LocalProtocolError, RemoteProtocolError
from .messages import AOI1_MESSAGES, AOI2_MESSAGES, Limits, Message

MAX_FRAME = 65536
MAX_PAYLOAD = 4096
_INTERFACES = {"aoi1": AOI1_MESSAGES, "aoi2": AOI2_MESSAGES}
_PAYLOAD_TYPES = frozenset({"notify", "app_notification"})


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


_decoder = json.JSONDecoder(parse_constant=_reject_constant)
_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def _one_shot_encoder() -> Callable[[Any], str]:
    """``_encoder.encode`` without building a new C encoder for every call (half its cost
    for a small message); the same text. Falls back where the C accelerator is missing."""
    try:
        from json.encoder import (  # type: ignore[attr-defined]
            c_make_encoder,
            encode_basestring,
        )

        if c_make_encoder is None:
            raise ImportError("no C encoder")
        make = c_make_encoder(
            None, _encoder.default, encode_basestring, None, ":", ",", False, False, True
        )
        if "".join(make({"a": [1, "é", None, True, 1.5]}, 0)) != _encoder.encode(
            {"a": [1, "é", None, True, 1.5]}
        ):
            raise ImportError("a different C encoder")
    except (ImportError, TypeError):
        return _encoder.encode

    def encode(wire: Any) -> str:
        return "".join(make(wire, 0))

    return encode


_encode = _one_shot_encoder()

# Per message class: its field names, or None where the class makes its own wire form.
_WIRE_FIELDS: dict[type[Message], tuple[str, ...] | None] = {}


def to_wire(message: Message) -> dict[str, Any]:
    """``message.to_wire()``, without looking up the dataclass fields on every call."""
    cls = type(message)
    try:
        names = _WIRE_FIELDS[cls]
    except KeyError:
        plain = cls.to_wire is Message.to_wire
        names = tuple(f.name for f in dataclasses.fields(cls)) if plain else None
        _WIRE_FIELDS[cls] = names
    if names is None:
        return message.to_wire()
    wire: dict[str, Any] = {"type": message.type}
    for name in names:
        value = getattr(message, name)
        if value is None:
            continue
        if isinstance(value, Limits):
            value = dataclasses.asdict(value)
        elif isinstance(value, tuple):
            value = list(value)
        wire[name] = value
    return wire


def payload_size(payload: str) -> int:
    """Size of a payload in bytes of UTF-8, the unit of every payload limit."""
    return len(payload) if payload.isascii() else len(payload.encode("utf-8"))


class Codec:
    """Decodes and encodes the frames of one interface (``aoi1`` or ``aoi2``).

    ``documents`` are all schemas by ``$id`` (message schemas refer to shared definitions).
    """

    def __init__(
        self,
        interface: str,
        documents: Mapping[str, dict[str, Any]],
        *,
        max_frame: int = MAX_FRAME,
        validate_outgoing: bool = True,
    ) -> None:
        self.classes = _INTERFACES[interface]
        self.max_frame = max_frame
        self.validate_outgoing = validate_outgoing
        registry = jsonschema_rs.Registry(list(documents.items()))
        prefix = f"/{interface}/"
        self._validators = {
            uri.rsplit("/", 1)[1].removesuffix(".json"): jsonschema_rs.validator_for(
                doc, registry=registry, validate_formats=True
            )
            for uri, doc in documents.items()
            if prefix in uri
        }
        missing = set(self.classes) - set(self._validators)
        if missing:
            raise ValueError(f"no schema for {interface} messages {sorted(missing)}")

    @classmethod
    def from_contract(cls, interface: str, **options: Any) -> Codec:
        """A codec for ``interface`` built from the schemas shipped in ``aoi_schemas``."""
        import aoi_schemas

        return cls(interface, aoi_schemas.schemas(), **options)

    def decode(self, frame: bytes | str) -> Message:
        """One received frame to a message; :class:`RemoteProtocolError` says what is wrong."""
        if len(frame) > self.max_frame:
            raise RemoteProtocolError(
                ErrorCode.FRAME_TOO_LARGE,
                f"frame of {len(frame)} bytes exceeds {self.max_frame}",
                fatal=True,
            )
        try:
            text = frame.decode("utf-8") if isinstance(frame, bytes) else frame
            wire = _decoder.decode(text)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise RemoteProtocolError(ErrorCode.MALFORMED_FRAME, f"not UTF-8 JSON: {exc}") from None
        if not isinstance(wire, dict) or not isinstance(wire.get("type"), str):
            raise RemoteProtocolError(
                ErrorCode.NOT_AN_OBJECT, "a frame must be a JSON object with a string 'type'"
            )
        return self.from_wire(wire)

    def from_wire(self, wire: dict[str, Any]) -> Message:
        kind: str = wire["type"]
        cls = self.classes.get(kind)
        if cls is None:
            raise RemoteProtocolError(ErrorCode.UNSUPPORTED_MESSAGE, f"unknown type {kind!r}")
        req = wire.get("req")
        problem = self._problem(kind, wire)
        if problem is not None:
            raise RemoteProtocolError(
                ErrorCode.INVALID_MESSAGE,
                f"{kind}: {problem}",
                req=req if isinstance(req, int) and not isinstance(req, bool) else None,
            )
        return cls.from_wire(wire)

    def encode(self, message: Message) -> str:
        """A message to the text of one frame."""
        wire = to_wire(message)
        if self.validate_outgoing:
            problem = self._problem(message.type, wire)
            if problem is not None:
                raise LocalProtocolError(ErrorCode.INVALID_MESSAGE, f"{message.type}: {problem}")
        return _encode(wire)

    def _problem(self, kind: str, wire: dict[str, Any]) -> str | None:
        try:
            self._validators[kind].validate(wire)
        except jsonschema_rs.ValidationError as exc:
            where = "/".join(str(part) for part in exc.instance_path) or "(root)"
            return f"{where}: {exc.message}"
        if kind in _PAYLOAD_TYPES and payload_size(wire["payload"]) > MAX_PAYLOAD:
            return f"payload: more than {MAX_PAYLOAD} bytes"
        return None
