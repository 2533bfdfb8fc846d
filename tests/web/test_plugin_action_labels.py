"""The plugins' actions on the ticket page are worded for the web: each form's heading says
what it is and its button what pressing it does ("Envia al soci" for the saved reply that
mails the member at once), from the action's `web_label` / `web_button` in the plugin's own
catalog and the reader's language; an action without them keeps its chat word. The real
plugins (saved replies, procedures, connectivity) are started by the real plugin manager on
the real web app over a migrated SQLite database; the web `!graph` answers where the graph
is on the page, not "in its thread"."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import httpx
import pytest

from exobot.core.actions import ActionSpec, Answer, TicketUse, new_registry
from exobot.core.events import EventBus
from exobot.core.intents import MailClass, ReceiveMail
from exobot.core.model import Actor, IncomingMail
from exobot.core.service import ServiceSettings, TicketService
from exobot.db import web as records
from exobot.db.engine import create_engine
from exobot.db.migrate import upgrade_async
from exobot.db.repository import SqlRepository
from exobot.mail.msgid import MessageIds
from exobot.plugins.manager import Host, PluginManager, plugin_migrations
from exobot.web.app import create_app
from exobot.web.auth import SESSION_COOKIE
from exobot.web.context import WebContext, WebSettings
from exobot.web.templating import LANGUAGE_COOKIE
from tests.web.test_pages import Browser

VOL = "@vol:example.org"
QUEUES = ("suport", "tresoreria")
PLUGINS = {"saved-replies": {}, "procedures": {}, "connectivity": {}}

# What each plugin action's form says, by reader language: (heading, button).
EXPECTED = {
    "ca": {
        "monitor": ("Vigila la connexió", "Comença a vigilar"),
        "monitors": ("Destinacions vigilades", "Mostra-les"),
        "graph": ("Gràfic de la connexió", "Publica'l al fil del xat"),
        "template": ("Envia una resposta desada", "Envia al soci"),
        "member": ("Vincula a un soci", "Vincula"),
    },
    "es": {
        "monitor": ("Vigila la conexión", "Empieza a vigilar"),
        "monitors": ("Destinos vigilados", "Muéstralos"),
        "graph": ("Gráfico de la conexión", "Publícalo en el hilo del chat"),
        "template": ("Envía una respuesta guardada", "Envía al socio"),
        "member": ("Vincula a un socio", "Vincula"),
    },
    "en": {
        "monitor": ("Watch the connection", "Start watching"),
        "monitors": ("Targets being watched", "Show them"),
        "graph": ("Connection graph", "Post it in the chat thread"),
        "template": ("Send a saved reply", "Send to the member"),
        "member": ("Link to a member", "Link"),
    },
}


class Clock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@pytest.fixture
async def site(tmp_path):
    """The web app with the three plugins started by the plugin manager, and a logged-in
    volunteer's browser."""
    config = SimpleNamespace(plugins=PLUGINS)
    url = f"sqlite:///{tmp_path / 'exobot.db'}"
    await upgrade_async(url, plugin_migrations(config))
    repo = SqlRepository(create_engine(url))
    settings = ServiceSettings(
        prefix="suport", default_queue="suport", queues=frozenset(QUEUES), own_address="s@e.org"
    )
    service = TicketService(repo, MessageIds("secret" * 4, "example.org"), settings)
    registry = new_registry()
    web = WebContext(
        WebSettings(
            root="http://test", secure=False, prefix="suport", queues=QUEUES,
            default_queue="suport",
        ),
        repo,
        service,
        is_operator=lambda user: user == VOL,
        actions=registry,
    )
    app = create_app(web)
    host = Host(
        service=service,
        repository=repo,
        clock=Clock(),
        actions=registry,
        events=EventBus(),
        web_app=app,
        timezone=ZoneInfo("Europe/Madrid"),
    )
    manager = PluginManager(config, host)
    await manager.start()
    assert manager.enabled == list(PLUGINS), manager.disabled
    web.panels = manager.panels
    async with repo.connection() as conn:
        token, session = await records.create_session(
            conn, VOL, timedelta(hours=1), datetime.now(UTC)
        )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test", cookies={SESSION_COOKIE: token}
    ) as client:
        yield SimpleNamespace(
            browser=Browser(client, session.csrf),
            service=service,
            repo=repo,
            registry=registry,
            manager=manager,
            app=app,
        )
    await manager.stop()
    await repo.close()


