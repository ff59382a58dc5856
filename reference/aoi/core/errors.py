"""Protocol errors, each carrying the wire error code and the close code it leads to."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class ErrorCode(StrEnum):
    """Values of ``error.code`` on AOI-1 and AOI-2."""

    MALFORMED_FRAME = "malformed_frame"
    NOT_AN_OBJECT = "not_an_object"
    UNSUPPORTED_MESSAGE = "unsupported_message"
    INVALID_MESSAGE = "invalid_message"
    FRAME_TOO_LARGE = "frame_too_large"
    UNEXPECTED_MESSAGE = "unexpected_message"
    UNKNOWN_TOKEN = "unknown_token"
    TOO_MANY_APPS = "too_many_apps"
    INTERNAL_ERROR = "internal_error"


class CloseCode(IntEnum):
    """WebSocket close codes used by AOI-2."""

    NORMAL = 1000
    GOING_AWAY = 1001
    AUTH_FAILED = 4001
    RATE_LIMITED = 4029
    PROTOCOL_ERROR = 4400
    TIMEOUT = 4408
    SESSION_TAKEN_OVER = 4409
    FRAME_TOO_LARGE = 4413
    UNSUPPORTED_VERSION = 4426
    INTERNAL_ERROR = 4500
    OVERLOADED = 4503


class ProtocolError(Exception):
    """A violation of the AOI protocol. ``fatal`` errors end the session."""

    def __init__(
        self, code: ErrorCode, detail: str, *, fatal: bool = False, req: int | None = None
    ) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.fatal = fatal
        self.req = req

    @property
    def close_code(self) -> CloseCode:
        if self.code is ErrorCode.FRAME_TOO_LARGE:
            return CloseCode.FRAME_TOO_LARGE
        if self.code is ErrorCode.INTERNAL_ERROR:
            return CloseCode.INTERNAL_ERROR
        return CloseCode.PROTOCOL_ERROR


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol: answer with an ``error`` frame (and close if fatal)."""


class LocalProtocolError(ProtocolError):
    """This side tried to do something the protocol forbids: a bug in the caller."""
