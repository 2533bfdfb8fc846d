"""The password login's limits, in process: usernames capped and made canonical, bounded
counts, the client address behind trusted proxies only, a spray from a shared address that
cannot lock operators out, and `!login` links that are never limited (issue 9, section 4)."""

from __future__ import annotations

import ipaddress
import re
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from exobot.core.service import ServiceSettings, TicketService
from exobot.db import web as records
from exobot.mail.msgid import MessageIds
from exobot.web.app import create_app
from exobot.web.context import WebContext, WebSettings
from exobot.web.login import canonical_user_id

VOL = "@vol:example.org"
PASSWORD = "bona-contrasenya"
PROXY = "10.0.0.1"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class Homeserver:
    """Stands in for the homeserver's login API and counts the calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, user: str, password: str) -> str | None:
        self.calls.append(user)
        return VOL if (user, password) == (VOL, PASSWORD) else None


@pytest.fixture
def homeserver() -> Homeserver:
    return Homeserver()


def make_app(repo, homeserver: Homeserver, trusted: tuple[str, ...] = ()):
    service = TicketService(
        repo,
        MessageIds("secret" * 4, "example.org"),
        ServiceSettings(queues=frozenset({"suport"}), own_address="s@example.org"),
    )
    settings = WebSettings(
        root="http://test",
        secure=False,
        server_name="example.org",
        trusted_proxies=tuple(ipaddress.ip_network(t) for t in trusted),
    )
    context = WebContext(
        settings, repo, service, is_operator=lambda u: u == VOL, check_password=homeserver
    )
    return create_app(context)


def client(app, peer: str = PROXY) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def login(http: httpx.AsyncClient, user: str, password: str, **headers: str):
    form = await http.get("/login")
    csrf = _CSRF.search(form.text).group(1)
    return await http.post(
        "/login",
        data={"csrf": csrf, "user": user, "password": password},
        headers=headers,
    )


def test_usernames_are_made_canonical():
    for typed in ("vol", "@vol", "@vol:example.org", " VOL ", "@Vol:Example.org"):
        assert canonical_user_id(typed, "example.org") == VOL
    assert canonical_user_id("vol", "") is None
    assert canonical_user_id("", "example.org") is None
    assert canonical_user_id("a b", "example.org") is None
    assert canonical_user_id("v" * 300, "example.org") is None
    assert canonical_user_id("@" + "v" * 240 + ":example.org", "example.org") is not None


async def test_a_huge_username_is_refused_without_asking_the_homeserver(repo, homeserver):
    app = make_app(repo, homeserver)
    async with client(app) as http:
        for _ in range(20):
            answer = await login(http, "x" * 1_000_000, "wrong")
            assert answer.status_code == 400
            assert "x" * 256 not in answer.text  # the form shows back at most 255
    assert homeserver.calls == []
    assert app.state.limiter.tracked() == 0


async def test_every_form_of_a_username_counts_against_one_account(repo, homeserver):
    app = make_app(repo, homeserver)
    async with client(app) as http:
        for typed in ("vol", "@vol", "@VOL:example.org", "Vol", "@vol:example.org"):
            assert (await login(http, typed, "wrong")).status_code == 401
        assert (await login(http, "vol", PASSWORD)).status_code == 429
    assert homeserver.calls == [VOL] * 5  # always asked with the canonical id


async def test_a_spray_through_the_proxy_leaves_operators_able_to_log_in(repo, homeserver):
    app = make_app(repo, homeserver)
    async with client(app) as http:
        for n in range(20):
            assert (await login(http, f"random{n}", "guess")).status_code == 401
        blocked = await login(http, "random99", "guess")
        assert blocked.status_code == 429 and "retry-after" in blocked.headers
        assert len(homeserver.calls) == 20  # the 21st costs the homeserver nothing
        # The operator, from the same shared address, with the right password, gets in.
        right = await login(http, "vol", PASSWORD)
        assert right.status_code == 303, right.text
        assert (await http.get("/")).status_code == 200


async def test_a_brute_force_on_an_operator_is_stopped(repo, homeserver):
    app = make_app(repo, homeserver)
    async with client(app) as http:
        statuses = [(await login(http, "vol", f"guess{n}")).status_code for n in range(6)]
    assert statuses == [401] * 5 + [429]
    async with client(app, peer="192.0.2.55") as elsewhere:
        assert (await login(elsewhere, "vol", PASSWORD)).status_code == 429


async def test_forwarded_addresses_count_only_from_a_trusted_proxy(repo, homeserver):
    app = make_app(repo, homeserver, trusted=(PROXY,))
    async with client(app) as http:
        # Behind the trusted proxy, each member has their own count.
        for n in range(20):
            answer = await login(http, f"r{n}", "x", **{"X-Forwarded-For": "203.0.113.5"})
            assert answer.status_code == 401
        spray = await login(http, "r99", "x", **{"X-Forwarded-For": "198.51.100.1, 203.0.113.5"})
        assert spray.status_code == 429  # the rightmost hop is the client; the rest is claimed
        other = await login(http, "r99", "x", **{"X-Forwarded-For": "203.0.113.6"})
        assert other.status_code == 401
    async with client(app, peer="192.0.2.9") as direct:
        # Anyone else's X-Forwarded-For is not believed: their own address counts.
        for n in range(20):
            await login(direct, f"s{n}", "x", **{"X-Forwarded-For": f"198.51.100.{n}"})
        answer = await login(direct, "s99", "x", **{"X-Forwarded-For": "198.51.100.200"})
        assert answer.status_code == 429


async def test_login_links_are_never_limited(repo, homeserver):
    app = make_app(repo, homeserver)
    async with client(app) as http:
        for n in range(25):
            await login(http, f"random{n}", "guess")
        for _ in range(3):
            async with repo.connection() as conn:
                token = await records.create_login_link(
                    conn, VOL, timedelta(minutes=10), datetime.now(UTC)
                )
            page = await http.get(f"/login/link/{token}")
            csrf = _CSRF.search(page.text).group(1)
            used = await http.post(f"/login/link/{token}", data={"csrf": csrf})
            assert used.status_code == 303
            assert used.headers["location"] == "/"


def test_trusted_proxies_are_checked_in_the_configuration():
    from exobot.config import ConfigError, parse_config

    base = {
        "mail": {
            "address": "suport@example.org",
            "imap": {"host": "imap.example.org", "username": "s@example.org", "password": "pw"},
            "smtp": {"host": "smtp.example.org"},
        }
    }
    assert parse_config(base).web.proxy_networks == ()
    good = parse_config(base | {"web": {"trusted_proxies": ["127.0.0.1", "10.0.0.0/8", "::1"]}})
    assert [str(n) for n in good.web.proxy_networks] == ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]
    with pytest.raises(ConfigError) as refused:
        parse_config(base | {"web": {"trusted_proxies": ["proxy.example.org"]}})
    [problem] = refused.value.problems
    assert problem.startswith("web.trusted_proxies") and "proxy.example.org" in problem
