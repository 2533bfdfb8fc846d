"""The `template` action's handler without servers: a migrated SQLite database (the core's
schema and the plugin's Alembic branch), a ticket and its mails stored through the real
service, and a small stand-in for the plugin context. Lists, the Reply intent with the
substituted text in the chosen language, and the refusals."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from exobot_saved_replies import SavedReplies, SavedRepliesConfig, store

from exobot import i18n
from exobot.core import intents
from exobot.core.actions import ActionCall, ActionRefused, Answer, Channel
from exobot.core.model import Actor, IncomingMail
from exobot.core.service import ServiceSettings, TicketNotFound, TicketService
from exobot.db.engine import create_engine
from exobot.db.migrate import upgrade_async
from exobot.db.repository import SqlRepository

NOW = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)


class _Ids:
    def mint(self, ticket: int) -> str:
        return f"<t{ticket}-{id(self)}@test>"


class Context:
    """What the handler uses of a PluginContext, over a real repository."""

    def __init__(self, repository: SqlRepository, settings: ServiceSettings) -> None:
        self.repository = repository
        self.settings = settings
        self.config = SavedRepliesConfig()

    def reading(self):
        return self.repository.reading()

    def connection(self):
        return self.repository.connection()

    def say(self, language: str, msgid: str, **params: object) -> str:
        return i18n.say(language, msgid, domain="saved_replies", **params)


@pytest.fixture
async def plugin(tmp_path):
    i18n.add_domain("saved_replies", SavedReplies.locale)
    url = f"sqlite:///{tmp_path / 'exobot.db'}"
    await upgrade_async(url, {"saved-replies": SavedReplies.migrations})
    engine = create_engine(url)
    repository = SqlRepository(engine)
    settings = ServiceSettings(language="ca")
    service = TicketService(repository, _Ids(), settings)
    plugin = SavedReplies()
    plugin.ctx = Context(repository, settings)  # type: ignore[assignment]
    plugin.service = service  # type: ignore[attr-defined]
    yield plugin
    await engine.dispose()
    i18n.remove_domain("saved_replies")


async def _ticket(plugin, sender: str, name: str, language: str | None = None) -> int:
    mail = IncomingMail(
        message_id=f"<{name.replace(' ', '')}@member.test>",
        sender=sender,
        sender_name=name,
        requestor=sender,
        subject="Hola",
        body="No tinc connexió",
        received_at=NOW,
        language=language,  # as detected in the mail (None: the configured language)
    )
    outcome = await plugin.service.apply(
        Actor.member(sender), intents.ReceiveMail(mail, intents.MailClass.MEMBER)
    )
    return outcome.ticket


async def _seed(plugin, *replies: tuple[str, str, str]) -> None:
    async with plugin.ctx.connection() as conn:
        for name, language, text in replies:
            await store.save(
                conn, reply_id=None, name=name, language=language, text=text, by="@a:x", now=NOW
            )


def call(ticket: int | None, name: str | None, language: str = "ca") -> ActionCall:
    args = {"name": name} if name is not None else {}
    return ActionCall("template", "@vol:x", ticket, args, language, Channel.CHAT)


async def test_sends_the_ticket_languages_text_substituted(plugin):
    number = await _ticket(plugin, "maria@example.org", "Maria Puig", language="es")
    await _seed(
        plugin,
        ("benvinguda", "es", "Hola {name} ({ticket}) {0.__class__}"),
        ("benvinguda", "en", "Hi {nom}"),
        ("benvinguda", "ca", "Hola {nom}"),
    )
    # The ticket speaks Spanish: the Spanish text, not the configured language's (ca).
    intent = await plugin.template(call(number, "Benvinguda"))
    assert intent == intents.Reply(number, f"Hola Maria Puig (suport#{number}) {{0.__class__}}")


async def test_lists_names_and_languages_with_escaped_html(plugin):
    empty = await plugin.template(call(None, None, "es"))
    assert "/plugins/saved-replies/" in empty.body
    await _seed(plugin, ("b", "ca", "x"), ("a<i>", "es", "y"), ("b", "en", "z"))
    answer = await plugin.template(call(None, None))
    assert isinstance(answer, Answer)
    assert answer.body.splitlines()[1:] == ["• a<i> (es)", "• b (ca, en)"]
    assert "<code>a&lt;i&gt;</code>" in answer.html and "<i>" not in answer.html


async def test_refusals(plugin):
    number = await _ticket(plugin, "joan@example.org", "")
    with pytest.raises(ActionRefused) as unknown:
        await plugin.template(call(number, "nosuch"))
    assert unknown.value.code == "unknown_saved_reply"
    assert "nosuch" in unknown.value.message
    await _seed(plugin, ("fibra", "ca", "Hola {nom}."))
    with pytest.raises(ActionRefused) as known:
        await plugin.template(call(number, "adeu", "en"))
    assert known.value.message == "There is no saved reply called “adeu”. Known: fibra."
    with pytest.raises(ActionRefused) as no_ticket:
        await plugin.template(call(None, "fibra"))
    assert no_ticket.value.code == "missing_ticket"
    with pytest.raises(TicketNotFound):
        await plugin.template(call(number + 100, "fibra"))
    # A requestor without a display name: {nom} is empty.
    assert await plugin.template(call(number, "fibra")) == intents.Reply(number, "Hola.")
