"""Members' mail becomes tickets, end to end on the real Dovecot and SMTP server."""

from __future__ import annotations

import asyncio
import re

import pytest
from harness import member_mail, unique, wait_until

pytestmark = pytest.mark.integration


async def test_new_mail_opens_ticket_and_acknowledges(bot):
    member = unique("member")
    await bot.send(member_mail(member, bot.address, subject="No em funciona internet"))
    await bot.wait_tickets(1)
    row = bot.query("SELECT id, title, requestor, status, queue FROM tickets")[0]
    assert row == (1, "No em funciona internet", member, "new", "suport")
    [ack] = await bot.wait_mailbox(member, 1)
    assert ack["Subject"].startswith("[suport#1] ")
    assert ack["Auto-Submitted"] == "auto-replied"
    assert "suport#1" in ack.get_content()
    assert "IBAN" in ack.get_content()  # the data-protection advice
    assert ack["From"].addresses[0].addr_spec == bot.address
    body = bot.scalar("SELECT body FROM entries WHERE kind = 'mail_in'")
    assert "no tinc connexió" in body


async def test_reply_by_subject_tag_is_threaded(bot):
    member = unique("member")
    await bot.send(member_mail(member, bot.address, subject="Router apagat"))
    await bot.wait_tickets(1)
    await bot.send(
        member_mail(
            member, bot.address, subject="Re: [suport#1] Router apagat", body="Ja torna a funcionar"
        )
    )
    await bot.wait_inbound_done(2)
    assert bot.scalar("SELECT count(*) FROM tickets") == 1
    kinds = [r[0] for r in bot.query("SELECT kind FROM entries WHERE ticket_id = 1 ORDER BY id")]
    assert kinds.count("mail_in") == 2


async def test_reply_with_only_in_reply_to_is_threaded(bot):
    member = unique("member")
    await bot.send(member_mail(member, bot.address, subject="Sense connexió"))
    [ack] = await bot.wait_mailbox(member, 1)
    reply = member_mail(
        member,
        bot.address,
        subject="una altra cosa",
        body="Segueix igual",
        In_Reply_To=ack["Message-ID"],
    )
    await bot.send(reply)
    await bot.wait_inbound_done(2)
    assert bot.scalar("SELECT count(*) FROM tickets") == 1
    assert bot.scalar("SELECT count(*) FROM entries WHERE kind = 'mail_in'") == 2


async def test_same_mail_twice_makes_one_ticket(bot):
    member = unique("member")
    msg = member_mail(member, bot.address, subject="Duplicat")
    await bot.send(msg)
    await bot.send(msg)
    await bot.wait_inbound_done(2)
    assert bot.scalar("SELECT count(*) FROM tickets") == 1
    states = sorted(r[0] for r in bot.query("SELECT state FROM inbound_mail"))
    assert states == ["done", "duplicate"]
    await bot.wait_outbox_idle()
    assert len(bot.mailbox(member)) == 1  # one acknowledgement, not two


async def test_restart_reprocesses_nothing_and_loses_nothing(make_instance):
    inst = make_instance()
    member = unique("member")
    await inst.start()
    for n in range(3):
        await inst.send(member_mail(member, inst.address, subject=f"abans {n}"))
    await inst.wait_tickets(3)
    await inst.stop()
    for n in range(2):  # arrives while exobot is down
        await inst.send(member_mail(member, inst.address, subject=f"mentre {n}"))
    await inst.start()
    await inst.wait_tickets(5)
    await inst.wait_inbound_done(5)
    await asyncio.sleep(1.0)  # give a wrong re-read the chance to show
    assert inst.scalar("SELECT count(*) FROM inbound_mail") == 5
    assert inst.scalar("SELECT count(*) FROM tickets") == 5
    titles = sorted(r[0] for r in inst.query("SELECT title FROM tickets"))
    assert titles == ["abans 0", "abans 1", "abans 2", "mentre 0", "mentre 1"]


async def test_auto_submitted_mail_gets_a_ticket_but_no_ack(bot):
    member = unique("member")
    await bot.send(
        member_mail(member, bot.address, subject="Fora de l'oficina", Auto_Submitted="auto-replied")
    )
    await bot.wait_tickets(1)
    await bot.wait_inbound_done(1)
    assert bot.scalar("SELECT count(*) FROM outbox") == 0
    await asyncio.sleep(0.5)
    assert bot.mailbox(member) == []


