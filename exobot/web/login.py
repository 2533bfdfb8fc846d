"""Logging in and out: the `!login` link (the main way) and Matrix user and password."""

from __future__ import annotations

import logging
import math

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from exobot.core.addresses import is_user_id
from exobot.core.languages import LANGUAGES, N_
from exobot.db import web as records
from exobot.web import auth
from exobot.web.homeserver import HomeserverUnavailable
from exobot.web.ratelimit import LoginLimiter
from exobot.web.templating import LANGUAGE_COOKIE, render

log = logging.getLogger("exobot.web.login")

router = APIRouter()

MAX_USER_CHARS = 255  # a Matrix id is at most 255 characters


def _safe_next(target: str | None) -> str:
    """Only a path on this site: never an open redirect."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def canonical_user_id(user: str, server_name: str) -> str | None:
    """The Matrix id a login form's user names, lower-cased: `anna`, `@anna` and
    `@anna:example.org` are all `@anna:example.org` (with `server_name` example.org). None
    when it is empty, longer than MAX_USER_CHARS or not a Matrix id."""
    user = user.strip()
    if not user or len(user) > MAX_USER_CHARS:
        return None
    if not user.startswith("@"):
        user = "@" + user
    if ":" not in user:
        if not server_name:
            return None
        user = f"{user}:{server_name}"
    return user.lower() if is_user_id(user) else None


def _limiter(request: Request) -> LoginLimiter:
    return request.app.state.limiter


def _login_page(
    request: Request, *, error: str | None = None, status: int = 200, user: str = ""
) -> Response:
    token = auth.prelogin_token(request)
    if not auth.context(request).has_matrix:
        error, status = (N_("Logging in needs the Matrix identity, but this exobot has no Matrix server configured (the matrix section of the configuration)."), {}), 503
    response = render(
        request,
        "login.html",
        status_code=status,
        csrf=token,
        error=error,
        user=user,
        next=_safe_next(request.query_params.get("next")),
    )
    auth.set_prelogin_cookie(request, response, token)
    return response


@router.get("/login")
async def login_form(request: Request) -> Response:
    """The login page: how to get a link from chat, and the password form."""
    return _login_page(request)


@router.post("/login")
async def login_with_password(
    request: Request,
    user: str = Form(""),
    password: str = Form(""),
    csrf: str = Form(""),
    next: str = Form("/"),  # noqa: A002 - the form field's name
) -> Response:
    """Check a Matrix user and password with the homeserver; operators get a session."""
    ctx = auth.context(request)
    say_error = N_("The user or the password is not right.")
    if not auth.csrf_matches(auth.prelogin_cookie(request), csrf):
        return render(request, "error.html", status_code=403, message_key=N_("This form expired or did not come from this site. Reload the page and try again."))
    user = user.strip()[: MAX_USER_CHARS + 1]  # what the page shows back, never more
    account = canonical_user_id(user, ctx.settings.server_name)
    if account is None or not password:
        # Malformed or over-long: refused without asking the homeserver or counting anything.
        return _login_page(request, error=(say_error, {}), status=400, user=user[:MAX_USER_CHARS])
    client = auth.client_address(request)
    limiter = _limiter(request)
    wait = limiter.retry_after(client, account, operator=ctx.is_operator(account))
    if wait > 0:
        response = _login_page(
            request,
            error=(N_("Too many failed attempts. Try again in {minutes} min."), {"minutes": max(1, math.ceil(wait / 60))}),
            status=429,
            user=user,
        )
        response.headers["retry-after"] = str(math.ceil(wait))
        return response
    try:
        user_id = await ctx.check_password(account, password)
    except HomeserverUnavailable as error:
        log.warning("password login of %s: homeserver unavailable: %s", account, error)
        return _login_page(request, error=(N_("We cannot reach the Matrix server right now. Try again later."), {}), status=503, user=user)
    if user_id is None:
        limiter.failed(client, account)
        log.info("password login of %s from %s refused", account, client)
        return _login_page(request, error=(say_error, {}), status=401, user=user)
    if not ctx.is_operator(user_id):
        log.info("password login of %s refused: not an operator", user_id)
        return _login_page(
            request, error=(N_("{user} is not in the support team."), {"user": user_id}), status=403, user=user
        )
    limiter.succeeded(account)
    log.info("%s logged in with a password", user_id)
    response = RedirectResponse(_safe_next(next), status_code=303)
    await auth.start_session(request, response, user_id)
    return response


@router.get("/login/link/{token}")
async def link_confirm(request: Request, token: str) -> Response:
    """A `!login` link: a page with one button, so a link preview cannot spend it."""
    ctx = auth.context(request)
    async with ctx.repository.reading() as view:
        user_id = await records.peek_login_link(view.conn, token, ctx.now())
    if user_id is None:
        return render(request, "error.html", status_code=404, message_key=N_("This link is not valid: it was already used or it expired. Ask for another one by typing !login in the support room."))
    csrf = auth.prelogin_token(request)
    response = render(request, "link.html", user_id=user_id, token=token, csrf=csrf)
    auth.set_prelogin_cookie(request, response, csrf)
    return response


@router.post("/login/link/{token}")
async def link_login(request: Request, token: str, csrf: str = Form("")) -> Response:
    """Spend a `!login` link and open a session."""
    ctx = auth.context(request)
    if not auth.csrf_matches(auth.prelogin_cookie(request), csrf):
        return render(request, "error.html", status_code=403, message_key=N_("This form expired or did not come from this site. Reload the page and try again."))
    async with ctx.repository.connection() as conn:
        user_id = await records.use_login_link(conn, token, ctx.now())
    if user_id is None:
        return render(request, "error.html", status_code=404, message_key=N_("This link is not valid: it was already used or it expired. Ask for another one by typing !login in the support room."))
    if not ctx.is_operator(user_id):
        return render(request, "error.html", status_code=403, message_key=N_("Only the support team can do this."))
    log.info("%s logged in with a link", user_id)
    response = RedirectResponse("/", status_code=303)
    await auth.start_session(request, response, user_id)
    return response


@router.post("/logout")
async def logout(request: Request, csrf: str = Form("")) -> Response:
    """End the session (a form with the session's CSRF token, so no site can log you out)."""
    operator = await auth.session_operator(request)
    if operator is not None and not auth.csrf_matches(operator.csrf, csrf):
        return render(request, "error.html", status_code=403, message_key=N_("This form expired or did not come from this site. Reload the page and try again."))
    response = RedirectResponse("/login", status_code=303)
    await auth.end_session(request, response)
    return response


@router.post("/language")
async def choose_language(
    request: Request, lang: str = Form(""), next: str = Form("/")  # noqa: A002
) -> Response:
    """Remember the reader's language (a cookie; harmless without CSRF)."""
    response = RedirectResponse(_safe_next(next), status_code=303)
    if lang in LANGUAGES:
        response.set_cookie(LANGUAGE_COOKIE, lang, max_age=365 * 86400, samesite="lax", path="/")
    return response
