"""The connectivity panel and graph routes in process: the real web app (httpx's ASGI
transport) over a migrated SQLite database (the core's schema and the plugin's branch), rounds
written through `store.py`, and a small stand-in for the plugin context that mounts the
plugin's routers the way `PluginContext` does. The PNG with its type and no-store, the panel's
figures and period links (escaped), 401 without a token, 404 for a ticket without monitors."""

from __future__ import annotations

import io
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import exobot_connectivity
import httpx
import pytest
from exobot_connectivity import store
from exobot_connectivity.web import register_web
from PIL import Image

from exobot import i18n
from exobot.core import intents
from exobot.core.model import Actor, IncomingMail
from exobot.core.service import ServiceSettings, TicketService
from exobot.db import web as records
from exobot.db.engine import create_engine, create_sync_engine
from exobot.db.migrate import upgrade_async
from exobot.db.repository import SqlRepository
from exobot.mail.msgid import MessageIds
from exobot.plugins.context import _include
from exobot.web.app import create_app
from exobot.web.auth import SESSION_COOKIE
from exobot.web.context import WebContext, WebSettings

ANNA = "@anna:example.org"
NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)
STEP = timedelta(minutes=5)
MIGRATIONS = Path(exobot_connectivity.__file__).parent / "migrations"
LOCALE = Path(exobot_connectivity.__file__).parent / "locale"


class Clock:
    def now(self) -> datetime:
        return NOW


class Ctx:
    """What web.py uses of a PluginContext, over the real repository and web app."""

    def __init__(self, repo: SqlRepository, settings: ServiceSettings, app) -> None:
        self.repo = repo
        self.settings = settings
        self.clock = Clock()
        self.app = app
        self.panels: list = []
        self.domain = "connectivity"
        self.timezone = ZoneInfo("Europe/Madrid")  # alerts.timezone

    def connection(self):
        return self.repo.connection()

    def say(self, language: str, msgid: str, **params: object) -> str:
        return i18n.say(language, msgid, domain=self.domain, **params)

    def web_router(self, router) -> None:
        _include(self.app, router, "/plugins/connectivity")

    def api_router(self, router) -> None:
        from starlette.routing import Mount

        api = next(r.app for r in self.app.routes if isinstance(r, Mount) and r.path == "/api/v1")
        _include(api, router, "/plugins/connectivity")

    def add_panel(self, fn) -> None:
        self.panels.append(fn)


@pytest.fixture
async def world(tmp_path):
    i18n.add_domain("connectivity", LOCALE)
    url = f"sqlite:///{tmp_path / 'exobot.db'}"
    await upgrade_async(url, {"connectivity": MIGRATIONS})
    repo = SqlRepository(create_engine(url), create_sync_engine(url))
    settings = ServiceSettings()
    service = TicketService(repo, MessageIds("secret" * 4, "example.org"), settings)
    web = WebContext(WebSettings(root="http://test", secure=False), repo, service,
                     is_operator=lambda user: user == ANNA)
    app = create_app(web)
    ctx = Ctx(repo, settings, app)

    async def panels(ticket, language):
        return [p for p in [await fn(ticket, language) for fn in ctx.panels] if p is not None]

    web.panels = panels
    register_web(ctx)
    async with repo.connection() as conn:
        secret = await records.create_api_token(conn, "anna", ANNA, datetime.now(UTC))
        session, _ = await records.create_session(conn, ANNA, timedelta(hours=1),
                                                  datetime.now(UTC))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        client.cookies.set(SESSION_COOKIE, session)
        yield {"client": client, "service": service, "repo": repo,
               "bearer": {"Authorization": f"Bearer {secret}"}}
    await repo.close()
    i18n.remove_domain("connectivity")


_mails = itertools.count(1)


async def _ticket(service: TicketService) -> int:
    mail = IncomingMail(message_id=f"<m{next(_mails)}@member.test>", sender="marta@example.net",
                        sender_name="Marta", requestor="marta@example.net",
                        subject="No em funciona internet", body="Res", received_at=NOW)
    outcome = await service.apply(Actor.member("marta@example.net"),
                                  intents.ReceiveMail(mail, intents.MailClass.MEMBER))
    return outcome.ticket


async def _monitor(repo, ticket: int | None, target: str, rounds: list[tuple[int, float]]):
    """A monitor with `rounds` (received of 20, base RTT ms), the last one at NOW - STEP."""
    async with repo.connection() as conn:
        monitor = await store.start(conn, ticket=ticket, target=target, kind="icmp",
                                    host=target, port=None, by=ANNA, now=NOW - 2 * STEP * 30)
        for i, (received, base) in enumerate(rounds):
            at = NOW - STEP * (len(rounds) - i)
            await store.record_round(conn, monitor.id, at=at, sent=20, received=received,
                                     rtts=[base + k * 0.5 for k in range(received)])
    return monitor