async def test_auto_responder_gets_no_more_acks_than_the_cap(make_instance):
    inst = make_instance(ack_limit_per_day=3)
    await inst.start()
    responder = unique("robot")
    for n in range(7):  # a responder that writes a fresh mail every time
        await inst.send(member_mail(responder, inst.address, subject=f"Resposta {n}"))
    await inst.wait_tickets(7)
    await inst.wait_outbox_idle()
    await asyncio.sleep(0.5)
    assert inst.scalar("SELECT count(*) FROM outbox WHERE template = 'ack'") == 3
    acks = inst.mailbox(responder)
    assert len(acks) == 3
    # ... and a responder that answers each acknowledgement it gets (no RFC 3834 headers).
    for ack in acks:
        await inst.send(
            member_mail(
                responder,
                inst.address,
                subject=f"Re: {ack['Subject']}",
                body="I am away until Monday.",
                In_Reply_To=ack["Message-ID"],
            )
        )
    await inst.wait_inbound_done(10)
    await inst.wait_outbox_idle()
    assert inst.scalar("SELECT count(*) FROM tickets") == 7  # threaded, not new tickets
    assert len(inst.mailbox(responder)) == 3  # and nothing more sent back: the loop ends


async def test_spoofed_tagged_mail_is_flagged_not_appended(bot):
    member, intruder = unique("member"), unique("intruder")
    await bot.send(member_mail(member, bot.address, subject="Alta de servei"))
    await bot.wait_tickets(1)
    await bot.wait_outbox_idle()
    status = bot.scalar("SELECT status FROM tickets WHERE id = 1")
    await bot.send(
        member_mail(
            intruder,
            bot.address,
            subject="Re: [suport#1] Alta de servei",
            body="Canvieu el compte bancari al meu",
        )
    )
    await bot.wait_inbound_done(2)
    kinds = [r[0] for r in bot.query("SELECT kind FROM entries WHERE ticket_id = 1")]
    assert kinds.count("unverified_in") == 1
    assert kinds.count("mail_in") == 1
    assert bot.scalar("SELECT status FROM tickets WHERE id = 1") == status
    assert bot.scalar("SELECT count(*) FROM participants WHERE address = :a", a=intruder) == 0
    assert bot.scalar("SELECT count(*) FROM outbox") == 1  # only the first acknowledgement
    assert bot.mailbox(intruder) == []


async def test_bounce_is_attached_as_a_warning(bot):
    member = unique("member")
    await bot.send(member_mail(member, bot.address, subject="Baixa"))
    [ack] = await bot.wait_mailbox(member, 1)
    dsn = _dsn(bot.address, member, ack["Message-ID"])
    await bot.deliver_raw(dsn, mail_from="")
    await bot.wait_inbound_done(2)
    assert bot.scalar("SELECT count(*) FROM tickets") == 1
    bounce = bot.query("SELECT ticket_id, data FROM entries WHERE kind = 'bounce'")
    assert len(bounce) == 1 and bounce[0][0] == 1
    assert '"5.1.1"' in bounce[0][1]
    assert bot.scalar("SELECT status FROM tickets WHERE id = 1") == "new"
    assert bot.scalar("SELECT count(*) FROM outbox") == 1  # nothing sent back to the daemon


def _dsn(to: str, failed: str, original_id: str) -> bytes:
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\n"
        f"To: {to}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Message-ID: <dsn-1@mx.example.net>\r\n"
        "Auto-Submitted: auto-replied\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n'
        "\r\n--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\n\r\n"
        f"Final-Recipient: rfc822; {failed}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: {to}\r\nTo: {failed}\r\nMessage-ID: {original_id}\r\n"
        "Subject: [suport#1] Baixa\r\n--B--\r\n"
    ).encode()


async def test_uidvalidity_change_rescans_without_doubling(make_instance, stack):
    inst = make_instance(imap={"folder": "Suport"})
    member = unique("member")
    mails = [member_mail(member, inst.address, subject=f"Carpeta {n}").as_bytes() for n in range(2)]

    def refill(extra: list[bytes]) -> None:
        conn = stack.imap(inst.address)
        conn.delete("Suport")  # a re-created folder gets a new UIDVALIDITY
        conn.create("Suport")
        for raw in mails + extra:
            conn.append("Suport", None, None, raw.replace(b"\n", b"\r\n"))
        conn.logout()

    await asyncio.to_thread(refill, [])
    await inst.start()
    await inst.wait_tickets(2)
    await inst.wait_outbox_idle()
    await inst.stop()
    before = inst.scalar("SELECT value FROM state WHERE key LIKE 'imap-position:%'")
    late = member_mail(member, inst.address, subject="Carpeta nova").as_bytes()
    await asyncio.to_thread(refill, [late])
    await inst.start()
    await inst.wait_inbound_done(5)
    await inst.wait_outbox_idle()
    after = inst.scalar("SELECT value FROM state WHERE key LIKE 'imap-position:%'")
    assert before != after  # the position moved to the new UIDVALIDITY
    assert inst.scalar("SELECT count(*) FROM tickets") == 3
    states = sorted(r[0] for r in inst.query("SELECT state FROM inbound_mail"))
    assert states == ["done", "done", "done", "duplicate", "duplicate"]
    assert inst.scalar("SELECT count(*) FROM outbox WHERE template = 'ack'") == 3


