"""Who is logged in: session cookies, CSRF tokens, API bearer tokens.

Only operators get in (the same rule as chat), checked again on every request, so removing
someone from the operators (or from the queue rooms) locks them out at once.
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from dataclasses import dataclass

from fastapi import Request
from starlette.responses import Response

from exobot.db import web as records
from exobot.web.context import WebContext

SESSION_COOKIE = "exobot_session"
# Forms shown before login (the login form, a login link's confirmation) carry a random value
# that must match this cookie: a double-submit token, since there is no session yet.
PRELOGIN_COOKIE = "exobot_prelogin"
CSRF_FIELD = "csrf"
# Under https the cookies are named `__Host-…`: a browser then takes them only with Secure,
# without Domain and with Path=/, so a sibling subdomain or a plain-http page cannot plant or
# overwrite them (session fixation, CSRF token injection).
HOST_PREFIX = "__Host-"
MAX_FORWARDED_CHARS = 4096  # X-Forwarded-For read at most this far (from the right end)


@dataclass(frozen=True)
class Operator:
    """The operator behind a request, and the CSRF token their forms must carry."""

    user_id: str
    csrf: str = ""
    via: str = "session"  # or "token:<name>"


def context(request: Request) -> WebContext:
    """The WebContext of the app serving `request`."""
    return request.app.state.context


async def session_operator(request: Request) -> Operator | None:
    """The logged-in operator of a browser request, or None."""
    token = request.cookies.get(cookie_name(request, SESSION_COOKIE))
    if not token:
        return None
    ctx = context(request)
    async with ctx.repository.reading() as view:
        session = await records.get_session(view.conn, token, ctx.now())
    if session is None or not ctx.is_operator(session.user_id):
        return None
    return Operator(session.user_id, session.csrf)


async def token_operator(request: Request) -> Operator | None:
    """The operator an API bearer token acts as, or None (missing, unknown, revoked)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    ctx = context(request)
    async with ctx.repository.reading() as view:
        found = await records.api_token_user(view.conn, token.strip())
    if found is None:
        return None
    now = ctx.now()
    if found.use_is_stale(now):
        async with ctx.repository.connection() as conn:
            await records.note_token_use(conn, found.id, now)
    return Operator(found.user_id, via=f"token:{found.name}")


async def start_session(request: Request, response: Response, user_id: str) -> None:
    """Log `user_id` in: a new session and its cookie."""
    ctx = context(request)
    async with ctx.repository.connection() as conn:
        token, _session = await records.create_session(
            conn, user_id, ctx.settings.session_ttl, ctx.now()
        )
    response.set_cookie(
        cookie_name(request, SESSION_COOKIE),
        token,
        max_age=int(ctx.settings.session_ttl.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=ctx.settings.secure,
        path="/",
    )
    _delete(request, response, PRELOGIN_COOKIE)


async def end_session(request: Request, response: Response) -> None:
    """Log the browser out (the session is deleted, not just the cookie)."""
    token = request.cookies.get(cookie_name(request, SESSION_COOKIE))
    if token:
        ctx = context(request)
        async with ctx.repository.connection() as conn:
            await records.end_session(conn, token)
    _delete(request, response, SESSION_COOKIE)


def cookie_name(request: Request, base: str) -> str:
    """A cookie's name on this site: `__Host-<base>` under https, `<base>` over plain http
    (the demo and tests), where browsers refuse the prefix."""
    return HOST_PREFIX + base if context(request).settings.secure else base


def _delete(request: Request, response: Response, base: str) -> None:
    # A __Host- cookie is only replaced (here: expired) by one with the same attributes.
    secure = context(request).settings.secure
    response.delete_cookie(cookie_name(request, base), path="/", secure=secure, httponly=True)


def prelogin_cookie(request: Request) -> str:
    """The pre-login token this browser sent ("" if none)."""
    return request.cookies.get(cookie_name(request, PRELOGIN_COOKIE), "")


def csrf_matches(expected: str, given: object) -> bool:
    """Constant-time comparison of a form's CSRF field with the expected token."""
    return bool(expected) and isinstance(given, str) and hmac.compare_digest(expected, given)


def prelogin_token(request: Request) -> str:
    """The double-submit token of this browser's pre-login forms (new if it has none)."""
    return prelogin_cookie(request) or secrets.token_urlsafe(24)


def set_prelogin_cookie(request: Request, response: Response, token: str) -> None:
    """Send the pre-login token's cookie along with a page holding a pre-login form."""
    response.set_cookie(
        cookie_name(request, PRELOGIN_COOKIE),
        token,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=context(request).settings.secure,
        path="/",
    )


def client_address(request: Request) -> str:
    """The client's address, for rate limiting: the direct peer, or, when the peer is one of
    `web.trusted_proxies`, the rightmost address in X-Forwarded-For that is not a trusted
    proxy (the leftmost entries are whatever the client claimed, so they are never used)."""
    peer = request.client.host if request.client else "?"
    trusted = context(request).settings.trusted_proxies
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    hops = ",".join(request.headers.getlist("x-forwarded-for"))[-MAX_FORWARDED_CHARS:]
    for hop in reversed(hops.split(",")):
        hop = hop.strip()
        try:
            address = ipaddress.ip_address(hop)
        except ValueError:
            return peer  # not an address: trust nothing further left
        if not any(address in network for network in trusted):
            return str(address)
    return peer


def _is_trusted(host: str, trusted: tuple) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in trusted)
