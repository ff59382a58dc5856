"""RESP, the Redis protocol, without I/O: commands packed and replies parsed by hiredis (C),
Redis's error replies as typed exceptions, and where a Redis is (its URL).

Replies are RESP2 as hiredis gives them: ``bytes`` for strings, ``int``, ``None`` for nil, a
``list`` for arrays, and a :class:`ReplyError` instance for an error reply (returned in its
place inside an array or a pipeline's replies, raised by a single command).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, TypeAlias, cast
from urllib.parse import parse_qs, unquote, urlsplit

import hiredis

Arg: TypeAlias = bytes | str | int | float
Command: TypeAlias = Sequence[Arg]
Value: TypeAlias = "bytes | int | list[Reply] | None"
Reply: TypeAlias = "Value | ReplyError"


class RedisError(Exception):
    """Something went wrong talking to Redis."""


class ConnectionLost(RedisError):
    """The connection broke while the command was on its way or waiting for its reply: it may
    or may not have run. It is never sent again on its own."""


class Unreachable(RedisError):
    """No connection could be made (refused, timed out, or Redis still loading its data)."""


class ClientClosed(RedisError):
    """The client is not running: it has not connected yet, or it has stopped."""


class ProtocolError(RedisError):
    """Redis sent something that is not RESP, or a reply nobody asked for."""


class ReplyError(RedisError):
    """An error reply, e.g. ``-WRONGTYPE Operation against a key holding the wrong kind of
    value``; ``code`` is its first word."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = message.split(" ", 1)[0]


class NoScriptError(ReplyError):
    """EVALSHA of a script this Redis has not loaded (it restarted, or was flushed)."""


class ExecAbortError(ReplyError):
    """EXEC refused the transaction: a command in it was refused while queued (nothing ran)."""


class LoadingError(ReplyError):
    """Redis is loading its data after a restart; try again shortly."""


class RedirectError(ReplyError):
    """A Redis Cluster node does not serve the key's slot: ask ``host:port``."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        _, slot, address = message.split(" ")
        self.slot = int(slot)
        host, _, port = address.rpartition(":")
        self.host = host
        self.port = int(port)


class MovedError(RedirectError):
    """The slot lives on another node now (``MOVED``): update the slot map."""


class AskError(RedirectError):
    """The slot is migrating (``ASK``): send this one command to the other node after ASKING."""


_ERRORS: dict[str, type[ReplyError]] = {
    "NOSCRIPT": NoScriptError,
    "EXECABORT": ExecAbortError,
    "LOADING": LoadingError,
    "MOVED": MovedError,
    "ASK": AskError,
}


def reply_error(message: str) -> ReplyError:
    """The typed exception for an error reply's message (what hiredis calls for each one)."""
    return _ERRORS.get(message.split(" ", 1)[0], ReplyError)(message)


class Parser(Protocol):
    """hiredis's reader, as this module sets it up: ``feed`` what the socket gave, then
    ``gets`` until it returns False (no complete reply yet)."""

    def feed(self, data: bytes | bytearray, /) -> None: ...

    def gets(self) -> Reply | Literal[False]: ...


def new_parser() -> Parser:
    return cast(Parser, hiredis.Reader(replyError=reply_error, protocolError=ProtocolError))


# hiredis's own stub types its argument as a tuple of one item.
_pack_command = cast(Callable[[tuple[Arg, ...]], bytes], hiredis.pack_command)


def pack(command: Command) -> bytes:
    return _pack_command(tuple(command))


def pack_all(commands: Iterable[Command]) -> bytes:
    return b"".join([_pack_command(tuple(command)) for command in commands])


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script, run by its SHA1 (EVALSHA) and sent in full only when Redis lacks it."""

    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())

    def evalsha(self, keys: Sequence[Arg], args: Sequence[Arg]) -> Command:
        return ("EVALSHA", self.sha, len(keys), *keys, *args)

    def eval(self, keys: Sequence[Arg], args: Sequence[Arg]) -> Command:
        return ("EVAL", self.source, len(keys), *keys, *args)


@dataclass(frozen=True, slots=True)
class RedisAddress:
    """Where a Redis is: ``redis://[[user]:password@]host[:port][/db]`` or
    ``unix:///path/to/redis.sock[?db=N][&password=P]``."""

    host: str = "127.0.0.1"
    port: int = 6379
    path: str | None = None  # a unix socket instead of host and port
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_url(cls, url: str) -> RedisAddress:
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(query) - {"db", "password"}
        if unknown:
            raise ValueError(f"{url!r}: unknown option {sorted(unknown)[0]!r}")
        try:
            db = int(query.get("db", "0"))
            if parts.scheme == "redis":
                if parts.path not in ("", "/"):
                    db = int(parts.path.lstrip("/"))
                port = parts.port or 6379
        except ValueError:
            raise ValueError(f"{url!r}: the port is 1..65535 and the database a number") from None
        username = unquote(parts.username) if parts.username else None
        password = query.get("password") or (unquote(parts.password) if parts.password else None)
        if parts.scheme == "redis" and parts.hostname:
            return cls(parts.hostname, port, None, db, username, password)
        if parts.scheme == "unix" and parts.path and not parts.netloc:
            return cls(path=unquote(parts.path), db=db, username=username, password=password)
        raise ValueError(
            f"{url!r} is not a Redis URL: redis://HOST[:PORT][/DB] or unix:///PATH[?db=DB]"
        )

    def handshake(self, name: str | None) -> list[Command]:
        """What a new connection says first: who it is, and which database it uses."""
        commands: list[Command] = []
        if self.password is not None:
            credentials = (
                (self.password,) if self.username is None else (self.username, self.password)
            )
            commands.append(("AUTH", *credentials))
        if self.db:
            commands.append(("SELECT", self.db))
        if name:
            commands.append(("CLIENT", "SETNAME", name))
        return commands

    def __str__(self) -> str:
        where = f"unix://{self.path}" if self.path else f"redis://{self.host}:{self.port}"
        return f"{where}/{self.db}" if self.db else where
