"""Automatic senders through the real parser, rules, processor and service on SQLite: another
helpdesk that acknowledges our acknowledgements from a new Reply-To each time, autoresponders
and mailing lists marked only by their own conventions, and bounces in no report format."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text
from test_processor_limits import OWN, O, clock, mail, message_ids, processor_for, rows, store

from exobot.core import intents as i
from exobot.core.model import Actor, Status
from exobot.mail.parse import MAX_BOUNCE_SCAN, MAX_QUOTED_IDS, parse_mail
from exobot.mail.sandbox import MB, ParseSandbox, SandboxSettings

__all__ = ["clock", "message_ids"]  # fixtures shared with test_processor_limits

HELPDESK = "Helpdesk <support@helpdesk.example.com>"
MARTA = "marta@example.net"


@pytest.fixture
async def processor(repo, message_ids, clock):
    """The processor with the real parser in its sandbox, 5 acknowledgements a day."""
    sandbox = ParseSandbox(SandboxSettings(timeout=30.0, memory=256 * MB, workers=1))
    yield processor_for(repo, message_ids, clock, sandbox)
    await sandbox.close()


async def feed(repo, processor, *raws: bytes) -> list[tuple]:
    """Store mails as intake does and process them: (state, error, ticket, attempts) each."""
    ids = await store(repo, *raws)
    await processor.process_pending()
    return await rows(repo, ids)


async def outbox(repo, template: str) -> list[tuple]:
    """(ticket, recipient, payload) of the mails of `template` queued so far."""
    async with repo.connection() as conn:
        found = await conn.execute(
            select(O.c.ticket_id, O.c.recipient, O.c.payload)
            .where(O.c.template == template)
            .order_by(O.c.id)
        )
        return [tuple(r) for r in found]


async def status_of(repo, number: int) -> Status:
    return (await repo.read(lambda view: view.get_ticket(number))).status


async def resolved_ticket(repo, processor) -> str:
    """Marta's ticket 1, resolved: the Message-ID of the resolved notice she was sent."""
    await feed(repo, processor, mail("No em funciona internet"))
    await processor.service.apply(
        Actor.operator("@vol:example.org"), i.SetStatus(1, Status.RESOLVED)
    )
    return (await outbox(repo, "resolved"))[0][2]["message_id"]


# --- a loop with another helpdesk ------------------------------------------------------------


async def test_a_helpdesk_with_a_new_reply_to_each_time_gets_the_daily_cap_only(
    repo, processor, clock
):
    # It answers each acknowledgement with a new mail, from one address but a new
    # Reply-To, 7 minutes later (never 10 an hour, so the flood limit never stops it).
    for round_ in range(1, 41):
        raw = mail(
            f"Request #{1000 + round_} received",
            sender=HELPDESK,
            body=f"Thank you, your request #{1000 + round_} has been received.",
            Reply_To=f"reply+{round_}@helpdesk.example.com",
        )
        assert (await feed(repo, processor, raw))[0][0] == "done"  # a ticket all the same
        clock.advance(minutes=7)
    acks = await outbox(repo, "ack")
    assert len(acks) == 5
    assert [a[1] for a in acks] == [f"reply+{n}@helpdesk.example.com" for n in range(1, 6)]
    # A day after the first ones, the cap allows as many again: bounded per day.
    clock.advance(hours=24)
    raw = mail("Request #2000 received", sender=HELPDESK, Reply_To="reply+99@helpdesk.example.com")
    await feed(repo, processor, raw)
    assert len(await outbox(repo, "ack")) == 6


async def test_the_cap_of_one_sender_does_not_touch_another(repo, processor):
    for n in range(6):
        await feed(
            repo,
            processor,
            mail(f"Request #{n}", sender=HELPDESK, Reply_To=f"r+{n}@helpdesk.example.com"),
        )
    await feed(repo, processor, mail("No em funciona internet", Reply_To="family@example.net"))
    acks = await outbox(repo, "ack")
    assert len(acks) == 6 and acks[-1][1] == "family@example.net"


