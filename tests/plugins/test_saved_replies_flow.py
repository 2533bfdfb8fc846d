"""The saved-replies plugin end to end on the real stack (Synapse, Dovecot, SMTP): `!plantilla`
lists, `!template suport#N NAME` mails the member the substituted text through the ticket
service, an unknown name is answered with the known ones; the editing pages (session, CSRF,
a refused form, escaping); the API action `template` (and its 400) and its OpenAPI entry."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email.utils import formataddr

import httpx
import pytest
import yaml
from harness import Instance, member_mail, unique, wait_until
from matrix_harness import MatrixUser, body_of, sender_of, thread_root_of

from exobot.config import load_config
from exobot.db import web as records
from exobot.i18n import say

pytestmark = pytest.mark.integration

DOMAIN = "saved_replies"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
PAGES = "/plugins/saved-replies"
# Catalan text with both placeholders, braces that must stay as written, and markup.
WELCOME_CA = "Hola {nom},\nsobre {ticket}: {0.__class__} {x i {{name}}.\n<b>Salut</b>"
WELCOME_ES = "Hola {name}, sobre {ticket}."


def with_plugin(inst: Instance, settings: dict | None = None) -> Instance:
    """Enable saved-replies in the instance's configuration file (before it starts)."""
    data = yaml.safe_load(inst.config_path.read_text())
    data["plugins"] = {"saved-replies": settings or {}}
    inst.config_path.write_text(yaml.safe_dump(data))
    inst.config = load_config(inst.config_path, env={})
    return inst


async def seed(inst: Instance, *replies: tuple[str, str, str]) -> None:
    """Store saved replies (name, language, text) as an operator would on the web."""
    from exobot_saved_replies import store

    async with inst.app.repository.connection() as conn:
        for name, language, text in replies:
            await store.save(
                conn,
                reply_id=None,
                name=name,
                language=language,
                text=text,
                by="@seed:example.org",
                now=datetime.now(UTC),
            )


async def started(make_instance, matrix_setup, volunteer, *, web: bool = False):
    setup = matrix_setup()
    inst = with_plugin(make_instance(matrix=setup, web=web))
    app = await inst.start()
    assert "saved-replies" in app.plugins.enabled, app.plugins.disabled
    vol = await volunteer(setup)

    async def operator() -> bool:
        return app.bot.is_operator(setup.volunteer_user_id)

    await wait_until(operator, what="the bot to see the volunteer in the queue room")
    return inst, setup, vol


async def mail_ticket(inst: Instance, vol: MatrixUser, setup, name: str) -> tuple[int, str, str]:
    """A member called `name` mails; returns the ticket number, its root event and the address."""
    member = unique("membre")
    room = setup.rooms["suport"]
    mark = vol.mark(room)
    await inst.send(member_mail(formataddr((name, member)), inst.address))
    await inst.wait_tickets(1)
    number = inst.scalar("SELECT max(id) FROM tickets")
    root = await vol.wait_for(
        room,
        lambda e: sender_of(e) == setup.bot_user_id and f"suport#{number}" in (body_of(e) or ""),
        after=mark,
        what="the ticket's root message",
    )
    await inst.wait_mailbox(member, 1)  # the acknowledgement
    return number, root["event_id"], member


async def bot_answer(vol: MatrixUser, setup, mark: int, predicate, what: str) -> dict:
    return await vol.wait_for(
        setup.rooms["suport"],
        lambda e: (
            sender_of(e) == setup.bot_user_id
            and e.get("type") == "m.room.message"
            and predicate(body_of(e) or "")
        ),
        after=mark,
        what=what,
    )


