"""The ticket page's forms dispatch by the action registry: an action registered later (a
plugin's) is carried out from its form; a handler's answer is the page's notice, a returned
intent goes through the service, a refusal or a failure is said next to the form."""

from __future__ import annotations

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
    new_registry,
)
from exobot.core.intents import Comment
from exobot.core.languages import LANGUAGES
from exobot.web import actions
from exobot.web.context import WebContext, WebSettings
from tests.web.test_pages import QUEUES, VOL, alert, receive, redirect_of
from tests.web.test_pages import browser as browser  # noqa: F401 - fixture
from tests.web.test_pages import retrier as retrier  # noqa: F401 - fixture
from tests.web.test_pages import service as service  # noqa: F401 - fixture


async def stamp(call: ActionCall) -> Answer | Comment:
    word = call.args["word"]
    if word == "refuse":
        raise ActionRefused("bad_word", f"No: {word}")
    if word == "boom":
        raise RuntimeError("a plugin bug")
    if word == "note":
        return Comment(call.ticket, f"stamped by {call.actor} <{call.channel}>")
    return Answer(f"Stamp {word} on #{call.ticket} <{call.language}>")


STAMP = ActionSpec(
    "stamp",
    "!stamp {ref} word",
    "Stamps the ticket.",
    arguments=(Argument("word", ArgKind.WORD),),  # no label: named by its field
    handler=stamp,
    domain="pagestest",
    owner="test",
)


DOMAIN = "pagestest"
TAG = ActionSpec(
    "tag",
    "!tag {ref} name",
    "Tags the ticket.",
    arguments=(Argument("name", ArgKind.WORD, label="the tag's name"),),
    handler=stamp,
    domain=DOMAIN,
    owner="test",
)


@pytest.fixture
def test_domain(tmp_path):
    """The tag action's catalogs (a plugin ships its own), compiled with Babel."""
    texts = {
        "!stamp {ref} word": "!segella {ref} paraula",
        "!tag {ref} name": "!etiqueta {ref} nom",
        "the tag's name": "el nom de l'etiqueta",
        # Their summaries describe their forms on the ticket page.
        "Stamps the ticket.": "Segella el tiquet.",
        "Tags the ticket.": "Etiqueta el tiquet.",
    }
    for language in LANGUAGES:
        catalog = Catalog(locale=language, domain=DOMAIN)
        for msgid, text in texts.items():
            catalog.add(msgid, text)
        folder = tmp_path / language / "LC_MESSAGES"
        folder.mkdir(parents=True)
        with open(folder / f"{DOMAIN}.mo", "wb") as out:
            write_mo(out, catalog)
    i18n.add_domain(DOMAIN, tmp_path)
    yield
    i18n.remove_domain(DOMAIN)


@pytest.fixture
def ctx(repo, service, retrier, test_domain) -> WebContext:  # noqa: F811 - this module's registry
    settings = WebSettings(
        root="http://test", secure=False, prefix="suport", queues=QUEUES, default_queue="suport"
    )
    registry = new_registry()
    registry.register(STAMP)
    registry.register(TAG)
    return WebContext(
        settings,
        repo,
        service,
        is_operator=lambda user: user == VOL,
        retry_mail=retrier,
        actions=registry,
    )


async def test_a_handlers_answer_is_the_notice(browser, service):
    number = await receive(service)
    response = await browser.act(number, "stamp", word="verd")
    assert response.status_code == 200
    assert f"Stamp verd on #{number} &lt;ca&gt;" in response.text  # escaped, reader's language


async def test_a_handlers_form_sent_twice_runs_the_handler_once(browser, service, ctx):
    """A handler writes in its own transactions (a plugin's procedure, a post): the form's
    nonce sent again (a double click, a reload) must not run it again."""
    calls: list[ActionCall] = []

    async def counted(call: ActionCall) -> Answer:
        calls.append(call)
        return Answer(f"Counted {len(calls)}")

    ctx.actions.unregister("stamp")
    ctx.actions.register(
        ActionSpec(
            "stamp",
            "!stamp {ref} word",
            "Stamps the ticket.",
            arguments=(Argument("word", ArgKind.WORD),),
            handler=counted,
            domain="pagestest",
            owner="test",
        )
    )
    number = await receive(service)
    form = {"nonce": "n" * 32, "word": "verd"}
    first = await browser.post(f"/tickets/{number}/stamp", form)
    assert "Counted 1" in first.text
    again = await browser.post(f"/tickets/{number}/stamp", form)
    assert again.status_code in (200, 303) and "Counted" not in again.text
    assert len(calls) == 1


async def test_a_handlers_call_carries_the_request_key(browser, service, ctx):
    """The form's nonce (web) and the API's request key reach the handler as `call.key`, the
    same when the request comes again after the handler's commit and before the key's
    (a crash): what a handler records to act once. Without a key, None."""
    calls: list[ActionCall] = []

    async def keyed(call: ActionCall) -> Answer:
        calls.append(call)
        return Answer("Keyed")

    spec = ActionSpec(
        "stamp",
        "!stamp {ref} word",
        "Stamps the ticket.",
        arguments=(Argument("word", ArgKind.WORD),),
        handler=keyed,
        domain="pagestest",
        owner="test",
    )
    ctx.actions.unregister("stamp")
    ctx.actions.register(spec)
    number = await receive(service)
    await browser.post(f"/tickets/{number}/stamp", {"nonce": "k" * 32, "word": "verd"})
    assert [call.key for call in calls] == ["web:" + "k" * 32]
    for key in ("api:anna:retry-1", None):
        await actions.run_action(
            ctx, spec, number, {"word": "verd"}, VOL, key, language="ca", channel=Channel.API
        )
    assert [(call.key, call.channel) for call in calls[1:]] == [
        ("api:anna:retry-1", Channel.API), (None, Channel.API)
    ]


async def test_a_returned_intent_goes_through_the_service(browser, service, repo):
    number = await receive(service)
    response = await browser.act(number, "stamp", word="note")
    assert redirect_of(response) == f"/tickets/{number}?done=stamp#done"
    async with repo.reading() as view:
        bodies = [entry.body for entry in await view.history(number)]
    assert f"stamped by {VOL} <web>" in bodies


async def test_refusals_and_failures_are_said(browser, service, ctx):
    number = await receive(service)
    missing = await browser.act(number, "stamp")
    assert missing.status_code == 400
    assert alert(missing.text) == "Omple word."  # the web's words: the form's field
    refused = await browser.act(number, "stamp", word="refuse")
    assert (refused.status_code, alert(refused.text)) == (400, "No: refuse")
    failed = await browser.act(number, "stamp", word="boom")
    assert failed.status_code == 400 and alert(failed.text)
    # Gone from the registry, gone from the forms.
    ctx.actions.unregister("stamp")
    gone = await browser.act(number, "stamp", word="verd")
    assert gone.status_code == 400
    assert "stamp" in alert(gone.text)


async def test_a_missing_argument_is_named_in_the_actions_own_words(browser, service):
    number = await receive(service)
    missing = await browser.act(number, "tag")
    assert missing.status_code == 400
    assert alert(missing.text) == "Omple el nom de l'etiqueta."