async def test_a_web_form_in_form_senders_is_counted_per_member(repo, processor):
    """An outage: 30 members write through the association's web form in a few minutes, all
    from one address with the member in Reply-To. Listed in mail.form_senders, none is held
    as a flood and each gets an acknowledgement; a member's own daily cap still holds."""
    form = "Formulari eXO <web@exo.example.org>"
    processor.settings = type(processor.settings)(
        **{**processor.settings.__dict__, "form_senders": frozenset({"web@exo.example.org"})}
    )
    members = [f"membre{n}@example.net" for n in range(30)]
    for n, member in enumerate(members):
        [(state, *_)] = await feed(
            repo, processor, mail(f"No va internet {n}", sender=form, Reply_To=member)
        )
        assert state == "done", (n, state)
    assert [a[1] for a in await outbox(repo, "ack")] == members
    for n in range(6):  # one member writing again and again: their own cap of 5
        await feed(repo, processor, mail(f"Encara {n}", sender=form, Reply_To=members[0]))
    assert sum(a[1] == members[0] for a in await outbox(repo, "ack")) == 5


async def test_a_web_form_not_listed_is_one_sender(repo, processor):
    form = "Formulari eXO <web@exo.example.org>"
    states = [
        (await feed(repo, processor, mail(f"No va {n}", sender=form, Reply_To=f"m{n}@x.net")))[0][0]
        for n in range(12)
    ]
    assert states.count("done") == 10 and states.count("quarantined") == 2  # the flood limit
    assert len(await outbox(repo, "ack")) == 5


# --- autoresponders and lists ----------------------------------------------------------------

AUTOMATIC = [
    ({"X_Autoreply": "yes"}, MARTA),
    ({"X_Autorespond": "Out of office"}, MARTA),
    ({"X_Autogenerated": "Reply"}, MARTA),
    ({"Precedence": "auto_reply"}, MARTA),
    ({"X_Precedence": "auto_reply"}, MARTA),
    ({"List_Id": "<veins.lists.example.com>"}, MARTA),
    ({"List_Unsubscribe": "<mailto:leave@lists.example.com>"}, MARTA),
    ({"List_Post": "<mailto:veins@lists.example.com>"}, MARTA),
    ({}, "noreply@shop.example.com"),
    ({}, "no-reply@shop.example.com"),
    ({}, "do-not-reply@shop.example.com"),
    ({}, "donotreply@shop.example.com"),
]


@pytest.mark.parametrize(("headers", "sender"), AUTOMATIC)
async def test_automatic_mail_opens_a_ticket_without_an_acknowledgement(
    repo, processor, headers, sender
):
    result = await feed(repo, processor, mail("Avís automàtic", sender=sender, **headers))
    assert result[0][:3] == ("done", None, 1)
    assert await status_of(repo, 1) is Status.NEW  # kept and shown to the volunteers
    assert await outbox(repo, "ack") == []


@pytest.mark.parametrize(("headers", "sender"), AUTOMATIC)
async def test_an_autoresponder_never_reopens_a_resolved_ticket(repo, processor, headers, sender):
    await feed(repo, processor, mail("No em funciona internet", sender=sender))
    await processor.service.apply(
        Actor.operator("@vol:example.org"), i.SetStatus(1, Status.RESOLVED)
    )
    notice = (await outbox(repo, "resolved"))[0][2]["message_id"]
    out_of_office = mail(
        "Fora de l'oficina: [suport#1] No em funciona internet",
        sender=sender,
        body="Estic de vacances fins al dia 15.",
        In_Reply_To=notice,
        **headers,
    )
    assert (await feed(repo, processor, out_of_office))[0][:3] == ("done", None, 1)
    assert await status_of(repo, 1) is Status.RESOLVED


async def test_a_list_post_is_not_acknowledged_to_the_list(repo, processor):
    lst = "veins-gracia@lists.example.com"
    raw = mail(
        "Tall de fibra al carrer Verdi?",
        sender="Pere <pere@example.net>",
        List_Id="Veins de Gracia <veins-gracia.lists.example.com>",
        List_Unsubscribe="<mailto:veins-gracia-leave@lists.example.com>",
        List_Post=f"<mailto:{lst}>",
        Reply_To=lst,
    )
    assert (await feed(repo, processor, raw))[0][:3] == ("done", None, 1)
    assert await outbox(repo, "ack") == []


async def test_outlooks_x_auto_response_suppress_is_a_members_mail(repo, processor):
    notice = await resolved_ticket(repo, processor)
    reply = mail(
        "Re: [suport#1] No em funciona internet",
        body="Torna a fallar.",
        In_Reply_To=notice,
        X_Auto_Response_Suppress="All",
    )
    await feed(repo, processor, reply)
    assert await status_of(repo, 1) is Status.OPEN
    new = mail("Una altra cosa", X_Auto_Response_Suppress="DR, RN, NRN, OOF, AutoReply")
    await feed(repo, processor, new)
    assert [a[1] for a in await outbox(repo, "ack")] == [MARTA, MARTA]


