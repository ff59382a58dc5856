"""How the server's configuration reads one value: each reader takes what TOML gave and
returns the value, or raises :class:`Invalid` saying what is wrong (never the value of a
secret)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any


class Invalid(Exception):
    """A value cannot be used; ``at`` extends the place (``[1]`` for an array item)."""

    def __init__(self, detail: str, at: str = "") -> None:
        super().__init__(detail)
        self.detail = detail
        self.at = at


Parser = Callable[[Any], Any]

TOML_KINDS: tuple[tuple[type, str], ...] = (
    (bool, "a boolean"),  # before int: bool is an int to Python, not to TOML
    (int, "an integer"),
    (float, "a float"),
    (str, "a string"),
    (list, "an array"),
    (dict, "a table"),
)


def kind(value: object) -> str:
    return next((name for t, name in TOML_KINDS if isinstance(value, t)), "a date or time")


def integer(lo: int, hi: int | None = None) -> Parser:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"expected an integer, got {kind(value)}")
        if value < lo or (hi is not None and value > hi):
            raise Invalid(f"must be at least {lo}" if hi is None else f"must be {lo}..{hi}")
        return value

    return parse


def number(above: float = 0.0, at_most: float | None = None) -> Parser:
    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Invalid(f"expected a number, got {kind(value)}")
        if not math.isfinite(value):
            raise Invalid("must be a finite number")
        if value <= above or (at_most is not None and value > at_most):
            bound = f"greater than {above:g}"
            raise Invalid(
                f"must be {bound}" + ("" if at_most is None else f", at most {at_most:g}")
            )
        return float(value)

    return parse


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"expected true or false, got {kind(value)}")
    return value


def string(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(f"expected a string, got {kind(value)}")
    return value


def matching(pattern: str, what: str) -> Parser:
    compiled = re.compile(pattern)

    def parse(value: Any) -> str:
        if not compiled.fullmatch(string(value)):
            raise Invalid(f"not {what}: {value!r}")
        return str(value)

    return parse


def secret(max_len: int) -> Parser:
    def parse(value: Any) -> str:
        if not 1 <= len(string(value)) <= max_len:
            raise Invalid(f"must be 1..{max_len} characters")
        return str(value)

    return parse


def sha256(value: Any) -> str:
    if not re.fullmatch(r"[0-9A-Fa-f]{64}", string(value)):
        raise Invalid("not 64 hex digits")
    return str(value).lower()


def listen(value: Any) -> tuple[str, int]:
    host, colon, port = string(value).rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]  # [::1]:8080
    if not colon or not host or not port.isdigit():
        raise Invalid(f"expected HOST:PORT, got {value!r}")
    if int(port) > 65535:
        raise Invalid(f"port must be 0..65535, got {port}")
    return host, int(port)


def redis_url(value: Any) -> str:
    from .store.resp import RedisAddress  # the store's own reading of it

    try:
        RedisAddress.from_url(string(value))
    except ValueError as e:
        raise Invalid(str(e)) from None
    return str(value)


def optional(parse: Parser) -> Parser:
    """An empty string means "not set" (``tls_cert = ""``)."""
    return lambda value: None if value == "" else parse(value)


def path(value: Any) -> Path:
    if isinstance(value, Path):
        return value
    if not string(value):
        raise Invalid("must not be empty")
    return Path(value)


def array_of(item: Parser, *, non_empty: bool = False, max_items: int | None = None) -> Parser:
    def parse(value: Any) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise Invalid(f"expected an array, got {kind(value)}")
        if non_empty and not value:
            raise Invalid("must not be empty")
        if max_items is not None and len(value) > max_items:
            raise Invalid(f"at most {max_items} items")
        items = []
        for n, element in enumerate(value):
            try:
                items.append(item(element))
            except Invalid as e:
                raise Invalid(e.detail, f"[{n}]{e.at}") from None
        return tuple(items)

    return parse
