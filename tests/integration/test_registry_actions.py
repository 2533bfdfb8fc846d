"""An action registered into a running exobot's registry (as a plugin does at its start) is
usable from chat, from the API (with its route and body in the OpenAPI schema) and listed by
`!help`, without any core edit; once unregistered it is gone from all three. Real Synapse,
Dovecot, SMTP and web server."""

from __future__ import annotations

import httpx
import pytest
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from matrix_harness import body_of
from test_matrix_flow import Chat, in_thread
from test_web_api import create_token

from exobot import i18n
from exobot.core.actions import ActionCall, ActionSpec, Answer, ArgKind, Argument
from exobot.core.intents import Comment
from exobot.core.languages import LANGUAGES, N_
from exobot.web.schemas import MAX_TEXT_CHARS

pytestmark = pytest.mark.asyncio

DOMAIN = "registrytest"
# The test actions' texts and their translations (the bot speaks Catalan by default).
TEXTS = {
    N_("!ping {ref} word"): {"ca": "!pica {ref} paraula", "es": "!ping {ref} palabra"},
    N_("Answers pong with the word."): {
        "ca": "Respon pong amb la paraula.",
        "es": "Responde pong con la palabra.",
    },
    N_("the word"): {"ca": "la paraula", "es": "la palabra"},
    N_("!note {ref} text…"): {"ca": "!nota {ref} text…", "es": "!nota {ref} texto…"},
    N_("Saves the text as a comment, marked as a note."): {
        "ca": "Desa el text com a comentari, marcat com a nota.",
        "es": "Guarda el texto como comentario, marcado como nota.",
    },
}


@pytest.fixture
def test_domain(tmp_path):
    """The test actions' gettext catalogs, compiled with Babel (a plugin ships its own)."""
    for language in LANGUAGES:
        catalog = Catalog(locale=language, domain=DOMAIN)
        for msgid, translations in TEXTS.items():
            catalog.add(msgid, translations.get(language, msgid))
        folder = tmp_path / language / "LC_MESSAGES"
        folder.mkdir(parents=True)
        with open(folder / f"{DOMAIN}.mo", "wb") as out:
            write_mo(out, catalog)
    i18n.add_domain(DOMAIN, tmp_path)
    yield DOMAIN
    i18n.remove_domain(DOMAIN)


async def ping(call: ActionCall) -> Answer:
    """Answers, changing nothing."""
    word = call.args["word"]
    return Answer(f"pong #{call.ticket} {word} ({call.channel})", f"<b>pong</b> {word}")


async def note(call: ActionCall) -> Comment:
    """Gives back an intent: the channel applies it like a built-in one."""
    return Comment(call.ticket, f"[nota] {call.args['text']}")


def test_actions() -> list[ActionSpec]:
    return [
        ActionSpec(
            "ping",
            N_("!ping {ref} word"),
            N_("Answers pong with the word."),
            aliases={"ca": ("pica",)},
            arguments=(
                Argument(
                    "word", ArgKind.WORD, label=N_("the word"), description="any one word"
                ),
            ),
            handler=ping,
            domain=DOMAIN,
            api_summary="Ping",
            api_description="Answer pong with the word.",
            owner="test",
        ),
        ActionSpec(
            "note",
            N_("!note {ref} text…"),
            N_("Saves the text as a comment, marked as a note."),
            aliases={"ca": ("nota",)},
            arguments=(Argument("text", ArgKind.TEXT),),
            handler=note,
            domain=DOMAIN,
            owner="test",
        ),
    ]


test_actions.__test__ = False  # a helper, not a test


