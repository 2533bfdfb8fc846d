"""Sensitive data on the real stack (Synapse, SMTP/IMAP, web): a member's mail with an IBAN in
its subject and body shows masked in the Matrix post, the web page, the API, the search and
the log; the ticket is flagged; the member gets one advice mail (a second mail with a card
number in the same ticket gets none); an operator's reveal shows the original on a page that is
not cached and is recorded in the history; an unencrypted queue room is warned about once."""

from __future__ import annotations

import io
import logging

import pytest
from harness import Instance, member_mail, operator_clients, unique, wait_until
from markupsafe import escape
from matrix_harness import body_of, is_room_notice, sender_of

from exobot.cli import LOG_FORMAT, OneLineFormatter, SensitiveFilter
from exobot.i18n import say
from exobot.matrix.bot import UNENCRYPTED_WARNED

REVEAL_LINE = "👁 {actor} revealed the original (unmasked) text of entry {entry}"

pytestmark = pytest.mark.integration

IBAN = "ES91 2100 0418 4502 0005 1332"
IBAN_COMPACT = "ES9121000418450200051332"
MASKED = "ES91 **** **** **** **** 1332"
CARD = "4111 1111 1111 1111"
SECRETS = ("0418", "4502", IBAN_COMPACT, "1111 1111 1111")


def assert_masked(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} in {where}"


