"""Protocol errors: AOI-1 and AOI-2 ones with their wire error code and close code, AOI-3
ones with their HTTP status and headers."""

from __future__ import annotations

import math
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


class ApiErrorCode(StrEnum):
    """Values of ``error`` in an AOI-3 error body, each with its HTTP status."""

    INVALID_REQUEST = "invalid_request"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    UNKNOWN_TOKEN = "unknown_token"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NOT_CANCELLABLE = "not_cancellable"
    TOKEN_UNREGISTERED = "token_unregistered"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    RATE_LIMITED = "rate_limited"
    OVERLOADED = "overloaded"
    STORE_UNAVAILABLE = "store_unavailable"
    INTERNAL_ERROR = "internal_error"
    # What the HTTP listener answers, before a request reaches AOI-3 (docs/protocol.md 3.9).
    MALFORMED_REQUEST = "malformed_request"
    INVALID_UPGRADE = "invalid_upgrade"
    UNSUPPORTED_SUBPROTOCOL = "unsupported_subprotocol"
    REQUEST_TIMEOUT = "request_timeout"
    UPGRADE_REQUIRED = "upgrade_required"
    HEADERS_TOO_LARGE = "headers_too_large"
    NOT_IMPLEMENTED = "not_implemented"
    HTTP_VERSION_NOT_SUPPORTED = "http_version_not_supported"

    @property
    def status(self) -> int:
        return _API_STATUS[self]


LISTENER_CODES = frozenset(
    {
        ApiErrorCode.MALFORMED_REQUEST, ApiErrorCode.INVALID_UPGRADE,
        ApiErrorCode.UNSUPPORTED_SUBPROTOCOL, ApiErrorCode.REQUEST_TIMEOUT,
        ApiErrorCode.UPGRADE_REQUIRED, ApiErrorCode.HEADERS_TOO_LARGE,
        ApiErrorCode.NOT_IMPLEMENTED, ApiErrorCode.HTTP_VERSION_NOT_SUPPORTED,
        ApiErrorCode.INTERNAL_ERROR,
    }
)  # fmt: skip


_API_STATUS = {
    ApiErrorCode.INVALID_REQUEST: 400,
    ApiErrorCode.UNAUTHORIZED: 401,
    ApiErrorCode.FORBIDDEN: 403,
    ApiErrorCode.UNKNOWN_TOKEN: 404,
    ApiErrorCode.NOT_FOUND: 404,
    ApiErrorCode.METHOD_NOT_ALLOWED: 405,
    ApiErrorCode.NOT_CANCELLABLE: 409,
    ApiErrorCode.TOKEN_UNREGISTERED: 410,
    ApiErrorCode.PAYLOAD_TOO_LARGE: 413,
    ApiErrorCode.RATE_LIMITED: 429,
    ApiErrorCode.OVERLOADED: 503,
    ApiErrorCode.STORE_UNAVAILABLE: 503,
    ApiErrorCode.INTERNAL_ERROR: 500,
    ApiErrorCode.MALFORMED_REQUEST: 400,
    ApiErrorCode.INVALID_UPGRADE: 400,
    ApiErrorCode.UNSUPPORTED_SUBPROTOCOL: 400,
    ApiErrorCode.REQUEST_TIMEOUT: 408,
    ApiErrorCode.UPGRADE_REQUIRED: 426,
    ApiErrorCode.HEADERS_TOO_LARGE: 431,
    ApiErrorCode.NOT_IMPLEMENTED: 501,
    ApiErrorCode.HTTP_VERSION_NOT_SUPPORTED: 505,
}

Headers = tuple[tuple[str, str], ...]


class ApiError(Exception):
    """An AOI-3 request refused: the status, the body's ``error`` and ``detail`` (and, for a
    body that fails its schema, ``errors``), and the headers the refusal needs. Made by the
    class methods below, one per refusal, so that each answer is written once."""

    def __init__(
        self,
        code: ApiErrorCode,
        detail: str,
        headers: Headers = (),
        errors: tuple[dict[str, str], ...] = (),
    ) -> None:
        super().__init__(f"{code.status} {code}: {detail}")
        self.code = code
        self.detail = detail
        self.headers = headers
        self.errors = errors

    @property
    def status(self) -> int:
        return self.code.status

    def body(self) -> dict[str, object]:
        """The ``error_response`` document."""
        body: dict[str, object] = {"error": self.code.value, "detail": self.detail}
        if self.errors:
            body["errors"] = list(self.errors)
        return body

    @classmethod
    def invalid_request(cls, detail: str, errors: tuple[dict[str, str], ...] = ()) -> ApiError:
        """400; ``errors`` as ``{"path": JSON Pointer, "message": ...}``."""
        return cls(ApiErrorCode.INVALID_REQUEST, detail, errors=errors)

    @classmethod
    def unauthorized(cls, scheme: str, detail: str) -> ApiError:
        """401 with the challenge of ``scheme`` (``Bearer`` on AOI-3, ``Basic`` on AOI-P)."""
        return cls(
            ApiErrorCode.UNAUTHORIZED, detail, (("www-authenticate", f'{scheme} realm="aoi"'),)
        )

    @classmethod
    def forbidden(cls, detail: str) -> ApiError:
        return cls(ApiErrorCode.FORBIDDEN, detail)

    @classmethod
    def unknown_token(cls) -> ApiError:
        return cls(ApiErrorCode.UNKNOWN_TOKEN, "no registration has this token")

    @classmethod
    def token_unregistered(cls) -> ApiError:
        return cls(ApiErrorCode.TOKEN_UNREGISTERED, "the app unregistered this token")

    @classmethod
    def not_found(cls, detail: str) -> ApiError:
        return cls(ApiErrorCode.NOT_FOUND, detail)

    @classmethod
    def method_not_allowed(cls, allowed: str) -> ApiError:
        """405 with ``Allow``; ``allowed`` as the header has it, e.g. ``"GET, DELETE"``."""
        return cls(ApiErrorCode.METHOD_NOT_ALLOWED, f"use {allowed}", (("allow", allowed),))

    @classmethod
    def not_cancellable(cls, status: str) -> ApiError:
        return cls(ApiErrorCode.NOT_CANCELLABLE, f"the notification is {status}")

    @classmethod
    def payload_too_large(cls, size: int, limit: int) -> ApiError:
        return cls(ApiErrorCode.PAYLOAD_TOO_LARGE, f"payload of {size} bytes exceeds {limit}")

    @classmethod
    def rate_limited(cls, detail: str, retry_after_s: float) -> ApiError:
        return cls(ApiErrorCode.RATE_LIMITED, detail, retry_after(retry_after_s))

    @classmethod
    def overloaded(cls, retry_after_s: float) -> ApiError:
        return cls(ApiErrorCode.OVERLOADED, "the server is overloaded", retry_after(retry_after_s))

    @classmethod
    def store_unavailable(cls, retry_after_s: float) -> ApiError:
        """503: nothing could be stored (a full or failing disk); try again later."""
        detail = "the server cannot store this now: try again later"
        return cls(ApiErrorCode.STORE_UNAVAILABLE, detail, retry_after(retry_after_s))


def retry_after(seconds: float) -> Headers:
    """``Retry-After`` in whole seconds, rounded up, at least 1 (docs/protocol.md 3.2)."""
    return (("retry-after", str(max(1, math.ceil(seconds)))),)
