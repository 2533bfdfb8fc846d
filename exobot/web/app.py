"""The web application: pages under /, the JSON API under /api/v1, static files."""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import RedirectResponse, Response

from exobot.core.languages import N_
from exobot.db.engine import database_unavailable
from exobot.web import api, login, pages
from exobot.web.api_errors import RETRY_AFTER_SECONDS
from exobot.web.auth import Operator, session_operator
from exobot.web.context import WebContext
from exobot.web.deps import CsrfRefused, LoginRequired
from exobot.web.ratelimit import LoginLimiter
from exobot.web.security import SecurityHeaders
from exobot.web.templating import render
from exobot.web.words import CSRF_REFUSED, HTTP_ERRORS
from exobot.wording import ERRORS

STATIC = Path(__file__).parent / "static"

log = logging.getLogger("exobot.web")

#: The error page of a status without words of its own (said with the status as the code).
COULD_NOT = N_("That could not be done ({code}).")


def create_app(context: WebContext) -> FastAPI:
    """The whole web application over one context."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.state.context = context
    app.state.limiter = LoginLimiter()
    app.include_router(login.router)
    app.include_router(pages.router)
    app.mount("/api/v1", api.create_api(context), name="api")
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_api_route("/favicon.ico", _favicon, include_in_schema=False)
    app.add_exception_handler(LoginRequired, _to_login)
    app.add_exception_handler(CsrfRefused, _csrf_refused)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_middleware(SecurityHeaders, secure=context.settings.secure, csp=context.settings.csp)
    return app


async def _favicon() -> Response:
    """Browsers that ask for /favicon.ico get the page's icon (an SVG)."""
    return RedirectResponse("/static/favicon.svg", status_code=301)


async def _to_login(request: Request, error: LoginRequired) -> Response:
    # `next` encoded whole: the page's own query (several filters) comes back intact.
    query = urlencode({"next": error.next_path}, safe="/")
    return RedirectResponse(f"/login?{query}", status_code=303)


async def _csrf_refused(request: Request, error: CsrfRefused) -> Response:
    operator = await _reader(request)
    return render(
        request, "error.html", status_code=403, operator=operator, message_key=CSRF_REFUSED
    )


async def _reader(request: Request) -> Operator | None:
    """The logged-in operator an error page is for (its menu and "Log out"), or None: logged
    out, or the database cannot say (the error page is shown all the same)."""
    try:
        return await session_operator(request)
    except DBAPIError as error:
        log.warning("error page %s: no session lookup: %s", request.url.path, error.orig or error)
        return None


async def _database_error(request: Request, error: DBAPIError) -> Response:
    if not database_unavailable(error):
        raise error  # a bug: the server's 500, with its traceback logged
    log.warning(
        "page %s %s: the database cannot be reached: %s",
        request.method,
        request.url.path,
        error.orig or error,
    )
    response = render(request, "error.html", status_code=503, message_key=ERRORS["unavailable"])
    response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


async def _http_error(request: Request, error: StarletteHTTPException) -> Response:
    """Every error is a page in the reader's language, never the framework's English (such as
    a form too large to read, 400); one without words of its own says its status."""
    status = error.status_code
    if status < 400:  # not an error (a 304, say): no page
        return Response(status_code=status, headers=error.headers)
    key = HTTP_ERRORS.get(status)
    params = {} if key else {"code": status}
    response = render(
        request,
        "error.html",
        status_code=status,
        operator=await _reader(request),
        message_key=key or COULD_NOT,
        message_params=params,
    )
    response.headers.update(error.headers or {})  # such as a 405's Allow
    return response