async def test_chat_lists_sends_and_refuses(make_instance, matrix_setup, volunteer):
    inst, setup, vol = await started(make_instance, matrix_setup, volunteer)
    room = setup.rooms["suport"]
    await seed(
        inst,
        ("benvinguda", "ca", WELCOME_CA),
        ("benvinguda", "es", WELCOME_ES),
        ("fibra", "en", "Hi {name}, fibre is on its way ({ticket})."),
    )
    number, root, member = await mail_ticket(inst, vol, setup, "Maria Puig")

    # !plantilla lists the names and their languages.
    mark = vol.mark(room)
    await vol.send(room, "!plantilla")
    listed = await bot_answer(vol, setup, mark, lambda b: "benvinguda" in b, "the list")
    assert "benvinguda (ca, es)" in body_of(listed)
    assert "fibra (en)" in body_of(listed)

    # !template suport#N NAME: the Catalan text (the ticket's language), substituted, is
    # mailed to the member like any reply, and recorded as the volunteer's mail.
    mark = vol.mark(room)
    await vol.send(room, f"!template suport#{number} benvinguda")
    await bot_answer(
        vol, setup, mark, lambda b: True, "the confirmation of the reply in the thread"
    )
    mails = await inst.wait_mailbox(member, 2)
    [reply] = [m for m in mails if "Hola Maria Puig" in m.get_content()]
    # Literal: other braces stay; `{{name}}` holds a placeholder, so only its inside changes.
    expected = (
        f"Hola Maria Puig,\nsobre suport#{number}: "
        + "{0.__class__} {x i {Maria Puig}.\n<b>Salut</b>"
    )
    assert expected in reply.get_content().replace("\r\n", "\n")
    assert f"[suport#{number}]" in reply["Subject"]
    [(actor, body)] = inst.query(
        "SELECT actor, body FROM entries WHERE kind = 'mail_out' AND ticket_id = :n "
        "AND body LIKE 'Hola Maria%'",
        n=number,
    )
    assert (actor, body) == (setup.volunteer_user_id, expected)

    # In the ticket's thread, no reference is needed; only `en` exists: it is not mailed in
    # English under a Catalan greeting and signature, and the volunteer is told why.
    mark = vol.mark(room)
    await vol.send(room, "!template fibra", thread_root=root)
    missing = await bot_answer(vol, setup, mark, lambda b: "fibra" in b, "the refusal")
    assert body_of(missing) == (
        "La resposta desada «fibra» no té versió en català: escriu la resposta o afegeix-la."
    )

    # An unknown name: a clear answer naming the known ones, and nothing mailed.
    mark = vol.mark(room)
    await vol.send(room, f"!plantilla suport#{number} adeu")
    refusal = await bot_answer(vol, setup, mark, lambda b: "adeu" in b, "the refusal")
    assert body_of(refusal) == say(
        "ca",
        "There is no saved reply called “{name}”. Known: {known}.",
        domain=DOMAIN,
        name="adeu",
        known="benvinguda, fibra",
    )
    await inst.wait_outbox_idle()
    assert len(inst.mailbox(member)) == 2
    assert thread_root_of(refusal) in (None, root)


