"""The ticket page offers every registered web action it has no form of its own for (a
plugin's) through a form generated from the action's declaration: one field per argument by
kind, labelled and summarised in the action's own catalog, suggestions as a datalist, the
button named by the action's word in the reader's language. Submitting it runs the action
(an answer is the notice, an intent is applied); a refusal is said at that form; a failing
`suggest` leaves the page working, without suggestions."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from html.parser import HTMLParser

import pytest
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo

from exobot import i18n
from exobot.core.actions import (
    ActionCall,
    ActionRefused,
    ActionSpec,
    Answer,
    ArgKind,
    Argument,
    Channel,
    TicketUse,
    new_registry,
)
from exobot.core.intents import Comment, Intent
from exobot.core.languages import LANGUAGES
from exobot.web.context import WebContext, WebSettings
from exobot.web.templating import LANGUAGE_COOKIE
from tests.web.test_pages import QUEUES, VOL, receive, redirect_of
from tests.web.test_pages import browser as browser  # noqa: F401 - fixture
from tests.web.test_pages import retrier as retrier  # noqa: F401 - fixture
from tests.web.test_pages import service as service  # noqa: F401 - fixture

DOMAIN = "formstest"
CATALAN = {
    "!stamp {ref} word": "!segella {ref} segell",
    "Stamps the ticket with a stamp, and a note if you like.": "Segella el tiquet.",
    "the stamp": "el segell",
    "a note": "una nota",
    "the queue": "la cua",
    "the status": "l'estat",
    "the person": "la persona",
}
SPANISH = {
    "!stamp {ref} word": "!sella {ref} sello",
    "Stamps the ticket with a stamp, and a note if you like.": "Sella el tique.",
    "the stamp": "el sello",
    "a note": "una nota",
    "the queue": "la cola",
    "the status": "el estado",
    "the person": "la persona",
}
NAMES = ["verd", "blau", "vermell"]
CALLS: list[ActionCall] = []


async def stamp(call: ActionCall) -> Intent | Answer:
    CALLS.append(call)
    word = call.args["stamp"]
    if word == "refuse":
        raise ActionRefused("bad_stamp", f"No stamp called {word}.")
    if word == "note":
        return Comment(call.ticket, f"stamped: {call.args.get('note', '')}")
    return Answer(f"Stamp {word} on #{call.ticket} <{call.language}>")


async def names(ticket: int | None, language: str) -> list[str]:
    return NAMES


async def broken(ticket: int | None, language: str) -> list[str]:
    raise RuntimeError("a plugin's bug in its suggestions")


def stamp_spec(suggest=names) -> ActionSpec:
    return ActionSpec(
        "stamp",
        "!stamp {ref} word",
        "Stamps the ticket with a stamp, and a note if you like.",
        aliases={"ca": ("segella",), "es": ("sella",)},
        arguments=(
            Argument("stamp", ArgKind.WORD, label="the stamp", suggest=suggest),
            Argument("note", ArgKind.TEXT, required=False, label="a note"),
            Argument("queue", ArgKind.QUEUE, required=False, label="the queue"),
            Argument("status", ArgKind.STATUS, required=False, label="the status"),
            Argument("person", ArgKind.USER, required=False, label="the person"),
        ),
        ticket=TicketUse.OPTIONAL,
        handler=stamp,
        domain=DOMAIN,
        owner="test",
        api_body="GeneratedFormStampIn",  # the API's body models are one namespace per process
    )


# Actions the page must not offer: chat only, or acting on no ticket.
CHAT_ONLY = ActionSpec(
    "chatonly", "!chatonly", "Chat only.", handler=stamp, channels=frozenset({Channel.CHAT})
)
NO_TICKET = ActionSpec("noticket", "!noticket", "No ticket.", handler=stamp, ticket=TicketUse.NONE)


@pytest.fixture
def test_domain(tmp_path):
    """The test action's catalogs (a plugin ships its own), compiled with Babel."""
    for language in LANGUAGES:
        catalog = Catalog(locale=language, domain=DOMAIN)
        texts = {"ca": CATALAN, "es": SPANISH}.get(language, {})
        for msgid in CATALAN:
            catalog.add(msgid, texts.get(msgid, msgid))
        folder = tmp_path / language / "LC_MESSAGES"
        folder.mkdir(parents=True)
        with open(folder / f"{DOMAIN}.mo", "wb") as out:
            write_mo(out, catalog)
    i18n.add_domain(DOMAIN, tmp_path)
    CALLS.clear()
    yield
    i18n.remove_domain(DOMAIN)


@pytest.fixture
def spec() -> ActionSpec:
    return stamp_spec()


