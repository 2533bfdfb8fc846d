"""Headers, cookies and redirects of the web app (in-process, real SQLite)."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
import pytest
from clocks import ShiftedClock

from exobot.core.service import ServiceSettings, TicketService
from exobot.db.repository import SqlRepository
from exobot.mail.msgid import MessageIds
from exobot.web.app import create_app
from exobot.web.auth import PRELOGIN_COOKIE, SESSION_COOKIE
from exobot.web.context import WebContext, WebSettings, no_matrix

VOL = "@vol:example.org"
PASSWORD = "bona-contrasenya"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


async def _check_password(user: str, password: str) -> str | None:
    return VOL if (user, password) == (VOL, PASSWORD) else None


def _app(repo: SqlRepository, *, root: str, secure: bool, clock: ShiftedClock | None = None):
    settings = ServiceSettings(
        prefix="suport", default_queue="suport", queues=frozenset({"suport"}), own_address="s@x.org"
    )
    service = TicketService(repo, MessageIds("secret" * 4, "x.org"), settings, clock=clock)
    context = WebContext(
        WebSettings(root=root, secure=secure),
        repo,
        service,
        is_operator=lambda user: user == VOL,
        check_password=_check_password,
    )
    return create_app(context)


@pytest.fixture
async def https(repo):
    app = _app(repo, root="https://suport.example.org", secure=True)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="https://suport.example.org"
    ) as client:
        yield client


async def _login(client: httpx.AsyncClient, next_path: str = "/") -> httpx.Response:
    form = await client.get("/login")
    csrf = _CSRF.search(form.text).group(1)
    return await client.post(
        "/login", data={"csrf": csrf, "user": VOL, "password": PASSWORD, "next": next_path}
    )


def _cookie(response: httpx.Response, name: str) -> str:
    return next(v for v in response.headers.get_list("set-cookie") if v.startswith(name + "="))


async def test_every_response_carries_the_security_headers(https):
    for path in ("/login", "/", "/nowhere", "/static/style.css", "/api/v1/openapi.json"):
        response = await https.get(path)
        headers = response.headers
        assert "script-src 'self'" in headers["content-security-policy"], path
        assert "'unsafe-inline'" not in headers["content-security-policy"]
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["strict-transport-security"].startswith("max-age=")


async def test_the_session_cookie_is_httponly_samesite_and_secure_over_https(https):
    logged = await _login(https)
    assert logged.status_code == 303
    cookie = _cookie(logged, "__Host-" + SESSION_COOKIE).lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "secure" in cookie
    assert "path=/" in cookie and "domain" not in cookie  # what the __Host- prefix demands
    assert not any(  # no cookie without the prefix under https
        v.startswith(SESSION_COOKIE) for v in logged.headers.get_list("set-cookie")
    )
    prelogin = _cookie(await https.get("/login"), "__Host-" + PRELOGIN_COOKIE).lower()
    assert "httponly" in prelogin and "samesite=strict" in prelogin and "secure" in prelogin
    assert "path=/" in prelogin and "domain" not in prelogin
    # The session works under its prefixed name, and logging out expires it the same way.
    assert (await https.get("/")).status_code == 200
    https.cookies.set(SESSION_COOKIE, https.cookies.get("__Host-" + SESSION_COOKIE))
    https.cookies.delete("__Host-" + SESSION_COOKIE)
    assert (await https.get("/")).status_code == 303  # the unprefixed name is not believed


async def test_plain_http_cookies_are_not_marked_secure(repo):
    app = _app(repo, root="http://127.0.0.1:8080", secure=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8080"
    ) as client:
        logged = await _login(client)
        assert "secure" not in _cookie(logged, SESSION_COOKIE).lower()
        assert "__Host-" not in logged.headers.get("set-cookie", "")
        assert (await client.get("/")).status_code == 200
        assert "strict-transport-security" not in logged.headers


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil"])
async def test_login_never_redirects_to_another_site(https, target):
    logged = await _login(https, next_path=target)
    assert logged.headers["location"] == "/"


async def test_logout_needs_the_sessions_token_and_ends_the_session(https, repo):
    await _login(https)
    page = await https.get("/")
    csrf = _CSRF.search(page.text).group(1)
    refused = await https.post("/logout", data={"csrf": "forged"})
    assert refused.status_code == 403
    assert (await https.get("/")).status_code == 200
    out = await https.post("/logout", data={"csrf": csrf})
    assert out.status_code == 303
    assert (await https.get("/")).status_code == 303
    async with repo.connection() as conn:
        assert (await conn.exec_driver_sql("SELECT count(*) FROM web_sessions")).scalar() == 0


async def test_an_expired_session_is_sent_to_login(repo):
    clock = ShiftedClock()  # the web reads the service's clock
    app = _app(repo, root="http://t", secure=False, clock=clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        await _login(c)
        clock.advance(app.state.context.settings.session_ttl - timedelta(minutes=1))
        assert (await c.get("/tickets")).status_code == 200
        clock.advance(minutes=2)
        answer = await c.get("/tickets")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=/tickets"


async def test_someone_no_longer_an_operator_is_out_at_once(repo):
    members = {VOL}
    app = _app(repo, root="http://t", secure=False)
    app.state.context.is_operator = lambda user: user in members
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        await _login(c)
        assert (await c.get("/")).status_code == 200
        members.clear()
        assert (await c.get("/")).status_code == 303


async def test_without_matrix_the_login_page_says_why_nobody_can_log_in(repo):
    app = _app(repo, root="http://t", secure=False)
    app.state.context.check_password = no_matrix
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        page = await c.get("/login")
        assert page.status_code == 503
        assert "secció matrix" in page.text
