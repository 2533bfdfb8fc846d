"""Request dependencies: the operator behind a page or an API call, and CSRF checks."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request

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
    """The operator viewing a page; anyone else is sent to the login page (which comes back
    here: the path, percent-encoded, and the query string as it came)."""
    operator = await auth.session_operator(request)
    if operator is None:
        target = quote(request.url.path)
        if request.url.query:
            target += "?" + request.url.query
        raise LoginRequired(target)
    return operator


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