@pytest.fixture
def ctx(repo, service, retrier, test_domain, spec) -> WebContext:  # noqa: F811
    settings = WebSettings(
        root="http://test", secure=False, prefix="suport", queues=QUEUES, default_queue="suport"
    )
    registry = new_registry()
    for action in (spec, CHAT_ONLY, NO_TICKET):
        registry.register(action)
    return WebContext(
        settings,
        repo,
        service,
        is_operator=lambda user: user == VOL,
        retry_mail=retrier,
        actions=registry,
    )


# ------------------------------------------------------------------- reading the page


@dataclass
class Control:
    tag: str
    attrs: dict[str, str | None]
    options: list[tuple[str, str]] = field(default_factory=list)  # a select's (value, text)


@dataclass
class Form:
    action: str
    controls: dict[str, Control] = field(default_factory=dict)  # by name
    labels: dict[str, str] = field(default_factory=dict)  # by the id they are for
    datalists: dict[str, list[str]] = field(default_factory=dict)  # by id
    button: str = ""
    alert: str = ""


@dataclass
class Section:
    heading: str = ""
    hints: list[str] = field(default_factory=list)
    forms: dict[str, Form] = field(default_factory=dict)  # by action URL


class MoreActions(HTMLParser):
    """The "more actions" section of a ticket page, as its forms, fields and words."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.section: Section | None = None
        self._depth = 0  # <section> nesting while inside ours
        self._form: Form | None = None
        self._text: list[str] | None = None
        self._into: str = ""
        self._for = ""
        self._select: Control | None = None
        self._datalist = ""
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            if self.section is None and attrs.get("id") == "more-actions":
                self.section = Section()
                self._depth = 1
            elif self._depth:
                self._depth += 1
            return
        if not self._depth:
            return
        if tag == "form":
            self._form = self.section.forms.setdefault(attrs["action"], Form(attrs["action"]))
        elif tag in ("h2", "p", "label", "button", "option") and not (
            tag == "option" and self._datalist
        ):
            self._text, self._into = [], tag
            self._for = attrs.get("for") or ""
            self._classes = (attrs.get("class") or "").split()
            self._value = attrs.get("value")
        elif tag in ("input", "textarea", "select") and self._form is not None:
            if attrs.get("type") == "hidden":
                return
            control = Control(tag, attrs)
            self._form.controls[attrs["name"]] = control
            if tag == "select":
                self._select = control
        elif tag == "datalist":
            self._datalist = attrs["id"]
            self._form.datalists[self._datalist] = []
        if tag == "option" and self._datalist:
            self._form.datalists[self._datalist].append(attrs["value"])

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if not self._depth:
            return
        if tag == "section":
            self._depth -= 1
        elif tag == "form":
            self._form = None
        elif tag == "select":
            self._select = None
        elif tag == "datalist":
            self._datalist = ""
        elif self._text is not None and tag == self._into:
            text = " ".join("".join(self._text).split())
            self._text = None
            if tag == "h2":
                self.section.heading = text
            elif tag == "p" and self._form is not None and "alert" in self._classes:
                self._form.alert = text
            elif tag == "p" and "hint" in self._classes:
                self.section.hints.append(text)
            elif tag == "label" and self._form is not None:
                self._form.labels[self._for] = text
            elif tag == "button" and self._form is not None:
                self._form.button = text
            elif tag == "option" and self._select is not None:
                self._select.options.append((self._value or "", text))


def more_actions(page: str) -> Section:
    section = MoreActions(page).section
    assert section is not None, "the page has no 'more actions' section"
    return section


# ----------------------------------------------------------------------------- tests


async def test_a_registered_action_gets_a_form_from_its_declaration(browser, service):
    number = await receive(service)
    page = await browser.get(f"/tickets/{number}")
    assert page.status_code == 200
    section = more_actions(page.text)
    assert section.heading == "Altres accions"
    # Only the plugin-like action: not the core's (their own forms), not chat's, not ticketless.
    assert list(section.forms) == [f"/tickets/{number}/stamp"]
    assert section.hints == ["Segella el tiquet."]  # its summary, in its own catalog
    form = section.forms[f"/tickets/{number}/stamp"]
    assert form.button == "Segella"  # its Catalan word
    assert list(form.controls) == ["stamp", "note", "queue", "status", "person"]
    kinds = {name: (c.tag, "required" in c.attrs) for name, c in form.controls.items()}
    assert kinds == {
        "stamp": ("input", True),
        "note": ("textarea", False),
        "queue": ("select", False),
        "status": ("select", False),
        "person": ("input", False),
    }
    labels = {name: form.labels[c.attrs["id"]] for name, c in form.controls.items()}
    assert labels == {
        "stamp": "El segell",
        "note": "Una nota (opcional)",
        "queue": "La cua (opcional)",
        "status": "L'estat (opcional)",
        "person": "La persona (opcional)",
    }
    # Suggestions as the input's datalist, in the order given.
    stamp_input = form.controls["stamp"]
    assert form.datalists[stamp_input.attrs["list"]] == NAMES
    assert "list" not in form.controls["person"].attrs
    # The queues configured, the statuses in words; optional selects may stay empty.
    assert [value for value, _ in form.controls["queue"].options] == ["", *QUEUES]
    statuses = dict(form.controls["status"].options)
    assert statuses[""] == "" and statuses["resolved"] == "resolt"
    assert "new" not in statuses


async def test_the_form_speaks_the_readers_language(browser, service):
    number = await receive(service)
    browser.client.cookies.set(LANGUAGE_COOKIE, "es")
    section = more_actions((await browser.get(f"/tickets/{number}")).text)
    assert section.heading == "Más acciones"
    form = section.forms[f"/tickets/{number}/stamp"]
    assert form.button == "Sella"
    assert form.labels["act-stamp-stamp"] == "El sello"
    assert section.hints == ["Sella el tique."]
    browser.client.cookies.set(LANGUAGE_COOKIE, "en")
    section = more_actions((await browser.get(f"/tickets/{number}")).text)
    assert section.heading == "More actions"
    assert section.forms[f"/tickets/{number}/stamp"].button == "Stamp"


async def test_submitting_it_runs_the_action(browser, service, repo):
    number = await receive(service)
    answered = await browser.act(number, "stamp", stamp="verd", queue="", status="")
    assert answered.status_code == 200
    assert f"Stamp verd on #{number} &lt;ca&gt;" in answered.text
    [call] = CALLS
    assert (call.ticket, call.actor, call.channel, call.args) == (
        number,
        VOL,
        Channel.WEB,
        {"stamp": "verd", "note": ""},
    )

    applied = await browser.act(number, "stamp", stamp="note", note="dues\nlínies")
    assert redirect_of(applied) == f"/tickets/{number}?done=stamp#done"
    async with repo.reading() as view:
        bodies = [entry.body for entry in await view.history(number)]
    assert "stamped: dues\nlínies" in bodies
    shown = await browser.get(f"/tickets/{number}?done=stamp")
    assert '<p class="notice" role="status" id="done">Fet: segella.</p>' in shown.text


async def test_a_refusal_is_said_at_its_form(browser, service):
    number = await receive(service)
    refused = await browser.act(number, "stamp", stamp="refuse", note="kept")
    assert refused.status_code == 400
    form = more_actions(refused.text).forms[f"/tickets/{number}/stamp"]
    assert form.alert == "No stamp called refuse."
    stamp_input = form.controls["stamp"]
    assert stamp_input.attrs["aria-invalid"] == "true"
    assert stamp_input.attrs["value"] == "refuse"  # what was typed stays
    assert "error-stamp" in stamp_input.attrs["aria-describedby"]
    # Said once, at the form (not again at the top of the page).
    assert refused.text.count('role="alert"') == 1

    missing = await browser.act(number, "stamp", stamp="")
    assert missing.status_code == 400
    form = more_actions(missing.text).forms[f"/tickets/{number}/stamp"]
    # In the web's words (the form's field, not chat's "!segella necessita el segell").
    assert form.alert == "Omple el segell."
    spaced = await browser.act(number, "stamp", stamp="dos mots")
    assert spaced.status_code == 400
    form = more_actions(spaced.text).forms[f"/tickets/{number}/stamp"]
    assert form.alert == "«dos mots» ha de ser una sola paraula, sense espais."


@pytest.mark.parametrize("spec", [stamp_spec(suggest=broken)])
async def test_a_failing_suggest_leaves_the_page_working(browser, service, spec, caplog):
    number = await receive(service)
    with caplog.at_level(logging.ERROR, logger="exobot.web.forms"):
        page = await browser.get(f"/tickets/{number}")
    assert page.status_code == 200
    form = more_actions(page.text).forms[f"/tickets/{number}/stamp"]
    assert "list" not in form.controls["stamp"].attrs and not form.datalists
    [record] = [r for r in caplog.records if r.name == "exobot.web.forms"]
    assert "stamp" in record.getMessage() and record.exc_info is not None
    # The action itself still works.
    answered = await browser.act(number, "stamp", stamp="blau")
    assert answered.status_code == 200 and f"Stamp blau on #{number}" in answered.text


async def test_without_other_actions_there_is_no_section(browser, service, ctx):
    number = await receive(service)
    ctx.actions.unregister("stamp")
    page = await browser.get(f"/tickets/{number}")
    assert page.status_code == 200
    assert 'id="more-actions"' not in page.text