async def test_a_web_form_sending_from_a_no_reply_address_is_a_persons_mail(repo, processor):
    await feed(repo, processor, mail("Alta", sender="noreply@exo.example", Reply_To=MARTA))
    assert [a[1] for a in await outbox(repo, "ack")] == [MARTA]


# --- bounces in no report format -------------------------------------------------------------


def failure_notice(original_id: str, sender: str = "MAILER-DAEMON@mx.example.net") -> bytes:
    """qmail's bounce: plain text quoting the mail that bounced, with its headers."""
    body = (
        "Hi. This is the qmail-send program at mx.example.net.\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\n\n"
        "<marta@example.net>:\nSorry, no mailbox here by that name. (#5.1.1)\n\n"
        "--- Below this line is a copy of the message.\n\n"
        f"Return-Path: <{OWN}>\nFrom: Suport eXO <{OWN}>\nTo: marta@example.net\n"
        f"Subject: [suport#1] No em funciona internet\nMessage-ID: {original_id}\n\n"
        "Hola, Marta, ...\n"
    )
    return mail("failure notice", sender=sender, body=body, Return_Path="<>")


async def entries(repo) -> list[tuple]:
    async with repo.connection() as conn:
        found = await conn.execute(text("SELECT ticket_id, kind FROM entries ORDER BY id"))
        return [tuple(r) for r in found]


async def test_a_failure_notice_quoting_our_message_id_warns_its_ticket(repo, processor):
    await feed(repo, processor, mail("No em funciona internet"))
    ack_id = (await outbox(repo, "ack"))[0][2]["message_id"]
    result = await feed(repo, processor, failure_notice(ack_id))
    assert result[0][:3] == ("done", None, 1)
    assert (1, "bounce") in await entries(repo)
    assert {t for t, _ in await entries(repo)} == {1}  # no second ticket


@pytest.mark.parametrize(
    "quoted",
    [
        "<1.mail@example.net>",  # nothing of ours
        "<exobot.1.0123456789abcdef.0123456789abcdef@example.org>",  # not signed by us
    ],
)
async def test_a_failure_notice_quoting_nothing_of_ours_is_dropped(repo, processor, quoted):
    result = await feed(repo, processor, failure_notice(quoted))
    assert result[0][:3] == ("ignored", "a bounce about no mail of ours", None)
    assert await entries(repo) == []


# --- the parser's side: bounded and only for mail systems ------------------------------------

SIGNED = "<exobot.1.0123456789abcdef.0123456789abcdef@example.org>"


def test_only_a_mail_systems_mail_is_searched_for_our_ids():
    assert parse_mail(failure_notice(SIGNED)).bounce.quoted_ids == (SIGNED,)
    assert parse_mail(failure_notice(SIGNED, "postmaster@mx.example.net")).bounce is not None
    assert parse_mail(failure_notice(SIGNED, "marta@example.net")).bounce is None


def test_an_attached_message_of_ours_is_found():
    raw = (
        "From: MAILER-DAEMON@mx.example.net\r\nTo: suport@example.org\r\nSubject: failure\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nCould not deliver.\r\n"
        f"--B\r\nContent-Type: message/rfc822\r\n\r\nFrom: {OWN}\r\nMessage-ID: {SIGNED}\r\n"
        "Subject: [suport#1] x\r\n\r\nHola\r\n--B--\r\n"
    ).encode()
    assert parse_mail(raw).bounce.quoted_ids == (SIGNED,)


def test_the_search_is_bounded():
    late = failure_notice("<x@y>").replace(b"Hi.", b"x" * MAX_BOUNCE_SCAN + SIGNED.encode())
    assert parse_mail(late).bounce.quoted_ids == ()
    many = "\n".join(
        f"<exobot.{n}.0123456789abcdef.0123456789abcdef@example.org>" for n in range(1, 5000)
    )
    assert len(parse_mail(failure_notice(many)).bounce.quoted_ids) == MAX_QUOTED_IDS
    # Near misses everywhere: each stops at the next "<", nothing is found.
    near = ("<exobot.1.0123456789abcdef.0123456789abcdef@" + "d" * 200) * 2000
    assert parse_mail(failure_notice(near)).bounce.quoted_ids == ()