async def test_web_pages_add_edit_refuse_and_delete(make_instance, matrix_setup, volunteer):
    inst, setup, _vol = await started(make_instance, matrix_setup, volunteer, web=True)
    async with inst.app.repository.connection() as conn:
        session, _ = await records.create_session(
            conn, setup.volunteer_user_id, timedelta(hours=1), datetime.now(UTC)
        )
    base = inst.web_url + PAGES
    async with httpx.AsyncClient(cookies={"exobot_session": session}, timeout=30) as web:
        # Nobody logged in: the login page.
        async with httpx.AsyncClient(timeout=30) as stranger:
            anonymous = await stranger.get(base + "/")
            assert anonymous.status_code == 303 and "/login" in anonymous.headers["location"]

        empty = await web.get(base + "/")
        assert empty.status_code == 200, empty.text
        assert say("ca", "There are no saved replies yet.", domain=DOMAIN) in empty.text

        form = await web.get(base + "/new")
        csrf = CSRF.search(form.text).group(1)
        fields = {"csrf": csrf, "name": "Benvinguda", "language": "ca", "text": WELCOME_CA}

        # Without the session's CSRF token: refused, nothing stored.
        forged = await web.post(base + "/new", data=fields | {"csrf": "x" * 43})
        assert forged.status_code == 403
        # A bad form: shown again with every problem, in Catalan, with what was typed.
        bad = await web.post(
            base + "/new", data={"csrf": csrf, "name": "dues paraules", "language": "fr"}
        )
        assert bad.status_code == 400
        for problem in (
            "The name must be one word in lower case: letters a-z, digits, - and _ (at most 40).",
            "Choose one of the languages.",
            "Write the text.",
        ):
            assert say("ca", problem, domain=DOMAIN) in bad.text
        assert 'value="dues paraules"' in bad.text
        assert inst.scalar("SELECT count(*) FROM saved_replies") == 0

        added = await web.post(base + "/new", data=fields)
        assert added.status_code == 303, added.text
        [(reply_id, name, text, by)] = inst.query(
            "SELECT id, name, text, changed_by FROM saved_replies"
        )
        assert (name, text, by) == ("benvinguda", WELCOME_CA, setup.volunteer_user_id)

        listed = await web.get(base + "/")
        assert "&lt;b&gt;Salut&lt;/b&gt;" in listed.text and "<b>Salut" not in listed.text
        assert f'href="{PAGES}/{reply_id}"' in listed.text

        # The same name and language again: refused, saying so.
        again = await web.post(base + "/new", data=fields)
        assert again.status_code == 409
        assert "benvinguda" in again.text

        edit = await web.get(f"{base}/{reply_id}")
        assert edit.status_code == 200
        assert "&lt;b&gt;Salut&lt;/b&gt;" in edit.text  # the text, escaped, in its textarea
        changed = await web.post(
            f"{base}/{reply_id}", data=fields | {"language": "es", "text": WELCOME_ES}
        )
        assert changed.status_code == 303
        assert inst.query("SELECT language, text FROM saved_replies") == [("es", WELCOME_ES)]

        too_long = await web.post(f"{base}/{reply_id}", data=fields | {"text": "x" * 10_001})
        assert too_long.status_code == 400
        assert (
            say("ca", "The text is too long: at most {max} characters.", domain=DOMAIN, max=10_000)
            in too_long.text
        )

        # The English page, from the plugin's catalog.
        web.cookies.set("exobot_lang", "en")
        english = await web.get(base + "/")
        assert "Saved replies" in english.text and "Add a saved reply" in english.text
        web.cookies.set("exobot_lang", "es")
        spanish = await web.get(base + "/")
        assert "Respuestas guardadas" in spanish.text

        deleted = await web.post(f"{base}/{reply_id}/delete", data={"csrf": csrf})
        assert deleted.status_code == 303
        assert inst.scalar("SELECT count(*) FROM saved_replies") == 0
        gone = await web.get(f"{base}/{reply_id}")
        assert gone.status_code == 404


async def test_api_action_sends_and_refuses(make_instance, matrix_setup, volunteer):
    inst, setup, vol = await started(make_instance, matrix_setup, volunteer, web=True)
    await seed(inst, ("benvinguda", "ca", WELCOME_CA), ("fibra", "en", "Hi {name}."))
    number, _root, member = await mail_ticket(inst, vol, setup, "Joan Serra")
    async with inst.app.repository.connection() as conn:
        token = await records.create_api_token(
            conn, "sr", setup.volunteer_user_id, datetime.now(UTC)
        )
    async with httpx.AsyncClient(
        base_url=inst.web_url + "/api/v1",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ) as api:
        schema = (await api.get("/openapi.json")).json()
        operation = schema["paths"]["/tickets/{n}/actions/template"]["post"]
        assert operation["summary"] == "Send a saved reply"

        sent = await api.post(f"/tickets/{number}/actions/template", json={"name": "benvinguda"})
        assert sent.status_code == 200, sent.text
        mails = await inst.wait_mailbox(member, 2)
        assert any("Hola Joan Serra," in m.get_content() for m in mails)

        unknown = await api.post(f"/tickets/{number}/actions/template", json={"name": "nosuch"})
        assert unknown.status_code == 400, unknown.text
        assert unknown.json()["error"] == "unknown_saved_reply"
        assert "benvinguda, fibra" in unknown.json()["message"]

        missing = await api.post("/tickets/99999/actions/template", json={"name": "benvinguda"})
        assert missing.status_code == 404

        async with httpx.AsyncClient(base_url=inst.web_url + "/api/v1", timeout=30) as anon:
            refused = await anon.post(
                f"/tickets/{number}/actions/template", json={"name": "benvinguda"}
            )
            assert refused.status_code == 401
    await inst.wait_outbox_idle()
    assert len(inst.mailbox(member)) == 2
