"""The procedures plugin started by the real PluginManager inside the real web application
(pages and API), over the real TicketService and a migrated SQLite database, with a fake
clock; an operator's browser session and bearer token; httpx's ASGI transport in process.

Used by test_web_procedures.py and test_api_procedures.py (`from web_world import
web_world_fixture` makes the fixture `web_world` theirs)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from clocks import FakeClock
from procedures_settings import BRANCHES, MINIMAL, START

from exobot.app import service_settings
from exobot.config import parse_config
from exobot.core import intents
from exobot.core.actions import new_registry
from exobot.core.events import EventBus
from exobot.core.model import Actor, IncomingMail
from exobot.core.service import TicketService
from exobot.db import web as records
from exobot.db.engine import create_engine
from exobot.db.migrate import upgrade_async
from exobot.db.repository import SqlRepository
from exobot.mail.msgid import MessageIds
from exobot.plugins.manager import Host, PluginManager
from exobot.web.app import create_app
from exobot.web.auth import SESSION_COOKIE
from exobot.web.context import WebContext, WebSettings

TREASURER = "@treasurer:example.org"
CONFIG = {"language": "ca", **MINIMAL, "plugins": {"procedures": {}}}


@dataclass
class WebWorld:
    """The running plugin, its web app, and clients: `client` has the treasurer's session
    cookie; `api` sends the treasurer's bearer token; `anonymous` has neither."""

    repository: SqlRepository
    service: TicketService
    manager: PluginManager
    clock: FakeClock
    plugin: Any
    client: httpx.AsyncClient
    api: httpx.AsyncClient
    anonymous: httpx.AsyncClient
    csrf: str

    async def mail(self, sender: str = "ona@example.org", subject: str = "Canvi de compte",
                   body: str = "Hola, vull canviar les dades bancàries.") -> int:
        """A mail opening a ticket in the default queue; its number."""
        incoming = IncomingMail(
            message_id=f"<m{uuid.uuid4().hex}@example.net>", sender=sender, sender_name="Ona",
            requestor=sender, subject=subject, body=body,
        )
        outcome = await self.service.apply(
            Actor.member(sender),
            intents.ReceiveMail(incoming, intents.MailClass.MEMBER, acknowledge=True),
        )
        return outcome.ticket

    async def ticket(self, number: int):
        async with self.repository.reading() as reader:
            return await reader.get_ticket(number)

    async def history(self, number: int):
        async with self.repository.reading() as reader:
            return await reader.history(number)


@pytest.fixture(name="web_world")
async def web_world_fixture(tmp_path):
    """A WebWorld with the plugin's default settings (language ca), stopped at the end."""
    config = parse_config(CONFIG, env={})
    url = f"sqlite:///{tmp_path / 'exobot.db'}"
    await upgrade_async(url, BRANCHES)
    engine = create_engine(url)
    repository = SqlRepository(engine)
    clock = FakeClock(START)
    events = EventBus()
    registry = new_registry()
    service = TicketService(
        repository, MessageIds("k" * 32, "example.org"), service_settings(config),
        events=events, clock=clock,
    )
    web = WebContext(
        WebSettings(root="http://test", secure=False, prefix="suport",
                    queues=tuple(config.tickets.queues)),
        repository, service, is_operator=lambda user: user == TREASURER,
        now=lambda: datetime.now(UTC), actions=registry,
    )
    app = create_app(web)
    manager = PluginManager(config, Host(
        service=service, repository=repository, clock=clock, actions=registry, events=events,
        language=config.language, web_app=app,
    ))
    service.mail_hook = manager.run_mail_hooks
    web.panels = manager.panels
    await manager.start()
    assert manager.enabled == ["procedures"], manager.disabled
    plugin = manager._runs["procedures"].plugin
    async with repository.connection() as conn:
        secret = await records.create_api_token(conn, "treasury", TREASURER, datetime.now(UTC))
        session, opened = await records.create_session(conn, TREASURER, timedelta(hours=1),
                                                       datetime.now(UTC))
    transport = httpx.ASGITransport(app=app)
    base = "http://test"
    async with (
        httpx.AsyncClient(transport=transport, base_url=base) as client,
        httpx.AsyncClient(transport=transport, base_url=base,
                          headers={"Authorization": f"Bearer {secret}"}) as api,
        httpx.AsyncClient(transport=transport, base_url=base) as anonymous,
    ):
        client.cookies.set(SESSION_COOKIE, session)
        yield WebWorld(repository, service, manager, clock, plugin, client, api, anonymous,
                       opened.csrf)
    await manager.stop()
    await engine.dispose()
