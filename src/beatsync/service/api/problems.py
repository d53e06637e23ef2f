"""Errors as RFC 9457 problem documents — the one place where errors become HTTP.

Every refusal has ``type``, ``title``, ``status``, ``detail``, a stable ``code``, a ``message``
in the client's language (zh-CN unless ``Accept-Language`` prefers English) and the
``request_id`` that the logs carry too. No stack trace ever leaves the server.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from beatsync.engine.errors import BeatSyncError
from beatsync.service.codes import CODES, Locale, message, negotiate_locale
from beatsync.service.errors import ServiceError, from_engine, plain_errors, plain_list
from beatsync.service.storage import StorageUnavailable

__all__ = ["PROBLEM_RESPONSES", "Problem", "install", "problem_body", "problem_response"]

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

_HTTP_CODES = {
    400: "VALIDATION_ERROR",
    401: "UNAUTHORIZED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "FILE_TOO_LARGE",
    416: "RANGE_NOT_SATISFIABLE",
    422: "VALIDATION_ERROR",
    431: "VALIDATION_ERROR",
}


class Problem(BaseModel):
    """An RFC 9457 problem document as this API sends it (some codes add members)."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    code: str = Field(description="Stable; see docs/errors.md.")
    message: str = Field(description="In the client's language (Accept-Language).")
    retryable: bool
    request_id: str | None
    instance: str


# Every operation may refuse with a problem document; documented once, for the whole API,
# instead of FastAPI's own 422 body (which this API never sends).
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    "default": {
        "description": "A refusal: an RFC 9457 problem document with a stable `code`.",
        "content": {PROBLEM_JSON: {"schema": Problem.model_json_schema()}},
    }
}


def problem_body(request: Request, error: ServiceError) -> dict[str, Any]:
    """The problem document of ``error`` answering ``request``."""
    context = getattr(request.app.state, "context", None)
    default: Locale = context.settings.default_locale if context is not None else "zh-CN"
    locale = negotiate_locale(request.headers.get("accept-language"), default)
    body: dict[str, Any] = {
        "type": f"https://beatsync.dev/errors/{error.code.lower().replace('_', '-')}",
        "title": CODES[error.code].en,
        "status": error.status,
        "detail": error.detail or CODES[error.code].en,
        "code": error.code,
        "message": message(error.code, locale),
        "retryable": CODES[error.code].retryable,
        "request_id": getattr(request.state, "request_id", None),
        "instance": request.url.path,
    }
    body.update(error.extra)
    return body


def problem_response(request: Request, error: ServiceError) -> JSONResponse:
    return JSONResponse(
        problem_body(request, error),
        status_code=error.status,
        headers=error.headers,
        media_type=PROBLEM_JSON,
    )


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    return problem_response(request, exc)


async def _engine_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, BeatSyncError)
    return problem_response(request, from_engine(exc))


async def _storage_error(request: Request, exc: Exception) -> JSONResponse:
    # The cause names internal endpoints and paths: it goes to the log, not to the client.
    logger.warning("storage unavailable: %s", exc)
    error = ServiceError(
        "STORAGE_UNAVAILABLE", "file storage is unavailable", headers={"Retry-After": "5"}
    )
    return problem_response(request, error)


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    # A lost or refused connection: the client may retry; the cause stays in the log.
    logger.warning("database unavailable: %s", exc)
    error = ServiceError(
        "DATABASE_UNAVAILABLE", "the database is unavailable", headers={"Retry-After": "5"}
    )
    return problem_response(request, error)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = plain_list(exc.errors())
    detail = plain_errors(exc.errors())
    return problem_response(
        request, ServiceError("VALIDATION_ERROR", detail, extra={"errors": errors[:20]})
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(
        exc.status_code, "INTERNAL_ERROR" if exc.status_code >= 500 else "VALIDATION_ERROR"
    )
    error = ServiceError(
        code, str(exc.detail), status=exc.status_code, headers=dict(exc.headers or {})
    )
    return problem_response(request, error)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unexpected error on %s %s", request.method, request.url.path)
    return problem_response(request, ServiceError("INTERNAL_ERROR", "internal server error"))


def install(app: FastAPI) -> None:
    """Route every error class to its problem document."""
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(BeatSyncError, _engine_error)
    app.add_exception_handler(StorageUnavailable, _storage_error)
    app.add_exception_handler(OperationalError, _database_error)
    app.add_exception_handler(InterfaceError, _database_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
