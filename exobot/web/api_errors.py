"""The JSON API's errors: one shape, `{"error": code, "message": text}`, with a clear status.

Service and action errors are worded by the shared wording (`exobot.wording`) in English, so an API client reads
the same sentence a volunteer would read in Matrix.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from exobot.core.service import NotAllowed, ServiceError, TicketNotFound
from exobot.db.engine import database_unavailable
from exobot.web.actions import ActionError, error_message
from exobot.wording import Wording

log = logging.getLogger("exobot.web.api")

#: Seconds a client is asked to wait when the database cannot be reached (a restart takes
#: seconds; a client that retries sooner only adds load).
RETRY_AFTER_SECONDS = 30

# Service codes that mean "valid, but not in the ticket's current state": 409, not 400.
CONFLICTS = frozenset(
    {
        "already_owner",
        "already_unowned",
        "same_title",
        "same_queue",
        "same_status",
        "back_to_new",
        "no_unverified",
        "already_handled",
    }
)

# Service codes of the API alone, answered 422 with the service's own (English) message: an
# Idempotency-Key already used for a different request.
UNPROCESSABLE = frozenset({"key_reused"})

# Codes of HTTP-level failures (no catalog message: the detail says it).
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "not_operator",
    404: "not_found",
    405: "method_not_allowed",
}


class ApiError(Exception):
    """An API answer other than success, raised by an endpoint."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(status: int, code: str, message: str) -> JSONResponse:
    """The one error shape; 401s also name the scheme and 503s say when to come back, as HTTP
    asks."""
    headers = None
    if status == 401:
        headers = {"WWW-Authenticate": "Bearer"}
    elif status == 503:
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    return JSONResponse({"error": code, "message": message}, status, headers=headers)


def status_of(error: ServiceError) -> int:
    """The HTTP status of a service refusal."""
    if isinstance(error, TicketNotFound):
        return 404
    if isinstance(error, NotAllowed):
        return 403
    if error.code in UNPROCESSABLE:
        return 422
    return 409 if error.code in CONFLICTS else 400


def message_of(renderer: Wording, code: str, params: Mapping[str, object]) -> str:
    """The English sentence of an error code (the pages' wording)."""
    return error_message(renderer, code, params)


def install(api: FastAPI, renderer: Wording) -> None:
    """Answer every error of the API app (only it) in the JSON shape."""

    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.code, error.message)

    async def service_error(request: Request, error: ServiceError) -> JSONResponse:
        if error.code in UNPROCESSABLE:  # no catalog sentence: the chat never meets it
            return error_response(status_of(error), error.code, str(error))
        return error_response(
            status_of(error), error.code, message_of(renderer, error.code, error.params)
        )

    async def action_error(request: Request, error: ActionError) -> JSONResponse:
        return error_response(400, error.code, message_of(renderer, error.code, error.params))

    async def invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        return error_response(422, "invalid_request", describe_validation(error))

    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(error.status_code, "http_error")
        message = str(error.detail)
        if error.status_code == 404 and message == "Not Found":
            message = f"there is no API endpoint {request.method} {request.url.path}"
        elif error.status_code == 405:
            message = f"{request.url.path} does not accept {request.method}"
        return error_response(error.status_code, code, message)

    async def database_error(request: Request, error: DBAPIError) -> JSONResponse:
        if not database_unavailable(error):
            raise error  # a wrong statement is a bug: the 500 below, with its traceback
        # An outage, not a bug: one line, no traceback per request while it lasts.
        log.warning(
            "API request %s %s: the database cannot be reached: %s",
            request.method,
            request.url.path,
            error.orig or error,
        )
        return error_response(503, "unavailable", message_of(renderer, "unavailable", {}))

    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        # The server logs the traceback (the exception goes on up); this names the request.
        log.error("API request %s %s failed: %r", request.method, request.url.path, error)
        return error_response(500, "internal", message_of(renderer, "internal", {}))

    api.add_exception_handler(ApiError, api_error)
    api.add_exception_handler(ServiceError, service_error)
    api.add_exception_handler(ActionError, action_error)
    api.add_exception_handler(RequestValidationError, invalid)
    api.add_exception_handler(StarletteHTTPException, http_error)
    api.add_exception_handler(DBAPIError, database_error)
    api.add_exception_handler(Exception, unexpected)


def describe_validation(error: RequestValidationError) -> str:
    """FastAPI's validation errors as one readable line: `body.text: Field required; …`."""
    problems = []
    for item in error.errors():
        where = ".".join(str(part) for part in item.get("loc", ()))
        problems.append(f"{where}: {item.get('msg', 'invalid')}" if where else item.get("msg"))
    return "malformed request: " + ("; ".join(str(p) for p in problems) or "invalid")