_mails = itertools.count(1)


async def open_ticket(service: TicketService) -> int:
    """A member's mail opens a ticket; its number."""
    mail = IncomingMail(
        message_id=f"<labels{next(_mails)}@member.test>",
        sender="marta@example.net",
        sender_name="Marta",
        requestor="marta@example.net",
        subject="No em funciona internet",
        body="La meva IP és 192.0.2.10",
        received_at=datetime.now(UTC),
    )
    outcome = await service.apply(
        Actor.member(mail.sender), ReceiveMail(mail, MailClass.MEMBER)
    )
    return outcome.ticket


@dataclass
class Group:
    heading: str = ""
    action: str = ""
    button: str = ""


@dataclass
class MoreActions(HTMLParser):
    """The "more actions" section of a ticket page: each form's heading, action and button."""

    groups: list[Group] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()
        self._inside = False
        self._depth = 0
        self._text: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section" and attrs.get("id") == "more-actions":
            self._inside, self._depth = True, 0
        if not self._inside:
            return
        if tag == "section":
            self._depth += 1
        elif tag == "h3":
            self.groups.append(Group())
            self._text = []
        elif tag == "form" and self.groups:
            self.groups[-1].action = attrs["action"].rsplit("/", 1)[-1]
        elif tag == "button" and self.groups:
            self._text = []

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if not self._inside:
            return
        if tag == "section":
            self._depth -= 1
            self._inside = self._depth > 0
        elif tag in ("h3", "button") and self._text is not None:
            text = " ".join("".join(self._text).split())
            self._text = None
            if tag == "h3":
                self.groups[-1].heading = text
            else:
                self.groups[-1].button = text


def forms_of(page: str) -> dict[str, tuple[str, str]]:
    """The page's generated forms: action → (heading, button)."""
    parser = MoreActions()
    parser.feed(page)
    return {group.action: (group.heading, group.button) for group in parser.groups}


@pytest.mark.parametrize("language", ["ca", "es", "en"])
async def test_each_plugin_form_says_what_it_does_in_the_readers_language(site, language):
    number = await open_ticket(site.service)
    site.browser.client.cookies.set(LANGUAGE_COOKIE, language)
    page = await site.browser.get(f"/tickets/{number}")
    assert page.status_code == 200
    assert forms_of(page.text) == EXPECTED[language]


async def test_every_plugin_action_on_the_web_declares_its_words(site):
    """No plugin action reaches the ticket page with its bare chat word ("Grafic" without
    its accent, "Plantilla" on a button that mails the member)."""
    shown = forms_of((await site.browser.get(f"/tickets/{await open_ticket(site.service)}")).text)
    for name in shown:
        spec = site.registry.get(name)
        assert spec.owner != "core" and spec.web_label and spec.web_button, name


async def test_an_action_without_web_words_keeps_its_chat_word(site):
    async def answer(call):
        return Answer("ok")

    site.registry.register(
        ActionSpec(
            "stampy", "!stampy {ref}", "", aliases={"ca": ("segella",)},
            ticket=TicketUse.REQUIRED, handler=answer,
        )
    )
    page = await site.browser.get(f"/tickets/{await open_ticket(site.service)}")
    assert forms_of(page.text)["stampy"] == ("Segella", "Segella")


async def test_the_web_graph_says_where_the_graph_is_on_the_page(site):
    from exobot_connectivity import store

    number = await open_ticket(site.service)
    now = datetime.now(UTC)
    async with site.repo.connection() as conn:
        monitor = await store.start(conn, ticket=number, target="192.0.2.10", kind="icmp",
                                    host="192.0.2.10", port=None, by=VOL, now=now - timedelta(hours=1))
        await store.record_round(conn, monitor.id, at=now - timedelta(minutes=5), sent=20,
                                 received=20, rtts=[12.0] * 20)
    answered = await site.browser.act(number, "graph", target="")
    assert answered.status_code == 200
    assert (
        f"El gràfic de suport#{number} (24h) s'ha publicat al fil del xat del tiquet; en "
        "aquesta pàgina és més avall, a «Connectivitat»."
    ) in answered.text.replace("&#39;", "'")
    assert "és al seu fil" not in answered.text
    # The panel it points to is on that page.
    assert ">Connectivitat</h2>" in answered.text