async def test_graph_png_page_and_api_and_404s(world):
    client, repo = world["client"], world["repo"]
    number = await _ticket(world["service"])
    other = await _ticket(world["service"])
    await _monitor(repo, number, "192.0.2.7", [(20, 30.0)] * 10 + [(14, 80.0)] * 3)
    await _monitor(repo, None, "10.0.0.1", [(20, 2.0)] * 13)

    for period, size in (("3h", (800, 400)), ("24h", (800, 400)), ("7d", (800, 400))):
        response = await client.get(f"/plugins/connectivity/tickets/{number}/graph.png",
                                    params={"period": period})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "image/png"
        assert response.headers["cache-control"] == "no-store"
        assert Image.open(io.BytesIO(response.content)).size == size

    # A target the ticket never had, and an unknown period.
    response = await client.get(f"/plugins/connectivity/tickets/{number}/graph.png",
                                params={"target": "198.51.100.1"})
    assert response.status_code == 404
    response = await client.get(f"/plugins/connectivity/tickets/{number}/graph.png",
                                params={"period": "1y"})
    assert response.status_code == 400
    # A ticket without monitors, and one that does not exist.
    for missing in (other, other + 100):
        response = await client.get(f"/plugins/connectivity/tickets/{missing}/graph.png")
        assert response.status_code == 404

    # Without a session the page route sends to the login page, without a token the API 401s.
    anonymous = httpx.AsyncClient(transport=client._transport, base_url="http://test")
    async with anonymous:
        response = await anonymous.get(f"/plugins/connectivity/tickets/{number}/graph.png")
        assert response.status_code in (302, 303, 307)
        assert "/login" in response.headers["location"]
        for path in ("graph.png", "monitors"):
            response = await anonymous.get(
                f"/api/v1/plugins/connectivity/tickets/{number}/{path}")
            assert response.status_code == 401

    response = await client.get(f"/api/v1/plugins/connectivity/tickets/{number}/graph.png",
                                headers=world["bearer"], params={"period": "3h", "lang": "en"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content.startswith(b"\x89PNG\r\n\x1a\n")

    response = await client.get(f"/api/v1/plugins/connectivity/tickets/{number}/monitors",
                                headers=world["bearer"])
    assert response.status_code == 200
    body = response.json()
    assert body["ticket"] == number and body["running"] is True
    mine, reference = body["targets"]
    assert mine["target"] == "192.0.2.7" and mine["reference"] is False
    assert mine["rounds"] == 13 and mine["loss_percent"] == 30.0
    assert mine["median_ms"] == pytest.approx(83.2)  # 83.25, to one decimal
    assert mine["last_answer_at"] == (NOW - STEP).isoformat()
    assert reference["target"] == "10.0.0.1" and reference["reference"] is True
    assert reference["loss_percent"] == 0.0
    response = await client.get(f"/api/v1/plugins/connectivity/tickets/{other}/monitors",
                                headers=world["bearer"])
    assert response.status_code == 404

    # A stopped monitor still has its graph and shows as not running.
    async with repo.connection() as conn:
        await store.stop(conn, ticket=number, target=None, reason="operator", now=NOW)
    response = await client.get(f"/api/v1/plugins/connectivity/tickets/{number}/monitors",
                                headers=world["bearer"])
    assert response.json()["running"] is False
    assert response.json()["targets"][0]["running"] is False


async def test_panel_on_the_ticket_page(world):
    client, repo = world["client"], world["repo"]
    number = await _ticket(world["service"])
    other = await _ticket(world["service"])
    name = "<b>router</b>.example.net"
    await _monitor(repo, number, name, [(20, 30.0)] * 5 + [(0, 0.0)])
    await _monitor(repo, number, "192.0.2.9", [(15, 40.0)])
    await _monitor(repo, None, "10.0.0.1", [(20, 2.0)] * 6)

    client.cookies.set("exobot_lang", "en")
    page = await client.get(f"/tickets/{number}")
    assert page.status_code == 200
    html = page.text
    assert "Connectivity" in html
    # The image at its size (three series: 800 x 510), scaled down by the stylesheet.
    assert (f'<img src="/plugins/connectivity/tickets/{number}/graph.png?period=24h"'
            in html)
    assert 'width="800" height="510"' in html
    # The periods as plain links.
    for period in ("3h", "24h", "7d"):
        assert f'href="/plugins/connectivity/tickets/{number}/graph.png?period={period}"' in html
    # The figures as text, escaped: the member's target lost everything in its last round.
    assert "<b>router</b>" not in html
    assert ("&lt;b&gt;router&lt;/b&gt;.example.net: loss 100.0 %, no answer in the last "
            "round, last answer 28/11 10:50") in html  # NOW - 2 steps (09:50 UTC) in Madrid
    assert "192.0.2.9: loss 25.0 %, median 43.5 ms, last answer 28/11 10:55" in html
    assert "10.0.0.1 (reference): loss 0.0 %" in html
    # In Catalan (the configured language), with its decimal comma.
    client.cookies.delete("exobot_lang")
    html = (await client.get(f"/tickets/{number}")).text
    assert "Connectivitat" in html
    assert "192.0.2.9: pèrdua 25,0 %, mediana 43,5 ms, darrera resposta 28/11 10:55" in html
    # A ticket without monitors has no panel.
    assert "Connectivity" not in (await client.get(f"/tickets/{other}")).text
