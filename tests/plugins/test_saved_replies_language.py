"""A saved reply is mailed only in the ticket's language (audit of member mails, item 6): a
Spanish ticket got the Catalan text under a Spanish greeting, signature and Content-Language.
Without a version in that language the volunteer is told so, in chat, on the web and by the
API, and nothing is mailed; only a ticket whose language is unknown takes the configured
language's text. The real plugin, started by the real PluginManager inside the real web app
and behind the real Matrix bot (a stand-in connection), over one migrated SQLite database."""

from __future__ import annotations

import html
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from exobot_saved_replies import SavedReplies, store
from sqlalchemy import select, update

from exobot import i18n
from exobot.app import service_settings
from exobot.config import parse_config
from exobot.core import intents
from exobot.core.actions import ActionCall, ActionRefused, Channel, new_registry
from exobot.core.events import EventBus
from exobot.core.model import Actor, IncomingMail
from exobot.core.service import TicketService
from exobot.db import web as records
from exobot.db.engine import create_engine
from exobot.db.migrate import upgrade_async
from exobot.db.repository import SqlRepository
from exobot.db.tables import OutboxRow, TicketRow
from exobot.mail.msgid import MessageIds
from exobot.plugins.manager import Host, PluginManager
from exobot.web.app import create_app
from exobot.web.auth import SESSION_COOKIE
from exobot.web.context import WebContext, WebSettings
from tests.matrix.test_bot import ANNA, ROOM, answers, make_bot, message

BRANCHES = {"saved-replies": SavedReplies.migrations}
CONFIG = {
    "language": "ca",
    "mail": {
        "address": "suport@example.org",
        "imap": {"host": "imap.example.org", "username": "suport", "password": "secret-imap"},
        "smtp": {"host": "smtp.example.org"},
    },
    "tickets": {"queues": {"suport": {}}},
    "plugins": {"saved-replies": {}},
}
REFUSED = {
    "ca": "La resposta desada «benvinguda» no té versió en castellà: escriu la resposta o "
    "afegeix-la.",
    "es": "La respuesta guardada «benvinguda» no tiene versión en castellano: escribe la "
    "respuesta o añádela.",
    "en": "The saved reply “benvinguda” has no version in Spanish: write the reply or add "
    "that version.",
}
O = OutboxRow.__table__  # noqa: E741


@pytest.fixture
async def world(tmp_path):
    config = parse_config(CONFIG, env={})
    url = f"sqlite:///{tmp_path / 'exobot.db'}"
    await upgrade_async(url, BRANCHES)
    engine = create_engine(url)
    repository = SqlRepository(engine)
    events = EventBus()
    registry = new_registry()
    service = TicketService(
        repository, MessageIds("k" * 32, "example.org"), service_settings(config), events=events
    )
    web = WebContext(
        WebSettings(root="http://test", secure=False, prefix="suport", queues=("suport",)),
        repository, service, is_operator=lambda user: user == ANNA,
        now=lambda: datetime.now(UTC), actions=registry,
    )
    app = create_app(web)
    manager = PluginManager(config, Host(
        service=service, repository=repository, clock=service.clock, actions=registry,
        events=events, language="ca", web_app=app,
    ))
    await manager.start()
    assert manager.enabled == ["saved-replies"], manager.disabled
    async with repository.connection() as conn:
        secret = await records.create_api_token(conn, "t", ANNA, datetime.now(UTC))
        session, opened = await records.create_session(
            conn, ANNA, timedelta(hours=1), datetime.now(UTC)
        )
        for language, text in (("ca", "Hola {nom}, rebut {ticket}."), ("en", "Hi {nom}.")):
            await store.save(
                conn, reply_id=None, name="benvinguda", language=language, text=text,
                by=ANNA, now=datetime.now(UTC),
            )
    transport = httpx.ASGITransport(app=app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
        httpx.AsyncClient(
            transport=transport, base_url="http://test",
            headers={"Authorization": f"Bearer {secret}"},
        ) as api,
    ):
        client.cookies.set(SESSION_COOKIE, session)
        yield {
            "repository": repository, "service": service, "registry": registry,
            "plugin": manager._runs["saved-replies"].plugin, "client": client, "api": api,
            "csrf": opened.csrf,
        }
    await manager.stop()
    await engine.dispose()


