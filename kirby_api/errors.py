"""The API's one mapping from errors to HTTP responses, and the one JSON error shape.

    KirbyError (kirby_core.errors)      -> status by class, most specific first:
    ├── NotFound                        404  unknown starlisting, trading pair, key, route
    ├── InvalidRequest                  400  bad time, range, limit, format, cursor, body
    │   └── InvalidParameter            400  ... naming the parameter and what is allowed
    ├── InactiveSeries                  409  the series left the catalog; data kept, not served
    ├── Unauthorized                    401  no valid API key; WWW-Authenticate: Bearer
    ├── Forbidden                       403  a non-admin key on an admin route
    ├── RateLimited                     429  with Retry-After and RateLimit-* headers
    └── StorageError                    503  PostgreSQL unreachable or too slow, with Retry-After
        ├── SharedStateUnavailable      503  Redis (KIRBY_REDIS_URL) unreachable: limits fail closed
        └── StorageRefused              400  a value the client sent was refused (field named)
                                        500  otherwise (schema, a bug): like anything else
    anything else                       500  logged with its traceback and an error id; the
                                             body gives the id, never the details

Litestar's own exceptions (parameter validation, unknown route, wrong method) are translated
into the same shape, so a client parses one body everywhere:

    {"status": 400, "error": "invalid_parameter", "message": "...", "parameter": "limit",
     "allowed": "an integer from 1 to 5000"}

A message echoes client input through `shorten` (at most 100 characters, then '…').
Handlers never catch exceptions; they raise and this module answers.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from typing import Any

import msgspec
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.types import ExceptionHandlersMap

from kirby_core.errors import InvalidRequest, KirbyError, NotFound, StorageError, StorageRefused

log = logging.getLogger(__name__)

RETRY_AFTER = "5"
"""Seconds a client should wait before retrying when the database is unavailable."""


class InvalidParameter(InvalidRequest):
    """A request parameter has a bad value; names it and what is allowed."""

    def __init__(self, parameter: str, message: str, allowed: str | None = None) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.allowed = allowed


class InactiveSeries(KirbyError):
    """The starlisting or trading pair was removed from the catalog (deactivated)."""


class Unauthorized(KirbyError):
    """No valid API key came with the request; `headers` carry the Bearer challenge."""

    def __init__(self, message: str, *, key_given: bool = False) -> None:
        super().__init__(message)
        error = ', error="invalid_token"' if key_given else ""
        self.headers = {"WWW-Authenticate": f'Bearer realm="kirby"{error}'}


class Forbidden(KirbyError):
    """The key is valid but may not use this route."""


class RateLimited(KirbyError):
    """The key used up its request budget; `headers` say when to retry."""

    def __init__(self, message: str, headers: Mapping[str, str]) -> None:
        super().__init__(message)
        self.headers = dict(headers)


class ErrorBody(msgspec.Struct, omit_defaults=True):
    """Every error response has this body."""

    status: int
    error: str
    """Machine-readable code, e.g. `not_found`, `invalid_parameter`, `rate_limited`."""
    message: str
    """What went wrong, naming the bad value and what is allowed."""
    parameter: str | None = None
    """The request parameter at fault, when there is one."""
    allowed: str | None = None
    """What the parameter accepts."""
    error_id: str | None = None
    """On a 500: the id of the server log line that has the details."""


# Most specific first: the first class an exception is an instance of decides.
_STATUS: tuple[tuple[type[KirbyError], int, str], ...] = (
    (NotFound, 404, "not_found"),
    (InvalidParameter, 400, "invalid_parameter"),
    (InvalidRequest, 400, "invalid_request"),
    (InactiveSeries, 409, "inactive"),
    (Unauthorized, 401, "unauthorized"),
    (Forbidden, 403, "forbidden"),
    (RateLimited, 429, "rate_limited"),
    (StorageError, 503, "unavailable"),
)

_HTTP_CODES = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    429: "rate_limited",
}

# What the validated parameters accept, for messages Litestar leaves terse.
ALLOWED = {
    "limit": "an integer from 1 to 5000",
    "format": "json, csv or parquet",
    "active": "true or false",
    "key_id": "a positive integer",
    "starlisting_id": "a positive integer",
}


SHOWN_CHARS = 100


def shorten(value: object, limit: int = SHOWN_CHARS) -> str:
    """Client input as an error message shows it: at most `limit` characters, then '…'."""
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _respond(body: ErrorBody, headers: Mapping[str, str] | None = None) -> Response[bytes]:
    return Response(
        msgspec.json.encode(body),
        status_code=body.status,
        media_type=MediaType.JSON,
        headers=dict(headers or {}),
    )


def kirby_error_response(request: Request, exc: KirbyError) -> Response[bytes]:
    if isinstance(exc, StorageRefused):
        if not exc.input_at_fault:
            return internal_error_response(request, exc)
        code = "invalid_parameter" if exc.field else "invalid_request"
        return _respond(ErrorBody(400, code, str(exc), exc.field))
    found = next(((status, code) for cls, status, code in _STATUS if isinstance(exc, cls)), None)
    if found is None:
        return internal_error_response(request, exc)
    status, code = found
    headers: dict[str, str] = getattr(exc, "headers", {})
    if isinstance(exc, StorageError):
        headers = {"Retry-After": RETRY_AFTER}
    return _respond(
        ErrorBody(
            status,
            code,
            str(exc),
            getattr(exc, "parameter", None),
            getattr(exc, "allowed", None),
        ),
        headers,
    )


def validation_error_response(request: Request, exc: ValidationException) -> Response[bytes]:
    """Litestar's parameter/body validation, restated naming the parameter and the value."""
    problems = exc.extra if isinstance(exc.extra, list) else []
    first: dict[str, Any] = problems[0] if problems and isinstance(problems[0], dict) else {}
    key = str(first.get("key") or "")
    if not key:
        return _respond(ErrorBody(400, "invalid_request", f"invalid request: {exc.detail}"))
    problem = str(first.get("message", "bad value"))
    given = request.query_params.get(key) if first.get("source") == "query" else None
    got = ""
    if given is not None and repr(given) in problem:
        problem = problem.replace(repr(given), repr(shorten(given)))
    elif given is not None:
        got = f"; got {shorten(given)!r}"
    message = f"invalid {key}: {shorten(problem, 2 * SHOWN_CHARS)}{got}"
    return _respond(ErrorBody(400, "invalid_parameter", message, key, ALLOWED.get(key)))


