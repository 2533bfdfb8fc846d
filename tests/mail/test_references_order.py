"""The References of our mails, as a member's client threads them (Thunderbird, mutt: RFC 5322
§3.6.4, a mail's References are its parent's References and then the parent, so each id is an
ancestor of the ones after it and the last is the parent): the ids in the order the mails came
and went, ending with the parent, never one of our later mails before the member's mail it
answers. A member answering any of our mails still threads back into the ticket."""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest
from clocks import FakeClock
from sqlalchemy import select
from test_processor_limits import processor_for, store

from exobot.core import intents as i
from exobot.core.model import Actor, Status
from exobot.db.tables import InboundMailRow, OutboxRow
from exobot.mail.compose import MAX_REFERENCES, TemplateRenderer
from exobot.mail.msgid import MessageIds
from exobot.mail.outbound import MailSender, SmtpSettings
from exobot.mail.sandbox import MB, ParseSandbox, SandboxSettings

OWN = "suport@example.org"
OPERATOR = Actor.operator("@anna:example.org")
I = InboundMailRow.__table__  # noqa: E741
O = OutboxRow.__table__  # noqa: E741
_uids = itertools.count(1)


def mail(subject: str, **headers: str) -> tuple[str, bytes]:
    """A member's mail and its Message-ID."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "marta@example.net", OWN, subject
    msg["Message-ID"] = message_id = f"<{next(_uids)}.{uuid.uuid4().hex}@example.net>"
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content("Hola, no em funciona internet.")
    return message_id, bytes(msg)


@pytest.fixture
async def sandbox():
    made = ParseSandbox(SandboxSettings(timeout=30.0, memory=256 * MB, workers=1))
    yield made
    await made.close()


@pytest.fixture
def message_ids() -> MessageIds:
    return MessageIds("secret" * 4, "example.org")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(datetime(2024, 3, 1, 9, 0, tzinfo=UTC))


@pytest.fixture
def processor(repo, message_ids, clock, sandbox):
    return processor_for(repo, message_ids, clock, sandbox)


@pytest.fixture
def sender(repo, processor, message_ids, clock) -> MailSender:
    return MailSender(
        repo,
        processor.service,
        SmtpSettings("127.0.0.1", 25),
        TemplateRenderer("ca"),
        from_address=OWN,
        from_name="Suport eXO",
        loop_marker=message_ids.loop_marker(),
        clock=clock,
    )


async def receive(repo, processor, clock, raw: bytes) -> int:
    """Let a member's mail in; the ticket it went to."""
    clock.advance(minutes=1)
    [inbound_id] = await store(repo, raw)
    await processor.process_pending()
    async with repo.connection() as conn:
        state, ticket = (
            await conn.execute(select(I.c.state, I.c.ticket_id).where(I.c.id == inbound_id))
        ).one()
    assert state == "done"
    return ticket


async def act(processor, clock, intent) -> None:
    """An operator's move, a minute later."""
    clock.advance(minutes=1)
    await processor.service.apply(OPERATOR, intent)


async def our_mails(repo, sender: MailSender, ticket: int) -> list[tuple[str, str, list[str]]]:
    """Our mails of the ticket as sent, oldest first: (Message-ID, In-Reply-To, References)."""
    async with repo.connection() as conn:
        found = await conn.execute(
            select(O.c.payload).where(O.c.ticket_id == ticket, O.c.kind == "mail").order_by(O.c.id)
        )
        payloads = [p for (p,) in found]
    mails = []
    for payload in payloads:
        message = sender.build(payload)
        references = str(message["References"]).split()
        # The payload queued holds them already in that order (the one kept, and retried).
        assert payload["references"] == references
        mails.append((message["Message-ID"], message["In-Reply-To"], references))
    return mails


def assert_threads_in_time_order(sent: list[str], mails: list[tuple[str, str, list[str]]]):
    """Each of our mails lists only mails sent before it, oldest first, ending with its
    parent: a client taking the order for ancestry never puts a mail under a later one."""
    for message_id, parent, references in mails:
        assert references[-1] == parent, message_id
        positions = [sent.index(ref) for ref in references]
        assert positions == sorted(set(positions)), (message_id, references)
        assert positions[-1] < sent.index(message_id), (message_id, references)


async def test_our_later_mails_are_never_listed_before_the_member_mail_they_answer(
    repo, processor, sender, clock
):
    first, raw = mail("No em funciona internet")
    number = await receive(repo, processor, clock, raw)  # acknowledged
    await act(processor, clock, i.Reply(number, "Reinicia el router."))
    await act(processor, clock, i.SetStatus(number, Status.RESOLVED))
    mails = await our_mails(repo, sender, number)
    assert [m[1:] for m in mails] == [(first, [first])] * 3
    assert_threads_in_time_order([first, *(m[0] for m in mails)], mails)


async def test_a_member_answering_us_threads_back_and_our_answer_follows_in_order(
    repo, processor, sender, clock
):
    first, raw = mail("No em funciona internet")
    number = await receive(repo, processor, clock, raw)
    await act(processor, clock, i.Reply(number, "Reinicia el router."))
    ack, reply = [m[0] for m in await our_mails(repo, sender, number)]
    # The member's client answers our reply: its References, then its Message-ID.
    second, raw = mail(
        "Re: No em funciona internet", In_Reply_To=reply, References=f"{first} {reply}"
    )
    assert await receive(repo, processor, clock, raw) == number
    await act(processor, clock, i.Reply(number, "Ja està."))
    mails = await our_mails(repo, sender, number)
    assert mails[-1][1:] == (second, [first, ack, reply, second])
    assert_threads_in_time_order([first, ack, reply, second, mails[-1][0]], mails)


async def test_a_long_ticket_keeps_its_first_mail_and_the_latest(repo, processor, sender, clock):
    first, raw = mail("No em funciona internet")
    number = await receive(repo, processor, clock, raw)
    sent = [first, *(m[0] for m in await our_mails(repo, sender, number))]
    for k in range(MAX_REFERENCES + 5):
        message_id, raw = mail(f"Re: No em funciona internet ({k})", In_Reply_To=sent[-1])
        assert await receive(repo, processor, clock, raw) == number
        sent.append(message_id)
    await act(processor, clock, i.Reply(number, "Hola"))
    *_, (_, parent, references) = await our_mails(repo, sender, number)
    assert parent == sent[-1]
    assert references == [first, *sent[-(MAX_REFERENCES - 1) :]]


def test_a_mail_queued_by_an_older_version_lists_no_later_mail_before_its_parent(sender):
    """Its payload holds all the ticket's ids: the ones after the parent are left out."""
    payload = {
        "template": "resolved",
        "language": "ca",
        "to": ["marta@example.net"],
        "cc": [],
        "reference": "suport#1",
        "number": 1,
        "title": "Router",
        "text": None,
        "requestor": "marta@example.net",
        "message_id": "<exobot.1.3@example.org>",
        "in_reply_to": "<m1@example.net>",
        "references": ["<m1@example.net>", "<exobot.1.1@example.org>", "<exobot.1.2@example.org>"],
        "auto_submitted": True,
    }
    message = sender.build(payload)
    assert message["In-Reply-To"] == "<m1@example.net>"
    assert str(message["References"]).split() == ["<m1@example.net>"]
