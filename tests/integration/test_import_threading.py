"""Imported tickets on the real stack (Dovecot, SMTP, Synapse): a member's reply to a mail the
old helpdesk (Request Tracker) sent lands in the imported ticket, by In-Reply-To and by its
`[rtname #N]` subject tag; a merged number threads, shows in chat and opens in the web and
the API as the surviving ticket; the import itself mails and posts nothing; new tickets
continue after the imported numbers. The imported tickets are built by hand here: the real
Request Tracker's tests are in tests/rt."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from harness import member_mail, operator_clients, unique, wait_until
from matrix_harness import body_of, reply_to_of, thread_root_of
from test_matrix_flow import Chat

from exobot.core.imports import ImportedEntry, ImportedMessageId, ImportedTicket
from exobot.core.intents import ImportTicket
from exobot.core.model import Actor, EntryKind, Status

pytestmark = pytest.mark.integration

SOURCE = "rt:https://rt.example.org/"
T0 = datetime(2025, 10, 6, 8, 15, tzinfo=UTC)
RT_OUT = "<rt-5.0.3-310-1759738500-77.310-3-0@rt.example.org>"


def rt_ticket(member: str) -> ImportedTicket:
    """RT's ticket 310 (305 was merged into it): the member's mail and RT's answer."""
    return ImportedTicket(
        source=SOURCE,
        external_id="310",
        number=310,
        title="El router no connecta",
        requestor=member,
        queue="suport",
        status=Status.OPEN,
        created_at=T0,
        updated_at=T0 + timedelta(hours=1),
        participants=(member,),
        merged=(305,),
        entries=(
            ImportedEntry(
                "9001",
                EntryKind.MAIL_IN,
                member,
                T0,
                body="Des d'ahir el router no connecta.",
                data={"from": member, "subject": "El router no connecta"},
                message_ids=(ImportedMessageId("<first@member.example.org>"),),
            ),
            ImportedEntry(
                "9002",
                EntryKind.MAIL_OUT,
                "rt:pere",
                T0 + timedelta(hours=1),
                body="Prova de reiniciar-lo, si us plau.",
                message_ids=(ImportedMessageId(RT_OUT, "out"),),
            ),
        ),
    )


def mail_in_bodies(inst, number: int) -> list[str]:
    rows = inst.query(
        "SELECT body FROM entries WHERE ticket_id = :t AND kind = 'mail_in' ORDER BY id", t=number
    )
    return [r[0].strip() for r in rows]


async def test_replies_to_rt_mail_thread_into_the_imported_ticket(
    make_instance, matrix_setup, volunteer
):
    setup = matrix_setup()
    inst = make_instance(matrix=setup, web=True, tickets={"legacy_tags": ["eXO"]})
    await inst.start()
    chat = Chat(inst, setup, await volunteer(setup))
    member = unique("membre")
    outcome = await inst.app.service.apply(Actor.system("import"), ImportTicket(rt_ticket(member)))
    assert (outcome.ticket, outcome.created) == (310, True)
    assert inst.scalar("SELECT count(*) FROM outbox") == 0  # no mail, no chat post

    # By In-Reply-To alone (a subject without any tag).
    await inst.send(
        member_mail(member, inst.address, subject="Re: el router", body="Reiniciat, res.",
                    In_Reply_To=RT_OUT)
    )  # fmt: skip
    # By RT's subject tag, with the space, in another case.
    await inst.send(
        member_mail(member, inst.address, subject="RE: [exo #310] El router no connecta",
                    body="Ara parpelleja en taronja.")
    )  # fmt: skip
    # By the merged number's tag.
    await inst.send(
        member_mail(member, inst.address, subject="Re: [eXO #305] Una altra consulta",
                    body="Aquesta era la consulta antiga.")
    )  # fmt: skip
    await inst.wait_inbound_done(3)
    assert inst.scalar("SELECT count(*) FROM tickets") == 1
    assert mail_in_bodies(inst, 310)[1:] == [
        "Reiniciat, res.",
        "Ara parpelleja en taronja.",
        "Aquesta era la consulta antiga.",
    ]
    # The first new event gave the imported ticket its root: it says where and when the
    # ticket was opened (local time), above the quote of that old first mail, which is not
    # announced as new; the member's new mails are posted in the thread.
    root = await chat.bot_says(
        lambda e: "suport#310" in (body_of(e) or "") and thread_root_of(e) is None,
        what="the root message of suport#310",
    )
    lines = (body_of(root) or "").split("\n")
    opened = "📥 Importat de Request Tracker; s'hi va obrir el 2025-10-06 10:15."
    assert opened in lines
    quoted = next(i for i, line in enumerate(lines) if "Des d'ahir el router no connecta." in line)
    assert lines.index(opened) < quoted
    await chat.bot_says(
        lambda e: thread_root_of(e) == root["event_id"] and "Reiniciat, res." in (body_of(e) or ""),
        what="the member's first new mail in the imported ticket's thread",
    )
    await chat.settle()
    in_thread = [e for e in chat.bot_events() if thread_root_of(e) == root["event_id"]]
    assert not any("Des d'ahir" in (body_of(e) or "") for e in in_thread)
    # The member's mails made the ticket theirs to wait on again; no acknowledgement for
    # replies, and the import mailed nothing: the member's mailbox stays empty.
    assert inst.scalar("SELECT count(*) FROM entries WHERE kind = 'unverified_in'") == 0
    await inst.wait_outbox_idle()
    assert inst.mailbox(member) == []

    # A new mail with no tag is a new ticket, numbered after the imported ones.
    other = unique("membre")
    await inst.send(member_mail(other, inst.address, subject="Una cosa nova"))
    await inst.wait_tickets(2)
    assert inst.scalar("SELECT max(id) FROM tickets") == 311

    # The web and the API open the merged number as the surviving ticket.
    web, api, _session = await operator_clients(inst, setup.volunteer_user_id, "import")
    async with web, api:
        page = await web.get("/tickets/305", follow_redirects=False)
        assert page.status_code == 302, page.text
        assert page.headers["location"] == "/tickets/310"
        shown = await web.get("/tickets/305", follow_redirects=True)
        assert shown.status_code == 200 and "El router no connecta" in shown.text
        detail = await api.get("/tickets/305")
        assert detail.status_code == 200, detail.text
        assert (detail.json()["number"], detail.json()["reference"]) == (310, "suport#310")
        missing = await api.get("/tickets/306")
        assert missing.status_code == 404

    # Chat: a command naming the merged number acts on and shows the surviving ticket.
    await chat.command("!agafa suport#305")

    async def taken() -> bool:
        return inst.scalar("SELECT owner FROM tickets WHERE id = 310") == setup.volunteer_user_id

    await wait_until(taken, what="suport#310 taken through its merged number")
    event_id, mark = await chat.command("!mostra suport#305")
    answer = await chat.bot_says(
        lambda e: reply_to_of(e) == event_id, after=mark, what="!mostra's answer"
    )
    assert "suport#310" in (body_of(answer) or "")