def http_error_response(request: Request, exc: HTTPException) -> Response[bytes]:
    status = exc.status_code
    if status == 404:
        path = shorten(request.url.path)
        message = f"no route {request.method} {path}; the routes are listed at /schema"
    elif status == 405:
        message = f"method {request.method} is not allowed on {shorten(request.url.path)}"
    else:
        message = shorten(exc.detail, 2 * SHOWN_CHARS)
    code = _HTTP_CODES.get(status, "error" if status < 500 else "internal_error")
    return _respond(ErrorBody(status, code, message), exc.headers)


def internal_error_response(request: Request, exc: Exception) -> Response[bytes]:
    error_id = secrets.token_hex(6)
    log.error(
        "unhandled error error_id=%s method=%s path=%s error=%r",
        error_id,
        request.method,
        request.url.path,
        exc,
        exc_info=exc,
    )
    message = f"internal error; it has been logged with error id {error_id}"
    return _respond(ErrorBody(500, "internal_error", message, error_id=error_id))


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    ValidationException: validation_error_response,
    KirbyError: kirby_error_response,
    HTTPException: http_error_response,
    Exception: internal_error_response,
}


def error_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the error statuses a route can answer with."""
    descriptions = {
        400: "A parameter is invalid; the body names it and what is allowed.",
        401: "Missing, unknown, expired or revoked API key.",
        403: "The key may not use this route.",
        404: "Unknown series, key or route.",
        409: "The series is inactive (removed from the catalog).",
        429: "Rate limit exceeded; see Retry-After.",
        503: "The database (or Redis, with KIRBY_REDIS_URL) is unreachable or too slow.",
    }
    return {
        status: ResponseSpec(ErrorBody, description=descriptions[status], generate_examples=False)
        for status in statuses
    }
