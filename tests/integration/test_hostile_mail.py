"""Hostile mail on the real stack: no mail holds the helpdesk, a mail too big to fetch is
quarantined from its header and its sender told once a day."""

from __future__ import annotations

import asyncio
import os
from email.message import EmailMessage

import pytest
from harness import member_mail, unique, wait_until
from sandbox_harness import start_with_parser

pytestmark = pytest.mark.integration


def nested_lists(sender: str, to: str, depth: int = 2000) -> EmailMessage:
    """The issue's 15 KiB mail: `<ul><li>` nested 2,000 deep (19 s to parse, 3.9 MB body
    before the parser was fixed)."""
    msg = member_mail(sender, to, subject="Llistes niades")
    msg.set_content("<ul><li>" * depth + "x" + "</li></ul>" * depth, subtype="html")
    return msg


async def test_runaway_mails_are_quarantined_and_the_next_one_still_becomes_a_ticket(
    make_instance,
):
    inst = make_instance(parse_timeout="1s")
    await start_with_parser(inst, "parse_hooks:hostile")
    member = unique("member")
    await inst.send(nested_lists(member, inst.address))
    await inst.send(member_mail(member, inst.address, subject="Bucle", body="SLOW-PARSE"))
    await inst.send(member_mail(member, inst.address, subject="Després dels dolents"))
    await inst.wait_inbound_done(3, timeout=90)
    states = inst.query("SELECT state, error FROM inbound_mail ORDER BY id")
    # The nested lists: a ticket now that the parser is linear, or set aside at the time limit.
    assert states[0] in (("done", None), ("quarantined", "parsing took longer than 1 s"))
    assert states[1] == ("quarantined", "parsing took longer than 1 s")
    assert states[2] == ("done", None)
    titles = [t for (t,) in inst.query("SELECT title FROM tickets")]
    assert "Després dels dolents" in titles
    # Not retried by later passes: it stays where it is, with one counted attempt.
    await inst.app.processor.process_pending()
    assert inst.query("SELECT state, attempts FROM inbound_mail ORDER BY id")[1] == (
        "quarantined",
        2,  # the pass that started it, and the quarantine
    )


async def test_stop_during_a_runaway_parse_is_prompt_and_loses_nothing(make_instance):
    inst = make_instance(parse_timeout="10m")
    await start_with_parser(inst, "parse_hooks:hostile")
    member = unique("member")
    await inst.send(member_mail(member, inst.address, subject="Bucle", body="SLOW-PARSE"))

    async def parsing() -> bool:
        return inst.scalar("SELECT attempts FROM inbound_mail") == 1

    await wait_until(parsing, what="the parse to start")
    await asyncio.wait_for(inst.stop(), 90)  # not the 10 minutes the parse could take
    # Stopped on purpose: the attempt does not count against the mail, which waits.
    assert inst.query("SELECT state, attempts FROM inbound_mail") == [("received", 0)]


def big_mail(sender: str, to: str, subject: str, size: int, **headers: str) -> EmailMessage:
    msg = member_mail(sender, to, subject=subject, **headers)
    msg.add_attachment(
        os.urandom(size), maintype="application", subtype="octet-stream", filename="fotos.zip"
    )
    return msg


async def test_a_mail_too_big_is_quarantined_from_its_header_and_its_sender_told_once(
    make_instance,
):
    inst = make_instance(max_size="256KB")
    await inst.start()
    member, robot = unique("member"), unique("robot")
    await inst.send(big_mail(member, inst.address, "Fotos del router", 400_000))
    await inst.send(big_mail(member, inst.address, "Més fotos", 400_000))
    await inst.send(
        big_mail(robot, inst.address, "Informe", 400_000, Auto_Submitted="auto-generated")
    )
    await inst.send(member_mail(member, inst.address, subject="Petit"))
    await inst.wait_inbound_done(4, timeout=60)
    rows = inst.query("SELECT state, error, subject, size, length(raw) FROM inbound_mail ORDER BY id")
    for state, error, _subject, size, stored in rows[:3]:
        assert state == "quarantined"
        assert error.startswith("too big: ") and error.endswith(", limit 256 KB")
        assert size > 400_000 and stored < 10_000  # only the header was fetched
    assert [r[2] for r in rows] == ["Fotos del router", "Més fotos", "Informe", "Petit"]
    assert rows[3][0] == "done"
    await inst.wait_outbox_idle()
    mails = await inst.wait_mailbox(member, 2)  # the notice and the ack of "Petit"
    notices = [m for m in mails if "massa gran" in m["Subject"]]
    assert len(notices) == 1  # once a day, not once per mail
    notice = notices[0]
    assert notice["Subject"] == "Missatge massa gran: Fotos del router"
    assert notice["Auto-Submitted"] == "auto-replied"
    assert "adjunts més petits" in notice.get_content()
    await asyncio.sleep(0.5)
    assert inst.mailbox(robot) == []  # automatic mail is never answered