@pytest.fixture
def log_lines():
    """exobot's log as `exobot run` writes it (its handler, formatter and filter), captured."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(OneLineFormatter(LOG_FORMAT))
    handler.addFilter(SensitiveFilter())
    logger = logging.getLogger("exobot")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield buffer
    logger.removeHandler(handler)
    logger.setLevel(level)


async def test_a_mail_with_an_iban_is_masked_everywhere_and_revealed_on_request(
    make_instance, matrix_setup, volunteer, log_lines
):
    setup = matrix_setup()  # rooms without end-to-end encryption
    inst: Instance = make_instance(matrix=setup, web=True)
    app = await inst.start()
    vol = await volunteer(setup)
    room = setup.rooms["suport"]

    # The room is not encrypted: said in it once (Catalan, the configured language), recorded.
    def is_warning(event: dict) -> bool:
        return sender_of(event) == setup.bot_user_id and "xifratge" in (body_of(event) or "")

    warning = await vol.wait_for(room, is_warning, what="the warning about the unencrypted room")
    assert is_room_notice(warning)

    await vol.wait_for(room, is_warning, what="the warning about the unencrypted room")
    assert inst.scalar("SELECT value FROM state WHERE key = :k", k=UNENCRYPTED_WARNED + room)
    await app.bot.warn_unencrypted_rooms()  # as at the next start: not said again

    member = unique("membre")
    mark = vol.mark(room)
    first = member_mail(
        member,
        inst.address,
        subject=f"Canvi de compte {IBAN}",
        body=f"Hola,\nel meu IBAN nou és {IBAN_COMPACT}.\nFrase distintiva gripau.\n",
    )
    await inst.send(first)
    await inst.wait_tickets(1)
    number = inst.scalar("SELECT max(id) FROM tickets")
    reference = f"{inst.config.tickets.prefix}#{number}"

    # Matrix: the root message (title, the mail's text, the flag) masked.
    root = await vol.wait_for(
        room,
        lambda e: sender_of(e) == setup.bot_user_id and reference in (body_of(e) or ""),
        after=mark,
        what="the ticket's root message",
    )
    assert MASKED in body_of(root)
    assert "🚩 dades sensibles en un correu: IBAN" in body_of(root)

    # Mail: the acknowledgement and one advice, both with the masked title.
    mails = await inst.wait_mailbox(member, 2)
    by_kind = {("dades sensibles" in m.get_content()): m for m in mails}
    advice, ack = by_kind[True], by_kind[False]
    assert f"[{reference}]" in advice["Subject"] and MASKED in advice["Subject"]
    assert advice["Auto-Submitted"] == "auto-replied"
    assert advice["In-Reply-To"] == first["Message-ID"]
    for mail in mails:
        assert_masked(str(mail["Subject"]) + mail.get_content(), "a mail to the member")

    web, api, session = await operator_clients(inst, setup.volunteer_user_id, "mask")
    async with web, api:
        # The web page: masked, with a reveal form for the mail's entry.
        page = await web.get(f"/tickets/{number}")
        assert page.status_code == 200, page.text
        assert MASKED in page.text
        assert_masked(page.text, "the ticket page")
        entry_id = inst.scalar(
            "SELECT id FROM entries WHERE ticket_id = :n AND kind = 'mail_in'", n=number
        )
        action = f"/tickets/{number}/entries/{entry_id}/reveal"
        assert f'action="{action}"' in page.text

        # The API and the search: masked; the IBAN's digits find nothing.
        detail = await api.get(f"/tickets/{number}")
        assert detail.status_code == 200
        assert MASKED in detail.text
        assert_masked(detail.text, "the API")
        assert (await api.get("/search", params={"q": "0418"})).json()["tickets"] == []
        assert (await api.get("/search", params={"q": IBAN_COMPACT})).json()["tickets"] == []
        found = (await api.get("/search", params={"q": "gripau"})).json()["tickets"]
        assert [t["number"] for t in found] == [number]
        assert_masked((await api.get("/search", params={"q": "gripau"})).text, "the search")
        listed = await web.get("/tickets", params={"q": "gripau"})
        assert MASKED in listed.text
        assert_masked(listed.text, "the web list")

        # A form without the session's CSRF token reveals nothing.
        refused = await web.post(action, data={"csrf": "wrong"})
        assert refused.status_code == 403
        assert_masked(refused.text, "a refused reveal")

        # The reveal: the original on a page never cached, recorded with who and when.
        shown = await web.post(action, data={"csrf": session.csrf})
        assert shown.status_code == 200, shown.text
        assert shown.headers["cache-control"] == "no-store"
        assert f"el meu IBAN nou és {IBAN_COMPACT}." in shown.text
        assert f"Canvi de compte {IBAN}" in shown.text
        history = (await api.get(f"/tickets/{number}")).json()["history"]
        [reveal] = [e for e in history if e["kind"] == "reveal"]
        assert reveal["actor"] == setup.volunteer_user_id
        assert reveal["data"] == {"entry": entry_id}
        assert_masked(str(history), "the API after the reveal")
        again = await web.get(f"/tickets/{number}")
        assert_masked(again.text, "the ticket page after the reveal")
        # The history line of the reveal (the web shows it without the chat's emoji).
        line = say("ca", REVEAL_LINE, actor="\0", entry=entry_id).split("\0", 1)[1]
        assert str(escape(line)) in again.text
        assert (await api.get(f"/tickets/{number}/original/{entry_id}")).status_code == 404

        # A second mail with a card number in the same ticket: masked, no second advice.
        second = member_mail(
            member,
            inst.address,
            subject=f"Re: [{reference}] Canvi de compte",
            body=f"I la targeta és {CARD}.\n",
            In_Reply_To=ack["Message-ID"],
        )
        await inst.send(second)

        async def second_recorded() -> bool:
            return inst.scalar(
                "SELECT count(*) FROM entries WHERE ticket_id = :n AND kind = 'mail_in'", n=number
            ) == 2

        await wait_until(second_recorded, what="the second mail in the ticket")
        await inst.wait_outbox_idle()
        assert len(inst.mailbox(member)) == 2
        page = await web.get(f"/tickets/{number}")
        assert "**** **** **** 1111" in page.text
        assert_masked(page.text, "the ticket page after the second mail")
        assert page.text.count('class="reveal"') == 2

    # Everything the volunteer's client got from the bot, and the log: masked.
    async def posted_all() -> bool:
        return any("**** **** **** 1111" in (body_of(e) or "") for e in vol.events(room))

    await wait_until(posted_all, what="the second mail in the thread")
    assert_masked(repr(vol.events(room)), "the Matrix room")
    warnings = [e for e in vol.events(room) if is_warning(e)]
    assert len(warnings) == 1
    log = log_lines.getvalue()
    assert "is not end-to-end encrypted" in log
    assert f"revealed the original text of entry {entry_id}" in log
    assert_masked(log, "the log")
