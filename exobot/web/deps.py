"""Request dependencies: the operator behind a page or an API call, and CSRF checks."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request
from starlette.routing import Match, Mount

from exobot.web import auth
from exobot.web.auth import Operator
from exobot.web.schemas import MAX_TEXT_CHARS


class LoginRequired(Exception):
    """A page needs a logged-in operator: the app answers with a redirect to /login."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class CsrfRefused(Exception):
    """A form came without this session's CSRF token: the app answers 403."""


async def page_operator(request: Request) -> Operator:
    """The operator viewing a page; anyone else is sent to the login page, which comes back
    here: the path, percent-encoded, and the query string as it came. A form sent after the
    session ended comes back to the page it was on (the login's redirect is a GET, and a
    GET of a form's path is no page: 405)."""
    operator = await auth.session_operator(request)
    if operator is None:
        if request.method in ("GET", "HEAD"):
            target = quote(request.url.path)
            if request.url.query:
                target += "?" + request.url.query
        else:
            target = quote(page_of(request.app, request.url.path))
        raise LoginRequired(target)
    return operator


def page_of(app: Any, path: str) -> str:
    """The page a form posted to `path` was on: the path itself when it is also a page (GET),
    else its nearest parent that is (`/tickets/3/reply` → `/tickets/3`, `/quarantine/5/retry`
    → `/quarantine`); `/` when none is."""
    while path not in ("", "/"):
        if _has_page(app, path):
            return path
        path = path.rstrip("/").rpartition("/")[0]
    return "/"


def _has_page(app: Any, path: str) -> bool:
    """Whether a GET of `path` is one of the app's own routes (a mounted app, such as the
    API or the static files, is no page)."""
    scope = {"type": "http", "method": "GET", "path": path, "root_path": ""}
    return any(
        not isinstance(route, Mount) and route.matches(scope)[0] is Match.FULL
        for route in app.router.routes
    )


async def form_operator(request: Request) -> Operator:
    """The operator submitting a form, which must carry their session's CSRF token; a text
    longer than the API takes (MAX_TEXT_CHARS) is refused as there (413, the error page)."""
    operator = await page_operator(request)
    form = await request.form()
    if not auth.csrf_matches(operator.csrf, form.get(auth.CSRF_FIELD)):
        raise CsrfRefused()
    if any(
        isinstance(value, str) and len(value) > MAX_TEXT_CHARS for _, value in form.multi_items()
    ):
        raise HTTPException(413)
    return operator


async def api_operator(request: Request) -> Operator:
    """The operator an API call acts as: a bearer token of a current operator."""
    if not request.headers.get("authorization"):
        raise HTTPException(401, "missing bearer token (Authorization: Bearer …)")
    operator = await auth.token_operator(request)
    if operator is None:
        raise HTTPException(401, "unknown or revoked token")
    if not auth.context(request).is_operator(operator.user_id):
        raise HTTPException(403, f"{operator.user_id} is not an operator")
    return operator


PageOperator = Annotated[Operator, Depends(page_operator)]
FormOperator = Annotated[Operator, Depends(form_operator)]
ApiOperator = Annotated[Operator, Depends(api_operator)]
