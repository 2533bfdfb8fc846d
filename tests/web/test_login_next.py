"""The login page sends a logged-out reader back to the page they asked for, whole: a list's
query with several filters survives the round trip; another site is still never a target."""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.web.test_security import _CSRF, PASSWORD, VOL, _app

_NEXT = re.compile(r'name="next" value="([^"]*)"')


@pytest.fixture
async def client(repo):
    app = _app(repo, root="http://t", secure=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        yield c


async def round_trip(client: httpx.AsyncClient, target: str) -> tuple[str, str]:
    """Ask for `target` logged out, follow to the login page and log in there: where the
    login page says it goes back to, and where the login sends the reader."""
    sent = await client.get(target)
    assert sent.status_code == 303
    login = await client.get(sent.headers["location"])
    assert login.status_code == 200
    back = html.unescape(_NEXT.search(login.text).group(1))
    csrf = _CSRF.search(login.text).group(1)
    logged = await client.post(
        "/login", data={"csrf": csrf, "user": VOL, "password": PASSWORD, "next": back}
    )
    assert logged.status_code == 303
    return back, logged.headers["location"]


@pytest.mark.parametrize(
    "target",
    [
        "/tickets?status=new&status=open&q=wifi",
        "/tickets?q=a%26b%3Dc&queue=suport",  # & and = inside a value
        "/tickets?q=caf%C3%A9+i+t%C3%A8&page=2",  # non-ASCII text, spaces as +
    ],
)
async def test_the_login_comes_back_with_every_filter(client, target):
    back, location = await round_trip(client, target)
    assert back == target
    assert location == target
    assert parse_qs(urlsplit(location).query) == parse_qs(urlsplit(target).query)


async def test_the_login_redirect_encodes_the_whole_target(client):
    sent = await client.get("/tickets?status=new&status=open")
    location = sent.headers["location"]
    assert parse_qs(urlsplit(location).query) == {"next": ["/tickets?status=new&status=open"]}


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil"])
async def test_an_encoded_target_on_another_site_still_goes_home(client, target):
    login = await client.get("/login", params={"next": target})
    assert html.unescape(_NEXT.search(login.text).group(1)) == "/"