async def test_an_action_registered_after_start_works_everywhere_and_goes_away(
    make_instance, matrix_setup, volunteer, capsys, test_domain
):
    setup = matrix_setup()
    inst = make_instance(matrix=setup, web=True)
    app = await inst.start()
    vol = await volunteer(setup)
    chat = Chat(inst, setup, vol)
    token = await create_token(inst, capsys, "registry", setup.volunteer_user_id)
    number, root, _ = await chat.mail_ticket(subject="La fibra no va")

    # A plugin starting: its actions join the exobot's registry while everything runs.
    removers = [app.actions.register(spec) for spec in test_actions()]

    # Chat: the handler's answer is posted at the command; a returned intent is applied.
    _, mark = await chat.command(f"!pica suport#{number} hola")
    pong = await chat.bot_says(lambda e: "pong" in (body_of(e) or ""), after=mark, what="pong")
    assert body_of(pong) == f"pong #{number} hola (chat)"
    assert pong["content"]["formatted_body"] == "<b>pong</b> hola"
    _, mark = await chat.command("!nota el router s'ha canviat", thread=root)
    await chat.bot_says(in_thread(root), after=mark, what="the note's comment in the thread")
    comments = inst.query(
        "SELECT body FROM entries WHERE kind = 'comment' AND ticket_id = :n", n=number
    )
    assert ("[nota] el router s'ha canviat",) in comments
    # A missing argument is named by its declared label, in the reader's language.
    _, mark = await chat.command(f"!pica suport#{number}")
    missing = await chat.bot_says(
        lambda e: "paraula" in (body_of(e) or ""), after=mark, what="the missing word"
    )
    assert "la paraula" in body_of(missing)
    assert "!pica suport#N paraula" in body_of(missing)

    # `!ajuda tot` lists every action and explains each one (`!ajuda` alone is short).
    _, mark = await chat.command("!ajuda tot")
    listed = await chat.bot_says(lambda e: "!pica" in (body_of(e) or ""), after=mark, what="help")
    assert "Respon pong amb la paraula." in body_of(listed)
    assert "!nota suport#N text…" in body_of(listed)
    _, mark = await chat.command("!help ping")
    usage = await chat.bot_says(
        lambda e: "Respon pong" in (body_of(e) or ""), after=mark, what="help ping"
    )
    assert body_of(usage).startswith("!pica suport#N paraula — Respon pong amb la paraula.")

    # The API: a route per action, documented with its body in the schema.
    async with httpx.AsyncClient(
        base_url=f"{inst.web_url}/api/v1",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ) as client:
        schema = (await client.get("/openapi.json")).json()
        route = schema["paths"]["/tickets/{n}/actions/ping"]["post"]
        assert (route["operationId"], route["summary"]) == ("ping", "Ping")
        assert route["description"] == "Answer pong with the word."
        body = route["requestBody"]["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/PingIn"}
        assert schema["components"]["schemas"]["PingIn"]["properties"]["word"] == {
            "type": "string",
            "maxLength": MAX_TEXT_CHARS,
            "title": "Word",
            "description": "any one word",
        }
        assert schema["components"]["schemas"]["PingIn"]["required"] == ["word"]
        assert "/tickets/{n}/actions/note" in schema["paths"]

        answered = await client.post(f"/tickets/{number}/actions/ping", json={"word": "adeu"})
        assert answered.status_code == 200, answered.text
        assert answered.json()["answer"] == f"pong #{number} adeu (api)"
        assert answered.json()["ticket"]["number"] == number
        refused = await client.post(f"/tickets/{number}/actions/ping", json={})
        assert refused.status_code == 422
        noted = await client.post(
            f"/tickets/{number}/actions/note",
            json={"text": "des de l'API"},
            headers={"Idempotency-Key": "note-1"},
        )
        assert noted.status_code == 200, noted.text
        assert noted.json()["answer"] is None
        history = noted.json()["ticket"]["history"]
        assert history[-1]["kind"] == "comment"
        assert history[-1]["body"] == "[nota] des de l'API"
        assert history[-1]["actor"] == setup.volunteer_user_id
        missing_ticket = await client.post("/tickets/999999/actions/ping", json={"word": "x"})
        assert missing_ticket.status_code == 404

        # The plugin stops: its actions leave the registry, and every channel forgets them.
        for remove in removers:
            remove()
        schema = (await client.get("/openapi.json")).json()
        assert "/tickets/{n}/actions/ping" not in schema["paths"]
        assert "/tickets/{n}/actions/note" not in schema["paths"]
        assert "PingIn" not in schema["components"]["schemas"]
        gone = await client.post(f"/tickets/{number}/actions/ping", json={"word": "adeu"})
        assert gone.status_code == 404
        assert gone.json()["error"] == "not_found"

    _, mark = await chat.command(f"!pica suport#{number} hola")
    unknown = await chat.bot_says(
        lambda e: "pica" in (body_of(e) or ""), after=mark, what="the unknown command"
    )
    assert "pong" not in body_of(unknown)
    assert "!pica" in body_of(unknown)
    _, mark = await chat.command("!ajuda tot")
    listed = await chat.bot_says(lambda e: "!agafa" in (body_of(e) or ""), after=mark)
    assert "!pica" not in body_of(listed) and "!nota" not in body_of(listed)
    _, mark = await chat.command("!help ping")
    unknown = await chat.bot_says(
        lambda e: "ping" in (body_of(e) or ""), after=mark, what="help of a removed action"
    )
    assert "!pica" not in body_of(unknown) and "ping" in body_of(unknown)