async def ticket(world, language: str | None) -> int:
    """A member's ticket speaking `language` (as detected in their mail)."""
    mail = IncomingMail(
        message_id=f"<{uuid.uuid4().hex}@example.net>", sender="jose@example.net",
        sender_name="José Peña", requestor="jose@example.net", subject="No va",
        body="No funciona internet en casa.", language=language,
    )
    outcome = await world["service"].apply(
        Actor.member(mail.sender), intents.ReceiveMail(mail, intents.MailClass.MEMBER)
    )
    return outcome.ticket


async def replies(world) -> list[str]:
    async with world["repository"].connection() as conn:
        rows = await conn.execute(select(O.c.payload).where(O.c.template == "reply"))
    return [payload["text"] for (payload,) in rows]


def call(number: int, language: str) -> ActionCall:
    return ActionCall("template", ANNA, number, {"name": "benvinguda"}, language, Channel.CHAT)


async def test_no_version_in_the_tickets_language_is_refused_in_the_volunteers(world):
    number = await ticket(world, "es")
    for language, text in REFUSED.items():
        with pytest.raises(ActionRefused) as refused:
            await world["plugin"].template(call(number, language))
        assert (refused.value.code, refused.value.message) == ("saved_reply_not_in_language", text)
    # A Catalan ticket and a reply in Spanish and English only: the same, naming Catalan.
    async with world["repository"].connection() as conn:
        await store.save(conn, reply_id=None, name="adeu", language="es", text="Adiós.",
                         by=ANNA, now=datetime.now(UTC))
    catalan = await ticket(world, "ca")
    with pytest.raises(ActionRefused) as refused:
        await world["plugin"].template(
            ActionCall("template", ANNA, catalan, {"name": "adeu"}, "ca", Channel.CHAT)
        )
    assert "no té versió en català" in refused.value.message
    assert await replies(world) == []


async def test_the_tickets_language_or_for_an_unknown_one_the_configured(world):
    english = await ticket(world, "en")
    sent = await world["plugin"].template(call(english, "ca"))
    assert sent == intents.Reply(english, "Hi José Peña.")
    unknown = await ticket(world, None)
    async with world["repository"].connection() as conn:  # as an old or imported row may be
        table = TicketRow.__table__
        await conn.execute(update(table).where(table.c.id == unknown).values(language="fr"))
    assert await world["plugin"].template(call(unknown, "ca")) == intents.Reply(
        unknown, f"Hola José Peña, rebut suport#{unknown}."
    )


async def test_chat_answers_the_refusal_and_mails_nothing(world):
    bot = make_bot(world["repository"])
    bot.registry = world["registry"]  # the core's actions and the plugin's `template`
    bot.service = world["service"]
    number = await ticket(world, "es")
    room = bot.client.nio.rooms[ROOM]
    await bot.handle_event(room, message(ANNA, f"!plantilla suport#{number} benvinguda"))
    assert (await answers(world["repository"]))[-1] == REFUSED["ca"]
    assert await replies(world) == []


async def test_the_web_page_and_the_api_say_it_and_mail_nothing(world):
    number = await ticket(world, "es")
    page = await world["client"].post(
        f"/tickets/{number}/template",
        data={"csrf": world["csrf"], "name": "benvinguda", "nonce": uuid.uuid4().hex},
        headers={"Accept-Language": "ca"},
    )
    assert page.status_code == 400
    assert html.escape(REFUSED["ca"]) in page.text
    answer = await world["api"].post(
        f"/api/v1/tickets/{number}/actions/template", json={"name": "benvinguda"}
    )
    assert answer.status_code == 400
    assert answer.json() == {"error": "saved_reply_not_in_language", "message": REFUSED["en"]}
    assert await replies(world) == []
    assert i18n.STRICT  # the messages above were found in the catalogs, not shown in English
