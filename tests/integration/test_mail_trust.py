"""Spoofing through Reply-To, end to end on the real Dovecot and SMTP server: the spoofed
mail is kept as unverified, its Cc never receives the operators' replies; a participant's Cc
beyond the one address rule is skipped without costing the member the reply."""

from __future__ import annotations

import asyncio
import json

import pytest
from harness import member_mail, unique

from exobot.core.intents import ChangeParticipants, Reply
from exobot.core.model import Actor

pytestmark = pytest.mark.integration

ANNA = Actor.operator("@anna:example.org")


async def test_a_spoofed_reply_through_reply_to_gets_nothing(bot):
    marta, attacker, spy = unique("marta"), unique("attacker"), unique("spy")
    await bot.send(member_mail(marta, bot.address, subject="No em funciona internet"))
    await bot.wait_tickets(1)
    await bot.wait_mailbox(marta, 1)  # the acknowledgement
    status = bot.scalar("SELECT status FROM tickets WHERE id = 1")

    await bot.send(
        member_mail(
            attacker,
            bot.address,
            subject="Re: [suport#1] No em funciona internet",
            body="Canvieu el meu compte bancari, si us plau.",
            Reply_To=marta,
            Cc=spy,
        )
    )
    await bot.wait_inbound_done(2)
    kinds = [r[0] for r in bot.query("SELECT kind FROM entries WHERE ticket_id = 1 ORDER BY id")]
    assert kinds.count("unverified_in") == 1 and kinds.count("mail_in") == 1
    assert bot.scalar("SELECT status FROM tickets WHERE id = 1") == status
    participants = {r[0] for r in bot.query("SELECT address FROM participants")}
    assert participants == {marta}

    await bot.app.service.apply(ANNA, Reply(1, "Hola Marta, ho mirem."))
    [_ack, reply] = await bot.wait_mailbox(marta, 2)
    assert "ho mirem" in reply.get_content()
    assert reply["Cc"] is None
    await bot.wait_outbox_idle()
    await asyncio.sleep(0.5)  # a wrong copy would be on its way
    assert bot.mailbox(spy) == [] and bot.mailbox(attacker) == []


async def test_an_unusable_participant_costs_the_member_no_reply(bot):
    marta, neighbour = unique("marta"), unique("vei")
    await bot.send(member_mail(marta, bot.address, subject="Alta", Cc=neighbour))
    await bot.wait_tickets(1)
    await bot.wait_mailbox(marta, 1)
    # A participant stored before the one address rule, by an older version.
    await asyncio.to_thread(
        bot.query,
        "INSERT INTO participants (ticket_id, address, source, created_at) "
        "VALUES (1, 'josé@example.org', 'cc', '2026-01-01 00:00:00')",
    )
    await bot.app.service.apply(ANNA, Reply(1, "Benvinguda!"))
    [_ack, reply] = await bot.wait_mailbox(marta, 2)
    assert neighbour in str(reply["Cc"])
    [copy] = await bot.wait_mailbox(neighbour, 1)
    assert "Benvinguda" in copy.get_content()
    [(data,)] = bot.query("SELECT data FROM entries WHERE kind = 'delivery_failed'")
    assert json.loads(data)["recipient"] == "josé@example.org"
    # An operator removes it; the next reply is quiet about it.
    await bot.app.service.apply(ANNA, ChangeParticipants(1, remove=("josé@example.org",)))
    assert "josé@example.org" not in {r[0] for r in bot.query("SELECT address FROM participants")}