async def test_our_own_mail_coming_back_is_dropped(bot):
    member = unique("member")
    await bot.send(member_mail(member, bot.address, subject="Bucle"))
    [ack] = await bot.wait_mailbox(member, 1)
    # A forwarding rule sends our acknowledgement straight back to the support address.
    await bot.deliver_raw(ack.as_bytes().replace(b"Message-ID: <", b"Message-ID: <fwd-"))
    await bot.wait_inbound_done(2)
    assert bot.scalar("SELECT state FROM inbound_mail WHERE id = 2") == "dropped"
    assert "loop marker" in bot.scalar("SELECT error FROM inbound_mail WHERE id = 2")
    assert bot.scalar("SELECT count(*) FROM entries WHERE ticket_id = 1 AND kind LIKE '%_in'") == 1


async def test_mail_from_our_own_address_gets_no_ack(bot):
    await bot.send(member_mail(bot.address, bot.address, subject="Nota interna"))
    await bot.wait_tickets(1)
    await bot.wait_inbound_done(1)
    assert bot.scalar("SELECT count(*) FROM outbox") == 0


async def test_reply_quoting_our_signed_message_id_is_trusted(bot):
    member, other = unique("member"), unique("member-work")
    await bot.send(member_mail(member, bot.address, subject="Canvi de quota"))
    [ack] = await bot.wait_mailbox(member, 1)
    # The member answers from another address, replying to our acknowledgement.
    await bot.send(
        member_mail(
            other,
            bot.address,
            subject="Re: Canvi de quota",
            In_Reply_To=ack["Message-ID"],
            body="Des de la feina",
        )
    )
    await bot.wait_inbound_done(2)
    assert bot.scalar("SELECT count(*) FROM entries WHERE kind = 'mail_in'") == 2
    assert bot.scalar("SELECT count(*) FROM entries WHERE kind = 'unverified_in'") == 0


async def test_forged_signature_is_not_trusted(bot):
    member, intruder = unique("member"), unique("intruder")
    await bot.send(member_mail(member, bot.address, subject="Quota"))
    [ack] = await bot.wait_mailbox(member, 1)
    # <exobot.N.NONCE.SIGNATURE@domain> with another signature
    forged = re.sub(r"\.[0-9a-f]{16}@", ".0123456789abcdef@", ack["Message-ID"])
    assert forged != ack["Message-ID"]
    await bot.send(
        member_mail(intruder, bot.address, subject="Re: [suport#1] Quota", In_Reply_To=forged)
    )
    await bot.wait_inbound_done(2)
    assert bot.scalar("SELECT count(*) FROM entries WHERE kind = 'unverified_in'") == 1


async def test_operator_accepts_an_unverified_mail(bot):
    from exobot.core.intents import AcceptUnverified, SetStatus
    from exobot.core.model import Actor, Status

    member, partner = unique("member"), unique("partner")
    await bot.send(member_mail(member, bot.address, subject="Alta"))
    await bot.wait_tickets(1)
    await bot.app.service.apply(Actor.operator("@anna:example.org"), SetStatus(1, Status.RESOLVED))
    await bot.send(
        member_mail(
            partner,
            bot.address,
            subject="Re: [suport#1] Alta",
            body="Sóc la parella, encara no funciona",
        )
    )
    await bot.wait_inbound_done(2)
    assert bot.scalar("SELECT status FROM tickets WHERE id = 1") == "resolved"
    await bot.app.service.apply(Actor.operator("@anna:example.org"), AcceptUnverified(1))
    assert bot.scalar("SELECT status FROM tickets WHERE id = 1") == "open"
    assert bot.scalar("SELECT count(*) FROM participants WHERE address = :a", a=partner) == 1
    # From now on the partner's mail is correspondence.
    await bot.send(member_mail(partner, bot.address, subject="Re: [suport#1] Alta", body="Ja va"))
    await bot.wait_inbound_done(3)
    assert bot.scalar("SELECT count(*) FROM entries WHERE kind = 'mail_in'") == 3


async def test_intake_reconnects_when_the_server_drops_it(bot, stack, caplog):
    caplog.set_level("WARNING", logger="exobot.mail.intake")
    stack.kick_imap(bot.address)

    async def reconnected() -> bool:
        return "reconnecting" in caplog.text and bot.app.intake.connected.is_set()

    await wait_until(reconnected, what="intake to notice the drop and reconnect")
    member = unique("member")
    await bot.send(member_mail(member, bot.address, subject="Després de la desconnexió"))
    await bot.wait_tickets(1)
