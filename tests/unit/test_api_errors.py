"""AOI-3 refusals as one typed error: status, code, detail and headers as docs/protocol.md 3.2
has them, every body valid against the contract's error_response."""

from __future__ import annotations

import aoi_schemas
import jsonschema_rs
import pytest

from aoi.core.errors import LISTENER_CODES, ApiError, ApiErrorCode

DOCUMENTS = aoi_schemas.schemas()
ERROR_RESPONSE = DOCUMENTS[aoi_schemas.schema_id("aoi3/error_response.json")]
VALIDATOR = jsonschema_rs.validator_for(
    ERROR_RESPONSE, registry=jsonschema_rs.Registry(list(DOCUMENTS.items()))
)
SCHEMA_ERRORS = ({"path": "/ttl_s", "message": "-1 is less than the minimum of 0"},)

# Each refusal the server makes, with the status and code of the table in docs/protocol.md.
REFUSALS = [
    (ApiError.invalid_request("the body is not JSON"), 400, "invalid_request"),
    (ApiError.invalid_request("does not match", SCHEMA_ERRORS), 400, "invalid_request"),
    (ApiError.unauthorized("Bearer", "a valid server-app key is required"), 401, "unauthorized"),
    (ApiError.forbidden("this token belongs to another app"), 403, "forbidden"),
    (ApiError.unknown_token(), 404, "unknown_token"),
    (ApiError.not_found("no notification of yours has this id"), 404, "not_found"),
    (ApiError.not_cancellable("delivered"), 409, "not_cancellable"),
    (ApiError.token_unregistered(), 410, "token_unregistered"),
    (ApiError.payload_too_large(5000, 4096), 413, "payload_too_large"),
    (ApiError.rate_limited("over 10/s", 0.2), 429, "rate_limited"),
    (ApiError.overloaded(29.5), 503, "overloaded"),
    (ApiError.store_unavailable(29.5), 503, "store_unavailable"),
]


@pytest.mark.parametrize(("error", "status", "code"), REFUSALS, ids=lambda v: str(v)[:40])
def test_each_refusal_has_its_status_code_and_a_valid_body(
    error: ApiError, status: int, code: str
) -> None:
    assert (error.status, error.code) == (status, code)
    assert error.body()["error"] == code
    problems = [e.message for e in VALIDATOR.iter_errors(error.body())]
    assert problems == []


def test_the_codes_are_the_contracts() -> None:
    enum = set(ERROR_RESPONSE["properties"]["error"]["enum"])
    assert {code.value for code in ApiErrorCode} == enum
    # 405 comes from the routing, the listener's codes from the HTTP layer (its answers are
    # tested on the wire: tests/server/test_hostile_http.py).
    assert {error.code for error, _, _ in REFUSALS} == set(ApiErrorCode) - {
        ApiErrorCode.METHOD_NOT_ALLOWED,
        *LISTENER_CODES,
    }


def test_schema_errors_are_listed_only_when_there_are_some() -> None:
    assert "errors" not in ApiError.invalid_request("the body is not JSON").body()
    assert ApiError.invalid_request("bad", SCHEMA_ERRORS).body() == {
        "error": "invalid_request",
        "detail": "bad",
        "errors": [{"path": "/ttl_s", "message": "-1 is less than the minimum of 0"}],
    }


@pytest.mark.parametrize(
    ("seconds", "header"), [(0.0, "1"), (0.2, "1"), (1.0, "1"), (1.01, "2"), (29.5, "30")]
)
def test_retry_after_is_whole_seconds_rounded_up_and_at_least_one(
    seconds: float, header: str
) -> None:
    assert ApiError.overloaded(seconds).headers == (("retry-after", header),)
    assert ApiError.rate_limited("over 1/s", seconds).headers == (("retry-after", header),)


def test_the_headers_a_refusal_needs() -> None:
    assert ApiError.unauthorized("Basic", "client credentials are required").headers == (
        ("www-authenticate", 'Basic realm="aoi"'),
    )
    refusal = ApiError.method_not_allowed("GET, DELETE")
    assert (refusal.status, refusal.detail, refusal.headers) == (
        405,
        "use GET, DELETE",
        (("allow", "GET, DELETE"),),
    )
    assert ApiError.forbidden("no").headers == ()


def test_it_is_an_exception_that_says_what_it_is() -> None:
    with pytest.raises(ApiError, match="410 token_unregistered: the app unregistered"):
        raise ApiError.token_unregistered()
